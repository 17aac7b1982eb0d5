// harness.h - the tiny test harness: CHECK macros and the closing "N passed, N failed" line.
//
// Usage: one static int per test function via TEST(name){...}; main calls RUN(name) for
// each and returns harness_done(__FILE__). A CHECK failure prints file:line and marks the
// current test failed; the test goes on (so one run reports every broken check).
#ifndef FR_TEST_HARNESS_H
#define FR_TEST_HARNESS_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int h_passed, h_failed, h_cur_failed;
static const char *h_cur;

#define TEST(name) static void name(void)
// TEST_ONLY=name runs just that test (a developer convenience; make test never sets it).
#define RUN(name)                                                                  \
    do {                                                                           \
        const char *h_only = getenv("TEST_ONLY");                                  \
        if (h_only && *h_only && strcmp(h_only, #name)) break;                     \
        h_cur = #name;                                                             \
        h_cur_failed = 0;                                                          \
        name();                                                                    \
        if (h_cur_failed) h_failed++;                                              \
        else h_passed++;                                                           \
    } while (0)

#define CHECK(cond)                                                                \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "  FAIL %s: %s:%d: %s\n", h_cur, __FILE__, __LINE__, #cond); \
            h_cur_failed = 1;                                                      \
        }                                                                          \
    } while (0)

#define CHECKF(cond, ...)                                                          \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "  FAIL %s: %s:%d: %s: ", h_cur, __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                          \
            fputc('\n', stderr);                                                   \
            h_cur_failed = 1;                                                      \
        }                                                                          \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                      \
    do {                                                                           \
        double h_a = (a), h_b = (b);                                               \
        if (!(fabs(h_a - h_b) <= (tol))) {                                         \
            fprintf(stderr, "  FAIL %s: %s:%d: %s = %.9g, %s = %.9g, tol %g\n", h_cur, \
                    __FILE__, __LINE__, #a, h_a, #b, h_b, (double)(tol));          \
            h_cur_failed = 1;                                                      \
        }                                                                          \
    } while (0)

static inline int harness_done(const char *file) {
    const char *base = strrchr(file, '/');
    printf("%s: %d passed, %d failed\n", base ? base + 1 : file, h_passed, h_failed);
    return h_failed ? 1 : 0;
}

#endif
