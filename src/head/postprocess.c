// postprocess.c - softmax, box decoding, per-class NMS and rescaling of the head's outputs
// into final detections, detectron2 and py-faster-rcnn flavours (see postprocess.h).
#include "postprocess.h"

#include "core/alloc.h"
#include "core/nms.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_R 1000000

void fr_softmax_torch(const float *x, int n, float *out) {
    if (n <= 0) return;
    float m = x[0];
    for (int i = 1; i < n; i++) // vec::maximum: NaN wins
        if (isnan(x[i]) || x[i] > m) m = isnan(m) ? m : x[i];
    for (int i = 0; i < n; i++) out[i] = fr_expf_torch(x[i] - m);
    float s;
    if (n < 8) {
        s = out[0];
        for (int i = 1; i < n; i++) s = s + out[i];
    } else {
        float acc[8];
        for (int l = 0; l < 8; l++) acc[l] = out[l];
        int d = 8;
        for (; d < n - (n % 8); d += 8)
            for (int l = 0; l < 8; l++) acc[l] = acc[l] + out[d + l];
        for (int l = 0; d + l < n; l++) acc[l] = acc[l] + out[d + l];
        // 128-bit, 64-bit, 32-bit shuffles of the AVX2 horizontal reduction
        float a0 = acc[0] + acc[4], a1 = acc[1] + acc[5], a2 = acc[2] + acc[6], a3 = acc[3] + acc[7];
        s = (a0 + a2) + (a1 + a3);
    }
    const float inv = 1.0f / s;
    for (int i = 0; i < n; i++) out[i] = out[i] * inv;
}

// caffe SoftmaxLayer for one row: subtract the max, expf, sum in channel order, divide.
static void softmax_caffe(const float *x, int n, float *out) {
    float m = x[0];
    for (int i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    float s = 0.0f;
    for (int i = 0; i < n; i++) {
        out[i] = expf(x[i] - m);
        s += out[i];
    }
    for (int i = 0; i < n; i++) out[i] = out[i] / s;
}

int fr_head_delta_cols(const fr_config *cfg) {
    if (cfg->class_agnostic) return cfg->box_includes_background ? 8 : 4;
    return 4 * (cfg->num_classes + (cfg->box_includes_background ? 1 : 0));
}

// Column of foreground class k's logit, and of its deltas (in units of 4 floats).
static inline int logit_col(const fr_config *cfg, int k) {
    return cfg->background == FR_BG_FIRST ? k + 1 : k;
}
static inline int delta_col(const fr_config *cfg, int k) {
    if (cfg->class_agnostic) return cfg->box_includes_background ? 1 : 0;
    return cfg->box_includes_background ? logit_col(cfg, k) : k;
}

static inline float clampf(float v, float lo, float hi) {
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
}

typedef struct {
    float box[4];
    float score;
    int cls;
} cand;

static int cmp_det(const void *a, const void *b) { // score desc, then class, then list order
    const fr_head_det *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    if (x->class_id != y->class_id) return x->class_id < y->class_id ? -1 : 1;
    return 0;
}

typedef struct {
    fr_head_det d;
    int seq; // position before sorting (for a stable qsort)
} det_seq;

static int cmp_det_seq(const void *a, const void *b) {
    const det_seq *x = a, *y = b;
    int c = cmp_det(&x->d, &y->d);
    return c ? c : (x->seq > y->seq) - (x->seq < y->seq);
}

static fr_status run_detectron2(const fr_config *cfg, const fr_head_input *in, float thresh,
                                int max_det, const unsigned char *mask, fr_head_det **out,
                                int *nout, fr_err *err) {
    const int K = cfg->num_classes, R = in->R;
    const size_t LS = in->logit_stride ? (size_t)in->logit_stride : (size_t)K + 1;
    const size_t DS = in->delta_stride ? (size_t)in->delta_stride : (size_t)fr_head_delta_cols(cfg);
    const int nb = cfg->class_agnostic ? 1 : K; // boxes per proposal
    fr_box_coder coder = {
        .weights = {cfg->head_box_weights[0], cfg->head_box_weights[1], cfg->head_box_weights[2],
                    cfg->head_box_weights[3]},
        .clamp = cfg->bbox_clamp,
        .plus_one = cfg->box_plus_one,
        .torch_exp = 1,
    };
    fr_status st = FR_OK;
    float *prob = fr_malloc((size_t)(K + 1) * sizeof(float));
    float *boxes = fr_malloc((size_t)nb * 4 * sizeof(float));
    size_t cap = 1024, nc = 0;
    cand *c = fr_malloc(cap * sizeof *c);
    float *cb = NULL, *cs = NULL;
    int *cc = NULL, *keep = NULL;
    fr_head_det *dets = NULL;
    if (!prob || !boxes || !c) goto nomem;
    const float W = (float)in->img_w, H = (float)in->img_h;
    for (int r = 0; r < R; r++) {
        fr_softmax_torch(in->cls_logits + (size_t)r * LS, K + 1, prob);
        int ok = 1;
        for (int k = 0; k <= K; k++) ok &= isfinite(prob[k]) != 0;
        const float *pb = in->proposals + 4 * (size_t)r;
        for (int b = 0; b < nb; b++) {
            const int dc = cfg->class_agnostic ? delta_col(cfg, 0) : delta_col(cfg, b);
            float *o = boxes + 4 * b;
            fr_box_decode(&coder, pb, in->deltas + (size_t)r * DS + 4 * dc, o);
            ok &= isfinite(o[0]) && isfinite(o[1]) && isfinite(o[2]) && isfinite(o[3]);
        }
        if (!ok) continue; // fast_rcnn_inference_single_image's valid_mask
        for (int k = 0; k < K; k++) {
            const float s = prob[logit_col(cfg, k)];
            if (!(s > thresh)) continue;
            if (nc == cap) {
                cand *nc2 = fr_realloc(c, 2 * cap * sizeof *c);
                if (!nc2) goto nomem;
                c = nc2;
                cap *= 2;
            }
            const float *o = boxes + 4 * (cfg->class_agnostic ? 0 : k);
            c[nc].box[0] = clampf(o[0], 0.0f, W);
            c[nc].box[1] = clampf(o[1], 0.0f, H);
            c[nc].box[2] = clampf(o[2], 0.0f, W);
            c[nc].box[3] = clampf(o[3], 0.0f, H);
            c[nc].score = s;
            c[nc].cls = k;
            nc++;
        }
    }
    cb = fr_malloc((nc ? nc : 1) * 4 * sizeof(float));
    cs = fr_malloc((nc ? nc : 1) * sizeof(float));
    cc = fr_malloc((nc ? nc : 1) * sizeof(int));
    keep = fr_malloc((nc ? nc : 1) * sizeof(int));
    dets = fr_malloc((size_t)(max_det < (int)nc ? max_det : (int)nc) * sizeof *dets + 1);
    if (!cb || !cs || !cc || !keep || !dets) goto nomem;
    for (size_t i = 0; i < nc; i++) {
        memcpy(cb + 4 * i, c[i].box, sizeof c[i].box);
        cs[i] = c[i].score;
        cc[i] = c[i].cls;
    }
    int nk = 0;
    st = fr_batched_nms_torchvision(cb, cs, cc, (int)nc, fr_decimal_of_float(cfg->nms_thresh),
                                    mask ? -1 : max_det, keep, &nk, err);
    if (st != FR_OK) goto fail;
    // detector_postprocess: scale factors are Python floats, multiplied as float32
    const float sx = (float)((double)in->orig_w / (double)in->img_w);
    const float sy = (float)((double)in->orig_h / (double)in->img_h);
    const float W0 = (float)in->orig_w, H0 = (float)in->orig_h;
    int n = 0, taken = 0;
    for (int t = 0; t < nk && taken < max_det; t++) {
        const int i = keep[t];
        if (mask && !mask[cc[i]]) continue;
        taken++;
        float b[4] = {cb[4 * i] * sx, cb[4 * i + 1] * sy, cb[4 * i + 2] * sx, cb[4 * i + 3] * sy};
        b[0] = clampf(b[0], 0.0f, W0);
        b[1] = clampf(b[1], 0.0f, H0);
        b[2] = clampf(b[2], 0.0f, W0);
        b[3] = clampf(b[3], 0.0f, H0);
        if (!(b[2] - b[0] > 0.0f && b[3] - b[1] > 0.0f)) continue; // Boxes.nonempty()
        dets[n].class_id = cc[i];
        dets[n].score = cs[i];
        memcpy(dets[n].box, b, sizeof b);
        n++;
    }
    *out = dets;
    *nout = n;
    dets = NULL;
    goto fail; // shared cleanup
nomem:
    st = fr_fail(err, FR_ERR_NOMEM, "head: out of memory (%d proposals)", R);
fail:
    fr_free(prob);
    fr_free(boxes);
    fr_free(c);
    fr_free(cb);
    fr_free(cs);
    fr_free(cc);
    fr_free(keep);
    fr_free(dets);
    return st;
}

static fr_status run_pyfrcnn(const fr_config *cfg, const fr_head_input *in, float thresh,
                             int max_det, const unsigned char *mask, fr_head_det **out,
                             int *nout, fr_err *err) {
    const int K = cfg->num_classes, R = in->R;
    const size_t LS = in->logit_stride ? (size_t)in->logit_stride : (size_t)K + 1;
    const size_t DS = in->delta_stride ? (size_t)in->delta_stride : (size_t)fr_head_delta_cols(cfg);
    fr_box_coder coder = {
        .weights = {cfg->head_box_weights[0], cfg->head_box_weights[1], cfg->head_box_weights[2],
                    cfg->head_box_weights[3]},
        .clamp = cfg->bbox_clamp,
        .plus_one = cfg->box_plus_one,
        .torch_exp = 0,
    };
    const float one = cfg->box_plus_one ? 1.0f : 0.0f;
    const float W1 = (float)in->orig_w - one, H1 = (float)in->orig_h - one;
    const float scale = (float)in->im_scale;
    const double thr = (double)cfg->nms_thresh; // the GPU kernel's float threshold
    fr_status st = FR_OK;
    size_t Rs = R ? (size_t)R : 1;
    float *prob = fr_malloc(Rs * (K + 1) * sizeof(float));
    float *cbox = fr_malloc(Rs * 4 * sizeof(float));
    float *cscore = fr_malloc(Rs * sizeof(float));
    int *order = fr_malloc(Rs * sizeof(int)), *keep = fr_malloc(Rs * sizeof(int));
    det_seq *all = NULL;
    fr_head_det *dets = NULL;
    size_t nall = 0, cap = 256;
    all = fr_malloc(cap * sizeof *all);
    if (!prob || !cbox || !cscore || !order || !keep || !all) goto nomem;
    for (int r = 0; r < R; r++)
        softmax_caffe(in->cls_logits + (size_t)r * LS, K + 1, prob + (size_t)r * (K + 1));
    for (int k = 0; k < K; k++) {
        if (mask && !mask[k]) continue;
        const int lc = logit_col(cfg, k), dc = delta_col(cfg, k);
        int m = 0;
        for (int r = 0; r < R; r++) {
            const float s = prob[(size_t)r * (K + 1) + lc];
            if (!(s > thresh)) continue;
            const float *p = in->proposals + 4 * (size_t)r;
            const float pb[4] = {p[0] / scale, p[1] / scale, p[2] / scale, p[3] / scale};
            float *b = cbox + 4 * (size_t)m;
            fr_box_decode(&coder, pb, in->deltas + (size_t)r * DS + 4 * dc, b);
            if (!(isfinite(b[0]) && isfinite(b[1]) && isfinite(b[2]) && isfinite(b[3]))) continue;
            b[0] = clampf(b[0], 0.0f, W1); // np.maximum(np.minimum(x, W - 1), 0)
            b[1] = clampf(b[1], 0.0f, H1);
            b[2] = clampf(b[2], 0.0f, W1);
            b[3] = clampf(b[3], 0.0f, H1);
            cscore[m++] = s;
        }
        fr_argsort_desc_numpy(cscore, m, order);
        int nk = 0;
        st = fr_nms(cbox, order, m, thr, cfg->box_plus_one, -1, keep, &nk, err);
        if (st != FR_OK) goto fail;
        for (int t = 0; t < nk; t++) {
            if (nall == cap) {
                det_seq *a2 = fr_realloc(all, 2 * cap * sizeof *all);
                if (!a2) goto nomem;
                all = a2;
                cap *= 2;
            }
            all[nall].d.class_id = k;
            all[nall].d.score = cscore[keep[t]];
            memcpy(all[nall].d.box, cbox + 4 * (size_t)keep[t], 4 * sizeof(float));
            all[nall].seq = (int)nall;
            nall++;
        }
    }
    qsort(all, nall, sizeof *all, cmp_det_seq);
    size_t n = nall;
    if (nall > (size_t)max_det) {
        const float th = all[max_det - 1].d.score; // np.sort(scores)[-max_per_image]
        n = (size_t)max_det;
        while (n < nall && all[n].d.score >= th) n++;
    }
    dets = fr_malloc((n ? n : 1) * sizeof *dets);
    if (!dets) goto nomem;
    for (size_t i = 0; i < n; i++) dets[i] = all[i].d;
    *out = dets;
    *nout = (int)n;
    dets = NULL;
    goto fail;
nomem:
    st = fr_fail(err, FR_ERR_NOMEM, "head: out of memory (%d proposals)", R);
fail:
    fr_free(prob);
    fr_free(cbox);
    fr_free(cscore);
    fr_free(order);
    fr_free(keep);
    fr_free(all);
    fr_free(dets);
    return st;
}

fr_status fr_head_postprocess(const fr_config *cfg, const fr_head_input *in,
                              const fr_postprocess_opts *opts, fr_head_det **dets, int *n,
                              fr_err *err) {
    *dets = NULL;
    *n = 0;
    const int K = cfg->num_classes;
    if (K < 1 || K > FR_MAX_CLASSES)
        return fr_fail(err, FR_ERR_INVALID, "head: %d classes (need 1..%d)", K, FR_MAX_CLASSES);
    if (in->R < 0 || in->R > MAX_R)
        return fr_fail(err, FR_ERR_INVALID, "head: %d proposals (need 0..%d)", in->R, MAX_R);
    if (in->R > 0 && (!in->proposals || !in->cls_logits || !in->deltas))
        return fr_fail(err, FR_ERR_INVALID, "head: NULL input array");
    if ((in->logit_stride && in->logit_stride < K + 1) ||
        (in->delta_stride && in->delta_stride < fr_head_delta_cols(cfg)))
        return fr_fail(err, FR_ERR_INVALID, "head: row strides %d / %d below %d / %d",
                       in->logit_stride, in->delta_stride, K + 1, fr_head_delta_cols(cfg));
    if (in->img_h < 1 || in->img_w < 1 || in->orig_h < 1 || in->orig_w < 1)
        return fr_fail(err, FR_ERR_INVALID, "head: image sizes %dx%d (resized) %dx%d (original)",
                       in->img_w, in->img_h, in->orig_w, in->orig_h);
    if (!(in->im_scale > 0) || !isfinite(in->im_scale))
        return fr_fail(err, FR_ERR_INVALID, "head: im_scale %g must be > 0", in->im_scale);
    for (int k = 0; k < 4; k++)
        if (!(cfg->head_box_weights[k] > 0) || !isfinite(cfg->head_box_weights[k]))
            return fr_fail(err, FR_ERR_INVALID, "head: box weight %g must be > 0",
                           cfg->head_box_weights[k]);
    if (!(cfg->nms_thresh >= 0 && cfg->nms_thresh <= 1))
        return fr_fail(err, FR_ERR_INVALID, "head: nms_thresh %g", cfg->nms_thresh);
    float thresh = cfg->score_thresh;
    int max_det = cfg->detections_per_image;
    const unsigned char *mask = NULL;
    if (opts) {
        if (isnan(opts->score_thresh) || opts->score_thresh > 1)
            return fr_fail(err, FR_ERR_INVALID, "head: score threshold %g not in [0, 1]",
                           opts->score_thresh);
        if (opts->score_thresh >= 0) thresh = opts->score_thresh;
        if (opts->max_detections > 0) max_det = opts->max_detections;
        mask = opts->class_mask;
    }
    if (max_det < 1)
        return fr_fail(err, FR_ERR_INVALID, "head: detections_per_image %d must be >= 1", max_det);
    if (cfg->family == FR_FAMILY_PYFRCNN)
        return run_pyfrcnn(cfg, in, thresh, max_det, mask, dets, n, err);
    return run_detectron2(cfg, in, thresh, max_det, mask, dets, n, err);
}
