// nms.c - reference orderings (libstdc++ / numpy sorts replayed), torch's exp, box decoding
// and NMS (see nms.h).
//
// The sorting code reproduces the algorithms' observable behaviour (comparison sequence and
// element moves), written from their published descriptions; tests compare it with the real
// std::sort / torch.sort / numpy.argsort on inputs full of ties.
#include "nms.h"

#include "alloc.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------
// libstdc++ algorithms over fr_scored with PyTorch's descending comparator

// comp(a, b): a goes before b. NaN first (PyTorch "NaN is the largest"), then larger scores.
static inline int desc_before(const fr_scored *a, const fr_scored *b) {
    return (isnan(a->score) && !isnan(b->score)) || a->score > b->score;
}

static inline void swap_scored(fr_scored *a, fr_scored *b) {
    fr_scored t = *a;
    *a = *b;
    *b = t;
}

static int floor_log2(int n) { // std::__lg
    int r = 0;
    while (n >>= 1) r++;
    return r;
}

static void move_median_to_first(fr_scored *result, fr_scored *a, fr_scored *b, fr_scored *c) {
    if (desc_before(a, b)) {
        if (desc_before(b, c)) swap_scored(result, b);
        else if (desc_before(a, c)) swap_scored(result, c);
        else swap_scored(result, a);
    } else if (desc_before(a, c)) {
        swap_scored(result, a);
    } else if (desc_before(b, c)) {
        swap_scored(result, c);
    } else {
        swap_scored(result, b);
    }
}

// Hoare partition of [first, last) around *pivot, no bounds checks (the median-of-3 placed
// sentinels on both sides).
static fr_scored *unguarded_partition(fr_scored *first, fr_scored *last, const fr_scored *pivot) {
    for (;;) {
        while (desc_before(first, pivot)) ++first;
        --last;
        while (desc_before(pivot, last)) --last;
        if (!(first < last)) return first;
        swap_scored(first, last);
        ++first;
    }
}

static fr_scored *unguarded_partition_pivot(fr_scored *first, fr_scored *last) {
    fr_scored *mid = first + (last - first) / 2;
    move_median_to_first(first, first + 1, mid, last - 1);
    return unguarded_partition(first + 1, last, first);
}

static void unguarded_linear_insert(fr_scored *last) {
    fr_scored val = *last;
    fr_scored *next = last - 1;
    while (desc_before(&val, next)) {
        *last = *next;
        last = next;
        --next;
    }
    *last = val;
}

static void insertion_sort(fr_scored *first, fr_scored *last) {
    if (first == last) return;
    for (fr_scored *i = first + 1; i != last; ++i) {
        if (desc_before(i, first)) {
            fr_scored val = *i;
            memmove(first + 1, first, (size_t)(i - first) * sizeof *first);
            *first = val;
        } else {
            unguarded_linear_insert(i);
        }
    }
}

static void final_insertion_sort(fr_scored *first, fr_scored *last) {
    if (last - first > 16) {
        insertion_sort(first, first + 16);
        for (fr_scored *i = first + 16; i != last; ++i) unguarded_linear_insert(i);
    } else {
        insertion_sort(first, last);
    }
}

// Heap primitives (std::__push_heap, __adjust_heap, __make_heap, __pop_heap).
static void push_heap(fr_scored *first, ptrdiff_t hole, ptrdiff_t top, fr_scored value) {
    ptrdiff_t parent = (hole - 1) / 2;
    while (hole > top && desc_before(first + parent, &value)) {
        first[hole] = first[parent];
        hole = parent;
        parent = (hole - 1) / 2;
    }
    first[hole] = value;
}

static void adjust_heap(fr_scored *first, ptrdiff_t hole, ptrdiff_t len, fr_scored value) {
    const ptrdiff_t top = hole;
    ptrdiff_t child = hole;
    while (child < (len - 1) / 2) {
        child = 2 * (child + 1);
        if (desc_before(first + child, first + (child - 1))) child--;
        first[hole] = first[child];
        hole = child;
    }
    if ((len & 1) == 0 && child == (len - 2) / 2) {
        child = 2 * (child + 1);
        first[hole] = first[child - 1];
        hole = child - 1;
    }
    push_heap(first, hole, top, value);
}

static void make_heap(fr_scored *first, fr_scored *last) {
    ptrdiff_t len = last - first;
    if (len < 2) return;
    ptrdiff_t parent = (len - 2) / 2;
    for (;;) {
        adjust_heap(first, parent, len, first[parent]);
        if (parent == 0) return;
        parent--;
    }
}

static void pop_heap(fr_scored *first, fr_scored *last, fr_scored *result) {
    fr_scored value = *result;
    *result = *first;
    adjust_heap(first, 0, last - first, value);
}

static void heap_select(fr_scored *first, fr_scored *middle, fr_scored *last) {
    make_heap(first, middle);
    for (fr_scored *i = middle; i < last; ++i)
        if (desc_before(i, first)) pop_heap(first, middle, i);
}

static void sort_heap(fr_scored *first, fr_scored *last) {
    while (last - first > 1) {
        --last;
        pop_heap(first, last, last);
    }
}

static void introsort_loop(fr_scored *first, fr_scored *last, int depth) {
    while (last - first > 16) {
        if (depth == 0) { // std::__partial_sort(first, last, last): heap sort
            heap_select(first, last, last);
            sort_heap(first, last);
            return;
        }
        --depth;
        fr_scored *cut = unguarded_partition_pivot(first, last);
        introsort_loop(cut, last, depth);
        last = cut;
    }
}

static void std_sort(fr_scored *first, fr_scored *last) {
    if (first == last) return;
    introsort_loop(first, last, floor_log2((int)(last - first)) * 2);
    final_insertion_sort(first, last);
}

static void std_nth_element(fr_scored *first, fr_scored *nth, fr_scored *last) {
    if (first == last || nth == last) return;
    int depth = floor_log2((int)(last - first)) * 2;
    while (last - first > 3) {
        if (depth == 0) {
            heap_select(first, nth + 1, last);
            swap_scored(first, nth);
            return;
        }
        --depth;
        fr_scored *cut = unguarded_partition_pivot(first, last);
        if (cut <= nth) first = cut;
        else last = cut;
    }
    insertion_sort(first, last);
}

void fr_sort_desc_torch(fr_scored *a, int n) {
    if (n > 1) std_sort(a, a + n);
}

void fr_topk_torch(fr_scored *a, int n, int k) {
    FR_ASSERT(k >= 0 && k <= n);
    if (k == 0) return;
    if ((int64_t)k * 64 <= n) { // std::partial_sort
        heap_select(a, a + k, a + n);
        sort_heap(a, a + k);
    } else {
        std_nth_element(a, a + k - 1, a + n);
        std_sort(a, a + k - 1);
    }
}

static int cmp_desc_stable(const void *pa, const void *pb) {
    const fr_scored *a = pa, *b = pb;
    if (desc_before(a, b)) return -1;
    if (desc_before(b, a)) return 1;
    return (a->index > b->index) - (a->index < b->index);
}

void fr_sort_desc_stable(fr_scored *a, int n) {
    if (n > 1) qsort(a, (size_t)n, sizeof *a, cmp_desc_stable);
}

// ---------------------------------------------------------------------------------------
// numpy aquicksort (float32, ascending, NaN last), then reversed

static inline int np_less(float a, float b) { return a < b || (b != b && a == a); }

static void np_aheapsort(const float *v, int *tosort, ptrdiff_t n) {
    int *a = tosort - 1; // 1-based heap
    ptrdiff_t i, j, l;
    int tmp;
    for (l = n >> 1; l > 0; --l) {
        tmp = a[l];
        for (i = l, j = l << 1; j <= n;) {
            if (j < n && np_less(v[a[j]], v[a[j + 1]])) j += 1;
            if (np_less(v[tmp], v[a[j]])) {
                a[i] = a[j];
                i = j;
                j += j;
            } else {
                break;
            }
        }
        a[i] = tmp;
    }
    for (; n > 1;) {
        tmp = a[n];
        a[n] = a[1];
        n -= 1;
        for (i = 1, j = 2; j <= n;) {
            if (j < n && np_less(v[a[j]], v[a[j + 1]])) j++;
            if (np_less(v[tmp], v[a[j]])) {
                a[i] = a[j];
                i = j;
                j += j;
            } else {
                break;
            }
        }
        a[i] = tmp;
    }
}

static inline void swap_int(int *a, int *b) {
    int t = *a;
    *a = *b;
    *b = t;
}

static void np_aquicksort(const float *v, int *tosort, int num) {
    enum { SMALL = 15, STACK = 128 };
    int *pl = tosort, *pr = tosort + num - 1;
    int *stack[STACK], **sptr = stack;
    int depth[STACK], *psdepth = depth;
    int cdepth = floor_log2(num) * 2;
    for (;;) {
        if (cdepth < 0) {
            np_aheapsort(v, pl, pr - pl + 1);
            goto stack_pop;
        }
        while ((pr - pl) > SMALL) {
            int *pm = pl + ((pr - pl) >> 1);
            if (np_less(v[*pm], v[*pl])) swap_int(pm, pl);
            if (np_less(v[*pr], v[*pm])) swap_int(pr, pm);
            if (np_less(v[*pm], v[*pl])) swap_int(pm, pl);
            float vp = v[*pm];
            int *pi = pl, *pj = pr - 1;
            swap_int(pm, pj);
            for (;;) {
                do ++pi;
                while (np_less(v[*pi], vp));
                do --pj;
                while (np_less(vp, v[*pj]));
                if (pi >= pj) break;
                swap_int(pi, pj);
            }
            swap_int(pi, pr - 1);
            if (pi - pl < pr - pi) {
                *sptr++ = pi + 1;
                *sptr++ = pr;
                pr = pi - 1;
            } else {
                *sptr++ = pl;
                *sptr++ = pi - 1;
                pl = pi + 1;
            }
            *psdepth++ = --cdepth;
        }
        for (int *pi = pl + 1; pi <= pr; ++pi) {
            int vi = *pi;
            float vp = v[vi];
            int *pj = pi, *pk = pi - 1;
            while (pj > pl && np_less(vp, v[*pk])) *pj-- = *pk--;
            *pj = vi;
        }
    stack_pop:
        if (sptr == stack) break;
        pr = *(--sptr);
        pl = *(--sptr);
        cdepth = *(--psdepth);
    }
}

void fr_argsort_desc_numpy(const float *v, int n, int *order) {
    for (int i = 0; i < n; i++) order[i] = i;
    if (n > 1) np_aquicksort(v, order, n);
    for (int i = 0, j = n - 1; i < j; i++, j--) swap_int(order + i, order + j);
}

// ---------------------------------------------------------------------------------------
// exp

static inline float pow2i(int q) { // 2^q for q in the normal exponent range
    uint32_t u = (uint32_t)(q + 0x7f) << 23;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float fr_expf_torch(float d) {
    // SLEEF xexpf (u10): q = rint(d / ln2), s = d - q * ln2 in two parts, degree-6
    // polynomial, then scaled by 2^q in two steps. Every multiply-add is fused (AVX2 build).
    if (isnan(d)) return d;
    if (d > 100.0f) return INFINITY;
    if (d < -104.0f) return 0.0f;
    const float r_ln2 = 1.442695040888963407359924681001892137426645954152985934135449406931f;
    const float l2u = 0.693145751953125f, l2l = 1.428606765330187045e-06f;
    int q = (int)lrintf(d * r_ln2);
    float qf = (float)q;
    float s = fmaf(qf, -l2u, d);
    s = fmaf(qf, -l2l, s);
    float u = 0.000198527617612853646278381f;
    u = fmaf(u, s, 0.00139304355252534151077271f);
    u = fmaf(u, s, 0.00833336077630519866943359f);
    u = fmaf(u, s, 0.0416664853692054748535156f);
    u = fmaf(u, s, 0.166666671633720397949219f);
    u = fmaf(u, s, 0.5f);
    u = 1.0f + fmaf(s * s, u, s);
    int h = q >> 1; // arithmetic shift: floor(q / 2)
    return u * pow2i(h) * pow2i(q - h);
}

double fr_decimal_of_float(float f) {
    if (!isfinite(f)) return (double)f;
    char buf[32];
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)f);
        double d = strtod(buf, NULL);
        if ((float)d == f) return d;
    }
    return (double)f;
}

// ---------------------------------------------------------------------------------------
// boxes

void fr_box_decode(const fr_box_coder *c, const float box[4], const float d[4], float out[4]) {
    float w = box[2] - box[0], h = box[3] - box[1];
    if (c->plus_one) {
        w = w + 1.0f;
        h = h + 1.0f;
    }
    float cx = box[0] + 0.5f * w, cy = box[1] + 0.5f * h;
    float dx = d[0] / c->weights[0], dy = d[1] / c->weights[1];
    float dw = d[2] / c->weights[2], dh = d[3] / c->weights[3];
    if (dw > c->clamp) dw = c->clamp; // NaN stays NaN, as torch.clamp
    if (dh > c->clamp) dh = c->clamp;
    float pcx = dx * w + cx, pcy = dy * h + cy;
    float ew = c->torch_exp ? fr_expf_torch(dw) : expf(dw);
    float eh = c->torch_exp ? fr_expf_torch(dh) : expf(dh);
    float pw = ew * w, ph = eh * h;
    out[0] = pcx - 0.5f * pw;
    out[1] = pcy - 0.5f * ph;
    out[2] = pcx + 0.5f * pw;
    out[3] = pcy + 0.5f * ph;
}

// The largest float <= t: for a float x, (double)x > t  <=>  x > float_floor(t).
static float float_floor(double t) {
    float f = (float)t;
    if ((double)f > t) f = nextafterf(f, -INFINITY);
    return f;
}

static inline float iou_one(float ix1, float iy1, float ix2, float iy2, float iarea, float x1,
                            float y1, float x2, float y2, float area, float one) {
    float xx1 = ix1 < x1 ? x1 : ix1; // std::max(ix1, x1)
    float yy1 = iy1 < y1 ? y1 : iy1;
    float xx2 = x2 < ix2 ? x2 : ix2; // std::min(ix2, x2)
    float yy2 = y2 < iy2 ? y2 : iy2;
    float w = xx2 - xx1 + one, h = yy2 - yy1 + one; // one = 0: x + 0 == x (no -0 issue below)
    w = 0.0f < w ? w : 0.0f;
    h = 0.0f < h ? h : 0.0f;
    float inter = w * h;
    return inter / (iarea + area - inter);
}

int fr_nms_naive(const float *boxes, const int *order, int n, double thresh, int plus_one,
                 int max_keep, int *keep) {
    const float one = plus_one ? 1.0f : 0.0f;
    int nkeep = 0;
    for (int a = 0; a < n && (max_keep < 0 || nkeep < max_keep); a++) {
        const float *bi = boxes + 4 * (size_t)order[a];
        int suppressed = 0;
        for (int k = 0; k < nkeep && !suppressed; k++) {
            const float *bk = boxes + 4 * (size_t)keep[k];
            float ak = (bk[2] - bk[0] + one) * (bk[3] - bk[1] + one);
            float ai = (bi[2] - bi[0] + one) * (bi[3] - bi[1] + one);
            float ovr = iou_one(bk[0], bk[1], bk[2], bk[3], ak, bi[0], bi[1], bi[2], bi[3], ai, one);
            if ((double)ovr > thresh) suppressed = 1;
        }
        if (!suppressed) keep[nkeep++] = order[a];
    }
    return nkeep;
}

// 4-wide float vectors (GCC/clang vector extensions; SSE2 on x86-64).
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

static inline v4f v4_load(const float *p) {
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline v4f v4_splat(float x) { return (v4f){x, x, x, x}; }
static inline v4f v4_select(v4i m, v4f a, v4f b) { // m ? a : b
    return (v4f)((m & (v4i)a) | (~m & (v4i)b));
}

// NMS over SoA arrays already in visiting order. Each box is compared with the boxes kept so
// far (4 at a time) and dropped at the first IoU > thr: the same decisions as suppressing
// forward from every kept box, with IoU(kept, box) evaluated in the same operand order, but
// the work stops with the max_keep-th kept box. ks: scratch of 5 * n floats.
static int nms_sorted(const float *x1, const float *y1, const float *x2, const float *y2,
                      const float *area, int n, float thr, float one, int max_keep, float *ks,
                      int *keep_pos) {
    float *kx1 = ks, *ky1 = kx1 + n, *kx2 = ky1 + n, *ky2 = kx2 + n, *ka = ky2 + n;
    int nkeep = 0;
    const v4f zero = v4_splat(0.0f), vone = v4_splat(one), vthr = v4_splat(thr);
    for (int j = 0; j < n; j++) {
        const float bx1 = x1[j], by1 = y1[j], bx2 = x2[j], by2 = y2[j], ba = area[j];
        const v4f vx1 = v4_splat(bx1), vy1 = v4_splat(by1), vx2 = v4_splat(bx2),
                  vy2 = v4_splat(by2), va = v4_splat(ba);
        int i = 0, hit = 0;
        for (; i + 4 <= nkeep; i += 4) {
            v4f ix1 = v4_load(kx1 + i), iy1 = v4_load(ky1 + i);
            v4f ix2 = v4_load(kx2 + i), iy2 = v4_load(ky2 + i);
            v4f xx1 = v4_select(ix1 < vx1, vx1, ix1); // std::max(ix1, x1[j])
            v4f yy1 = v4_select(iy1 < vy1, vy1, iy1);
            v4f xx2 = v4_select(vx2 < ix2, vx2, ix2); // std::min(ix2, x2[j])
            v4f yy2 = v4_select(vy2 < iy2, vy2, iy2);
            v4f w = xx2 - xx1 + vone, h = yy2 - yy1 + vone;
            w = v4_select(zero < w, w, zero);
            h = v4_select(zero < h, h, zero);
            v4f inter = w * h;
            v4i m = (inter / (v4_load(ka + i) + va - inter)) > vthr;
            if (m[0] | m[1] | m[2] | m[3]) {
                hit = 1;
                break;
            }
        }
        for (; !hit && i < nkeep; i++)
            hit = iou_one(kx1[i], ky1[i], kx2[i], ky2[i], ka[i], bx1, by1, bx2, by2, ba, one) > thr;
        if (hit) continue;
        kx1[nkeep] = bx1;
        ky1[nkeep] = by1;
        kx2[nkeep] = bx2;
        ky2[nkeep] = by2;
        ka[nkeep] = ba;
        keep_pos[nkeep++] = j;
        if (max_keep >= 0 && nkeep >= max_keep) break;
    }
    return nkeep;
}

// The same decisions computed forward: every kept box suppresses the later boxes it overlaps
// (all of them, 4 at a time). Cheaper than nms_sorted when most boxes are kept and the whole
// keep list is wanted. supp: scratch of n int32, zeroed here.
static int nms_sorted_forward(const float *x1, const float *y1, const float *x2, const float *y2,
                              const float *area, int n, float thr, float one, int32_t *supp,
                              int *keep_pos) {
    int nkeep = 0;
    const v4f zero = v4_splat(0.0f), vone = v4_splat(one), vthr = v4_splat(thr);
    memset(supp, 0, (size_t)n * sizeof *supp);
    for (int i = 0; i < n; i++) {
        if (supp[i]) continue;
        keep_pos[nkeep++] = i;
        const float ix1 = x1[i], iy1 = y1[i], ix2 = x2[i], iy2 = y2[i], ia = area[i];
        const v4f vx1 = v4_splat(ix1), vy1 = v4_splat(iy1), vx2 = v4_splat(ix2),
                  vy2 = v4_splat(iy2), va = v4_splat(ia);
        int j = i + 1;
        for (; j + 4 <= n; j += 4) {
            v4f bx1 = v4_load(x1 + j), by1 = v4_load(y1 + j);
            v4f bx2 = v4_load(x2 + j), by2 = v4_load(y2 + j);
            v4f xx1 = v4_select(vx1 < bx1, bx1, vx1);
            v4f yy1 = v4_select(vy1 < by1, by1, vy1);
            v4f xx2 = v4_select(bx2 < vx2, bx2, vx2);
            v4f yy2 = v4_select(by2 < vy2, by2, vy2);
            v4f w = xx2 - xx1 + vone, h = yy2 - yy1 + vone;
            w = v4_select(zero < w, w, zero);
            h = v4_select(zero < h, h, zero);
            v4f inter = w * h;
            v4f ovr = inter / (va + v4_load(area + j) - inter);
            v4i s;
            memcpy(&s, supp + j, sizeof s);
            s |= (ovr > vthr) & 1;
            memcpy(supp + j, &s, sizeof s);
        }
        for (; j < n; j++) {
            float ovr = iou_one(ix1, iy1, ix2, iy2, ia, x1[j], y1[j], x2[j], y2[j], area[j], one);
            supp[j] |= ovr > thr;
        }
    }
    return nkeep;
}

// NMS over SoA arrays in visiting order, choosing the cheaper of the two equivalent loops.
// ks: scratch of 5 * n floats.
static int nms_run(const float *x1, const float *y1, const float *x2, const float *y2,
                   const float *area, int n, float thr, float one, int max_keep, float *ks,
                   int *keep_pos) {
    if (max_keep < 0 || max_keep >= n)
        return nms_sorted_forward(x1, y1, x2, y2, area, n, thr, one, (int32_t *)ks, keep_pos);
    return nms_sorted(x1, y1, x2, y2, area, n, thr, one, max_keep, ks, keep_pos);
}

fr_status fr_nms(const float *boxes, const int *order, int n, double thresh, int plus_one,
                 int max_keep, int *keep, int *nkeep, fr_err *err) {
    *nkeep = 0;
    if (n <= 0 || max_keep == 0) return FR_OK;
    float *buf = fr_malloc((size_t)n * 10 * sizeof(float));
    if (!buf) return fr_fail(err, FR_ERR_NOMEM, "nms: out of memory for %d boxes", n);
    float *x1 = buf, *y1 = x1 + n, *x2 = y1 + n, *y2 = x2 + n, *area = y2 + n, *ks = area + n;
    const float one = plus_one ? 1.0f : 0.0f;
    for (int i = 0; i < n; i++) {
        const float *b = boxes + 4 * (size_t)order[i];
        x1[i] = b[0];
        y1[i] = b[1];
        x2[i] = b[2];
        y2[i] = b[3];
        area[i] = (b[2] - b[0] + one) * (b[3] - b[1] + one);
    }
    int k = nms_run(x1, y1, x2, y2, area, n, float_floor(thresh), one, max_keep, ks, keep);
    for (int i = 0; i < k; i++) keep[i] = order[keep[i]];
    *nkeep = k;
    fr_free(buf);
    return FR_OK;
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

// Runs torchvision's nms() on the boxes idx[0..m) (a subset, in ascending index order):
// sorts their scores (stable, as the kernel does), then NMS. Sets mark[idx[k]] = 1 for kept boxes, or
// (order_out != NULL) writes kept indices in NMS order. Returns the count kept.
static int tv_nms_subset(const float *boxes, const float *scores, const int *idx, int m,
                         float thr, int max_keep, fr_scored *sc, float *soa, float *ks,
                         int *pos, unsigned char *mark, int *order_out) {
    for (int k = 0; k < m; k++) {
        sc[k].score = scores[idx[k]];
        sc[k].index = k;
    }
    fr_sort_desc_stable(sc, m);
    float *x1 = soa, *y1 = x1 + m, *x2 = y1 + m, *y2 = x2 + m, *area = y2 + m;
    for (int k = 0; k < m; k++) {
        const float *b = boxes + 4 * (size_t)idx[sc[k].index];
        x1[k] = b[0];
        y1[k] = b[1];
        x2[k] = b[2];
        y2[k] = b[3];
        area[k] = (b[2] - b[0]) * (b[3] - b[1]);
    }
    int nk = nms_run(x1, y1, x2, y2, area, m, thr, 0.0f, max_keep, ks, pos);
    for (int k = 0; k < nk; k++) {
        int box = idx[sc[pos[k]].index];
        if (mark) mark[box] = 1;
        if (order_out) order_out[k] = box;
    }
    return nk;
}

fr_status fr_batched_nms_torchvision(const float *boxes, const float *scores, const int *classes,
                                     int n, double thresh, int max_keep, int *keep, int *nkeep,
                                     fr_err *err) {
    *nkeep = 0;
    if (n <= 0 || max_keep == 0) return FR_OK;
    const float thr = float_floor(thresh);
    // scratch: fr_scored[n], 5n floats (SoA), 5n floats (kept SoA), pos[n], idx[n], cls[n],
    // mark[n]
    size_t bytes = (size_t)n * (sizeof(fr_scored) + 10 * sizeof(float) + 3 * sizeof(int) + 1);
    unsigned char *buf = fr_malloc(bytes);
    if (!buf) return fr_fail(err, FR_ERR_NOMEM, "batched_nms: out of memory for %d boxes", n);
    fr_scored *sc = (fr_scored *)buf;
    float *soa = (float *)(sc + n), *ks = soa + 5 * (size_t)n;
    int *pos = (int *)(ks + 5 * (size_t)n), *idx = pos + n, *cls = idx + n;
    unsigned char *mark = (unsigned char *)(cls + n);
    int nk = 0;

    if ((int64_t)n * 4 > 4000) {
        // _batched_nms_vanilla: per class in ascending class order
        int single = 1;
        for (int i = 0; i < n; i++) {
            cls[i] = classes ? classes[i] : 0;
            if (cls[i] != cls[0]) single = 0;
        }
        if (single && max_keep > 0 && max_keep < n) {
            // One class: the final re-sort only permutes equal scores, so if the first
            // max_keep + 1 kept boxes have strictly decreasing scores, NMS order is the answer.
            for (int i = 0; i < n; i++) idx[i] = i;
            int got = tv_nms_subset(boxes, scores, idx, n, thr, max_keep + 1, sc, soa, ks, pos,
                                    NULL, keep);
            int ties = 0;
            for (int k = 1; k < got; k++)
                if (!(scores[keep[k - 1]] > scores[keep[k]])) ties = 1;
            if (!ties) {
                nk = got < max_keep ? got : max_keep;
                goto done;
            }
        }
        memset(mark, 0, (size_t)n);
        memcpy(idx, cls, (size_t)n * sizeof *idx);
        qsort(idx, (size_t)n, sizeof *idx, cmp_int);
        int nuniq = 0;
        for (int i = 0; i < n; i++)
            if (i == 0 || idx[i] != idx[i - 1]) idx[nuniq++] = idx[i];
        for (int u = 0; u < nuniq; u++) {
            int c = idx[u];
            int m = 0;
            for (int i = 0; i < n; i++)
                if (cls[i] == c) pos[m++] = i;
            memcpy(keep, pos, (size_t)m * sizeof *keep);
            tv_nms_subset(boxes, scores, keep, m, thr, -1, sc, soa, ks, pos, mark, NULL);
        }
        int m = 0;
        for (int i = 0; i < n; i++)
            if (mark[i]) idx[m++] = i;
        for (int k = 0; k < m; k++) {
            sc[k].score = scores[idx[k]];
            sc[k].index = k;
        }
        fr_sort_desc_torch(sc, m);
        nk = (max_keep >= 0 && max_keep < m) ? max_keep : m;
        for (int k = 0; k < nk; k++) keep[k] = idx[sc[k].index];
    } else {
        // _batched_nms_coordinate_trick
        float maxc = -INFINITY;
        for (size_t i = 0; i < 4 * (size_t)n; i++)
            if (boxes[i] > maxc) maxc = boxes[i];
        const float step = maxc + 1.0f;
        float *x1 = soa, *y1 = x1 + n, *x2 = y1 + n, *y2 = x2 + n, *area = y2 + n;
        for (int i = 0; i < n; i++) {
            sc[i].score = scores[i];
            sc[i].index = i;
        }
        fr_sort_desc_stable(sc, n);
        for (int k = 0; k < n; k++) {
            int i = sc[k].index;
            const float off = (float)(classes ? classes[i] : 0) * step;
            const float *b = boxes + 4 * (size_t)i;
            x1[k] = b[0] + off;
            y1[k] = b[1] + off;
            x2[k] = b[2] + off;
            y2[k] = b[3] + off;
            area[k] = (x2[k] - x1[k]) * (y2[k] - y1[k]);
        }
        nk = nms_run(x1, y1, x2, y2, area, n, thr, 0.0f, max_keep, ks, pos);
        for (int k = 0; k < nk; k++) keep[k] = sc[pos[k]].index;
    }
done:
    *nkeep = nk;
    fr_free(buf);
    return FR_OK;
}
