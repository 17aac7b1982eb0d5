// detector.c - sessions and the detection pipeline (see detector.h).
//
// Pipeline: decode -> resize + normalise -> stem..res4 -> RPN head convs -> proposals ->
// RoIAlign/RoIPool in chunks of FR_HEAD_CHUNK RoIs -> res5 -> mean pool -> predictor ->
// per-class post-processing -> boxes in original-image pixels.
#include "session.h"

#include "core/alloc.h"
#include "core/log.h"
#include "core/timer.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

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
    p->roi = (size_t)FR_HEAD_CHUNK * S * S * m->bb.res[2].cout;
    int ho, wo;
    fr_stage_plan(&m->res5, FR_HEAD_CHUNK, S, S, &p->head_act, &p->head_scratch, &ho, &wo);
    p->pooled = (size_t)FR_HEAD_CHUNK * m->feat;
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
    p.input = (size_t)cfg->max_size * cfg->max_size * 3;
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
    fr_backbone_forward(&s->m->bb, input, s->buf, s->scratch, res4, ms);
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
