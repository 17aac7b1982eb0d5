// test_backbone.c - stem..res4 of ResNet-101 against the PyTorch reference (tools/reference):
// the committed narrow model (tests/data) and the full-size seeded, calibrated model on a real
// photo (build/fixtures, written by fx_backbone.py). Criterion: max abs error <= 1e-4 x RMS.
#include "detector/session.h"
#include "fixture.h"
#include "harness.h"

static void check_backbone(const char *model_path, const char *fixture, const char *label) {
    fr_model *m = NULL;
    fr_session *s = NULL;
    fr_err e = {0};
    fr_st_file f = {0};
    float *input = NULL, *ref = NULL;
    CHECKF(fr_model_load(&m, model_path, NULL, &e) == FR_OK, "%s", e.msg);
    if (!m) return;
    CHECKF(fr_session_new(&s, m, &e) == FR_OK, "%s", e.msg);
    CHECKF(fr_st_open(&f, fixture, &e) == FR_OK, "%s", e.msg);
    if (!s || !f.buf) goto done;
    int nd;
    int64_t sh[8], rs[8];
    input = fixture_tensor(&f, "input", &nd, sh);
    ref = fixture_tensor(&f, "res4", &nd, rs);
    CHECK(input && ref);
    if (!input || !ref) goto done;
    fr_tensor in = {input, 1, (int)sh[1], (int)sh[2], 3}, out;
    double ms[4];
    CHECKF(fr_session_backbone(s, &in, &out, ms, &e) == FR_OK, "%s", e.msg);
    CHECKF(out.h == rs[1] && out.w == rs[2] && out.c == rs[3], "res4 %dx%dx%d vs %lldx%lldx%lld", out.h, out.w, out.c,
           (long long)rs[1], (long long)rs[2], (long long)rs[3]);
    if (out.h == rs[1] && out.w == rs[2] && out.c == rs[3]) {
        double mabs, rms, rel = rel_max_err(out.data, ref, fr_tensor_numel(&out), &mabs, &rms);
        printf("  %s: input %lldx%lld, res4 %dx%dx%d, max abs err %.3g, rms %.3g, ratio %.3g (limit 1e-4); "
               "stem %.0f res2 %.0f res3 %.0f res4 %.0f ms\n",
               label, (long long)sh[2], (long long)sh[1], out.w, out.h, out.c, mabs, rms, rel, ms[0], ms[1], ms[2],
               ms[3]);
        CHECKF(rel <= 1e-4, "%s: max abs err %g > 1e-4 x rms %g", label, mabs, rms);
        CHECK(rms > 0.05); // activations are O(1): a meaningful comparison
    }
done:
    free(input);
    free(ref);
    fr_st_close(&f);
    fr_session_free(s);
    fr_model_free(m);
}

TEST(test_backbone_narrow) {
    check_backbone("tests/data/r101_narrow.safetensors", "tests/data/r101_narrow_fixture.safetensors", "narrow");
}

TEST(test_backbone_full) {
    char model[1024];
    snprintf(model, sizeof model, "%s", fixture_path("r101_full.safetensors"));
    check_backbone(model, fixture_path("backbone_full_dog.safetensors"), "full R101 dog");
}

int main(void) {
    RUN(test_backbone_narrow);
    RUN(test_backbone_full);
    return harness_done(__FILE__);
}
