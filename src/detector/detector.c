// detector.c - sessions and the detection pipeline (see detector.h).
//
// Pipeline: decode -> resize + normalise -> stem..res4 -> RPN head convs -> proposals ->
// RoIAlign/RoIPool in chunks of fr_head_chunk() RoIs -> res5 -> mean pool -> predictor ->
// per-class post-processing -> boxes in original-image pixels.
#include "session.h"

#include "core/alloc.h"
#include "core/log.h"
#include "core/timer.h"
#include "head/postprocess.h"
#include "head/res5_head.h"
#include "roi/roi.h"
#include "rpn/rpn.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

const char *const fr_stage_names[FR_STAGE_COUNT] = {"preprocess", "stem", "res2", "res3", "res4", "rpn_conv",
                                                     "proposals", "roi", "res5_head", "postprocess"};

void fr_detect_opts_default(fr_detect_opts *o) {
    o->score_threshold = -1;
    o->max_detections = 0;
    o->class_mask = NULL;
}

void fr_result_free(fr_result *r) {
    if (!r) return;
    fr_free(r->dets);
    r->dets = NULL;
    r->n = 0;
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

// Sizes of every session buffer for an input of h x w (floats).
typedef struct {
    size_t input, act, scratch, rpn_out, props, roi, head_act, head_scratch, pooled, pred;
} plan_t;

static void plan_for(const fr_model *m, int h, int w, plan_t *p) {
    const fr_config *cfg = &m->cfg;
    memset(p, 0, sizeof *p);
    p->input = (size_t)h * w * 3;
    fr_backbone_plan(&m->bb, h, w, &p->act, &p->scratch);
    int fh, fw;
    fr_backbone_out_size(h, w, &fh, &fw);
    size_t cells = (size_t)fh * fw;
    // RPN conv: its output goes to the free ping-pong buffer, its im2col to scratch
    p->scratch = max_sz(p->scratch, fr_conv_scratch(&m->rpn_conv, 1, fh, fw));
    p->act = max_sz(p->act, cells * m->rpn_conv.cout);
    p->rpn_out = cells * m->rpn_out.cout;
    p->props = (size_t)cfg->post_nms_topk * 4 + 16;
    int S = cfg->roi_size;
    int pre = cfg->stride_in_1x1 && cfg->res5_stride == 2; // RoI op samples only what res5 reads
    int so = pre ? (S + 1) / 2 : S;
    int chunk = fr_head_chunk(m);
    p->roi = (size_t)chunk * so * so * m->bb.res[2].cout;
    int ho, wo;
    fr_stage_plan(&m->res5, chunk, S, S, &p->head_act, &p->head_scratch, &ho, &wo);
    p->pooled = (size_t)chunk * m->feat;
    p->pred = (size_t)cfg->post_nms_topk * (m->cls_out + m->box_out);
}

fr_status fr_session_new(fr_session **out, const fr_model *m, fr_err *err) {
    *out = NULL;
    fr_session *s = fr_calloc(1, sizeof *s);
    if (!s) return fr_fail(err, FR_ERR_NOMEM, "out of memory");
    s->m = m;
    const fr_config *cfg = &m->cfg;
    // The resize rule keeps the short side <= max(min_size, ...) and the long side <= max_size,
    // so every input fits in max_size x max_size; the area is at most min_size x max_size.
    // Plan both orientations of the largest area and the square bound for the input buffer.
    s->max_h = s->max_w = cfg->max_size;
    plan_t a, b, p;
    plan_for(m, cfg->min_size, cfg->max_size, &a);
    plan_for(m, cfg->max_size, cfg->min_size, &b);
    size_t *pa = (size_t *)&a, *pb = (size_t *)&b, *pp = (size_t *)&p;
    for (size_t i = 0; i < sizeof p / sizeof(size_t); i++) pp[i] = max_sz(pa[i], pb[i]);
    p.input = (size_t)cfg->min_size * cfg->max_size * 3; // every resized image fits this area
    s->act = p.act;
    s->nscratch = p.scratch;
    s->head_act = p.head_act;
    s->head_nscratch = p.head_scratch;
    s->roi_floats = p.roi;
    size_t total = 0;
    for (size_t i = 0; i < sizeof p / sizeof(size_t); i++) total += (pp[i] + 16) * sizeof(float);
    total += (p.act + 16) * sizeof(float) + (p.head_act + 16) * sizeof(float); // second ping-pong halves
    total += ((size_t)cfg->post_nms_topk + 32) * sizeof(float);                 // prop_logits
    if (fr_arena_init(&s->arena, total)) {
        fr_free(s);
        return fr_fail(err, FR_ERR_NOMEM, "out of memory: the session needs %.0f MB", total / 1e6);
    }
#define TAKE(ptr, n) ptr = fr_arena_alloc(&s->arena, (n) * sizeof(float))
    TAKE(s->input, p.input);
    TAKE(s->buf[0], p.act);
    TAKE(s->buf[1], p.act);
    TAKE(s->scratch, p.scratch);
    TAKE(s->rpn_out, p.rpn_out);
    TAKE(s->props, p.props);
    TAKE(s->prop_logits, (size_t)cfg->post_nms_topk + 16);
    TAKE(s->roi_feat, p.roi);
    TAKE(s->head_buf[0], p.head_act);
    TAKE(s->head_buf[1], p.head_act);
    TAKE(s->head_scratch, p.head_scratch);
    TAKE(s->pooled, p.pooled);
    TAKE(s->pred, p.pred);
#undef TAKE
    FR_ASSERT(s->pred != NULL);
    fr_log(FR_LOG_DEBUG, "session arena: %.1f MB", total / 1e6);
    *out = s;
    return FR_OK;
}

void fr_session_free(fr_session *s) {
    if (!s) return;
    fr_arena_free(&s->arena);
    fr_free(s);
}

fr_status fr_session_backbone(fr_session *s, const fr_tensor *input, fr_tensor *res4, double ms[4], fr_err *err) {
    if (input->n != 1 || input->c != 3 || input->h < 1 || input->w < 1 || input->h > s->max_h ||
        input->w > s->max_w || (size_t)input->h * input->w > (size_t)s->m->cfg.min_size * s->m->cfg.max_size)
        return fr_fail(err, FR_ERR_INVALID, "input %dx%d is outside the planned size", input->w, input->h);
    fr_backbone_forward(&s->m->bb, input, s->buf, s->scratch, res4, ms, NULL);
    return FR_OK;
}

char *fr_result_to_json(const fr_model *m, const fr_result *r) {
    cJSON *o = cJSON_CreateObject(), *d = NULL, *t = NULL;
    char *out = NULL;
    if (!o) return NULL;
    int e = !cJSON_AddStringToObject(o, "model", m->cfg.name);
    e |= !cJSON_AddNumberToObject(o, "width", r->width);
    e |= !cJSON_AddNumberToObject(o, "height", r->height);
    e |= !(d = cJSON_AddArrayToObject(o, "detections"));
    for (int i = 0; !e && i < r->n; i++) {
        const fr_detection *x = &r->dets[i];
        cJSON *it = cJSON_CreateObject();
        if (!it || !cJSON_AddItemToArray(d, it)) {
            cJSON_Delete(it);
            e = 1;
            break;
        }
        e |= !cJSON_AddNumberToObject(it, "class_id", x->class_id);
        e |= !cJSON_AddStringToObject(it, "label", m->cfg.classes[x->class_id]);
        // round to what float32 carries so the JSON is short and stable
        e |= !cJSON_AddNumberToObject(it, "score", round(x->score * 1e6) / 1e6);
        double bx[4];
        for (int k = 0; k < 4; k++) bx[k] = round(x->box[k] * 1e3) / 1e3;
        cJSON *b = cJSON_CreateDoubleArray(bx, 4);
        if (!b || !cJSON_AddItemToObject(it, "box", b)) {
            cJSON_Delete(b);
            e = 1;
        }
    }
    if (!e) e |= !(t = cJSON_AddObjectToObject(o, "timing_ms"));
    if (!e) {
        e |= !cJSON_AddNumberToObject(t, "decode", round(r->ms_decode * 100) / 100);
        e |= !cJSON_AddNumberToObject(t, "backbone", round(r->ms_backbone * 100) / 100);
        e |= !cJSON_AddNumberToObject(t, "rpn", round(r->ms_rpn * 100) / 100);
        e |= !cJSON_AddNumberToObject(t, "roi_head", round(r->ms_roi_head * 100) / 100);
        e |= !cJSON_AddNumberToObject(t, "total", round(r->ms_total * 100) / 100);
    }
    if (!e) out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return out;
}

// The RPN head's convolutions on res4, then proposal selection. res4 lives in one backbone
// buffer; the 3x3 conv output goes to the other one.
static fr_status run_rpn(fr_session *s, const fr_tensor *res4, int img_h, int img_w, double im_scale, int *nprop,
                         fr_err *err) {
    const fr_model *m = s->m;
    double t0 = fr_time_ms();
    s->stage = FR_STAGE_RPN_CONV;
    float *mid_buf = res4->data == s->buf[0] ? s->buf[1] : s->buf[0];
    fr_tensor mid = {mid_buf, 1, res4->h, res4->w, m->rpn_conv.cout};
    fr_conv_forward(&m->rpn_conv, res4, &mid, NULL, 1, s->scratch);
    fr_tensor out = {s->rpn_out, 1, res4->h, res4->w, m->rpn_out.cout};
    fr_conv_forward(&m->rpn_out, &mid, &out, NULL, 0, s->scratch);
    fr_rpn_input in = {
        .feat_h = res4->h,
        .feat_w = res4->w,
        .objectness = s->rpn_out,
        .obj_stride = m->rpn_out.cout,
        .deltas = s->rpn_out + m->obj_ch,
        .delta_stride = m->rpn_out.cout,
        .img_h = img_h,
        .img_w = img_w,
        .im_scale = im_scale,
    };
    double t1 = fr_time_ms();
    s->ms[FR_STAGE_RPN_CONV] = t1 - t0;
    s->stage = FR_STAGE_PROPOSALS;
    fr_status st = fr_rpn_proposals(&m->cfg, &in, s->props, s->prop_logits, nprop, err);
    s->ms[FR_STAGE_PROPOSALS] = fr_time_ms() - t1;
    return st;
}

// res5 head over all proposals in chunks: fills s->pred (nprop rows of cls_out + box_out).
static fr_status run_head(fr_session *s, const fr_tensor *res4, int nprop, fr_err *err) {
    const fr_model *m = s->m;
    const fr_config *cfg = &m->cfg;
    fr_roi_params rp;
    fr_roi_params_from_config(cfg, &rp);
    // With the stride in res5's first 1x1 convs they read only every other bin: pool just those.
    int pre = cfg->stride_in_1x1 && cfg->res5_stride == 2;
    rp.stride = pre ? 2 : 1;
    rp.threads = 2;
    int so = fr_roi_out_side(&rp);
    fr_box_head head = {&m->res5, m->pred_w, m->pred_b, m->feat, m->cls_out + m->box_out};
    const int chunk = fr_head_chunk(m);
    for (int r0 = 0; r0 < nprop; r0 += chunk) {
        int n = nprop - r0 < chunk ? nprop - r0 : chunk;
        fr_tensor roi = {s->roi_feat, n, so, so, res4->c};
        double t0 = fr_time_ms();
        s->stage = FR_STAGE_ROI;
        fr_status st = fr_roi_extract(&rp, res4, s->props + (size_t)r0 * 4, n, s->roi_feat, err);
        if (st) return st;
        double t1 = fr_time_ms();
        s->stage = FR_STAGE_RES5;
        fr_box_head_forward(&head, &roi, pre, s->head_buf, s->head_scratch, s->pooled,
                            s->pred + (size_t)r0 * head.nout);
        s->ms[FR_STAGE_ROI] += t1 - t0;
        s->ms[FR_STAGE_RES5] += fr_time_ms() - t1;
    }
    return FR_OK;
}

fr_status fr_session_forward(fr_session *s, const fr_image *img, fr_forward_out *o, fr_err *err) {
    const fr_model *m = s->m;
    const fr_config *cfg = &m->cfg;
    memset(o, 0, sizeof *o);
    memset(s->ms, 0, sizeof s->ms);
    s->stage = FR_STAGE_PRE;
    if (!img || !img->rgb || img->w < 1 || img->h < 1) return fr_fail(err, FR_ERR_INVALID, "empty image");
    double t0 = fr_time_ms();
    int ow, oh;
    double im_scale;
    fr_image_resized_size(cfg, img->w, img->h, &ow, &oh, &im_scale);
    if (ow > s->max_w || oh > s->max_h || (size_t)ow * oh > (size_t)cfg->min_size * cfg->max_size)
        return fr_fail(err, FR_ERR_INTERNAL, "resized size %dx%d outside the plan", ow, oh);
    fr_status st = fr_image_preprocess(img, cfg, ow, oh, s->input, err);
    if (st) return st;
    o->img_w = ow;
    o->img_h = oh;
    o->im_scale = im_scale;
    o->ms_preprocess = fr_time_ms() - t0;
    fr_tensor in = {s->input, 1, oh, ow, 3};
    double t1 = fr_time_ms();
    s->stage = FR_STAGE_STEM; // fr_backbone_forward's stages are told apart by their times
    fr_backbone_forward(&m->bb, &in, s->buf, s->scratch, &o->res4, o->ms_stages, &s->bb_part);
    s->ms[FR_STAGE_PRE] = o->ms_preprocess;
    for (int i = 0; i < 4; i++) s->ms[FR_STAGE_STEM + i] = o->ms_stages[i];
    double t2 = fr_time_ms();
    o->ms_backbone = t2 - t1;
    if ((st = run_rpn(s, &o->res4, oh, ow, im_scale, &o->nprop, err))) return st;
    double t3 = fr_time_ms();
    o->ms_rpn = t3 - t2;
    if ((st = run_head(s, &o->res4, o->nprop, err))) return st;
    o->ms_head = fr_time_ms() - t3;
    o->proposals = s->props;
    o->proposal_scores = s->prop_logits;
    o->pred = s->pred;
    o->pred_stride = m->cls_out + m->box_out;
    return FR_OK;
}

fr_status fr_detect(fr_session *s, const fr_image *img, const fr_detect_opts *opts, fr_result *res, fr_err *err) {
    const fr_model *m = s->m;
    memset(res, 0, sizeof *res);
    double t0 = fr_time_ms();
    fr_forward_out o;
    fr_status st = fr_session_forward(s, img, &o, err);
    if (st) return st;
    double t1 = fr_time_ms();
    fr_head_input hi = {
        .proposals = o.proposals,
        .cls_logits = NULL,
        .deltas = NULL,
        .R = o.nprop,
        .img_h = o.img_h,
        .img_w = o.img_w,
        .orig_h = img->h,
        .orig_w = img->w,
        .im_scale = o.im_scale,
    };
    // The predictor rows hold [logits | deltas]: pass them as two strided matrices.
    hi.cls_logits = o.pred;
    hi.deltas = o.pred + m->cls_out;
    hi.logit_stride = hi.delta_stride = o.pred_stride;
    fr_postprocess_opts po = {-1, 0, NULL};
    if (opts) {
        po.score_thresh = opts->score_threshold;
        po.max_detections = opts->max_detections;
        po.class_mask = opts->class_mask;
    }
    fr_head_det *dets = NULL;
    int n = 0;
    s->stage = FR_STAGE_POST;
    st = fr_head_postprocess(&m->cfg, &hi, &po, &dets, &n, err);
    s->ms[FR_STAGE_POST] = fr_time_ms() - t1;
    if (st) return st;
    _Static_assert(sizeof(fr_head_det) == sizeof(fr_detection), "detection layouts differ");
    res->dets = (fr_detection *)dets;
    res->n = n;
    res->width = img->w;
    res->height = img->h;
    res->num_proposals = o.nprop;
    res->ms_backbone = o.ms_preprocess + o.ms_backbone;
    res->ms_rpn = o.ms_rpn;
    res->ms_roi_head = o.ms_head + (fr_time_ms() - t1);
    res->ms_total = fr_time_ms() - t0;
    return FR_OK;
}
