// safetensors.c - strict safetensors reader (see safetensors.h).
#include "safetensors.h"

#include "alloc.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const struct {
    const char *name;
    size_t size;
} dtypes[] = {
    [FR_DT_F32] = {"F32", 4}, [FR_DT_F16] = {"F16", 2},   [FR_DT_BF16] = {"BF16", 2},
    [FR_DT_F64] = {"F64", 8}, [FR_DT_I64] = {"I64", 8},   [FR_DT_I32] = {"I32", 4},
    [FR_DT_I16] = {"I16", 2}, [FR_DT_I8] = {"I8", 1},     [FR_DT_U8] = {"U8", 1},
    [FR_DT_BOOL] = {"BOOL", 1}, [FR_DT_U16] = {"U16", 2}, [FR_DT_U32] = {"U32", 4},
    [FR_DT_U64] = {"U64", 8},
};
#define NDTYPES ((int)(sizeof dtypes / sizeof dtypes[0]))

size_t fr_dtype_size(fr_dtype d) { return dtypes[d].size; }
const char *fr_dtype_name(fr_dtype d) { return dtypes[d].name; }

const char *fr_st_shape_str(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, n - o, "[");
    for (int i = 0; i < ndim && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
    return buf;
}

static int valid_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) len = 2, min = 0x80, c &= 0x1F;
        else if ((c & 0xF0) == 0xE0) len = 3, min = 0x800, c &= 0x0F;
        else if ((c & 0xF8) == 0xF0) len = 4, min = 0x10000, c &= 0x07;
        else return 0;
        if (n - i < len) return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            c = (c << 6) | (s[i + k] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
        i += len;
    }
    return 1;
}

static int cmp_offset(const void *a, const void *b) {
    const fr_st_tensor *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

void fr_st_close(fr_st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++) fr_free(f->t[i].name);
    for (int i = 0; i < f->nmeta; i++) {
        fr_free(f->meta_key[i]);
        fr_free(f->meta_val[i]);
    }
    fr_free(f->t);
    fr_free(f->meta_key);
    fr_free(f->meta_val);
    fr_free(f->buf);
    memset(f, 0, sizeof *f);
}

// Reads a JSON number that must be a non-negative integer <= max.
static int json_uint(const cJSON *v, double max, uint64_t *out) {
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0 ||
        v->valuedouble > max || v->valuedouble != floor(v->valuedouble))
        return -1;
    *out = (uint64_t)v->valuedouble;
    return 0;
}

static fr_status parse_meta(fr_st_file *f, const cJSON *m, fr_err *err) {
    if (!cJSON_IsObject(m)) return fr_fail(err, FR_ERR_FORMAT, "safetensors: __metadata__ is not an object");
    int n = cJSON_GetArraySize(m);
    f->meta_key = fr_calloc((size_t)n + 1, sizeof(char *));
    f->meta_val = fr_calloc((size_t)n + 1, sizeof(char *));
    if (!f->meta_key || !f->meta_val) return fr_fail(err, FR_ERR_NOMEM, "safetensors: out of memory");
    for (const cJSON *e = m->child; e; e = e->next) {
        if (!cJSON_IsString(e))
            return fr_fail(err, FR_ERR_FORMAT, "safetensors: __metadata__ value of '%.100s' is not a string",
                           e->string);
        for (int i = 0; i < f->nmeta; i++)
            if (!strcmp(f->meta_key[i], e->string))
                return fr_fail(err, FR_ERR_FORMAT, "safetensors: duplicate __metadata__ key '%.100s'", e->string);
        f->meta_key[f->nmeta] = fr_strdup(e->string);
        f->meta_val[f->nmeta] = fr_strdup(e->valuestring);
        if (!f->meta_key[f->nmeta] || !f->meta_val[f->nmeta]) {
            fr_free(f->meta_key[f->nmeta]);
            fr_free(f->meta_val[f->nmeta]);
            return fr_fail(err, FR_ERR_NOMEM, "safetensors: out of memory");
        }
        f->nmeta++;
    }
    return FR_OK;
}

static fr_status parse_tensor(fr_st_tensor *t, const cJSON *e, fr_err *err) {
    const char *nm = e->string;
    if (!cJSON_IsObject(e)) return fr_fail(err, FR_ERR_FORMAT, "safetensors: tensor '%.100s' is not an object", nm);
    for (const cJSON *k = e->child; k; k = k->next)
        if (strcmp(k->string, "dtype") && strcmp(k->string, "shape") && strcmp(k->string, "data_offsets"))
            return fr_fail(err, FR_ERR_FORMAT, "safetensors: tensor '%.100s': unknown field '%.40s'", nm, k->string);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return fr_fail(err, FR_ERR_FORMAT, "safetensors: tensor '%.100s' lacks dtype, shape or data_offsets", nm);
    int d = -1;
    for (int i = 0; i < NDTYPES; i++)
        if (!strcmp(dt->valuestring, dtypes[i].name)) d = i;
    if (d < 0) return fr_fail(err, FR_ERR_UNSUPPORTED, "safetensors: tensor '%.100s': unknown dtype '%.20s'", nm, dt->valuestring);
    t->dtype = (fr_dtype)d;
    int nd = cJSON_GetArraySize(sh);
    if (nd > FR_ST_MAX_DIMS) return fr_fail(err, FR_ERR_UNSUPPORTED, "safetensors: tensor '%.100s' has %d dims", nm, nd);
    t->ndim = nd;
    uint64_t numel = 1;
    int i = 0;
    for (const cJSON *s = sh->child; s; s = s->next, i++) {
        uint64_t v;
        if (json_uint(s, 9007199254740992.0, &v))
            return fr_fail(err, FR_ERR_FORMAT, "safetensors: tensor '%.100s': bad shape entry", nm);
        if (v && numel > UINT64_MAX / v)
            return fr_fail(err, FR_ERR_FORMAT, "safetensors: tensor '%.100s': shape product overflows", nm);
        numel *= v;
        t->shape[i] = (int64_t)v;
    }
    uint64_t b, en;
    if (json_uint(off->child, 1e18, &b) || json_uint(off->child->next, 1e18, &en) || en < b)
        return fr_fail(err, FR_ERR_FORMAT, "safetensors: tensor '%.100s': bad data_offsets", nm);
    if (numel > SIZE_MAX / 8 || numel * dtypes[d].size != en - b)
        return fr_fail(err, FR_ERR_FORMAT,
                       "safetensors: tensor '%.100s': data_offsets span %llu bytes, shape needs %llu", nm,
                       (unsigned long long)(en - b), (unsigned long long)(numel * dtypes[d].size));
    t->numel = (size_t)numel;
    t->offset = (size_t)b;
    t->nbytes = (size_t)(en - b);
    return FR_OK;
}

fr_status fr_st_parse(fr_st_file *f, unsigned char *buf, size_t size, fr_err *err) {
    memset(f, 0, sizeof *f);
    f->buf = buf;
    f->size = size;
    fr_status st = FR_OK;
    cJSON *root = NULL;
    if (size < 8) {
        st = fr_fail(err, FR_ERR_FORMAT, "safetensors: file of %zu bytes is too short", size);
        goto fail;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | buf[i];
    if (n < 2) {
        st = fr_fail(err, FR_ERR_FORMAT, "safetensors: header length %llu is too small", (unsigned long long)n);
        goto fail;
    }
    if (n > FR_ST_MAX_HEADER) {
        st = fr_fail(err, FR_ERR_TOO_LARGE, "safetensors: header length %llu is over %d", (unsigned long long)n,
                     FR_ST_MAX_HEADER);
        goto fail;
    }
    if (n > size - 8) {
        st = fr_fail(err, FR_ERR_FORMAT, "safetensors: header length %llu is beyond the file (%zu bytes): truncated?",
                     (unsigned long long)n, size);
        goto fail;
    }
    const unsigned char *h = buf + 8;
    if (h[0] != '{') {
        st = fr_fail(err, FR_ERR_FORMAT, "safetensors: header does not start with '{'");
        goto fail;
    }
    if (!valid_utf8(h, (size_t)n)) {
        st = fr_fail(err, FR_ERR_FORMAT, "safetensors: header is not valid UTF-8");
        goto fail;
    }
    fr_alloc_oom_clear();
    root = cJSON_ParseWithLength((const char *)h, (size_t)n);
    if (!root && fr_alloc_oom()) {
        st = fr_fail(err, FR_ERR_NOMEM, "safetensors: out of memory parsing the header");
        goto fail;
    }
    if (!root || !cJSON_IsObject(root)) {
        st = fr_fail(err, FR_ERR_FORMAT, "safetensors: header is not a JSON object");
        goto fail;
    }
    f->data_start = 8 + (size_t)n;
    size_t data_len = size - f->data_start;
    int count = cJSON_GetArraySize(root);
    f->t = fr_calloc((size_t)count + 1, sizeof *f->t);
    if (!f->t) {
        st = fr_fail(err, FR_ERR_NOMEM, "safetensors: out of memory");
        goto fail;
    }
    int have_meta = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) {
            if (have_meta++) {
                st = fr_fail(err, FR_ERR_FORMAT, "safetensors: duplicate __metadata__");
                goto fail;
            }
            if ((st = parse_meta(f, e, err))) goto fail;
            continue;
        }
        fr_st_tensor *t = &f->t[f->n];
        if ((st = parse_tensor(t, e, err))) goto fail;
        t->name = fr_strdup(e->string);
        if (!t->name) {
            st = fr_fail(err, FR_ERR_NOMEM, "safetensors: out of memory");
            goto fail;
        }
        f->n++;
    }
    qsort(f->t, (size_t)f->n, sizeof *f->t, cmp_offset);
    size_t pos = 0;
    for (int i = 0; i < f->n; i++) {
        if (f->t[i].offset != pos) {
            st = fr_fail(err, FR_ERR_FORMAT, "safetensors: tensor '%.100s' starts at %zu, expected %zu (%s)",
                         f->t[i].name, f->t[i].offset, pos, f->t[i].offset < pos ? "overlap" : "gap");
            goto fail;
        }
        pos += f->t[i].nbytes;
    }
    if (pos != data_len) {
        st = fr_fail(err, FR_ERR_FORMAT, "safetensors: tensors cover %zu data bytes but the file has %zu%s", pos,
                     data_len, pos > data_len ? " (truncated?)" : "");
        goto fail;
    }
    // Duplicate names: compare after sorting by name would need a copy; n is small (< 10k).
    for (int i = 0; i < f->n; i++)
        for (int j = i + 1; j < f->n; j++)
            if (!strcmp(f->t[i].name, f->t[j].name)) {
                st = fr_fail(err, FR_ERR_FORMAT, "safetensors: duplicate tensor name '%.100s'", f->t[i].name);
                goto fail;
            }
    cJSON_Delete(root);
    return FR_OK;
fail:
    cJSON_Delete(root);
    fr_st_close(f);
    return st;
}

fr_status fr_st_open(fr_st_file *f, const char *path, fr_err *err) {
    memset(f, 0, sizeof *f);
    FILE *fp = fopen(path, "rb");
    if (!fp) return fr_fail(err, FR_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(fp);
        return fr_fail(err, FR_ERR_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    unsigned char *buf = fr_malloc(size + 1);
    if (!buf) {
        fclose(fp);
        return fr_fail(err, FR_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, size);
    }
    size_t got = fread(buf, 1, size + 1, fp); // +1 detects growth while reading
    int rerr = ferror(fp);
    fclose(fp);
    if (rerr || got != size) {
        fr_free(buf);
        return fr_fail(err, FR_ERR_IO, "%s: %s while reading (file changed?)", path,
                       rerr ? "read error" : "size changed");
    }
    fr_status st = fr_st_parse(f, buf, size, err);
    if (st && err) {
        char m[sizeof err->msg];
        memcpy(m, err->msg, sizeof m);
        snprintf(err->msg, sizeof err->msg, "%.200s: %.300s", path, m);
    }
    return st;
}

const fr_st_tensor *fr_st_find(const fr_st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}

const char *fr_st_meta(const fr_st_file *f, const char *key) {
    for (int i = 0; i < f->nmeta; i++)
        if (!strcmp(f->meta_key[i], key)) return f->meta_val[i];
    return NULL;
}

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else { // subnormal
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            bits = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 0x3FF) << 13;
        }
    } else if (exp == 31) bits = sign | 0x7F800000 | man << 13;
    else bits = sign | (exp + 127 - 15) << 23 | man << 13;
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

fr_status fr_st_read_f32(fr_st_file *f, const char *name, int ndim, const int64_t *shape, float *out,
                         fr_err *err) {
    fr_st_tensor *t = (fr_st_tensor *)fr_st_find(f, name);
    char a[128], b[128];
    if (!t)
        return fr_fail(err, FR_ERR_FORMAT, "missing tensor '%s' (expected shape %s)", name,
                       fr_st_shape_str(ndim, shape, b, sizeof b));
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same)
        return fr_fail(err, FR_ERR_FORMAT, "tensor '%s' has shape %s, expected %s", name,
                       fr_st_shape_str(t->ndim, t->shape, a, sizeof a), fr_st_shape_str(ndim, shape, b, sizeof b));
    const unsigned char *p = f->buf + f->data_start + t->offset;
    switch (t->dtype) {
    case FR_DT_F32: memcpy(out, p, t->nbytes); break;
    case FR_DT_F16:
        for (size_t i = 0; i < t->numel; i++) out[i] = half_to_float((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        break;
    case FR_DT_BF16:
        for (size_t i = 0; i < t->numel; i++) {
            uint32_t bits = (uint32_t)(p[2 * i] | p[2 * i + 1] << 8) << 16;
            memcpy(&out[i], &bits, 4);
        }
        break;
    default:
        return fr_fail(err, FR_ERR_UNSUPPORTED, "tensor '%s' has dtype %s, expected F32, F16 or BF16", name,
                       fr_dtype_name(t->dtype));
    }
    for (size_t i = 0; i < t->numel; i++)
        if (!isfinite(out[i]))
            return fr_fail(err, FR_ERR_INVALID, "tensor '%s' has a non-finite value at index %zu", name, i);
    t->used = 1;
    return FR_OK;
}
