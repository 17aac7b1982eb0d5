// postprocess.h - the box head's outputs -> final detections (shared/docs/semantics.md A, B).
//
// Input, for R proposals (float32, row-major; the caller owns everything):
//   proposals [R][4]  x1, y1, x2, y2 in resized-image pixels (the RPN's output)
//   cls_logits [R][K+1]  class logits; background is column K (cfg->background ==
//                 FR_BG_LAST, detectron2) or column 0 (FR_BG_FIRST, py-faster-rcnn)
//   deltas [R][D]  box deltas: D = 4K (class-specific, no background row: detectron2),
//                 4(K+1) (cfg->box_includes_background: class c's deltas sit where its logit
//                 does), or with cfg->class_agnostic 4 (or 8 with a background row; the
//                 foreground box is the last 4 columns)
// Rows may be strided (logit_stride, delta_stride), e.g. one [logits | deltas] matrix.
// Output: *dets (fr_malloc'd, caller frees with fr_free; never NULL on success) holds *n
// detections sorted by score descending, boxes in original-image pixels.
//
// detectron2 (cfg->family FR_FAMILY_DETECTRON2): fast_rcnn_inference_single_image then
// detector_postprocess, reproduced operation by operation:
//   probabilities = torch softmax (fr_softmax_torch); boxes = deltas applied to the proposals
//   (weights head_box_weights, clamp bbox_clamp, torch's exp); proposals with any non-finite
//   box or probability are dropped; boxes clipped to [0, W] x [0, H]; candidates
//   (proposal-major, class-minor order) with probability > score threshold (float32
//   compare); fr_batched_nms_torchvision over all candidates (IoU > nms_thresh as its decimal
//   double; note its two paths at <= 1000 / > 1000 candidates); then the class mask; first
//   max_detections; x *= (float)(W0 / W), y *= (float)(H0 / H); clip to [0, W0] x [0, H0]; drop
//   boxes with zero width or height (so fewer than max_detections can come out, as in
//   detectron2).
// py-faster-rcnn (FR_FAMILY_PYFRCNN): test.py im_detect + test_net:
//   boxes = proposals / (float)im_scale (original frame); probabilities = caffe softmax (expf,
//   sum in class order, divide); boxes decoded with the +1 convention when cfg->box_plus_one
//   (no clamp: set bbox_clamp 100), clipped to [0, W0-1] x [0, H0-1]; per foreground class
//   (ascending, classes masked out skipped): candidates with probability > threshold, ordered
//   by numpy argsort, NMS with +1 areas and IoU > (float)nms_thresh (the GPU kernel's rule);
//   if more than max_detections survive over all classes, keep those with score >= the
//   max_detections-th largest (ties can keep more, as test_net does). Output order: score
//   descending, equal scores by class then NMS order.
//   Deviations: a candidate with a non-finite box coordinate is dropped; caffe sums the
//   softmax with a BLAS gemv, so its probabilities can differ in the last bit.
#ifndef FR_POSTPROCESS_H
#define FR_POSTPROCESS_H

#include "core/config.h"
#include "core/status.h"

// One detection. Same layout as fr_detection (detector.h), which this stage cannot include.
typedef struct {
    int class_id;   // 0..K-1 (foreground classes, background removed)
    float score;    // softmax probability
    float box[4];   // x1, y1, x2, y2 in original-image pixels
} fr_head_det;

typedef struct {
    const float *proposals;  // [R][4] resized-image pixels
    const float *cls_logits; // [R][K+1]
    const float *deltas;     // [R][D], D as above
    int R;                   // >= 0
    int img_h, img_w;        // resized image size (network input), >= 1
    int orig_h, orig_w;      // original image size, >= 1
    double im_scale;         // resize factor (py-faster-rcnn divides the proposals by it), > 0
    int logit_stride;        // floats from one row of cls_logits to the next; 0: K+1
    int delta_stride;        // floats from one row of deltas to the next; 0: D
} fr_head_input;

typedef struct {
    float score_thresh;               // < 0: cfg->score_thresh; keep probability > this
    int max_detections;               // <= 0: cfg->detections_per_image
    const unsigned char *class_mask;  // NULL: all classes; else K bytes, nonzero = report
} fr_postprocess_opts;

// Columns of the deltas matrix the config implies (D above).
int fr_head_delta_cols(const fr_config *cfg);

// Runs the post-processing. Errors: FR_ERR_INVALID (sizes, thresholds; message names the
// value), FR_ERR_NOMEM. On failure *dets = NULL, *n = 0.
fr_status fr_head_postprocess(const fr_config *cfg, const fr_head_input *in,
                              const fr_postprocess_opts *opts, fr_head_det **dets, int *n,
                              fr_err *err);

// torch.softmax(x, -1) for one row of n floats as PyTorch 1.13 computes it on AVX2 CPUs
// (max, torch's exp of x - max, 8-lane sum, multiply by 1/sum): bit-identical there.
void fr_softmax_torch(const float *x, int n, float *out);

#endif
