// status.c - error recording and the release-mode assert.
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

fr_status fr_fail(fr_err *e, fr_status status, const char *fmt, ...) {
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
        e->status = status;
    }
    return status;
}

const char *fr_status_name(fr_status s) {
    switch (s) {
    case FR_OK: return "ok";
    case FR_ERR_IO: return "io";
    case FR_ERR_FORMAT: return "format";
    case FR_ERR_INVALID: return "invalid";
    case FR_ERR_UNSUPPORTED: return "unsupported";
    case FR_ERR_TOO_LARGE: return "too large";
    case FR_ERR_NOMEM: return "out of memory";
    case FR_ERR_INTERNAL: return "internal";
    }
    return "unknown";
}

void fr_assert_fail(const char *cond, const char *file, int line) {
    fprintf(stderr, "frcnn: assertion failed: %s (%s:%d)\n", cond, file, line);
    abort();
}
