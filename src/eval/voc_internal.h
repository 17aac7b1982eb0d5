// voc_internal.h - helpers shared by the src/eval/*.c files (not part of the public API).
#ifndef FR_VOC_INTERNAL_H
#define FR_VOC_INTERNAL_H

#include "core/status.h"

#include <stddef.h>

// Reads a whole file into a NUL-terminated buffer (fr_free). FR_ERR_IO (message names the
// path and errno), FR_ERR_TOO_LARGE when it holds more than cap bytes, FR_ERR_NOMEM.
fr_status fr_voc_read_file(const char *path, size_t cap, char **buf, size_t *len, fr_err *err);

// A growable byte buffer (fr_malloc'd, NUL-terminated after every append).
typedef struct {
    char *p;
    size_t n, cap;
} fr_voc_buf;

// Appends n bytes; -1 on allocation failure.
int fr_voc_buf_add(fr_voc_buf *b, const char *s, size_t n);
void fr_voc_buf_free(fr_voc_buf *b);

// 1 for the bytes Python's str.strip() removes among ASCII: space, \t \n \v \f \r, 0x1c-0x1f.
int fr_voc_is_space(unsigned char c);

// Writes "a/b" into buf; -1 if it does not fit.
int fr_voc_join(char *buf, size_t cap, const char *a, const char *b);

#endif
