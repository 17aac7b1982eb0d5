// test_eval.c - VOC evaluation units: Python-int parsing, annotation XML (ElementTree
// semantics, hardening), image lists, comp4 lines, numpy primitives, and hand-computed AP
// cases (difficult objects, duplicates, ties, IoU exactly 0.5 with +1 areas, empty
// detections, a class with only difficult objects, the 0.30000000000000004 threshold), plus
// allocation failures at every k.
#include "core/alloc.h"
#include "eval/voc.h"
#include "harness.h"

#include <float.h>
#include <stdlib.h>

#define XML(objs) "<annotation><size><width>100</width><height>80</height></size>" objs "</annotation>"
#define OBJ(name, diff, x1, y1, x2, y2)                                                            \
    "<object><name>" name "</name><difficult>" diff "</difficult><bndbox><xmin>" x1                \
    "</xmin><ymin>" y1 "</ymin><xmax>" x2 "</xmax><ymax>" y2 "</ymax></bndbox></object>"

// voc_eval.py's VOC07 sum when every threshold reaches precision p: 11 x 1/11 is 1.0000000000000002.
static double eleven(double p) {
    double ap = 0.0;
    for (int i = 0; i < 11; i++) ap = ap + p / 11.0;
    return ap;
}

static fr_status parse(fr_voc_annotation *a, const char *xml, fr_err *e) {
    return fr_voc_annotation_parse(a, xml, strlen(xml), NULL, e);
}

TEST(test_parse_int) {
    struct {
        const char *s;
        int ok;
        long v;
    } c[] = {{"12", 1, 12},     {" 12\n\t", 1, 12}, {"+3", 1, 3},     {"-4", 1, -4},
             {"1_000", 1, 1000}, {"007", 1, 7},     {"1000000000", 1, 1000000000},
             {"273.5", 0, 0},   {"", 0, 0},        {"  ", 0, 0},     {"1__0", 0, 0},
             {"_1", 0, 0},      {"1_", 0, 0},      {"abc", 0, 0},    {"1e3", 0, 0},
             {"0x10", 0, 0},    {"1000000001", 0, 0}, {"99999999999999999999", 0, 0},
             {"- 1", 0, 0},     {"+", 0, 0},       {"1 2", 0, 0}};
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        long v = -99;
        int r = fr_voc_parse_int(c[i].s, strlen(c[i].s), &v);
        CHECKF((r == 0) == c[i].ok, "'%s'", c[i].s);
        if (c[i].ok) CHECKF(v == c[i].v, "'%s' -> %ld", c[i].s, v);
    }
}

TEST(test_annotation_basic) {
    fr_voc_annotation a;
    fr_err e = {0};
    const char *x =
        "<?xml version=\"1.0\"?>\n<annotation>\n<folder>VOC2007</folder>"
        "<source><database>db</database><name>source name</name></source>"
        "<owner><name>Fried Camels</name></owner>"
        "<size><width>353</width><height>500</height><depth>3</depth></size>"
        "<object><name>dog</name><pose>Left</pose><truncated>1</truncated><difficult>0</difficult>"
        "<part><name>head</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>3</xmax><ymax>4</ymax>"
        "</bndbox></part>"
        "<bndbox><xmin> 48 </xmin><ymin>240</ymin><xmax>195</xmax><ymax>371</ymax></bndbox>"
        "<bndbox><xmin>0</xmin><ymin>0</ymin><xmax>0</xmax><ymax>0</ymax></bndbox>"
        "<name>second name ignored</name></object>\n"
        "<object><name>person</name><difficult>1</difficult><bndbox><xmin>8</xmin>"
        "<ymin>12</ymin><xmax>352</xmax><ymax>498</ymax><xmin>99</xmin></bndbox></object>"
        "<foo><object><name>nested, not an object</name></object></foo>"
        "</annotation>\n";
    CHECKF(parse(&a, x, &e) == FR_OK, "%s", e.msg);
    CHECK(a.num_objects == 2);
    CHECK(a.has_size && a.width == 353 && a.height == 500 && a.depth == 3);
    if (a.num_objects == 2) {
        CHECK(!strcmp(a.objects[0].name, "dog"));
        CHECK(a.objects[0].difficult == 0 && a.objects[0].truncated == 1);
        CHECK(a.objects[0].box[0] == 48 && a.objects[0].box[1] == 240 &&
              a.objects[0].box[2] == 195 && a.objects[0].box[3] == 371);
        CHECK(!strcmp(a.objects[1].name, "person") && a.objects[1].difficult == 1);
        CHECK(a.objects[1].box[0] == 8); // the first <xmin> wins, as ElementTree's find()
    }
    CHECK(a.missing_difficult == 0);
    fr_voc_annotation_free(&a);
    fr_voc_annotation_free(&a); // idempotent
}

TEST(test_annotation_elementtree_text) {
    fr_voc_annotation a;
    fr_err e = {0};
    // .text stops at the first child; comments are skipped; CDATA and references are text;
    // whitespace is kept (no match for a class then); a namespaced <object> is not 'object'.
    const char *x = XML(OBJ("do<!-- c -->g", "0", "1", "1", "2", "2")
                        OBJ("ca<![CDATA[t]]>", "0", "1", "1", "2", "2")
                        OBJ("a&amp;b&#x41;", "0", "1", "1", "2", "2")
                        OBJ("sheep<b>x</b>tail", "0", "1", "1", "2", "2")
                        OBJ(" cow ", "0", "1", "1", "2", "2")
                        OBJ("", "2", "1", "1", "2", "2")
                        "<n:object xmlns:n=\"urn:x\"><name>ns</name></n:object>"
                        "<object xmlns=\"urn:y\"><name>ns2</name></object>");
    CHECKF(parse(&a, x, &e) == FR_OK, "%s", e.msg);
    CHECK(a.num_objects == 6);
    if (a.num_objects == 6) {
        CHECK(!strcmp(a.objects[0].name, "dog"));
        CHECK(!strcmp(a.objects[1].name, "cat"));
        CHECK(!strcmp(a.objects[2].name, "a&bA"));
        CHECK(!strcmp(a.objects[3].name, "sheep"));
        CHECK(!strcmp(a.objects[4].name, " cow "));
        CHECK(!strcmp(a.objects[5].name, "") && a.objects[5].difficult == 1);
    }
    fr_voc_annotation_free(&a);
    // missing <difficult>/<truncated>/<pose>: defaults, counted; missing <size>: flagged
    x = "<annotation><object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax>"
        "<ymax>2</ymax></bndbox></object></annotation>";
    CHECKF(parse(&a, x, &e) == FR_OK, "%s", e.msg);
    CHECK(a.num_objects == 1 && a.missing_difficult == 1 && !a.has_size);
    if (a.num_objects == 1) CHECK(a.objects[0].difficult == 0);
    fr_voc_annotation_free(&a);
    // UTF-8 BOM is legal XML (ElementTree accepts it too)
    char bom[300];
    snprintf(bom, sizeof bom, "\xef\xbb\xbf%s", XML(OBJ("dog", "0", "1", "1", "2", "2")));
    CHECKF(parse(&a, bom, &e) == FR_OK, "%s", e.msg);
    CHECK(a.num_objects == 1);
    fr_voc_annotation_free(&a);
}

static void expect_bad(const char *x, fr_status want, const char *needle) {
    fr_voc_annotation a;
    fr_err e = {0};
    fr_status s = fr_voc_annotation_parse(&a, x, strlen(x), NULL, &e);
    CHECKF(s == want, "status %d for %.80s", s, x);
    CHECKF(strstr(e.msg, needle) != NULL, "message '%s' lacks '%s'", e.msg, needle);
    CHECK(a.num_objects == 0 && a.objects == NULL); // nothing left to free
}

TEST(test_annotation_errors) {
    expect_bad("<annotation><object><name>dog</name>", FR_ERR_FORMAT, "malformed XML");
    expect_bad("<annotation></annotatio>", FR_ERR_FORMAT, "mismatched tag");
    expect_bad("", FR_ERR_FORMAT, "no element found");
    expect_bad("<annotation><name>caf\xc3\x28</name></annotation>", FR_ERR_FORMAT, "not well-formed");
    expect_bad("\xef\xbb\xbf\xef\xbb\xbf<annotation/>", FR_ERR_FORMAT, "malformed XML");
    expect_bad("<annotation/><annotation/>", FR_ERR_FORMAT, "junk after document element");
    expect_bad("<annotation>&undefined;</annotation>", FR_ERR_FORMAT, "undefined entity");
    // billion laughs / external entities / external DTD: refused, never expanded or fetched
    expect_bad("<!DOCTYPE a [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;\">]>"
               "<annotation>&b;</annotation>",
               FR_ERR_FORMAT, "DOCTYPE not allowed");
    expect_bad("<!DOCTYPE a [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><annotation>&x;</annotation>",
               FR_ERR_FORMAT, "DOCTYPE not allowed");
    expect_bad("<!DOCTYPE annotation SYSTEM \"http://127.0.0.1:9/x.dtd\"><annotation/>",
               FR_ERR_FORMAT, "DOCTYPE not allowed");
    // objects voc_eval.py cannot read
    expect_bad(XML("<object><name>dog</name><difficult>0</difficult></object>"), FR_ERR_FORMAT,
               "without <bndbox>");
    expect_bad(XML("<object><difficult>0</difficult><bndbox><xmin>1</xmin><ymin>1</ymin>"
                   "<xmax>2</xmax><ymax>2</ymax></bndbox></object>"),
               FR_ERR_FORMAT, "without <name>");
    expect_bad(XML("<object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><ymax>2</ymax>"
                   "</bndbox></object>"),
               FR_ERR_FORMAT, "lacks xmin, ymin, xmax or ymax");
    expect_bad(XML(OBJ("dog", "0", "ten", "1", "2", "2")), FR_ERR_FORMAT, "<xmin> 'ten' is not an integer");
    expect_bad(XML(OBJ("dog", "0", "273.5", "1", "300", "2")), FR_ERR_FORMAT, "int()");
    expect_bad(XML(OBJ("dog", "0", "", "1", "2", "2")), FR_ERR_FORMAT, "not an integer");
    expect_bad(XML(OBJ("dog", "yes", "1", "1", "2", "2")), FR_ERR_FORMAT, "<difficult>");
    expect_bad(XML(OBJ("dog", "0", "1", "1", "2", "2e9")), FR_ERR_FORMAT, "<ymax>");
    expect_bad("<annotation><size><width>1.5</width></size></annotation>", FR_ERR_FORMAT, "<width>");
    expect_bad(XML(OBJ("dog", "0", "1", "1", "2", "2")) + 1, FR_ERR_FORMAT, "line 1"); // "annotation>..."
}

TEST(test_annotation_limits) {
    fr_voc_limits lim;
    fr_voc_limits_default(&lim);
    fr_voc_annotation a;
    fr_err e = {0};
    const char *x = XML(OBJ("dog", "0", "1", "1", "2", "2") OBJ("dog", "0", "1", "1", "2", "2")
                            OBJ("dog", "0", "1", "1", "2", "2"));
    lim.max_objects = 2;
    CHECK(fr_voc_annotation_parse(&a, x, strlen(x), &lim, &e) == FR_ERR_TOO_LARGE);
    lim.max_objects = 3;
    CHECK(fr_voc_annotation_parse(&a, x, strlen(x), &lim, &e) == FR_OK);
    fr_voc_annotation_free(&a);
    lim.max_xml_bytes = 50;
    CHECK(fr_voc_annotation_parse(&a, x, strlen(x), &lim, &e) == FR_ERR_TOO_LARGE);
    fr_voc_limits_default(&lim);
    lim.max_name = 4;
    CHECK(fr_voc_annotation_parse(&a, x, strlen(x), &lim, &e) == FR_OK);
    fr_voc_annotation_free(&a);
    lim.max_name = 2;
    CHECK(fr_voc_annotation_parse(&a, x, strlen(x), &lim, &e) == FR_ERR_TOO_LARGE);
    // deep nesting
    fr_voc_limits_default(&lim);
    char *deep = malloc(20000);
    size_t n = 0;
    for (int i = 0; i < 1000; i++) n += (size_t)sprintf(deep + n, "<a>");
    for (int i = 0; i < 1000; i++) n += (size_t)sprintf(deep + n, "</a>");
    CHECK(fr_voc_annotation_parse(&a, deep, n, &lim, &e) == FR_ERR_TOO_LARGE);
    CHECK(strstr(e.msg, "nested") != NULL);
    free(deep);
    // a file path in the message
    CHECK(fr_voc_annotation_load(&a, "tests/data/voc/VOC2007/Annotations/unclosed.xml", NULL, &e) ==
          FR_ERR_FORMAT);
    CHECK(strstr(e.msg, "tests/data/voc/VOC2007/Annotations/unclosed.xml: line") == e.msg);
    CHECK(fr_voc_annotation_load(&a, "tests/data/voc/VOC2007/Annotations/none.xml", NULL, &e) ==
          FR_ERR_IO);
    CHECK(strstr(e.msg, "none.xml") != NULL);
}

TEST(test_imageset) {
    fr_voc_imageset s;
    fr_err e = {0};
    const char *t = "a\r\nb\n\n  c \t\r\nb\rd\r\n\r\na b\n../x\nx/y\n.\n..\ne";
    CHECKF(fr_voc_imageset_parse(&s, t, strlen(t), NULL, &e) == FR_OK, "%s", e.msg);
    const char *want[] = {"a", "b", "c", "d", "a b", "../x", "x/y", ".", "..", "e"};
    CHECK(s.num_ids == 10);
    for (int i = 0; i < s.num_ids && i < 10; i++) CHECKF(!strcmp(s.ids[i], want[i]), "%d: %s", i, s.ids[i]);
    CHECK(s.duplicates == 1 && s.empty_lines == 2);
    for (int i = 0; i < 4 && i < s.num_ids; i++) CHECK(s.bad[i] == NULL);
    for (int i = 4; i < 9 && i < s.num_ids; i++) CHECKF(s.bad[i] != NULL, "%s accepted", s.ids[i]);
    CHECK(s.num_ids < 10 || s.bad[9] == NULL);
    CHECK(fr_voc_idmap_get(s.map, "c", 1) == 2 && fr_voc_idmap_get(s.map, "zz", 2) == -1);
    fr_voc_imageset_free(&s);
    CHECK(fr_voc_imageset_parse(&s, "a\nb\0c\n", 6, NULL, &e) == FR_ERR_FORMAT);
    CHECK(strstr(e.msg, "line 2") != NULL);
    fr_voc_limits lim;
    fr_voc_limits_default(&lim);
    lim.max_images = 2;
    CHECK(fr_voc_imageset_parse(&s, "a\nb\nc\n", 6, &lim, &e) == FR_ERR_TOO_LARGE);
    CHECK(fr_voc_imageset_parse(&s, "", 0, NULL, &e) == FR_OK && s.num_ids == 0);
    fr_voc_imageset_free(&s);
    // a large list exercises the map's growth
    char *big = malloc(100000 * 8);
    size_t n = 0;
    for (int i = 0; i < 100000; i++) n += (size_t)sprintf(big + n, "%06d\n", i % 60000);
    CHECK(fr_voc_imageset_parse(&s, big, n, NULL, &e) == FR_OK);
    CHECK(s.num_ids == 60000 && s.duplicates == 40000);
    CHECK(fr_voc_idmap_get(s.map, "059999", 6) == 59999);
    fr_voc_imageset_free(&s);
    free(big);
}

TEST(test_numpy_primitives) {
    // np.argsort(np.full(17, .5)) and np.argsort(-[.5]*20 + [.9]), from numpy 1.24
    double v[21];
    size_t idx[21];
    for (int i = 0; i < 17; i++) v[i] = 0.5;
    fr_voc_argsort(v, 17, idx);
    size_t w17[] = {0, 14, 13, 12, 11, 10, 9, 15, 8, 6, 5, 4, 3, 2, 1, 7, 16};
    for (int i = 0; i < 17; i++) CHECKF(idx[i] == w17[i], "17 ties: position %d", i);
    for (int i = 0; i < 20; i++) v[i] = -0.5;
    v[20] = -0.9;
    fr_voc_argsort(v, 21, idx);
    size_t w21[] = {20, 18, 17, 16, 15, 14, 13, 12, 11, 19, 0, 8, 7, 6, 5, 4, 3, 2, 1, 9, 10};
    for (int i = 0; i < 21; i++) CHECKF(idx[i] == w21[i], "21: position %d", i);
    // up to 16 equal values the insertion sort keeps file order
    for (int i = 0; i < 16; i++) v[i] = 1.0;
    fr_voc_argsort(v, 16, idx);
    for (int i = 0; i < 16; i++) CHECK(idx[i] == (size_t)i);
    // NaN sorts last
    double nv[] = {NAN, 1.0, -1.0};
    fr_voc_argsort(nv, 3, idx);
    CHECK(idx[0] == 2 && idx[1] == 1 && idx[2] == 0);
    fr_voc_argsort(nv, 0, idx);
    // thresholds: t[3] = 3 * 0.1 = 0.30000000000000004 > 0.3
    CHECK(fr_voc_threshold07(0) == 0.0 && fr_voc_threshold07(10) == 1.0);
    CHECK(fr_voc_threshold07(3) == 0.30000000000000004 && fr_voc_threshold07(3) > 0.3);
    CHECK(fr_voc_threshold07(7) == 0.7000000000000001);
    // pairwise sum: differs from a left-to-right sum
    double a[9] = {1e16, 1, 1, 1, 1, 1, 1, 1, -1e16};
    double seq = 0;
    for (int i = 0; i < 9; i++) seq += a[i];
    CHECK(seq == 0.0);
    CHECK(fr_voc_sum(a, 9) == ((1e16 + 1) + (1 + 1)) + ((1 + 1) + (1 + 1)) - 1e16);
    CHECK(isnan(fr_voc_mean(a, 0)) && fr_voc_mean(a + 1, 2) == 1.0);
}

// Scores one class over images with the given GT; returns the result (caller frees).
static void score(int nimg, const int *start, const fr_voc_gt *gt, const fr_voc_det *d, size_t nd,
                  int iou_ge, int stable, fr_voc_class_result *r) {
    fr_voc_score_opts o;
    fr_voc_score_opts_default(&o);
    o.iou_ge = iou_ge;
    o.stable_ties = stable;
    fr_err e = {0};
    CHECKF(fr_voc_score_class(nimg, start, gt, d, nd, &o, r, &e) == FR_OK, "%s", e.msg);
}

TEST(test_hand_cases) {
    fr_voc_class_result r;
    int one[] = {0, 1};
    fr_voc_gt g1 = {{10, 10, 50, 40}, 0};
    // a single true positive
    fr_voc_det tp = {0, 0.9, {10, 10, 50, 40}};
    score(1, one, &g1, &tp, 1, 0, 0, &r);
    CHECK(r.ap07 == eleven(1.0) && r.ap07 == 1.0000000000000002 && r.ap10 == 1.0);
    CHECK(r.tp == 1 && r.fp == 0 && r.npos == 1);
    fr_voc_class_result_free(&r);
    // a duplicate detection is a false positive; AP stays 1 (envelope)
    fr_voc_det dup[] = {{0, 0.8, {10, 10, 50, 40}}, {0, 0.9, {11, 10, 50, 40}}};
    score(1, one, &g1, dup, 2, 0, 0, &r);
    CHECK(r.tp == 1 && r.fp == 1 && r.ap07 == eleven(1.0) && r.ap10 == 1.0);
    CHECK(r.prec[1] == 0.5 && r.rec[1] == 1.0);
    fr_voc_class_result_free(&r);
    // ties (2 detections: file order): FP first -> AP 0.5; TP first -> 1
    fr_voc_det tie[] = {{0, 0.7, {60, 60, 70, 70}}, {0, 0.7, {10, 10, 50, 40}}};
    score(1, one, &g1, tie, 2, 0, 0, &r);
    CHECK(r.ap10 == 0.5 && r.ap07 == eleven(0.5));
    fr_voc_class_result_free(&r);
    score(1, one, &g1, tie + 1, 1, 0, 0, &r);
    CHECK(r.ap10 == 1.0);
    fr_voc_class_result_free(&r);
    // IoU exactly 0.5 with +1 areas: GT 10x10 (1..10), detection 10x5 -> 50/100
    fr_voc_gt g2 = {{1, 1, 10, 10}, 0};
    fr_voc_det half = {0, 0.9, {1, 1, 10, 5}};
    score(1, one, &g2, &half, 1, 0, 0, &r);
    CHECK(r.tp == 0 && r.fp == 1 && r.ap07 == 0.0 && r.ap10 == 0.0); // voc_eval.py: > 0.5
    fr_voc_class_result_free(&r);
    score(1, one, &g2, &half, 1, 1, 0, &r);
    CHECK(r.tp == 1 && r.fp == 0 && r.ap07 == eleven(1.0) && r.ap10 == 1.0); // devkit: >= 0.5
    fr_voc_class_result_free(&r);
    // no detections: AP 0 for both metrics
    score(1, one, &g1, NULL, 0, 0, 0, &r);
    CHECK(r.ap07 == 0.0 && r.ap10 == 0.0 && r.npos == 1 && r.ndet == 0);
    fr_voc_class_result_free(&r);
    // only difficult objects: npos 0 -> rec NaN -> AP07 0, AP10 NaN; matches are neither TP nor FP
    fr_voc_gt gd = {{10, 10, 50, 40}, 1};
    score(1, one, &gd, &tp, 1, 0, 0, &r);
    CHECK(r.npos == 0 && r.tp == 0 && r.fp == 0 && isnan(r.rec[0]) && r.prec[0] == 0.0);
    CHECK(r.ap07 == 0.0 && isnan(r.ap10));
    fr_voc_class_result_free(&r);
    score(1, one, &gd, NULL, 0, 0, 0, &r);
    CHECK(r.ap07 == 0.0 && r.ap10 == 0.0);
    fr_voc_class_result_free(&r);
    // a difficult match ranked first: prec = 0 / eps = 0, then the TP
    int two[] = {0, 2};
    fr_voc_gt gg[] = {{{10, 10, 50, 40}, 1}, {{60, 60, 90, 90}, 0}};
    fr_voc_det dd[] = {{0, 0.9, {10, 10, 50, 40}}, {0, 0.8, {60, 60, 90, 90}}};
    score(1, two, gg, dd, 2, 0, 0, &r);
    CHECK(r.rec[0] == 0.0 && r.prec[0] == 0.0 && r.rec[1] == 1.0 && r.prec[1] == 1.0);
    CHECK(r.ap07 == eleven(1.0) && r.ap10 == 1.0 && r.tp == 1 && r.fp == 0);
    fr_voc_class_result_free(&r);
    // identical GT boxes: argmax takes the first every time, so the second match is an FP
    fr_voc_gt same[] = {{{10, 10, 50, 40}, 0}, {{10, 10, 50, 40}, 0}};
    fr_voc_det sd[] = {{0, 0.9, {10, 10, 50, 40}}, {0, 0.8, {10, 10, 50, 40}}};
    score(1, two, same, sd, 2, 0, 0, &r);
    CHECK(r.tp == 1 && r.fp == 1 && r.npos == 2);
    fr_voc_class_result_free(&r);
    // degenerate boxes: 0/0 overlap is NaN -> not a match
    fr_voc_gt gz = {{5, 5, 4, 4}, 0};
    fr_voc_det dz = {0, 0.9, {5, 5, 4, 4}};
    score(1, one, &gz, &dz, 1, 0, 0, &r);
    CHECK(r.fp == 1 && r.tp == 0);
    fr_voc_class_result_free(&r);
    // detection in an image without objects of the class: FP
    int img2[] = {0, 1, 1};
    fr_voc_det other = {1, 0.9, {10, 10, 50, 40}};
    score(2, img2, &g1, &other, 1, 0, 0, &r);
    CHECK(r.fp == 1 && r.ap10 == 0.0);
    fr_voc_class_result_free(&r);
    fr_voc_det bad = {2, 0.9, {0, 0, 1, 1}};
    fr_err e = {0};
    CHECK(fr_voc_score_class(2, img2, &g1, &bad, 1, NULL, &r, &e) == FR_ERR_INVALID);
}

TEST(test_recall_threshold_detail) {
    // npos 10, three TPs then nothing: rec = .1 .2 .3 (3/10 = 0.3 < t[3] = 0.30000000000000004)
    int start[11];
    fr_voc_gt g[10];
    fr_voc_det d[3];
    for (int i = 0; i <= 10; i++) start[i] = i;
    for (int i = 0; i < 10; i++) g[i] = (fr_voc_gt){{1, 1, 10, 10}, 0};
    for (int i = 0; i < 3; i++) d[i] = (fr_voc_det){i, 0.9 - 0.1 * i, {1, 1, 10, 10}};
    fr_voc_class_result r;
    score(10, start, g, d, 3, 0, 0, &r);
    CHECK(r.rec[2] == 0.3);
    CHECK(r.ap07 == ((0.0 + 1.0 / 11.0) + 1.0 / 11.0) + 1.0 / 11.0); // t = 0, 0.1, 0.2 only
    CHECK(r.ap10 == ((0.1 - 0.0) * 1.0 + (0.2 - 0.1) * 1.0) + (0.3 - 0.2) * 1.0);
    fr_voc_class_result_free(&r);
}

TEST(test_ties_unstable_vs_stable) {
    // 20 equal-score detections: FPs at file positions 0..9, TPs at 10..19. numpy's order
    // (argsort of 20 equal keys) interleaves them; the stable order ranks all FPs first.
    int start[21];
    fr_voc_gt g[20];
    fr_voc_det d[20];
    for (int i = 0; i <= 20; i++) start[i] = i;
    for (int i = 0; i < 20; i++) {
        g[i] = (fr_voc_gt){{1, 1, 10, 10}, 0};
        d[i] = (fr_voc_det){i, 0.5, {1, 1, 10, 10}};
        if (i < 10) d[i].box[0] = 50, d[i].box[2] = 60;
    }
    double key[20];
    size_t idx[20];
    for (int i = 0; i < 20; i++) key[i] = -0.5;
    fr_voc_argsort(key, 20, idx);
    fr_voc_class_result a, b;
    score(20, start, g, d, 20, 0, 0, &a);
    score(20, start, g, d, 20, 0, 1, &b);
    // rebuild the numpy-order AP by hand from idx
    double tp = 0, fp = 0, rec[20], prec[20];
    for (int k = 0; k < 20; k++) {
        if (idx[k] >= 10) tp += 1;
        else fp += 1;
        rec[k] = tp / 20.0;
        prec[k] = tp / (tp + fp);
    }
    double ap10;
    fr_err e = {0};
    CHECK(fr_voc_ap10(rec, prec, 20, &ap10, &e) == FR_OK);
    CHECK(a.ap10 == ap10 && a.ap07 == fr_voc_ap07(rec, prec, 20));
    CHECK(b.rec[9] == 0.0 && b.rec[10] == 0.05); // stable: the 10 FPs come first
    CHECK(a.ap10 != b.ap10);
    fr_voc_class_result_free(&a);
    fr_voc_class_result_free(&b);
}

TEST(test_comp4_format) {
    char buf[200];
    float box[4] = {0.0f, 9.5f, 10.25f, 20.75f};
    fr_voc_comp4_format(buf, sizeof buf, "000001", 0.98765f, box);
    CHECKF(!strcmp(buf, "000001 0.988 1.0 10.5 10.2 20.8\n"), "%s", buf); // round-half-even
    float big[4] = {16777216.0f, 0.25f, 16777300.0f, 3.0f};
    fr_voc_comp4_format(buf, sizeof buf, "x", 0.05f, big);
    // float32: 2^24 + 1 rounds back to 2^24 (numpy float32 xmin += 1); score 0.05f prints 0.050
    CHECKF(!strcmp(buf, "x 0.050 16777216.0 1.2 16777300.0 3.0\n"), "%s", buf);
    char p[64];
    CHECK(fr_voc_comp4_path(p, sizeof p, "out", "test", "dog") == 0);
    CHECK(!strcmp(p, "out/comp4_det_test_dog.txt"));
    CHECK(fr_voc_comp4_path(p, 8, "out", "test", "dog") == -1);
    CHECK(!strcmp(fr_voc_class_alias("airplane"), "aeroplane"));
    CHECK(!strcmp(fr_voc_class_alias("dining table"), "diningtable"));
    CHECK(!strcmp(fr_voc_class_alias("potted plant"), "pottedplant"));
    CHECK(!strcmp(fr_voc_class_alias("tv"), "tvmonitor"));
    CHECK(!strcmp(fr_voc_class_alias("couch"), "sofa"));
    CHECK(!strcmp(fr_voc_class_alias("motorcycle"), "motorbike"));
    CHECK(!strcmp(fr_voc_class_alias("dog"), "dog"));
}

// Loads the hand-made dataset of tests/data/voc with the given list.
static int load_ds(fr_voc_dataset *ds, const char *set, const char *classes) {
    fr_err e = {0};
    const char *cls[2] = {"dog", "person"};
    int st = fr_voc_dataset_load(ds, "tests/data/voc/VOC2007", set, classes ? cls : NULL,
                                 classes ? 2 : 0, NULL, &e);
    CHECKF(st == FR_OK, "%s", e.msg);
    return st;
}

TEST(test_comp4_read) {
    fr_voc_dataset ds;
    if (load_ds(&ds, "good", "x")) return;
    char path[] = "build/tmp_test_eval_comp4.txt";
    FILE *f = fopen(path, "wb");
    fputs("good1 0.9 10 10 50 40\r\n"   // CRLF
          "\n   \t\n"                   // blank lines
          "good2\t0.5  1 1\t100 80\n"   // tabs and double spaces
          "good1 0.9 10 10 50\n"        // 5 fields
          "good1 0.9 10 10 50 40 7\n"   // 7 fields
          "good1 abc 10 10 50 40\n"     // not a number
          "good1 nan 10 10 50 40\n"     // non-finite
          "good1 0.5 inf 10 50 40\n"    //
          "good1 0.5 1_0 10 50 40\n"    // underscore
          "good1 0.5 0x1p3 10 50 40\n"  // hex
          "nobody 0.5 1 1 2 2\n"        // unknown id
          "bom 1e-3 .5 5. +1 -1e2",     // exponents, no final newline
          f);
    fclose(f);
    fr_voc_det *d;
    size_t n;
    fr_voc_comp4_report rep;
    fr_err e = {0};
    CHECKF(fr_voc_comp4_read(path, &ds, NULL, &d, &n, &rep, &e) == FR_OK, "%s", e.msg);
    CHECK(n == 3 && rep.lines == 11 && rep.bad_lines == 7 && rep.unknown_ids == 1 &&
          rep.blank_lines == 2);
    CHECKF(strstr(rep.first_error, "tmp_test_eval_comp4.txt:5: expected") != NULL, "%s",
           rep.first_error);
    if (n == 3) {
        CHECK(d[0].image == 0 && d[0].score == 0.9 && d[0].box[2] == 50);
        CHECK(d[1].image == 1 && d[1].box[3] == 80);
        CHECK(d[2].score == 1e-3 && d[2].box[0] == 0.5 && d[2].box[1] == 5 && d[2].box[3] == -100);
    }
    fr_free(d);
    // lines of failed images are skipped without counting as errors
    fr_err e2 = {0};
    fr_voc_dataset_fail(&ds, 0, "x", &e2);
    CHECK(fr_voc_comp4_read(path, &ds, NULL, &d, &n, &rep, &e) == FR_OK);
    CHECK(n == 2 && rep.failed_ids == 1);
    fr_free(d);
    fr_voc_limits lim;
    fr_voc_limits_default(&lim);
    lim.max_line = 10;
    CHECK(fr_voc_comp4_read(path, &ds, &lim, &d, &n, &rep, &e) == FR_ERR_TOO_LARGE);
    fr_voc_limits_default(&lim);
    lim.max_dets = 1;
    CHECK(fr_voc_comp4_read(path, &ds, &lim, &d, &n, &rep, &e) == FR_ERR_TOO_LARGE);
    CHECK(fr_voc_comp4_read("build/none/none.txt", &ds, NULL, &d, &n, &rep, &e) == FR_ERR_IO);
    remove(path);
    fr_voc_dataset_free(&ds);
}

// Runs fn until it succeeds with no injected failure; every injected failure must give
// FR_ERR_NOMEM. Returns the number of allocation points seen.
#define ALLOC_LOOP(call)                                                                           \
    do {                                                                                           \
        long k;                                                                                    \
        for (k = 1; k < 100000; k++) {                                                             \
            fr_alloc_fail_at(k);                                                                   \
            fr_status s_ = (call);                                                                 \
            int fired_ = fr_alloc_failed();                                                        \
            fr_alloc_fail_at(0);                                                                   \
            if (!fired_) {                                                                         \
                CHECKF(s_ == FR_OK, "k=%ld status %d", k, s_);                                     \
                break;                                                                             \
            }                                                                                      \
            CHECKF(s_ == FR_ERR_NOMEM, "k=%ld: status %d", k, s_);                                 \
            if (s_ == FR_OK) break;                                                                \
        }                                                                                          \
        CHECK(k > 1);                                                                              \
    } while (0)

static fr_status alloc_annotation(void) {
    fr_voc_annotation a;
    fr_err e = {0};
    const char *x = XML(OBJ("dog", "0", "1", "1", "2", "2") OBJ("cat", "1", "1", "1", "2", "2")
                            OBJ("cow", "0", "1", "1", "2", "2"));
    fr_status s = fr_voc_annotation_parse(&a, x, strlen(x), NULL, &e);
    fr_voc_annotation_free(&a);
    return s;
}

static fr_status alloc_imageset(void) {
    fr_voc_imageset s;
    fr_err e = {0};
    char t[4000];
    size_t n = 0;
    for (int i = 0; i < 300; i++) n += (size_t)sprintf(t + n, "%d\n", i % 250);
    fr_status st = fr_voc_imageset_parse(&s, t, n, NULL, &e);
    fr_voc_imageset_free(&s);
    return st;
}

static fr_status alloc_dataset_eval(void) {
    fr_voc_dataset ds;
    fr_err e = {0};
    const char *cls[2] = {"dog", "person"};
    fr_status st = fr_voc_dataset_load(&ds, "tests/data/voc/VOC2007", "test", cls, 2, NULL, &e);
    if (st != FR_OK) return st;
    fr_voc_eval_result r;
    fr_voc_score_opts o;
    fr_voc_score_opts_default(&o);
    o.stable_ties = 1;
    st = fr_voc_evaluate(&ds, "tests/data/voc/results", &o, NULL, &r, &e);
    fr_voc_eval_result_free(&r);
    fr_voc_dataset_free(&ds);
    return st;
}

TEST(test_alloc_failures) {
    ALLOC_LOOP(alloc_annotation());
    ALLOC_LOOP(alloc_imageset());
    ALLOC_LOOP(alloc_dataset_eval());
}

int main(void) {
    RUN(test_parse_int);
    RUN(test_annotation_basic);
    RUN(test_annotation_elementtree_text);
    RUN(test_annotation_errors);
    RUN(test_annotation_limits);
    RUN(test_imageset);
    RUN(test_numpy_primitives);
    RUN(test_hand_cases);
    RUN(test_recall_threshold_detail);
    RUN(test_ties_unstable_vs_stable);
    RUN(test_comp4_format);
    RUN(test_comp4_read);
    RUN(test_alloc_failures);
    return harness_done(__FILE__);
}
