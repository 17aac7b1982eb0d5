// test_core.c - status, allocation hook and arena.
#include "core/alloc.h"
#include "core/status.h"
#include "core/tensor.h"
#include "harness.h"

#include <stdint.h>

TEST(test_fail_message) {
    fr_err e = {0};
    CHECK(fr_fail(&e, FR_ERR_INVALID, "x=%d", 3) == FR_ERR_INVALID);
    CHECK(e.status == FR_ERR_INVALID);
    CHECK(strcmp(e.msg, "x=3") == 0);
    CHECK(fr_fail(NULL, FR_ERR_IO, "ignored") == FR_ERR_IO);
}

TEST(test_alloc_hook) {
    fr_alloc_fail_at(2);
    void *a = fr_malloc(8);
    void *b = fr_malloc(8);
    void *c = fr_malloc(8);
    CHECK(a != NULL);
    CHECK(b == NULL);
    CHECK(c != NULL);
    CHECK(fr_alloc_failed());
    fr_free(a);
    fr_free(c);
    fr_alloc_fail_at(0);
    CHECK(fr_calloc(SIZE_MAX / 2, 4) == NULL);
}

TEST(test_arena) {
    fr_arena a;
    CHECK(fr_arena_init(&a, 2048) == FR_OK);
    fr_tensor t;
    CHECK(fr_arena_tensor(&a, &t, 1, 2, 3, 4) == 0);
    CHECK(((uintptr_t)t.data & 63) == 0);
    size_t m = fr_arena_mark(&a);
    CHECK(fr_arena_tensor(&a, &t, 1, 16, 16, 1) == 0);
    CHECK(fr_arena_tensor(&a, &t, 1, 16, 16, 4) == -1); // full
    fr_arena_reset(&a, m);
    CHECK(a.used == m);
    CHECK(a.peak == 128 + 1024);
    fr_arena_free(&a);

    fr_arena d;
    fr_arena_init_dry(&d);
    CHECK(fr_arena_tensor(&d, &t, 2, 100, 100, 64) == 0);
    CHECK(t.data == NULL);
    CHECK(d.peak == (size_t)2 * 100 * 100 * 64 * 4);
}

int main(void) {
    RUN(test_fail_message);
    RUN(test_alloc_hook);
    RUN(test_arena);
    return harness_done(__FILE__);
}
