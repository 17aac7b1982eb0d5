// alloc.c - counted allocation with injected failures (see alloc.h).
#include "alloc.h"

#include <cjson/cJSON.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static atomic_long g_count;   // test hook: allocations since the last arm
static atomic_long g_fail_at; // test hook: 0 = never
static atomic_int g_failed;
static _Thread_local int t_oom; // per-thread indicator, see fr_alloc_oom

void fr_alloc_oom_clear(void) { t_oom = 0; }
int fr_alloc_oom(void) { return t_oom; }

void fr_alloc_fail_at(long k) {
    atomic_store(&g_count, 0);
    atomic_store(&g_failed, 0);
    atomic_store(&g_fail_at, k);
}
long fr_alloc_count(void) { return atomic_load(&g_count); }
int fr_alloc_failed(void) { return atomic_load(&g_failed); }

static int should_fail(void) {
    long n = atomic_fetch_add(&g_count, 1) + 1;
    long k = atomic_load(&g_fail_at);
    if (k > 0 && n == k) {
        atomic_store(&g_failed, 1);
        return 1;
    }
    return 0;
}

static void *oom(void) {
    t_oom = 1;
    return NULL;
}

void *fr_malloc(size_t n) {
    if (should_fail()) return oom();
    void *p = malloc(n ? n : 1);
    return p ? p : oom();
}

void *fr_calloc(size_t count, size_t n) {
    if (n && count > SIZE_MAX / n) return oom();
    if (should_fail()) return oom();
    void *p = calloc(count ? count : 1, n ? n : 1);
    return p ? p : oom();
}

void *fr_realloc(void *p, size_t n) {
    if (should_fail()) return oom();
    void *q = realloc(p, n ? n : 1);
    return q ? q : oom();
}

void *fr_aligned_alloc(size_t n) {
    if (should_fail()) return oom();
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 64) != 0) return oom();
    return p;
}

char *fr_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = fr_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

void fr_free(void *p) { free(p); }

void fr_alloc_init(void) {
    cJSON_Hooks h = {fr_malloc, fr_free};
    cJSON_InitHooks(&h);
}
