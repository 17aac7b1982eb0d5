// test_rpn.c - anchors and proposal selection against detectron2 / py-faster-rcnn re-statements
// (fixtures from tools/reference/fx_ops.py): identical order, boxes within 1e-4 px.
#include "core/alloc.h"
#include "core/config.h"
#include "core/safetensors.h"
#include "harness.h"
#include "rpn/rpn.h"

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

static const float *fx_f32(const char *name, size_t *numel) {
    const fr_st_tensor *t = g_fx_open ? fr_st_find(&g_fx, name) : NULL;
    if (!t || t->dtype != FR_DT_F32) {
        fprintf(stderr, "  fixture tensor %s missing or not F32\n", name);
        return NULL;
    }
    if (numel) *numel = t->numel;
    return (const float *)(g_fx.buf + g_fx.data_start + t->offset);
}

static int load_cfg(fr_config *cfg, const char *path) {
    fr_err e = {0};
    if (fr_config_load(cfg, path, &e) != FR_OK) {
        fprintf(stderr, "  %s: %s\n", path, e.msg);
        return 0;
    }
    return 1;
}

TEST(test_cell_anchors) {
    fr_config d2, pf;
    CHECK(load_cfg(&d2, "configs/detectron2_R101_C4_coco.json"));
    CHECK(load_cfg(&pf, "configs/pyfrcnn_res101_voc.json"));
    CHECK(fx_open("ops_rpn.safetensors"));
    float cell[FR_MAX_CELL_ANCHORS * 4];
    int A = 0;
    fr_err e = {0};
    size_t n = 0;
    const float *ref = fx_f32("d2_cell", &n);
    CHECK(fr_anchors_cell(&d2, cell, &A, &e) == FR_OK && A == 15);
    CHECK(ref && n == 60 && memcmp(cell, ref, sizeof(float) * 60) == 0);
    // py-faster-rcnn generate_anchors() for base 16, scales 8/16/32
    static const float pyf[9][4] = {{-84, -40, 99, 55},     {-176, -88, 191, 103},
                                    {-360, -184, 375, 199}, {-56, -56, 71, 71},
                                    {-120, -120, 135, 135}, {-248, -248, 263, 263},
                                    {-36, -80, 51, 95},     {-80, -168, 95, 183},
                                    {-168, -344, 183, 359}};
    CHECK(fr_anchors_cell(&pf, cell, &A, &e) == FR_OK && A == 9);
    CHECK(memcmp(cell, pyf, sizeof pyf) == 0);
    ref = fx_f32("pyf_cell", &n);
    CHECK(ref && n == 36 && memcmp(cell, ref, sizeof(float) * 36) == 0);
    // grid
    const float *grid = fx_f32("d2rpn0_anchors", &n);
    float *g = malloc(20 * 30 * 15 * 4 * sizeof *g);
    CHECK(fr_anchors_cell(&d2, cell, &A, &e) == FR_OK);
    fr_anchors_grid(&d2, cell, A, 20, 30, g);
    CHECK(grid && n == 20 * 30 * 15 * 4 && memcmp(g, grid, n * sizeof(float)) == 0);
    free(g);
    // bad configs
    fr_config bad = d2;
    bad.num_sizes = 0;
    CHECK(fr_anchors_cell(&bad, cell, &A, &e) == FR_ERR_INVALID && A == 0);
    bad = d2;
    bad.ratios[1] = -1;
    CHECK(fr_anchors_cell(&bad, cell, &A, &e) == FR_ERR_INVALID);
    bad = d2;
    bad.anchor_stride = 0;
    CHECK(fr_anchors_cell(&bad, cell, &A, &e) == FR_ERR_INVALID);
    fr_config_free(&d2);
    fr_config_free(&pf);
}

// Runs fr_rpn_proposals and compares with the fixture's boxes and scores; obj_pad / del_pad
// add unused floats after each cell (a fused head output).
static void check_case(const fr_config *cfg, const char *prefix, const float *obj, int obj_ch,
                       const float *del, int H, int W, int A, int ih, int iw, double scale,
                       int obj_pad, int del_pad) {
    char name[64];
    size_t nb = 0, ns = 0;
    snprintf(name, sizeof name, "%sboxes", prefix);
    const float *rb = fx_f32(name, &nb);
    snprintf(name, sizeof name, "%sscores", prefix);
    const float *rs = fx_f32(name, &ns);
    CHECK(rb && rs && nb == 4 * ns);
    if (!rb || !rs) return;
    const int os = obj_ch + obj_pad, ds = 4 * A + del_pad;
    float *o = malloc((size_t)H * W * os * sizeof *o), *d = malloc((size_t)H * W * ds * sizeof *d);
    for (int c = 0; c < H * W; c++) {
        for (int k = 0; k < os; k++) o[(size_t)c * os + k] = k < obj_ch ? obj[(size_t)c * obj_ch + k] : NAN;
        for (int k = 0; k < ds; k++) d[(size_t)c * ds + k] = k < 4 * A ? del[(size_t)c * 4 * A + k] : NAN;
    }
    fr_rpn_input in = {H, W, o, os, d, ds, ih, iw, scale};
    float *boxes = malloc((size_t)cfg->post_nms_topk * 4 * sizeof *boxes);
    float *scores = malloc((size_t)cfg->post_nms_topk * sizeof *scores);
    int n = -1;
    fr_err e = {0};
    CHECK(fr_rpn_proposals(cfg, &in, boxes, scores, &n, &e) == FR_OK);
    CHECKF((size_t)n == ns, "%s: %d proposals, reference %zu", prefix, n, ns);
    double dmax = 0;
    int order_bad = 0;
    for (int i = 0; i < n && (size_t)i < ns; i++) {
        for (int k = 0; k < 4; k++) dmax = fmax(dmax, fabs(boxes[4 * i + k] - rb[4 * i + k]));
        order_bad += scores[i] != rs[i];
    }
    CHECKF(dmax <= 1e-4 && order_bad == 0, "%s: max box diff %g px, %d scores differ", prefix, dmax,
           order_bad);
    if (!obj_pad) printf("  %s: %d proposals, max box diff %g px\n", prefix, n, dmax);
    free(o);
    free(d);
    free(boxes);
    free(scores);
}

TEST(test_detectron2_proposals) {
    fr_config cfg;
    CHECK(load_cfg(&cfg, "configs/detectron2_R101_C4_coco.json"));
    CHECK(fx_open("ops_rpn.safetensors"));
    for (int c = 0; c < 5; c++) {
        char p[32], name[64];
        snprintf(p, sizeof p, "d2rpn%d_", c);
        size_t n = 0;
        snprintf(name, sizeof name, "%smeta", p);
        const float *m = fx_f32(name, &n);
        snprintf(name, sizeof name, "%slogits", p);
        const float *lg = fx_f32(name, NULL);
        snprintf(name, sizeof name, "%sdeltas", p);
        const float *dl = fx_f32(name, NULL);
        CHECK(m && lg && dl && n == 8);
        if (!(m && lg && dl)) continue;
        cfg.pre_nms_topk = (int)m[4];
        cfg.post_nms_topk = (int)m[5];
        cfg.rpn_min_size = m[6];
        cfg.rpn_nms_thresh = m[7];
        for (int pad = 0; pad <= 3; pad += 3)
            check_case(&cfg, p, lg, 15, dl, (int)m[0], (int)m[1], 15, (int)m[2], (int)m[3], 1.0, pad, pad * 2);
    }
    fr_config_free(&cfg);
}

TEST(test_pyfrcnn_proposals) {
    fr_config cfg;
    CHECK(load_cfg(&cfg, "configs/pyfrcnn_res101_voc.json"));
    cfg.bbox_clamp = 100; // py-faster-rcnn does not clamp
    CHECK(fx_open("ops_rpn.safetensors"));
    for (int c = 0; c < 3; c++) {
        char p[32], name[64];
        snprintf(p, sizeof p, "pyfrpn%d_", c);
        size_t n = 0;
        snprintf(name, sizeof name, "%smeta", p);
        const float *m = fx_f32(name, &n);
        snprintf(name, sizeof name, "%scls", p);
        const float *cls = fx_f32(name, NULL);
        snprintf(name, sizeof name, "%sdeltas", p);
        const float *dl = fx_f32(name, NULL);
        CHECK(m && cls && dl && n == 8);
        if (!(m && cls && dl)) continue;
        cfg.pre_nms_topk = (int)m[4];
        cfg.post_nms_topk = (int)m[5];
        cfg.rpn_nms_thresh = m[7];
        check_case(&cfg, p, cls, 18, dl, (int)m[0], (int)m[1], 9, (int)m[2], (int)m[3], m[6], 0, 0);
        check_case(&cfg, p, cls, 18, dl, (int)m[0], (int)m[1], 9, (int)m[2], (int)m[3], m[6], 2, 1);
    }
    fr_config_free(&cfg);
}

TEST(test_bad_inputs_and_alloc_failures) {
    fr_config cfg;
    CHECK(load_cfg(&cfg, "configs/detectron2_R101_C4_coco.json"));
    enum { H = 6, W = 7, A = 15 };
    float obj[H * W * A], del[H * W * A * 4], boxes[1000 * 4], scores[1000];
    for (int i = 0; i < H * W * A; i++) obj[i] = (float)((i * 7919) % 113) / 17.0f;
    for (int i = 0; i < H * W * A * 4; i++) del[i] = (float)((i * 104729) % 97) / 300.0f - 0.15f;
    fr_rpn_input in = {H, W, obj, A, del, 4 * A, 96, 112, 1.0};
    int n = -1;
    fr_err e = {0};
    CHECK(fr_rpn_proposals(&cfg, &in, boxes, scores, &n, &e) == FR_OK && n > 0);
    const int n_ok = n;
    fr_rpn_input bad = in;
    bad.feat_h = 0;
    CHECK(fr_rpn_proposals(&cfg, &bad, boxes, scores, &n, &e) == FR_ERR_INVALID && n == 0);
    bad = in;
    bad.obj_stride = A - 1;
    CHECK(fr_rpn_proposals(&cfg, &bad, boxes, scores, &n, &e) == FR_ERR_INVALID);
    CHECK(strstr(e.msg, "stride") != NULL);
    bad = in;
    bad.delta_stride = 4 * A - 1;
    CHECK(fr_rpn_proposals(&cfg, &bad, boxes, scores, &n, &e) == FR_ERR_INVALID);
    bad = in;
    bad.img_w = 0;
    CHECK(fr_rpn_proposals(&cfg, &bad, boxes, scores, &n, &e) == FR_ERR_INVALID);
    bad = in;
    bad.im_scale = NAN;
    CHECK(fr_rpn_proposals(&cfg, &bad, boxes, scores, &n, &e) == FR_ERR_INVALID);
    bad = in;
    bad.feat_h = 1 << 20;
    bad.feat_w = 1 << 20;
    CHECK(fr_rpn_proposals(&cfg, &bad, boxes, scores, &n, &e) == FR_ERR_INVALID);
    fr_config c2 = cfg;
    c2.pre_nms_topk = 0;
    CHECK(fr_rpn_proposals(&c2, &in, boxes, scores, &n, &e) == FR_ERR_INVALID);
    // every allocation failure is a clean FR_ERR_NOMEM; eventually the run succeeds
    int done = 0;
    for (long k = 1; k < 50 && !done; k++) {
        fr_alloc_fail_at(k);
        fr_status st = fr_rpn_proposals(&cfg, &in, boxes, scores, &n, &e);
        if (!fr_alloc_failed()) {
            CHECK(st == FR_OK && n == n_ok);
            done = 1;
        } else {
            CHECK(st == FR_ERR_NOMEM && n == 0);
        }
    }
    fr_alloc_fail_at(0);
    CHECK(done);
    fr_config_free(&cfg);
}

// A 1 x 1 image (bad-inputs row I5): no crash, a valid (possibly empty) result.
TEST(test_tiny_image) {
    const char *cfgs[2] = {"configs/detectron2_R101_C4_coco.json", "configs/pyfrcnn_res101_voc.json"};
    for (int f = 0; f < 2; f++) {
        fr_config cfg;
        CHECK(load_cfg(&cfg, cfgs[f]));
        float obj[30], del[60], boxes[1000 * 4], scores[1000];
        for (int i = 0; i < 30; i++) obj[i] = (float)i / 7;
        for (int i = 0; i < 60; i++) del[i] = (float)(i % 5) / 10;
        const int A = f ? 9 : 15;
        fr_rpn_input in = {1, 1, obj, f ? 2 * A : A, del, 4 * A, 1, 1, f ? 600.0 : 800.0};
        int n = -1;
        fr_err e = {0};
        CHECK(fr_rpn_proposals(&cfg, &in, boxes, scores, &n, &e) == FR_OK);
        CHECK(n >= 0 && n <= A);
        for (int i = 0; i < n; i++)
            CHECK(boxes[4 * i] >= 0 && boxes[4 * i + 2] <= 1 && boxes[4 * i + 1] >= 0 && boxes[4 * i + 3] <= 1);
        fr_config_free(&cfg);
    }
}

int main(void) {
    RUN(test_cell_anchors);
    RUN(test_detectron2_proposals);
    RUN(test_pyfrcnn_proposals);
    RUN(test_bad_inputs_and_alloc_failures);
    RUN(test_tiny_image);
    if (g_fx_open) fr_st_close(&g_fx);
    return harness_done(__FILE__);
}
