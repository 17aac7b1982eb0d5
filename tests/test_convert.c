// test_convert.c - the checkpoint converter (tools/convert.py, tools/weights.sh).
//
// Runs /usr/bin/python3 tools/test_convert.py (synthetic checkpoints in the detectron2,
// torchvision, ruotianluo and jwyang layouts: names and shapes, numerics against modules with
// the original projects' semantics, refused pickles and other errors, weights.sh failures) and
// turns each of its "ok NAME" / "FAIL NAME: why" lines into a harness check. Then the C side
// must accept every file the converter wrote: fr_model_load with the expected configuration,
// one fr_detect on a noise image, and `frcnn info -m FILE` exiting 0.
#include "detector/detector.h"
#include "harness.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static char out_dir[512];
static int n_python_ok;

// One harness check under its own name (the harness counts checks per RUN).
static void record(const char *name, int ok, const char *why) {
    h_cur = name;
    h_cur_failed = 0;
    CHECKF(ok, "%s", why);
    if (h_cur_failed) h_failed++;
    else h_passed++;
}

static int exit_ok(int status) { return status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0; }

static void run_python(void) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tools/test_convert.py --out '%s' 2>&1", out_dir);
    FILE *p = popen(cmd, "r");
    if (!p) {
        record("python_started", 0, "popen failed");
        return;
    }
    char line[4096];
    int summary = 0;
    while (fgets(line, sizeof line, p)) {
        line[strcspn(line, "\n")] = 0;
        if (!strncmp(line, "ok ", 3)) {
            record(line + 3, 1, "");
            n_python_ok++;
        } else if (!strncmp(line, "FAIL ", 5)) {
            char *why = strchr(line + 5, ':');
            if (why) *why++ = 0;
            record(line + 5, 0, why ? why : "");
        } else {
            if (!strncmp(line, "checks: ", 8)) summary = 1;
            printf("  python: %s\n", line);
        }
    }
    int st = pclose(p);
    record("python_exit_status", exit_ok(st), "tools/test_convert.py failed or crashed");
    // 94 checks today: a run that stops early (import error, crash) must not look green
    record("python_ran_every_check", summary && n_python_ok >= 90, "no summary line or too few checks");
}

typedef struct {
    const char *file;
    fr_family family;
    int classes, depth, rgb, stride_in_1x1, res5_stride;
    fr_objectness obj;
    fr_background bg;
    int box_includes_background, class_agnostic;
    fr_roi_op roi_op;
    int roi_size;
} expect;

static const expect files[] = {
    {"detectron2.safetensors", FR_FAMILY_DETECTRON2, 80, 50, 0, 1, 2, FR_OBJ_SIGMOID, FR_BG_LAST, 0, 0, FR_ROI_ALIGN, 14},
    {"detectron2_voc_f16.safetensors", FR_FAMILY_DETECTRON2, 20, 50, 0, 1, 2, FR_OBJ_SIGMOID, FR_BG_LAST, 0, 0,
     FR_ROI_ALIGN, 14},
    {"torchvision.safetensors", FR_FAMILY_DETECTRON2, 80, 50, 1, 0, 2, FR_OBJ_SIGMOID, FR_BG_FIRST, 1, 0, FR_ROI_ALIGN,
     14},
    {"ruotianluo.safetensors", FR_FAMILY_PYFRCNN, 20, 50, 0, 1, 1, FR_OBJ_SOFTMAX2, FR_BG_FIRST, 1, 0, FR_ROI_ALIGN, 7},
    {"jwyang.safetensors", FR_FAMILY_PYFRCNN, 20, 101, 0, 1, 2, FR_OBJ_SOFTMAX2, FR_BG_FIRST, 1, 0, FR_ROI_ALIGN, 7},
    {"jwyang_agnostic_pool.safetensors", FR_FAMILY_PYFRCNN, 20, 50, 0, 1, 2, FR_OBJ_SOFTMAX2, FR_BG_FIRST, 0, 1,
     FR_ROI_POOL, 7},
};

// Loads one converted file, checks its configuration and runs one detection.
static void check_file(const expect *x) {
    char path[800], cmd[1800];
    snprintf(path, sizeof path, "%s/%s", out_dir, x->file);
    h_cur = x->file;
    h_cur_failed = 0;
    fr_model *m = NULL;
    fr_session *s = NULL;
    fr_err e = {0};
    CHECKF(fr_model_load(&m, path, NULL, &e) == FR_OK, "%s", e.msg);
    if (m) {
        const fr_config *c = fr_model_config(m);
        CHECK(c->family == x->family);
        CHECK(c->num_classes == x->classes);
        CHECK(c->depth == x->depth);
        CHECK(c->input_rgb == x->rgb);
        CHECK(c->stride_in_1x1 == x->stride_in_1x1);
        CHECK(c->res5_stride == x->res5_stride);
        CHECK(c->objectness == x->obj);
        CHECK(c->background == x->bg);
        CHECK(c->box_includes_background == x->box_includes_background);
        CHECK(c->class_agnostic == x->class_agnostic);
        CHECK(c->roi_op == x->roi_op);
        CHECK(c->roi_size == x->roi_size);
        if (x->rgb) CHECK_NEAR(c->pixel_std[0], 0.229 * 255, 1e-3); // torchvision std, 0..255 scale
        CHECKF(fr_session_new(&s, m, &e) == FR_OK, "%s", e.msg);
    }
    if (s) {
        enum { W = 96, H = 64 };
        static unsigned char px[W * H * 3];
        unsigned v = 12345;
        for (int i = 0; i < W * H * 3; i++) {
            v = v * 1103515245u + 12345u;
            px[i] = (unsigned char)((v >> 16) ^ (i % W) * 2);
        }
        fr_image img = {.w = W, .h = H, .rgb = px};
        fr_result r = {0};
        CHECKF(fr_detect(s, &img, NULL, &r, &e) == FR_OK, "%s", e.msg);
        CHECK(r.width == W && r.height == H && r.n >= 0);
        for (int i = 0; i < r.n; i++) {
            const fr_detection *d = &r.dets[i];
            CHECK(d->class_id >= 0 && d->class_id < x->classes && d->score > 0 && d->score <= 1);
            CHECK(d->box[0] >= 0 && d->box[1] >= 0 && d->box[2] <= W && d->box[3] <= H);
        }
        fr_result_free(&r);
    }
    fr_session_free(s);
    fr_model_free(m);
    const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
    snprintf(cmd, sizeof cmd, "'%s/frcnn' info -m '%s' > /dev/null", build, path);
    CHECKF(exit_ok(system(cmd)), "%s failed", cmd);
    if (h_cur_failed) h_failed++;
    else h_passed++;
}

int main(void) {
    const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
    snprintf(out_dir, sizeof out_dir, "%s/tests/convert", build);
    run_python();
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) check_file(&files[i]);
    return harness_done(__FILE__);
}
