// test_config.c - model configuration parsing: shipped configs load, bad ones are rejected
// with a message naming the key, and to_json round-trips.
#include "core/alloc.h"
#include "core/config.h"
#include "harness.h"

#include <stdlib.h>

static char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *b = malloc(1 << 20);
    *n = fread(b, 1, 1 << 20, f);
    fclose(f);
    return b;
}

// Applies a textual replacement to the COCO config and expects failure mentioning `key`.
static void expect_bad(const char *from, const char *to, const char *key) {
    size_t n;
    char *base = read_file("configs/detectron2_R101_C4_coco.json", &n);
    CHECK(base != NULL);
    if (!base) return;
    base[n] = 0;
    char *p = strstr(base, from);
    CHECKF(p != NULL, "pattern %s", from);
    if (!p) {
        free(base);
        return;
    }
    char *out = malloc(n + strlen(to) + 1);
    size_t pre = (size_t)(p - base);
    memcpy(out, base, pre);
    strcpy(out + pre, to);
    strcat(out, p + strlen(from));
    fr_config c;
    fr_err e = {0};
    fr_status s = fr_config_parse(&c, out, strlen(out), &e);
    CHECKF(s != FR_OK, "%s -> %s accepted", from, to);
    CHECKF(strstr(e.msg, key) != NULL, "message '%s' lacks '%s'", e.msg, key);
    free(base);
    free(out);
}

TEST(test_shipped_configs) {
    const char *files[] = {"configs/detectron2_R101_C4_coco.json", "configs/detectron2_R50_C4_voc.json",
                           "configs/pyfrcnn_res101_voc.json"};
    for (int i = 0; i < 3; i++) {
        fr_config c;
        fr_err e = {0};
        CHECKF(fr_config_load(&c, files[i], &e) == FR_OK, "%s: %s", files[i], e.msg);
        fr_config_free(&c);
    }
    fr_config c;
    fr_err e = {0};
    CHECK(fr_config_load(&c, "configs/detectron2_R101_C4_coco.json", &e) == FR_OK);
    CHECK(c.num_classes == 80);
    CHECK(strcmp(c.classes[79], "toothbrush") == 0);
    CHECK(c.depth == 101 && c.stride_in_1x1 && c.res5_stride == 2);
    CHECK(c.num_sizes == 5 && c.num_ratios == 3 && c.sizes[4] == 512);
    CHECK(c.pre_nms_topk == 6000 && c.post_nms_topk == 1000);
    CHECK_NEAR(c.pixel_mean[0], 103.530, 1e-4);
    CHECK_NEAR(c.bbox_clamp, 4.135166556742356, 1e-6);
    CHECK(c.background == FR_BG_LAST && c.input_rgb == 0 && c.exif == 1);
    // round trip
    char *j = fr_config_to_json(&c);
    CHECK(j != NULL);
    fr_config d;
    CHECKF(fr_config_parse(&d, j, strlen(j), &e) == FR_OK, "%s", e.msg);
    CHECK(d.num_classes == 80 && d.post_nms_topk == 1000 && d.rpn_nms_thresh == c.rpn_nms_thresh);
    CHECK(memcmp(d.pixel_mean, c.pixel_mean, sizeof c.pixel_mean) == 0);
    fr_config_free(&d);
    fr_free(j);
    fr_config_free(&c);
    fr_config p;
    CHECK(fr_config_load(&p, "configs/pyfrcnn_res101_voc.json", &e) == FR_OK);
    CHECK(p.family == FR_FAMILY_PYFRCNN && p.objectness == FR_OBJ_SOFTMAX2 && p.roi_op == FR_ROI_POOL);
    CHECK(p.box_plus_one && p.background == FR_BG_FIRST && p.box_includes_background);
    fr_config_free(&p);
}

TEST(test_bad_configs) {
    expect_bad("\"nms_thresh\": 0.7", "\"nms_thresh\": 1.7", "rpn.nms_thresh");
    expect_bad("\"nms_thresh\": 0.7", "\"nms_thresh\": \"0.7\"", "rpn.nms_thresh");
    expect_bad("\"nms_thresh\": 0.7", "\"nms_thresh\": 1e400", "rpn.nms_thresh");
    expect_bad("\"nms_thresh\": 0.7", "\"NMS_thresh\": 0.7", "NMS_thresh");
    expect_bad("\"nms_thresh\": 0.7", "\"nms_thresh\": 0.7, \"nms_thresh\": 0.5", "duplicate");
    expect_bad("\"depth\": 101", "\"depth\": 77", "backbone.depth");
    expect_bad("\"depth\": 101", "\"depth\": 101.5", "backbone.depth");
    expect_bad("\"format\": \"BGR\"", "\"format\": \"XYZ\"", "input.format");
    expect_bad("\"pixel_std\": [", "\"pixel_std\": [0.0, ", "input.pixel_std");
    expect_bad("\"sizes\": [32, 64, 128, 256, 512]", "\"sizes\": []", "anchors.sizes");
    expect_bad("\"classes\": [\"person\"", "\"classes\": [\"bicycle\"", "duplicate class");
    expect_bad("\"box_plus_one\": false", "\"box_plus_one\": 0", "box_plus_one");
    expect_bad("\"box_plus_one\": false", "\"box_plus_one\": false, \"extra\": 1", "extra");
    expect_bad("\"post_nms_topk\": 1000", "\"post_nms_topk\": 5e9", "rpn.post_nms_topk");
    expect_bad("\"roi\": {", "\"roi\": 3, \"x\": {", "x: unknown key");
    expect_bad("\"input\": {", "\"input\": [], \"input_\": {", "unknown key");
    fr_config c;
    fr_err e = {0};
    CHECK(fr_config_parse(&c, "[1,2]", 5, &e) == FR_ERR_FORMAT);
    CHECK(fr_config_parse(&c, "{\"name\": ", 9, &e) == FR_ERR_FORMAT);
    CHECK(fr_config_parse(&c, "{}", 2, &e) != FR_OK);
    CHECK(fr_config_load(&c, "configs/does-not-exist.json", &e) == FR_ERR_IO);
}

TEST(test_config_alloc_failures) {
    size_t n;
    char *base = read_file("configs/detectron2_R101_C4_coco.json", &n);
    fr_alloc_init();
    int failures = 0;
    for (long k = 1; k < 2000; k++) {
        fr_config c;
        fr_err e = {0};
        fr_alloc_fail_at(k);
        fr_status s = fr_config_parse(&c, base, n, &e);
        int fired = fr_alloc_failed();
        fr_alloc_fail_at(0);
        if (!fired) {
            CHECK(s == FR_OK);
            fr_config_free(&c);
            break;
        }
        failures++;
        CHECKF(s != FR_OK, "k=%ld", k);
    }
    CHECK(failures > 80);
    free(base);
}

int main(void) {
    RUN(test_shipped_configs);
    RUN(test_bad_configs);
    RUN(test_config_alloc_failures);
    return harness_done(__FILE__);
}
