// rpn.h - anchors and proposal selection: the data-dependent half of the RPN.
//
// The RPN head's convolutions (3x3 conv + ReLU, objectness and delta 1x1 convs) are computed
// by the caller; this stage turns their outputs into proposals exactly as the reference
// does (shared/docs/semantics.md A and B). All boxes are float32 x1, y1, x2, y2 in pixels of
// the resized (network input) image. Nothing here keeps state or owns caller memory.
//
// Anchor order: index i = (y * W + x) * A + a, A fastest, the order of the flattened
// (H, W, A) objectness map. Cell anchors (a):
// - FR_ANCHORS_DETECTRON2: size outer, ratio inner; w = sqrt(size^2 / ratio), h = ratio * w,
//   [-w/2, -h/2, w/2, h/2] (in double, rounded to float once); the cell (x, y) adds
//   ((x + offset) * stride, (y + offset) * stride) to both corners (float32 add).
// - FR_ANCHORS_PYFRCNN: ratio outer, scale inner (scale = size / stride); base window
//   [0, 0, stride-1, stride-1]; ws = round(sqrt(stride^2 / ratio)), hs = round(ws * ratio)
//   (round half to even, as numpy), then scaled; +1 pixel convention (x2 = x1 + w - 1).
//   For stride 16, sizes 128/256/512: [-84,-40,99,55], [-176,-88,191,103], ... .
//
// Inputs (per cell, channels-last as the head's convs write them, so a fused conv output can
// be passed with its own strides):
// - objectness, FR_OBJ_SIGMOID: A logits per cell (anchor a at obj[cell * obj_stride + a]).
// - objectness, FR_OBJ_SOFTMAX2: 2A logits per cell, background block first:
//   bg(a) = obj[cell * obj_stride + a], fg(a) = obj[cell * obj_stride + A + a] (py-faster-rcnn's
//   rpn_cls_score layout); the score is softmax(bg, fg)[fg] computed as caffe does.
// - deltas: 4A per cell, anchor a's (dx, dy, dw, dh) at deltas[cell * delta_stride + 4a + k]
//   (detectron2's (A, 4) view of anchor_deltas; py-faster-rcnn's rpn_bbox_pred).
//
// Selection, cfg->family == FR_FAMILY_DETECTRON2 (find_top_rpn_proposals, one level):
//   top pre_nms_topk scores (fr_topk_torch: torch.topk's exact tie order) -> decode
//   (weights rpn_box_weights, dw/dh clamped at bbox_clamp, no +1, torch's exp) -> drop boxes
//   with a non-finite coordinate or score -> clip to [0, W] x [0, H] -> keep w > rpn_min_size
//   and h > rpn_min_size -> torchvision batched_nms (fr_batched_nms_torchvision, IoU >
//   rpn_nms_thresh read back as its decimal double) -> first post_nms_topk.
//   Scores out: the objectness logits (sigmoid) or fg probabilities (softmax2).
// Selection, FR_FAMILY_PYFRCNN (proposal_layer.py): decode every anchor (+1 convention when
//   cfg->box_plus_one, clamp bbox_clamp: use 100 for "none") -> clip to [0, W-1] x [0, H-1]
//   -> keep (x2-x1+1) >= rpn_min_size * im_scale and the same for heights (float32) -> numpy
//   argsort order, first pre_nms_topk -> NMS (+1 areas, IoU > (float)rpn_nms_thresh, the GPU
//   kernel's rule; the order re-derived by argsort as gpu_nms does) -> first post_nms_topk.
//   Deviation: boxes or scores that are NaN are dropped (py-faster-rcnn would rank a NaN
//   score first).
#ifndef FR_RPN_H
#define FR_RPN_H

#include "core/config.h"
#include "core/status.h"

#define FR_MAX_CELL_ANCHORS (FR_MAX_ANCHOR_SIZES * FR_MAX_ANCHOR_RATIOS)
#define FR_RPN_MAX_ANCHORS (1 << 26) // H * W * A limit (4096 x 4096 feature grid x 4)

// Writes the A = num_sizes * num_ratios cell anchors into cell[A][4] (capacity
// FR_MAX_CELL_ANCHORS * 4) and returns A; FR_ERR_INVALID (with message) for a config whose
// anchors are unusable (no sizes/ratios, non-positive values, stride < 1).
fr_status fr_anchors_cell(const fr_config *cfg, float *cell, int *num, fr_err *err);

// Writes all H * W * A anchors into out[H * W * A][4] (index order above).
void fr_anchors_grid(const fr_config *cfg, const float *cell, int num, int feat_h, int feat_w,
                     float *out);

typedef struct {
    int feat_h, feat_w;        // the RPN feature grid (H, W), >= 1
    const float *objectness;   // see layouts above
    int obj_stride;            // floats from one cell to the next (A or 2A, or more if fused)
    const float *deltas;       // see layouts above
    int delta_stride;          // floats from one cell to the next (>= 4A)
    int img_h, img_w;          // resized image size: the clip window
    double im_scale;           // resize factor (py-faster-rcnn min size = rpn_min_size * scale)
} fr_rpn_input;

// Selects proposals. boxes (capacity cfg->post_nms_topk * 4 floats) and scores (capacity
// cfg->post_nms_topk) receive *n <= post_nms_topk proposals, best first.
// Errors: FR_ERR_INVALID (bad sizes or strides, with the value), FR_ERR_NOMEM (scratch).
// Scratch: about 60 bytes per anchor (plus the NMS's), allocated and freed inside.
fr_status fr_rpn_proposals(const fr_config *cfg, const fr_rpn_input *in, float *boxes,
                           float *scores, int *n, fr_err *err);

#endif
