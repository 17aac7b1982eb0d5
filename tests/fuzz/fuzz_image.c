// fuzz_image.c - libFuzzer target: JPEG/PNG decoding (hardened stb + pre-validator) and both
// families' preprocessing on whatever decodes.
#include "core/alloc.h"
#include "core/image.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fr_image_limits lim;
    fr_image_limits_default(&lim);
    lim.max_pixels = 4 << 20; // keep each run fast; the caps themselves are tested elsewhere
    fr_image img;
    fr_err e;
    if (fr_image_decode(&img, data, size, &lim, size & 1, &e)) return 0;
    fr_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.min_size = 24;
    cfg.max_size = 40;
    for (int i = 0; i < 3; i++) cfg.pixel_std[i] = 1, cfg.pixel_mean[i] = 100;
    for (int fam = 0; fam < 2; fam++) {
        cfg.resize = fam ? FR_RESIZE_PYFRCNN : FR_RESIZE_DETECTRON2;
        int w, h;
        double sc;
        fr_image_resized_size(&cfg, img.w, img.h, &w, &h, &sc);
        float *out = fr_malloc((size_t)w * h * 3 * sizeof(float));
        if (out) fr_image_preprocess(&img, &cfg, w, h, out, &e);
        fr_free(out);
    }
    fr_image_free(&img);
    return 0;
}
