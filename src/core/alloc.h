// alloc.h - the one allocation path, with a fault-injection hook for tests.
//
// Every heap allocation in frcnn goes through these functions so that tests can fail
// the k-th allocation (fr_alloc_fail_at) and check that each failure is a clean error.
// cJSON is routed here too (fr_alloc_init hooks it). Thread-safe counters.
#ifndef FR_ALLOC_H
#define FR_ALLOC_H

#include <stddef.h>

void *fr_malloc(size_t n);              // NULL on failure (or injected failure); n == 0 -> 1 byte
void *fr_calloc(size_t count, size_t n); // zeroed; NULL on overflow of count*n or failure
void *fr_realloc(void *p, size_t n);    // like realloc; p kept on failure
void *fr_aligned_alloc(size_t n);       // 64-byte aligned, free with fr_free
char *fr_strdup(const char *s);
void fr_free(void *p);

// Per-thread out-of-memory indicator (like errno): set when an allocation on this thread
// fails. Lets callers of libraries that report every failure alike (cJSON returns NULL for
// both bad JSON and no memory) tell the two apart: clear, call, then test.
void fr_alloc_oom_clear(void);
int fr_alloc_oom(void);

// Installs cJSON hooks so cJSON allocations are counted and can be failed. Idempotent.
void fr_alloc_init(void);

// Test hooks: fail the k-th allocation counted from now (k >= 1), or never (k = 0).
void fr_alloc_fail_at(long k);
long fr_alloc_count(void);       // allocations made since the last fr_alloc_fail_at()
int fr_alloc_failed(void);       // 1 if the injected failure has fired

#endif
