// test_roi.c - RoIAlign / RoIPool against torchvision (fixtures from tools/reference/fx_ops.py),
// a naive per-channel transcription, the ONNX RoiAlign vectors, strided output, threads,
// bad inputs and speed.
#include "core/safetensors.h"
#include "core/timer.h"
#include "harness.h"
#include "roi/roi.h"

#include <float.h>
#include <stdint.h>
#include <stdlib.h>

static fr_st_file g_fx;
static int g_fx_open;

static int fx_open(const char *file) {
    if (g_fx_open) fr_st_close(&g_fx);
    g_fx_open = 0;
    const char *dir = getenv("FIXTURES");
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir ? dir : "build/fixtures", file);
    fr_err e = {0};
    if (fr_st_open(&g_fx, path, &e) != FR_OK) {
        fprintf(stderr, "  fixture %s: %s\n", path, e.msg);
        return 0;
    }
    g_fx_open = 1;
    return 1;
}

static const float *fx_f32(const char *name, size_t *numel, const int64_t **shape) {
    const fr_st_tensor *t = g_fx_open ? fr_st_find(&g_fx, name) : NULL;
    if (!t || t->dtype != FR_DT_F32) {
        fprintf(stderr, "  fixture tensor %s missing or not F32\n", name);
        return NULL;
    }
    if (numel) *numel = t->numel;
    if (shape) *shape = t->shape;
    return (const float *)(g_fx.buf + g_fx.data_start + t->offset);
}

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static double urand(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) / 9007199254740992.0;
}

// torchvision's roi_align_forward_kernel_impl for channel c, written out literally (NHWC
// indexing), including out-of-range samples weighted 0 against pixel (0, 0).
static float naive_align(const float *f, int H, int W, int C, int c, const float *box, float scale,
                         int out, int sr, int aligned, int ph, int pw) {
    float off = aligned ? 0.5f : 0.0f;
    float sw = box[0] * scale - off, sh = box[1] * scale - off;
    float rw = box[2] * scale - off - sw, rh = box[3] * scale - off - sh;
    if (!aligned) {
        if (rw < 1.0f) rw = 1.0f;
        if (rh < 1.0f) rh = 1.0f;
    }
    float bh = rh / (float)out, bw = rw / (float)out;
    int gh = sr > 0 ? sr : (int)ceilf(rh / out), gw = sr > 0 ? sr : (int)ceilf(rw / out);
    float count = (float)(gh * gw > 1 ? gh * gw : 1);
    float acc = 0.0f;
    for (int iy = 0; iy < gh; iy++) {
        float yy = sh + ph * bh + (float)(iy + .5f) * bh / (float)gh;
        for (int ix = 0; ix < gw; ix++) {
            float x = sw + pw * bw + (float)(ix + .5f) * bw / (float)gw, y = yy;
            int p1 = 0, p2 = 0, p3 = 0, p4 = 0;
            float w1 = 0, w2 = 0, w3 = 0, w4 = 0;
            if (y >= -1.0 && y <= H && x >= -1.0 && x <= W) {
                if (y <= 0) y = 0;
                if (x <= 0) x = 0;
                int yl = (int)y, xl = (int)x, yh, xh;
                if (yl >= H - 1) {
                    yh = yl = H - 1;
                    y = (float)yl;
                } else {
                    yh = yl + 1;
                }
                if (xl >= W - 1) {
                    xh = xl = W - 1;
                    x = (float)xl;
                } else {
                    xh = xl + 1;
                }
                float ly = y - yl, lx = x - xl, hy = 1. - ly, hx = 1. - lx;
                w1 = hy * hx, w2 = hy * lx, w3 = ly * hx, w4 = ly * lx;
                p1 = yl * W + xl, p2 = yl * W + xh, p3 = yh * W + xl, p4 = yh * W + xh;
            }
            acc += w1 * f[(size_t)p1 * C + c] + w2 * f[(size_t)p2 * C + c] +
                   w3 * f[(size_t)p3 * C + c] + w4 * f[(size_t)p4 * C + c];
        }
    }
    return acc / count;
}

static float naive_pool(const float *f, int H, int W, int C, int c, const float *box, float scale,
                        int out, int ph, int pw) {
    int sw = (int)roundf(box[0] * scale), sh = (int)roundf(box[1] * scale);
    int rw = (int)roundf(box[2] * scale) - sw + 1, rh = (int)roundf(box[3] * scale) - sh + 1;
    if (rw < 1) rw = 1;
    if (rh < 1) rh = 1;
    float bh = (float)rh / out, bw = (float)rw / out;
    int hs = (int)floorf(ph * bh) + sh, he = (int)ceilf((ph + 1) * bh) + sh;
    int ws = (int)floorf(pw * bw) + sw, we = (int)ceilf((pw + 1) * bw) + sw;
    hs = hs < 0 ? 0 : hs > H ? H : hs;
    he = he < 0 ? 0 : he > H ? H : he;
    ws = ws < 0 ? 0 : ws > W ? W : ws;
    we = we < 0 ? 0 : we > W ? W : we;
    if (he <= hs || we <= ws) return 0.0f;
    float m = -FLT_MAX;
    for (int y = hs; y < he; y++)
        for (int x = ws; x < we; x++)
            if (f[((size_t)y * W + x) * C + c] > m) m = f[((size_t)y * W + x) * C + c];
    return m;
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d; // NaN shows up as NaN
    }
    return m;
}

TEST(test_vs_torchvision) {
    CHECK(fx_open("ops_roi.safetensors"));
    const int64_t *fs = NULL, *bs = NULL;
    size_t nf = 0, nb = 0;
    const float *feat = fx_f32("roi_feat", &nf, &fs), *boxes = fx_f32("roi_boxes", &nb, &bs);
    CHECK(feat && boxes);
    if (!feat || !boxes) return;
    fr_tensor t = {(float *)feat, 1, (int)fs[1], (int)fs[2], (int)fs[3]};
    const int R = (int)bs[0], C = t.c;
    for (int out = 7; out <= 14; out += 7)
        for (int op = 0; op < 2; op++)
            for (int aligned = 0; aligned < 2; aligned++)
                for (int sr = 0; sr <= 2; sr += 2) {
                    if (op == 1 && (aligned || sr)) continue;
                    char name[64];
                    if (op == 0) snprintf(name, sizeof name, "align_o%d_a%d_s%d", out, aligned, sr);
                    else snprintf(name, sizeof name, "pool_o%d", out);
                    size_t ne = 0;
                    const float *ref = fx_f32(name, &ne, NULL);
                    CHECK(ref && ne == (size_t)R * out * out * C);
                    if (!ref) continue;
                    fr_roi_params p = {op ? FR_ROI_POOL : FR_ROI_ALIGN, out, 1.0f / 16, sr, aligned, 1, 1};
                    float *y = malloc(ne * sizeof *y);
                    fr_err e = {0};
                    CHECK(fr_roi_extract(&p, &t, boxes, R, y, &e) == FR_OK);
                    double d = max_abs_diff(y, ref, ne);
                    CHECKF(d <= 1e-5, "%s: max |diff| %g", name, d);
                    printf("  %s vs torchvision: max |diff| %g\n", name, d);
                    // stride 2 = the even bins of the full output, bit for bit; 2 threads = 1
                    fr_roi_params p2 = p;
                    p2.stride = 2;
                    p2.threads = 2;
                    int so = fr_roi_out_side(&p2);
                    float *y2 = malloc((size_t)R * so * so * C * sizeof *y2);
                    CHECK(fr_roi_extract(&p2, &t, boxes, R, y2, &e) == FR_OK);
                    int bad = 0;
                    for (int r = 0; r < R; r++)
                        for (int i = 0; i < so; i++)
                            for (int j = 0; j < so; j++)
                                bad += memcmp(y2 + (((size_t)r * so + i) * so + j) * C,
                                              y + (((size_t)r * out + 2 * i) * out + 2 * j) * C,
                                              C * sizeof(float)) != 0;
                    CHECKF(bad == 0, "%s stride 2: %d bins differ", name, bad);
                    free(y);
                    free(y2);
                }
}

TEST(test_vs_naive) {
    const int H = 13, W = 17;
    for (int trial = 0; trial < 8; trial++) {
        const int C = 1 + trial * 5, R = 25, out = 3 + trial % 5;
        float *f = malloc((size_t)H * W * C * sizeof *f), *boxes = malloc(R * 4 * sizeof *boxes);
        for (int i = 0; i < H * W * C; i++) f[i] = (float)(urand() * 2 - 1);
        for (int r = 0; r < R; r++) {
            float x = (float)(urand() * 300 - 40), y = (float)(urand() * 240 - 40);
            boxes[4 * r] = x;
            boxes[4 * r + 1] = y;
            boxes[4 * r + 2] = x + (float)(urand() * 250 - 10);
            boxes[4 * r + 3] = y + (float)(urand() * 250 - 10);
        }
        fr_tensor t = {f, 1, H, W, C};
        float *y = malloc((size_t)R * out * out * C * sizeof *y);
        for (int mode = 0; mode < 5; mode++) {
            int op = mode == 4, aligned = mode & 1, sr = mode & 2 ? 3 : 0;
            fr_roi_params p = {op ? FR_ROI_POOL : FR_ROI_ALIGN, out, 1.0f / 16, sr, aligned, 1, trial % 4};
            fr_err e = {0};
            CHECK(fr_roi_extract(&p, &t, boxes, R, y, &e) == FR_OK);
            int bad = 0;
            for (int r = 0; r < R; r++)
                for (int ph = 0; ph < out; ph++)
                    for (int pw = 0; pw < out; pw++)
                        for (int c = 0; c < C; c++) {
                            float v = op ? naive_pool(f, H, W, C, c, boxes + 4 * r, 1.0f / 16, out, ph, pw)
                                         : naive_align(f, H, W, C, c, boxes + 4 * r, 1.0f / 16, out,
                                                       sr, aligned, ph, pw);
                            bad += v != y[(((size_t)r * out + ph) * out + pw) * C + c];
                        }
            CHECKF(bad == 0, "trial %d mode %d: %d values differ from the naive version", trial, mode, bad);
        }
        free(f);
        free(boxes);
        free(y);
    }
}

TEST(test_onnx_roialign) {
    CHECK(fx_open("ops_onnx.safetensors"));
    const char *modes[] = {"aligned_false", "aligned_true"};
    for (int m = 0; m < 2; m++) {
        char name[64];
        const int64_t *xs = NULL, *rs = NULL;
        size_t n = 0, ny = 0;
        snprintf(name, sizeof name, "onnx_%s_x", modes[m]);
        const float *x = fx_f32(name, &n, &xs);
        snprintf(name, sizeof name, "onnx_%s_rois", modes[m]);
        const float *rois = fx_f32(name, &n, &rs);
        snprintf(name, sizeof name, "onnx_%s_y", modes[m]);
        const float *ref = fx_f32(name, &ny, NULL);
        snprintf(name, sizeof name, "onnx_%s_attr", modes[m]);
        const float *attr = fx_f32(name, &n, NULL);
        CHECK(x && rois && ref && attr);
        if (!(x && rois && ref && attr)) continue;
        CHECK(attr[4] == (float)m); // output_half_pixel = aligned false, half_pixel = true
        fr_tensor t = {(float *)x, 1, (int)xs[1], (int)xs[2], (int)xs[3]};
        fr_roi_params p = {FR_ROI_ALIGN, (int)attr[0], attr[3], (int)attr[2], (int)attr[4], 1, 1};
        CHECK(attr[0] == attr[1]);
        float *y = malloc(ny * sizeof *y);
        fr_err e = {0};
        CHECK(fr_roi_extract(&p, &t, rois, (int)rs[0], y, &e) == FR_OK);
        double d = max_abs_diff(y, ref, ny);
        printf("  ONNX RoiAlign %s: max |diff| %g (expected values have 4 decimals)\n", modes[m], d);
        CHECKF(d <= 1e-4, "ONNX %s: max |diff| %g", modes[m], d);
        free(y);
    }
}

TEST(test_bad_inputs) {
    float f[2 * 2 * 3] = {0};
    fr_tensor t = {f, 1, 2, 2, 3};
    float box[4] = {0, 0, 10, 10}, out[7 * 7 * 3];
    fr_roi_params p = {FR_ROI_ALIGN, 7, 1.0f / 16, 0, 1, 1, 1};
    fr_err e = {0};
    CHECK(fr_roi_extract(&p, &t, box, 1, out, &e) == FR_OK);
    CHECK(fr_roi_extract(&p, &t, box, 0, NULL, &e) == FR_OK);
    fr_roi_params q = p;
    q.out = 0;
    CHECK(fr_roi_extract(&q, &t, box, 1, out, &e) == FR_ERR_INVALID);
    q = p;
    q.spatial_scale = NAN;
    CHECK(fr_roi_extract(&q, &t, box, 1, out, &e) == FR_ERR_INVALID);
    q = p;
    q.op = (fr_roi_op)7;
    CHECK(fr_roi_extract(&q, &t, box, 1, out, &e) == FR_ERR_INVALID);
    q = p;
    q.stride = 9;
    CHECK(fr_roi_extract(&q, &t, box, 1, out, &e) == FR_ERR_INVALID);
    fr_tensor t2 = {f, 2, 2, 2, 3};
    CHECK(fr_roi_extract(&p, &t2, box, 1, out, &e) == FR_ERR_INVALID);
    float bad[4] = {0, NAN, 3, 3};
    CHECK(fr_roi_extract(&p, &t, bad, 1, out, &e) == FR_ERR_INVALID);
    CHECK(strstr(e.msg, "box 0") != NULL);
    float huge[4] = {0, 0, 3e9f, 3};
    CHECK(fr_roi_extract(&p, &t, huge, 1, out, &e) == FR_ERR_INVALID);
    CHECK(fr_roi_extract(&p, &t, box, -1, out, &e) == FR_ERR_INVALID);
    q = p;
    q.spatial_scale = 1000.0f;
    q.out = 1;
    float big[4] = {0, 0, 90000, 90000};
    CHECK(fr_roi_extract(&q, &t, big, 1, out, &e) == FR_ERR_INVALID);
    CHECK(strstr(e.msg, "samples") != NULL);
}

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

// 1000 RoIs of proposal-like sizes from a 50 x 84 x 1024 map (an 800 x 1333 image), 14 x 14
// (100 RoIs and no time limit under the sanitizers).
TEST(test_speed) {
    const int H = 50, W = 84, C = 1024, R = SANITIZED ? 100 : 1000;
    float *f = malloc((size_t)H * W * C * sizeof *f), *boxes = malloc(R * 4 * sizeof *boxes);
    for (size_t i = 0; i < (size_t)H * W * C; i++) f[i] = (float)urand();
    for (int r = 0; r < R; r++) {
        float w = (float)(32 * exp(urand() * log(20.0))), h = (float)(32 * exp(urand() * log(20.0)));
        float x = (float)(urand() * (1333 - 16)), y = (float)(urand() * (800 - 16));
        boxes[4 * r] = x;
        boxes[4 * r + 1] = y;
        boxes[4 * r + 2] = fminf(x + w, 1333);
        boxes[4 * r + 3] = fminf(y + h, 800);
    }
    fr_tensor t = {f, 1, H, W, C};
    float *y = malloc((size_t)R * 14 * 14 * C * sizeof *y);
    for (int stride = 1; stride <= 2; stride++)
        for (int threads = 1; threads <= 2; threads++) {
            fr_roi_params p = {FR_ROI_ALIGN, 14, 1.0f / 16, 0, 1, stride, threads};
            double best = 1e9;
            for (int rep = 0; rep < 3; rep++) { // the first run also faults the output pages in
                fr_err e = {0};
                double t0 = fr_time_ms();
                CHECK(fr_roi_extract(&p, &t, boxes, R, y, &e) == FR_OK);
                double dt = fr_time_ms() - t0;
                if (dt < best) best = dt;
            }
            printf("  roi_align %d x 14x14 x 1024 (stride %d, %d thread%s): %.1f ms\n", R, stride,
                   threads, threads > 1 ? "s" : "", best);
            CHECK(SANITIZED || best < 5000); // loose: a shared machine
        }
    fr_roi_params p = {FR_ROI_POOL, 14, 1.0f / 16, 0, 0, 1, 2};
    fr_err e = {0};
    double t0 = fr_time_ms();
    CHECK(fr_roi_extract(&p, &t, boxes, R, y, &e) == FR_OK);
    printf("  roi_pool %d x 14x14 x 1024 (2 threads): %.1f ms\n", R, fr_time_ms() - t0);
    free(f);
    free(boxes);
    free(y);
}

int main(void) {
    RUN(test_vs_torchvision);
    RUN(test_vs_naive);
    RUN(test_onnx_roialign);
    RUN(test_bad_inputs);
    RUN(test_speed);
    if (g_fx_open) fr_st_close(&g_fx);
    return harness_done(__FILE__);
}
