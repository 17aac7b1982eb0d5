// test_server_units.c - the server's parsing, metrics and queue layers without HTTP:
// Content-Type, body cap, multipart (catalogue M2-M8), JSON and query options (J1-J11),
// status mapping, Prometheus rendering, the bounded queue, and every allocation failure.
#include "core/alloc.h"
#include "harness.h"
#include "server/metrics.h"
#include "server/queue.h"
#include "server/request.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

static char *k_classes[] = {"cat", "dog", "traffic light"};

// ---------------------------------------------------------------------------------------
// Content-Type

static fr_status ct(const char *s, fr_body_kind *kind, char *b) {
    fr_err e = {0};
    return fr_req_content_type(s, kind, b, &e);
}

TEST(test_content_type) {
    fr_body_kind k;
    char b[FR_REQ_BOUNDARY_MAX + 1];
    CHECK(ct("image/jpeg", &k, b) == FR_OK && k == FR_BODY_RAW);
    CHECK(ct("IMAGE/PNG", &k, b) == FR_OK && k == FR_BODY_RAW);
    CHECK(ct("application/octet-stream; charset=x", &k, b) == FR_OK && k == FR_BODY_RAW);
    CHECK(ct("image/jpg", &k, b) == FR_OK);
    // H4
    CHECK(ct(NULL, &k, b) == FR_ERR_UNSUPPORTED);
    CHECK(ct("", &k, b) == FR_ERR_UNSUPPORTED);
    CHECK(ct("text/plain", &k, b) == FR_ERR_UNSUPPORTED);
    CHECK(ct("image/gif", &k, b) == FR_ERR_UNSUPPORTED);
    CHECK(ct("image/jpegx", &k, b) == FR_ERR_UNSUPPORTED);
    CHECK(ct("application/json", &k, b) == FR_ERR_UNSUPPORTED);
    // multipart and its boundary (M4)
    CHECK(ct("multipart/form-data; boundary=abcDEF123", &k, b) == FR_OK && k == FR_BODY_MULTIPART &&
          !strcmp(b, "abcDEF123"));
    CHECK(ct("multipart/form-data;boundary=\"a b:c\"", &k, b) == FR_OK && !strcmp(b, "a b:c"));
    CHECK(ct("Multipart/Form-Data; charset=utf-8; BOUNDARY=xy", &k, b) == FR_OK &&
          !strcmp(b, "xy"));
    CHECK(ct("multipart/form-data", &k, b) == FR_ERR_FORMAT);
    CHECK(ct("multipart/form-data; boundary=", &k, b) == FR_ERR_FORMAT);
    CHECK(ct("multipart/form-data; boundary=a", &k, b) == FR_ERR_FORMAT);
    CHECK(ct("multipart/form-data; boundary=\"\"", &k, b) == FR_ERR_FORMAT);
    CHECK(ct("multipart/form-data; boundary=\"ab ", &k, b) == FR_ERR_FORMAT);
    CHECK(ct("multipart/form-data; boundary=\"ab \"", &k, b) == FR_ERR_FORMAT);
    CHECK(ct("multipart/form-data; boundary=a;b", &k, b) == FR_ERR_FORMAT);
    CHECK(ct("multipart/form-data; boundary=xx; boundary=yy", &k, b) == FR_ERR_FORMAT);
    CHECK(ct("multipart/form-data; boundary=ab\x01", &k, b) == FR_ERR_FORMAT);
    char long71[128] = "multipart/form-data; boundary=";
    memset(long71 + strlen(long71), 'x', 71);
    CHECK(ct(long71, &k, b) == FR_ERR_FORMAT);
    long71[strlen(long71) - 1] = '\0'; // 70: the longest allowed
    CHECK(ct(long71, &k, b) == FR_OK && strlen(b) == 70);
    CHECK(ct("multipart/form-data; =x", &k, b) == FR_ERR_FORMAT);
    CHECK(ct("multipart/form-data; boundary", &k, b) == FR_ERR_FORMAT);
}

TEST(test_body) {
    fr_body b;
    fr_err e = {0};
    fr_body_init(&b, 10);
    CHECK(fr_body_append(&b, "hello", 5, &e) == FR_OK);
    CHECK(fr_body_append(&b, "world", 5, &e) == FR_OK);
    CHECK(b.len == 10 && !memcmp(b.data, "helloworld", 10));
    CHECK(fr_body_append(&b, "!", 1, &e) == FR_ERR_TOO_LARGE); // H6 / M7
    CHECK(b.len == 10);
    CHECK(fr_body_reserve(&b, 11, &e) == FR_ERR_TOO_LARGE);
    fr_body_free(&b);
    fr_body_init(&b, 1 << 20);
    CHECK(fr_body_reserve(&b, 1000, &e) == FR_OK && b.cap >= 1000);
    char big[3000];
    memset(big, 'a', sizeof big);
    for (int i = 0; i < 300; i++) CHECK(fr_body_append(&b, big, sizeof big, &e) == FR_OK);
    CHECK(b.len == 900000 && b.cap <= (1 << 20));
    CHECK(fr_body_append(&b, big, 3000, &e) == FR_OK);
    for (int i = 0; i < 100 && !e.status; i++) fr_body_append(&b, big, sizeof big, &e);
    CHECK(e.status == FR_ERR_TOO_LARGE);
    CHECK(b.len <= (1 << 20));
    fr_body_free(&b);
}

// ---------------------------------------------------------------------------------------
// multipart

static fr_status mp(const char *body, fr_multipart *m, fr_err *e) {
    return fr_multipart_parse((const unsigned char *)body, strlen(body), "BOUND", m, e);
}

TEST(test_multipart_ok) {
    fr_multipart m;
    fr_err e = {0};
    // M1: image + options, preamble and epilogue, quoted names, filename, part Content-Type
    const char *b = "preamble\r\n--BOUND\r\n"
                    "Content-Disposition: form-data; name=\"image\"; filename=\"a;b.jpg\"\r\n"
                    "Content-Type: image/jpeg\r\n\r\n"
                    "\xff\xd8JPEG--BOUND\r\n-BOUND\r\n--BOUNx\r\n"
                    "\r\n--BOUND\r\n"
                    "content-disposition: form-data; name=options\r\n\r\n"
                    "{\"score_threshold\": 0.3}\r\n--BOUND--\r\nepilogue";
    CHECK(mp(b, &m, &e) == FR_OK);
    CHECKF(m.image_len == 32, "%zu", m.image_len);
    CHECK(m.image && !memcmp(m.image, "\xff\xd8JPEG--BOUND\r\n-BOUND\r\n--BOUNx\r\n", 32));
    CHECK(m.options && m.options_len == 24 && !memcmp(m.options, "{\"score_threshold\": 0.3}", 24));
    // first delimiter at the start, no options, transport padding after a delimiter
    CHECK(mp("--BOUND  \r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nX\r\n--BOUND--",
             &m, &e) == FR_OK);
    CHECK(m.image_len == 1 && m.options == NULL);
    // a delimiter followed by neither "--" nor CRLF is malformed
    CHECK(mp("--BOUND\r\nContent-Disposition: form-data; name=image\r\n\r\nX\r\n--BOUNDx\r\n"
             "\r\n--BOUND--",
             &m, &e) == FR_ERR_FORMAT);
    // 8bit/binary transfer encodings are identity
    CHECK(mp("--BOUND\r\nContent-Disposition: form-data; name=image\r\n"
             "Content-Transfer-Encoding: binary\r\n\r\nXY\r\n--BOUND--",
             &m, &e) == FR_OK);
}

TEST(test_multipart_bad) {
    fr_multipart m;
    fr_err e = {0};
    const char *img = "--BOUND\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nX\r\n";
    char buf[4096];
    // M2: only options
    CHECK(mp("--BOUND\r\nContent-Disposition: form-data; name=\"options\"\r\n\r\n{}\r\n--BOUND--",
             &m, &e) == FR_ERR_FORMAT);
    CHECK(strstr(e.msg, "no image part") != NULL);
    CHECK(mp("--BOUND--", &m, &e) == FR_ERR_FORMAT);
    // M3: two image parts
    snprintf(buf, sizeof buf, "%s%s--BOUND--", img, img);
    CHECK(mp(buf, &m, &e) == FR_ERR_FORMAT);
    CHECK(strstr(e.msg, "more than one image") != NULL);
    // M5: no closing boundary, truncated in a part, in headers, right after a delimiter
    CHECK(mp(img, &m, &e) == FR_ERR_FORMAT);
    CHECK(mp("--BOUND\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nXXXX", &m, &e) ==
          FR_ERR_FORMAT);
    CHECK(mp("--BOUND\r\nContent-Disposition: form-da", &m, &e) == FR_ERR_FORMAT);
    CHECK(mp("--BOUND", &m, &e) == FR_ERR_FORMAT);
    CHECK(mp("--BOUND\r\n", &m, &e) == FR_ERR_FORMAT);
    CHECK(mp("no boundary at all", &m, &e) == FR_ERR_FORMAT);
    CHECK(mp("", &m, &e) == FR_ERR_FORMAT);
    // M6: base64 / quoted-printable transfer encodings
    CHECK(mp("--BOUND\r\nContent-Disposition: form-data; name=\"image\"\r\n"
             "Content-Transfer-Encoding: base64\r\n\r\n/9j/\r\n--BOUND--",
             &m, &e) == FR_ERR_FORMAT);
    CHECK(strstr(e.msg, "base64") != NULL);
    // M8: too many parts, part headers too long
    buf[0] = '\0';
    for (int i = 0; i < FR_REQ_MAX_PARTS + 1; i++)
        strcat(buf, "--BOUND\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nv\r\n");
    strcat(buf, "--BOUND--");
    CHECK(mp(buf, &m, &e) == FR_ERR_FORMAT);
    size_t n = 20000;
    char *big = malloc(n + 200);
    strcpy(big, "--BOUND\r\nContent-Disposition: form-data; name=\"image\"\r\nX-Pad: ");
    size_t l = strlen(big);
    memset(big + l, 'a', n);
    strcpy(big + l + n, "\r\n\r\nX\r\n--BOUND--");
    CHECK(mp(big, &m, &e) == FR_ERR_FORMAT);
    CHECK(strstr(e.msg, "headers longer") != NULL);
    free(big);
    // unknown part, no name, not form-data, no disposition, malformed header, empty image
    CHECK(mp("--BOUND\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nX\r\n--BOUND--",
             &m, &e) == FR_ERR_FORMAT);
    CHECK(mp("--BOUND\r\nContent-Disposition: form-data\r\n\r\nX\r\n--BOUND--", &m, &e) ==
          FR_ERR_FORMAT);
    CHECK(mp("--BOUND\r\nContent-Disposition: attachment; name=image\r\n\r\nX\r\n--BOUND--",
             &m, &e) == FR_ERR_FORMAT);
    CHECK(mp("--BOUND\r\nContent-Type: image/jpeg\r\n\r\nX\r\n--BOUND--", &m, &e) ==
          FR_ERR_FORMAT);
    CHECK(mp("--BOUND\r\nno colon here\r\n\r\nX\r\n--BOUND--", &m, &e) == FR_ERR_FORMAT);
    CHECK(mp("--BOUND\r\n\r\nX\r\n--BOUND--", &m, &e) == FR_ERR_FORMAT);
    CHECK(mp("--BOUND\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\n\r\n--BOUND--",
             &m, &e) == FR_ERR_FORMAT);
    CHECK(strstr(e.msg, "empty image") != NULL);
    CHECK(mp("--BOUND\r\nContent-Disposition: form-data; name=\"image\r\n\r\nX\r\n--BOUND--",
             &m, &e) == FR_ERR_FORMAT);
    CHECK(mp("--BOUND\r\nContent-Disposition: form-data; name=\"image\"; name=\"x\"\r\n\r\nX\r\n"
             "--BOUND--",
             &m, &e) == FR_ERR_FORMAT);
    // NUL bytes inside part headers
    const char nul[] = "--BOUND\r\nContent-Disposition: form-data; name=\"image\"\0x\r\n\r\nX\r\n--BOUND--";
    CHECK(fr_multipart_parse((const unsigned char *)nul, sizeof nul - 1, "BOUND", &m, &e) ==
          FR_ERR_FORMAT);
    // every prefix of a valid body is refused without reading past its end
    const char *ok = "--BOUND\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nXYZ\r\n--BOUND--";
    size_t okn = strlen(ok);
    for (size_t k = 0; k < okn; k++) {
        unsigned char *p = malloc(k ? k : 1); // exact size: ASan sees any overread
        memcpy(p, ok, k);
        CHECKF(fr_multipart_parse(p, k, "BOUND", &m, &e) == FR_ERR_FORMAT, "prefix %zu", k);
        free(p);
    }
    CHECK(fr_multipart_parse((const unsigned char *)ok, okn, "BOUND", &m, &e) == FR_OK);
}

// ---------------------------------------------------------------------------------------
// options

static fr_status js(fr_req_opts *o, const char *s) {
    fr_err e = {0};
    fr_req_opts_free(o);
    fr_req_opts_init(o);
    return fr_req_opts_json(o, s, strlen(s), k_classes, 3, &e);
}

TEST(test_options_json) {
    fr_req_opts o;
    fr_req_opts_init(&o);
    CHECK(js(&o, "{\"score_threshold\": 0.25, \"max_detections\": 7, \"classes\": [\"dog\", "
                 "\"traffic light\"]}") == FR_OK);
    CHECK(o.has_score_threshold && o.score_threshold == 0.25f);
    CHECK(o.has_max_detections && o.max_detections == 7);
    CHECK(o.class_mask && !o.class_mask[0] && o.class_mask[1] && o.class_mask[2]);
    fr_detect_opts d;
    fr_req_opts_to_detect(&o, &d);
    CHECK(d.score_threshold == 0.25f && d.max_detections == 7 && d.class_mask == o.class_mask);
    CHECK(js(&o, "{}") == FR_OK);
    fr_req_opts_to_detect(&o, &d);
    CHECK(d.score_threshold < 0 && d.max_detections == 0 && d.class_mask == NULL);
    CHECK(js(&o, " {\"max_detections\": 1e2} ") == FR_OK && o.max_detections == 100);
    // J1 not JSON / truncated
    CHECK(js(&o, "score_threshold=0.5") == FR_ERR_FORMAT);
    CHECK(js(&o, "{\"score_threshold\": 0.5") == FR_ERR_FORMAT);
    CHECK(js(&o, "") == FR_ERR_FORMAT);
    // J2 NaN / Infinity literals
    CHECK(js(&o, "{\"score_threshold\": NaN}") == FR_ERR_FORMAT);
    CHECK(js(&o, "{\"score_threshold\": Infinity}") == FR_ERR_FORMAT);
    // J3 1e400 parses as inf: out of range (422)
    CHECK(js(&o, "{\"score_threshold\": 1e400}") == FR_ERR_INVALID);
    CHECK(js(&o, "{\"score_threshold\": -1e400}") == FR_ERR_INVALID);
    CHECK(js(&o, "{\"max_detections\": 1e400}") == FR_ERR_INVALID);
    // J4 1e-400 parses as 0: accepted
    CHECK(js(&o, "{\"score_threshold\": 1e-400}") == FR_OK && o.score_threshold == 0.0f);
    // J5 strings are not numbers
    CHECK(js(&o, "{\"score_threshold\": \"0.5\"}") == FR_ERR_FORMAT);
    CHECK(js(&o, "{\"max_detections\": \"5\"}") == FR_ERR_FORMAT);
    CHECK(js(&o, "{\"score_threshold\": true}") == FR_ERR_FORMAT);
    CHECK(js(&o, "{\"score_threshold\": null}") == FR_ERR_FORMAT);
    // J6 ranges; never a cast of an unchecked double
    CHECK(js(&o, "{\"score_threshold\": -0.01}") == FR_ERR_INVALID);
    CHECK(js(&o, "{\"score_threshold\": 1.01}") == FR_ERR_INVALID);
    CHECK(js(&o, "{\"score_threshold\": 0}") == FR_OK);
    CHECK(js(&o, "{\"score_threshold\": 1}") == FR_OK);
    CHECK(js(&o, "{\"max_detections\": 0}") == FR_ERR_INVALID);
    CHECK(js(&o, "{\"max_detections\": -1}") == FR_ERR_INVALID);
    CHECK(js(&o, "{\"max_detections\": 1e9}") == FR_ERR_INVALID);
    CHECK(js(&o, "{\"max_detections\": 5e9}") == FR_ERR_INVALID);
    CHECK(js(&o, "{\"max_detections\": 10001}") == FR_ERR_INVALID);
    CHECK(js(&o, "{\"max_detections\": 10000}") == FR_OK);
    CHECK(js(&o, "{\"max_detections\": 2.5}") == FR_ERR_FORMAT);
    // J7 key case: unknown keys are errors
    CHECK(js(&o, "{\"SCORE_THRESHOLD\": 0.5}") == FR_ERR_FORMAT);
    CHECK(js(&o, "{\"threshold\": 0.5}") == FR_ERR_FORMAT);
    // J8 duplicate keys
    CHECK(js(&o, "{\"score_threshold\": 0.5, \"score_threshold\": 0.6}") == FR_ERR_FORMAT);
    CHECK(js(&o, "{\"classes\": [\"dog\"], \"classes\": [\"cat\"]}") == FR_ERR_FORMAT);
    // J9 2,500-deep nesting (over the size cap) and 1,500-deep (under it: cJSON's limit)
    fr_err e = {0};
    char *deep = malloc(5200);
    for (int depth = 2500; depth >= 1500; depth -= 1000) {
        size_t p = 0;
        memcpy(deep, "{\"a\":", 5);
        p = 5;
        for (int i = 0; i < depth; i++) deep[p++] = '[';
        for (int i = 0; i < depth; i++) deep[p++] = ']';
        deep[p++] = '}';
        fr_req_opts_free(&o);
        fr_req_opts_init(&o);
        CHECKF(fr_req_opts_json(&o, deep, p, k_classes, 3, &e) == FR_ERR_FORMAT, "%d", depth);
    }
    free(deep);
    // J10 top level array / null / number / huge string
    CHECK(js(&o, "[]") == FR_ERR_FORMAT);
    CHECK(js(&o, "null") == FR_ERR_FORMAT);
    CHECK(js(&o, "0.5") == FR_ERR_FORMAT);
    char *huge = malloc(FR_REQ_MAX_OPTIONS + 64);
    memset(huge, 'x', FR_REQ_MAX_OPTIONS + 63);
    memcpy(huge, "{\"a\": \"", 7);
    memcpy(huge + FR_REQ_MAX_OPTIONS + 61, "\"}", 2);
    huge[FR_REQ_MAX_OPTIONS + 63] = '\0';
    CHECK(js(&o, huge) == FR_ERR_FORMAT);
    free(huge);
    // the JSON text is not NUL-terminated: ParseWithLength stops at len
    fr_req_opts_free(&o);
    fr_req_opts_init(&o);
    CHECK(fr_req_opts_json(&o, "{}garbage", 2, k_classes, 3, &e) == FR_OK);
    // classes
    CHECK(js(&o, "{\"classes\": []}") == FR_ERR_INVALID);
    CHECK(js(&o, "{\"classes\": [\"horse\"]}") == FR_ERR_INVALID);
    CHECK(js(&o, "{\"classes\": [\"Dog\"]}") == FR_ERR_INVALID);
    CHECK(js(&o, "{\"classes\": [1]}") == FR_ERR_FORMAT);
    CHECK(js(&o, "{\"classes\": \"dog\"}") == FR_ERR_FORMAT);
    fr_req_opts_free(&o);
}

static fr_status q1(fr_req_opts *o, const char *k, const char *v) {
    fr_err e = {0};
    return fr_req_opts_query(o, k, v, k_classes, 3, &e);
}

TEST(test_options_query) {
    // J11: the same validation for query parameters
    fr_req_opts o;
    fr_req_opts_init(&o);
    CHECK(q1(&o, "score_threshold", "0.4") == FR_OK && o.score_threshold == 0.4f);
    CHECK(q1(&o, "score_threshold", "0.5") == FR_ERR_FORMAT); // twice
    CHECK(q1(&o, "max_detections", "3") == FR_OK && o.max_detections == 3);
    CHECK(q1(&o, "classes", "cat,traffic light") == FR_OK && o.class_mask[0] &&
          !o.class_mask[1] && o.class_mask[2]);
    // a JSON key after the same query key is a repeat
    fr_err e = {0};
    CHECK(fr_req_opts_json(&o, "{\"max_detections\": 4}", 21, k_classes, 3, &e) == FR_ERR_FORMAT);
    fr_req_opts_free(&o);
    const char *bad_fmt[] = {"abc", "", "0x1p-2", "inf", "nan", "NaN", " 0.5", "0.5 ", "+0.5",
                             ".5", "5.", "1e", "--1", "0.5abc", "1,5"};
    for (size_t i = 0; i < sizeof bad_fmt / sizeof *bad_fmt; i++) {
        fr_req_opts_init(&o);
        CHECKF(q1(&o, "score_threshold", bad_fmt[i]) == FR_ERR_FORMAT, "'%s'", bad_fmt[i]);
        fr_req_opts_free(&o);
    }
    const char *bad_range[] = {"2", "-0.5", "1e400", "1.0000001"};
    for (size_t i = 0; i < sizeof bad_range / sizeof *bad_range; i++) {
        fr_req_opts_init(&o);
        CHECKF(q1(&o, "score_threshold", bad_range[i]) == FR_ERR_INVALID, "'%s'", bad_range[i]);
        fr_req_opts_free(&o);
    }
    const char *bad_max[] = {"0", "-1", "1e9", "5000000000", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad_max / sizeof *bad_max; i++) {
        fr_req_opts_init(&o);
        CHECKF(q1(&o, "max_detections", bad_max[i]) == FR_ERR_INVALID, "'%s'", bad_max[i]);
        fr_req_opts_free(&o);
    }
    fr_req_opts_init(&o);
    CHECK(q1(&o, "max_detections", "1.5") == FR_ERR_FORMAT);
    CHECK(q1(&o, "max_detections", NULL) == FR_ERR_FORMAT);
    CHECK(q1(&o, "threshold", "0.5") == FR_ERR_FORMAT);
    CHECK(q1(&o, "Score_Threshold", "0.5") == FR_ERR_FORMAT);
    CHECK(q1(&o, "classes", "") == FR_ERR_FORMAT);
    fr_req_opts_free(&o);
    fr_req_opts_init(&o);
    CHECK(q1(&o, "classes", "dog,,cat") == FR_ERR_FORMAT);
    fr_req_opts_free(&o);
    fr_req_opts_init(&o);
    CHECK(q1(&o, "classes", "dog,horse") == FR_ERR_INVALID);
    fr_req_opts_free(&o);
    fr_req_opts_init(&o);
    CHECK(q1(&o, "classes", "dog,") == FR_ERR_FORMAT);
    fr_req_opts_free(&o);
}

TEST(test_status_map) {
    CHECK(fr_req_http_status(FR_ERR_FORMAT) == 400);
    CHECK(fr_req_http_status(FR_ERR_INVALID) == 422);
    CHECK(fr_req_http_status(FR_ERR_UNSUPPORTED) == 415);
    CHECK(fr_req_http_status(FR_ERR_TOO_LARGE) == 413);
    CHECK(fr_req_http_status(FR_ERR_NOMEM) == 503);
    CHECK(fr_req_http_status(FR_ERR_INTERNAL) == 500);
}

// ---------------------------------------------------------------------------------------
// metrics

TEST(test_metrics) {
    CHECK(fr_route_lookup("/v1/detect") == FR_ROUTE_DETECT);
    CHECK(fr_route_lookup("/") == FR_ROUTE_ROOT);
    CHECK(fr_route_lookup("/v1/detect/") == FR_ROUTE_OTHER);
    CHECK(fr_route_lookup("/HEALTHZ") == FR_ROUTE_OTHER);
    CHECK(fr_route_lookup(NULL) == FR_ROUTE_OTHER);
    fr_metrics *m = fr_metrics_new();
    CHECK(m != NULL);
    if (!m) return;
    fr_metrics_request(m, FR_ROUTE_DETECT, 200, 0.02);
    fr_metrics_request(m, FR_ROUTE_DETECT, 200, 3.0);
    fr_metrics_request(m, FR_ROUTE_DETECT, 503, 0.0001);
    fr_metrics_request(m, FR_ROUTE_OTHER, 404, 0.0);
    fr_metrics_request(m, FR_ROUTE_OTHER, 9999, -1.0); // out of range: code 0
    fr_metrics_aborted(m, FR_ROUTE_DETECT);
    double ms[FR_STAGE_COUNT] = {1, 2, 3, 4, 10};
    fr_metrics_inference(m, ms, 5);
    CHECK(fr_metrics_count(m, FR_ROUTE_DETECT, 200) == 2);
    CHECK(fr_metrics_count(m, FR_ROUTE_DETECT, 503) == 1);
    CHECK(fr_metrics_count(m, FR_ROUTE_OTHER, 0) == 1);
    CHECK(fr_metrics_aborted_count(m, FR_ROUTE_DETECT) == 1);
    fr_metrics_gauges g = {.ready = 1, .workers = 2, .queue_capacity = 8, .queue_depth = 3};
    size_t len = 0;
    char *t = fr_metrics_render(m, &g, &len);
    CHECK(t && strlen(t) == len);
    if (t) {
        CHECK(strstr(t, "frcnn_http_requests_total{route=\"/v1/detect\",code=\"200\"} 2\n"));
        CHECK(strstr(t, "frcnn_http_requests_total{route=\"/v1/detect\",code=\"503\"} 1\n"));
        CHECK(strstr(t, "frcnn_http_requests_total{route=\"other\",code=\"404\"} 1\n"));
        CHECK(strstr(t, "frcnn_http_requests_aborted_total{route=\"/v1/detect\"} 1\n"));
        CHECK(strstr(t, "frcnn_http_request_duration_seconds_bucket{route=\"/v1/detect\",le=\"0.001\"} 1\n"));
        CHECK(strstr(t, "frcnn_http_request_duration_seconds_bucket{route=\"/v1/detect\",le=\"0.025\"} 2\n"));
        CHECK(strstr(t, "frcnn_http_request_duration_seconds_bucket{route=\"/v1/detect\",le=\"+Inf\"} 3\n"));
        CHECK(strstr(t, "frcnn_http_request_duration_seconds_count{route=\"/v1/detect\"} 3\n"));
        CHECK(strstr(t, "frcnn_stage_seconds_sum{stage=\"total\"} 0.010000\n"));
        CHECK(strstr(t, "frcnn_stage_seconds_count{stage=\"rpn\"} 1\n"));
        CHECK(strstr(t, "frcnn_detections_total 5\n"));
        CHECK(strstr(t, "frcnn_queue_depth 3\n"));
        CHECK(strstr(t, "frcnn_workers 2\n"));
        CHECK(strstr(t, "process_resident_memory_bytes "));
        CHECK(strstr(t, "process_open_fds "));
        // every line is a comment or `name{labels} value`
        int bad = 0;
        for (char *l = t; *l;) {
            char *nl = strchr(l, '\n');
            if (!nl) {
                bad++;
                break;
            }
            if (*l != '#' && !memchr(l, ' ', (size_t)(nl - l))) bad++;
            l = nl + 1;
        }
        CHECK(bad == 0);
    }
    fr_free(t);
    fr_metrics_free(m);
}

// ---------------------------------------------------------------------------------------
// queue

typedef struct {
    pthread_mutex_t mu;
    int ran, dropped, inits, frees;
    int fail_init; // index that fails, -1 none
    int sleep_us;
    int order[64], n_order;
} qtest;

static fr_status qt_init(void *user, int index, void **state, fr_err *err) {
    qtest *t = user;
    pthread_mutex_lock(&t->mu);
    t->inits++;
    pthread_mutex_unlock(&t->mu);
    if (index == t->fail_init) return fr_fail(err, FR_ERR_NOMEM, "worker %d failed", index);
    *state = fr_malloc(16);
    return *state ? FR_OK : fr_fail(err, FR_ERR_NOMEM, "oom");
}
static void qt_free(void *user, void *state) {
    qtest *t = user;
    pthread_mutex_lock(&t->mu);
    t->frees++;
    pthread_mutex_unlock(&t->mu);
    fr_free(state);
}
static void qt_run(void *user, void *state, void *job) {
    (void)state;
    qtest *t = user;
    if (t->sleep_us) usleep((useconds_t)t->sleep_us);
    pthread_mutex_lock(&t->mu);
    t->ran++;
    if (t->n_order < 64) t->order[t->n_order++] = (int)(intptr_t)job;
    pthread_mutex_unlock(&t->mu);
}
static void qt_drop(void *user, void *job) {
    (void)job;
    qtest *t = user;
    pthread_mutex_lock(&t->mu);
    t->dropped++;
    pthread_mutex_unlock(&t->mu);
}

TEST(test_queue) {
    qtest t = {.fail_init = -1};
    pthread_mutex_init(&t.mu, NULL);
    fr_queue_fns fns = {&t, qt_init, qt_free, qt_run, qt_drop};
    fr_queue *q = NULL;
    fr_err e = {0};
    CHECK(fr_queue_new(&q, 0, 4, 0, &fns, &e) == FR_ERR_INVALID);
    CHECK(fr_queue_new(&q, 1, 0, 0, &fns, &e) == FR_ERR_INVALID);
    // FIFO with one worker
    CHECK(fr_queue_new(&q, 1, 64, 0, &fns, &e) == FR_OK);
    for (int i = 1; i <= 20; i++) {
        CHECK(fr_queue_reserve(q) == FR_QUEUE_OK);
        fr_queue_submit(q, (void *)(intptr_t)i);
    }
    for (int i = 0; i < 200; i++) {
        pthread_mutex_lock(&t.mu);
        int r = t.ran;
        pthread_mutex_unlock(&t.mu);
        if (r == 20) break;
        usleep(5000);
    }
    int inorder = 1;
    for (int i = 0; i < t.n_order; i++) inorder &= t.order[i] == i + 1;
    CHECK(t.ran == 20 && inorder);
    fr_queue_free(q);
    CHECK(t.inits == 1 && t.frees == 1);

    // admission: capacity 3 with slow jobs -> FULL, close drops waiting, CLOSED afterwards
    memset(&t.order, 0, sizeof t.order);
    t.ran = t.dropped = t.inits = t.frees = t.n_order = 0;
    t.sleep_us = 1000000; // 1 s: far longer than the 10 admissions below, even on a loaded host
    CHECK(fr_queue_new(&q, 2, 3, 256 * 1024, &fns, &e) == FR_OK);
    int ok = 0, full = 0;
    for (int i = 0; i < 10; i++) {
        fr_queue_admit a = fr_queue_reserve(q);
        if (a == FR_QUEUE_OK) {
            fr_queue_submit(q, (void *)(intptr_t)i);
            ok++;
        } else if (a == FR_QUEUE_FULL) {
            full++;
        }
        usleep(2000);
    }
    CHECKF(ok >= 3 && ok <= 5 && ok + full == 10, "ok %d full %d", ok, full);
    int waiting = -1, running = -1;
    fr_queue_stats(q, &waiting, &running);
    CHECK(waiting + running <= 5 && running <= 2);
    CHECK(fr_queue_reserve(q) == FR_QUEUE_FULL || waiting < 3);
    fr_queue_close(q);
    CHECK(fr_queue_reserve(q) == FR_QUEUE_CLOSED);
    fr_queue_free(q);
    CHECKF(t.ran + t.dropped == ok, "ran %d dropped %d ok %d", t.ran, t.dropped, ok);
    CHECK(t.dropped >= 1);
    CHECK(t.inits == 2 && t.frees == 2);

    // a reserved slot submitted after close is dropped, not run
    t.ran = t.dropped = 0;
    t.sleep_us = 0;
    CHECK(fr_queue_new(&q, 1, 2, 0, &fns, &e) == FR_OK);
    CHECK(fr_queue_reserve(q) == FR_QUEUE_OK);
    fr_queue_close(q);
    fr_queue_submit(q, (void *)1);
    fr_queue_free(q);
    CHECK(t.dropped == 1 && t.ran == 0);

    // a failing worker init stops the others and reports the error
    t.inits = t.frees = 0;
    t.fail_init = 2;
    CHECK(fr_queue_new(&q, 4, 2, 0, &fns, &e) == FR_ERR_NOMEM && q == NULL);
    CHECK(strstr(e.msg, "worker 2 failed") != NULL);
    CHECK(t.inits == 4 && t.frees == 3);
    fr_queue_free(NULL);
    pthread_mutex_destroy(&t.mu);
}

// ---------------------------------------------------------------------------------------
// every allocation failure is a clean error (no leak, no crash)

static int run_all_allocating(void) {
    int fails = 0;
    fr_err e = {0};
    fr_req_opts o;
    fr_req_opts_init(&o);
    const char *j = "{\"score_threshold\": 0.3, \"classes\": [\"dog\", \"cat\"], "
                    "\"max_detections\": 5}";
    if (fr_req_opts_json(&o, j, strlen(j), k_classes, 3, &e)) fails++;
    fr_req_opts_free(&o);
    fr_req_opts_init(&o);
    if (fr_req_opts_query(&o, "classes", "dog", k_classes, 3, &e)) fails++;
    fr_req_opts_free(&o);
    fr_body b;
    fr_body_init(&b, 1 << 20);
    char chunk[70000] = {0};
    if (fr_body_append(&b, chunk, sizeof chunk, &e) || fr_body_append(&b, chunk, sizeof chunk, &e))
        fails++;
    fr_body_free(&b);
    fr_metrics *m = fr_metrics_new();
    if (m) {
        fr_metrics_request(m, FR_ROUTE_DETECT, 200, 0.1);
        fr_metrics_gauges g = {0};
        size_t len;
        char *t = fr_metrics_render(m, &g, &len);
        if (!t) fails++;
        fr_free(t);
        fr_metrics_free(m);
    } else {
        fails++;
    }
    qtest t = {.fail_init = -1};
    pthread_mutex_init(&t.mu, NULL);
    fr_queue_fns fns = {&t, qt_init, qt_free, qt_run, qt_drop};
    fr_queue *q = NULL;
    if (fr_queue_new(&q, 2, 2, 0, &fns, &e) == FR_OK) {
        if (fr_queue_reserve(q) == FR_QUEUE_OK) fr_queue_submit(q, (void *)1);
        fr_queue_free(q);
    } else {
        fails++;
    }
    pthread_mutex_destroy(&t.mu);
    return fails;
}

TEST(test_alloc_failures) {
    fr_alloc_fail_at(0);
    CHECK(run_all_allocating() == 0);
    long n = fr_alloc_count();
    CHECK(n > 5);
    int failed_cleanly = 0;
    for (long k = 1; k <= n; k++) {
        fr_alloc_fail_at(k);
        int f = run_all_allocating();
        if (fr_alloc_failed()) failed_cleanly += f > 0;
    }
    fr_alloc_fail_at(0);
    CHECKF(failed_cleanly == n, "%d of %ld injected failures reported", failed_cleanly, n);
}

int main(void) {
    fr_alloc_init();
    RUN(test_content_type);
    RUN(test_body);
    RUN(test_multipart_ok);
    RUN(test_multipart_bad);
    RUN(test_options_json);
    RUN(test_options_query);
    RUN(test_status_map);
    RUN(test_metrics);
    RUN(test_queue);
    RUN(test_alloc_failures);
    return harness_done(__FILE__);
}
