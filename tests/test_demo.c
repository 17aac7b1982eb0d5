// test_demo.c - the bundled demo model (models/demo.safetensors) scored by `frcnn eval` on its
// shapes test split, against the PyTorch reference's scores on the same images
// ($FIXTURES/demo: split and ref.json written by tools/reference/fx_demo.py).
//
// Checks: frcnn eval picks the model's own classes by default (none is a VOC class), both
// mAPs (VOC07 11-point, VOC2010+ area) within 0.002 of the reference's (issue 5's tolerance;
// the two engines decode the JPEGs with different decoders, stb and PIL), each class's AP
// within 0.01, and the VOC07 mAP at least 0.90 (issue 5's target; the committed model reaches
// 0.9098). Run twice: with the default GEMM (built-in on AVX-512 CPUs) and with FRCNN_GEMM=blas
// (cblas_sgemm).
#include "cli.h"
#include "fixture.h"
#include "harness.h"

#include <cjson/cJSON.h>

static const char *const k_classes[] = {"circle", "square", "triangle", "star"};

static cJSON *load_json(const char *path) {
    char *b = slurp(path);
    if (!b) {
        fprintf(stderr, "  cannot read %s\n", path);
        return NULL;
    }
    cJSON *j = cJSON_Parse(b);
    fr_free(b);
    if (!j) fprintf(stderr, "  %s: not JSON\n", path);
    return j;
}

static double ap_of(const cJSON *j, const char *metric, const char *cls) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, metric);
    const cJSON *v = m ? cJSON_GetObjectItemCaseSensitive(m, cls) : NULL;
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

// One `frcnn eval` run with FRCNN_GEMM set to gemm ("" leaves the default: the built-in GEMM on
// AVX-512 CPUs), checked against the reference.
static void check_eval(const char *gemm) {
    char voc[1100], refp[1100], out[400], json[400];
    snprintf(voc, sizeof voc, "%s", fixture_path("demo/VOCdevkit/VOC2007"));
    snprintf(refp, sizeof refp, "%s", fixture_path("demo/ref.json"));
    snprintf(out, sizeof out, "%s/c%s", g_tmp, gemm);
    snprintf(json, sizeof json, "%s/c%s.json", g_tmp, gemm);
    if (*gemm)
        setenv("FRCNN_GEMM", gemm, 1);
    else
        unsetenv("FRCNN_GEMM");
    const char *args[] = {"eval", "-m", "models/demo.safetensors", "--voc", voc, "--set", "test",
                          "--out", out, "--json", json, "-q", NULL};
    int rc = frcnn(args);
    unsetenv("FRCNN_GEMM");
    CHECKF(rc == 0, "frcnn eval exit %d (stderr in %s)", rc, g_err);
    cJSON *ref = load_json(refp), *c = load_json(json);
    CHECK(ref != NULL && c != NULL);
    if (ref && c) {
        const char *metrics[] = {"07", "10"};
        for (int m = 0; m < 2; m++) {
            double r = ap_of(ref, metrics[m], "mAP"), o = ap_of(c, metrics[m], "mAP");
            printf("  demo mAP %s%s: frcnn %.4f, reference %.4f, |diff| %.4f\n", metrics[m],
                   *gemm ? " (FRCNN_GEMM=blas)" : "", o, r, fabs(o - r));
            CHECK(isfinite(r) && isfinite(o));
            CHECK_NEAR(o, r, 0.002);
            for (int k = 0; k < 4; k++)
                CHECK_NEAR(ap_of(c, metrics[m], k_classes[k]), ap_of(ref, metrics[m], k_classes[k]), 0.01);
        }
        CHECKF(ap_of(c, "07", "mAP") >= 0.90, "demo VOC07 mAP %.4f below the 0.90 target",
               ap_of(c, "07", "mAP"));
    }
    cJSON_Delete(ref);
    cJSON_Delete(c);
}

TEST(test_demo_map_matches_reference) {
    check_eval("");
    check_eval("blas"); // the im2col + cblas_sgemm path that CPUs without AVX-512 take
}

int main(void) {
    if (cli_begin("demo")) return harness_done(__FILE__);
    RUN(test_demo_map_matches_reference);
    cli_end();
    return harness_done(__FILE__);
}
