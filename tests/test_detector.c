// test_detector.c - the whole detector against the PyTorch reference (tools/reference
// fx_detector.py fixtures), plus allocation-failure injection through load + detect + JSON.
//
// Parity criteria (issue 3): proposals >= 99% matched at IoU >= 0.99 and in the same order;
// final detections: same class, box within 0.05 px, score within 1e-4.
#include "core/alloc.h"
#include "detector/session.h"
#include "fixture.h"
#include "harness.h"

#include <unistd.h>

static double iou(const float *a, const float *b) {
    double iw = fmin(a[2], b[2]) - fmax(a[0], b[0]), ih = fmin(a[3], b[3]) - fmax(a[1], b[1]);
    if (iw <= 0 || ih <= 0) return 0;
    double in = iw * ih, ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - in;
    return ua > 0 ? in / ua : 0;
}

// Runs model on image and compares with the fixture's proposals and detections.
// fast: FR_MODEL_FAST (Winograd), held to the same criteria against the same reference.
static void check_parity(const char *model_path, const char *fixture, const char *image, const char *label,
                         unsigned flags) {
    fr_model *m = NULL;
    fr_session *s = NULL;
    fr_err e = {0};
    fr_st_file f = {0};
    fr_image img = {0};
    fr_result r = {0};
    float *props = NULL, *db = NULL, *ds = NULL, *dc = NULL;
    CHECKF(fr_model_load_ex(&m, model_path, NULL, flags, &e) == FR_OK, "%s", e.msg);
    if (!m) return;
    CHECK(fr_model_fast(m) == !!(flags & FR_MODEL_FAST));
    CHECKF(fr_session_new(&s, m, &e) == FR_OK, "%s", e.msg);
    CHECKF(fr_st_open(&f, fixture, &e) == FR_OK, "%s", e.msg);
    fr_image_limits lim;
    fr_image_limits_default(&lim);
    CHECKF(fr_image_load(&img, image, &lim, m->cfg.exif, &e) == FR_OK, "%s", e.msg);
    if (!s || !f.buf || !img.rgb) goto done;
    fr_forward_out o;
    CHECKF(fr_session_forward(s, &img, &o, &e) == FR_OK, "%s", e.msg);
    int nd;
    int64_t ps[8], bs[8], ss[8], cs[8];
    props = fixture_tensor(&f, "proposals", &nd, ps);
    CHECK(props != NULL);
    if (props) {
        int n = (int)ps[0], matched = 0, same_order = 0;
        CHECKF(o.nprop == n, "%s: %d proposals, reference %d", label, o.nprop, n);
        int lim_n = o.nprop < n ? o.nprop : n;
        for (int i = 0; i < lim_n; i++) {
            if (iou(o.proposals + 4 * i, props + 4 * i) >= 0.99) same_order++;
            for (int j = 0; j < n; j++)
                if (iou(o.proposals + 4 * i, props + 4 * j) >= 0.99) {
                    matched++;
                    break;
                }
        }
        printf("  %s: proposals %d (ref %d), matched at IoU>=0.99: %.2f%%, same position: %.2f%%\n", label, o.nprop,
               n, 100.0 * matched / (n ? n : 1), 100.0 * same_order / (n ? n : 1));
        CHECKF(matched >= 0.99 * n, "%s: only %d of %d proposals matched", label, matched, n);
    }
    // final detections
    CHECKF(fr_detect(s, &img, NULL, &r, &e) == FR_OK, "%s", e.msg);
    db = fixture_tensor(&f, "det_boxes", &nd, bs);
    ds = fixture_tensor(&f, "det_scores", &nd, ss);
    dc = fixture_tensor(&f, "det_classes", &nd, cs);
    CHECK(db && ds && dc);
    if (db && ds && dc) {
        int n = (int)ss[0];
        CHECKF(r.n == n, "%s: %d detections, reference %d", label, r.n, n);
        CHECKF(n >= 1, "%s: the reference has no detection: the fixture compares nothing", label);
        double mb = 0, msc = 0;
        int cls_ok = 1;
        for (int i = 0; i < (r.n < n ? r.n : n); i++) {
            if (r.dets[i].class_id != (int)dc[i]) cls_ok = 0;
            for (int k = 0; k < 4; k++) mb = fmax(mb, fabs(r.dets[i].box[k] - db[4 * i + k]));
            msc = fmax(msc, fabs(r.dets[i].score - ds[i]));
        }
        printf("  %s: detections %d (ref %d), classes %s, max box diff %.3g px, max score diff %.3g\n", label, r.n, n,
               cls_ok ? "equal" : "DIFFER", mb, msc);
        CHECK(cls_ok);
        CHECKF(mb <= 0.05, "%s: box differs by %g px", label, mb);
        CHECKF(msc <= 1e-4, "%s: score differs by %g", label, msc);
    }
done:
    free(props), free(db), free(ds), free(dc);
    fr_result_free(&r);
    fr_image_free(&img);
    fr_st_close(&f);
    fr_session_free(s);
    fr_model_free(m);
}

// Fixture sets written by tools/reference/fx_detector.py: model, fixture, image (in FIXTURES).
static const char *const sets[][4] = {
    {"tests/data/r101_narrow.safetensors", "det_narrow_dog.safetensors", "dog.png", "narrow d2 dog"},
    {"tests/data/r101_narrow.safetensors", "det_narrow_horses.safetensors", "horses.png", "narrow d2 horses"},
    {"tests/data/r101_narrow.safetensors", "det_narrow_person.safetensors", "person.png", "narrow d2 person"},
    {"@r101_narrow_pyfrcnn.safetensors", "det_narrow_pyfrcnn_dog.safetensors", "dog.png", "narrow py-frcnn dog"},
    {"@r101_narrow_pyfrcnn.safetensors", "det_narrow_pyfrcnn_horses.safetensors", "horses.png",
     "narrow py-frcnn horses"},
    {"@r101_full.safetensors", "det_full_dog.safetensors", "dog.png", "full d2 dog"},
    {"@r101_full.safetensors", "det_full_horses.safetensors", "horses.png", "full d2 horses"},
    {"@r101_full.safetensors", "det_full_person.safetensors", "person.png", "full d2 person"},
    {"@r101_full_pyfrcnn.safetensors", "det_full_pyfrcnn_dog.safetensors", "dog.png", "full py-frcnn dog"},
    {"@r101_full_pyfrcnn.safetensors", "det_full_pyfrcnn_horses.safetensors", "horses.png", "full py-frcnn horses"},
};

// Runs check_parity on sets[i], its label prefixed with "fast " in fast mode.
static void check_set(size_t i, unsigned flags) {
    char model[1024], fx[1024], im[1024], label[128];
    if (sets[i][0][0] == '@') snprintf(model, sizeof model, "%s", fixture_path(sets[i][0] + 1));
    else snprintf(model, sizeof model, "%s", sets[i][0]);
    snprintf(fx, sizeof fx, "%s", fixture_path(sets[i][1]));
    snprintf(im, sizeof im, "%s", fixture_path(sets[i][2]));
    snprintf(label, sizeof label, "%s%s", flags & FR_MODEL_FAST ? "fast " : "", sets[i][3]);
    check_parity(model, fx, im, label, flags);
}

TEST(test_parity) {
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) check_set(i, 0);
}

// The fast mode against the same reference and criteria: the narrow models of both families
// and the full-size ones on one photo each (the Winograd error grows with the channel count).
TEST(test_parity_fast) {
    static const size_t pick[] = {0, 1, 2, 3, 4, 5, 8};
    for (size_t j = 0; j < sizeof pick / sizeof pick[0]; j++) check_set(pick[j], FR_MODEL_FAST);
}

// Fails the k-th allocation for every k: first through building the model from a parsed file
// (the safetensors parser's own allocations are covered by test_safetensors), then through
// session creation, one detection and its JSON answer.
TEST(test_alloc_failures) {
    fr_image img = {0};
    fr_image_limits lim;
    fr_image_limits_default(&lim);
    fr_err e = {0};
    fr_st_file f;
    CHECKF(fr_image_load(&img, "tests/data/det_small.png", &lim, 1, &e) == FR_OK, "%s", e.msg);
    CHECKF(fr_st_open(&f, "tests/data/r101_narrow.safetensors", &e) == FR_OK, "%s", e.msg);
    if (!img.rgb || !f.buf) return;
    fr_alloc_init();
    long fired_load = 0, fired_detect = 0;
    for (long k = 1; k < 100000; k++) {
        fr_model *m = NULL;
        fr_alloc_fail_at(k);
        fr_status st = fr_model_load_st(&m, &f, NULL, 0, &e);
        int hit = fr_alloc_failed();
        fr_alloc_fail_at(0);
        fr_model_free(m);
        if (!hit) {
            CHECKF(st == FR_OK, "no failure injected but: %s", e.msg);
            break;
        }
        fired_load++;
        CHECKF(st == FR_ERR_NOMEM, "allocation %ld of the model load: status %d (%s)", k, st, e.msg);
    }
    // The same model with a small input and few proposals keeps each detection cheap.
    fr_config small;
    CHECK(fr_config_parse(&small, fr_st_meta(&f, "frcnn.config"), strlen(fr_st_meta(&f, "frcnn.config")), &e) == FR_OK);
    small.min_size = 64;
    small.max_size = 96;
    small.post_nms_topk = 40;
    char *cj = fr_config_to_json(&small);
    fr_config_free(&small);
    fr_model *m = NULL;
    CHECKF(cj && fr_model_load_st(&m, &f, cj, strlen(cj), &e) == FR_OK, "%s", e.msg);
    fr_free(cj);
    for (long k = 1; m && k < 100000; k++) {
        fr_session *s = NULL;
        fr_result r = {0};
        char *js = NULL;
        fr_alloc_fail_at(k);
        fr_status st = fr_session_new(&s, m, &e);
        if (!st) st = fr_detect(s, &img, NULL, &r, &e);
        if (!st) {
            js = fr_result_to_json(m, &r);
            if (!js) st = FR_ERR_NOMEM;
        }
        int hit = fr_alloc_failed();
        fr_alloc_fail_at(0);
        fr_free(js);
        fr_result_free(&r);
        fr_session_free(s);
        if (!hit) {
            CHECKF(st == FR_OK, "no failure injected but: %s", e.msg);
            break;
        }
        fired_detect++;
        CHECKF(st != FR_OK, "allocation %ld of session + detect + JSON failed silently", k);
    }
    // fast mode: the Winograd weights of each layer, then a session and a detection with them
    long fired_fast = 0;
    for (long k = 1; m && k < 100000; k++) {
        fr_model *mf = NULL;
        fr_session *s = NULL;
        fr_result r = {0};
        CHECKF(fr_model_load_st(&mf, &f, NULL, 0, &e) == FR_OK, "%s", e.msg);
        if (!mf) break;
        fr_alloc_fail_at(k);
        fr_status st = fr_model_make_fast(mf);
        if (!st) st = fr_session_new(&s, mf, &e);
        if (!st) st = fr_detect(s, &img, NULL, &r, &e);
        int hit = fr_alloc_failed();
        fr_alloc_fail_at(0);
        fr_result_free(&r);
        fr_session_free(s);
        fr_model_free(mf);
        if (!hit) {
            CHECKF(st == FR_OK, "no failure injected but: %s", e.msg);
            break;
        }
        fired_fast++;
        CHECKF(st != FR_OK, "allocation %ld of fast mode + detect failed silently", k);
    }
    printf("  allocation failures injected: %ld in model building, %ld in session + detect + JSON, %ld in fast "
           "mode\n", fired_load, fired_detect, fired_fast);
    CHECK(fired_load > 100 && fired_detect > 3 && fired_fast > 20);
    fr_model_free(m);
    fr_st_close(&f);
    fr_image_free(&img);
}

int main(void) {
    RUN(test_parity);
    RUN(test_parity_fast);
    RUN(test_alloc_failures);
    return harness_done(__FILE__);
}
