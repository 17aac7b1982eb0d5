// nms.h - box operations shared by the RPN and the detection head: the reference libraries'
// exact score orderings, box decoding, exp, and non-maximum suppression (NMS).
//
// Boxes are float32 [n][4] = x1, y1, x2, y2 in pixels, row-major. Scores are float32 [n].
// Index arrays are int (0-based). Nothing here keeps state; functions that allocate scratch
// memory say so and fail with FR_ERR_NOMEM, everything else cannot fail.
//
// Exactness: the orderings replay the sorting algorithms the references run, so ties come
// out in the same order as theirs (not just "some" order):
// - PyTorch 1.13 CPU torch.sort / torch.topk = libstdc++ std::sort / std::nth_element /
//   std::partial_sort (introsort, median-of-3 pivot, threshold 16) over (value, index) pairs
//   with NaN ranked above every number. Unstable: equal scores do NOT keep index order.
// - numpy 1.24 argsort (kind "quicksort" = numpy's introsort, small-partition cutoff 15),
//   NaN ranked last; py-faster-rcnn uses argsort()[::-1].
// NMS arithmetic follows torchvision's CPU kernel (float32: area = (x2-x1)*(y2-y1),
// IoU = inter / (area_i + area_j - inter), suppress when IoU > threshold compared in double)
// or, with plus_one, py-faster-rcnn's kernel (+1 on widths, heights and intersections).
#ifndef FR_NMS_H
#define FR_NMS_H

#include "status.h"

#include <stddef.h>

// One element of an ordering: a score and the index it came from.
typedef struct {
    float score;
    int index;
} fr_scored;

// Sorts a[0..n) by score descending exactly as PyTorch 1.13 CPU torch.sort(descending=True)
// does when a[i].index == i on entry (libstdc++ std::sort with KeyValueCompDesc).
void fr_sort_desc_torch(fr_scored *a, int n);

// Sorts a[0..n) by score descending, NaN first, equal scores by ascending index: a stable
// sort, what torchvision 0.14's CPU nms kernel orders its boxes with (checked against it).
void fr_sort_desc_stable(fr_scored *a, int n);

// Leaves in a[0..k) what torch.topk(k, largest=True, sorted=True) returns on CPU
// (a[i].index == i on entry; 0 <= k <= n): std::partial_sort when k * 64 <= n, else
// std::nth_element(k-1) then std::sort of the first k-1. a[k..n) is left permuted.
void fr_topk_torch(fr_scored *a, int n, int k);

// order[0..n) = numpy's v.argsort()[::-1] for float32 v (numpy 1.24 quicksort, NaN last
// before the reversal): the order py-faster-rcnn ranks proposals and detections in.
void fr_argsort_desc_numpy(const float *v, int n, int *order);

// exp as PyTorch 1.13 computes it for float32 tensors on AVX2 CPUs (SLEEF expf_u10 with
// fused multiply-adds): bit-identical to torch.exp there. Within 1 ulp of expf.
float fr_expf_torch(float x);

// The double whose shortest decimal form round-trips to f ("0.3" for 0.3f): recovers the
// value a JSON config wrote when it was stored as float (torchvision compares IoU against a
// Python float, so 0.3 and 0.3f decide differently when IoU == 0.3f exactly).
double fr_decimal_of_float(float f);

// Box decoding (R-CNN): applies deltas (dx, dy, dw, dh) to boxes.
typedef struct {
    float weights[4]; // deltas are divided by these first (detectron2: RPN 1,1,1,1; head 10,10,5,5)
    float clamp;      // dw, dh are clamped to <= clamp before exp (detectron2 log(1000/16));
                      // +INFINITY for none (py-faster-rcnn)
    int plus_one;     // py-faster-rcnn: w = x2 - x1 + 1 (and x2 = ctr + 0.5 * w, no -1)
    int torch_exp;    // 1: fr_expf_torch (detectron2 parity), 0: expf (numpy/caffe)
} fr_box_coder;

// Decodes one box: out = transform(box, d). Arithmetic in float32 in the reference order:
// detectron2 Box2BoxTransform.apply_deltas, py-faster-rcnn bbox_transform_inv.
void fr_box_decode(const fr_box_coder *c, const float box[4], const float d[4], float out[4]);

// Greedy NMS over boxes visited in `order` (n indices, highest score first).
// Keeps at most max_keep boxes (max_keep < 0: no limit) and returns how many;
// keep[] (capacity n, or max_keep) receives box indices in visiting order.
// thresh: suppress a box whose IoU with a kept one is > thresh (evaluated as torchvision does:
// the float32 IoU compared to the double thresh). plus_one: py-faster-rcnn areas.
// Scratch: allocates 10n floats; FR_ERR_NOMEM on failure (*nkeep = 0).
fr_status fr_nms(const float *boxes, const int *order, int n, double thresh, int plus_one,
                 int max_keep, int *keep, int *nkeep, fr_err *err);

// The same, written as plainly as possible (for tests). Cannot fail.
int fr_nms_naive(const float *boxes, const int *order, int n, double thresh, int plus_one,
                 int max_keep, int *keep);

// torchvision.ops.batched_nms(boxes, scores, classes, thresh)[:max_keep] as detectron2 calls
// it on CPU (torchvision 0.14), including both of its paths:
// - n > 1000 boxes: NMS per class (classes in ascending order; inside nms() the boxes are
//   visited in fr_sort_desc_stable order), then all kept indices in ascending order re-sorted
//   by score with fr_sort_desc_torch (torch.sort, unstable);
// - n <= 1000 boxes: the "coordinate trick": every box is shifted by
//   class * (max coordinate + 1) in float32 and one NMS runs over all of them (the
//   rounding of shifted coordinates can change decisions very close to the threshold),
//   visiting boxes in fr_sort_desc_stable order; the keep list is in that visiting order.
// classes may be NULL (all 0). max_keep < 0: no limit. keep[] has capacity n.
// Allocates scratch; FR_ERR_NOMEM on failure (*nkeep = 0).
fr_status fr_batched_nms_torchvision(const float *boxes, const float *scores, const int *classes,
                                     int n, double thresh, int max_keep, int *keep, int *nkeep,
                                     fr_err *err);

#endif
