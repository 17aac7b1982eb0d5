// gemm.c - the convolutions' built-in GEMM (see gemm.h).
//
// Loop order (Goto / BLIS, mirrored for row-major C with vectors along the output channels):
// a thread takes blocks of at most FR_GEMM_MC rows; for each k range of at most FR_GEMM_KC it
// packs the block's A rows once (row-major, stride FR_GEMM_LDA: L2), then for each FR_GEMM_NC
// columns of weights (a KC x NC block: L2) runs each 12-row strip of A (L1) across the 32-wide
// weight panels, which stream from L2 with a software prefetch. C's tile is loaded only when
// accumulating (k ranges after the first, or accumulate) and stored once per k range, with the
// epilogue on the last. With a fr_gemm_subset the rows come from the caller's list and the
// micro-kernel runs over the listed k columns only. Block sizes were tuned on a 2-core AVX-512
// Xeon (1 MiB L2 per core) against cblas_sgemm on the R101-C4 shapes (README, "Benchmark").
#include "gemm.h"

#include "alloc.h"
#include "status.h"

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FR_HAVE_AVX512_KERNEL 1
#include <immintrin.h>
#endif

// The micro-kernel alone runs without sanitizer checks: under ASan every broadcast of A would
// be checked, which made the sanitizer test run 24x slower on full-size models. Its accesses
// are fixed by construction (12 rows of the packed A block, kc <= FR_GEMM_LDA - 16 floats;
// one weight panel; C through masks for mr rows and nr columns); the packing and the driver
// stay instrumented, and tests/test_ops.c checks its results (partial strips and panels
// included) against a naive convolution.
#if defined(__clang__)
#define FR_NO_SAN __attribute__((no_sanitize("address", "undefined")))
#elif defined(__GNUC__)
#define FR_NO_SAN __attribute__((no_sanitize_address, no_sanitize_undefined))
#else
#define FR_NO_SAN
#endif

// Both settings are computed once; concurrent first calls compute the same value (relaxed atomics).
int fr_gemm_threads(void) {
    static int cached;
    int n = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (!n) {
#ifdef _OPENMP
        int t = omp_get_max_threads(), p = omp_get_num_procs();
        if (p > t) t = p;
#else
        int t = 1;
#endif
        n = t < 1 ? 1 : t > 64 ? 64 : t;
        __atomic_store_n(&cached, n, __ATOMIC_RELAXED);
    }
    return n;
}

int fr_gemm_enabled(void) {
    static int cached = -1;
    int on = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (on < 0) {
        const char *e = getenv("FRCNN_GEMM");
        int want = !(e && !strcmp(e, "blas"));
#ifdef FR_HAVE_AVX512_KERNEL
        __builtin_cpu_init();
        on = want && __builtin_cpu_supports("avx512f");
#else
        (void)want;
        on = 0;
#endif
        __atomic_store_n(&cached, on, __ATOMIC_RELAXED);
    }
    return on;
}

size_t fr_gemm_scratch(void) { return (size_t)fr_gemm_threads() * (FR_GEMM_MC + FR_GEMM_MR) * FR_GEMM_LDA; }

size_t fr_gemm_packed_floats(int n, int k) {
    return (size_t)((n + FR_GEMM_NR - 1) / FR_GEMM_NR) * k * FR_GEMM_NR;
}

void fr_gemm_pack_b(const float *b, int n, int k, float *dst) {
    memset(dst, 0, fr_gemm_packed_floats(n, k) * sizeof(float));
    for (int j = 0; j < n; j++)
        for (int kk = 0; kk < k; kk++)
            dst[((size_t)(j / FR_GEMM_NR) * k + kk) * FR_GEMM_NR + j % FR_GEMM_NR] = b[(size_t)j * k + kk];
}

int fr_gemm_pack_b_inplace(float *b, int n, int k) {
    float *t = fr_malloc((size_t)FR_GEMM_NR * k * sizeof(float));
    if (!t) return FR_ERR_NOMEM;
    for (int p = 0; p < n / FR_GEMM_NR; p++) {
        float *panel = b + (size_t)p * FR_GEMM_NR * k;
        memcpy(t, panel, (size_t)FR_GEMM_NR * k * sizeof(float));
        fr_gemm_pack_b(t, FR_GEMM_NR, k, panel);
    }
    fr_free(t);
    return FR_OK;
}

#ifdef FR_HAVE_AVX512_KERNEL

typedef struct {
    const float *bias, *res; // epilogue (last k range only); bias NULL: none. res: row 0, this panel's column
    int relu, load;          // load: C holds a partial sum to add to
} tile_op;

// C[mr x 32] (+)= A[12 x kc] (row stride FR_GEMM_LDA, a compile-time constant so that one
// pointer addresses all 12 rows) * panel[kc][32], summed over k in the nseg ranges
// [seg[2s], seg[2s + 1]) of [0, kc) only, then the epilogue when op->bias or op->relu. Row i
// of the tile is c + off[i] (and op->res + off[i]); rows past mr and columns past nr are not
// stored.
FR_NO_SAN __attribute__((target("avx512f,fma"))) static void kernel(const int *seg, int nseg, const float *a,
                                                                 const float *b, float *c, const size_t *off,
                                                                 int mr, int nr, const tile_op *op) {
    enum { MR = FR_GEMM_MR };
    __m512 r[MR][2];
    for (int i = 0; i < MR; i++) r[i][0] = r[i][1] = _mm512_setzero_ps();
    for (int s = 0; s < nseg; s++) {
        const float *as = a + seg[2 * s], *bs = b + (size_t)seg[2 * s] * FR_GEMM_NR;
        for (int k = seg[2 * s]; k < seg[2 * s + 1]; k++, as++, bs += FR_GEMM_NR) {
            __m512 b0 = _mm512_load_ps(bs), b1 = _mm512_load_ps(bs + 16);
            // the panel streams from L2: ask for it 32 steps (4 KiB) ahead
            _mm_prefetch((const char *)(bs + 32 * FR_GEMM_NR), _MM_HINT_T0);
            _mm_prefetch((const char *)(bs + 32 * FR_GEMM_NR + 16), _MM_HINT_T0);
            for (int i = 0; i < MR; i++) {
                __m512 av = _mm512_set1_ps(as[i * FR_GEMM_LDA]);
                r[i][0] = _mm512_fmadd_ps(av, b0, r[i][0]);
                r[i][1] = _mm512_fmadd_ps(av, b1, r[i][1]);
            }
        }
    }
    __mmask16 mk[2] = {nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1),
                       nr >= 32 ? (__mmask16)0xFFFF : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0};
    __m512 zero = _mm512_setzero_ps();
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < 2; v++) {
            if (!mk[v]) continue;
            float *cc = c + off[i] + 16 * v;
            __m512 x = r[i][v];
            if (op->load) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mk[v], cc));
            if (op->bias) { // y + (b + residual): the rounding of ops.c's separate epilogue
                __m512 t = _mm512_maskz_loadu_ps(mk[v], op->bias + 16 * v);
                if (op->res) t = _mm512_add_ps(t, _mm512_maskz_loadu_ps(mk[v], op->res + off[i] + 16 * v));
                x = _mm512_add_ps(x, t);
            }
            if (op->relu) x = _mm512_max_ps(x, zero);
            _mm512_mask_storeu_ps(cc, mk[v], x);
        }
}

// The group of GEMM rows [i, i + mr), or -1 when they are not all in one group (or there are
// no groups): then every column.
static int strip_group(const fr_gemm_subset *sub, size_t i, size_t mr) {
    if (!sub || !sub->ngroup) return -1;
    int g = fr_gemm_group_of(sub->end, sub->ngroup, i);
    return i + mr <= sub->end[g] ? g : -1;
}

void fr_gemm_run(size_t m, int n, int k, fr_gemm_pack_fn pack, const void *ctx, const float *bp, float *c,
                 size_t ldc, int accumulate, const float *bias, const float *res, int relu,
                 const fr_gemm_subset *sub, float *scratch) {
    if (!m || n <= 0) return;
    FR_ASSERT(!sub || (sub->ngroup >= 0 && sub->ngroup <= FR_GEMM_MAXGROUP));
    if (sub) {
        for (int g = 0; g < sub->ngroup; g++) FR_ASSERT(sub->nseg[g] >= 0 && sub->nseg[g] <= FR_GEMM_MAXSEG);
        FR_ASSERT(!sub->ngroup || sub->end[sub->ngroup - 1] == m);
    }
    // k ranges of equal size, at most FR_GEMM_KC (the same with or without sub: same sums)
    int nk = (k + FR_GEMM_KC - 1) / FR_GEMM_KC;
    if (nk < 1) nk = 1;
    int kstep = (k + nk - 1) / nk;
    // blocks of at most FR_GEMM_MC rows, as many per thread (a whole number of 12-row strips each)
#ifdef _OPENMP
    int nt = omp_in_parallel() ? 1 : omp_get_max_threads(); // the caller's team size (server workers set it)
#else
    int nt = 1;
#endif
    if (nt > fr_gemm_threads()) nt = fr_gemm_threads();
    if (nt < 1) nt = 1;
    size_t nb = (m + FR_GEMM_MC - 1) / FR_GEMM_MC;
    if (nb < (size_t)nt) nt = (int)nb;
    nb = (nb + nt - 1) / nt * nt;
    size_t mcb = (m + nb - 1) / nb;
    mcb = (mcb + FR_GEMM_MR - 1) / FR_GEMM_MR * FR_GEMM_MR;
    if (mcb > FR_GEMM_MC) mcb = FR_GEMM_MC;
    nb = (m + mcb - 1) / mcb;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (size_t ib = 0; ib < nb; ib++) {
#ifdef _OPENMP
        float *pa = scratch + (size_t)omp_get_thread_num() * (FR_GEMM_MC + FR_GEMM_MR) * FR_GEMM_LDA;
#else
        float *pa = scratch;
#endif
        size_t i0 = ib * mcb, row[FR_GEMM_MC], off[FR_GEMM_MC];
        int mc = m - i0 < mcb ? (int)(m - i0) : (int)mcb;
        for (int i = 0; i < mc; i++) row[i] = sub ? sub->row(sub->ctx, i0 + i) : i0 + i, off[i] = row[i] * ldc;
        // each strip's group (-1: every column), the same for every k range
        enum { NS = FR_GEMM_MC / FR_GEMM_MR };
        _Static_assert(FR_GEMM_MC % FR_GEMM_MR == 0, "a block is whole strips");
        int grp[NS];
        for (int i = 0; i < mc; i += FR_GEMM_MR)
            grp[i / FR_GEMM_MR] = strip_group(sub, i0 + i, (size_t)(mc - i < FR_GEMM_MR ? mc - i : FR_GEMM_MR));
        for (int p0 = 0; p0 < k; p0 += kstep) {
            int kc = k - p0 < kstep ? k - p0 : kstep;
            for (int i = 0; i < mc; i++) pack(ctx, row[i], p0, kc, pa + (size_t)i * FR_GEMM_LDA);
            for (int i = mc; i % FR_GEMM_MR; i++) // the last strip's missing rows: computed, never stored
                memset(pa + (size_t)i * FR_GEMM_LDA, 0, (size_t)kc * sizeof(float));
            // each strip's column ranges within this k range, relative to p0 (once per k range)
            int seg[NS][2 * FR_GEMM_MAXSEG], nseg[NS];
            for (int i = 0; i < mc; i += FR_GEMM_MR) {
                int *sp = seg[i / FR_GEMM_MR], *ns = &nseg[i / FR_GEMM_MR], g = grp[i / FR_GEMM_MR];
                if (g < 0) {
                    sp[0] = 0, sp[1] = kc, *ns = 1;
                    continue;
                }
                *ns = 0;
                for (int s = 0; s < sub->nseg[g]; s++) {
                    int lo = sub->seg[g][2 * s] > p0 ? sub->seg[g][2 * s] : p0;
                    int hi = sub->seg[g][2 * s + 1] < p0 + kc ? sub->seg[g][2 * s + 1] : p0 + kc;
                    if (lo < hi) sp[2 * *ns] = lo - p0, sp[2 * *ns + 1] = hi - p0, ++*ns;
                }
            }
            int last = p0 + kc >= k;
            tile_op op = {NULL, NULL, last && relu, p0 > 0 || accumulate};
            for (int j0 = 0; j0 < n; j0 += FR_GEMM_NC) {
                int j1 = j0 + FR_GEMM_NC < n ? j0 + FR_GEMM_NC : n;
                for (int i = 0; i < mc; i += FR_GEMM_MR) {
                    int mr = mc - i < FR_GEMM_MR ? mc - i : FR_GEMM_MR;
                    const int *sp = seg[i / FR_GEMM_MR];
                    for (int j = j0; j < j1; j += FR_GEMM_NR) {
                        const float *panel = bp + ((size_t)(j / FR_GEMM_NR) * k + p0) * FR_GEMM_NR;
                        op.bias = last && bias ? bias + j : NULL;
                        op.res = op.bias && res ? res + j : NULL;
                        kernel(sp, nseg[i / FR_GEMM_MR], pa + (size_t)i * FR_GEMM_LDA, panel, c + j, off + i, mr, n - j, &op);
                    }
                }
            }
        }
    }
}

#else

void fr_gemm_run(size_t m, int n, int k, fr_gemm_pack_fn pack, const void *ctx, const float *bp, float *c,
                 size_t ldc, int accumulate, const float *bias, const float *res, int relu,
                 const fr_gemm_subset *sub, float *scratch) {
    (void)m, (void)n, (void)k, (void)pack, (void)ctx, (void)bp, (void)c, (void)ldc, (void)accumulate, (void)bias,
        (void)res, (void)relu, (void)sub, (void)scratch;
    abort(); // fr_gemm_enabled() is 0 here
}

#endif
