// gemm.h - the built-in GEMM of the convolutions (x86-64 with AVX-512F): C = A * B^T with B
// (the weights) packed once at load, A packed block by block from the layer's input by a
// callback, and the bias / residual / ReLU epilogue applied in registers before C is stored.
//
// Why not cblas_sgemm: a kxk convolution on cblas needs its im2col matrix written to memory
// and read back (2.7 GB per image for res5's conv2 at 1000 RoIs), and every layer's epilogue
// is one more pass over its output. Here A is gathered straight into an L2-sized block (the
// im2col rows exist only one block at a time) and the epilogue rides on the last store, so
// neither costs a pass over memory. The micro-kernel keeps a 12 x 32 tile of C in 24 zmm
// registers. Sums run over k in the same order as a plain dot product split at KC boundaries;
// results differ from cblas_sgemm's only by float rounding.
//
// Where AVX-512F is missing (or FRCNN_GEMM=blas is set in the environment) the weights stay
// unpacked and ops.c uses im2col + cblas_sgemm as before.
#ifndef FR_GEMM_H
#define FR_GEMM_H

#include <stddef.h>

#define FR_GEMM_MR 12  // rows of the register tile (output pixels)
#define FR_GEMM_NR 32  // columns of the register tile and of a weight panel (output channels)
#define FR_GEMM_MC 144 // rows of A per block
#define FR_GEMM_KC 512 // largest k range per block (K 512, res5's and Winograd's, in one: C stored once)
#define FR_GEMM_NC 256 // columns of B per sweep (a KC x NC block of weights, 512 KiB, stays in L2)
#define FR_GEMM_LDA (FR_GEMM_KC + 16) // row stride of a packed A block: not a multiple of 4 KiB

// 1 when this CPU runs the built-in GEMM (AVX-512F) and FRCNN_GEMM is not "blas". Evaluated once.
int fr_gemm_enabled(void);

// The most threads one GEMM uses: the larger of OpenMP's maximum and the processor count at the
// first call, at most 64; fixed for the process, so scratch sized by fr_gemm_scratch() stays
// enough. A call uses omp_get_max_threads() of its caller within that bound (one when called
// inside a parallel region).
int fr_gemm_threads(void);

// Scratch floats one fr_gemm_run needs (a packed A block per thread).
size_t fr_gemm_scratch(void);

// Floats of B (n x k, row-major) packed into panels of FR_GEMM_NR columns, zero-padded.
size_t fr_gemm_packed_floats(int n, int k);
// dst[p][kk][j] = b[p * NR + j][kk] (0 past n). dst: fr_gemm_packed_floats(n, k) floats, 64-byte aligned.
void fr_gemm_pack_b(const float *b, int n, int k, float *dst);
// fr_gemm_pack_b in place, through one panel of temporary heap: n must be a multiple of
// FR_GEMM_NR (panel p then occupies exactly rows [32p, 32p + 32) of b). FR_OK or FR_ERR_NOMEM
// (b unchanged).
int fr_gemm_pack_b_inplace(float *b, int n, int k);

// b[j][kk] of a packed B.
static inline float fr_gemm_packed_at(const float *p, int k, int j, int kk) {
    return p[((size_t)(j / FR_GEMM_NR) * k + kk) * FR_GEMM_NR + j % FR_GEMM_NR];
}

// Writes A's row `row`, columns [k0, k0 + kc), to dst (kc floats).
typedef void (*fr_gemm_pack_fn)(const void *ctx, size_t row, int k0, int kc, float *dst);

#define FR_GEMM_MAXSEG 16  // the most column ranges of a group of a fr_gemm_subset
#define FR_GEMM_MAXGROUP 64 // the most groups

// A GEMM over C's rows in another order, whose rows fall into groups with A zero outside
// some columns: a convolution's output pixels near the border, whose padding taps read zeros,
// or the Winograd tiles that need a transform position. row(ctx, i) is the row of C (and of
// res, and the row handed to the pack callback) that GEMM row i stands for. Group g is GEMM
// rows [end[g - 1], end[g]) (end[-1] = 0; end[ngroup - 1] = m), whose A rows may be nonzero
// only in the nseg[g] column ranges [seg[g][2s], seg[g][2s + 1]) (ascending, disjoint; none:
// A is zero there). ngroup 0: every column of every row. The products left out are exact
// zeros, and the k ranges and the summation order of the others are those of the full GEMM,
// so each row of C comes out as the full GEMM would give it, bit for bit. (A 12-row strip of
// the micro-kernel that straddles groups runs over every column.)
typedef struct {
    size_t (*row)(const void *ctx, size_t i);
    const void *ctx;
    int ngroup;
    const size_t *end;
    const int *nseg;
    const int (*seg)[2 * FR_GEMM_MAXSEG];
} fr_gemm_subset;

// The group of a fr_gemm_subset that GEMM row i falls in: the first g with end[g] > i (ngroup >= 1).
static inline int fr_gemm_group_of(const size_t *end, int ngroup, size_t i) {
    int lo = 0, hi = ngroup - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (end[mid] > i) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

// C[m x n] (row stride ldc) = A[m x k] * B^T (+ C when accumulate), then, if bias is not NULL,
// C += bias[j] (+ res[i][j], row stride ldc, when res is not NULL), then max(C, 0) when relu.
// bp: B packed by fr_gemm_pack_b. sub: NULL (rows 0..m-1 of C, every column of A), or m rows
// of C and the columns of A as above. scratch: fr_gemm_scratch() floats. Only when
// fr_gemm_enabled().
void fr_gemm_run(size_t m, int n, int k, fr_gemm_pack_fn pack, const void *ctx, const float *bp, float *c,
                 size_t ldc, int accumulate, const float *bias, const float *res, int relu,
                 const fr_gemm_subset *sub, float *scratch);

#endif
