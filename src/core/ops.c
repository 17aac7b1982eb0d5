// ops.c - convolution, pooling and linear layers on cblas_sgemm (see ops.h).
#include "ops.h"

#include "alloc.h"
#include "gemm.h"
#include "simd.h"
#include "timer.h"
#include "winograd.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

static fr_gemm_hook g_gemm_hook; // bench profiling hook
static void *g_gemm_user;

void fr_ops_set_gemm_hook(fr_gemm_hook fn, void *user) {
    g_gemm_hook = fn;
    g_gemm_user = user;
}

// The profiling hook around every GEMM (cblas or built-in): start, then report.
static double hook_start(void) { return g_gemm_hook ? fr_time_ms() : 0; }
static void hook_report(size_t m, int n, int k, double t0) {
    if (g_gemm_hook) g_gemm_hook((int)m, n, k, fr_time_ms() - t0, g_gemm_user);
}

void fr_gemm_nt_ld(int m, int n, int k, const float *a, int lda, const float *b, float beta, float *c, int ldc) {
    double t0 = hook_start();
    if (m > 0 && n > 0) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a, lda, b, k, beta, c, ldc);
    hook_report((size_t)(m > 0 ? m : 0), n, k, t0);
}

typedef struct {
    const float *a;
    size_t lda;
} plain_ctx;

static void pack_plain_row(const void *ctxp, size_t row, int k0, int kc, float *dst) {
    const plain_ctx *p = ctxp;
    memcpy(dst, p->a + row * p->lda + k0, (size_t)kc * sizeof(float));
}

void fr_gemm_packed_nt(int m, int n, int k, const float *a, size_t lda, const float *bp, float *c, size_t ldc,
                       const fr_gemm_subset *sub, float *scratch) {
    double t0 = hook_start();
    plain_ctx p = {a, lda};
    if (m > 0) fr_gemm_run((size_t)m, n, k, pack_plain_row, &p, bp, c, ldc, 0, NULL, NULL, 0, sub, scratch);
    hook_report((size_t)(m > 0 ? m : 0), n, k, t0);
}

void fr_gemm_nt(int m, int n, int k, const float *a, const float *b, float beta, float *c) {
    fr_gemm_nt_ld(m, n, k, a, k, b, beta, c, n);
}

fr_status fr_conv_alloc(fr_conv *c, int cin, int cout, int kh, int kw, int stride, int pad) {
    memset(c, 0, sizeof *c);
    c->cin = cin;
    c->cout = cout;
    c->kh = kh;
    c->kw = kw;
    c->stride = stride;
    c->pad = pad;
    c->w = fr_aligned_alloc((size_t)cout * kh * kw * cin * sizeof(float));
    c->b = fr_aligned_alloc((size_t)cout * sizeof(float));
    if (!c->w || !c->b) {
        fr_conv_free(c);
        return FR_ERR_NOMEM;
    }
    memset(c->b, 0, (size_t)cout * sizeof(float));
    return FR_OK;
}

void fr_conv_free(fr_conv *c) {
    fr_free(c->w);
    fr_free(c->b);
    fr_free(c->wu);
    fr_free(c->wp);
    c->w = c->b = c->wu = c->wp = NULL;
}

fr_status fr_conv_pack(fr_conv *c) {
    if (!fr_gemm_enabled() || !c->w || c->wu) return FR_OK;
    int K = c->kh * c->kw * c->cin;
    if (c->cout % FR_GEMM_NR == 0) {
        // panel p is rows [32p, 32p + 32) of w transposed, in the same place: packing in place
        // does not hold the layer twice
        if (fr_gemm_pack_b_inplace(c->w, c->cout, K)) return FR_ERR_NOMEM;
        c->wp = c->w;
    } else {
        float *p = fr_aligned_alloc(fr_gemm_packed_floats(c->cout, K) * sizeof(float));
        if (!p) return FR_ERR_NOMEM;
        fr_gemm_pack_b(c->w, c->cout, K, p);
        fr_free(c->w);
        c->wp = p;
    }
    c->w = NULL;
    return FR_OK;
}

float fr_conv_weight(const fr_conv *c, int o, size_t k) {
    size_t K = (size_t)c->kh * c->kw * c->cin;
    return c->wp ? fr_gemm_packed_at(c->wp, (int)K, o, (int)k) : c->w[(size_t)o * K + k];
}

void fr_conv_set_weight_oihw(fr_conv *c, const float *w) {
    size_t K = (size_t)c->kh * c->kw * c->cin, taps = (size_t)c->kh * c->kw;
    for (int o = 0; o < c->cout; o++) { // written in order, read with a stride of kh*kw
        float *dst = c->w + o * K;
        const float *src = w + o * K;
        for (size_t t = 0; t < taps; t++)
            for (int i = 0; i < c->cin; i++) *dst++ = src[(size_t)i * taps + t];
    }
}

void fr_conv_fold_bn(fr_conv *c, const float *gamma, const float *beta, const float *mean,
                     const float *var, float eps) {
    size_t K = (size_t)c->kh * c->kw * c->cin;
    for (int o = 0; o < c->cout; o++) {
        // detectron2 FrozenBatchNorm2d: scale = w * rsqrt(var + eps); bias = b - mean * scale
        float scale = gamma[o] * (1.0f / sqrtf(var[o] + eps));
        for (size_t k = 0; k < K; k++) c->w[o * K + k] *= scale;
        c->b[o] = (c->b[o] - mean[o]) * scale + beta[o];
    }
}

static int is_pointwise(const fr_conv *c) { return c->kh == 1 && c->kw == 1 && c->pad == 0; }

static size_t chunk_rows(const fr_conv *c) {
    size_t K = (size_t)c->kh * c->kw * c->cin;
    size_t r = FR_COL_CHUNK_BYTES / (K * sizeof(float));
    return r < 64 ? 64 : r;
}

size_t fr_conv_scratch(const fr_conv *c, int n, int h, int w) {
    if (c->wp) return fr_gemm_scratch();
    size_t rows = (size_t)n * fr_conv_out(c, h) * fr_conv_out(c, w);
    if (is_pointwise(c) && c->stride == 1) return 0;
    if (is_pointwise(c)) return rows * c->cin;
    size_t ch = chunk_rows(c), col = (rows < ch ? rows : ch) * c->kh * c->kw * c->cin;
    size_t wino = fr_wino_scratch(c, n, h, w);
    return col > wino ? col : wino;
}

// dst[k] = max(src[k] + bias[k mod c], 0) for k < n (n a multiple of c): the epilogue of the
// producing convolution (same operations in the same order), applied while copying.
FR_CLONES static void copy_act(float *restrict dst, const float *restrict src, const float *restrict bias, int c, int n) {
    for (int p = 0; p < n; p += c, dst += c, src += c)
        for (int k = 0; k < c; k++) {
            float v = src[k] + bias[k];
            dst[k] = v > 0.0f ? v : 0.0f;
        }
}

// Builds im2col rows [r0, r1) of the output grid into col ((r1-r0) x K). The kw taps of one
// kernel row read consecutive input pixels, so each kernel row is one copy of its in-range
// taps between zero fills. in_bias: NULL, or the input is relu(x + in_bias) (see
// fr_conv_forward_act_in).
static void im2col(const fr_conv *c, const fr_tensor *x, const float *in_bias, int ho, int wo, size_t r0,
                   size_t r1, float *col) {
    int C = c->cin, kw = c->kw;
    size_t K = (size_t)c->kh * kw * C;
#pragma omp parallel for schedule(static) if ((r1 - r0) * K > 65536)
    for (size_t r = r0; r < r1; r++) {
        int ox = (int)(r % wo), oy = (int)((r / wo) % ho), n = (int)(r / ((size_t)wo * ho));
        float *dst = col + (r - r0) * K;
        int ix0 = ox * c->stride - c->pad;
        int lo = ix0 < 0 ? -ix0 : 0;                           // first in-range tap
        int hi = x->w - ix0 < kw ? x->w - ix0 : kw;             // one past the last
        if (hi < lo) hi = lo;
        for (int ky = 0; ky < c->kh; ky++, dst += (size_t)kw * C) {
            int iy = oy * c->stride - c->pad + ky;
            if (iy < 0 || iy >= x->h || hi == lo) {
                memset(dst, 0, (size_t)kw * C * sizeof(float));
                continue;
            }
            if (lo) memset(dst, 0, (size_t)lo * C * sizeof(float));
            const float *src = x->data + (((size_t)n * x->h + iy) * x->w + ix0 + lo) * C;
            if (in_bias) copy_act(dst + (size_t)lo * C, src, in_bias, C, (hi - lo) * C);
            else memcpy(dst + (size_t)lo * C, src, (size_t)(hi - lo) * C * sizeof(float));
            if (hi < kw) memset(dst + (size_t)hi * C, 0, (size_t)(kw - hi) * C * sizeof(float));
        }
    }
}

typedef struct {
    const fr_conv *c;
    const fr_tensor *x;
    const float *in_bias;
    int ho, wo;
} pack_ctx;

// A row `row` of the implicit im2col matrix, columns [k0, k0 + kc): runs of in-range taps of
// one kernel row are one copy (consecutive input pixels), out-of-range taps are zeros.
static void pack_conv_row(const void *ctxp, size_t row, int k0, int kc, float *dst) {
    const pack_ctx *p = ctxp;
    const fr_conv *c = p->c;
    const fr_tensor *x = p->x;
    int C = c->cin, kw = c->kw;
    int ox = (int)(row % p->wo), oy = (int)((row / p->wo) % p->ho), n = (int)(row / ((size_t)p->wo * p->ho));
    int iy0 = oy * c->stride - c->pad, ix0 = ox * c->stride - c->pad;
    int k = k0, end = k0 + kc;
    while (k < end) {
        int tap = k / C, ci = k - tap * C, ky = tap / kw, kx = tap - ky * kw;
        int iy = iy0 + ky, ix = ix0 + kx, len;
        if (iy < 0 || iy >= x->h || ix >= x->w) {
            len = (kw - kx) * C - ci; // the rest of this kernel row
            if (len > end - k) len = end - k;
            memset(dst, 0, (size_t)len * sizeof(float));
        } else if (ix < 0) {
            len = -ix * C - ci; // up to the first in-range tap
            if (len > end - k) len = end - k;
            memset(dst, 0, (size_t)len * sizeof(float));
        } else {
            int run = x->w - ix < kw - kx ? x->w - ix : kw - kx; // in-range taps from here
            len = run * C - ci;
            if (len > end - k) len = end - k;
            const float *src = x->data + (((size_t)n * x->h + iy) * x->w + ix) * C + ci;
            if (p->in_bias) {
                // the activation per channel: split at channel wrap-arounds
                int done = 0;
                while (done < len) {
                    int cc = (ci + done) % C, seg = C - cc < len - done ? C - cc : len - done;
                    copy_act(dst + done, src + done, p->in_bias + cc, seg, seg);
                    done += seg;
                }
            } else {
                memcpy(dst, src, (size_t)len * sizeof(float));
            }
        }
        dst += len;
        k += len;
    }
}

// Output positions along one axis whose in-range kernel taps are the same: outputs [o0, o1)
// read taps [lo, hi) of the kernel (lo == hi: none), the others fall on padding.
typedef struct {
    int o0, o1, lo, hi;
} tap_run;

// The runs of one axis (at most max; 0 if more). lo and hi never increase along the axis, so
// equal (lo, hi) pairs are consecutive.
static int tap_runs(int out, int in, int kk, int stride, int pad, tap_run *r, int max) {
    int nr = 0;
    for (int o = 0; o < out; o++) {
        long lo = (long)pad - (long)o * stride, hi = (long)in + pad - (long)o * stride;
        lo = lo < 0 ? 0 : lo > kk ? kk : lo;
        hi = hi > kk ? kk : hi < lo ? lo : hi;
        if (nr && r[nr - 1].lo == lo && r[nr - 1].hi == hi) {
            r[nr - 1].o1 = o + 1;
            continue;
        }
        if (nr == max) return 0;
        r[nr++] = (tap_run){o, o + 1, (int)lo, (int)hi};
    }
    return nr;
}

// Output pixels grouped by tap runs: group g is the rectangle of output rows [y0, y0 + ry) x
// columns [x0, x0 + rx) in every image, GEMM rows [end[g - 1], end[g]).
typedef struct {
    int ho, wo, ngroup;
    int y0[FR_GEMM_MAXGROUP], ry[FR_GEMM_MAXGROUP], x0[FR_GEMM_MAXGROUP], rx[FR_GEMM_MAXGROUP];
    size_t end[FR_GEMM_MAXGROUP];
} pixel_groups;

static size_t group_row(const void *ctxp, size_t i) {
    const pixel_groups *q = ctxp;
    int lo = fr_gemm_group_of(q->end, q->ngroup, i);
    size_t j = i - (lo ? q->end[lo - 1] : 0), per = (size_t)q->ry[lo] * q->rx[lo], n = j / per, r = j % per;
    return ((size_t)n * q->ho + q->y0[lo] + r / q->rx[lo]) * q->wo + q->x0[lo] + r % q->rx[lo];
}

// Below this share of padding products a convolution runs as a plain GEMM.
#define PAD_SKIP_MIN 0.05

// The built-in GEMM of a convolution. Where the padding taps are a noticeable share of its
// products (res5's 3x3 convolutions on 7x7 RoI maps: 18%), the GEMM takes the output pixels
// grouped by which taps fall inside the input (corners, edges, interior: tap_runs) and leaves
// out the columns each group's padding taps fill with zeros (fr_gemm_subset: each output
// comes out as the full GEMM gives it).
static void conv_gemm(const fr_conv *c, const fr_tensor *x, const float *in_bias, fr_tensor *y, int ho, int wo,
                      int accumulate, const float *bias, const float *res, int relu, float *scratch) {
    pack_ctx p = {c, x, in_bias, ho, wo};
    size_t rows = (size_t)x->n * ho * wo;
    int C = c->cin, K = c->kh * c->kw * C;
    enum { MAXRUN = 2 * FR_GEMM_MAXSEG + 2 };
    tap_run ry[MAXRUN], rx[MAXRUN];
    int nry = 0, nrx = 0;
    if (c->kh * c->kw > 1 && c->pad > 0 && c->kh <= FR_GEMM_MAXSEG) {
        nry = tap_runs(ho, x->h, c->kh, c->stride, c->pad, ry, MAXRUN);
        nrx = tap_runs(wo, x->w, c->kw, c->stride, c->pad, rx, MAXRUN);
    }
    double kept = 0;
    for (int a = 0; a < nry; a++)
        for (int b = 0; b < nrx; b++)
            kept += (double)(ry[a].o1 - ry[a].o0) * (rx[b].o1 - rx[b].o0) * (ry[a].hi - ry[a].lo) * (rx[b].hi - rx[b].lo);
    if (!nry || !nrx || nry * nrx > FR_GEMM_MAXGROUP || kept > (1.0 - PAD_SKIP_MIN) * ho * wo * c->kh * c->kw) {
        fr_gemm_run(rows, c->cout, K, pack_conv_row, &p, c->wp, y->data, (size_t)c->cout, accumulate, bias, res,
                    relu, NULL, scratch);
        return;
    }
    pixel_groups q;
    int nseg[FR_GEMM_MAXGROUP], seg[FR_GEMM_MAXGROUP][2 * FR_GEMM_MAXSEG];
    size_t at = 0;
    q.ho = ho, q.wo = wo, q.ngroup = 0;
    for (int a = 0; a < nry; a++)
        for (int b = 0; b < nrx; b++) {
            int g = q.ngroup++;
            q.y0[g] = ry[a].o0, q.ry[g] = ry[a].o1 - ry[a].o0, q.x0[g] = rx[b].o0, q.rx[g] = rx[b].o1 - rx[b].o0;
            at += (size_t)x->n * q.ry[g] * q.rx[g];
            q.end[g] = at;
            nseg[g] = 0;
            if (rx[b].lo < rx[b].hi)
                for (int ky = ry[a].lo; ky < ry[a].hi; ky++) {
                    int lo = (ky * c->kw + rx[b].lo) * C, hi = (ky * c->kw + rx[b].hi) * C, *sg = seg[g];
                    if (nseg[g] && sg[2 * nseg[g] - 1] == lo) sg[2 * nseg[g] - 1] = hi; // whole kernel rows: one range
                    else sg[2 * nseg[g]] = lo, sg[2 * nseg[g] + 1] = hi, nseg[g]++;
                }
        }
    FR_ASSERT(at == rows);
    fr_gemm_subset sub = {group_row, &q, q.ngroup, q.end, nseg, (const int(*)[2 * FR_GEMM_MAXSEG])seg};
    fr_gemm_run(rows, c->cout, K, pack_conv_row, &p, c->wp, y->data, (size_t)c->cout, accumulate, bias, res, relu,
                &sub, scratch);
}

// y = y + b (+ res), then max(y, 0): one pass, branch-free so it vectorises.
FR_CLONES static void epilogue_rows(float *restrict y, size_t r0, size_t r1, int cout, const float *restrict b,
                                    const float *restrict res, int relu) {
    for (size_t r = r0; r < r1; r++) {
        float *restrict yr = y + r * cout;
        const float *restrict rr = res ? res + r * cout : NULL;
        if (rr)
            for (int j = 0; j < cout; j++) yr[j] += b[j] + rr[j];
        else
            for (int j = 0; j < cout; j++) yr[j] += b[j];
        if (relu)
            for (int j = 0; j < cout; j++) yr[j] = yr[j] > 0.0f ? yr[j] : 0.0f;
    }
}

static void epilogue(float *restrict y, size_t rows, int cout, const float *restrict b, const float *restrict res,
                     int relu) {
    const size_t blk = 32;
#pragma omp parallel for schedule(static) if (rows * (size_t)cout > 65536)
    for (size_t r = 0; r < rows; r += blk)
        epilogue_rows(y, r, r + blk < rows ? r + blk : rows, cout, b, res, relu);
}

// act: -1 no epilogue at all (no bias), 0 bias (+ residual), 1 bias (+ residual) then ReLU.
static void conv_forward(const fr_conv *c, const fr_tensor *x, const float *in_bias, fr_tensor *y,
                         const fr_tensor *residual, int act, float *scratch) {
    int relu = act > 0;
    int ho = fr_conv_out(c, x->h), wo = fr_conv_out(c, x->w);
    FR_ASSERT(x->c == c->cin && y->c == c->cout && y->h == ho && y->w == wo && y->n == x->n);
    size_t rows = (size_t)x->n * ho * wo;
    int K = c->kh * c->kw * c->cin;
    const float *res = residual ? residual->data : NULL;
    // residual aliasing y: y already holds the residual, the GEMM accumulates onto it
    float beta = 0.0f;
    if (res == y->data) {
        beta = 1.0f;
        res = NULL;
    }
    if (c->wp) {
        double t0 = hook_start();
        conv_gemm(c, x, in_bias, y, ho, wo, beta != 0.0f, act >= 0 ? c->b : NULL, res, relu, scratch);
        hook_report(rows, c->cout, K, t0); // the full GEMM's shape: what cblas_sgemm would run
        return;
    }
    if (is_pointwise(c)) {
        const float *a = x->data;
        if (c->stride != 1) {
#pragma omp parallel for schedule(static) if (rows * (size_t)c->cin > 65536)
            for (size_t r = 0; r < rows; r++) {
                int ox = (int)(r % wo), oy = (int)((r / wo) % ho), n = (int)(r / ((size_t)wo * ho));
                memcpy(scratch + r * c->cin,
                       x->data + (((size_t)n * x->h + oy * c->stride) * x->w + ox * c->stride) * c->cin,
                       c->cin * sizeof(float));
            }
            a = scratch;
        }
        fr_gemm_nt((int)rows, c->cout, K, a, c->w, beta, y->data);
        if (act >= 0) epilogue(y->data, rows, c->cout, c->b, res, relu);
        return;
    }
    if (c->wu) { // fast mode (its 3x3 weights are gone: fr_wino_prepare)
        FR_ASSERT(act >= 0 && !res && beta == 0.0f);
        fr_wino_forward(c, x, in_bias, y, relu, scratch);
        return;
    }
    size_t ch = chunk_rows(c);
    for (size_t r0 = 0; r0 < rows; r0 += ch) {
        size_t r1 = r0 + ch < rows ? r0 + ch : rows;
        im2col(c, x, in_bias, ho, wo, r0, r1, scratch);
        float *yr = y->data + r0 * c->cout;
        fr_gemm_nt((int)(r1 - r0), c->cout, K, scratch, c->w, beta, yr);
        if (act >= 0) epilogue(yr, r1 - r0, c->cout, c->b, res ? res + r0 * c->cout : NULL, relu);
    }
}

void fr_conv_forward(const fr_conv *c, const fr_tensor *x, fr_tensor *y, const fr_tensor *residual, int relu,
                     float *scratch) {
    conv_forward(c, x, NULL, y, residual, relu ? 1 : 0, scratch);
}

void fr_conv_forward_raw(const fr_conv *c, const fr_tensor *x, fr_tensor *y, float *scratch) {
    conv_forward(c, x, NULL, y, NULL, -1, scratch);
}

void fr_conv_forward_act_in(const fr_conv *c, const fr_tensor *x, const float *in_bias, fr_tensor *y,
                            const fr_tensor *residual, int relu, float *scratch) {
    FR_ASSERT(!is_pointwise(c) && in_bias);
    conv_forward(c, x, in_bias, y, residual, relu ? 1 : 0, scratch);
}

void fr_maxpool3x3s2(const fr_tensor *x, fr_tensor *y) {
    int C = x->c;
    FR_ASSERT(y->h == fr_maxpool_out(x->h) && y->w == fr_maxpool_out(x->w) && y->c == C && y->n == x->n);
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < x->n; n++)
        for (int oy = 0; oy < y->h; oy++)
            for (int ox = 0; ox < y->w; ox++) {
                float *d = y->data + (((size_t)n * y->h + oy) * y->w + ox) * C;
                for (int k = 0; k < C; k++) d[k] = -INFINITY;
                for (int ky = 0; ky < 3; ky++) {
                    int iy = oy * 2 - 1 + ky;
                    if (iy < 0 || iy >= x->h) continue;
                    for (int kx = 0; kx < 3; kx++) {
                        int ix = ox * 2 - 1 + kx;
                        if (ix < 0 || ix >= x->w) continue;
                        const float *s = x->data + (((size_t)n * x->h + iy) * x->w + ix) * C;
                        for (int k = 0; k < C; k++) d[k] = s[k] > d[k] ? s[k] : d[k];
                    }
                }
            }
}

void fr_meanpool(const fr_tensor *x, float *out) {
    size_t hw = (size_t)x->h * x->w;
    int C = x->c;
#pragma omp parallel for schedule(static) if (x->n > 1)
    for (int n = 0; n < x->n; n++) {
        float *o = out + (size_t)n * C;
        const float *s = x->data + (size_t)n * hw * C;
        // float accumulation in pixel order, then one division: as torch's mean over (H, W)
        // does up to reassociation; the tests bound the difference
        for (int k = 0; k < C; k++) o[k] = 0;
        for (size_t p = 0; p < hw; p++)
            for (int k = 0; k < C; k++) o[k] += s[p * C + k];
        for (int k = 0; k < C; k++) o[k] /= (float)hw;
    }
}

void fr_linear(const float *x, int m, int k, const float *w, const float *b, int n, float *out) {
    fr_gemm_nt(m, n, k, x, w, 0.0f, out);
    if (b)
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) out[(size_t)i * n + j] += b[j];
}
