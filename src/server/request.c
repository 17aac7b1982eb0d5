// request.c - Content-Type, body buffer, multipart/form-data and options parsing for
// POST /v1/detect (see request.h). Everything here reads untrusted bytes: every length is
// checked before use and every failure is a status plus a message, never an assert.
#include "request.h"

#include "core/alloc.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

// ---------------------------------------------------------------------------------------
// Content-Type

static const char *skip_ows(const char *p) {
    while (*p == ' ' || *p == '\t') p++;
    return p;
}

// RFC 2046 bchars (space allowed except last).
static int is_bchar(unsigned char c) {
    return isalnum(c) || strchr("'()+_,-./:=? ", c) != NULL;
}

// RFC 7230 tchar, for parameter names and unquoted values.
static int is_tchar(unsigned char c) {
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

// Compares the media type at p (up to ';' or end, trailing spaces ignored) with want.
static int media_is(const char *p, size_t n, const char *want) {
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t')) n--;
    return strlen(want) == n && strncasecmp(p, want, n) == 0;
}

fr_status fr_req_content_type(const char *ct, fr_body_kind *kind, char *boundary,
                              fr_err *err) {
    boundary[0] = '\0';
    if (!ct || !*skip_ows(ct))
        return fr_fail(err, FR_ERR_UNSUPPORTED,
                       "missing Content-Type (use image/jpeg, image/png, "
                       "application/octet-stream or multipart/form-data)");
    const char *p = skip_ows(ct);
    const char *semi = strchr(p, ';');
    size_t n = semi ? (size_t)(semi - p) : strlen(p);
    if (media_is(p, n, "image/jpeg") || media_is(p, n, "image/jpg") ||
        media_is(p, n, "image/png") || media_is(p, n, "application/octet-stream")) {
        *kind = FR_BODY_RAW;
        return FR_OK; // parameters of raw types are ignored
    }
    if (!media_is(p, n, "multipart/form-data"))
        return fr_fail(err, FR_ERR_UNSUPPORTED,
                       "unsupported Content-Type '%.60s' (use image/jpeg, image/png, "
                       "application/octet-stream or multipart/form-data)",
                       ct);
    *kind = FR_BODY_MULTIPART;
    // parameters: ; name=token | ; name="quoted"
    int have = 0;
    p = semi;
    while (p && *p == ';') {
        p = skip_ows(p + 1);
        const char *name = p;
        while (is_tchar((unsigned char)*p)) p++;
        size_t name_len = (size_t)(p - name);
        if (!name_len || *p != '=')
            return fr_fail(err, FR_ERR_FORMAT, "malformed Content-Type parameter");
        p++;
        char val[FR_REQ_BOUNDARY_MAX + 2];
        size_t vlen = 0;
        int too_long = 0;
        if (*p == '"') {
            p++;
            while (*p && *p != '"') {
                if (*p == '\\' && p[1]) p++;
                if (vlen < sizeof val - 1) val[vlen++] = *p;
                else too_long = 1;
                p++;
            }
            if (*p != '"')
                return fr_fail(err, FR_ERR_FORMAT, "unterminated quoted Content-Type parameter");
            p++;
        } else {
            while (is_tchar((unsigned char)*p)) {
                if (vlen < sizeof val - 1) val[vlen++] = *p;
                else too_long = 1;
                p++;
            }
        }
        val[vlen] = '\0';
        p = skip_ows(p);
        if (*p && *p != ';')
            return fr_fail(err, FR_ERR_FORMAT, "malformed Content-Type parameter");
        if (name_len == 8 && strncasecmp(name, "boundary", 8) == 0) {
            if (have) return fr_fail(err, FR_ERR_FORMAT, "multipart boundary given twice");
            have = 1;
            // 1-char boundaries are legal in RFC 2046 but refused here (catalogue M4).
            if (too_long || vlen < 2 || vlen > FR_REQ_BOUNDARY_MAX)
                return fr_fail(err, FR_ERR_FORMAT,
                               "multipart boundary must be 2 to 70 characters");
            for (size_t i = 0; i < vlen; i++)
                if (!is_bchar((unsigned char)val[i]))
                    return fr_fail(err, FR_ERR_FORMAT,
                                   "multipart boundary has an invalid character");
            if (val[vlen - 1] == ' ')
                return fr_fail(err, FR_ERR_FORMAT, "multipart boundary ends with a space");
            memcpy(boundary, val, vlen + 1);
        }
    }
    if (!have) return fr_fail(err, FR_ERR_FORMAT, "multipart/form-data without a boundary");
    return FR_OK;
}

// ---------------------------------------------------------------------------------------
// Body buffer

void fr_body_init(fr_body *b, size_t max) {
    memset(b, 0, sizeof *b);
    b->max = max;
}

static fr_status body_grow(fr_body *b, size_t need, fr_err *err) {
    if (need <= b->cap) return FR_OK;
    size_t cap = b->cap ? b->cap : 64 * 1024;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
    if (cap > b->max) cap = b->max;
    if (cap < need) cap = need;
    unsigned char *d = fr_realloc(b->data, cap);
    if (!d) return fr_fail(err, FR_ERR_NOMEM, "out of memory for a %zu-byte body", need);
    b->data = d;
    b->cap = cap;
    return FR_OK;
}

fr_status fr_body_reserve(fr_body *b, size_t n, fr_err *err) {
    if (n > b->max)
        return fr_fail(err, FR_ERR_TOO_LARGE, "body of %zu bytes is over the limit of %zu", n,
                       b->max);
    return body_grow(b, n, err);
}

fr_status fr_body_append(fr_body *b, const void *p, size_t n, fr_err *err) {
    if (n > b->max - b->len)
        return fr_fail(err, FR_ERR_TOO_LARGE, "body is over the limit of %zu bytes", b->max);
    if (!n) return FR_OK;
    fr_status s = body_grow(b, b->len + n, err);
    if (s) return s;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return FR_OK;
}

void fr_body_free(fr_body *b) {
    fr_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

// ---------------------------------------------------------------------------------------
// multipart/form-data

static const unsigned char *find(const unsigned char *hay, size_t n, const char *needle,
                                 size_t m) {
    if (m == 0 || n < m) return NULL;
    return memmem(hay, n, needle, m);
}

// Reads the value of parameter `want` (e.g. "name") from a Content-Disposition value
// p[0..n). Returns 1 and copies it into out (NUL-terminated, cut to cap-1), 0 when absent,
// -1 when malformed.
static int disposition_param(const char *p, size_t n, const char *want, char *out,
                             size_t cap) {
    const char *end = p + n;
    // the disposition type
    while (p < end && *p != ';') p++;
    int found = 0;
    while (p < end && *p == ';') {
        p++;
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        const char *name = p;
        while (p < end && is_tchar((unsigned char)*p)) p++;
        size_t name_len = (size_t)(p - name);
        if (!name_len || p >= end || *p != '=') return -1;
        p++;
        char val[256];
        size_t vlen = 0;
        if (p < end && *p == '"') {
            p++;
            while (p < end && *p != '"') {
                if (*p == '\\' && p + 1 < end) p++;
                if (vlen < sizeof val - 1) val[vlen++] = *p;
                p++;
            }
            if (p >= end) return -1;
            p++;
        } else {
            while (p < end && *p != ';' && *p != ' ' && *p != '\t') {
                if (vlen < sizeof val - 1) val[vlen++] = *p;
                p++;
            }
        }
        val[vlen] = '\0';
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        if (p < end && *p != ';') return -1;
        if (strlen(want) == name_len && strncasecmp(name, want, name_len) == 0) {
            if (found) return -1; // the same parameter twice
            found = 1;
            size_t k = vlen < cap - 1 ? vlen : cap - 1;
            memcpy(out, val, k);
            out[k] = '\0';
        }
    }
    if (p < end) return -1;
    return found;
}

// Parses one part's header block h[0..n) (lines separated by CRLF, no final blank line).
// Fills name; errors for a missing/invalid Content-Disposition or a transfer encoding.
static fr_status part_headers(const char *h, size_t n, char *name, size_t name_cap,
                              int index, fr_err *err) {
    int have_disp = 0;
    const char *p = h, *end = h + n;
    while (p < end) {
        const char *eol = (const char *)find((const unsigned char *)p, (size_t)(end - p),
                                             "\r\n", 2);
        const char *le = eol ? eol : end;
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (!colon || colon == p)
            return fr_fail(err, FR_ERR_FORMAT, "multipart part %d: malformed header line",
                           index);
        size_t klen = (size_t)(colon - p);
        const char *v = colon + 1;
        while (v < le && (*v == ' ' || *v == '\t')) v++;
        size_t vlen = (size_t)(le - v);
        while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t')) vlen--;
        if (memchr(v, '\0', vlen))
            return fr_fail(err, FR_ERR_FORMAT, "multipart part %d: NUL in a header", index);
        if (klen == 19 && strncasecmp(p, "Content-Disposition", 19) == 0) {
            if (have_disp)
                return fr_fail(err, FR_ERR_FORMAT,
                               "multipart part %d: Content-Disposition given twice", index);
            have_disp = 1;
            if (vlen < 9 || strncasecmp(v, "form-data", 9) != 0 ||
                (vlen > 9 && v[9] != ';' && v[9] != ' ' && v[9] != '\t'))
                return fr_fail(err, FR_ERR_FORMAT,
                               "multipart part %d: Content-Disposition is not form-data",
                               index);
            int r = disposition_param(v, vlen, "name", name, name_cap);
            if (r < 0)
                return fr_fail(err, FR_ERR_FORMAT,
                               "multipart part %d: malformed Content-Disposition", index);
            if (r == 0)
                return fr_fail(err, FR_ERR_FORMAT, "multipart part %d: no name", index);
        } else if (klen == 25 && strncasecmp(p, "Content-Transfer-Encoding", 25) == 0) {
            // RFC 7578 4.7: deprecated; only identity encodings make sense for a file.
            if (!((vlen == 6 && strncasecmp(v, "binary", 6) == 0) ||
                  (vlen == 4 && strncasecmp(v, "8bit", 4) == 0) ||
                  (vlen == 4 && strncasecmp(v, "7bit", 4) == 0)))
                return fr_fail(err, FR_ERR_FORMAT,
                               "multipart part %d: Content-Transfer-Encoding '%.*s' is not "
                               "supported (send the raw bytes)",
                               index, (int)(vlen < 40 ? vlen : 40), v);
        }
        p = eol ? eol + 2 : end;
    }
    if (!have_disp)
        return fr_fail(err, FR_ERR_FORMAT, "multipart part %d: no Content-Disposition", index);
    return FR_OK;
}

fr_status fr_multipart_parse(const unsigned char *body, size_t len, const char *boundary,
                             fr_multipart *out, fr_err *err) {
    memset(out, 0, sizeof *out);
    size_t blen = strlen(boundary);
    if (blen < 1 || blen > FR_REQ_BOUNDARY_MAX)
        return fr_fail(err, FR_ERR_FORMAT, "invalid multipart boundary");
    char delim[FR_REQ_BOUNDARY_MAX + 5]; // "\r\n--" boundary
    memcpy(delim, "\r\n--", 4);
    memcpy(delim + 4, boundary, blen);
    size_t dlen = blen + 4;

    // The first delimiter: at the very start ("--b") or after a preamble ("...\r\n--b").
    size_t pos;
    if (len >= dlen - 2 && memcmp(body, delim + 2, dlen - 2) == 0) {
        pos = dlen - 2;
    } else {
        const unsigned char *d = find(body, len, delim, dlen);
        if (!d) return fr_fail(err, FR_ERR_FORMAT, "multipart body without the boundary");
        pos = (size_t)(d - body) + dlen;
    }
    int parts = 0, have_image = 0, have_options = 0;
    for (;;) {
        // after a delimiter: "--" closes, else transport padding then CRLF
        if (len - pos >= 2 && body[pos] == '-' && body[pos + 1] == '-') break;
        while (pos < len && (body[pos] == ' ' || body[pos] == '\t')) pos++;
        if (len - pos < 2 || body[pos] != '\r' || body[pos + 1] != '\n')
            return fr_fail(err, FR_ERR_FORMAT, "truncated or malformed multipart body");
        pos += 2;
        if (++parts > FR_REQ_MAX_PARTS)
            return fr_fail(err, FR_ERR_FORMAT, "more than %d multipart parts",
                           FR_REQ_MAX_PARTS);
        // headers end at the first CRLFCRLF (or at once with an empty header block)
        size_t hlen;
        if (len - pos >= 2 && body[pos] == '\r' && body[pos + 1] == '\n') {
            hlen = 0;
        } else {
            size_t lim = len - pos;
            if (lim > FR_REQ_MAX_PART_HEADERS + 4) lim = FR_REQ_MAX_PART_HEADERS + 4;
            const unsigned char *e = find(body + pos, lim, "\r\n\r\n", 4);
            if (!e) {
                if (lim < len - pos || lim > FR_REQ_MAX_PART_HEADERS)
                    return fr_fail(err, FR_ERR_FORMAT,
                                   "multipart part %d: headers longer than %d bytes", parts,
                                   FR_REQ_MAX_PART_HEADERS);
                return fr_fail(err, FR_ERR_FORMAT, "truncated multipart part headers");
            }
            hlen = (size_t)(e - (body + pos));
            if (hlen > FR_REQ_MAX_PART_HEADERS)
                return fr_fail(err, FR_ERR_FORMAT,
                               "multipart part %d: headers longer than %d bytes", parts,
                               FR_REQ_MAX_PART_HEADERS);
        }
        char name[64];
        fr_status s = part_headers((const char *)body + pos, hlen, name, sizeof name, parts, err);
        if (s) return s;
        pos += hlen + (hlen ? 4 : 2);
        const unsigned char *d = find(body + pos, len - pos, delim, dlen);
        if (!d)
            return fr_fail(err, FR_ERR_FORMAT,
                           "truncated multipart body (no closing boundary)");
        size_t plen = (size_t)(d - (body + pos));
        if (!strcmp(name, "image")) {
            if (have_image) return fr_fail(err, FR_ERR_FORMAT, "more than one image part");
            have_image = 1;
            out->image = body + pos;
            out->image_len = plen;
        } else if (!strcmp(name, "options")) {
            if (have_options)
                return fr_fail(err, FR_ERR_FORMAT, "more than one options part");
            have_options = 1;
            out->options = (const char *)body + pos;
            out->options_len = plen;
        } else {
            return fr_fail(err, FR_ERR_FORMAT,
                           "unexpected multipart part '%.40s' (expected 'image' and "
                           "optionally 'options')",
                           name);
        }
        pos = (size_t)(d - body) + dlen;
    }
    if (!have_image) {
        memset(out, 0, sizeof *out);
        return fr_fail(err, FR_ERR_FORMAT, "no image part");
    }
    if (!out->image_len) {
        memset(out, 0, sizeof *out);
        return fr_fail(err, FR_ERR_FORMAT, "empty image part");
    }
    return FR_OK;
}

// ---------------------------------------------------------------------------------------
// Options

void fr_req_opts_init(fr_req_opts *o) { memset(o, 0, sizeof *o); }

void fr_req_opts_free(fr_req_opts *o) {
    fr_free(o->class_mask);
    o->class_mask = NULL;
}

static fr_status set_threshold(fr_req_opts *o, double v, fr_err *err) {
    if (o->has_score_threshold)
        return fr_fail(err, FR_ERR_FORMAT, "score_threshold given twice");
    if (!isfinite(v) || v < 0.0 || v > 1.0)
        return fr_fail(err, FR_ERR_INVALID, "score_threshold must be a number in [0, 1]");
    o->has_score_threshold = 1;
    o->score_threshold = (float)v;
    return FR_OK;
}

static fr_status set_max(fr_req_opts *o, double v, fr_err *err) {
    if (o->has_max_detections)
        return fr_fail(err, FR_ERR_FORMAT, "max_detections given twice");
    // range before the integer check: 1e400 and 5e9 are out of range, 2.5 is not an integer
    if (!isfinite(v) || v < 1.0 || v > FR_REQ_MAX_DETECTIONS)
        return fr_fail(err, FR_ERR_INVALID, "max_detections must be an integer in [1, %d]",
                       FR_REQ_MAX_DETECTIONS);
    if (v != floor(v))
        return fr_fail(err, FR_ERR_FORMAT, "max_detections must be an integer");
    o->has_max_detections = 1;
    o->max_detections = (int)v; // in [1, 10000]: the cast is exact
    return FR_OK;
}

static int class_index(const char *label, size_t n, char *const *classes, int k) {
    for (int i = 0; i < k; i++)
        if (strlen(classes[i]) == n && memcmp(classes[i], label, n) == 0) return i;
    return -1;
}

static fr_status mask_new(fr_req_opts *o, int k, fr_err *err) {
    if (o->class_mask) return fr_fail(err, FR_ERR_FORMAT, "classes given twice");
    if (k <= 0) return fr_fail(err, FR_ERR_INVALID, "classes: the model has no classes");
    o->class_mask = fr_calloc((size_t)k, 1);
    if (!o->class_mask) return fr_fail(err, FR_ERR_NOMEM, "out of memory");
    o->num_classes = k;
    return FR_OK;
}

static fr_status mask_add(fr_req_opts *o, const char *label, size_t n, char *const *classes,
                          int k, fr_err *err) {
    int i = class_index(label, n, classes, k);
    if (i < 0)
        return fr_fail(err, FR_ERR_INVALID, "classes: unknown class '%.*s'",
                       (int)(n < 60 ? n : 60), label);
    o->class_mask[i] = 1;
    return FR_OK;
}

// A strict decimal number: JSON number grammar (no spaces, hex, inf or nan).
static fr_status parse_number(const char *key, const char *s, double *out, fr_err *err) {
    const char *p = s;
    if (*p == '-') p++;
    if (!isdigit((unsigned char)*p)) goto bad;
    if (*p == '0') p++;
    else
        while (isdigit((unsigned char)*p)) p++;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p)) goto bad;
        while (isdigit((unsigned char)*p)) p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        if (!isdigit((unsigned char)*p)) goto bad;
        while (isdigit((unsigned char)*p)) p++;
    }
    if (*p) goto bad;
    errno = 0;
    *out = strtod(s, NULL); // overflow gives +-HUGE_VAL (inf): rejected by the range checks
    return FR_OK;
bad:
    return fr_fail(err, FR_ERR_FORMAT, "%s: '%.40s' is not a number", key, s);
}

fr_status fr_req_opts_query(fr_req_opts *o, const char *key, const char *value,
                            char *const *classes, int num_classes, fr_err *err) {
    if (!value) value = "";
    double v;
    fr_status s;
    if (!strcmp(key, "score_threshold")) {
        if ((s = parse_number(key, value, &v, err))) return s;
        return set_threshold(o, v, err);
    }
    if (!strcmp(key, "max_detections")) {
        if ((s = parse_number(key, value, &v, err))) return s;
        return set_max(o, v, err);
    }
    if (!strcmp(key, "classes")) {
        if (!*value) return fr_fail(err, FR_ERR_FORMAT, "classes: empty list");
        if ((s = mask_new(o, num_classes, err))) return s;
        const char *p = value;
        for (;;) {
            const char *c = strchr(p, ',');
            size_t n = c ? (size_t)(c - p) : strlen(p);
            if (!n) return fr_fail(err, FR_ERR_FORMAT, "classes: empty class name");
            if ((s = mask_add(o, p, n, classes, num_classes, err))) return s;
            if (!c) break;
            p = c + 1;
        }
        return FR_OK;
    }
    return fr_fail(err, FR_ERR_FORMAT,
                   "unknown query parameter '%.40s' (expected score_threshold, "
                   "max_detections, classes)",
                   key);
}

fr_status fr_req_opts_json(fr_req_opts *o, const char *json, size_t len, char *const *classes,
                           int num_classes, fr_err *err) {
    if (len > FR_REQ_MAX_OPTIONS)
        return fr_fail(err, FR_ERR_FORMAT, "options: larger than %d bytes", FR_REQ_MAX_OPTIONS);
    fr_alloc_oom_clear();
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) {
        // cJSON says NULL for both; our allocator tells an allocation failure (503) from bad JSON
        if (fr_alloc_oom()) return fr_fail(err, FR_ERR_NOMEM, "out of memory");
        return fr_fail(err, FR_ERR_FORMAT, "options: not valid JSON");
    }
    fr_status s = FR_OK;
    if (!cJSON_IsObject(root)) {
        s = fr_fail(err, FR_ERR_FORMAT, "options: must be a JSON object");
        goto done;
    }
    for (cJSON *it = root->child; it; it = it->next) {
        const char *k = it->string ? it->string : "";
        for (cJSON *prev = root->child; prev != it; prev = prev->next)
            if (prev->string && !strcmp(prev->string, k)) {
                s = fr_fail(err, FR_ERR_FORMAT, "options: key '%.40s' given twice", k);
                goto done;
            }
        if (!strcmp(k, "score_threshold") || !strcmp(k, "max_detections")) {
            if (!cJSON_IsNumber(it)) {
                s = fr_fail(err, FR_ERR_FORMAT, "options: %s must be a number", k);
                goto done;
            }
            s = k[0] == 's' ? set_threshold(o, it->valuedouble, err)
                            : set_max(o, it->valuedouble, err);
            if (s) goto done;
        } else if (!strcmp(k, "classes")) {
            if (!cJSON_IsArray(it)) {
                s = fr_fail(err, FR_ERR_FORMAT, "options: classes must be an array of strings");
                goto done;
            }
            if (!it->child) {
                s = fr_fail(err, FR_ERR_INVALID, "options: classes must not be empty");
                goto done;
            }
            if ((s = mask_new(o, num_classes, err))) goto done;
            for (cJSON *c = it->child; c; c = c->next) {
                if (!cJSON_IsString(c) || !c->valuestring) {
                    s = fr_fail(err, FR_ERR_FORMAT,
                                "options: classes must be an array of strings");
                    goto done;
                }
                if ((s = mask_add(o, c->valuestring, strlen(c->valuestring), classes,
                                  num_classes, err)))
                    goto done;
            }
        } else {
            s = fr_fail(err, FR_ERR_FORMAT,
                        "options: unknown key '%.40s' (expected score_threshold, "
                        "max_detections, classes)",
                        k);
            goto done;
        }
    }
done:
    cJSON_Delete(root);
    return s;
}

void fr_req_opts_to_detect(const fr_req_opts *o, fr_detect_opts *d) {
    d->score_threshold = o->has_score_threshold ? o->score_threshold : -1.0f;
    d->max_detections = o->has_max_detections ? o->max_detections : 0;
    d->class_mask = o->class_mask;
}

int fr_req_http_status(fr_status s) {
    switch (s) {
    case FR_OK: return 200;
    case FR_ERR_FORMAT: return 400;
    case FR_ERR_INVALID: return 422;
    case FR_ERR_UNSUPPORTED: return 415;
    case FR_ERR_TOO_LARGE: return 413;
    case FR_ERR_NOMEM: return 503;
    case FR_ERR_IO: return 400;
    case FR_ERR_INTERNAL: return 500;
    }
    return 500;
}
