// winograd.c - Winograd F(4x4, 3x3) convolution, the opt-in fast mode (see winograd.h).
//
// Transforms (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2015, with
// the interpolation points 0, 1, -1, 2, -2 and infinity):
//   V = B^T d B (d: 6x6 input patch), U = G g G^T (g: 3x3 kernel), Y = A^T (U . V) A (4x4).
// The sum over input channels of U . V at each of the 36 positions is one GEMM over
// (tiles x cin) . (cout x cin)^T, so the work is 36 GEMMs per chunk of tiles. V and M are kept
// tile-major ([tile][position][channel]): each tile's transforms read and write one contiguous
// block, and the GEMMs take every 36th row (the built-in GEMM, when it runs, copies rows into
// its packed blocks anyway).
#include "winograd.h"

#include "alloc.h"
#include "gemm.h"
#include "simd.h"

#include <string.h>


#define CB 64 // channels per block in the transforms (their buffers stay in L1/L2)

// Each position's U[p] (cout x cin) is packed for the built-in GEMM (in place) when it runs.
static int packed(const fr_conv *c) { return fr_gemm_enabled() && c->cout % FR_GEMM_NR == 0; }

static int eligible(const fr_conv *c) {
    return c->kh == 3 && c->kw == 3 && c->stride == 1 && c->pad == 1;
}

fr_status fr_wino_prepare(fr_conv *c) {
    if (!eligible(c) || c->wu) return FR_OK;
    static const double G[6][3] = {{1.0 / 4, 0, 0},
                                   {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                   {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                   {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                   {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                   {0, 0, 1}};
    size_t per = (size_t)c->cout * c->cin;
    float *u = fr_aligned_alloc(FR_WINO_POS * per * sizeof(float));
    if (!u) return FR_ERR_NOMEM;
    for (int o = 0; o < c->cout; o++)
        for (int i = 0; i < c->cin; i++) {
            double g[3][3], t[6][3];
            for (int y = 0; y < 3; y++)
                for (int x = 0; x < 3; x++) g[y][x] = fr_conv_weight(c, o, (size_t)(y * 3 + x) * c->cin + i);
            for (int a = 0; a < 6; a++) // t = G g
                for (int x = 0; x < 3; x++) t[a][x] = G[a][0] * g[0][x] + G[a][1] * g[1][x] + G[a][2] * g[2][x];
            for (int a = 0; a < 6; a++) // U = t G^T
                for (int b = 0; b < 6; b++)
                    u[(a * 6 + b) * per + (size_t)o * c->cin + i] =
                        (float)(t[a][0] * G[b][0] + t[a][1] * G[b][1] + t[a][2] * G[b][2]);
        }
    if (packed(c))
        for (int p = 0; p < FR_WINO_POS; p++)
            if (fr_gemm_pack_b_inplace(u + p * per, c->cout, c->cin)) {
                fr_free(u);
                return FR_ERR_NOMEM;
            }
    c->wu = u;
    fr_free(c->w); // the layer now only runs through fr_wino_forward
    fr_free(c->wp);
    c->w = c->wp = NULL;
    return FR_OK;
}

static size_t chunk_tiles(const fr_conv *c) {
    size_t t = FR_WINO_CHUNK_BYTES / ((size_t)FR_WINO_POS * (c->cin + c->cout) * sizeof(float));
    return t < 16 ? 16 : t;
}

// Floats of scratch behind V and M: the built-in GEMM's, then three lists of ch tile indices.
static size_t tail_floats(const fr_conv *c, size_t ch) {
    return packed(c) ? fr_gemm_scratch() + 3 * ch * (sizeof(size_t) / sizeof(float)) : 0;
}

size_t fr_wino_scratch(const fr_conv *c, int n, int h, int w) {
    if (!c->wu) return 0;
    size_t tiles = (size_t)n * ((h + 3) / 4) * ((w + 3) / 4), ch = chunk_tiles(c);
    if (tiles < ch) ch = tiles;
    return ch * FR_WINO_POS * (size_t)(c->cin + c->cout) + tail_floats(c, ch);
}

// The vectors of L floats in and out of bt6 / at6 never overlap; `omp simd` says so. Without it
// GCC 12 left both loops scalar (its run-time overlap checks on the six output pointers fall
// back to the scalar loop): at 800x1333/1000 the two transforms took ~300 ms per image, now ~235.

// out[k] = B^T in along one axis: 6 vectors of length L (stride s between them) -> 6.
static inline void bt6(const float *restrict in, size_t si, float *restrict out, size_t so, int L) {
    const float *d0 = in, *d1 = in + si, *d2 = in + 2 * si, *d3 = in + 3 * si, *d4 = in + 4 * si, *d5 = in + 5 * si;
    float *o0 = out, *o1 = out + so, *o2 = out + 2 * so, *o3 = out + 3 * so, *o4 = out + 4 * so, *o5 = out + 5 * so;
#pragma omp simd
    for (int l = 0; l < L; l++) {
        float a1 = d3[l] - 4.0f * d1[l], a2 = d4[l] - 4.0f * d2[l]; // row 1, 2: a2 +- a1
        float b1 = 2.0f * (d3[l] - d1[l]), b2 = d4[l] - d2[l];     // row 3, 4: b2 +- b1
        o0[l] = 4.0f * d0[l] - 5.0f * d2[l] + d4[l];
        o1[l] = a2 + a1;
        o2[l] = a2 - a1;
        o3[l] = b2 + b1;
        o4[l] = b2 - b1;
        o5[l] = 4.0f * d1[l] - 5.0f * d3[l] + d5[l];
    }
}

// out[r] = A^T in along one axis: 6 vectors -> 4.
static inline void at6(const float *restrict in, size_t si, float *restrict out, size_t so, int L) {
    const float *m0 = in, *m1 = in + si, *m2 = in + 2 * si, *m3 = in + 3 * si, *m4 = in + 4 * si, *m5 = in + 5 * si;
    float *o0 = out, *o1 = out + so, *o2 = out + 2 * so, *o3 = out + 3 * so;
#pragma omp simd
    for (int l = 0; l < L; l++) {
        float s12 = m1[l] + m2[l], d12 = m1[l] - m2[l], s34 = m3[l] + m4[l], d34 = m3[l] - m4[l];
        o0[l] = m0[l] + s12 + s34;
        o1[l] = d12 + 2.0f * d34;
        o2[l] = s12 + 4.0f * s34;
        o3[l] = d12 + 8.0f * d34 + m5[l];
    }
}

// Input transform of one tile (patch origin yy, xx of image n) into V[t][p][c], p < 36: one
// contiguous block per tile.
FR_CLONES static void in_tile(const fr_tensor *x, const float *in_bias, int n, int yy, int xx, float *V, size_t t) {
    const int C = x->c, H = x->h, W = x->w;
    float d[36 * CB], e[36 * CB];
    for (int c0 = 0; c0 < C; c0 += CB) {
        int L = C - c0 < CB ? C - c0 : CB;
        for (int a = 0; a < 6; a++)
            for (int b = 0; b < 6; b++) {
                float *dst = d + (a * 6 + b) * CB;
                int iy = yy + a, ix = xx + b;
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) {
                    for (int l = 0; l < L; l++) dst[l] = 0.0f;
                    continue;
                }
                const float *src = x->data + (((size_t)n * H + iy) * W + ix) * C + c0;
                if (in_bias)
                    for (int l = 0; l < L; l++) {
                        float v = src[l] + in_bias[c0 + l];
                        dst[l] = v > 0.0f ? v : 0.0f;
                    }
                else
                    for (int l = 0; l < L; l++) dst[l] = src[l];
            }
        for (int b = 0; b < 6; b++) bt6(d + b * CB, 6 * CB, e + b * CB, 6 * CB, L); // along the rows
        for (int a = 0; a < 6; a++) // along the columns, straight into V
            bt6(e + a * 6 * CB, CB, V + ((size_t)t * FR_WINO_POS + a * 6) * C + c0, C, L);
    }
}

// Output transform of one tile (outputs oy.., ox.. of image n) from M[t][p][o], + bias, ReLU.
// A tile whose last output row is cropped may come without M's positions 30-35 (the last row
// of the 6x6 grid), one whose last output column is cropped without positions 5, 11, .., 35:
// those feed only that row (column) of A^T M A. They are zeroed here first.
FR_CLONES static void out_tile(float *M, size_t t, const float *bias, int relu, fr_tensor *y, int n, int oy,
                              int ox) {
    const int O = y->c, H = y->h, W = y->w;
    float z[24 * CB], r[16 * CB];
    for (int p = 0; p < FR_WINO_POS; p++)
        if ((p / 6 == 5 && oy + 3 >= H) || (p % 6 == 5 && ox + 3 >= W))
            memset(M + ((size_t)t * FR_WINO_POS + p) * O, 0, (size_t)O * sizeof(float));
    for (int o0 = 0; o0 < O; o0 += CB) {
        int L = O - o0 < CB ? O - o0 : CB;
        for (int b = 0; b < 6; b++) // along the rows, straight from M: z[4][6]
            at6(M + ((size_t)t * FR_WINO_POS + b) * O + o0, 6 * (size_t)O, z + b * CB, 6 * CB, L);
        for (int a = 0; a < 4; a++) at6(z + a * 6 * CB, CB, r + a * 4 * CB, CB, L); // r[4][4]
        for (int a = 0; a < 4 && oy + a < H; a++)
            for (int b = 0; b < 4 && ox + b < W; b++) {
                float *dst = y->data + (((size_t)n * H + oy + a) * W + ox + b) * O + o0;
                const float *src = r + (a * 4 + b) * CB, *bs = bias + o0;
                if (relu)
                    for (int l = 0; l < L; l++) {
                        float v = src[l] + bs[l];
                        dst[l] = v > 0.0f ? v : 0.0f;
                    }
                else
                    for (int l = 0; l < L; l++) dst[l] = src[l] + bs[l];
            }
    }
}

static size_t list_row(const void *ctx, size_t i) { return ((const size_t *)ctx)[i]; }

void fr_wino_forward(const fr_conv *c, const fr_tensor *x, const float *in_bias, fr_tensor *y, int relu,
                     float *scratch) {
    FR_ASSERT(c->wu && x->c == c->cin && y->c == c->cout && y->h == x->h && y->w == x->w && y->n == x->n);
    const int C = c->cin, O = c->cout, H = x->h, W = x->w;
    const int ty = (H + 3) / 4, tx = (W + 3) / 4;
    const size_t tiles = (size_t)x->n * ty * tx, ch = chunk_tiles(c);
    float *V = scratch;
    for (size_t t0 = 0; t0 < tiles; t0 += ch) {
        const size_t tc = tiles - t0 < ch ? tiles - t0 : ch;
        float *M = V + FR_WINO_POS * tc * C;
#pragma omp parallel for schedule(static)
        for (size_t t = 0; t < tc; t++) {
            size_t g = t0 + t;
            in_tile(x, in_bias, (int)(g / ((size_t)ty * tx)), (int)(g / tx % ty) * 4 - 1, (int)(g % tx) * 4 - 1, V, t);
        }
        // M[.][p] = V[.][p] U[p]^T: (tc x C) (O x C)^T, rows 36 positions apart. On the built-in
        // GEMM, positions in the last row (column) of the 6x6 grid are computed only for the
        // tiles whose last output row (column) is kept (out_tile): for res5's 7x7 maps, 121 of
        // the 144 products per RoI and channel pair.
        float *gs = M + FR_WINO_POS * tc * O;
        size_t *keep[3], nkeep[3] = {0, 0, 0}; // last row kept, last column kept, both
        if (packed(c)) {
            keep[0] = (size_t *)(gs + fr_gemm_scratch()), keep[1] = keep[0] + tc, keep[2] = keep[1] + tc;
            for (size_t t = 0; t < tc; t++) {
                size_t g = t0 + t;
                int rk = (int)(g / tx % ty) * 4 + 3 < H, ck = (int)(g % tx) * 4 + 3 < W;
                if (rk) keep[0][nkeep[0]++] = t;
                if (ck) keep[1][nkeep[1]++] = t;
                if (rk && ck) keep[2][nkeep[2]++] = t;
            }
        }
        for (int p = 0; p < FR_WINO_POS; p++)
            if (packed(c)) {
                int w = p / 6 == 5 ? (p % 6 == 5 ? 2 : 0) : p % 6 == 5 ? 1 : -1;
                fr_gemm_subset sub = {list_row, w >= 0 ? keep[w] : NULL, 0, NULL, NULL, NULL}; // every column
                int rows = w < 0 || nkeep[w] == tc ? (int)tc : (int)nkeep[w];
                fr_gemm_packed_nt(rows, O, C, V + (size_t)p * C, (size_t)FR_WINO_POS * C, c->wu + (size_t)p * O * C,
                                  M + (size_t)p * O, (size_t)FR_WINO_POS * O, rows < (int)tc ? &sub : NULL, gs);
            } else
                fr_gemm_nt_ld((int)tc, O, C, V + (size_t)p * C, FR_WINO_POS * C, c->wu + (size_t)p * O * C, 0.0f,
                              M + (size_t)p * O, FR_WINO_POS * O);
#pragma omp parallel for schedule(static)
        for (size_t t = 0; t < tc; t++) {
            size_t g = t0 + t;
            out_tile(M, t, c->b, relu, y, (int)(g / ((size_t)ty * tx)), (int)(g / tx % ty) * 4,
                     (int)(g % tx) * 4);
        }
    }
}
