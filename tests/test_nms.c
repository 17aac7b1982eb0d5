// test_nms.c - reference orderings (torch sort/topk, numpy argsort), torch's exp, NMS and
// torchvision batched_nms against fixtures (tools/reference/fx_ops.py), the naive NMS, and
// the ONNX NonMaxSuppression test vectors.
#include "core/alloc.h"
#include "core/nms.h"
#include "core/safetensors.h"
#include "core/timer.h"
#include "harness.h"

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

// Raw data of a fixture tensor (NULL, with a message, if absent or of another dtype).
static const void *fx_get(const char *name, fr_dtype dt, size_t *numel, int quiet) {
    const fr_st_tensor *t = g_fx_open ? fr_st_find(&g_fx, name) : NULL;
    if (!t || t->dtype != dt) {
        if (!quiet) fprintf(stderr, "  fixture tensor %s missing or not %s\n", name, fr_dtype_name(dt));
        return NULL;
    }
    if (numel) *numel = t->numel;
    return g_fx.buf + g_fx.data_start + t->offset;
}

static uint64_t g_rng = 88172645463325252ull;
static double urand(void) { // xorshift64, fixed seed
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) / 9007199254740992.0;
}

TEST(test_orderings_vs_torch_numpy) {
    CHECK(fx_open("ops_order.safetensors"));
    for (int c = 0; c < 7; c++) {
        char name[64];
        size_t n = 0, m = 0;
        snprintf(name, sizeof name, "sort%d_v", c);
        const float *v = fx_get(name, FR_DT_F32, &n, 0);
        snprintf(name, sizeof name, "sort%d_idx", c);
        const int64_t *idx = fx_get(name, FR_DT_I64, &m, 0);
        CHECK(v && idx && m == n);
        if (!v || !idx) continue;
        fr_scored *a = malloc(n * sizeof *a);
        int *o = malloc(n * sizeof *o);
        for (size_t i = 0; i < n; i++) a[i] = (fr_scored){v[i], (int)i};
        fr_sort_desc_torch(a, (int)n);
        int bad = 0;
        for (size_t i = 0; i < n; i++) bad += a[i].index != idx[i];
        CHECKF(bad == 0, "sort case %d: %d positions differ", c, bad);
        for (int kk = 0;; kk++) {
            snprintf(name, sizeof name, "sort%d_topk%d", c, kk);
            size_t k = 0;
            const int64_t *tk = fx_get(name, FR_DT_I64, &k, 1);
            if (!tk) {
                CHECK(kk > 0);
                break;
            }
            for (size_t i = 0; i < n; i++) a[i] = (fr_scored){v[i], (int)i};
            fr_topk_torch(a, (int)n, (int)k);
            bad = 0;
            for (size_t i = 0; i < k; i++) bad += a[i].index != tk[i];
            CHECKF(bad == 0, "topk case %d k=%zu: %d positions differ", c, k, bad);
        }
        snprintf(name, sizeof name, "sort%d_npdesc", c);
        const int64_t *np = fx_get(name, FR_DT_I64, &m, 0);
        CHECK(np && m == n);
        if (np) {
            fr_argsort_desc_numpy(v, (int)n, o);
            bad = 0;
            for (size_t i = 0; i < n; i++) bad += o[i] != np[i];
            CHECKF(bad == 0, "numpy argsort case %d: %d positions differ", c, bad);
        }
        free(a);
        free(o);
    }
}

TEST(test_exp_and_softmax_inputs) {
    CHECK(fx_open("ops_order.safetensors"));
    size_t n = 0, m = 0;
    const float *x = fx_get("exp_x", FR_DT_F32, &n, 0), *y = fx_get("exp_y", FR_DT_F32, &m, 0);
    CHECK(x && y && n == m && n > 20000);
    int bad = 0;
    for (size_t i = 0; x && y && i < n; i++) {
        float e = fr_expf_torch(x[i]);
        if (!(e == y[i])) bad++;
        if (bad == 1 && !(e == y[i])) fprintf(stderr, "  exp(%.9g) = %.9g, torch %.9g\n", x[i], e, y[i]);
    }
    CHECKF(bad == 0, "%d of %zu exp values differ from torch.exp", bad, n);
    CHECK(fr_expf_torch(NAN) != fr_expf_torch(NAN));
    CHECK(fr_expf_torch(101.0f) == INFINITY);
    CHECK(fr_expf_torch(-105.0f) == 0.0f);
    CHECK(fr_expf_torch(0.0f) == 1.0f);
}

TEST(test_decimal_of_float) {
    CHECK(fr_decimal_of_float(0.3f) == 0.3);
    CHECK(fr_decimal_of_float(0.7f) == 0.7);
    CHECK(fr_decimal_of_float(0.05f) == 0.05);
    CHECK(fr_decimal_of_float(1.0f / 3.0f) == (double)(1.0f / 3.0f) || (float)fr_decimal_of_float(1.0f / 3.0f) == 1.0f / 3.0f);
    CHECK(fr_decimal_of_float(0.5f) == 0.5);
}

static int *to_int(const int64_t *a, size_t n) {
    int *o = malloc((n ? n : 1) * sizeof *o);
    for (size_t i = 0; i < n; i++) o[i] = (int)a[i];
    return o;
}

static int same_list(const int *a, int na, const int64_t *b, size_t nb) {
    if ((size_t)na != nb) return 0;
    for (int i = 0; i < na; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

TEST(test_nms_vs_torchvision) {
    CHECK(fx_open("ops_nms.safetensors"));
    for (int c = 0; c < 9; c++) {
        char name[64];
        size_t n = 0, nb = 0, nc = 0, nt = 0, nk = 0, nbk = 0, np1 = 0;
#define GET(var, suffix, dt, cnt, quiet)                                                   \
    snprintf(name, sizeof name, "nms%d_" suffix, c);                                       \
    const void *var = fx_get(name, dt, cnt, quiet)
        GET(boxes, "boxes", FR_DT_F32, &nb, 0);
        GET(scores, "scores", FR_DT_F32, &n, 0);
        GET(classes, "classes", FR_DT_I64, &nc, 0);
        GET(thr, "thr", FR_DT_F32, &nt, 0);
        GET(keep, "keep", FR_DT_I64, &nk, 0);
        GET(bkeep, "bkeep", FR_DT_I64, &nbk, 0);
        GET(p1keep, "p1keep", FR_DT_I64, &np1, 1);
#undef GET
        CHECK(boxes && scores && classes && thr && keep && bkeep && nb == 4 * n && nc == n);
        if (!(boxes && scores && classes && thr && keep && bkeep)) continue;
        const float *b = boxes, *s = scores;
        const double t = fr_decimal_of_float(*(const float *)thr);
        fr_scored *a = malloc(n * sizeof *a);
        int *order = malloc(n * sizeof *order), *out = malloc(n * sizeof *out);
        int *naive = malloc(n * sizeof *naive);
        int *cls = to_int(classes, n);
        for (size_t i = 0; i < n; i++) a[i] = (fr_scored){s[i], (int)i};
        fr_sort_desc_stable(a, (int)n); // torchvision's nms kernel sorts stably
        for (size_t i = 0; i < n; i++) order[i] = a[i].index;
        int k = -1;
        fr_err e = {0};
        CHECK(fr_nms(b, order, (int)n, t, 0, -1, out, &k, &e) == FR_OK);
        CHECKF(same_list(out, k, keep, nk), "case %d: nms keeps %d, torchvision %zu", c, k, nk);
        CHECK(fr_nms_naive(b, order, (int)n, t, 0, -1, naive) == k && memcmp(naive, out, k * sizeof(int)) == 0);
        CHECK(fr_batched_nms_torchvision(b, s, cls, (int)n, t, -1, out, &k, &e) == FR_OK);
        CHECKF(same_list(out, k, bkeep, nbk), "case %d: batched_nms keeps %d, torchvision %zu", c, k, nbk);
        // a prefix request gives the prefix
        int k2 = -1;
        CHECK(fr_batched_nms_torchvision(b, s, cls, (int)n, t, 5, out, &k2, &e) == FR_OK);
        CHECK(k2 == (nbk < 5 ? (int)nbk : 5) && same_list(out, k2, bkeep, (size_t)k2));
        if (p1keep) {
            fr_argsort_desc_numpy(s, (int)n, order);
            CHECK(fr_nms(b, order, (int)n, (double)*(const float *)thr, 1, -1, out, &k, &e) == FR_OK);
            CHECKF(same_list(out, k, p1keep, np1), "case %d: +1 nms keeps %d, reference %zu", c, k, np1);
        }
        free(a);
        free(order);
        free(out);
        free(naive);
        free(cls);
    }
}

// Random boxes on a coarse grid (many exact IoU values), scores with ties.
static void random_set(int n, float *boxes, float *scores, int levels) {
    for (int i = 0; i < n; i++) {
        float x = (float)(int)(urand() * 60) * 4, y = (float)(int)(urand() * 60) * 4;
        float w = (float)(1 + (int)(urand() * 30)) * 4, h = (float)(1 + (int)(urand() * 30)) * 4;
        boxes[4 * i] = x;
        boxes[4 * i + 1] = y;
        boxes[4 * i + 2] = x + w;
        boxes[4 * i + 3] = y + h;
        scores[i] = levels ? (float)(int)(urand() * levels) : (float)urand();
    }
}

TEST(test_nms_vs_naive) {
    enum { N = 1500 };
    float *b = malloc(4 * N * sizeof *b), *s = malloc(N * sizeof *s);
    int *order = malloc(N * sizeof *order), *k1 = malloc(N * sizeof *k1), *k2 = malloc(N * sizeof *k2);
    const double thr[] = {0.0, 0.3, 0.5, 0.7, 1.0};
    for (int trial = 0; trial < 12; trial++) {
        int n = trial == 0 ? 0 : trial == 1 ? 1 : (int)(urand() * N);
        random_set(n, b, s, trial % 2 ? 7 : 0);
        fr_argsort_desc_numpy(s, n, order);
        for (int p1 = 0; p1 < 2; p1++)
            for (int ti = 0; ti < 5; ti++)
                for (int mk = -1; mk <= 20; mk += 21) {
                    int nk = -1;
                    fr_err e = {0};
                    CHECK(fr_nms(b, order, n, thr[ti], p1, mk, k1, &nk, &e) == FR_OK);
                    int nn = fr_nms_naive(b, order, n, thr[ti], p1, mk, k2);
                    CHECKF(nk == nn && memcmp(k1, k2, nk * sizeof(int)) == 0,
                           "trial %d p1 %d thr %g max %d: %d vs naive %d", trial, p1, thr[ti], mk, nk, nn);
                }
    }
    free(b);
    free(s);
    free(order);
    free(k1);
    free(k2);
}

// The single-class fast path (NMS stopped after max_keep + 1) must agree with the full run.
TEST(test_batched_single_class_prefix) {
    enum { N = 3000 };
    float *b = malloc(4 * N * sizeof *b), *s = malloc(N * sizeof *s);
    int *full = malloc(N * sizeof *full), *part = malloc(N * sizeof *part);
    for (int trial = 0; trial < 6; trial++) {
        random_set(N, b, s, trial % 2 ? 40 : 0);
        int nf = 0, np = 0;
        fr_err e = {0};
        CHECK(fr_batched_nms_torchvision(b, s, NULL, N, 0.7, -1, full, &nf, &e) == FR_OK);
        for (int mk = 1; mk < 400; mk = mk * 3 + 1) {
            CHECK(fr_batched_nms_torchvision(b, s, NULL, N, 0.7, mk, part, &np, &e) == FR_OK);
            CHECK(np == (nf < mk ? nf : mk) && memcmp(part, full, np * sizeof(int)) == 0);
        }
    }
    free(b);
    free(s);
    free(full);
    free(part);
}

TEST(test_onnx_nonmaxsuppression) {
    CHECK(fx_open("ops_onnx.safetensors"));
    const int64_t *cnt = fx_get("onnx_nms_count", FR_DT_I64, NULL, 0);
    CHECK(cnt && *cnt >= 9);
    for (int k = 0; cnt && k < *cnt; k++) {
        char name[64];
        size_t nb = 0, ns = 0, np = 0, nsel = 0;
        snprintf(name, sizeof name, "onnx_nms%d_boxes", k);
        const float *boxes = fx_get(name, FR_DT_F32, &nb, 0);
        snprintf(name, sizeof name, "onnx_nms%d_scores", k);
        const float *scores = fx_get(name, FR_DT_F32, &ns, 0);
        snprintf(name, sizeof name, "onnx_nms%d_params", k);
        const float *par = fx_get(name, FR_DT_F32, &np, 0);
        snprintf(name, sizeof name, "onnx_nms%d_selected", k);
        const int64_t *sel = fx_get(name, FR_DT_I64, &nsel, 0);
        CHECK(boxes && scores && par && sel && np == 3);
        if (!(boxes && scores && par && sel)) continue;
        snprintf(name, sizeof name, "onnx_nms%d_boxes", k);
        const fr_st_tensor *tb = fr_st_find(&g_fx, name);
        snprintf(name, sizeof name, "onnx_nms%d_scores", k);
        const fr_st_tensor *ts = fr_st_find(&g_fx, name);
        const int B = (int)tb->shape[0], S = (int)tb->shape[1], C = (int)ts->shape[1];
        const int maxout = (int)par[0];
        const double iou = fr_decimal_of_float(par[1]);
        int got[64][3], ng = 0;
        for (int bi = 0; bi < B; bi++)
            for (int ci = 0; ci < C; ci++) {
                fr_scored a[64];
                int cand[64], m = 0, order[64], keep[64], nk = 0;
                for (int i = 0; i < S && m < 64; i++) {
                    float sc = scores[((size_t)bi * C + ci) * S + i];
                    if (sc > par[2]) cand[m++] = i;
                }
                float cb[64 * 4];
                for (int j = 0; j < m; j++) {
                    memcpy(cb + 4 * j, boxes + ((size_t)bi * S + cand[j]) * 4, 4 * sizeof(float));
                    a[j] = (fr_scored){scores[((size_t)bi * C + ci) * S + cand[j]], j};
                }
                fr_sort_desc_stable(a, m);
                for (int j = 0; j < m; j++) order[j] = a[j].index;
                fr_err e = {0};
                CHECK(fr_nms(cb, order, m, iou, 0, maxout, keep, &nk, &e) == FR_OK);
                for (int j = 0; j < nk && ng < 64; j++) {
                    got[ng][0] = bi;
                    got[ng][1] = ci;
                    got[ng][2] = cand[keep[j]];
                    ng++;
                }
            }
        int ok = (size_t)ng * 3 == nsel;
        for (int j = 0; ok && j < ng; j++)
            ok = got[j][0] == sel[3 * j] && got[j][1] == sel[3 * j + 1] && got[j][2] == sel[3 * j + 2];
        CHECKF(ok, "ONNX NMS case %d: %d selected, expected %zu", k, ng, nsel / 3);
    }
}

TEST(test_nms_alloc_failure) {
    float b[8] = {0, 0, 10, 10, 1, 1, 11, 11}, s[2] = {0.9f, 0.8f};
    int order[2] = {0, 1}, keep[2], nk = 7;
    fr_err e = {0};
    fr_alloc_fail_at(1);
    CHECK(fr_nms(b, order, 2, 0.5, 0, -1, keep, &nk, &e) == FR_ERR_NOMEM && nk == 0);
    fr_alloc_fail_at(1);
    nk = 7;
    CHECK(fr_batched_nms_torchvision(b, s, NULL, 2, 0.5, -1, keep, &nk, &e) == FR_ERR_NOMEM && nk == 0);
    fr_alloc_fail_at(0);
    CHECK(fr_batched_nms_torchvision(b, s, NULL, 2, 0.5, -1, keep, &nk, &e) == FR_OK && nk == 1);
    CHECK(fr_batched_nms_torchvision(b, s, NULL, 0, 0.5, -1, keep, &nk, &e) == FR_OK && nk == 0);
}

// 6000 RPN-like boxes (clustered, as top-scoring proposals are): a few ms.
TEST(test_nms_speed) {
    enum { N = 6000 };
    float *b = malloc(4 * N * sizeof *b), *s = malloc(N * sizeof *s);
    int *keep = malloc(N * sizeof *keep);
    for (int i = 0; i < N; i++) {
        float cx = (float)(urand() * 1333), cy = (float)(urand() * 800);
        float w = (float)(16 + urand() * 400), h = (float)(16 + urand() * 400);
        b[4 * i] = cx - w / 2;
        b[4 * i + 1] = cy - h / 2;
        b[4 * i + 2] = cx + w / 2;
        b[4 * i + 3] = cy + h / 2;
        s[i] = (float)urand();
    }
    double best = 1e9, best_full = 1e9;
    int nk = 0, nf = 0;
    for (int rep = 0; rep < 5; rep++) {
        fr_err e = {0};
        double t0 = fr_time_ms();
        CHECK(fr_batched_nms_torchvision(b, s, NULL, N, 0.7, 1000, keep, &nk, &e) == FR_OK);
        double t1 = fr_time_ms();
        CHECK(fr_batched_nms_torchvision(b, s, NULL, N, 0.7, -1, keep, &nf, &e) == FR_OK);
        double t2 = fr_time_ms();
        if (t1 - t0 < best) best = t1 - t0;
        if (t2 - t1 < best_full) best_full = t2 - t1;
    }
    printf("  nms: 6000 boxes -> %d kept (first 1000: %d) in %.2f ms; full keep list %.2f ms\n", nf,
           nk, best, best_full);
    CHECK(nk == (nf < 1000 ? nf : 1000));
    CHECK(best < 100.0); // loose: a shared machine
    free(b);
    free(s);
    free(keep);
}

int main(void) {
    RUN(test_orderings_vs_torch_numpy);
    RUN(test_exp_and_softmax_inputs);
    RUN(test_decimal_of_float);
    RUN(test_nms_vs_torchvision);
    RUN(test_nms_vs_naive);
    RUN(test_batched_single_class_prefix);
    RUN(test_onnx_nonmaxsuppression);
    RUN(test_nms_alloc_failure);
    RUN(test_nms_speed);
    if (g_fx_open) fr_st_close(&g_fx);
    return harness_done(__FILE__);
}
