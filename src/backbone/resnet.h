// resnet.h - ResNet (depth 50/101/152, detectron2 C4 layout): the stem and res2..res4 as the
// backbone, and any stage (res5 in the RoI head) as a reusable piece.
//
// Weights come from a safetensors file with detectron2 names, e.g.
// backbone.stem.conv1.weight [64, 3, 7, 7] + backbone.stem.conv1.norm.{weight, bias,
// running_mean, running_var}, backbone.res4.22.conv2.weight, backbone.res3.0.shortcut.weight,
// roi_heads.res5.0.conv1.weight. Widths are read from the tensor shapes; FrozenBN is folded
// into the convolutions at load. A conv with `<name>.bias` and no `.norm.*` is used as is.
// Activations are NHWC; a stage runs on a batch (n > 1 for RoIs).
#ifndef FR_RESNET_H
#define FR_RESNET_H

#include "core/ops.h"
#include "core/safetensors.h"
#include "core/status.h"
#include "core/tensor.h"

typedef struct {
    fr_conv conv1, conv2, conv3; // 1x1 -> 3x3 -> 1x1
    fr_conv shortcut;            // projection (first block of a stage), else unused
    int has_shortcut;
} fr_bottleneck;

typedef struct {
    int nblocks;
    fr_bottleneck *blocks; // owned
    int cin, cout, stride; // stage input/output channels, first block's stride
} fr_stage;

typedef struct {
    fr_conv stem;     // 7x7/2 conv + BN + ReLU, followed by 3x3/2 max pool
    fr_stage res[3];  // res2 (stride 1), res3 (2), res4 (2): output stride 16
} fr_backbone;

// Loads a stage named `prefix` ("backbone.res3", "roi_heads.res5") with nblocks blocks whose
// first block has the given stride (in its 1x1 when stride_in_1x1, else in its 3x3) and
// expects cin input channels. Errors name the tensor and the shapes.
fr_status fr_stage_load(fr_stage *s, fr_st_file *f, const char *prefix, int nblocks, int stride,
                        int stride_in_1x1, int cin, float eps, fr_err *err);
void fr_stage_free(fr_stage *s);

// Loads "backbone.stem" and res2..res4 with block counts from depth.
fr_status fr_backbone_load(fr_backbone *bb, fr_st_file *f, int depth, int stride_in_1x1, float eps,
                           fr_err *err);
void fr_backbone_free(fr_backbone *bb);

// Loads one conv `name` (weight [cout, cin, k, k]) with its FrozenBN or bias. cout < 0: take
// it from the tensor shape. with_bn: 1 = `.norm.*` required unless `.bias` exists.
fr_status fr_conv_load(fr_conv *c, fr_st_file *f, const char *name, int cin, int cout, int k, int stride,
                       int pad, float eps, fr_err *err);

// Memory a stage needs for an n x h x w input, in floats: the largest block output
// (each of two ping-pong buffers) and the block scratch. *ho, *wo: output size.
void fr_stage_plan(const fr_stage *s, int n, int h, int w, size_t *act, size_t *scratch, int *ho, int *wo);
// The same for the whole backbone on an h x w image: act covers the stem output too.
void fr_backbone_plan(const fr_backbone *bb, int h, int w, size_t *act, size_t *scratch);
// Output size (res4) for an h x w input.
void fr_backbone_out_size(int h, int w, int *ho, int *wo);

// Runs a stage. in: the input (in its own memory or in buf[0]/buf[1]); the blocks alternate
// between buf[0] and buf[1] (each >= `act` floats from fr_stage_plan) and never write into
// in's memory; *out points into one of them. pre_strided: the input was already sampled at
// the first block's stride (valid only when the stride sits in the first block's 1x1 convs
// and its shortcut): those convs then run with stride 1 on it.
void fr_stage_forward(const fr_stage *s, const fr_tensor *in, float *buf[2], float *scratch,
                      int pre_strided, fr_tensor *out);

// Runs stem + res2..res4 on an input image tensor (1, H, W, 3). buf[0], buf[1] hold `act`
// floats each, scratch `scratch` floats (fr_backbone_plan). ms[4] (may be NULL) receives the
// time of stem, res2, res3, res4 in milliseconds; *part (may be NULL) is set to 0, 1, 2, 3 as
// each of them starts (for profilers). *out (res4) points into buf[0] or buf[1].
void fr_backbone_forward(const fr_backbone *bb, const fr_tensor *img, float *buf[2], float *scratch,
                         fr_tensor *out, double ms[4], volatile int *part);

#endif
