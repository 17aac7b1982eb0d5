// config.c - strict JSON parsing of the model configuration (see config.h).
#include "config.h"

#include "alloc.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CONFIG_BYTES (1 << 20)

typedef struct {
    fr_err *err;
    const char *section; // "input", "rpn", ... or "" at top level
} ctx;

static fr_status bad(ctx *c, const char *key, const char *what) {
    return fr_fail(c->err, FR_ERR_INVALID, "config: %s%s%s: %s", c->section,
                   *c->section ? "." : "", key, what);
}

// Every key of obj must be in the NULL-terminated list; duplicates are errors too.
static fr_status check_keys(ctx *c, const cJSON *obj, const char *const *allowed) {
    for (const cJSON *it = obj->child; it; it = it->next) {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            if (it->string && !strcmp(it->string, *a)) ok = 1;
        if (!ok) return bad(c, it->string ? it->string : "?", "unknown key");
        for (const cJSON *j = obj->child; j != it; j = j->next)
            if (!strcmp(j->string, it->string)) return bad(c, it->string, "duplicate key");
    }
    return FR_OK;
}

static const cJSON *item(const cJSON *obj, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

// Reads a finite number in [lo, hi]. Missing: error unless dflt is non-NULL.
static fr_status num(ctx *c, const cJSON *obj, const char *key, double lo, double hi,
                     const double *dflt, double *out) {
    const cJSON *v = item(obj, key);
    if (!v) {
        if (dflt) {
            *out = *dflt;
            return FR_OK;
        }
        return bad(c, key, "missing");
    }
    if (!cJSON_IsNumber(v)) return bad(c, key, "must be a number");
    if (!isfinite(v->valuedouble)) return bad(c, key, "must be finite");
    if (v->valuedouble < lo || v->valuedouble > hi) {
        char m[96];
        snprintf(m, sizeof m, "%g is out of range [%g, %g]", v->valuedouble, lo, hi);
        return bad(c, key, m);
    }
    *out = v->valuedouble;
    return FR_OK;
}

static fr_status integer(ctx *c, const cJSON *obj, const char *key, int lo, int hi,
                         const int *dflt, int *out) {
    double d = 0, dd = dflt ? *dflt : 0;
    fr_status s = num(c, obj, key, lo, hi, dflt ? &dd : NULL, &d);
    if (s) return s;
    if (d != floor(d)) return bad(c, key, "must be an integer");
    *out = (int)d;
    return FR_OK;
}

static fr_status flt(ctx *c, const cJSON *obj, const char *key, double lo, double hi,
                     const double *dflt, float *out) {
    double d;
    fr_status s = num(c, obj, key, lo, hi, dflt, &d);
    if (!s) *out = (float)d;
    return s;
}

static fr_status boolean(ctx *c, const cJSON *obj, const char *key, const int *dflt, int *out) {
    const cJSON *v = item(obj, key);
    if (!v) {
        if (dflt) {
            *out = *dflt;
            return FR_OK;
        }
        return bad(c, key, "missing");
    }
    if (!cJSON_IsBool(v)) return bad(c, key, "must be true or false");
    *out = cJSON_IsTrue(v);
    return FR_OK;
}

// Reads a string that must be one of names[]; *out = its index.
static fr_status choice(ctx *c, const cJSON *obj, const char *key, const char *const *names,
                        const int *dflt, int *out) {
    const cJSON *v = item(obj, key);
    if (!v) {
        if (dflt) {
            *out = *dflt;
            return FR_OK;
        }
        return bad(c, key, "missing");
    }
    if (!cJSON_IsString(v)) return bad(c, key, "must be a string");
    for (int i = 0; names[i]; i++)
        if (!strcmp(v->valuestring, names[i])) {
            *out = i;
            return FR_OK;
        }
    char m[160];
    snprintf(m, sizeof m, "unknown value \"%.60s\"", v->valuestring);
    return bad(c, key, m);
}

static fr_status farray(ctx *c, const cJSON *obj, const char *key, int min_n, int max_n,
                        double lo, double hi, float *out, int *n_out) {
    const cJSON *v = item(obj, key);
    if (!v) return bad(c, key, "missing");
    if (!cJSON_IsArray(v)) return bad(c, key, "must be an array of numbers");
    int n = cJSON_GetArraySize(v);
    if (n < min_n || n > max_n) {
        char m[64];
        snprintf(m, sizeof m, "must have %d..%d numbers, has %d", min_n, max_n, n);
        return bad(c, key, m);
    }
    int i = 0;
    for (const cJSON *e = v->child; e; e = e->next, i++) {
        if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble) || e->valuedouble < lo ||
            e->valuedouble > hi) {
            char m[96];
            snprintf(m, sizeof m, "element %d must be a finite number in [%g, %g]", i, lo, hi);
            return bad(c, key, m);
        }
        out[i] = (float)e->valuedouble;
    }
    if (n_out) *n_out = n;
    return FR_OK;
}

static fr_status section(ctx *c, const cJSON *root, const char *name, const char *const *keys,
                         const cJSON **out) {
    c->section = "";
    const cJSON *v = item(root, name);
    if (!v) return bad(c, name, "missing section");
    if (!cJSON_IsObject(v)) return bad(c, name, "must be an object");
    c->section = name;
    *out = v;
    return check_keys(c, v, keys);
}

#define TRY(x)                                                                     \
    do {                                                                           \
        fr_status s_ = (x);                                                        \
        if (s_) {                                                                  \
            st = s_;                                                               \
            goto fail;                                                             \
        }                                                                          \
    } while (0)

fr_status fr_config_parse(fr_config *cfg, const char *json, size_t len, fr_err *err) {
    memset(cfg, 0, sizeof *cfg);
    ctx c = {err, ""};
    fr_status st = FR_OK;
    if (len > MAX_CONFIG_BYTES)
        return fr_fail(err, FR_ERR_TOO_LARGE, "config: %zu bytes is over the 1 MiB limit", len);
    fr_alloc_oom_clear();
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) {
        if (fr_alloc_oom()) return fr_fail(err, FR_ERR_NOMEM, "config: out of memory");
        return fr_fail(err, FR_ERR_FORMAT, "config: not valid JSON");
    }
    if (!cJSON_IsObject(root)) {
        st = fr_fail(err, FR_ERR_FORMAT, "config: must be a JSON object");
        goto fail;
    }
    static const char *const top[] = {"name", "family", "classes", "input", "backbone", "anchors",
                                      "rpn", "roi", "head", "box_plus_one", "bbox_clamp", NULL};
    TRY(check_keys(&c, root, top));

    const cJSON *v = item(root, "name");
    if (!cJSON_IsString(v) || !v->valuestring[0]) TRY(bad(&c, "name", "must be a non-empty string"));
    if (strlen(v->valuestring) >= sizeof cfg->name) TRY(bad(&c, "name", "longer than 127 bytes"));
    strcpy(cfg->name, v->valuestring);

    static const char *const families[] = {"detectron2", "py-faster-rcnn", NULL};
    int iv;
    TRY(choice(&c, root, "family", families, NULL, &iv));
    cfg->family = (fr_family)iv;

    v = item(root, "classes");
    if (!cJSON_IsArray(v)) TRY(bad(&c, "classes", "must be an array of strings"));
    int k = cJSON_GetArraySize(v);
    if (k < 1 || k > FR_MAX_CLASSES) TRY(bad(&c, "classes", "must have 1..1000 names"));
    cfg->classes = fr_calloc((size_t)k, sizeof(char *));
    if (!cfg->classes) TRY(fr_fail(err, FR_ERR_NOMEM, "config: out of memory"));
    cfg->num_classes = k;
    int i = 0;
    for (const cJSON *e = v->child; e; e = e->next, i++) {
        if (!cJSON_IsString(e) || !e->valuestring[0] || strlen(e->valuestring) > 255)
            TRY(bad(&c, "classes", "every name must be a string of 1..255 bytes"));
        for (int j = 0; j < i; j++)
            if (!strcmp(cfg->classes[j], e->valuestring))
                TRY(bad(&c, "classes", "duplicate class name"));
        cfg->classes[i] = fr_strdup(e->valuestring);
        if (!cfg->classes[i]) TRY(fr_fail(err, FR_ERR_NOMEM, "config: out of memory"));
    }

    const cJSON *s;
    static const char *const k_input[] = {"format", "pixel_mean", "pixel_std", "min_size",
                                          "max_size", "resize", "exif", NULL};
    TRY(section(&c, root, "input", k_input, &s));
    static const char *const formats[] = {"BGR", "RGB", NULL};
    TRY(choice(&c, s, "format", formats, NULL, &cfg->input_rgb));
    TRY(farray(&c, s, "pixel_mean", 3, 3, -1e4, 1e4, cfg->pixel_mean, NULL));
    TRY(farray(&c, s, "pixel_std", 3, 3, 1e-6, 1e4, cfg->pixel_std, NULL));
    TRY(integer(&c, s, "min_size", 1, 8192, NULL, &cfg->min_size));
    TRY(integer(&c, s, "max_size", 1, 8192, NULL, &cfg->max_size));
    if (cfg->max_size < cfg->min_size) TRY(bad(&c, "max_size", "must be >= min_size"));
    static const char *const resizes[] = {"detectron2", "py-faster-rcnn", NULL};
    TRY(choice(&c, s, "resize", resizes, NULL, &iv));
    cfg->resize = (fr_resize_rule)iv;
    int one = 1, zero = 0;
    TRY(boolean(&c, s, "exif", &one, &cfg->exif));

    static const char *const k_bb[] = {"depth", "stride_in_1x1", "bn_eps", "res5_stride", NULL};
    TRY(section(&c, root, "backbone", k_bb, &s));
    TRY(integer(&c, s, "depth", 50, 152, NULL, &cfg->depth));
    int blocks[4];
    if (fr_config_blocks(cfg->depth, blocks)) TRY(bad(&c, "depth", "must be 50, 101 or 152"));
    TRY(boolean(&c, s, "stride_in_1x1", NULL, &cfg->stride_in_1x1));
    double eps = 1e-5;
    TRY(flt(&c, s, "bn_eps", 0, 1, &eps, &cfg->bn_eps));
    int two = 2;
    TRY(integer(&c, s, "res5_stride", 1, 2, &two, &cfg->res5_stride));

    static const char *const k_an[] = {"style", "stride", "sizes", "ratios", "offset", NULL};
    TRY(section(&c, root, "anchors", k_an, &s));
    static const char *const styles[] = {"detectron2", "py-faster-rcnn", NULL};
    TRY(choice(&c, s, "style", styles, NULL, &iv));
    cfg->anchor_style = (fr_anchor_style)iv;
    TRY(integer(&c, s, "stride", 16, 16, NULL, &cfg->anchor_stride));
    TRY(farray(&c, s, "sizes", 1, FR_MAX_ANCHOR_SIZES, 1, 8192, cfg->sizes, &cfg->num_sizes));
    TRY(farray(&c, s, "ratios", 1, FR_MAX_ANCHOR_RATIOS, 1e-3, 1e3, cfg->ratios, &cfg->num_ratios));
    double off0 = 0;
    TRY(flt(&c, s, "offset", 0, 1, &off0, &cfg->anchor_offset));

    static const char *const k_rpn[] = {"objectness", "pre_nms_topk", "post_nms_topk",
                                        "nms_thresh", "min_size", "box_weights", NULL};
    TRY(section(&c, root, "rpn", k_rpn, &s));
    static const char *const objs[] = {"sigmoid", "softmax2", NULL};
    TRY(choice(&c, s, "objectness", objs, NULL, &iv));
    cfg->objectness = (fr_objectness)iv;
    TRY(integer(&c, s, "pre_nms_topk", 1, 1000000, NULL, &cfg->pre_nms_topk));
    TRY(integer(&c, s, "post_nms_topk", 1, 100000, NULL, &cfg->post_nms_topk));
    TRY(flt(&c, s, "nms_thresh", 0, 1, NULL, &cfg->rpn_nms_thresh));
    TRY(flt(&c, s, "min_size", 0, 1e4, NULL, &cfg->rpn_min_size));
    TRY(farray(&c, s, "box_weights", 4, 4, 1e-6, 1e6, cfg->rpn_box_weights, NULL));

    static const char *const k_roi[] = {"op", "output_size", "spatial_scale", "sampling_ratio",
                                        "aligned", NULL};
    TRY(section(&c, root, "roi", k_roi, &s));
    static const char *const ops[] = {"align", "pool", NULL};
    TRY(choice(&c, s, "op", ops, NULL, &iv));
    cfg->roi_op = (fr_roi_op)iv;
    TRY(integer(&c, s, "output_size", 1, 64, NULL, &cfg->roi_size));
    TRY(flt(&c, s, "spatial_scale", 1e-4, 1, NULL, &cfg->spatial_scale));
    TRY(integer(&c, s, "sampling_ratio", 0, 64, &zero, &cfg->sampling_ratio));
    TRY(boolean(&c, s, "aligned", NULL, &cfg->aligned));

    static const char *const k_head[] = {"background", "class_agnostic", "box_includes_background",
                                         "box_weights", "score_thresh", "nms_thresh",
                                         "detections_per_image", NULL};
    TRY(section(&c, root, "head", k_head, &s));
    static const char *const bgs[] = {"last", "first", NULL};
    TRY(choice(&c, s, "background", bgs, NULL, &iv));
    cfg->background = (fr_background)iv;
    TRY(boolean(&c, s, "class_agnostic", &zero, &cfg->class_agnostic));
    TRY(boolean(&c, s, "box_includes_background", &zero, &cfg->box_includes_background));
    TRY(farray(&c, s, "box_weights", 4, 4, 1e-6, 1e6, cfg->head_box_weights, NULL));
    TRY(flt(&c, s, "score_thresh", 0, 1, NULL, &cfg->score_thresh));
    TRY(flt(&c, s, "nms_thresh", 0, 1, NULL, &cfg->nms_thresh));
    TRY(integer(&c, s, "detections_per_image", 1, 100000, NULL, &cfg->detections_per_image));

    c.section = "";
    TRY(boolean(&c, root, "box_plus_one", &zero, &cfg->box_plus_one));
    double clamp = log(1000.0 / 16); // detectron2 _DEFAULT_SCALE_CLAMP
    TRY(flt(&c, root, "bbox_clamp", 0, 100, &clamp, &cfg->bbox_clamp));

    cJSON_Delete(root);
    return FR_OK;
fail:
    cJSON_Delete(root);
    fr_config_free(cfg);
    return st;
}

fr_status fr_config_load(fr_config *cfg, const char *path, fr_err *err) {
    memset(cfg, 0, sizeof *cfg);
    FILE *f = fopen(path, "rb");
    if (!f) return fr_fail(err, FR_ERR_IO, "config: cannot open %s", path);
    char *buf = fr_malloc(MAX_CONFIG_BYTES + 1);
    if (!buf) {
        fclose(f);
        return fr_fail(err, FR_ERR_NOMEM, "config: out of memory");
    }
    size_t n = fread(buf, 1, MAX_CONFIG_BYTES + 1, f);
    int rerr = ferror(f);
    fclose(f);
    fr_status st;
    if (rerr) st = fr_fail(err, FR_ERR_IO, "config: cannot read %s", path);
    else if (n > MAX_CONFIG_BYTES) st = fr_fail(err, FR_ERR_TOO_LARGE, "config: %s is over 1 MiB", path);
    else {
        st = fr_config_parse(cfg, buf, n, err);
        if (st && err) {
            char m[sizeof err->msg];
            memcpy(m, err->msg, sizeof m);
            snprintf(err->msg, sizeof err->msg, "%.200s: %.300s", path, m);
        }
    }
    fr_free(buf);
    return st;
}

void fr_config_free(fr_config *cfg) {
    if (cfg->classes)
        for (int i = 0; i < cfg->num_classes; i++) fr_free(cfg->classes[i]);
    fr_free(cfg->classes);
    cfg->classes = NULL;
    cfg->num_classes = 0;
}

int fr_config_blocks(int depth, int out[4]) {
    static const int b50[4] = {3, 4, 6, 3}, b101[4] = {3, 4, 23, 3}, b152[4] = {3, 8, 36, 3};
    const int *b = depth == 50 ? b50 : depth == 101 ? b101 : depth == 152 ? b152 : NULL;
    if (!b) return -1;
    memcpy(out, b, sizeof b50);
    return 0;
}

// The shortest decimal that reads back as f (0.7f -> 0.7, not 0.699999988).
static double short_decimal(float f) {
    char buf[32];
    for (int p = 1; p < 10; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)f);
        double d = strtod(buf, NULL);
        if ((float)d == f) return d;
    }
    return f;
}

static cJSON *fnum(float f) { return cJSON_CreateNumber(short_decimal(f)); }

static cJSON *farr(const float *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++) {
        cJSON *x = fnum(v[i]);
        if (!x || !cJSON_AddItemToArray(a, x)) {
            cJSON_Delete(x);
            cJSON_Delete(a);
            return NULL;
        }
    }
    return a;
}

static int add(cJSON *o, const char *k, cJSON *v) {
    if (!v) return -1;
    if (!cJSON_AddItemToObject(o, k, v)) {
        cJSON_Delete(v);
        return -1;
    }
    return 0;
}

char *fr_config_to_json(const fr_config *cfg) {
    cJSON *r = cJSON_CreateObject(), *s;
    int e = !r;
    char *out = NULL;
    if (e) return NULL;
    e |= add(r, "name", cJSON_CreateString(cfg->name));
    e |= add(r, "family", cJSON_CreateString(cfg->family == FR_FAMILY_DETECTRON2 ? "detectron2" : "py-faster-rcnn"));
    e |= add(r, "classes", cJSON_CreateStringArray((const char *const *)cfg->classes, cfg->num_classes));
    e |= add(r, "input", s = cJSON_CreateObject());
    if (!e) {
        e |= add(s, "format", cJSON_CreateString(cfg->input_rgb ? "RGB" : "BGR"));
        e |= add(s, "pixel_mean", farr(cfg->pixel_mean, 3));
        e |= add(s, "pixel_std", farr(cfg->pixel_std, 3));
        e |= add(s, "min_size", cJSON_CreateNumber(cfg->min_size));
        e |= add(s, "max_size", cJSON_CreateNumber(cfg->max_size));
        e |= add(s, "resize", cJSON_CreateString(cfg->resize == FR_RESIZE_DETECTRON2 ? "detectron2" : "py-faster-rcnn"));
        e |= add(s, "exif", cJSON_CreateBool(cfg->exif));
    }
    e |= add(r, "backbone", s = cJSON_CreateObject());
    if (!e) {
        e |= add(s, "depth", cJSON_CreateNumber(cfg->depth));
        e |= add(s, "stride_in_1x1", cJSON_CreateBool(cfg->stride_in_1x1));
        e |= add(s, "bn_eps", fnum(cfg->bn_eps));
        e |= add(s, "res5_stride", cJSON_CreateNumber(cfg->res5_stride));
    }
    e |= add(r, "anchors", s = cJSON_CreateObject());
    if (!e) {
        e |= add(s, "style", cJSON_CreateString(cfg->anchor_style == FR_ANCHORS_DETECTRON2 ? "detectron2" : "py-faster-rcnn"));
        e |= add(s, "stride", cJSON_CreateNumber(cfg->anchor_stride));
        e |= add(s, "sizes", farr(cfg->sizes, cfg->num_sizes));
        e |= add(s, "ratios", farr(cfg->ratios, cfg->num_ratios));
        e |= add(s, "offset", fnum(cfg->anchor_offset));
    }
    e |= add(r, "rpn", s = cJSON_CreateObject());
    if (!e) {
        e |= add(s, "objectness", cJSON_CreateString(cfg->objectness == FR_OBJ_SIGMOID ? "sigmoid" : "softmax2"));
        e |= add(s, "pre_nms_topk", cJSON_CreateNumber(cfg->pre_nms_topk));
        e |= add(s, "post_nms_topk", cJSON_CreateNumber(cfg->post_nms_topk));
        e |= add(s, "nms_thresh", fnum(cfg->rpn_nms_thresh));
        e |= add(s, "min_size", fnum(cfg->rpn_min_size));
        e |= add(s, "box_weights", farr(cfg->rpn_box_weights, 4));
    }
    e |= add(r, "roi", s = cJSON_CreateObject());
    if (!e) {
        e |= add(s, "op", cJSON_CreateString(cfg->roi_op == FR_ROI_ALIGN ? "align" : "pool"));
        e |= add(s, "output_size", cJSON_CreateNumber(cfg->roi_size));
        e |= add(s, "spatial_scale", fnum(cfg->spatial_scale));
        e |= add(s, "sampling_ratio", cJSON_CreateNumber(cfg->sampling_ratio));
        e |= add(s, "aligned", cJSON_CreateBool(cfg->aligned));
    }
    e |= add(r, "head", s = cJSON_CreateObject());
    if (!e) {
        e |= add(s, "background", cJSON_CreateString(cfg->background == FR_BG_LAST ? "last" : "first"));
        e |= add(s, "class_agnostic", cJSON_CreateBool(cfg->class_agnostic));
        e |= add(s, "box_includes_background", cJSON_CreateBool(cfg->box_includes_background));
        e |= add(s, "box_weights", farr(cfg->head_box_weights, 4));
        e |= add(s, "score_thresh", fnum(cfg->score_thresh));
        e |= add(s, "nms_thresh", fnum(cfg->nms_thresh));
        e |= add(s, "detections_per_image", cJSON_CreateNumber(cfg->detections_per_image));
    }
    e |= add(r, "box_plus_one", cJSON_CreateBool(cfg->box_plus_one));
    e |= add(r, "bbox_clamp", fnum(cfg->bbox_clamp));
    if (!e) out = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return out;
}
