// fuzz_safetensors.c - libFuzzer target: the safetensors reader and the model loader on
// arbitrary bytes (nothing may crash, leak or trip a sanitizer).
#include "core/alloc.h"
#include "core/safetensors.h"
#include "detector/model.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fr_alloc_init();
    unsigned char *buf = fr_malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    fr_st_file f;
    fr_err e;
    if (fr_st_parse(&f, buf, size, &e)) return 0;
    for (int i = 0; i < f.n; i++) {
        const fr_st_tensor *t = &f.t[i];
        if (t->numel > (1u << 20)) continue;
        float *out = fr_malloc((t->numel + 1) * sizeof(float));
        if (out) fr_st_read_f32(&f, t->name, t->ndim, t->shape, out, &e);
        fr_free(out);
    }
    fr_model *m;
    if (fr_model_load_st(&m, &f, NULL, 0, &e) == FR_OK) fr_model_free(m);
    fr_st_close(&f);
    return 0;
}
