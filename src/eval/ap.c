// ap.c - per-class matching and AP, reproducing voc_eval.py's numpy arithmetic (voc.h):
// numpy's argsort (introsort) order, its NaN-aware maximum/minimum, its pairwise summation
// in 8192-element blocks (np.sum), and the VOC07 thresholds of np.arange(0., 1.1, 0.1).
//
// Every expression below keeps numpy's operation order; the build's -std=c11 keeps GCC from
// contracting a*b+c into an FMA (-ffp-contract=off), which would change the last bit.
#include "core/alloc.h"
#include "voc.h"

#include <float.h>
#include <math.h>
#include <string.h>

void fr_voc_score_opts_default(fr_voc_score_opts *o) {
    o->iou = 0.5; // voc_eval.py ovthresh
    o->iou_ge = 0;
    o->stable_ties = 0;
}

// ---------------------------------------------------------------- numpy primitives

// numpy's float64 sort order (npysort_common.h DOUBLE_LT): NaNs sort last.
static int lt(double a, double b) { return a < b || (b != b && a == a); }
// np.maximum / np.minimum: NaN in either argument propagates.
static double np_max(double a, double b) { return (a >= b || a != a) ? a : b; }
static double np_min(double a, double b) { return (a <= b || a != a) ? a : b; }

// numpy's aheapsort for the stretch [0, n) of tosort (1-based heap indexing).
static void aheapsort(const double *v, size_t *tosort, size_t n) {
    size_t *a = tosort - 1, i, j, l, tmp;
    for (l = n >> 1; l > 0; --l) {
        tmp = a[l];
        for (i = l, j = l << 1; j <= n;) {
            if (j < n && lt(v[a[j]], v[a[j + 1]])) j += 1;
            if (!lt(v[tmp], v[a[j]])) break;
            a[i] = a[j];
            i = j;
            j += j;
        }
        a[i] = tmp;
    }
    for (; n > 1;) {
        tmp = a[n];
        a[n] = a[1];
        n -= 1;
        for (i = 1, j = 2; j <= n;) {
            if (j < n && lt(v[a[j]], v[a[j + 1]])) j++;
            if (!lt(v[tmp], v[a[j]])) break;
            a[i] = a[j];
            i = j;
            j += j;
        }
        a[i] = tmp;
    }
}

static void swap(size_t *a, size_t *b) {
    size_t t = *a;
    *a = *b;
    *b = t;
}

// numpy's aquicksort (quicksort.cpp, the generic path used for float64 argsort): median of
// three, partitions longer than 16 elements, insertion sort below, heapsort when the depth
// budget 2*floor(log2(n)) runs out; the larger part is pushed on the stack.
void fr_voc_argsort(const double *v, size_t num, size_t *tosort) {
    for (size_t i = 0; i < num; i++) tosort[i] = i;
    if (num < 2) return;
    enum { SMALL = 15, STACK = 128 };
    size_t *pl = tosort, *pr = tosort + num - 1;
    size_t *stack[STACK], **sptr = stack;
    int depth[STACK], *psdepth = depth;
    int cdepth = 0;
    for (size_t u = num; u >>= 1;) cdepth++;
    cdepth *= 2;
    for (;;) {
        if (cdepth < 0) {
            aheapsort(v, pl, (size_t)(pr - pl) + 1);
            goto pop;
        }
        while (pr - pl > SMALL) {
            size_t *pm = pl + ((pr - pl) >> 1);
            if (lt(v[*pm], v[*pl])) swap(pm, pl);
            if (lt(v[*pr], v[*pm])) swap(pr, pm);
            if (lt(v[*pm], v[*pl])) swap(pm, pl);
            double vp = v[*pm];
            size_t *pi = pl, *pj = pr - 1;
            swap(pm, pj);
            for (;;) {
                do ++pi;
                while (lt(v[*pi], vp));
                do --pj;
                while (lt(vp, v[*pj]));
                if (pi >= pj) break;
                swap(pi, pj);
            }
            swap(pi, pr - 1);
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
        for (size_t *pi = pl + 1; pi <= pr; ++pi) { // insertion sort
            size_t vi = *pi;
            double vp = v[vi];
            size_t *pj = pi, *pk = pi - 1;
            while (pj > pl && lt(vp, v[*pk])) *pj-- = *pk--;
            *pj = vi;
        }
    pop:
        if (sptr == stack) break;
        pr = *(--sptr);
        pl = *(--sptr);
        cdepth = *(--psdepth);
    }
}

// A stable ascending argsort (merge sort): equal keys keep their input order.
static void stable_argsort(const double *v, size_t n, size_t *idx, size_t *tmp) {
    for (size_t i = 0; i < n; i++) idx[i] = i;
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t a = lo, b = mid, k = lo;
            while (a < mid && b < hi) tmp[k++] = lt(v[idx[b]], v[idx[a]]) ? idx[b++] : idx[a++];
            while (a < mid) tmp[k++] = idx[a++];
            while (b < hi) tmp[k++] = idx[b++];
        }
        memcpy(idx, tmp, n * sizeof *idx);
    }
}

// numpy's DOUBLE_pairwise_sum (loops_utils.h.src): 8 accumulators, blocks of 128.
static double pairwise(const double *a, size_t n) {
    if (n < 8) {
        double res = -0.0;
        for (size_t i = 0; i < n; i++) res += a[i];
        return res;
    }
    if (n <= 128) {
        double r[8];
        for (int j = 0; j < 8; j++) r[j] = a[j];
        size_t i;
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++) r[j] += a[i + j];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += a[i];
        return res;
    }
    size_t n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise(a, n2) + pairwise(a + n2, n - n2);
}

double fr_voc_sum(const double *a, size_t n) {
    // np.add.reduce: the result starts at the identity 0.0; the iterator hands the inner
    // loop blocks of the default buffer size (8192), each summed pairwise.
    double s = 0.0;
    for (size_t i = 0; i < n; i += 8192) s += pairwise(a + i, n - i < 8192 ? n - i : 8192);
    return s;
}

double fr_voc_mean(const double *a, size_t n) {
    if (n == 0) return NAN;
    return fr_voc_sum(a, n) / (double)n;
}

double fr_voc_threshold07(int i) {
    // np.arange fills start + i * delta with delta = (start + step) - start = 0.1.
    return 0.0 + (double)i * 0.1;
}

// ---------------------------------------------------------------- AP

double fr_voc_ap07(const double *rec, const double *prec, size_t n) {
    double ap = 0.0;
    for (int i = 0; i < 11; i++) {
        double t = fr_voc_threshold07(i), p = 0.0;
        int any = 0;
        for (size_t k = 0; k < n; k++) {
            if (!(rec[k] >= t)) continue;
            p = any ? np_max(p, prec[k]) : prec[k];
            any = 1;
        }
        ap = ap + p / 11.0;
    }
    return ap;
}

fr_status fr_voc_ap10(const double *rec, const double *prec, size_t n, double *ap, fr_err *err) {
    size_t m = n + 2;
    if (m < n || m > ((size_t)-1) / (3 * sizeof(double)))
        return fr_fail(err, FR_ERR_TOO_LARGE, "too many detections");
    double *buf = fr_malloc(3 * m * sizeof *buf);
    if (!buf) return fr_fail(err, FR_ERR_NOMEM, "out of memory (AP)");
    double *mrec = buf, *mpre = buf + m, *terms = buf + 2 * m;
    mrec[0] = 0.0;
    mpre[0] = 0.0;
    for (size_t i = 0; i < n; i++) {
        mrec[i + 1] = rec[i];
        mpre[i + 1] = prec[i];
    }
    mrec[m - 1] = 1.0;
    mpre[m - 1] = 0.0;
    for (size_t i = m - 1; i > 0; i--) mpre[i - 1] = np_max(mpre[i - 1], mpre[i]);
    size_t k = 0;
    for (size_t i = 0; i + 1 < m; i++)
        if (mrec[i + 1] != mrec[i]) terms[k++] = (mrec[i + 1] - mrec[i]) * mpre[i + 1];
    *ap = fr_voc_sum(terms, k);
    fr_free(buf);
    return FR_OK;
}

// ---------------------------------------------------------------- matching

void fr_voc_class_result_free(fr_voc_class_result *r) {
    if (!r) return;
    fr_free(r->rec);
    fr_free(r->prec);
    memset(r, 0, sizeof *r);
}

// IoU of detection bb against one GT box, as voc_eval.py computes it with +1 areas.
static double overlap(const double *g, const double *bb) {
    double ixmin = np_max(g[0], bb[0]);
    double iymin = np_max(g[1], bb[1]);
    double ixmax = np_min(g[2], bb[2]);
    double iymax = np_min(g[3], bb[3]);
    double iw = np_max(ixmax - ixmin + 1.0, 0.0);
    double ih = np_max(iymax - iymin + 1.0, 0.0);
    double inters = iw * ih;
    double uni = (bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0) +
                 (g[2] - g[0] + 1.0) * (g[3] - g[1] + 1.0) - inters;
    return inters / uni;
}

fr_status fr_voc_score_class(int num_images, const int *gt_start, const fr_voc_gt *gt,
                             const fr_voc_det *dets, size_t ndet, const fr_voc_score_opts *o,
                             fr_voc_class_result *r, fr_err *err) {
    memset(r, 0, sizeof *r);
    fr_voc_score_opts dopt;
    if (!o) {
        fr_voc_score_opts_default(&dopt);
        o = &dopt;
    }
    fr_status st = FR_OK;
    int ngt = num_images > 0 ? gt_start[num_images] : 0;
    for (size_t d = 0; d < ndet; d++)
        if (dets[d].image < 0 || dets[d].image >= num_images)
            return fr_fail(err, FR_ERR_INVALID, "detection %zu: image index %d out of range", d,
                           dets[d].image);
    long npos = 0;
    for (int j = 0; j < ngt; j++) npos += !gt[j].difficult;
    double *keys = fr_malloc((ndet ? ndet : 1) * sizeof *keys);
    size_t *idx = fr_malloc((ndet ? ndet : 1) * sizeof *idx);
    size_t *tmp = o->stable_ties ? fr_malloc((ndet ? ndet : 1) * sizeof *tmp) : NULL;
    unsigned char *used = fr_calloc((size_t)ngt + 1, 1);
    r->rec = fr_malloc((ndet ? ndet : 1) * sizeof *r->rec);
    r->prec = fr_malloc((ndet ? ndet : 1) * sizeof *r->prec);
    if (!keys || !idx || (o->stable_ties && !tmp) || !used || !r->rec || !r->prec) {
        st = fr_fail(err, FR_ERR_NOMEM, "out of memory (scoring)");
        goto done;
    }
    for (size_t d = 0; d < ndet; d++) keys[d] = -dets[d].score; // np.argsort(-confidence)
    if (o->stable_ties) stable_argsort(keys, ndet, idx, tmp);
    else fr_voc_argsort(keys, ndet, idx);

    double tp = 0.0, fp = 0.0; // np.cumsum of the 0/1 vectors
    for (size_t d = 0; d < ndet; d++) {
        const fr_voc_det *dt = &dets[idx[d]];
        double ovmax = -INFINITY;
        int jmax = -1;
        for (int j = gt_start[dt->image]; j < gt_start[dt->image + 1]; j++) {
            double ov = overlap(gt[j].box, dt->box);
            if (jmax >= 0 && ovmax != ovmax) break; // np.max/argmax: the first NaN wins
            if (jmax < 0 || ov > ovmax || ov != ov) {
                ovmax = ov;
                jmax = j;
            }
        }
        int hit = o->iou_ge ? ovmax >= o->iou : ovmax > o->iou;
        if (hit) {
            if (!gt[jmax].difficult) {
                if (!used[jmax]) {
                    tp += 1.0;
                    used[jmax] = 1;
                    r->tp++;
                } else {
                    fp += 1.0;
                    r->fp++;
                }
            }
        } else {
            fp += 1.0;
            r->fp++;
        }
        r->rec[d] = tp / (double)npos;
        r->prec[d] = tp / np_max(tp + fp, DBL_EPSILON); // np.finfo(np.float64).eps
    }
    r->npos = npos;
    r->ndet = (long)ndet;
    r->ap07 = fr_voc_ap07(r->rec, r->prec, ndet);
    st = fr_voc_ap10(r->rec, r->prec, ndet, &r->ap10, err);
done:
    fr_free(keys);
    fr_free(idx);
    fr_free(tmp);
    fr_free(used);
    if (st != FR_OK) fr_voc_class_result_free(r);
    return st;
}
