// tensor.h - non-owning NHWC float views and the bump arena that backs them.
//
// Activations are float32, channels-last: element (n, y, x, c) lives at
// data[((n * h + y) * w + x) * c + c]. A tensor never owns its data: memory belongs to
// an fr_arena (per-inference scratch) or to the model's weight storage.
//
// The arena is planned once: run the pipeline with a "dry" arena (no memory, compute
// skipped, only sizes counted) for the largest input, then allocate that peak once.
#ifndef FR_TENSOR_H
#define FR_TENSOR_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    float *data; // NULL in a dry run
    int n, h, w, c;
} fr_tensor;

static inline size_t fr_tensor_numel(const fr_tensor *t) {
    return (size_t)t->n * (size_t)t->h * (size_t)t->w * (size_t)t->c;
}

typedef struct {
    unsigned char *base; // owned; NULL for a dry arena
    size_t cap;          // bytes available (dry: unlimited)
    size_t used;         // bytes in use now
    size_t peak;         // largest `used` seen
    int dry;             // 1: count only, return NULL data
} fr_arena;

// Allocates an arena of cap bytes (64-byte aligned). FR_ERR_NOMEM on failure.
int fr_arena_init(fr_arena *a, size_t cap);
void fr_arena_init_dry(fr_arena *a); // counting arena, no memory
void fr_arena_free(fr_arena *a);

// Returns 64-byte aligned memory of n bytes, or NULL when the arena is full (or dry).
// Callers check a->dry before treating NULL as an error; fr_arena_tensor does.
void *fr_arena_alloc(fr_arena *a, size_t n);

// Allocates an n x h x w x c tensor in the arena. Returns 0, or -1 when full.
int fr_arena_tensor(fr_arena *a, fr_tensor *t, int n, int h, int w, int c);

static inline size_t fr_arena_mark(const fr_arena *a) { return a->used; }
static inline void fr_arena_reset(fr_arena *a, size_t mark) { a->used = mark; }

#endif
