// roi.c - RoIAlign / RoIPool over NHWC features, vectorised over channels, threaded over RoIs
// (see roi.h for the exact semantics).
#include "roi.h"

#include "core/alloc.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#define MAX_OUT 1024
#define MAX_SAMPLES 4096 // RoIAlign samples per bin side

void fr_roi_params_from_config(const fr_config *cfg, fr_roi_params *p) {
    memset(p, 0, sizeof *p);
    p->op = cfg->roi_op;
    p->out = cfg->roi_size;
    p->spatial_scale = cfg->spatial_scale;
    p->sampling_ratio = cfg->sampling_ratio;
    p->aligned = cfg->aligned;
    p->stride = 1;
    p->threads = 0;
}

// One bilinear sample of an RoIAlign bin along one axis.
typedef struct {
    int valid;    // inside [-1, size]
    int lo, hi;   // pixel indices
    float l, h;   // weights of hi (l) and lo (h)
} axis_sample;

static void axis_prepare(float v, int size, axis_sample *s) {
    // torchvision pre_calc_for_bilinear_interpolate, one axis
    if (!(v >= -1.0 && v <= size)) {
        s->valid = 0;
        s->lo = s->hi = 0;
        s->l = s->h = 0.0f;
        return;
    }
    if (v <= 0) v = 0;
    int lo = (int)v, hi;
    if (lo >= size - 1) {
        hi = lo = size - 1;
        v = (float)lo;
    } else {
        hi = lo + 1;
    }
    s->valid = 1;
    s->lo = lo;
    s->hi = hi;
    s->l = v - (float)lo;
    s->h = 1.0f - s->l;
}

// The RoIAlign geometry of one box (torchvision's per-RoI quantities).
typedef struct {
    float sw, sh;   // roi_start_w, roi_start_h (feature pixels)
    float bw, bh;   // bin sizes
    int gw, gh;     // samples per bin side
    float count;    // max(gh * gw, 1)
} align_geom;

static void align_geometry(const fr_roi_params *p, const float *box, align_geom *g) {
    const int out = p->out;
    const float scale = p->spatial_scale;
    const float offset = p->aligned ? 0.5f : 0.0f;
    g->sw = box[0] * scale - offset;
    g->sh = box[1] * scale - offset;
    const float ew = box[2] * scale - offset, eh = box[3] * scale - offset;
    float rw = ew - g->sw, rh = eh - g->sh;
    if (!p->aligned) {
        rw = rw < 1.0f ? 1.0f : rw; // std::max(roi_width, 1)
        rh = rh < 1.0f ? 1.0f : rh;
    }
    g->bh = rh / (float)out;
    g->bw = rw / (float)out;
    g->gh = p->sampling_ratio > 0 ? p->sampling_ratio : (int)ceilf(rh / (float)out);
    g->gw = p->sampling_ratio > 0 ? p->sampling_ratio : (int)ceilf(rw / (float)out);
    if (g->gh < 0) g->gh = 0;
    if (g->gw < 0) g->gw = 0;
    // torchvision multiplies in int (UB past 2^31 samples); 64 bits keep huge RoIs defined
    const long long prod = (long long)g->gh * g->gw;
    g->count = (float)(prod > 1 ? prod : 1);
}

typedef struct {
    const fr_roi_params *p;
    const float *feat;
    int H, W, C;
    const float *boxes;
    int R;
    float *out;
    atomic_int next;      // next RoI to take
    int max_g;            // largest samples-per-side over the RoIs
    axis_sample *scratch; // per thread: 2 * so * max_g axis samples
} job;

// Per output row (column): its valid samples along one axis, in order.
static int axis_samples(float start, float bin, int g, int pos, int size, axis_sample *out) {
    int n = 0;
    for (int i = 0; i < g; i++) {
        // roi_start + ph * bin_size + (i + .5f) * bin_size / roi_bin_grid
        axis_prepare(start + (float)pos * bin + ((float)i + 0.5f) * bin / (float)g, size, out + n);
        if (out[n].valid) n++; // an invalid sample contributes exactly 0 (see roi.h)
    }
    return n;
}

// All bins of one RoI. For each bin, channels go in blocks of 4 vectors held in registers
// while the bin's samples stream by: sample value ((w1*v1 + w2*v2) + w3*v3) + w4*v4 is added
// to the accumulator in sample order and the sum divided by count, torchvision's per-channel
// arithmetic, so the result is bit-identical. (Bins stay outermost: pixels are C floats
// apart, 4 KiB for C = 1024, so a bin's few pixels are all L1 can hold at one channel offset.)
// Generated for SSE2 (4 lanes) and AVX2 (8 lanes, no FMA).
#define DEFINE_ALIGN_KERNEL(NAME, ATTR, LANES)                                                \
    ATTR static void NAME(const float *f, int W, int C, int so, const axis_sample *ys,        \
                          const int *ny, const axis_sample *xs, const int *nx, int g_h,       \
                          int g_w, float count, float *o) {                                   \
        typedef float vf __attribute__((vector_size(LANES * 4)));                             \
        enum { B = 4 * LANES };                                                                \
        const int pow2 = count == 1.0f || count == 2.0f || count == 4.0f || count == 8.0f ||   \
                         count == 16.0f || count == 32.0f || count == 64.0f;                  \
        const float inv = 1.0f / count; /* exact when count is a power of 2 */                \
        vf d;                                                                                  \
        for (int l = 0; l < LANES; l++) d[l] = pow2 ? inv : count;                             \
        for (int oy = 0; oy < so; oy++) {                                                      \
            const axis_sample *yr = ys + (size_t)oy * g_h;                                     \
            for (int ox = 0; ox < so; ox++) {                                                  \
                const axis_sample *xr = xs + (size_t)ox * g_w;                                 \
                float *ob = o + ((size_t)oy * so + ox) * C;                                    \
                int c0 = 0;                                                                    \
                for (; c0 + B <= C; c0 += B) {                                                 \
                    vf a[4];                                                                   \
                    memset(a, 0, sizeof a);                                                    \
                    for (int iy = 0; iy < ny[oy]; iy++) {                                      \
                        const axis_sample *y = yr + iy;                                        \
                        const float *rlo = f + (size_t)y->lo * W * C + c0;                     \
                        const float *rhi = f + (size_t)y->hi * W * C + c0;                     \
                        for (int ix = 0; ix < nx[ox]; ix++) {                                  \
                            const axis_sample *x = xr + ix;                                    \
                            const float s1 = y->h * x->h, s2 = y->h * x->l;                    \
                            const float s3 = y->l * x->h, s4 = y->l * x->l;                    \
                            vf w1, w2, w3, w4;                                                 \
                            for (int l = 0; l < LANES; l++) {                                  \
                                w1[l] = s1;                                                    \
                                w2[l] = s2;                                                    \
                                w3[l] = s3;                                                    \
                                w4[l] = s4;                                                    \
                            }                                                                  \
                            const float *p1 = rlo + (size_t)x->lo * C;                         \
                            const float *p2 = rlo + (size_t)x->hi * C;                         \
                            const float *p3 = rhi + (size_t)x->lo * C;                         \
                            const float *p4 = rhi + (size_t)x->hi * C;                         \
                            for (int u = 0; u < 4; u++) {                                      \
                                vf v1, v2, v3, v4;                                             \
                                memcpy(&v1, p1 + u * LANES, sizeof v1);                        \
                                memcpy(&v2, p2 + u * LANES, sizeof v2);                        \
                                memcpy(&v3, p3 + u * LANES, sizeof v3);                        \
                                memcpy(&v4, p4 + u * LANES, sizeof v4);                        \
                                a[u] = a[u] + (w1 * v1 + w2 * v2 + w3 * v3 + w4 * v4);         \
                            }                                                                  \
                        }                                                                      \
                    }                                                                          \
                    for (int u = 0; u < 4; u++) a[u] = pow2 ? a[u] * d : a[u] / d;             \
                    memcpy(ob + c0, a, sizeof a);                                              \
                }                                                                              \
                for (int c = c0; c < C; c++) {                                                 \
                    float a = 0.0f;                                                            \
                    for (int iy = 0; iy < ny[oy]; iy++) {                                      \
                        const axis_sample *y = yr + iy;                                        \
                        const float *r0 = f + (size_t)y->lo * W * C + c;                       \
                        const float *r1 = f + (size_t)y->hi * W * C + c;                       \
                        for (int ix = 0; ix < nx[ox]; ix++) {                                  \
                            const axis_sample *x = xr + ix;                                    \
                            a = a + (y->h * x->h * r0[(size_t)x->lo * C] +                     \
                                     y->h * x->l * r0[(size_t)x->hi * C] +                     \
                                     y->l * x->h * r1[(size_t)x->lo * C] +                     \
                                     y->l * x->l * r1[(size_t)x->hi * C]);                     \
                        }                                                                      \
                    }                                                                          \
                    ob[c] = a / count;                                                         \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    }

DEFINE_ALIGN_KERNEL(align_kernel_sse, , 4)
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_AVX2_KERNEL 1
DEFINE_ALIGN_KERNEL(align_kernel_avx2, __attribute__((target("avx2"))), 8)
#endif

static int have_avx2(void) {
#ifdef HAVE_AVX2_KERNEL
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
#else
    return 0;
#endif
}

static void align_one(const job *j, int r, axis_sample *scratch, int avx2) {
    const fr_roi_params *p = j->p;
    const int s = p->stride > 1 ? p->stride : 1, so = fr_roi_out_side(p);
    align_geom g;
    align_geometry(p, j->boxes + 4 * (size_t)r, &g);
    axis_sample *ys = scratch, *xs = scratch + (size_t)so * j->max_g;
    int ny[MAX_OUT], nx[MAX_OUT];
    for (int o = 0; o < so; o++) {
        ny[o] = axis_samples(g.sh, g.bh, g.gh, o * s, j->H, ys + (size_t)o * g.gh);
        nx[o] = axis_samples(g.sw, g.bw, g.gw, o * s, j->W, xs + (size_t)o * g.gw);
    }
    float *o = j->out + (size_t)r * so * so * j->C;
#ifdef HAVE_AVX2_KERNEL
    if (avx2) {
        align_kernel_avx2(j->feat, j->W, j->C, so, ys, ny, xs, nx, g.gh, g.gw, g.count, o);
        return;
    }
#endif
    (void)avx2;
    align_kernel_sse(j->feat, j->W, j->C, so, ys, ny, xs, nx, g.gh, g.gw, g.count, o);
}

// Max over one RoIPool bin for all channels: 4 vectors of running maxima in registers per
// channel block; (value > max) selects the value, as the kernel's `if (v > maxval)`.
#define DEFINE_POOL_KERNEL(NAME, ATTR, LANES)                                                 \
    ATTR static void NAME(const float *f, int W, int C, int hs, int he, int ws, int we,       \
                          float *m) {                                                          \
        typedef float vf __attribute__((vector_size(LANES * 4)));                             \
        typedef int32_t vi __attribute__((vector_size(LANES * 4)));                           \
        enum { B = 4 * LANES };                                                                \
        const int empty = he <= hs || we <= ws;                                                \
        const float init = empty ? 0.0f : -FLT_MAX;                                            \
        int c0 = 0;                                                                            \
        for (; c0 + B <= C; c0 += B) {                                                         \
            vf a[4];                                                                           \
            for (int u = 0; u < 4; u++)                                                        \
                for (int l = 0; l < LANES; l++) a[u][l] = init;                                \
            for (int y = hs; y < he; y++)                                                      \
                for (int x = ws; x < we; x++) {                                                \
                    const float *v = f + ((size_t)y * W + x) * C + c0;                         \
                    for (int u = 0; u < 4; u++) {                                              \
                        vf b;                                                                  \
                        memcpy(&b, v + u * LANES, sizeof b);                                   \
                        vi gt = b > a[u];                                                      \
                        a[u] = (vf)((gt & (vi)b) | (~gt & (vi)a[u]));                          \
                    }                                                                          \
                }                                                                              \
            memcpy(m + c0, a, sizeof a);                                                       \
        }                                                                                      \
        for (int c = c0; c < C; c++) {                                                         \
            float a = init;                                                                    \
            for (int y = hs; y < he; y++)                                                      \
                for (int x = ws; x < we; x++) {                                                \
                    const float v = f[((size_t)y * W + x) * C + c];                            \
                    if (v > a) a = v;                                                          \
                }                                                                              \
            m[c] = a;                                                                          \
        }                                                                                      \
    }

DEFINE_POOL_KERNEL(pool_kernel_sse, , 4)
#ifdef HAVE_AVX2_KERNEL
DEFINE_POOL_KERNEL(pool_kernel_avx2, __attribute__((target("avx2"))), 8)
#endif

static void pool_one(const job *j, int r, int avx2) {
    const fr_roi_params *p = j->p;
    const int H = j->H, W = j->W, C = j->C, out = p->out;
    const int s = p->stride > 1 ? p->stride : 1, so = fr_roi_out_side(p);
    const float *box = j->boxes + 4 * (size_t)r;
    const float scale = p->spatial_scale;
    const int sw = (int)roundf(box[0] * scale), sh = (int)roundf(box[1] * scale);
    const int ew = (int)roundf(box[2] * scale), eh = (int)roundf(box[3] * scale);
    const int rw = ew - sw + 1 > 1 ? ew - sw + 1 : 1, rh = eh - sh + 1 > 1 ? eh - sh + 1 : 1;
    const float bh = (float)rh / (float)out, bw = (float)rw / (float)out;
    float *o = j->out + (size_t)r * so * so * C;
    (void)avx2;
    for (int oy = 0; oy < so; oy++) {
        const int ph = oy * s;
        int hs = (int)floorf((float)ph * bh), he = (int)ceilf((float)(ph + 1) * bh);
        hs = hs + sh < 0 ? 0 : (hs + sh > H ? H : hs + sh);
        he = he + sh < 0 ? 0 : (he + sh > H ? H : he + sh);
        for (int ox = 0; ox < so; ox++) {
            const int pw = ox * s;
            int ws = (int)floorf((float)pw * bw), we = (int)ceilf((float)(pw + 1) * bw);
            ws = ws + sw < 0 ? 0 : (ws + sw > W ? W : ws + sw);
            we = we + sw < 0 ? 0 : (we + sw > W ? W : we + sw);
            float *m = o + ((size_t)oy * so + ox) * C;
#ifdef HAVE_AVX2_KERNEL
            if (avx2) {
                pool_kernel_avx2(j->feat, W, C, hs, he, ws, we, m);
                continue;
            }
#endif
            pool_kernel_sse(j->feat, W, C, hs, he, ws, we, m);
        }
    }
}

typedef struct {
    job *j;
    axis_sample *scratch;
} worker_arg;

static void *worker(void *arg) {
    worker_arg *w = arg;
    job *j = w->j;
    const int avx2 = have_avx2();
    for (;;) {
        int r = atomic_fetch_add(&j->next, 1);
        if (r >= j->R) break;
        if (j->p->op == FR_ROI_POOL) pool_one(j, r, avx2);
        else align_one(j, r, w->scratch, avx2);
    }
    return NULL;
}

fr_status fr_roi_extract(const fr_roi_params *p, const fr_tensor *feat, const float *boxes,
                         int R, float *out, fr_err *err) {
    if (p->op != FR_ROI_ALIGN && p->op != FR_ROI_POOL)
        return fr_fail(err, FR_ERR_INVALID, "roi: unknown op %d", (int)p->op);
    if (p->out < 1 || p->out > MAX_OUT)
        return fr_fail(err, FR_ERR_INVALID, "roi: output size %d not in 1..%d", p->out, MAX_OUT);
    if (!(p->spatial_scale > 0) || !isfinite(p->spatial_scale))
        return fr_fail(err, FR_ERR_INVALID, "roi: spatial_scale %g must be > 0",
                       p->spatial_scale);
    if (p->sampling_ratio > 64)
        return fr_fail(err, FR_ERR_INVALID, "roi: sampling_ratio %d > 64", p->sampling_ratio);
    if (p->stride > p->out)
        return fr_fail(err, FR_ERR_INVALID, "roi: stride %d > output size %d", p->stride, p->out);
    if (!feat || feat->n != 1 || feat->h < 1 || feat->w < 1 || feat->c < 1 || !feat->data)
        return fr_fail(err, FR_ERR_INVALID, "roi: feature map must be (1, H, W, C), got (%d, %d, %d, %d)",
                       feat ? feat->n : 0, feat ? feat->h : 0, feat ? feat->w : 0,
                       feat ? feat->c : 0);
    if (R < 0) return fr_fail(err, FR_ERR_INVALID, "roi: %d boxes", R);
    if (R == 0) return FR_OK;
    if (!boxes || !out) return fr_fail(err, FR_ERR_INVALID, "roi: NULL boxes or output");
    for (int r = 0; r < R; r++)
        for (int k = 0; k < 4; k++) {
            float v = boxes[4 * (size_t)r + k];
            if (!isfinite(v) || fabsf(v) > FR_ROI_MAX_COORD)
                return fr_fail(err, FR_ERR_INVALID, "roi: box %d coordinate %d is %g", r, k,
                               (double)v);
        }
    job j = {.p = p, .feat = feat->data, .H = feat->h, .W = feat->w, .C = feat->c,
             .boxes = boxes, .R = R, .out = out};
    atomic_init(&j.next, 0);
    enum { MAX_THREADS = 64 };
    int nth = p->threads;
#ifdef _OPENMP
    if (nth <= 0) nth = omp_in_parallel() ? 1 : omp_get_max_threads();
#endif
    if (nth < 1) nth = 1;
    if (nth > MAX_THREADS) nth = MAX_THREADS;
    if (nth > R) nth = R;
    size_t per = 0;
    if (p->op == FR_ROI_ALIGN) {
        for (int r = 0; r < R; r++) {
            align_geom g;
            align_geometry(p, boxes + 4 * (size_t)r, &g);
            if (g.gh > j.max_g) j.max_g = g.gh;
            if (g.gw > j.max_g) j.max_g = g.gw;
        }
        if (j.max_g > MAX_SAMPLES)
            return fr_fail(err, FR_ERR_INVALID,
                           "roi: a box needs %d samples per bin side (limit %d): box or "
                           "spatial_scale too large", j.max_g, MAX_SAMPLES);
        per = 2 * (size_t)fr_roi_out_side(p) * (size_t)(j.max_g > 0 ? j.max_g : 1);
        j.scratch = fr_malloc((size_t)nth * per * sizeof(axis_sample));
        if (!j.scratch)
            return fr_fail(err, FR_ERR_NOMEM, "roi: out of memory (%d samples per bin side)",
                           j.max_g);
    }
    worker_arg wa[MAX_THREADS];
    for (int t = 0; t < nth; t++) wa[t] = (worker_arg){&j, j.scratch ? j.scratch + t * per : NULL};
#ifdef _OPENMP
    // The engine's OpenMP pool (shared with OpenBLAS); fewer threads than asked is fine: every
    // worker takes RoIs until none are left.
#pragma omp parallel num_threads(nth) if (nth > 1)
    worker(&wa[omp_get_thread_num()]);
#else
    pthread_t th[MAX_THREADS];
    int started = 0;
    for (int t = 1; t < nth; t++) {
        if (pthread_create(&th[t], NULL, worker, &wa[t]) != 0) break; // the rest runs here
        started = t;
    }
    worker(&wa[0]);
    for (int t = 1; t <= started; t++) pthread_join(th[t], NULL);
#endif
    fr_free(j.scratch);
    return FR_OK;
}
