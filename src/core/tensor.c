// tensor.c - bump arena (see tensor.h).
#include "tensor.h"

#include "alloc.h"
#include "status.h"

#include <string.h>

int fr_arena_init(fr_arena *a, size_t cap) {
    memset(a, 0, sizeof *a);
    a->base = fr_aligned_alloc(cap);
    if (!a->base) return FR_ERR_NOMEM;
    a->cap = cap;
    return FR_OK;
}

void fr_arena_init_dry(fr_arena *a) {
    memset(a, 0, sizeof *a);
    a->dry = 1;
    a->cap = SIZE_MAX;
}

void fr_arena_free(fr_arena *a) {
    fr_free(a->base);
    memset(a, 0, sizeof *a);
}

void *fr_arena_alloc(fr_arena *a, size_t n) {
    size_t need = (n + 63) & ~(size_t)63;
    if (need < n || a->cap - a->used < need) return NULL;
    void *p = a->dry ? NULL : a->base + a->used;
    a->used += need;
    if (a->used > a->peak) a->peak = a->used;
    return p;
}

int fr_arena_tensor(fr_arena *a, fr_tensor *t, int n, int h, int w, int c) {
    t->n = n;
    t->h = h;
    t->w = w;
    t->c = c;
    if (n < 0 || h < 0 || w < 0 || c < 0) return -1;
    size_t numel = (size_t)n * (size_t)h * (size_t)w * (size_t)c;
    if (numel > SIZE_MAX / sizeof(float)) return -1;
    t->data = fr_arena_alloc(a, numel * sizeof(float));
    if (!t->data && !a->dry) return -1;
    return 0;
}
