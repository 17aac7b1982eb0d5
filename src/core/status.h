// status.h - error codes and the error buffer every fallible function fills.
//
// Convention: a fallible function returns fr_status (FR_OK == 0) and, on failure,
// writes a one-line human message into the caller's fr_err (never NULL-terminated
// past its buffer). The message names the offending thing (file, tensor, key, value).
#ifndef FR_STATUS_H
#define FR_STATUS_H

#include <stddef.h>

typedef enum {
    FR_OK = 0,
    FR_ERR_IO,          // file missing, unreadable, short read
    FR_ERR_FORMAT,      // malformed file or data (safetensors, JSON, XML, image)
    FR_ERR_INVALID,     // a value out of range or inconsistent (config, option, shape)
    FR_ERR_UNSUPPORTED, // well-formed but not supported (dtype, image type)
    FR_ERR_TOO_LARGE,   // over a documented limit (pixels, bytes, header size)
    FR_ERR_NOMEM,       // allocation failed
    FR_ERR_INTERNAL,    // a bug: an invariant of the code itself broke
} fr_status;

typedef struct {
    fr_status status;
    char msg[512];
} fr_err;

// Records status and a printf-style message in e (e may be NULL); returns status.
fr_status fr_fail(fr_err *e, fr_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

// A short lowercase name for a status ("io", "format", ...).
const char *fr_status_name(fr_status s);

// Asserts the code's own invariants (on in release builds too). Never for input checks.
#define FR_ASSERT(cond)                                                            \
    do {                                                                           \
        if (!(cond)) fr_assert_fail(#cond, __FILE__, __LINE__);                    \
    } while (0)
void fr_assert_fail(const char *cond, const char *file, int line) __attribute__((noreturn));

#endif
