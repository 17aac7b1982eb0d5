// request.h - what a client sends to POST /v1/detect, parsed without libmicrohttpd:
// the Content-Type, the body buffer and its cap, multipart/form-data, and the detection
// options (query parameters and the JSON `options` part), all validated strictly.
//
// Errors follow one mapping to HTTP (fr_req_http_status): FR_ERR_FORMAT -> 400 (syntax,
// wrong type, unknown or repeated key), FR_ERR_INVALID -> 422 (a well-formed value out of
// range), FR_ERR_UNSUPPORTED -> 415, FR_ERR_TOO_LARGE -> 413, FR_ERR_NOMEM -> 503,
// anything else -> 500. Messages name the offending key or part.
// Ownership: fr_body owns its bytes; fr_multipart only points into the body it parsed;
// fr_req_opts owns its class mask.
#ifndef FR_SERVER_REQUEST_H
#define FR_SERVER_REQUEST_H

#include "core/status.h"
#include "detector/detector.h"

#include <stddef.h>

#define FR_REQ_MAX_OPTIONS 4096       // bytes of the JSON options (catalogue J10)
#define FR_REQ_MAX_PARTS 16           // multipart parts per request (catalogue M8)
#define FR_REQ_MAX_PART_HEADERS 8192  // bytes of one part's header block (catalogue M8)
#define FR_REQ_MAX_DETECTIONS 10000   // upper bound of max_detections
#define FR_REQ_BOUNDARY_MAX 70        // RFC 2046 section 5.1.1

typedef enum {
    FR_BODY_RAW,       // image/jpeg, image/png, application/octet-stream: the body is the image
    FR_BODY_MULTIPART, // multipart/form-data: parts "image" (required) and "options"
} fr_body_kind;

// Classifies a Content-Type header value (NULL when absent). For multipart the boundary
// (2..70 RFC 2046 characters; quoted or not) is copied into boundary (>= 71 bytes).
// Errors: FR_ERR_UNSUPPORTED (missing or other type), FR_ERR_FORMAT (bad boundary/params).
fr_status fr_req_content_type(const char *ct, fr_body_kind *kind, char *boundary,
                              fr_err *err);

// A growable request body with a hard cap.
typedef struct {
    unsigned char *data; // owned, fr_malloc'd; NULL while empty
    size_t len;          // bytes stored
    size_t cap;          // bytes allocated
    size_t max;          // hard cap on len
} fr_body;

void fr_body_init(fr_body *b, size_t max);
// Allocates room for n bytes in one go (a known Content-Length). FR_ERR_TOO_LARGE if n >
// max, FR_ERR_NOMEM.
fr_status fr_body_reserve(fr_body *b, size_t n, fr_err *err);
// Appends n bytes. FR_ERR_TOO_LARGE once len would pass max (nothing appended), FR_ERR_NOMEM.
fr_status fr_body_append(fr_body *b, const void *p, size_t n, fr_err *err);
void fr_body_free(fr_body *b);

// The parts found in a multipart/form-data body (pointers into the body).
typedef struct {
    const unsigned char *image; // the part named "image"
    size_t image_len;
    const char *options;        // the part named "options" (JSON), NULL when absent
    size_t options_len;
} fr_multipart;

// Parses body as multipart/form-data with the given boundary (RFC 7578). Strict: the
// closing delimiter must be present (M5), at most FR_REQ_MAX_PARTS parts (M8), each
// part's headers at most FR_REQ_MAX_PART_HEADERS bytes, every part named "image" or
// "options" and each at most once (M3), no Content-Transfer-Encoding other than
// 7bit/8bit/binary (M6), an "image" part is required and non-empty (M2).
// Errors: FR_ERR_FORMAT with a message naming the problem ("no image part").
fr_status fr_multipart_parse(const unsigned char *body, size_t len, const char *boundary,
                             fr_multipart *out, fr_err *err);

// Per-request detection options.
typedef struct {
    int has_score_threshold;
    float score_threshold;      // [0, 1]
    int has_max_detections;
    int max_detections;         // [1, FR_REQ_MAX_DETECTIONS]
    unsigned char *class_mask;  // owned, num_classes bytes (1 = keep); NULL = all classes
    int num_classes;
} fr_req_opts;

void fr_req_opts_init(fr_req_opts *o);
void fr_req_opts_free(fr_req_opts *o);

// Applies one URL-decoded query parameter: score_threshold (number), max_detections
// (integer), classes (comma-separated labels of the model's classes). Unknown keys and keys
// given twice (here or in the JSON options) are FR_ERR_FORMAT; non-numbers, NaN/inf and
// non-integers FR_ERR_FORMAT; out of range FR_ERR_INVALID; unknown labels FR_ERR_INVALID.
fr_status fr_req_opts_query(fr_req_opts *o, const char *key, const char *value,
                            char *const *classes, int num_classes, fr_err *err);

// Applies the JSON options object ({"score_threshold": 0.5, "max_detections": 10,
// "classes": ["dog"]}), len bytes, not NUL-terminated, at most FR_REQ_MAX_OPTIONS.
// Strict (catalogue J1-J10): not an object, nesting, unknown keys (case-sensitive), duplicate
// keys, wrong types -> FR_ERR_FORMAT; non-finite numbers (1e400) -> FR_ERR_INVALID as out
// of range; values out of range -> FR_ERR_INVALID.
fr_status fr_req_opts_json(fr_req_opts *o, const char *json, size_t len, char *const *classes,
                           int num_classes, fr_err *err);

// The detector options for these request options (mask borrowed from o).
void fr_req_opts_to_detect(const fr_req_opts *o, fr_detect_opts *d);

// The HTTP status for a failure status (see the mapping at the top).
int fr_req_http_status(fr_status s);

#endif
