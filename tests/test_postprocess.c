// test_postprocess.c - head post-processing against detectron2 (fast_rcnn_inference_single_image
// + detector_postprocess, run in torch) and py-faster-rcnn (im_detect + test_net, numpy)
// fixtures from tools/reference/fx_ops.py; torch softmax bit for bit; options; bad inputs.
#include "core/alloc.h"
#include "core/config.h"
#include "core/safetensors.h"
#include "harness.h"
#include "head/postprocess.h"

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

static const void *fx_get(const char *name, fr_dtype dt, size_t *numel) {
    const fr_st_tensor *t = g_fx_open ? fr_st_find(&g_fx, name) : NULL;
    if (!t || t->dtype != dt) {
        fprintf(stderr, "  fixture tensor %s missing or not %s\n", name, fr_dtype_name(dt));
        return NULL;
    }
    if (numel) *numel = t->numel;
    return g_fx.buf + g_fx.data_start + t->offset;
}

static int load_cfg(fr_config *cfg, const char *path) {
    fr_err e = {0};
    if (fr_config_load(cfg, path, &e) != FR_OK) {
        fprintf(stderr, "  %s: %s\n", path, e.msg);
        return 0;
    }
    return 1;
}

TEST(test_softmax_torch) {
    CHECK(fx_open("ops_order.safetensors"));
    const char *names[3][2] = {{"softmax81_x", "softmax81_y"}, {"softmax5_x", "softmax5_y"},
                               {"softmax21_x", "softmax21_y"}};
    const int widths[3] = {81, 5, 21};
    for (int t = 0; t < 3; t++) {
        size_t n = 0, m = 0;
        const float *x = fx_get(names[t][0], FR_DT_F32, &n), *y = fx_get(names[t][1], FR_DT_F32, &m);
        CHECK(x && y && n == m && n % widths[t] == 0);
        if (!x || !y) continue;
        float out[81];
        int bad = 0;
        for (size_t r = 0; r < n / widths[t]; r++) {
            fr_softmax_torch(x + r * widths[t], widths[t], out);
            for (int k = 0; k < widths[t]; k++) bad += out[k] != y[r * widths[t] + k];
        }
        CHECKF(bad == 0, "softmax width %d: %d values differ from torch.softmax", widths[t], bad);
    }
}

typedef struct {
    const float *props, *logits, *deltas, *meta, *rb, *rs;
    const int64_t *rc;
    size_t nmeta, nref;
} head_case;

static int get_case(const char *p, head_case *hc) {
    char name[64];
    size_t nb = 0, nc = 0;
#define G(field, suffix, dt, cnt)                                                          \
    snprintf(name, sizeof name, "%s" suffix, p);                                           \
    hc->field = fx_get(name, dt, cnt)
    G(props, "props", FR_DT_F32, NULL);
    G(logits, "logits", FR_DT_F32, NULL);
    G(deltas, "deltas", FR_DT_F32, NULL);
    G(meta, "meta", FR_DT_F32, &hc->nmeta);
    G(rb, "boxes", FR_DT_F32, &nb);
    G(rs, "scores", FR_DT_F32, &hc->nref);
    G(rc, "classes", FR_DT_I64, &nc);
#undef G
    return hc->props && hc->logits && hc->deltas && hc->meta && hc->rb && hc->rs && hc->rc &&
           nb == 4 * hc->nref && nc == hc->nref && hc->nmeta == 10;
}

static void compare(const char *p, const fr_head_det *d, int n, const head_case *hc) {
    CHECKF((size_t)n == hc->nref, "%s: %d detections, reference %zu", p, n, hc->nref);
    double dmax = 0;
    int bad = 0;
    for (int i = 0; i < n && (size_t)i < hc->nref; i++) {
        bad += d[i].class_id != hc->rc[i] || d[i].score != hc->rs[i];
        for (int k = 0; k < 4; k++) dmax = fmax(dmax, fabs(d[i].box[k] - hc->rb[4 * i + k]));
    }
    CHECKF(bad == 0 && dmax <= 1e-4, "%s: %d class/score mismatches, max box diff %g", p, bad, dmax);
    printf("  %s: %d detections, max box diff %g px\n", p, n, dmax);
}

TEST(test_detectron2_head) {
    fr_config cfg;
    CHECK(load_cfg(&cfg, "configs/detectron2_R101_C4_coco.json"));
    CHECK(fx_open("ops_head.safetensors"));
    for (int c = 0; c < 4; c++) {
        char p[32];
        snprintf(p, sizeof p, "d2head%d_", c);
        head_case hc;
        CHECK(get_case(p, &hc));
        if (!hc.meta || hc.nmeta != 10) continue;
        const float *m = hc.meta;
        fr_config k = cfg;
        k.num_classes = (int)m[1];
        k.score_thresh = m[6];
        k.nms_thresh = m[7];
        k.detections_per_image = (int)m[8];
        k.class_agnostic = (int)m[9];
        fr_head_input in = {hc.props, hc.logits, hc.deltas, (int)m[0], (int)m[2], (int)m[3],
                            (int)m[4], (int)m[5], m[4] / m[2], 0, 0};
        fr_head_det *d = NULL;
        int n = -1;
        fr_err e = {0};
        CHECK(fr_head_postprocess(&k, &in, NULL, &d, &n, &e) == FR_OK);
        if (d) compare(p, d, n, &hc);
        // the same from one strided [logits | deltas] matrix
        const int K1 = k.num_classes + 1, D = fr_head_delta_cols(&k), R = in.R;
        float *mx = malloc((size_t)R * (K1 + D) * sizeof *mx);
        for (int r = 0; r < R; r++) {
            memcpy(mx + (size_t)r * (K1 + D), hc.logits + (size_t)r * K1, K1 * sizeof(float));
            memcpy(mx + (size_t)r * (K1 + D) + K1, hc.deltas + (size_t)r * D, D * sizeof(float));
        }
        fr_head_input in2 = in;
        in2.cls_logits = mx;
        in2.deltas = mx + K1;
        in2.logit_stride = in2.delta_stride = K1 + D;
        fr_head_det *d2 = NULL;
        int n2 = -1;
        CHECK(fr_head_postprocess(&k, &in2, NULL, &d2, &n2, &e) == FR_OK);
        CHECK(d && d2 && n2 == n && memcmp(d, d2, (size_t)n * sizeof *d) == 0);
        fr_free(d2);
        d2 = NULL;
        in2.delta_stride = D - 1;
        CHECK(fr_head_postprocess(&k, &in2, NULL, &d2, &n2, &e) == FR_ERR_INVALID || D == 1);
        free(mx);
        fr_free(d);
        fr_free(d2);
    }
    fr_config_free(&cfg);
}

TEST(test_pyfrcnn_head) {
    fr_config cfg;
    CHECK(load_cfg(&cfg, "configs/pyfrcnn_res101_voc.json"));
    cfg.bbox_clamp = 100;
    for (int k = 0; k < 4; k++) cfg.head_box_weights[k] = 1.0f; // py-faster-rcnn's own deltas
    CHECK(fx_open("ops_head.safetensors"));
    for (int c = 0; c < 2; c++) {
        char p[32];
        snprintf(p, sizeof p, "pyfhead%d_", c);
        head_case hc;
        CHECK(get_case(p, &hc));
        if (!hc.meta || hc.nmeta != 10) continue;
        const float *m = hc.meta;
        fr_config k = cfg;
        k.num_classes = (int)m[1];
        k.score_thresh = m[7];
        k.nms_thresh = m[8];
        k.detections_per_image = (int)m[9];
        fr_head_input in = {hc.props, hc.logits, hc.deltas, (int)m[0], (int)m[2], (int)m[3],
                            (int)m[4], (int)m[5], m[6], 0, 0};
        fr_head_det *d = NULL;
        int n = -1;
        fr_err e = {0};
        CHECK(fr_head_postprocess(&k, &in, NULL, &d, &n, &e) == FR_OK);
        if (d) compare(p, d, n, &hc);
        fr_free(d);
    }
    fr_config_free(&cfg);
}

// Options: a class mask equals the unmasked, untruncated list filtered; max_detections
// truncates; a threshold override filters.
TEST(test_options) {
    fr_config cfg;
    CHECK(load_cfg(&cfg, "configs/detectron2_R101_C4_coco.json"));
    CHECK(fx_open("ops_head.safetensors"));
    head_case hc;
    CHECK(get_case("d2head0_", &hc));
    if (!hc.meta) {
        fr_config_free(&cfg);
        return;
    }
    const float *m = hc.meta;
    const int k0 = cfg.num_classes; // restored before fr_config_free
    cfg.num_classes = (int)m[1];
    fr_head_input in = {hc.props, hc.logits, hc.deltas, (int)m[0], (int)m[2], (int)m[3],
                        (int)m[4], (int)m[5], m[4] / m[2], 0, 0};
    fr_err e = {0};
    fr_head_det *all = NULL, *d = NULL;
    int nall = 0, n = 0;
    fr_postprocess_opts o = {-1, 100000, NULL};
    CHECK(fr_head_postprocess(&cfg, &in, &o, &all, &nall, &e) == FR_OK && nall > 10);
    unsigned char mask[20] = {0};
    mask[3] = mask[7] = mask[11] = 1;
    for (int maxd = 1; maxd <= 100000; maxd *= 10) {
        fr_postprocess_opts om = {-1, maxd, mask};
        CHECK(fr_head_postprocess(&cfg, &in, &om, &d, &n, &e) == FR_OK);
        int j = 0, ok = 1;
        for (int i = 0; i < nall && j < maxd; i++) {
            if (!mask[all[i].class_id]) continue;
            ok &= j < n && memcmp(&all[i], &d[j], sizeof *d) == 0;
            j++;
        }
        CHECKF(ok && j == n, "mask with max %d: %d detections, expected %d", maxd, n, j);
        fr_free(d);
        d = NULL;
    }
    fr_postprocess_opts o5 = {-1, 5, NULL};
    CHECK(fr_head_postprocess(&cfg, &in, &o5, &d, &n, &e) == FR_OK && n == 5);
    CHECK(d && memcmp(d, all, 5 * sizeof *d) == 0);
    fr_free(d);
    d = NULL;
    const float th = all[nall / 2].score;
    fr_postprocess_opts ot = {th, 100000, NULL};
    CHECK(fr_head_postprocess(&cfg, &in, &ot, &d, &n, &e) == FR_OK);
    int ok = n > 0;
    for (int i = 0; i < n; i++) ok &= d[i].score > th;
    CHECK(ok);
    fr_free(d);
    d = NULL;
    for (int i = 1; i < nall; i++) CHECK(all[i - 1].score >= all[i].score);
    fr_free(all);
    cfg.num_classes = k0;
    fr_config_free(&cfg);
}

TEST(test_bad_inputs_and_alloc_failures) {
    fr_config cfg;
    CHECK(load_cfg(&cfg, "configs/detectron2_R101_C4_coco.json"));
    CHECK(fx_open("ops_head.safetensors"));
    head_case hc;
    CHECK(get_case("d2head0_", &hc));
    if (!hc.meta) {
        fr_config_free(&cfg);
        return;
    }
    const float *m = hc.meta;
    const int k0 = cfg.num_classes; // restored before fr_config_free
    cfg.num_classes = (int)m[1];
    fr_head_input in = {hc.props, hc.logits, hc.deltas, (int)m[0], (int)m[2], (int)m[3],
                        (int)m[4], (int)m[5], m[4] / m[2], 0, 0};
    fr_err e = {0};
    fr_head_det *d = (fr_head_det *)&e;
    int n = 5;
    fr_head_input b = in;
    b.R = -1;
    CHECK(fr_head_postprocess(&cfg, &b, NULL, &d, &n, &e) == FR_ERR_INVALID && !d && n == 0);
    b = in;
    b.orig_w = 0;
    CHECK(fr_head_postprocess(&cfg, &b, NULL, &d, &n, &e) == FR_ERR_INVALID);
    b = in;
    b.im_scale = -1;
    CHECK(fr_head_postprocess(&cfg, &b, NULL, &d, &n, &e) == FR_ERR_INVALID);
    b = in;
    b.deltas = NULL;
    CHECK(fr_head_postprocess(&cfg, &b, NULL, &d, &n, &e) == FR_ERR_INVALID);
    fr_postprocess_opts o = {2.0f, 0, NULL};
    CHECK(fr_head_postprocess(&cfg, &in, &o, &d, &n, &e) == FR_ERR_INVALID);
    fr_config c2 = cfg;
    c2.num_classes = 0;
    CHECK(fr_head_postprocess(&c2, &in, NULL, &d, &n, &e) == FR_ERR_INVALID);
    b = in;
    b.R = 0;
    CHECK(fr_head_postprocess(&cfg, &b, NULL, &d, &n, &e) == FR_OK && d && n == 0);
    fr_free(d);
    CHECK(fr_head_postprocess(&cfg, &in, NULL, &d, &n, &e) == FR_OK);
    const int n_ok = n;
    fr_free(d);
    for (int fam = 0; fam < 2; fam++) {
        fr_config k = cfg;
        if (fam) {
            k.family = FR_FAMILY_PYFRCNN;
            k.background = FR_BG_FIRST;
            k.box_includes_background = 0;
        }
        int done = 0;
        for (long a = 1; a < 60 && !done; a++) {
            fr_alloc_fail_at(a);
            d = NULL;
            fr_status st = fr_head_postprocess(&k, &in, NULL, &d, &n, &e);
            if (!fr_alloc_failed()) {
                CHECK(st == FR_OK && (fam || n == n_ok));
                done = 1;
            } else {
                CHECK(st == FR_ERR_NOMEM && d == NULL && n == 0);
            }
            fr_free(d);
        }
        fr_alloc_fail_at(0);
        CHECK(done);
    }
    cfg.num_classes = k0;
    fr_config_free(&cfg);
}

int main(void) {
    RUN(test_softmax_torch);
    RUN(test_detectron2_head);
    RUN(test_pyfrcnn_head);
    RUN(test_options);
    RUN(test_bad_inputs_and_alloc_failures);
    if (g_fx_open) fr_st_close(&g_fx);
    return harness_done(__FILE__);
}
