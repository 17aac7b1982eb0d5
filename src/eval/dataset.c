// dataset.c - VOCdevkit reading: the image-id hash map, ImageSets/Main/<set>.txt lists and
// the per-image ground truth of a whole set (voc.h).
#include "core/alloc.h"
#include "voc.h"
#include "voc_internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------- id map

struct fr_voc_idmap {
    size_t cap, n; // cap is a power of two, n <= cap / 2
    char **keys;
    int *vals;
};

static uint64_t hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; // FNV-1a
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static fr_status idmap_alloc(fr_voc_idmap *m, size_t cap, fr_err *err) {
    m->keys = fr_calloc(cap, sizeof *m->keys);
    m->vals = fr_calloc(cap, sizeof *m->vals);
    if (!m->keys || !m->vals) {
        fr_free(m->keys);
        fr_free(m->vals);
        m->keys = NULL;
        m->vals = NULL;
        return fr_fail(err, FR_ERR_NOMEM, "out of memory (id map)");
    }
    m->cap = cap;
    return FR_OK;
}

fr_status fr_voc_idmap_new(fr_voc_idmap **out, size_t expected, fr_err *err) {
    *out = NULL;
    fr_voc_idmap *m = fr_calloc(1, sizeof *m);
    if (!m) return fr_fail(err, FR_ERR_NOMEM, "out of memory (id map)");
    size_t cap = 16;
    while (cap < expected * 2 && cap < ((size_t)1 << 40)) cap *= 2;
    if (idmap_alloc(m, cap, err) != FR_OK) {
        fr_free(m);
        return FR_ERR_NOMEM;
    }
    *out = m;
    return FR_OK;
}

static size_t slot(const fr_voc_idmap *m, const char *id, size_t len) {
    size_t i = (size_t)hash(id, len) & (m->cap - 1);
    while (m->keys[i] && !(strlen(m->keys[i]) == len && !memcmp(m->keys[i], id, len)))
        i = (i + 1) & (m->cap - 1);
    return i;
}

int fr_voc_idmap_get(const fr_voc_idmap *m, const char *id, size_t len) {
    if (!m) return -1;
    size_t i = slot(m, id, len);
    return m->keys[i] ? m->vals[i] : -1;
}

fr_status fr_voc_idmap_put(fr_voc_idmap *m, const char *id, size_t len, int value, int *existing,
                           fr_err *err) {
    size_t i = slot(m, id, len);
    if (m->keys[i]) {
        *existing = m->vals[i];
        return FR_OK;
    }
    *existing = -1;
    if ((m->n + 1) * 2 > m->cap) {
        fr_voc_idmap old = *m;
        if (idmap_alloc(m, old.cap * 2, err) != FR_OK) {
            *m = old;
            return FR_ERR_NOMEM;
        }
        for (size_t k = 0; k < old.cap; k++) {
            if (!old.keys[k]) continue;
            size_t j = slot(m, old.keys[k], strlen(old.keys[k]));
            m->keys[j] = old.keys[k];
            m->vals[j] = old.vals[k];
        }
        fr_free(old.keys);
        fr_free(old.vals);
        i = slot(m, id, len);
    }
    char *k = fr_malloc(len + 1);
    if (!k) return fr_fail(err, FR_ERR_NOMEM, "out of memory (id map)");
    memcpy(k, id, len);
    k[len] = 0;
    m->keys[i] = k;
    m->vals[i] = value;
    m->n++;
    return FR_OK;
}

void fr_voc_idmap_free(fr_voc_idmap *m) {
    if (!m) return;
    for (size_t i = 0; i < m->cap; i++) fr_free(m->keys[i]);
    fr_free(m->keys);
    fr_free(m->vals);
    fr_free(m);
}

// ---------------------------------------------------------------- image lists

void fr_voc_imageset_free(fr_voc_imageset *s) {
    if (!s) return;
    for (int i = 0; i < s->num_ids; i++) {
        fr_free(s->ids[i]);
        if (s->bad) fr_free(s->bad[i]);
    }
    fr_free(s->ids);
    fr_free(s->bad);
    fr_voc_idmap_free(s->map);
    memset(s, 0, sizeof *s);
}

// Why an id cannot name a file under Annotations/ and JPEGImages/ (NULL when it can).
static const char *bad_id(const char *id, size_t n) {
    if ((n == 1 && id[0] == '.') || (n == 2 && id[0] == '.' && id[1] == '.'))
        return "not a file name";
    if (n > 200) return "longer than 200 bytes";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (c == '/' || c == '\\') return "contains a path separator";
        if (fr_voc_is_space(c)) return "contains whitespace";
        if (c < 0x20 || c == 0x7f) return "contains a control character";
    }
    return NULL;
}

fr_status fr_voc_imageset_parse(fr_voc_imageset *s, const char *text, size_t len,
                                const fr_voc_limits *lim, fr_err *err) {
    memset(s, 0, sizeof *s);
    fr_voc_limits dl;
    if (!lim) {
        fr_voc_limits_default(&dl);
        lim = &dl;
    }
    if (len > lim->max_list_bytes)
        return fr_fail(err, FR_ERR_TOO_LARGE, "image list larger than the %zu-byte cap",
                       lim->max_list_bytes);
    fr_status st;
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n' || text[i] == '\r';
    if ((st = fr_voc_idmap_new(&s->map, lines < 1024 ? lines : 1024, err)) != FR_OK) return st;
    int cap = 0;
    long lineno = 0;
    size_t i = 0;
    while (i < len) {
        // one line: up to \n, \r\n or \r (Python's universal newlines)
        size_t b = i, e = i;
        while (e < len && text[e] != '\n' && text[e] != '\r') e++;
        i = e;
        if (i < len) i += (text[i] == '\r' && i + 1 < len && text[i + 1] == '\n') ? 2 : 1;
        lineno++;
        if (e - b > lim->max_line) {
            st = fr_fail(err, FR_ERR_TOO_LARGE, "line %ld longer than %zu bytes", lineno,
                         lim->max_line);
            goto fail;
        }
        if (memchr(text + b, 0, e - b)) {
            st = fr_fail(err, FR_ERR_FORMAT, "line %ld: NUL byte", lineno);
            goto fail;
        }
        while (b < e && fr_voc_is_space((unsigned char)text[b])) b++;
        while (e > b && fr_voc_is_space((unsigned char)text[e - 1])) e--;
        if (b == e) {
            s->empty_lines++;
            continue;
        }
        int existing;
        if ((st = fr_voc_idmap_put(s->map, text + b, e - b, s->num_ids, &existing, err)) != FR_OK)
            goto fail;
        if (existing >= 0) {
            s->duplicates++;
            continue;
        }
        if (s->num_ids >= lim->max_images) {
            st = fr_fail(err, FR_ERR_TOO_LARGE, "more than %ld ids", lim->max_images);
            goto fail;
        }
        if (s->num_ids == cap) {
            int nc = cap ? cap * 2 : 64;
            char **ids = fr_realloc(s->ids, (size_t)nc * sizeof *ids);
            if (ids) s->ids = ids;
            char **bad = ids ? fr_realloc(s->bad, (size_t)nc * sizeof *bad) : NULL;
            if (bad) s->bad = bad;
            if (!ids || !bad) {
                st = fr_fail(err, FR_ERR_NOMEM, "out of memory (image list)");
                goto fail;
            }
            cap = nc;
        }
        char *id = fr_malloc(e - b + 1);
        const char *why = bad_id(text + b, e - b);
        char *whyd = NULL;
        if (id && why) {
            char msg[300];
            snprintf(msg, sizeof msg, "id '%.*s' (line %ld) %s", (int)(e - b < 60 ? e - b : 60),
                     text + b, lineno, why);
            whyd = fr_strdup(msg);
        }
        if (!id || (why && !whyd)) {
            fr_free(id);
            st = fr_fail(err, FR_ERR_NOMEM, "out of memory (image list)");
            goto fail;
        }
        memcpy(id, text + b, e - b);
        id[e - b] = 0;
        s->ids[s->num_ids] = id;
        s->bad[s->num_ids] = whyd;
        s->num_ids++;
    }
    return FR_OK;
fail:
    fr_voc_imageset_free(s);
    return st;
}

fr_status fr_voc_imageset_load(fr_voc_imageset *s, const char *path, const fr_voc_limits *lim,
                               fr_err *err) {
    memset(s, 0, sizeof *s);
    fr_voc_limits dl;
    if (!lim) {
        fr_voc_limits_default(&dl);
        lim = &dl;
    }
    char *buf;
    size_t len;
    fr_status st = fr_voc_read_file(path, lim->max_list_bytes, &buf, &len, err);
    if (st != FR_OK) return st;
    fr_err e = {0};
    st = fr_voc_imageset_parse(s, buf, len, lim, &e);
    fr_free(buf);
    if (st != FR_OK) return fr_fail(err, st, "%s: %s", path, e.msg);
    return FR_OK;
}

// ---------------------------------------------------------------- dataset

void fr_voc_dataset_opts_default(fr_voc_dataset_opts *o) {
    fr_voc_limits_default(&o->lim);
    o->boxes = FR_VOC_BOX_KEEP;
}

void fr_voc_dataset_free(fr_voc_dataset *ds) {
    if (!ds) return;
    fr_free(ds->root);
    fr_free(ds->set);
    if (ds->classes)
        for (int c = 0; c < ds->num_classes; c++) fr_free(ds->classes[c]);
    fr_free(ds->classes);
    if (ds->fail)
        for (int i = 0; i < ds->list.num_ids; i++) fr_free(ds->fail[i]);
    fr_free(ds->fail);
    fr_free(ds->width);
    fr_free(ds->height);
    fr_free(ds->obj_start);
    fr_free(ds->objs);
    fr_voc_imageset_free(&ds->list);
    memset(ds, 0, sizeof *ds);
}

fr_status fr_voc_dataset_fail(fr_voc_dataset *ds, int i, const char *msg, fr_err *err) {
    if (ds->fail[i]) return FR_OK;
    ds->fail[i] = fr_strdup(msg);
    if (!ds->fail[i]) return fr_fail(err, FR_ERR_NOMEM, "out of memory");
    return FR_OK;
}

int fr_voc_dataset_failed_count(const fr_voc_dataset *ds) {
    int n = 0;
    for (int i = 0; i < ds->list.num_ids; i++) n += ds->fail[i] != NULL;
    return n;
}

int fr_voc_image_path(const fr_voc_dataset *ds, int i, char *buf, size_t cap) {
    int n = snprintf(buf, cap, "%s/JPEGImages/%s.jpg", ds->root, ds->list.ids[i]);
    return (n < 0 || (size_t)n >= cap) ? -1 : 0;
}

static int find_class(const fr_voc_dataset *ds, const char *name) {
    for (int c = 0; c < ds->num_classes; c++)
        if (!strcmp(ds->classes[c], name)) return c;
    return -1;
}

// Applies the box policy to o; returns 0 to keep (box possibly clipped), 1 to drop.
static int check_box(fr_voc_dataset *ds, const fr_voc_annotation *a, double b[4],
                     fr_voc_box_policy pol) {
    int inverted = b[0] > b[2] || b[1] > b[3];
    int outside = b[0] < 1 || b[1] < 1 ||
                  (a->has_size && (b[2] > a->width || b[3] > a->height));
    if (!inverted && !outside) return 0;
    ds->bad_boxes++;
    if (pol == FR_VOC_BOX_KEEP) return 0;
    if (pol == FR_VOC_BOX_CLIP) {
        if (b[0] < 1) b[0] = 1;
        if (b[1] < 1) b[1] = 1;
        if (a->has_size) {
            if (b[2] > a->width) b[2] = a->width;
            if (b[3] > a->height) b[3] = a->height;
        }
        if (b[0] <= b[2] && b[1] <= b[3]) return 0;
    }
    ds->bad_boxes_dropped++;
    return 1;
}

fr_status fr_voc_dataset_load(fr_voc_dataset *ds, const char *root, const char *set,
                              const char *const *classes, int num_classes,
                              const fr_voc_dataset_opts *o, fr_err *err) {
    memset(ds, 0, sizeof *ds);
    fr_voc_dataset_opts dopt;
    if (!o) {
        fr_voc_dataset_opts_default(&dopt);
        o = &dopt;
    }
    if (!classes) {
        classes = fr_voc_classes;
        num_classes = FR_VOC_NUM_CLASSES;
    }
    if (num_classes < 1) return fr_fail(err, FR_ERR_INVALID, "no classes to evaluate");
    fr_status st = FR_OK;
    char path[4096];
    size_t objs_cap = 0;
    ds->root = fr_strdup(root);
    ds->set = fr_strdup(set);
    ds->classes = fr_calloc((size_t)num_classes, sizeof *ds->classes);
    if (!ds->root || !ds->set || !ds->classes) goto nomem;
    ds->num_classes = num_classes;
    for (int c = 0; c < num_classes; c++)
        if (!(ds->classes[c] = fr_strdup(classes[c]))) goto nomem;
    if (strchr(set, '/') || !set[0]) {
        st = fr_fail(err, FR_ERR_INVALID, "bad set name '%s'", set);
        goto fail;
    }
    if (snprintf(path, sizeof path, "%s/ImageSets/Main/%s.txt", root, set) >= (int)sizeof path) {
        st = fr_fail(err, FR_ERR_INVALID, "path too long: %s", root);
        goto fail;
    }
    if ((st = fr_voc_imageset_load(&ds->list, path, &o->lim, err)) != FR_OK) goto fail;
    int n = ds->list.num_ids;
    ds->fail = fr_calloc((size_t)n + 1, sizeof *ds->fail);
    ds->width = fr_calloc((size_t)n + 1, sizeof *ds->width);
    ds->height = fr_calloc((size_t)n + 1, sizeof *ds->height);
    ds->obj_start = fr_calloc((size_t)n + 1, sizeof *ds->obj_start);
    if (!ds->fail || !ds->width || !ds->height || !ds->obj_start) goto nomem;
    int nobj = 0;
    for (int i = 0; i < n; i++) {
        ds->obj_start[i] = nobj;
        if (ds->list.bad[i]) {
            if ((st = fr_voc_dataset_fail(ds, i, ds->list.bad[i], err)) != FR_OK) goto fail;
            continue;
        }
        if (snprintf(path, sizeof path, "%s/Annotations/%s.xml", root, ds->list.ids[i]) >=
            (int)sizeof path) {
            if ((st = fr_voc_dataset_fail(ds, i, "annotation path too long", err)) != FR_OK)
                goto fail;
            continue;
        }
        fr_voc_annotation a;
        fr_err e = {0};
        fr_status as = fr_voc_annotation_load(&a, path, &o->lim, &e);
        if (as == FR_ERR_NOMEM) {
            st = fr_fail(err, FR_ERR_NOMEM, "%s", e.msg);
            goto fail;
        }
        if (as != FR_OK) {
            if ((st = fr_voc_dataset_fail(ds, i, e.msg, err)) != FR_OK) goto fail;
            continue;
        }
        ds->width[i] = a.has_size ? a.width : 0;
        ds->height[i] = a.has_size ? a.height : 0;
        ds->no_size += !a.has_size;
        ds->missing_difficult += a.missing_difficult;
        for (int k = 0; k < a.num_objects; k++) {
            const fr_voc_object *ob = &a.objects[k];
            int c = find_class(ds, ob->name);
            if (c < 0) {
                ds->unknown_objects++;
                continue;
            }
            fr_voc_gtobj g = {.cls = c, .gt.difficult = ob->difficult};
            for (int j = 0; j < 4; j++) g.gt.box[j] = ob->box[j];
            if (check_box(ds, &a, g.gt.box, o->boxes)) continue;
            if ((size_t)nobj == objs_cap) {
                size_t nc = objs_cap ? objs_cap * 2 : 256;
                fr_voc_gtobj *p = fr_realloc(ds->objs, nc * sizeof *p);
                if (!p) {
                    fr_voc_annotation_free(&a);
                    goto nomem;
                }
                ds->objs = p;
                objs_cap = nc;
            }
            ds->objs[nobj++] = g;
        }
        fr_voc_annotation_free(&a);
    }
    ds->obj_start[n] = nobj;
    return FR_OK;
nomem:
    st = fr_fail(err, FR_ERR_NOMEM, "out of memory (dataset)");
fail:
    fr_voc_dataset_free(ds);
    return st;
}
