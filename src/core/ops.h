// ops.h - the dense operators of the network on NHWC float32 tensors.
//
// A convolution is a GEMM: rows = output pixels (n, y, x), columns = output channels,
// K = kh*kw*cin. With packed weights (fr_conv_pack, AVX-512 CPUs) it runs on the built-in
// GEMM (gemm.h), which gathers the im2col rows block by block into cache and applies bias,
// residual add and ReLU before storing. Otherwise on cblas_sgemm: 1x1 stride-1 convolutions
// multiply the input directly (no im2col); strided 1x1 convolutions gather the sampled
// pixels; kxk convolutions build im2col rows in chunks (at most FR_COL_CHUNK_BYTES of scratch
// at once); bias, residual add and ReLU are one pass over the output. FrozenBN is folded into
// weight and bias at load.
#ifndef FR_OPS_H
#define FR_OPS_H

#include "gemm.h"
#include "status.h"
#include "tensor.h"

#define FR_COL_CHUNK_BYTES (16u << 20)

typedef struct {
    int cin, cout, kh, kw, stride, pad;
    float *w; // [cout][kh][kw][cin], 64-byte aligned, owned by the model
    float *b; // [cout], owned by the model (zeros when the layer has none)
    float *wu; // fast mode: Winograd weights [36][cout][cin] (winograd.h; packed per position), else NULL
    float *wp; // packed for the built-in GEMM (gemm.h; fr_conv_pack), then w is NULL; else NULL
} fr_conv;

// Output side for input side n.
static inline int fr_conv_out(const fr_conv *c, int n) { return (n + 2 * c->pad - c->kh) / c->stride + 1; }

// Allocates w and b for the given geometry (w uninitialised, b zeroed). FR_ERR_NOMEM.
fr_status fr_conv_alloc(fr_conv *c, int cin, int cout, int kh, int kw, int stride, int pad);
void fr_conv_free(fr_conv *c);

// Moves w into the built-in GEMM's packed layout (wp) when fr_gemm_enabled(); otherwise, or
// when the layer already runs through Winograd, nothing. FR_OK or FR_ERR_NOMEM (c unchanged).
fr_status fr_conv_pack(fr_conv *c);

// Weight of output channel o at k = (ky * kw + kx) * cin + ci, from w or wp.
float fr_conv_weight(const fr_conv *c, int o, size_t k);

// Sets w from a PyTorch-layout weight [cout][cin][kh][kw] (reordered to [cout][kh][kw][cin]).
void fr_conv_set_weight_oihw(fr_conv *c, const float *w_oihw);

// Folds FrozenBN y = (x - mean) / sqrt(var + eps) * gamma + beta into w and b
// (b must hold the conv's own bias, zero when none). Per detectron2 FrozenBatchNorm2d.
void fr_conv_fold_bn(fr_conv *c, const float *gamma, const float *beta, const float *mean,
                     const float *var, float eps);

// Scratch floats fr_conv_forward needs for an input of n x h x w.
size_t fr_conv_scratch(const fr_conv *c, int n, int h, int w);

// y = act(conv(x) + b [+ residual]). y must be preallocated with the output shape
// (x->n, fr_conv_out(h), fr_conv_out(w), cout); residual (may be NULL) has y's shape and
// may alias y (then y's contents are the residual and the GEMM accumulates onto them).
// scratch holds fr_conv_scratch() floats. relu: 0 or 1.
void fr_conv_forward(const fr_conv *c, const fr_tensor *x, fr_tensor *y, const fr_tensor *residual,
                     int relu, float *scratch);

// y = conv(x) alone: no bias, no ReLU, no pass over y after the GEMM. For a producer whose
// bias and ReLU the consumer applies (fr_conv_forward_act_in).
void fr_conv_forward_raw(const fr_conv *c, const fr_tensor *x, fr_tensor *y, float *scratch);

// fr_conv_forward of a kxk convolution (not 1x1 without padding) on the input relu(x + in_bias)
// (in_bias: x->c values), computed while the im2col rows are built: with the producer run by
// fr_conv_forward_raw this saves the producer's pass over its output. Same results bit for bit
// as fr_conv_forward on the activated input.
void fr_conv_forward_act_in(const fr_conv *c, const fr_tensor *x, const float *in_bias, fr_tensor *y,
                            const fr_tensor *residual, int relu, float *scratch);

// 3x3/2 max pool with padding 1 (floor mode), -inf padding: detectron2's stem pool.
void fr_maxpool3x3s2(const fr_tensor *x, fr_tensor *y);
static inline int fr_maxpool_out(int n) { return (n + 2 - 3) / 2 + 1; }

// Mean over h and w: x (n, h, w, c) -> out[n][c].
void fr_meanpool(const fr_tensor *x, float *out);

// out[m][j] = sum_k x[m][k] * w[j][k] + b[j]: x (m, k), w (n, k) row-major.
void fr_linear(const float *x, int m, int k, const float *w, const float *b, int n, float *out);

// Profiling hook (bench only): called after every GEMM the ops run, C[m x n] = A[m x k] *
// B[n x k]^T, with its shape and duration. NULL disables. Not thread-safe to change while running.
typedef void (*fr_gemm_hook)(int m, int n, int k, double ms, void *user);
void fr_ops_set_gemm_hook(fr_gemm_hook fn, void *user);

// The one sgemm call site: C[m x n] (ldc n) = A[m x k] * B[n x k]^T (+ C when beta = 1).
void fr_gemm_nt(int m, int n, int k, const float *a, const float *b, float beta, float *c);
// The same with A's rows lda floats apart and C's rows ldc floats apart.
void fr_gemm_nt_ld(int m, int n, int k, const float *a, int lda, const float *b, float beta, float *c, int ldc);

// C[m x n] (row stride ldc) = A[m x k] (row stride lda) * B^T on the built-in GEMM, B packed
// by fr_gemm_pack_b; sub: NULL, or m rows of A and C picked as in gemm.h's fr_gemm_subset.
// scratch: fr_gemm_scratch() floats. Only when fr_gemm_enabled(). Reported to the profiling
// hook like fr_gemm_nt (m rows).
void fr_gemm_packed_nt(int m, int n, int k, const float *a, size_t lda, const float *bp, float *c, size_t ldc,
                       const fr_gemm_subset *sub, float *scratch);

#endif
