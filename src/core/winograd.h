// winograd.h - Winograd F(4x4, 3x3) convolution for 3x3 / stride 1 / pad 1 layers: the opt-in
// fast mode (fr_model_load_ex with FR_MODEL_FAST, `--fast` on the command line).
//
// Each 4x4 block of outputs is computed from a 6x6 input patch with 36 multiplications per
// (input, output) channel pair instead of 144: the 36 transform positions are 36 GEMMs of
// (tiles x cin) by (cout x cin)^T, on chunks of tiles of at most FR_WINO_CHUNK_BYTES of scratch.
// Partial tiles at the right and bottom edges are cropped; on the built-in GEMM they skip the
// transform positions that feed only their cropped last row or column. Not exact: the
// transforms amplify float rounding (tests/test_winograd.c bounds it against direct
// convolution; README's "fast mode" section gives its effect on detections).
#ifndef FR_WINOGRAD_H
#define FR_WINOGRAD_H

#include "ops.h"

#define FR_WINO_POS 36
#define FR_WINO_CHUNK_BYTES (96u << 20)

// Computes c->wu (the transformed weights, [36][cout][cin], 4x the 3x3 weights; each position
// packed for the built-in GEMM when it runs, gemm.h) when c is a
// 3x3 / stride 1 / pad 1 convolution, and frees c->w: from then on the layer runs only as
// fr_conv_forward / fr_conv_forward_act_in without a residual. Other layers are left alone.
// FR_OK or FR_ERR_NOMEM (then c is unchanged).
fr_status fr_wino_prepare(fr_conv *c);

// Scratch floats fr_wino_forward needs for an n x h x w input (0 when c->wu is NULL).
size_t fr_wino_scratch(const fr_conv *c, int n, int h, int w);

// y = act(conv(x') + b) with x' = x, or relu(x + in_bias) when in_bias is not NULL (as
// fr_conv_forward_act_in). Needs c->wu.
void fr_wino_forward(const fr_conv *c, const fr_tensor *x, const float *in_bias, fr_tensor *y, int relu,
                     float *scratch);

#endif
