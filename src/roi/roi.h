// roi.h - RoIAlign and RoIPool on a channels-last feature map (torchvision CPU semantics).
//
// Input: the feature map as fr_tensor (n = 1, H, W, C), float32 NHWC, and R boxes
// boxes[R][4] = x1, y1, x2, y2 in input-image pixels (mapped to the map by spatial_scale).
// Output: out[R][so][so][C] NHWC, so = fr_roi_out_side(p), written into the caller's buffer
// (R * so * so * C floats); every element is written.
//
// RoIAlign = torchvision.ops.roi_align(aligned, sampling_ratio) computed per channel with the
// same float32 operations in the same order, so results are bit-identical to torchvision's
// CPU kernel: start = x * scale - (aligned ? 0.5 : 0); extent forced >= 1 when !aligned;
// bin = extent / out; samples per bin side = sampling_ratio, or ceil(extent / out) when
// sampling_ratio <= 0 (no samples: the bin is 0); a sample at y < -1 or y > H (same for x)
// contributes nothing; coordinates <= 0 become 0, ones past the last pixel use the last
// pixel; bilinear weights hy*hx, hy*lx, ly*hx, ly*lx; bin value = sum of samples / count.
// (One untestable difference: torchvision multiplies out-of-range samples by the value at
// pixel (0, 0) with weight 0, which only matters when that value is inf or NaN.)
// RoIPool = torchvision.ops.roi_pool (= caffe's RoIPooling): corners rounded half away from
// zero after scaling, extent = max(end - start + 1, 1), bin [floor(p * bin), ceil((p+1) * bin))
// shifted and clipped to the map; max over the bin, 0 for an empty bin.
//
// stride > 1 computes only the bins at (stride * i, stride * j): the input a following
// 1 x 1 convolution with that stride reads (detectron2's res5 with STRIDE_IN_1X1 reads every
// other bin of the 14 x 14 grid: so = 7). Those bins are bit-identical to the full output's.
//
// Threads: the RoIs are shared out between `threads` threads: an OpenMP team when built with
// -fopenmp (the pool OpenBLAS uses too), else the caller's thread plus threads - 1 pthreads
// started and joined inside the call. threads <= 0: OpenMP's current team size
// (omp_get_max_threads(), so omp_set_num_threads() governs it; 1 inside a parallel region or
// without OpenMP).
#ifndef FR_ROI_H
#define FR_ROI_H

#include "core/config.h"
#include "core/status.h"
#include "core/tensor.h"

#define FR_ROI_MAX_COORD 1e5f // |box coordinate| limit (pixels): larger is FR_ERR_INVALID

typedef struct {
    fr_roi_op op;          // FR_ROI_ALIGN or FR_ROI_POOL
    int out;               // pooled side (detectron2 C4: 14), 1..1024
    float spatial_scale;   // feature pixels per image pixel (1/16), > 0
    int sampling_ratio;    // RoIAlign: samples per bin side; <= 0: adaptive ceil(extent/out)
    int aligned;           // RoIAlign: 1 = half-pixel shift (detectron2 ROIAlignV2)
    int stride;            // 1: all out x out bins; s > 1: bins 0, s, 2s, .. each way
    int threads;           // threads to use; 1: the calling thread only; <= 0: OpenMP's setting
} fr_roi_params;

// Output side: ceil(out / stride).
static inline int fr_roi_out_side(const fr_roi_params *p) {
    int s = p->stride > 1 ? p->stride : 1;
    return (p->out + s - 1) / s;
}

// Fills p from the config's "roi" section (stride 1, threads 0).
void fr_roi_params_from_config(const fr_config *cfg, fr_roi_params *p);

// Pools R boxes into out. Errors (FR_ERR_INVALID, message names the value): bad parameters,
// feat not (1, H, W, C) with H, W, C >= 1, a box with a non-finite coordinate or one beyond
// FR_ROI_MAX_COORD, or a box needing more than 4096 RoIAlign samples per bin side (proposals
// are clipped to the image; the limits keep the work bounded). FR_ERR_NOMEM (scratch). R == 0 is fine (nothing written). A thread that cannot be started is not an
// error: the calling thread does its share.
fr_status fr_roi_extract(const fr_roi_params *p, const fr_tensor *feat, const float *boxes,
                         int R, float *out, fr_err *err);

#endif
