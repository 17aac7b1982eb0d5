// model.c - loading a detector from a safetensors file (see detector.h, model.h).
#include "model.h"

#include "core/alloc.h"
#include "core/gemm.h"
#include "core/log.h"
#include "core/safetensors.h"
#include "core/winograd.h"

#include <stdio.h>
#include <string.h>

static size_t conv_bytes(const fr_conv *c) {
    size_t n = (c->w ? (size_t)c->cout * c->kh * c->kw * c->cin : 0) + (size_t)c->cout;
    if (c->wu) n += (size_t)FR_WINO_POS * c->cout * c->cin;
    if (c->wp) n += fr_gemm_packed_floats(c->cout, c->kh * c->kw * c->cin);
    return n * sizeof(float);
}

// Every convolution of the model into v; returns the count, or -1 past MAX_CONVS (ResNet-152's
// 50 bottlenecks of at most 4 convolutions, the stem and the two RPN convolutions: the config
// admits no deeper net).
enum { MAX_CONVS = 3 + 4 * 50 };

static int model_convs(fr_model *m, fr_conv *v[MAX_CONVS]) {
    int n = 0;
    v[n++] = &m->bb.stem;
    v[n++] = &m->rpn_conv;
    v[n++] = &m->rpn_out;
    fr_stage *st[4] = {&m->bb.res[0], &m->bb.res[1], &m->bb.res[2], &m->res5};
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < st[i]->nblocks; j++) {
            fr_bottleneck *b = &st[i]->blocks[j];
            if (n + 4 > MAX_CONVS) return -1;
            v[n++] = &b->conv1;
            v[n++] = &b->conv2;
            v[n++] = &b->conv3;
            if (b->has_shortcut) v[n++] = &b->shortcut;
        }
    return n;
}

// prep on every convolution (its weights into the built-in GEMM's layout, or Winograd's),
// the layers shared out between the threads: each is a pass over up to 211 MB at R101.
static fr_status prepare_convs(fr_model *m, fr_status (*prep)(fr_conv *)) {
    fr_conv *v[MAX_CONVS];
    int n = model_convs(m, v), bad = 0;
    if (n < 0) return FR_ERR_INVALID;
#pragma omp parallel for schedule(dynamic, 1) reduction(| : bad)
    for (int i = 0; i < n; i++) bad |= prep(v[i]) != FR_OK;
    return bad ? FR_ERR_NOMEM : FR_OK;
}

// The folded (packed; in fast mode, Winograd) weights held in memory.
static size_t weight_bytes(fr_model *m) {
    fr_conv *v[MAX_CONVS];
    int n = model_convs(m, v);
    size_t bytes = (size_t)(m->cls_out + m->box_out) * (m->feat + 1) * sizeof(float);
    for (int i = 0; i < n; i++) bytes += conv_bytes(v[i]);
    return bytes;
}

void fr_model_free(fr_model *m) {
    if (!m) return;
    fr_backbone_free(&m->bb);
    fr_conv_free(&m->rpn_conv);
    fr_conv_free(&m->rpn_out);
    fr_stage_free(&m->res5);
    fr_free(m->pred_w);
    fr_free(m->pred_b);
    fr_config_free(&m->cfg);
    fr_free(m);
}

// Loads the RPN head, merging objectness and deltas 1x1 convs into one GEMM. The 3x3 conv's
// width comes from its shape (detectron2: c4; ruotianluo/jwyang res101: 512).
static fr_status load_rpn(fr_model *m, fr_st_file *f, int c4, fr_err *err) {
    const fr_config *cfg = &m->cfg;
    fr_status st = fr_conv_load(&m->rpn_conv, f, "proposal_generator.rpn_head.conv", c4, -1, 3, 1, 1, 0, err);
    if (st) return st;
    int c = m->rpn_conv.cout;
    int A = cfg->num_sizes * cfg->num_ratios;
    m->num_anchors = A;
    m->obj_ch = cfg->objectness == FR_OBJ_SIGMOID ? A : 2 * A;
    fr_conv obj = {0}, del = {0};
    if ((st = fr_conv_load(&obj, f, "proposal_generator.rpn_head.objectness_logits", c, m->obj_ch, 1, 1, 0, 0, err)))
        return st;
    if ((st = fr_conv_load(&del, f, "proposal_generator.rpn_head.anchor_deltas", c, 4 * A, 1, 1, 0, 0, err))) {
        fr_conv_free(&obj);
        return st;
    }
    if (fr_conv_alloc(&m->rpn_out, c, m->obj_ch + 4 * A, 1, 1, 1, 0)) {
        st = fr_fail(err, FR_ERR_NOMEM, "out of memory");
    } else {
        memcpy(m->rpn_out.w, obj.w, (size_t)m->obj_ch * c * sizeof(float));
        memcpy(m->rpn_out.w + (size_t)m->obj_ch * c, del.w, (size_t)4 * A * c * sizeof(float));
        memcpy(m->rpn_out.b, obj.b, (size_t)m->obj_ch * sizeof(float));
        memcpy(m->rpn_out.b + m->obj_ch, del.b, (size_t)4 * A * sizeof(float));
    }
    fr_conv_free(&obj);
    fr_conv_free(&del);
    return st;
}

static fr_status load_predictor(fr_model *m, fr_st_file *f, fr_err *err) {
    const fr_config *cfg = &m->cfg;
    int K = cfg->num_classes, D = m->feat;
    m->cls_out = K + 1;
    int rows = cfg->class_agnostic ? 1 : K; // box rows: one per class, or one shared
    m->box_out = 4 * (rows + (cfg->box_includes_background ? 1 : 0));
    int n = m->cls_out + m->box_out;
    m->pred_w = fr_aligned_alloc((size_t)n * D * sizeof(float));
    m->pred_b = fr_aligned_alloc((size_t)n * sizeof(float));
    if (!m->pred_w || !m->pred_b) return fr_fail(err, FR_ERR_NOMEM, "out of memory");
    fr_status st;
    int64_t s[2] = {m->cls_out, D};
    if ((st = fr_st_read_f32(f, "roi_heads.box_predictor.cls_score.weight", 2, s, m->pred_w, err))) goto shape;
    if ((st = fr_st_read_f32(f, "roi_heads.box_predictor.cls_score.bias", 1, s, m->pred_b, err))) goto shape;
    s[0] = m->box_out;
    if ((st = fr_st_read_f32(f, "roi_heads.box_predictor.bbox_pred.weight", 2, s, m->pred_w + (size_t)m->cls_out * D,
                             err)))
        goto shape;
    if ((st = fr_st_read_f32(f, "roi_heads.box_predictor.bbox_pred.bias", 1, s, m->pred_b + m->cls_out, err)))
        goto shape;
    return FR_OK;
shape:
    if (err && strstr(err->msg, "cls_score") && strstr(err->msg, "shape")) {
        size_t l = strlen(err->msg);
        snprintf(err->msg + l, sizeof err->msg - l, " (the config has %d classes)", K);
    }
    return st;
}

fr_status fr_model_load_st(fr_model **out, fr_st_file *f, const char *cfg_json, size_t cfg_len, fr_err *err) {
    *out = NULL;
    fr_model *m = fr_calloc(1, sizeof *m);
    if (!m) return fr_fail(err, FR_ERR_NOMEM, "out of memory");
    fr_status st;
    if (!cfg_json) {
        cfg_json = fr_st_meta(f, "frcnn.config");
        if (!cfg_json) {
            fr_free(m);
            return fr_fail(err, FR_ERR_FORMAT,
                           "no model config: the file has no \"frcnn.config\" metadata; pass --config FILE");
        }
        cfg_len = strlen(cfg_json);
    }
    if ((st = fr_config_parse(&m->cfg, cfg_json, cfg_len, err))) {
        fr_free(m);
        return st;
    }
    const fr_config *cfg = &m->cfg;
    if ((st = fr_backbone_load(&m->bb, f, cfg->depth, cfg->stride_in_1x1, cfg->bn_eps, err))) goto fail;
    int c4 = m->bb.res[2].cout;
    if ((st = load_rpn(m, f, c4, err))) goto fail;
    if ((st = fr_stage_load(&m->res5, f, "roi_heads.res5", 3, cfg->res5_stride, cfg->stride_in_1x1, c4, cfg->bn_eps,
                            err)))
        goto fail;
    m->feat = m->res5.cout;
    if ((st = load_predictor(m, f, err))) goto fail;
    if ((st = prepare_convs(m, fr_conv_pack))) {
        st = fr_fail(err, st, st == FR_ERR_NOMEM ? "out of memory (packing weights)" : "too many layers");
        goto fail;
    }

    m->weight_bytes = weight_bytes(m);
    // Unknown extra tensors are reported and ignored (CONTRACT.md). The merged RPN convs read
    // their parts through fr_conv_load, which marks them used.
    int shown = 0;
    for (int i = 0; i < f->n; i++)
        if (!f->t[i].used) {
            m->unused_tensors++;
            if (shown++ < 5) fr_log(FR_LOG_WARN, "ignoring unknown tensor '%s'", f->t[i].name);
        }
    if (m->unused_tensors > 5) fr_log(FR_LOG_WARN, "ignoring %d unknown tensors in all", m->unused_tensors);
    *out = m;
    return FR_OK;
fail:
    fr_model_free(m);
    return st;
}

fr_status fr_model_make_fast(fr_model *m) {
    // fr_wino_prepare leaves every layer but the 3x3 stride-1 ones (conv2, the RPN conv) as it is
    fr_status st = prepare_convs(m, fr_wino_prepare);
    if (st) return st;
    m->weight_bytes = weight_bytes(m);
    m->fast = 1;
    return FR_OK;
}

fr_status fr_model_load(fr_model **out, const char *path, const char *config_path, fr_err *err) {
    return fr_model_load_ex(out, path, config_path, 0, err);
}

fr_status fr_model_load_ex(fr_model **out, const char *path, const char *config_path, unsigned flags, fr_err *err) {
    *out = NULL;
    fr_st_file f;
    fr_status st = fr_st_open(&f, path, err);
    if (st) return st;
    char *cfg = NULL;
    size_t cfg_len = 0;
    if (config_path) {
        fr_config tmp;
        if ((st = fr_config_load(&tmp, config_path, err))) {
            fr_st_close(&f);
            return st;
        }
        cfg = fr_config_to_json(&tmp);
        fr_config_free(&tmp);
        if (!cfg) {
            fr_st_close(&f);
            return fr_fail(err, FR_ERR_NOMEM, "out of memory");
        }
        cfg_len = strlen(cfg);
    }
    st = fr_model_load_st(out, &f, cfg, cfg_len, err);
    if (!st && (flags & FR_MODEL_FAST) && fr_model_make_fast(*out)) {
        fr_model_free(*out);
        *out = NULL;
        st = fr_fail(err, FR_ERR_NOMEM, "out of memory (fast mode weights)");
    }
    if (st && err) {
        char m[sizeof err->msg];
        memcpy(m, err->msg, sizeof m);
        snprintf(err->msg, sizeof err->msg, "%.200s: %.300s", path, m);
    }
    fr_free(cfg);
    fr_st_close(&f);
    return st;
}

const fr_config *fr_model_config(const fr_model *m) { return &m->cfg; }
const char *fr_model_name(const fr_model *m) { return m->cfg.name; }
int fr_model_fast(const fr_model *m) { return m->fast; }
