// proposals.c - RPN proposal selection: decode, clip, filter, rank, NMS (see rpn.h).
#include "rpn.h"

#include "core/alloc.h"
#include "core/nms.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

// The score of anchor a in a cell: the logit (sigmoid) or caffe's 2-way softmax fg probability.
static inline float anchor_score(const fr_config *cfg, const float *o, int A, int a) {
    if (cfg->objectness == FR_OBJ_SIGMOID) return o[a];
    float bg = o[a], fg = o[A + a];
    float m = bg;
    if (fg > m) m = fg; // caffe: scale = max over channels (std::max, in channel order)
    float eb = expf(bg - m), ef = expf(fg - m);
    return ef / (eb + ef);
}

static void anchor_box(const float *cell, int A, int feat_w, double start, double stride, int i,
                       float out[4]) {
    int a = i % A, c = i / A;
    int x = c % feat_w, y = c / feat_w;
    float sx = (float)(start + stride * x), sy = (float)(start + stride * y);
    out[0] = sx + cell[4 * a + 0];
    out[1] = sy + cell[4 * a + 1];
    out[2] = sx + cell[4 * a + 2];
    out[3] = sy + cell[4 * a + 3];
}

static inline float clampf(float v, float lo, float hi) { // torch.clamp / np.clip order
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
}

static int finite4(const float b[4]) {
    return isfinite(b[0]) && isfinite(b[1]) && isfinite(b[2]) && isfinite(b[3]);
}

fr_status fr_rpn_proposals(const fr_config *cfg, const fr_rpn_input *in, float *out_boxes,
                           float *out_scores, int *out_n, fr_err *err) {
    *out_n = 0;
    float cell[FR_MAX_CELL_ANCHORS * 4];
    int A = 0;
    fr_status st = fr_anchors_cell(cfg, cell, &A, err);
    if (st != FR_OK) return st;
    if (in->feat_h < 1 || in->feat_w < 1 ||
        (int64_t)in->feat_h * in->feat_w * A > FR_RPN_MAX_ANCHORS)
        return fr_fail(err, FR_ERR_INVALID, "rpn: feature grid %dx%d x %d anchors out of range",
                       in->feat_h, in->feat_w, A);
    const int obj_need = cfg->objectness == FR_OBJ_SIGMOID ? A : 2 * A;
    if (!in->objectness || !in->deltas || in->obj_stride < obj_need ||
        in->delta_stride < 4 * A)
        return fr_fail(err, FR_ERR_INVALID,
                       "rpn: objectness stride %d (need >= %d) or delta stride %d (need >= %d)",
                       in->obj_stride, obj_need, in->delta_stride, 4 * A);
    if (in->img_h < 1 || in->img_w < 1)
        return fr_fail(err, FR_ERR_INVALID, "rpn: image size %dx%d", in->img_w, in->img_h);
    if (!(in->im_scale > 0) || !isfinite(in->im_scale))
        return fr_fail(err, FR_ERR_INVALID, "rpn: im_scale %g must be > 0", in->im_scale);
    if (cfg->pre_nms_topk < 1 || cfg->post_nms_topk < 1)
        return fr_fail(err, FR_ERR_INVALID, "rpn: pre_nms_topk %d / post_nms_topk %d must be >= 1",
                       cfg->pre_nms_topk, cfg->post_nms_topk);
    if (!(cfg->rpn_nms_thresh >= 0 && cfg->rpn_nms_thresh <= 1))
        return fr_fail(err, FR_ERR_INVALID, "rpn: nms_thresh %g", cfg->rpn_nms_thresh);
    for (int k = 0; k < 4; k++)
        if (!(cfg->rpn_box_weights[k] > 0) || !isfinite(cfg->rpn_box_weights[k]))
            return fr_fail(err, FR_ERR_INVALID, "rpn: box weight %g must be > 0",
                           cfg->rpn_box_weights[k]);

    const int N = in->feat_h * in->feat_w * A;
    const int pyf = cfg->family == FR_FAMILY_PYFRCNN;
    const double stride = cfg->anchor_stride;
    const double start = fr_decimal_of_float(cfg->anchor_offset) * stride;
    fr_box_coder coder = {
        .weights = {cfg->rpn_box_weights[0], cfg->rpn_box_weights[1], cfg->rpn_box_weights[2],
                    cfg->rpn_box_weights[3]},
        .clamp = cfg->bbox_clamp,
        .plus_one = cfg->box_plus_one,
        .torch_exp = !pyf,
    };
    const int one = cfg->box_plus_one ? 1 : 0;
    const float clip_w = (float)in->img_w - (float)one, clip_h = (float)in->img_h - (float)one;

    // scratch: fr_scored[N], boxes[N][4], scores[N], keep[N], order[N], sorted boxes and
    // scores (py-faster-rcnn) [N][4] + [N]
    size_t bytes = (size_t)N * (sizeof(fr_scored) + 10 * sizeof(float) + 2 * sizeof(int));
    unsigned char *buf = fr_malloc(bytes);
    if (!buf) return fr_fail(err, FR_ERR_NOMEM, "rpn: out of memory (%d anchors)", N);
    fr_scored *sc = (fr_scored *)buf;
    float *bx = (float *)(sc + N), *bs = bx + 4 * (size_t)N;
    int *keep = (int *)(bs + N), *order = keep + N;
    float *sb = (float *)(order + N), *ss = sb + 4 * (size_t)N;
    int m = 0, nk = 0;

    if (!pyf) {
        for (int i = 0; i < N; i++) {
            const int c = i / A;
            sc[i].score = anchor_score(cfg, in->objectness + (size_t)c * in->obj_stride, A, i % A);
            sc[i].index = i;
        }
        const int k = cfg->pre_nms_topk < N ? cfg->pre_nms_topk : N;
        fr_topk_torch(sc, N, k);
        const float minsz = cfg->rpn_min_size;
        for (int t = 0; t < k; t++) {
            const int i = sc[t].index;
            float anc[4], b[4];
            anchor_box(cell, A, in->feat_w, start, stride, i, anc);
            const float *d = in->deltas + (size_t)(i / A) * in->delta_stride + 4 * (i % A);
            fr_box_decode(&coder, anc, d, b);
            if (!finite4(b) || !isfinite(sc[t].score)) continue;
            b[0] = clampf(b[0], 0.0f, clip_w);
            b[1] = clampf(b[1], 0.0f, clip_h);
            b[2] = clampf(b[2], 0.0f, clip_w);
            b[3] = clampf(b[3], 0.0f, clip_h);
            if (!(b[2] - b[0] > minsz && b[3] - b[1] > minsz)) continue;
            memcpy(bx + 4 * (size_t)m, b, sizeof b);
            bs[m++] = sc[t].score;
        }
        double thr = fr_decimal_of_float(cfg->rpn_nms_thresh);
        st = fr_batched_nms_torchvision(bx, bs, NULL, m, thr, cfg->post_nms_topk, keep, &nk, err);
        if (st != FR_OK) goto done;
    } else {
        const float minsz = cfg->rpn_min_size * (float)in->im_scale;
        for (int i = 0; i < N; i++) {
            float anc[4], b[4];
            anchor_box(cell, A, in->feat_w, start, stride, i, anc);
            const int c = i / A;
            const float *d = in->deltas + (size_t)c * in->delta_stride + 4 * (i % A);
            fr_box_decode(&coder, anc, d, b);
            float s = anchor_score(cfg, in->objectness + (size_t)c * in->obj_stride, A, i % A);
            if (isnan(s) || isnan(b[0]) || isnan(b[1]) || isnan(b[2]) || isnan(b[3])) continue;
            b[0] = clampf(b[0], 0.0f, clip_w); // np.maximum(np.minimum(x, W - 1), 0)
            b[1] = clampf(b[1], 0.0f, clip_h);
            b[2] = clampf(b[2], 0.0f, clip_w);
            b[3] = clampf(b[3], 0.0f, clip_h);
            float ws = b[2] - b[0] + (float)one, hs = b[3] - b[1] + (float)one;
            if (!(ws >= minsz && hs >= minsz)) continue;
            memcpy(bx + 4 * (size_t)m, b, sizeof b);
            bs[m++] = s;
        }
        // order = scores.argsort()[::-1][:pre_nms_topN]; proposals = proposals[order]
        fr_argsort_desc_numpy(bs, m, order);
        const int k = cfg->pre_nms_topk < m ? cfg->pre_nms_topk : m;
        for (int t = 0; t < k; t++) {
            memcpy(sb + 4 * (size_t)t, bx + 4 * (size_t)order[t], 4 * sizeof(float));
            ss[t] = bs[order[t]];
        }
        memcpy(bx, sb, (size_t)k * 4 * sizeof(float));
        memcpy(bs, ss, (size_t)k * sizeof(float));
        m = k;
        // gpu_nms: order = scores.argsort()[::-1] again, NMS in that order, keep = order[keep]
        fr_argsort_desc_numpy(bs, m, order);
        double thr = (double)cfg->rpn_nms_thresh; // the kernel's float threshold
        st = fr_nms(bx, order, m, thr, cfg->box_plus_one, cfg->post_nms_topk, keep, &nk, err);
        if (st != FR_OK) goto done;
    }
    for (int t = 0; t < nk; t++) {
        memcpy(out_boxes + 4 * (size_t)t, bx + 4 * (size_t)keep[t], 4 * sizeof(float));
        out_scores[t] = bs[keep[t]];
    }
    *out_n = nk;
done:
    fr_free(buf);
    return st;
}
