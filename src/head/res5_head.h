// res5_head.h - the C4 box head on a batch of RoIs: res5 -> mean pool -> predictor.
//
// Input: RoI features (n, S, S, C4) NHWC (S = 14 for detectron2), or already sampled at
// res5's stride (n, S/2, S/2, C4) when pre_strided (valid when the stride sits in res5's first
// 1x1 convs: detectron2's STRIDE_IN_1X1 with res5 stride 2; it reads only those samples).
// Output: pred (n, nout) = [class logits | box deltas] rows, per the merged predictor.
#ifndef FR_RES5_HEAD_H
#define FR_RES5_HEAD_H

#include "backbone/resnet.h"

typedef struct {
    const fr_stage *res5;
    const float *w, *b; // merged predictor [nout][feat], [nout]
    int feat, nout;
} fr_box_head;

// buf[0], buf[1]: ping-pong buffers of fr_stage_plan's act floats for this batch, scratch its
// scratch floats; pooled holds n * feat floats. Cannot fail.
void fr_box_head_forward(const fr_box_head *h, const fr_tensor *roi, int pre_strided, float *buf[2],
                         float *scratch, float *pooled, float *pred);

#endif
