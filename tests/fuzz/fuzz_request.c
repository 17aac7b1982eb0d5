// fuzz_request.c - libFuzzer target: the HTTP request path's parsers: Content-Type, multipart
// bodies, query options and the JSON options part. The first byte picks the parser.
#include "core/alloc.h"
#include "server/request.h"

#include <stdint.h>
#include <string.h>

static char *classes[] = {"person", "dog", "dining table", "cat"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fr_alloc_init();
    if (size < 1) return 0;
    unsigned sel = data[0] % 4;
    data++, size--;
    fr_err e;
    char *s = fr_malloc(size + 1);
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = 0;
    if (sel == 0) {
        fr_body_kind k;
        char boundary[FR_REQ_BOUNDARY_MAX + 1];
        fr_req_content_type(s, &k, boundary, &e);
    } else if (sel == 1) {
        // "boundary\n" then the body
        char *nl = memchr(s, '\n', size);
        if (nl && nl - s <= FR_REQ_BOUNDARY_MAX) {
            *nl = 0;
            fr_multipart mp;
            const unsigned char *body = (const unsigned char *)nl + 1;
            if (fr_multipart_parse(body, size - (size_t)(nl + 1 - s), s, &mp, &e) == FR_OK && mp.options) {
                fr_req_opts o;
                fr_req_opts_init(&o);
                fr_req_opts_json(&o, mp.options, mp.options_len, classes, 4, &e);
                fr_req_opts_free(&o);
            }
        }
    } else if (sel == 2) {
        fr_req_opts o;
        fr_req_opts_init(&o);
        char *eq = strchr(s, '=');
        if (eq) {
            *eq = 0;
            fr_req_opts_query(&o, s, eq + 1, classes, 4, &e);
        }
        fr_req_opts_free(&o);
    } else {
        fr_req_opts o;
        fr_req_opts_init(&o);
        fr_req_opts_json(&o, s, size, classes, 4, &e);
        fr_req_opts_free(&o);
    }
    fr_free(s);
    return 0;
}
