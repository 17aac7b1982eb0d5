// test_eval_cli.c - `frcnn eval` as users run it (the build/frcnn binary, or $FRCNN): --help,
// exit status 0/1/2 with a one-line message last on stderr, the V-row dataset of
// tests/data/voc scored with hand-computed APs, --keep-going, --json (NaN as null, values
// equal to the numpy golden), --plot, results problems, and refusing incomplete runs.
#include "core/alloc.h"
#include "eval/voc_internal.h"
#include "cli.h"
#include "harness.h"

#include <cjson/cJSON.h>
#include <ftw.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int out_has(const char *needle) {
    char *b = slurp(g_out);
    int ok = b && strstr(b, needle) != NULL;
    fr_free(b);
    return ok;
}

#define V "tests/data/voc/VOC2007"
#define R "tests/data/voc/results"

TEST(test_help_and_usage) {
    const char *help[] = {"eval", "--help", NULL};
    CHECK(frcnn(help) == 0);
    const char *opts[] = {"--voc",     "--set",   "--results", "--merge",   "--resume", "--shard",
                          "--json",    "--plot",  "--iou-rule", "--ties",   "--classes",
                          "--bad-boxes", "--keep-going", "--score-threshold", "--max-detections",
                          "Exit status", "null", "int()"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        CHECKF(out_has(opts[i]), "--help does not mention %s", opts[i]);
    const char *bad[][8] = {
        {"eval", NULL},
        {"eval", "--voc", V, NULL},
        {"eval", "--voc", V, "--results", R, "-m", "x", NULL},
        {"eval", "--voc", V, "--results", R, "--iou", "1.5", NULL},
        {"eval", "--voc", V, "--results", R, "--iou-rule", "matlab", NULL},
        {"eval", "--voc", V, "--results", R, "--ties", "random", NULL},
        {"eval", "--voc", V, "--results", R, "--bogus", NULL},
        {"eval", "--voc", V, "--results", R, "extra", NULL},
        {"eval", "--voc", V, "--results", R, "--resume", NULL},
        {"eval", "--voc", V, "-m", "x", "--shard", "4/3", NULL},
        {"eval", "--voc", V, "-m", "x", "--shard", "0/3", NULL},
        {"eval", "--voc", V, "-m", "x", "--score-threshold", "2", NULL},
        {"eval", "--voc", V, "--merge", "a", NULL},
        {"eval", "--voc", V, "--results", R, "--classes", "dog,,cat", NULL},
        {"eval", "--voc", V, "--results", R, "--classes", "dog,dog", NULL},
        {"eval", "--voc", V, "--results", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = frcnn(bad[i]);
        CHECKF(rc == 2, "case %zu: exit %d", i, rc);
        CHECKF(last_err_has("frcnn eval --help"), "case %zu", i);
    }
}

static cJSON *json_file(const char *p) {
    char *b = slurp(p);
    cJSON *j = b ? cJSON_Parse(b) : NULL;
    fr_free(b);
    CHECKF(j != NULL, "%s: no JSON", p);
    return j;
}

static double jget(const cJSON *j, const char *m, const char *cls) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, m), cls);
    return cJSON_IsNumber(x) ? x->valuedouble : cJSON_IsNull(x) ? NAN : -1.0;
}

TEST(test_vrows_scored) {
    char json[300];
    snprintf(json, sizeof json, "%s/v.json", g_tmp);
    const char *a[] = {"eval", "--voc", V, "--results", R, "--classes", "dog,person", "--json", json,
                       NULL};
    // 16 of the 25 listed ids fail (bad XML, entities, missing fields, decimals, a missing
    // annotation, an unusable id): each reported with its path, the others scored, exit 1
    CHECK(frcnn(a) == 1);
    CHECK(last_err_has("16 of 25 images failed"));
    char *err = slurp(g_err);
    const char *want[] = {"Annotations/unclosed.xml: line", "Annotations/badutf8.xml: line",
                          "Annotations/bom2.xml", "Annotations/laughs.xml: line 2: DOCTYPE not allowed",
                          "Annotations/xxe.xml", "Annotations/decimal.xml: line 1: <xmin> '273.5'",
                          "Annotations/nonnumeric.xml", "Annotations/nobndbox.xml",
                          "noannotation.xml: No such file", "'../etc/passwd'",
                          "2 duplicate ids", "2 blank lines", "1 objects without <difficult>",
                          "4 objects with xmin > xmax"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECKF(err && strstr(err, want[i]), "stderr lacks '%s'", want[i]);
    CHECK(err && !strstr(err, "bom.xml")); // a UTF-8 BOM is fine
    fr_free(err);
    CHECK(out_has("25 listed, 9 scored, 16 failed"));
    // hand-computed: dog has 13 non-difficult objects; ranked detections: a match of the
    // difficult dog (ignored), TP, duplicate (FP), TP, FP; the failed image's line is skipped.
    // rec 0 1/13 1/13 2/13 2/13, prec 0 1 .5 2/3 .5 -> AP10 = 1/13 + (1/13)(2/3) = 5/39,
    // AP07 = (1 + 2/3) / 11 = 5/33 (only t = 0 and 0.1 are reached)
    cJSON *j = json_file(json);
    if (j) {
        CHECK(fabs(jget(j, "07", "dog") - 5.0 / 33) < 1e-15);
        CHECK(fabs(jget(j, "10", "dog") - 5.0 / 39) < 1e-15);
        CHECK(jget(j, "07", "person") == 1.0000000000000002 && jget(j, "10", "person") == 1.0);
        CHECK(fabs(jget(j, "10", "mAP") - (5.0 / 39 + 1) / 2) < 1e-15);
        cJSON_Delete(j);
    }
    const char *k[] = {"eval", "--voc", V, "--results", R, "--classes", "dog,person",
                       "--keep-going", "--quiet", NULL};
    CHECK(frcnn(k) == 0);
    // the policies for bad GT boxes change npos: keep 13, skip 9, clip 11
    const char *skip[] = {"eval", "--voc", V, "--results", R, "--classes", "dog", "--keep-going",
                          "--bad-boxes", "skip", NULL};
    CHECK(frcnn(skip) == 0 && out_has("dog ") && out_has("      9 "));
    const char *clip[] = {"eval", "--voc", V, "--results", R, "--classes", "dog", "--keep-going",
                          "--bad-boxes", "clip", NULL};
    CHECK(frcnn(clip) == 0 && out_has("     11 "));
}

TEST(test_results_problems) {
    // the "good" list lacks 'unclosed': its detection line is an unknown id -> exit 1
    char dir[300], p[400];
    snprintf(dir, sizeof dir, "%s/good", g_tmp);
    mkdir(dir, 0777);
    const char *cls[] = {"dog", "person"};
    for (int i = 0; i < 2; i++) {
        char src[200];
        snprintf(src, sizeof src, R "/comp4_det_test_%s.txt", cls[i]);
        snprintf(p, sizeof p, "%s/comp4_det_good_%s.txt", dir, cls[i]);
        char *t = slurp(src);
        FILE *f = fopen(p, "w");
        if (t && f) fputs(t, f);
        if (f) fclose(f);
        fr_free(t);
    }
    const char *a[] = {"eval", "--voc", V, "--set", "good", "--results", dir, "--classes",
                       "dog,person", NULL};
    CHECK(frcnn(a) == 1);
    CHECK(last_err_has("problems in the results files"));
    char *err = slurp(g_err);
    CHECK(err && strstr(err, "comp4_det_good_dog.txt:6: id not in the image list: unclosed"));
    fr_free(err);
    // the results are named comp4_det_test_*: with --set good no file exists
    const char *b[] = {"eval", "--voc", V, "--set", "good", "--results", R, "--classes", "dog",
                       "--keep-going", NULL};
    CHECK(frcnn(b) == 0 && out_has("(no results file)"));
    // all 20 classes: 18 files missing -> scored as no detections, exit 1
    const char *c[] = {"eval", "--voc", V, "--results", R, "--keep-going", NULL};
    CHECK(frcnn(c) == 0);
    const char *d[] = {"eval", "--voc", V, "--set", "nosuchset", "--results", R, NULL};
    CHECK(frcnn(d) == 1 && last_err_has("nosuchset.txt"));
}

TEST(test_golden_case_json_and_plots) {
    const char *fx = getenv("FIXTURES");
    char root[4096], voc[4200], res[4200], gpath[4200], json[300], plots[300];
    snprintf(root, sizeof root, "%s/eval/cases", fx && *fx ? fx : "build/fixtures");
    snprintf(json, sizeof json, "%s/g.json", g_tmp);
    snprintf(plots, sizeof plots, "%s/plots", g_tmp);
    int tested = 0, nulls = 0;
    for (int c = 0; c < 6; c++) {
        snprintf(voc, sizeof voc, "%s/%03d/VOC2007", root, c);
        snprintf(res, sizeof res, "%s/%03d/results", root, c);
        snprintf(gpath, sizeof gpath, "%s/%03d/golden.json", root, c);
        cJSON *g = json_file(gpath);
        if (!g) break;
        const char *a[] = {"eval", "--voc", voc, "--results", res, "--json", json, "--plot", plots,
                           c % 2 ? "--ties" : "--iou-rule", c % 2 ? "stable" : "voc_eval", NULL};
        int rc = frcnn(a);
        CHECKF(rc == 0, "case %d: exit %d", c, rc);
        cJSON *j = json_file(json);
        const cJSON *gv = cJSON_GetObjectItemCaseSensitive(g, c % 2 ? "stable" : "voc_eval");
        const cJSON *m, *x;
        for (int k = 0; j && k < 2; k++) {
            const char *key = k ? "10" : "07";
            cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(gv, key)) {
                m = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, key),
                                                     x->string);
                CHECKF(m && (cJSON_IsNull(x) ? cJSON_IsNull(m)
                                             : cJSON_IsNumber(m) &&
                                                   fabs(m->valuedouble - x->valuedouble) <= 1e-9),
                       "case %d %s %s", c, key, x->string);
                nulls += cJSON_IsNull(x);
            }
        }
        cJSON_Delete(j);
        cJSON_Delete(g);
        tested++;
    }
    CHECK(tested == 6 && nulls > 0);
    char svg[400];
    snprintf(svg, sizeof svg, "%s/pr_dog.svg", plots);
    char *s = slurp(svg);
    CHECK(s && strstr(s, "<svg") && strstr(s, "AP07") && strstr(s, "</svg>"));
    fr_free(s);
    snprintf(svg, sizeof svg, "%s/pr_tvmonitor.svg", plots);
    s = slurp(svg);
    CHECK(s != NULL);
    fr_free(s);
}

TEST(test_incomplete_run_refused) {
    char dir[300], p[400];
    snprintf(dir, sizeof dir, "%s/run", g_tmp);
    mkdir(dir, 0777);
    snprintf(p, sizeof p, "%s/progress.txt", dir);
    FILE *f = fopen(p, "w");
    fputs("# frcnn eval progress 1\n# set good\n# list 6 0\n# classes 2 0\n# shard 1 1\n# model m\n"
          "# options o\n",
          f);
    fclose(f);
    const char *a[] = {"eval", "--voc", V, "--set", "good", "--results", dir, "--classes",
                       "dog,person", NULL};
    CHECK(frcnn(a) == 1 && last_err_has("different image list"));
}

int main(void) {
    if (cli_begin("eval_cli")) return harness_done(__FILE__);
    RUN(test_help_and_usage);
    RUN(test_vrows_scored);
    RUN(test_results_problems);
    RUN(test_golden_case_json_and_plots);
    RUN(test_incomplete_run_refused);
    cli_end();
    return harness_done(__FILE__);
}
