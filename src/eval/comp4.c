// comp4.c - comp4 detection files (comp4_det_<set>_<class>.txt): writing lines the way
// detectron2's PascalVOCDetectionEvaluator does, reading them the way voc_eval.py does (with
// malformed lines counted instead of crashing), and scoring a whole set (fr_voc_evaluate).
#include "core/alloc.h"
#include "voc.h"
#include "voc_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int fr_voc_comp4_format(char *buf, size_t cap, const char *id, float score, const float box[4]) {
    // detectron2: xmin += 1; ymin += 1 on the float32 numpy values, then f"{v:.1f}" of the
    // exact float32 value; score f"{score:.3f}".
    float x1 = box[0] + 1.0f, y1 = box[1] + 1.0f;
    return snprintf(buf, cap, "%s %.3f %.1f %.1f %.1f %.1f\n", id, (double)score, (double)x1,
                    (double)y1, (double)box[2], (double)box[3]);
}

int fr_voc_comp4_path(char *buf, size_t cap, const char *dir, const char *set, const char *cls) {
    int n = snprintf(buf, cap, "%s/comp4_det_%s_%s.txt", dir, set, cls);
    return (n < 0 || (size_t)n >= cap) ? -1 : 0;
}

// Decimal text as Python's float() reads it, without inf/nan/underscores. 0 on success.
static int parse_num(const char *s, double *out) {
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    int digits = 0;
    while (*p >= '0' && *p <= '9') p++, digits++;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') p++, digits++;
    }
    if (!digits) return -1;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        if (!(*p >= '0' && *p <= '9')) return -1;
        while (*p >= '0' && *p <= '9') p++;
    }
    if (*p) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

static void note(fr_voc_comp4_report *rep, const char *path, long line, const char *why,
                 const char *what) {
    if (rep->first_error[0]) return;
    snprintf(rep->first_error, sizeof rep->first_error, "%.300s:%ld: %s%.60s", path, line, why,
             what);
}

// Handles one line (without its line end); returns an error only for the dets cap or NOMEM.
static fr_status comp4_line(char *s, size_t len, long lineno, const char *path,
                            const fr_voc_dataset *ds, const fr_voc_limits *lim, fr_voc_det **dets,
                            size_t *n, size_t *cap, fr_voc_comp4_report *rep, fr_err *err) {
    if (memchr(s, 0, len)) {
        rep->lines++;
        rep->bad_lines++;
        note(rep, path, lineno, "NUL byte", "");
        return FR_OK;
    }
    char *f[7];
    int nf = 0;
    char *p = s;
    for (;;) {
        while (*p && fr_voc_is_space((unsigned char)*p)) *p++ = 0;
        if (!*p) break;
        if (nf == 7) break;
        f[nf++] = p;
        while (*p && !fr_voc_is_space((unsigned char)*p)) p++;
    }
    if (nf == 0) {
        rep->blank_lines++;
        return FR_OK;
    }
    rep->lines++;
    if (nf != 6) {
        rep->bad_lines++;
        note(rep, path, lineno, "expected '<id> <score> <xmin> <ymin> <xmax> <ymax>'", "");
        return FR_OK;
    }
    int img = fr_voc_idmap_get(ds->list.map, f[0], strlen(f[0]));
    if (img < 0) {
        rep->unknown_ids++;
        note(rep, path, lineno, "id not in the image list: ", f[0]);
        return FR_OK;
    }
    fr_voc_det d = {.image = img};
    for (int k = 1; k < 6; k++) {
        double v;
        if (parse_num(f[k], &v)) {
            rep->bad_lines++;
            note(rep, path, lineno, "not a finite decimal number: ", f[k]);
            return FR_OK;
        }
        if (k == 1) d.score = v;
        else d.box[k - 2] = v;
    }
    if (ds->fail[img]) {
        rep->failed_ids++;
        return FR_OK;
    }
    if ((long)*n >= lim->max_dets)
        return fr_fail(err, FR_ERR_TOO_LARGE, "%s: more than %ld detections", path,
                       lim->max_dets);
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 1024;
        fr_voc_det *q = fr_realloc(*dets, nc * sizeof *q);
        if (!q) return fr_fail(err, FR_ERR_NOMEM, "out of memory (detections)");
        *dets = q;
        *cap = nc;
    }
    (*dets)[(*n)++] = d;
    return FR_OK;
}

fr_status fr_voc_comp4_read(const char *path, const fr_voc_dataset *ds, const fr_voc_limits *lim,
                            fr_voc_det **dets, size_t *ndet, fr_voc_comp4_report *rep,
                            fr_err *err) {
    *dets = NULL;
    *ndet = 0;
    memset(rep, 0, sizeof *rep);
    fr_voc_limits dl;
    if (!lim) {
        fr_voc_limits_default(&dl);
        lim = &dl;
    }
    FILE *f = fopen(path, "rb");
    if (!f) return fr_fail(err, FR_ERR_IO, "%s: %s", path, strerror(errno));
    fr_status st = FR_OK;
    size_t cap = 0;
    fr_voc_buf line = {0};
    char chunk[65536];
    long lineno = 0;
    for (;;) {
        size_t got = fread(chunk, 1, sizeof chunk, f);
        size_t b = 0;
        for (size_t i = 0; i < got; i++) {
            if (chunk[i] != '\n') continue;
            if (line.n + (i - b) > lim->max_line) goto toolong;
            if (fr_voc_buf_add(&line, chunk + b, i - b)) goto nomem;
            b = i + 1;
            st = comp4_line(line.p, line.n, ++lineno, path, ds, lim, dets, ndet, &cap, rep, err);
            if (st != FR_OK) goto fail;
            line.n = 0;
        }
        if (line.n + (got - b) > lim->max_line) goto toolong;
        if (got > b && fr_voc_buf_add(&line, chunk + b, got - b)) goto nomem;
        if (got < sizeof chunk) break;
    }
    if (ferror(f)) {
        st = fr_fail(err, FR_ERR_IO, "%s: read error", path);
        goto fail;
    }
    if (line.n) {
        st = comp4_line(line.p, line.n, ++lineno, path, ds, lim, dets, ndet, &cap, rep, err);
        if (st != FR_OK) goto fail;
    }
    fclose(f);
    fr_voc_buf_free(&line);
    return FR_OK;
toolong:
    st = fr_fail(err, FR_ERR_TOO_LARGE, "%s:%ld: line longer than %zu bytes", path, lineno + 1,
                 lim->max_line);
    goto fail;
nomem:
    st = fr_fail(err, FR_ERR_NOMEM, "out of memory (reading %s)", path);
fail:
    fclose(f);
    fr_voc_buf_free(&line);
    fr_free(*dets);
    *dets = NULL;
    *ndet = 0;
    return st;
}

// ---------------------------------------------------------------- whole evaluation

void fr_voc_eval_result_free(fr_voc_eval_result *r) {
    if (!r) return;
    if (r->cls)
        for (int c = 0; c < r->num_classes; c++) fr_voc_class_result_free(&r->cls[c]);
    fr_free(r->cls);
    fr_free(r->has_file);
    fr_free(r->rep);
    memset(r, 0, sizeof *r);
}

fr_status fr_voc_evaluate(const fr_voc_dataset *ds, const char *dir, const fr_voc_score_opts *o,
                          const fr_voc_limits *lim, fr_voc_eval_result *r, fr_err *err) {
    memset(r, 0, sizeof *r);
    fr_voc_limits dl;
    if (!lim) {
        fr_voc_limits_default(&dl);
        lim = &dl;
    }
    int n = ds->list.num_ids, K = ds->num_classes;
    fr_status st = FR_OK;
    int *gt_start = fr_calloc((size_t)n + 1, sizeof *gt_start);
    int total = ds->obj_start ? ds->obj_start[n] : 0;
    fr_voc_gt *gt = fr_malloc(((size_t)total + 1) * sizeof *gt);
    double *aps = fr_malloc(2 * ((size_t)K + 1) * sizeof *aps);
    r->cls = fr_calloc((size_t)K, sizeof *r->cls);
    r->has_file = fr_calloc((size_t)K, sizeof *r->has_file);
    r->rep = fr_calloc((size_t)K, sizeof *r->rep);
    r->num_classes = K;
    if (!gt_start || !gt || !aps || !r->cls || !r->has_file || !r->rep) {
        st = fr_fail(err, FR_ERR_NOMEM, "out of memory (evaluation)");
        goto done;
    }
    for (int c = 0; c < K; c++) {
        // this class's objects of every usable image, in annotation order
        int k = 0;
        for (int i = 0; i < n; i++) {
            gt_start[i] = k;
            if (ds->fail[i]) continue;
            for (int j = ds->obj_start[i]; j < ds->obj_start[i + 1]; j++)
                if (ds->objs[j].cls == c) gt[k++] = ds->objs[j].gt;
        }
        gt_start[n] = k;
        char path[4096];
        if (fr_voc_comp4_path(path, sizeof path, dir, ds->set, ds->classes[c])) {
            st = fr_fail(err, FR_ERR_INVALID, "results path too long: %s", dir);
            goto done;
        }
        fr_voc_det *dets = NULL;
        size_t nd = 0;
        fr_err e = {0};
        int missing = access(path, F_OK) != 0 && errno == ENOENT;
        fr_status rs = missing ? FR_ERR_IO : fr_voc_comp4_read(path, ds, lim, &dets, &nd,
                                                               &r->rep[c], &e);
        if (missing) {
            snprintf(r->rep[c].first_error, sizeof r->rep[c].first_error, "%.400s: missing", path);
            r->problems++;
        } else if (rs != FR_OK) {
            st = fr_fail(err, rs, "%s", e.msg);
            goto done;
        } else {
            r->has_file[c] = 1;
            r->problems += r->rep[c].bad_lines + r->rep[c].unknown_ids;
        }
        st = fr_voc_score_class(n, gt_start, gt, dets, nd, o, &r->cls[c], err);
        fr_free(dets);
        if (st != FR_OK) goto done;
        aps[c] = r->cls[c].ap07;
        aps[K + 1 + c] = r->cls[c].ap10;
    }
    r->map07 = fr_voc_mean(aps, (size_t)K);
    r->map10 = fr_voc_mean(aps + K + 1, (size_t)K);
    r->images_listed = n;
    r->images_failed = fr_voc_dataset_failed_count(ds);
    r->images_scored = n - r->images_failed;
done:
    fr_free(gt_start);
    fr_free(gt);
    fr_free(aps);
    if (st != FR_OK) fr_voc_eval_result_free(r);
    return st;
}
