// fixture.h - reading golden tensors written by tools/reference (safetensors files).
#ifndef FR_TEST_FIXTURE_H
#define FR_TEST_FIXTURE_H

#include "core/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

// Path of a generated fixture: $FIXTURES/name (default build/fixtures).
static inline const char *fixture_path(const char *name) {
    static char buf[1024];
    const char *dir = getenv("FIXTURES");
    snprintf(buf, sizeof buf, "%s/%s", dir && *dir ? dir : "build/fixtures", name);
    return buf;
}

// Returns a malloc'd float copy of tensor `name` and its shape; NULL (with a message) if absent.
static inline float *fixture_tensor(fr_st_file *f, const char *name, int *ndim, int64_t shape[8]) {
    const fr_st_tensor *t = fr_st_find(f, name);
    if (!t) {
        fprintf(stderr, "  fixture tensor '%s' missing\n", name);
        return NULL;
    }
    float *out = malloc((t->numel + 1) * sizeof(float));
    fr_err e = {0};
    if (fr_st_read_f32(f, name, t->ndim, t->shape, out, &e)) {
        fprintf(stderr, "  fixture: %s\n", e.msg);
        free(out);
        return NULL;
    }
    *ndim = t->ndim;
    for (int i = 0; i < t->ndim; i++) shape[i] = t->shape[i];
    return out;
}

// max |a - b| / rms(b) over n values.
static inline double rel_max_err(const float *a, const float *b, size_t n, double *max_abs, double *rms_out) {
    double m = 0, ss = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d; // NaN propagates as a failure
        ss += (double)b[i] * b[i];
    }
    double rms = sqrt(ss / (n ? n : 1));
    if (max_abs) *max_abs = m;
    if (rms_out) *rms_out = rms;
    return m / (rms > 0 ? rms : 1);
}

#endif
