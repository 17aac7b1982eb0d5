// safetensors.h - a strict, read-only reader for .safetensors files.
//
// Format: 8-byte little-endian header length N, N bytes of UTF-8 JSON
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//  "__metadata__": {"key": "string", ...}}, then the raw little-endian data.
// Every field is validated before use (catalogue rows W2-W8): header length within the file
// and <= 100,000,000, valid UTF-8 JSON object, known dtype, shape products without overflow,
// offsets contiguous from 0 without gaps or overlap and covering the data exactly, no
// duplicate names, metadata values strings only.
// The whole file is copied into private memory (never mmap'ed), so replacing or truncating
// the file while the process runs cannot crash it (W9).
// Ownership: fr_st_file owns its buffer and tables; fr_st_close frees them.
#ifndef FR_SAFETENSORS_H
#define FR_SAFETENSORS_H

#include "status.h"

#include <stddef.h>
#include <stdint.h>

#define FR_ST_MAX_HEADER 100000000 // the reference implementation's MAX_HEADER_SIZE
#define FR_ST_MAX_DIMS 8

typedef enum {
    FR_DT_F32, FR_DT_F16, FR_DT_BF16, FR_DT_F64, FR_DT_I64, FR_DT_I32, FR_DT_I16, FR_DT_I8,
    FR_DT_U8, FR_DT_BOOL, FR_DT_U16, FR_DT_U32, FR_DT_U64,
} fr_dtype;

typedef struct {
    char *name;                      // owned
    fr_dtype dtype;
    int ndim;
    int64_t shape[FR_ST_MAX_DIMS];
    size_t numel;
    size_t offset, nbytes;           // within the data section
    int used;                        // set by fr_st_read_f32; for reporting unknown tensors
} fr_st_tensor;

typedef struct {
    unsigned char *buf;  // whole file, owned
    size_t size;
    size_t data_start;   // 8 + N
    int n;               // tensors, sorted by offset
    fr_st_tensor *t;
    int nmeta;
    char **meta_key, **meta_val; // owned
} fr_st_file;

// Reads and validates a file. FR_ERR_IO (missing, unreadable), FR_ERR_FORMAT (malformed),
// FR_ERR_TOO_LARGE, FR_ERR_NOMEM. On failure f holds nothing to free.
fr_status fr_st_open(fr_st_file *f, const char *path, fr_err *err);
// Validates a file image already in memory; takes ownership of buf (fr_malloc'd) on success
// and on failure (it is freed).
fr_status fr_st_parse(fr_st_file *f, unsigned char *buf, size_t size, fr_err *err);
void fr_st_close(fr_st_file *f);

const fr_st_tensor *fr_st_find(const fr_st_file *f, const char *name);
const char *fr_st_meta(const fr_st_file *f, const char *key); // NULL when absent

// Converts tensor `name` to float32 into out (numel floats) after checking it exists, has
// dtype F32/F16/BF16, and has exactly the expected shape (ndim dims) and finite values.
// The error names the tensor, its shape and the expected shape. Marks the tensor used.
fr_status fr_st_read_f32(fr_st_file *f, const char *name, int ndim, const int64_t *shape,
                         float *out, fr_err *err);
// Formats a shape as "[a, b, c]" into buf.
const char *fr_st_shape_str(int ndim, const int64_t *shape, char *buf, size_t n);
size_t fr_dtype_size(fr_dtype d);
const char *fr_dtype_name(fr_dtype d);

#endif
