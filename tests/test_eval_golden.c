// test_eval_golden.c - the VOC evaluator against numpy: random seeded VOC trees and comp4
// files scored by tools/voc_eval_ref.py (fixtures from tools/reference/fx_eval.py), every
// class and mAP of both metrics within 1e-9 for the voc_eval.py rule, the devkit rule and
// stable ties; np.argsort permutations (tie-heavy and adversarial inputs that reach numpy's
// heapsort fallback), np.sum and np.arange(0., 1.1, 0.1) bit for bit.
#include "core/alloc.h"
#include "eval/voc.h"
#include "eval/voc_internal.h"
#include "harness.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <stdlib.h>

static const char *fixtures(void) {
    const char *f = getenv("FIXTURES");
    return f && *f ? f : "build/fixtures";
}

static cJSON *load_json(const char *path) {
    char *buf;
    size_t len;
    fr_err e = {0};
    if (fr_voc_read_file(path, (size_t)1 << 30, &buf, &len, &e) != FR_OK) {
        CHECKF(0, "fixture missing: %s", e.msg);
        return NULL;
    }
    cJSON *j = cJSON_ParseWithLength(buf, len);
    fr_free(buf);
    CHECKF(j != NULL, "%s: bad JSON", path);
    return j;
}

// The numbers of a JSON array (iterating: cJSON_GetArrayItem is linear per call).
static double *numbers(const cJSON *a, int *len) {
    *len = cJSON_GetArraySize(a);
    double *v = malloc(((size_t)*len + 1) * sizeof *v);
    int i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, a) v[i++] = x->valuedouble;
    return v;
}

static double hexnum(const cJSON *s) { return strtod(cJSON_GetStringValue(s), NULL); }

static long g_values, g_exact;

// |got - want| <= 1e-9, with JSON null meaning NaN.
static void cmp(const cJSON *want, double got, const char *what, const char *cls, int c) {
    g_values++;
    if (cJSON_IsNull(want)) {
        CHECKF(isnan(got), "case %d %s %s: want nan, got %.17g", c, what, cls, got);
        g_exact += isnan(got);
        return;
    }
    CHECKF(cJSON_IsNumber(want), "case %d %s %s: golden missing", c, what, cls);
    if (!cJSON_IsNumber(want)) return;
    double w = want->valuedouble;
    CHECKF(fabs(got - w) <= 1e-9, "case %d %s %s: got %.17g want %.17g", c, what, cls, got, w);
    g_exact += got == w;
}

TEST(test_numpy_goldens) {
    char path[4096];
    snprintf(path, sizeof path, "%s/eval/numpy.json", fixtures());
    cJSON *j = load_json(path);
    if (!j) return;
    const cJSON *ar = cJSON_GetObjectItemCaseSensitive(j, "arange07");
    CHECK(cJSON_GetArraySize(ar) == 11);
    for (int i = 0; i < 11 && i < cJSON_GetArraySize(ar); i++)
        CHECKF(fr_voc_threshold07(i) == hexnum(cJSON_GetArrayItem(ar, i)), "threshold %d", i);
    CHECK(hexnum(cJSON_GetObjectItemCaseSensitive(j, "eps")) == DBL_EPSILON);
    const cJSON *c;
    int n = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(j, "sum")) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(c, "a");
        int len;
        double *v = numbers(a, &len);
        double s = fr_voc_sum(v, (size_t)len);
        CHECKF(s == hexnum(cJSON_GetObjectItemCaseSensitive(c, "sum")), "np.sum n=%d: %.17g", len, s);
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(c, "mean");
        if (len) CHECKF(fr_voc_mean(v, (size_t)len) == hexnum(m), "np.mean n=%d", len);
        free(v);
        n++;
    }
    CHECK(n >= 20);
    cJSON_Delete(j);
}

TEST(test_argsort_goldens) {
    char path[4096];
    snprintf(path, sizeof path, "%s/eval/argsort.json", fixtures());
    cJSON *j = load_json(path);
    if (!j) return;
    const cJSON *c;
    int n = 0, killers = 0;
    cJSON_ArrayForEach(c, j) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(c, "v");
        const cJSON *want = cJSON_GetObjectItemCaseSensitive(c, "idx");
        const char *tag = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "tag"));
        int len, wlen;
        double *v = numbers(a, &len), *w = numbers(want, &wlen);
        CHECK(wlen == len);
        size_t *idx = malloc(((size_t)len + 1) * sizeof *idx);
        fr_voc_argsort(v, (size_t)len, idx);
        int bad = -1;
        for (int i = 0; i < len && i < wlen && bad < 0; i++)
            if (idx[i] != (size_t)w[i]) bad = i;
        free(w);
        CHECKF(bad < 0, "np.argsort %s: differs at position %d", tag, bad);
        killers += strstr(tag, "heapsort") != NULL;
        free(v);
        free(idx);
        n++;
    }
    CHECK(n > 100 && killers >= 3);
    cJSON_Delete(j);
}

static const char *const variants[] = {"voc_eval", "devkit", "stable"};

TEST(test_case_goldens) {
    int cases = 0;
    g_values = g_exact = 0;
    for (int c = 0;; c++) {
        char root[4096], voc[4200], res[4200], gpath[4200];
        snprintf(root, sizeof root, "%s/eval/cases/%03d", fixtures(), c);
        snprintf(gpath, sizeof gpath, "%s/golden.json", root);
        FILE *f = fopen(gpath, "r");
        if (!f) break;
        fclose(f);
        snprintf(voc, sizeof voc, "%s/VOC2007", root);
        snprintf(res, sizeof res, "%s/results", root);
        cJSON *g = load_json(gpath);
        if (!g) break;
        fr_voc_dataset ds;
        fr_err e = {0};
        if (fr_voc_dataset_load(&ds, voc, "test", NULL, 0, NULL, &e) != FR_OK) {
            CHECKF(0, "case %d: %s", c, e.msg);
            cJSON_Delete(g);
            break;
        }
        CHECK(fr_voc_dataset_failed_count(&ds) == 0);
        for (int v = 0; v < 3; v++) {
            fr_voc_score_opts o;
            fr_voc_score_opts_default(&o);
            o.iou_ge = v == 1;
            o.stable_ties = v == 2;
            fr_voc_eval_result r;
            if (fr_voc_evaluate(&ds, res, &o, NULL, &r, &e) != FR_OK) {
                CHECKF(0, "case %d: %s", c, e.msg);
                continue;
            }
            CHECK(r.problems == 0);
            const cJSON *gv = cJSON_GetObjectItemCaseSensitive(g, variants[v]);
            const cJSON *g07 = cJSON_GetObjectItemCaseSensitive(gv, "07");
            const cJSON *g10 = cJSON_GetObjectItemCaseSensitive(gv, "10");
            const cJSON *gs = cJSON_GetObjectItemCaseSensitive(gv, "stats");
            for (int k = 0; k < ds.num_classes; k++) {
                const char *cls = ds.classes[k];
                cmp(cJSON_GetObjectItemCaseSensitive(g07, cls), r.cls[k].ap07, "ap07", cls, c);
                cmp(cJSON_GetObjectItemCaseSensitive(g10, cls), r.cls[k].ap10, "ap10", cls, c);
                const cJSON *st = cJSON_GetObjectItemCaseSensitive(gs, cls);
                long npos = (long)cJSON_GetObjectItemCaseSensitive(st, "npos")->valuedouble;
                long nd = (long)cJSON_GetObjectItemCaseSensitive(st, "ndet")->valuedouble;
                long tp = (long)cJSON_GetObjectItemCaseSensitive(st, "tp")->valuedouble;
                long fp = (long)cJSON_GetObjectItemCaseSensitive(st, "fp")->valuedouble;
                CHECKF(r.cls[k].npos == npos && r.cls[k].ndet == nd && r.cls[k].tp == tp &&
                           r.cls[k].fp == fp,
                       "case %d %s %s: npos %ld/%ld ndet %ld/%ld tp %ld/%ld fp %ld/%ld", c,
                       variants[v], cls, r.cls[k].npos, npos, r.cls[k].ndet, nd, r.cls[k].tp, tp,
                       r.cls[k].fp, fp);
            }
            cmp(cJSON_GetObjectItemCaseSensitive(g07, "mAP"), r.map07, "mAP07", variants[v], c);
            cmp(cJSON_GetObjectItemCaseSensitive(g10, "mAP"), r.map10, "mAP10", variants[v], c);
            fr_voc_eval_result_free(&r);
        }
        fr_voc_dataset_free(&ds);
        cJSON_Delete(g);
        cases++;
    }
    CHECKF(cases >= 40, "only %d golden cases under %s/eval/cases", cases, fixtures());
    printf("  golden: %d cases, %ld values within 1e-9, %ld of them bit-identical\n", cases,
           g_values, g_exact);
}

int main(void) {
    fr_alloc_init();
    RUN(test_numpy_goldens);
    RUN(test_argsort_goldens);
    RUN(test_case_goldens);
    return harness_done(__FILE__);
}
