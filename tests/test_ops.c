// test_ops.c - convolution (all code paths), BN folding, pooling and linear against naive
// double-precision loops, with fixed seeds.
#include "core/alloc.h"
#include "core/gemm.h"
#include "core/ops.h"
#include "harness.h"

#include <stdlib.h>
#include <string.h>

static unsigned long rng = 12345;
static float frand(void) { // uniform in [-1, 1)
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((rng >> 33) & 0xFFFFFF) / (float)0x800000 - 1.0f;
}

// Naive conv + unfolded FrozenBN + residual + relu in double. w in OIHW.
static void naive_conv(const float *x, int n, int h, int w, int cin, const float *wt, int cout, int k, int s,
                       int p, const float *bias, const float *g, const float *be, const float *mu,
                       const float *var, float eps, const float *res, int relu, double *out, int ho, int wo) {
    for (int b = 0; b < n; b++)
        for (int oy = 0; oy < ho; oy++)
            for (int ox = 0; ox < wo; ox++)
                for (int o = 0; o < cout; o++) {
                    double acc = bias ? bias[o] : 0;
                    for (int ky = 0; ky < k; ky++)
                        for (int kx = 0; kx < k; kx++) {
                            int iy = oy * s - p + ky, ix = ox * s - p + kx;
                            if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                            for (int i = 0; i < cin; i++)
                                acc += (double)x[(((size_t)b * h + iy) * w + ix) * cin + i] *
                                       wt[(((size_t)o * cin + i) * k + ky) * k + kx];
                        }
                    if (g) acc = (acc - mu[o]) / sqrt((double)var[o] + eps) * g[o] + be[o];
                    size_t idx = (((size_t)b * ho + oy) * wo + ox) * cout + o;
                    if (res) acc += res[idx];
                    if (relu && acc < 0) acc = 0;
                    out[idx] = acc;
                }
}

static int g_pack; // 1: the layers under test are packed for the built-in GEMM (fr_conv_pack)

static void pack_if(fr_conv *c) {
    if (!g_pack) return;
    CHECK(fr_conv_pack(c) == FR_OK);
    CHECK(fr_gemm_enabled() ? c->wp && !c->w : c->w && !c->wp);
}

static void check_conv(int n, int h, int w, int cin, int cout, int k, int s, int p, int use_bn, int use_res,
                       int relu) {
    fr_conv c;
    CHECK(fr_conv_alloc(&c, cin, cout, k, k, s, p) == FR_OK);
    int ho = fr_conv_out(&c, h), wo = fr_conv_out(&c, w);
    size_t nx = (size_t)n * h * w * cin, ny = (size_t)n * ho * wo * cout, nw = (size_t)cout * cin * k * k;
    float *x = malloc(nx * 4), *wt = malloc(nw * 4), *res = malloc(ny * 4), *bias = malloc(cout * 4);
    float *g = malloc(cout * 4), *be = malloc(cout * 4), *mu = malloc(cout * 4), *var = malloc(cout * 4);
    double *ref = malloc(ny * sizeof(double));
    for (size_t i = 0; i < nx; i++) x[i] = frand();
    for (size_t i = 0; i < nw; i++) wt[i] = frand() * 0.2f;
    for (size_t i = 0; i < ny; i++) res[i] = frand();
    for (int i = 0; i < cout; i++) {
        bias[i] = frand();
        g[i] = 1 + 0.5f * frand();
        be[i] = frand();
        mu[i] = frand();
        var[i] = 0.5f + 0.4f * frand();
    }
    fr_conv_set_weight_oihw(&c, wt);
    memcpy(c.b, bias, cout * 4);
    if (use_bn) fr_conv_fold_bn(&c, g, be, mu, var, 1e-5f);
    pack_if(&c);
    naive_conv(x, n, h, w, cin, wt, cout, k, s, p, bias, use_bn ? g : NULL, be, mu, var, 1e-5f,
               use_res ? res : NULL, relu, ref, ho, wo);
    fr_tensor tx = {x, n, h, w, cin}, ty = {malloc(ny * 4), n, ho, wo, cout}, tr = {res, n, ho, wo, cout};
    size_t ns = fr_conv_scratch(&c, n, h, w);
    float *scratch = malloc((ns + 1) * 4);
    if (use_res == 2) { // residual aliasing the output: the GEMM accumulates onto it
        memcpy(ty.data, res, ny * 4);
        fr_conv_forward(&c, &tx, &ty, &ty, relu, scratch);
    } else
        fr_conv_forward(&c, &tx, &ty, use_res ? &tr : NULL, relu, scratch);
    double maxerr = 0;
    for (size_t i = 0; i < ny; i++) {
        double e = fabs(ty.data[i] - ref[i]);
        if (e > maxerr) maxerr = e;
    }
    CHECKF(maxerr < 1e-4 * sqrt((double)cin * k * k), "conv%s n%d %dx%d cin%d cout%d k%d s%d p%d: max err %g",
           g_pack ? " (packed)" : "", n, h, w, cin, cout, k, s, p, maxerr);
    free(x), free(wt), free(res), free(bias), free(g), free(be), free(mu), free(var), free(ref);
    free(ty.data), free(scratch);
    fr_conv_free(&c);
}

static void conv_cases(void) {
    check_conv(2, 9, 7, 8, 5, 1, 1, 0, 1, 1, 1);   // pointwise, residual, relu
    check_conv(2, 9, 7, 8, 5, 1, 2, 0, 1, 0, 0);   // strided pointwise (gather)
    check_conv(1, 10, 11, 6, 7, 3, 1, 1, 1, 0, 1); // 3x3
    check_conv(3, 7, 7, 4, 9, 3, 2, 1, 0, 1, 1);   // 3x3 stride 2, batch, odd sides
    check_conv(1, 21, 17, 3, 8, 7, 2, 3, 1, 0, 1); // the stem's 7x7/2
    check_conv(1, 1, 1, 4, 4, 3, 1, 1, 1, 0, 1);   // 1x1 image through a padded 3x3
    check_conv(2, 64, 64, 64, 16, 3, 1, 1, 0, 0, 0); // several im2col chunks (rows > chunk)
    check_conv(2, 9, 7, 8, 5, 1, 1, 0, 1, 2, 1);     // pointwise accumulating onto y
    check_conv(2, 64, 64, 64, 16, 3, 1, 1, 1, 2, 1); // chunked 3x3 accumulating onto y
    // built-in GEMM edges: several row blocks with a partial 12-row strip, k split in ranges
    // (K > FR_GEMM_KC), output channels not a multiple of the 32-wide panel
    _Static_assert(FR_GEMM_KC < 600 && 1152 > 2 * FR_GEMM_KC, "the k ranges the cases below are meant to have");
    check_conv(1, 20, 19, 128, 70, 3, 1, 1, 1, 2, 1); // K 1152: three k ranges, accumulating onto y
    check_conv(1, 20, 19, 128, 70, 3, 1, 1, 1, 1, 0); // the same with a separate residual, no relu
    check_conv(2, 14, 14, 600, 40, 1, 2, 0, 1, 0, 1); // strided pointwise, K 600: two k ranges
    check_conv(3, 9, 11, 40, 33, 1, 1, 0, 1, 1, 1);   // pointwise, 297 rows, 33 channels
    check_conv(1, 3, 2, 5, 1, 3, 1, 1, 1, 0, 1);      // one output channel, 6 rows
}

TEST(test_conv_paths) {
    g_pack = 0;
    conv_cases();
    g_pack = 1; // the same through the built-in GEMM where this CPU has it
    printf("  built-in GEMM: %s\n", fr_gemm_enabled() ? "on (AVX-512F): packed layers tested"
                                                       : "not on this CPU: packed layers use cblas_sgemm");
    conv_cases();
}

// conv1 raw + conv2 reading relu(t + b1) in its im2col == conv1 with its epilogue + conv2, bit
// for bit, over kernel sizes, strides, paddings (edges of every side) and odd channel counts.
static void check_act_in(int n, int h, int w, int c0, int c1, int c2, int k, int s, int p) {
    fr_conv a, b;
    CHECK(fr_conv_alloc(&a, c0, c1, 1, 1, 1, 0) == FR_OK);
    CHECK(fr_conv_alloc(&b, c1, c2, k, k, s, p) == FR_OK);
    for (int i = 0; i < c1 * c0; i++) a.w[i] = frand();
    for (int i = 0; i < c1; i++) a.b[i] = frand(); // about half the pre-activations end negative
    for (int i = 0; i < c2 * k * k * c1; i++) b.w[i] = frand();
    for (int i = 0; i < c2; i++) b.b[i] = frand();
    pack_if(&a);
    pack_if(&b);
    int ho = fr_conv_out(&b, h), wo = fr_conv_out(&b, w);
    size_t nx = (size_t)n * h * w * c0, nt = (size_t)n * h * w * c1, ny = (size_t)n * ho * wo * c2;
    float *x = fr_malloc(nx * sizeof(float)), *t = fr_malloc(nt * sizeof(float));
    float *y0 = fr_malloc(ny * sizeof(float)), *y1 = fr_malloc(ny * sizeof(float));
    float *scr = fr_malloc((fr_conv_scratch(&b, n, h, w) + 64) * sizeof(float));
    for (size_t i = 0; i < nx; i++) x[i] = frand();
    fr_tensor tx = {x, n, h, w, c0}, tt = {t, n, h, w, c1}, t0 = {y0, n, ho, wo, c2}, t1 = {y1, n, ho, wo, c2};
    fr_conv_forward(&a, &tx, &tt, NULL, 1, scr);
    fr_conv_forward(&b, &tt, &t0, NULL, 1, scr);
    fr_conv_forward_raw(&a, &tx, &tt, scr);
    fr_conv_forward_act_in(&b, &tt, a.b, &t1, NULL, 1, scr);
    CHECKF(memcmp(y0, y1, ny * sizeof(float)) == 0, "k %d s %d p %d %dx%d c %d->%d->%d", k, s, p, h, w, c0, c1, c2);
    fr_free(x), fr_free(t), fr_free(y0), fr_free(y1), fr_free(scr);
    fr_conv_free(&a), fr_conv_free(&b);
}

TEST(test_conv_act_in) {
    for (g_pack = 0; g_pack < 2; g_pack++) {
        check_act_in(2, 7, 7, 16, 24, 8, 3, 1, 1); // res5's 7x7 maps
        check_act_in(1, 9, 13, 8, 5, 7, 3, 2, 1);  // strided, odd channels
        check_act_in(1, 6, 5, 4, 3, 6, 7, 2, 3);   // stem-like: wider than the image
        check_act_in(2, 5, 6, 4, 6, 5, 3, 1, 0);   // no padding
        check_act_in(1, 2, 3, 3, 4, 2, 3, 1, 2);   // padding larger than the image's edge
        check_act_in(1, 12, 11, 8, 200, 40, 3, 1, 1); // K 1800: k ranges split inside a channel run
    }
    g_pack = 0;
}

// fr_gemm_run over rows in another order, in groups with A zero outside some columns
// (fr_gemm_subset) == the full GEMM on those rows, bit for bit: ranges across k-range
// boundaries, a group without ranges, a group boundary inside a 12-row strip, every epilogue.
typedef struct {
    const float *a;
    int k;
} plain_a;

static void pack_plain(const void *ctx, size_t row, int k0, int kc, float *dst) {
    const plain_a *p = ctx;
    memcpy(dst, p->a + row * p->k + k0, (size_t)kc * sizeof(float));
}

static size_t odd_rows(const void *ctx, size_t i) { // rows 1, 3, 5, ... backwards
    return *(const size_t *)ctx - 2 * i;
}

// Rows 1, 3, 5, ... of an m-row C (GEMM rows backwards from the last odd row): the first split
// GEMM rows in group 0 (nseg0 ranges seg0), the others in group 1 (nseg1 ranges seg1).
static void check_subset(int m, int n, int k, const int *seg0, int nseg0, const int *seg1, int nseg1, int split,
                         int accumulate, int epi) {
    size_t na = (size_t)m * k, nc = (size_t)m * n, ms = (size_t)m / 2, last = ms * 2 - 1;
    float *a = fr_malloc(na * sizeof(float)), *b = fr_malloc((size_t)n * k * sizeof(float));
    float *bp = fr_aligned_alloc(fr_gemm_packed_floats(n, k) * sizeof(float));
    float *c0 = fr_malloc(nc * sizeof(float)), *c1 = fr_malloc(nc * sizeof(float)), *cs = fr_malloc(nc * sizeof(float));
    float *res = fr_malloc(nc * sizeof(float)), *bias = fr_malloc((size_t)n * sizeof(float));
    float *scr = fr_aligned_alloc((fr_gemm_scratch() + 64) * sizeof(float));
    int nseg[2] = {nseg0, nseg1}, seg[2][2 * FR_GEMM_MAXSEG];
    memcpy(seg[0], seg0, (size_t)2 * nseg0 * sizeof(int));
    memcpy(seg[1], seg1, (size_t)2 * nseg1 * sizeof(int));
    size_t end[2] = {(size_t)split, ms};
    for (int i = 0; i < m; i++) {
        size_t gi = (last - (size_t)i) / 2; // GEMM row of an odd row
        int g = (i & 1) && gi >= (size_t)split;
        for (int kk = 0; kk < k; kk++) {
            int in = !(i & 1); // even rows are full; odd rows are zero outside their group's ranges
            for (int s = 0; s < nseg[g]; s++) in |= kk >= seg[g][2 * s] && kk < seg[g][2 * s + 1];
            a[(size_t)i * k + kk] = in ? frand() : 0.0f;
        }
    }
    for (size_t i = 0; i < (size_t)n * k; i++) b[i] = frand();
    for (int j = 0; j < n; j++) bias[j] = frand();
    for (size_t i = 0; i < nc; i++) res[i] = frand(), c0[i] = c1[i] = cs[i] = frand();
    fr_gemm_pack_b(b, n, k, bp);
    plain_a p = {a, k};
    fr_gemm_subset sub = {odd_rows, &last, 2, end, nseg, (const int(*)[2 * FR_GEMM_MAXSEG])seg};
    const float *bi = epi ? bias : NULL, *re = epi > 1 ? res : NULL;
    fr_gemm_run((size_t)m, n, k, pack_plain, &p, bp, c0, (size_t)n, accumulate, bi, re, epi == 3, NULL, scr);
    fr_gemm_run(ms, n, k, pack_plain, &p, bp, c1, (size_t)n, accumulate, bi, re, epi == 3, &sub, scr);
    int same = 1, untouched = 1;
    for (int i = 0; i < m; i++)
        if (i & 1) same &= memcmp(c0 + (size_t)i * n, c1 + (size_t)i * n, (size_t)n * sizeof(float)) == 0;
    for (int i = 0; i < m; i += 2) // the even rows are not in the subset: c1 keeps its start values
        untouched &= memcmp(c1 + (size_t)i * n, cs + (size_t)i * n, (size_t)n * sizeof(float)) == 0;
    CHECKF(same, "subset GEMM m %d n %d k %d nseg %d/%d split %d acc %d epi %d differs from the full GEMM", m, n, k,
           nseg0, nseg1, split, accumulate, epi);
    CHECKF(untouched, "subset GEMM m %d n %d k %d wrote rows outside the subset", m, n, k);
    fr_free(a), fr_free(b), fr_free(c0), fr_free(c1), fr_free(cs), fr_free(res), fr_free(bias);
    fr_free(bp), fr_free(scr);
}

TEST(test_gemm_subset) {
    if (!fr_gemm_enabled()) {
        printf("  built-in GEMM not on this CPU: fr_gemm_subset not testable here\n");
        return;
    }
    // k 1200: three k ranges of 400 (gemm.c splits k into equal ranges of at most FR_GEMM_KC),
    // crossed by the first and last column ranges
    _Static_assert((1200 + FR_GEMM_KC - 1) / FR_GEMM_KC == 3, "k 1200 is meant to take three k ranges");
    int s1[] = {300, 450, 500, 510, 700, 1000};
    int s2[] = {0, 64, 128, 192}, s3[] = {50, 60}, s4[] = {100, 350, 400, 410, 700, 900};
    for (int epi = 0; epi < 4; epi++) {
        check_subset(50, 70, 1200, s1, 3, s3, 1, 12, 0, epi); // groups meet at a strip boundary
        check_subset(50, 70, 1200, s1, 3, s3, 1, 7, 1, epi);  // ... and inside a strip
    }
    check_subset(331, 33, 192, s2, 2, s3, 1, 100, 0, 3); // several blocks per thread, a partial panel
    check_subset(29, 40, 300, s4, 0, s4, 3, 5, 0, 1);    // a group without ranges: bias only
    check_subset(29, 40, 300, s4, 3, s4, 0, 9, 1, 3);    // the same, accumulating: C + bias, then ReLU
}

TEST(test_maxpool) {
    int n = 2, h = 9, w = 6, C = 3;
    float x[2 * 9 * 6 * 3];
    for (size_t i = 0; i < sizeof x / 4; i++) x[i] = frand() - 2.0f; // all negative: padding must be -inf
    int ho = fr_maxpool_out(h), wo = fr_maxpool_out(w);
    CHECK(ho == 5 && wo == 3);
    float y[2 * 5 * 3 * 3];
    fr_tensor tx = {x, n, h, w, C}, ty = {y, n, ho, wo, C};
    fr_maxpool3x3s2(&tx, &ty);
    for (int b = 0; b < n; b++)
        for (int oy = 0; oy < ho; oy++)
            for (int ox = 0; ox < wo; ox++)
                for (int c = 0; c < C; c++) {
                    float m = -INFINITY;
                    for (int iy = oy * 2 - 1; iy <= oy * 2 + 1; iy++)
                        for (int ix = ox * 2 - 1; ix <= ox * 2 + 1; ix++)
                            if (iy >= 0 && iy < h && ix >= 0 && ix < w && x[((b * h + iy) * w + ix) * C + c] > m)
                                m = x[((b * h + iy) * w + ix) * C + c];
                    CHECK(y[((b * ho + oy) * wo + ox) * C + c] == m);
                }
}

TEST(test_meanpool_linear) {
    float x[2 * 3 * 2 * 4];
    for (size_t i = 0; i < sizeof x / 4; i++) x[i] = frand();
    fr_tensor t = {x, 2, 3, 2, 4};
    float out[8];
    fr_meanpool(&t, out);
    for (int n = 0; n < 2; n++)
        for (int c = 0; c < 4; c++) {
            double s = 0;
            for (int p = 0; p < 6; p++) s += x[(n * 6 + p) * 4 + c];
            CHECK_NEAR(out[n * 4 + c], s / 6, 1e-6);
        }
    float w[5 * 4], b[5], y[2 * 5];
    for (int i = 0; i < 20; i++) w[i] = frand();
    for (int i = 0; i < 5; i++) b[i] = frand();
    fr_linear(out, 2, 4, w, b, 5, y);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 5; j++) {
            double s = b[j];
            for (int k = 0; k < 4; k++) s += (double)out[i * 4 + k] * w[j * 4 + k];
            CHECK_NEAR(y[i * 5 + j], s, 1e-5);
        }
}

int main(void) {
    RUN(test_conv_paths);
    RUN(test_conv_act_in);
    RUN(test_gemm_subset);
    RUN(test_maxpool);
    RUN(test_meanpool_linear);
    return harness_done(__FILE__);
}
