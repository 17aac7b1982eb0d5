// test_winograd.c - the fast mode's Winograd F(4x4, 3x3) convolution against the exact im2col
// path on the same folded weights: odd and tiny sizes (partial tiles), batches, channel counts
// that are not multiples of the transform blocks, the fused input activation, with and
// without ReLU; and the layers it must leave alone. Bound: max error <= 2.5e-4 x the output rms
// (F(4x4, 3x3) in float: about 1e-5 to 1e-4 here, growing with cin; a wrong transform is O(1)).
#include "core/alloc.h"
#include "core/ops.h"
#include "core/winograd.h"
#include "harness.h"

#include <stdlib.h>

static unsigned long rng = 777;
static float frand(void) { // uniform in [-1, 1)
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((rng >> 33) & 0xFFFFFF) / (float)0x800000 - 1.0f;
}

// max |wino - exact| / rms(exact) over the output
static double wino_err(int n, int h, int w, int cin, int cout, int use_in_bias, int relu) {
    fr_conv c;
    CHECK(fr_conv_alloc(&c, cin, cout, 3, 3, 1, 1) == FR_OK);
    for (int i = 0; i < cout * 9 * cin; i++) c.w[i] = frand() / 3.0f;
    for (int i = 0; i < cout; i++) c.b[i] = frand();
    size_t nx = (size_t)n * h * w * cin, ny = (size_t)n * h * w * cout;
    float *x = fr_malloc(nx * sizeof(float)), *ib = fr_malloc(cin * sizeof(float));
    float *y0 = fr_malloc(ny * sizeof(float)), *y1 = fr_malloc(ny * sizeof(float));
    for (size_t i = 0; i < nx; i++) x[i] = frand();
    for (int i = 0; i < cin; i++) ib[i] = frand() * 0.5f;
    fr_tensor tx = {x, n, h, w, cin}, t0 = {y0, n, h, w, cout}, t1 = {y1, n, h, w, cout};
    float *s0 = fr_malloc((fr_conv_scratch(&c, n, h, w) + 16) * sizeof(float));
    if (use_in_bias) fr_conv_forward_act_in(&c, &tx, ib, &t0, NULL, relu, s0);
    else fr_conv_forward(&c, &tx, &t0, NULL, relu, s0);
    CHECK(fr_wino_prepare(&c) == FR_OK && c.wu != NULL);
    float *s1 = fr_malloc((fr_conv_scratch(&c, n, h, w) + 16) * sizeof(float));
    for (size_t i = 0; i < ny; i++) y1[i] = NAN; // every output must be written
    if (use_in_bias) fr_conv_forward_act_in(&c, &tx, ib, &t1, NULL, relu, s1);
    else fr_conv_forward(&c, &tx, &t1, NULL, relu, s1);
    double ss = 0, mx = 0;
    for (size_t i = 0; i < ny; i++) ss += (double)y0[i] * y0[i];
    double rms = sqrt(ss / (double)ny);
    for (size_t i = 0; i < ny; i++) {
        double d = fabs((double)y1[i] - y0[i]);
        if (!(d <= mx)) mx = isnan(d) ? INFINITY : d;
    }
    fr_free(x), fr_free(ib), fr_free(y0), fr_free(y1), fr_free(s0), fr_free(s1);
    fr_conv_free(&c);
    return rms > 0 ? mx / rms : mx;
}

TEST(test_wino_matches_direct) {
    static const int cases[][7] = {
        // n, h, w, cin, cout, in_bias, relu
        {2, 7, 7, 64, 48, 1, 1},    // res5's 7x7 maps: 2x2 tiles, the last ones cropped
        {1, 13, 9, 16, 24, 0, 1},   // odd sizes
        {1, 1, 1, 8, 8, 0, 0},      // one pixel: only the kernel's centre is used
        {3, 4, 8, 70, 65, 1, 0},    // whole tiles; channels not multiples of 64
        {1, 50, 84, 32, 32, 0, 1},  // res4-like map, many tiles (several chunks for big cin)
        {1, 2, 3, 5, 3, 1, 1},
        {3, 7, 7, 64, 64, 1, 1},    // 7x7 on the built-in GEMM (cout % 32 == 0): cropped tiles skip positions
        {2, 9, 10, 32, 64, 0, 1},   // one cropped row of tiles, two cropped columns
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int *k = cases[i];
        double e = wino_err(k[0], k[1], k[2], k[3], k[4], k[5], k[6]);
        printf("  winograd %dx%dx%dx%d -> %d (in_bias %d, relu %d): max err / rms %.2e\n", k[0], k[1], k[2], k[3],
               k[4], k[5], k[6], e);
        CHECKF(e < 2.5e-4, "case %zu: %.3g", i, e);
    }
}

TEST(test_wino_chunks) {
    // enough tiles and channels that the tiles go through fr_wino_forward in several chunks
    double e = wino_err(1, 120, 160, 256, 256, 1, 1);
    printf("  winograd 120x160x256 -> 256 (several chunks): max err / rms %.2e\n", e);
    CHECK(e < 2.5e-4);
    // res5-like: 7x7 maps, 1024 channels: 341 tiles per chunk, so a chunk ends inside an image
    e = wino_err(90, 7, 7, 1024, 1024, 1, 1);
    printf("  winograd 90x7x7x1024 -> 1024 (chunks ending inside an image): max err / rms %.2e\n", e);
    CHECK(e < 2.5e-4);
}

TEST(test_wino_leaves_other_layers) {
    const int geo[][4] = {{1, 1, 1, 0}, {3, 3, 2, 1}, {3, 3, 1, 0}, {7, 7, 2, 3}}; // kh, kw, stride, pad
    for (int i = 0; i < 4; i++) {
        fr_conv c;
        CHECK(fr_conv_alloc(&c, 4, 4, geo[i][0], geo[i][1], geo[i][2], geo[i][3]) == FR_OK);
        CHECK(fr_wino_prepare(&c) == FR_OK);
        CHECK(c.wu == NULL);
        fr_conv_free(&c);
    }
}

int main(void) {
    fr_alloc_init();
    RUN(test_wino_matches_direct);
    RUN(test_wino_chunks);
    RUN(test_wino_leaves_other_layers);
    return harness_done(__FILE__);
}
