// annotation.c - PASCAL VOC annotation XML with expat, read the way voc_eval.py's parse_rec
// reads it with ElementTree (see voc.h), plus the small helpers of voc_internal.h.
//
// Hardening: no DOCTYPE at all (so no internal entities - billion laughs - and no external
// entities or DTDs are ever loaded; expat 2.5's amplification guard stays on as a second
// line), parameter-entity parsing off, a file-size cap, a nesting cap and an object cap.
// All expat allocations go through fr_malloc/fr_realloc/fr_free.
#include "core/alloc.h"
#include "voc.h"
#include "voc_internal.h"

#include <errno.h>
#include <expat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const fr_voc_classes[FR_VOC_NUM_CLASSES] = {
    "aeroplane",   "bicycle", "bird",  "boat",      "bottle", "bus",         "car",
    "cat",         "chair",   "cow",   "diningtable", "dog",  "horse",       "motorbike",
    "person",      "pottedplant", "sheep", "sofa",  "train",  "tvmonitor"};

const char *fr_voc_class_alias(const char *name) {
    // COCO (detectron2 metadata) names of the VOC classes that are spelled differently.
    static const char *const map[][2] = {{"airplane", "aeroplane"},     {"motorcycle", "motorbike"},
                                         {"dining table", "diningtable"}, {"couch", "sofa"},
                                         {"potted plant", "pottedplant"}, {"tv", "tvmonitor"}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(name, map[i][0])) return map[i][1];
    return name;
}

void fr_voc_limits_default(fr_voc_limits *lim) {
    lim->max_xml_bytes = 4u << 20;
    lim->max_objects = 10000;
    lim->max_depth = 256;
    lim->max_name = 256;
    lim->max_list_bytes = 256u << 20;
    lim->max_images = 10000000;
    lim->max_line = 4096;
    lim->max_dets = 20000000;
}

// ---------------------------------------------------------------- small helpers

int fr_voc_is_space(unsigned char c) {
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

int fr_voc_join(char *buf, size_t cap, const char *a, const char *b) {
    int n = snprintf(buf, cap, "%s/%s", a, b);
    return (n < 0 || (size_t)n >= cap) ? -1 : 0;
}

int fr_voc_buf_add(fr_voc_buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = fr_realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

void fr_voc_buf_free(fr_voc_buf *b) {
    fr_free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

fr_status fr_voc_read_file(const char *path, size_t cap, char **buf, size_t *len, fr_err *err) {
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return fr_fail(err, FR_ERR_IO, "%s: %s", path, strerror(errno));
    fr_status st = FR_OK;
    fr_voc_buf b = {0};
    char chunk[65536];
    for (;;) {
        size_t got = fread(chunk, 1, sizeof chunk, f);
        if (got && b.n + got > cap) {
            st = fr_fail(err, FR_ERR_TOO_LARGE, "%s: larger than the %zu-byte cap", path, cap);
            goto fail;
        }
        if (got && fr_voc_buf_add(&b, chunk, got)) {
            st = fr_fail(err, FR_ERR_NOMEM, "%s: out of memory", path);
            goto fail;
        }
        if (got < sizeof chunk) break;
    }
    if (ferror(f)) {
        st = fr_fail(err, FR_ERR_IO, "%s: read error", path);
        goto fail;
    }
    if (!b.p && fr_voc_buf_add(&b, "", 0)) {
        st = fr_fail(err, FR_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    fclose(f);
    *buf = b.p;
    *len = b.n;
    return FR_OK;
fail:
    fclose(f);
    fr_voc_buf_free(&b);
    return st;
}

int fr_voc_parse_int(const char *s, size_t len, long *out) {
    size_t i = 0, e = len;
    while (i < e && fr_voc_is_space((unsigned char)s[i])) i++;
    while (e > i && fr_voc_is_space((unsigned char)s[e - 1])) e--;
    int neg = 0;
    if (i < e && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    if (i >= e) return -1;
    long v = 0;
    int prev_digit = 0;
    for (; i < e; i++) {
        char c = s[i];
        if (c >= '0' && c <= '9') {
            if (v > 100000000L) v = 1000000001L; // saturate: > 1e9 is rejected below
            else v = v * 10 + (c - '0');
            prev_digit = 1;
        } else if (c == '_' && prev_digit && i + 1 < e && s[i + 1] >= '0' && s[i + 1] <= '9') {
            prev_digit = 0; // Python allows single '_' between digits
        } else {
            return -1;
        }
    }
    if (v > 1000000000L) return -1;
    *out = neg ? -v : v;
    return 0;
}

// ---------------------------------------------------------------- the parser

enum field { F_NONE, F_NAME, F_DIFFICULT, F_TRUNCATED, F_XMIN, F_YMIN, F_XMAX, F_YMAX, F_WIDTH,
             F_HEIGHT, F_DEPTH };

typedef struct {
    XML_Parser p;
    fr_voc_annotation *a;
    const fr_voc_limits *lim;
    fr_status st;
    fr_err *err;
    int depth;       // current element depth (root = 1)
    int objects_cap;
    // the open <object> (a child of the root), or none
    int in_obj;
    int seen[F_DEPTH + 1]; // first-child-wins for the fields of the current object / <size>
    int in_bndbox;         // inside the object's first <bndbox>
    int seen_bndbox;
    int in_size, seen_size;
    // the field whose .text is being collected
    enum field field;
    int field_depth;
    int text_closed; // a child element started: ElementTree's .text ends there
    fr_voc_buf text;
} pctx;

static void stop(pctx *c, fr_status st, const char *fmt, const char *arg) {
    if (c->st != FR_OK) return;
    char msg[400];
    snprintf(msg, sizeof msg, fmt, arg);
    c->st = fr_fail(c->err, st, "line %lu: %s", (unsigned long)XML_GetCurrentLineNumber(c->p),
                    msg);
    XML_StopParser(c->p, XML_FALSE);
}

static enum field object_field(const char *name) {
    if (!strcmp(name, "name")) return F_NAME;
    if (!strcmp(name, "difficult")) return F_DIFFICULT;
    if (!strcmp(name, "truncated")) return F_TRUNCATED;
    return F_NONE;
}

static enum field bndbox_field(const char *name) {
    if (!strcmp(name, "xmin")) return F_XMIN;
    if (!strcmp(name, "ymin")) return F_YMIN;
    if (!strcmp(name, "xmax")) return F_XMAX;
    if (!strcmp(name, "ymax")) return F_YMAX;
    return F_NONE;
}

static enum field size_field(const char *name) {
    if (!strcmp(name, "width")) return F_WIDTH;
    if (!strcmp(name, "height")) return F_HEIGHT;
    if (!strcmp(name, "depth")) return F_DEPTH;
    return F_NONE;
}

static void begin_field(pctx *c, enum field f) {
    c->seen[f] = 1;
    c->field = f;
    c->field_depth = c->depth;
    c->text_closed = 0;
    c->text.n = 0;
    if (c->text.p) c->text.p[0] = 0;
}

static void XMLCALL on_start(void *ud, const XML_Char *name, const XML_Char **attrs) {
    (void)attrs;
    pctx *c = ud;
    if (c->st != FR_OK) return;
    c->depth++;
    if (c->depth > c->lim->max_depth) {
        stop(c, FR_ERR_TOO_LARGE, "elements nested deeper than %s", "the cap");
        return;
    }
    if (c->field != F_NONE && c->depth == c->field_depth + 1) c->text_closed = 1;
    if (c->depth == 2) {
        if (!strcmp(name, "object")) {
            fr_voc_annotation *a = c->a;
            if (a->num_objects >= c->lim->max_objects) {
                stop(c, FR_ERR_TOO_LARGE, "more <object>s than %s", "the cap");
                return;
            }
            if (a->num_objects == c->objects_cap) {
                int cap = c->objects_cap ? c->objects_cap * 2 : 8;
                fr_voc_object *o = fr_realloc(a->objects, (size_t)cap * sizeof *o);
                if (!o) {
                    stop(c, FR_ERR_NOMEM, "%s", "out of memory");
                    return;
                }
                a->objects = o;
                c->objects_cap = cap;
            }
            memset(&a->objects[a->num_objects], 0, sizeof a->objects[0]);
            a->num_objects++;
            c->in_obj = 1;
            c->in_bndbox = c->seen_bndbox = 0;
            memset(c->seen, 0, sizeof c->seen);
        } else if (!strcmp(name, "size") && !c->seen_size) {
            c->in_size = c->seen_size = 1;
            memset(c->seen, 0, sizeof c->seen);
        }
    } else if (c->depth == 3 && c->in_obj) {
        enum field f = object_field(name);
        if (f != F_NONE && !c->seen[f]) begin_field(c, f);
        else if (!strcmp(name, "bndbox") && !c->seen_bndbox) c->in_bndbox = c->seen_bndbox = 1;
    } else if (c->depth == 3 && c->in_size) {
        enum field f = size_field(name);
        if (f != F_NONE && !c->seen[f]) begin_field(c, f);
    } else if (c->depth == 4 && c->in_bndbox) {
        enum field f = bndbox_field(name);
        if (f != F_NONE && !c->seen[f]) begin_field(c, f);
    }
}

static void XMLCALL on_text(void *ud, const XML_Char *s, int len) {
    pctx *c = ud;
    if (c->st != FR_OK || c->field == F_NONE || c->text_closed || c->depth != c->field_depth)
        return;
    size_t cap = c->field == F_NAME ? (size_t)c->lim->max_name : 4096;
    if (c->text.n + (size_t)len > cap) {
        stop(c, FR_ERR_TOO_LARGE, "%s text longer than the cap",
             c->field == F_NAME ? "<name>" : "a number's");
        return;
    }
    if (fr_voc_buf_add(&c->text, s, (size_t)len)) stop(c, FR_ERR_NOMEM, "%s", "out of memory");
}

static const char *field_tag(enum field f) {
    static const char *const t[] = {"",     "name", "difficult", "truncated", "xmin", "ymin",
                                    "xmax", "ymax", "width",     "height",    "depth"};
    return t[f];
}

static void end_field(pctx *c) {
    enum field f = c->field;
    c->field = F_NONE;
    const char *t = c->text.p ? c->text.p : "";
    if (f == F_NAME) {
        if (strlen(t) != c->text.n) {
            stop(c, FR_ERR_FORMAT, "%s", "NUL character in <name>");
            return;
        }
        char *d = fr_strdup(t);
        if (!d) {
            stop(c, FR_ERR_NOMEM, "%s", "out of memory");
            return;
        }
        c->a->objects[c->a->num_objects - 1].name = d;
        return;
    }
    long v;
    if (fr_voc_parse_int(t, c->text.n, &v)) {
        char shown[64];
        snprintf(shown, sizeof shown, "<%s> '%.40s' is not an integer", field_tag(f), t);
        stop(c, FR_ERR_FORMAT, "%s (voc_eval.py reads it with int())", shown);
        return;
    }
    fr_voc_object *o = c->in_obj ? &c->a->objects[c->a->num_objects - 1] : NULL;
    switch (f) {
    case F_DIFFICULT: o->difficult = v != 0; break;
    case F_TRUNCATED: o->truncated = v != 0; break;
    case F_XMIN: o->box[0] = (int)v; break;
    case F_YMIN: o->box[1] = (int)v; break;
    case F_XMAX: o->box[2] = (int)v; break;
    case F_YMAX: o->box[3] = (int)v; break;
    case F_WIDTH: c->a->width = (int)v; break;
    case F_HEIGHT: c->a->height = (int)v; break;
    case F_DEPTH: c->a->depth = (int)v; break;
    default: break;
    }
}

static void XMLCALL on_end(void *ud, const XML_Char *name) {
    (void)name;
    pctx *c = ud;
    if (c->st != FR_OK) return;
    if (c->field != F_NONE && c->depth == c->field_depth) end_field(c);
    if (c->st != FR_OK) return;
    if (c->depth == 3 && c->in_bndbox) {
        c->in_bndbox = 0;
    } else if (c->depth == 2 && c->in_obj) {
        c->in_obj = 0;
        fr_voc_object *o = &c->a->objects[c->a->num_objects - 1];
        if (!c->seen[F_NAME]) stop(c, FR_ERR_FORMAT, "%s", "<object> without <name>");
        else if (!c->seen_bndbox) stop(c, FR_ERR_FORMAT, "<object> '%.60s' without <bndbox>", o->name);
        else if (!c->seen[F_XMIN] || !c->seen[F_YMIN] || !c->seen[F_XMAX] || !c->seen[F_YMAX])
            stop(c, FR_ERR_FORMAT, "<object> '%.60s': <bndbox> lacks xmin, ymin, xmax or ymax",
                 o->name);
        else if (!c->seen[F_DIFFICULT]) c->a->missing_difficult++;
    } else if (c->depth == 2 && c->in_size) {
        c->in_size = 0;
        c->a->has_size = c->seen[F_WIDTH] && c->seen[F_HEIGHT];
        memset(c->seen, 0, sizeof c->seen);
    }
    c->depth--;
}

static void XMLCALL on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
                               const XML_Char *pubid, int has_internal_subset) {
    (void)name;
    (void)sysid;
    (void)pubid;
    (void)has_internal_subset;
    stop(ud, FR_ERR_FORMAT, "%s",
         "DOCTYPE not allowed (entities and external DTDs are never expanded)");
}

static void XMLCALL on_entity_decl(void *ud, const XML_Char *name, int is_param,
                                   const XML_Char *value, int value_len, const XML_Char *base,
                                   const XML_Char *sysid, const XML_Char *pubid,
                                   const XML_Char *notation) {
    (void)name, (void)is_param, (void)value, (void)value_len, (void)base, (void)sysid;
    (void)pubid, (void)notation;
    stop(ud, FR_ERR_FORMAT, "%s", "entity declarations are not allowed");
}

void fr_voc_annotation_free(fr_voc_annotation *a) {
    if (!a) return;
    for (int i = 0; i < a->num_objects; i++) fr_free(a->objects[i].name);
    fr_free(a->objects);
    memset(a, 0, sizeof *a);
}

fr_status fr_voc_annotation_parse(fr_voc_annotation *a, const char *xml, size_t len,
                                  const fr_voc_limits *lim, fr_err *err) {
    memset(a, 0, sizeof *a);
    fr_voc_limits dl;
    if (!lim) {
        fr_voc_limits_default(&dl);
        lim = &dl;
    }
    if (len > lim->max_xml_bytes)
        return fr_fail(err, FR_ERR_TOO_LARGE, "annotation larger than the %zu-byte cap",
                       lim->max_xml_bytes);
    if (len > (size_t)0x7fffffff) return fr_fail(err, FR_ERR_TOO_LARGE, "annotation too large");
    XML_Memory_Handling_Suite mem = {fr_malloc, fr_realloc, fr_free};
    // Namespace processing like ElementTree ('}' separator): a namespaced <object> is
    // "uri}object" and, as in parse_rec, not an object.
    XML_Parser p = XML_ParserCreate_MM(NULL, &mem, "}");
    if (!p) return fr_fail(err, FR_ERR_NOMEM, "out of memory (XML parser)");
    pctx c = {.p = p, .a = a, .lim = lim, .err = err};
    XML_SetUserData(p, &c);
    XML_SetElementHandler(p, on_start, on_end);
    XML_SetCharacterDataHandler(p, on_text);
    XML_SetStartDoctypeDeclHandler(p, on_doctype);
    XML_SetEntityDeclHandler(p, on_entity_decl);
    XML_SetParamEntityParsing(p, XML_PARAM_ENTITY_PARSING_NEVER);
#if defined(XML_DTD) && XML_MAJOR_VERSION == 2 && XML_MINOR_VERSION >= 4
    XML_SetBillionLaughsAttackProtectionMaximumAmplification(p, 10.0f);
    XML_SetBillionLaughsAttackProtectionActivationThreshold(p, 1u << 20);
#endif
    enum XML_Status xs = XML_Parse(p, xml, (int)len, XML_TRUE);
    fr_status st = c.st;
    if (st == FR_OK && xs != XML_STATUS_OK) {
        enum XML_Error code = XML_GetErrorCode(p);
        st = fr_fail(err, code == XML_ERROR_NO_MEMORY ? FR_ERR_NOMEM : FR_ERR_FORMAT,
                     "line %lu column %lu: malformed XML: %s",
                     (unsigned long)XML_GetCurrentLineNumber(p),
                     (unsigned long)XML_GetCurrentColumnNumber(p) + 1, XML_ErrorString(code));
    }
    XML_ParserFree(p);
    fr_voc_buf_free(&c.text);
    if (st != FR_OK) fr_voc_annotation_free(a);
    return st;
}

fr_status fr_voc_annotation_load(fr_voc_annotation *a, const char *path,
                                 const fr_voc_limits *lim, fr_err *err) {
    memset(a, 0, sizeof *a);
    fr_voc_limits dl;
    if (!lim) {
        fr_voc_limits_default(&dl);
        lim = &dl;
    }
    char *buf;
    size_t len;
    fr_status st = fr_voc_read_file(path, lim->max_xml_bytes, &buf, &len, err);
    if (st != FR_OK) return st;
    fr_err e = {0};
    st = fr_voc_annotation_parse(a, buf, len, lim, &e);
    fr_free(buf);
    if (st != FR_OK) return fr_fail(err, st, "%s: %s", path, e.msg);
    return FR_OK;
}
