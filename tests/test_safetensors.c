// test_safetensors.c - the safetensors reader against catalogue rows W1-W9 and dtypes.
#include "core/alloc.h"
#include "core/safetensors.h"
#include "harness.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

// Builds a file image: 8-byte length + header + data.
static unsigned char *build(const char *header, const void *data, size_t dlen, size_t *size) {
    size_t n = strlen(header);
    *size = 8 + n + dlen;
    unsigned char *b = fr_malloc(*size);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(b + 8, header, n);
    if (dlen) memcpy(b + 8 + n, data, dlen);
    return b;
}

static fr_status parse(const char *header, const void *data, size_t dlen, fr_err *e) {
    size_t size;
    unsigned char *b = build(header, data, dlen, &size);
    fr_st_file f;
    fr_status s = fr_st_parse(&f, b, size, e);
    if (!s) fr_st_close(&f);
    return s;
}

static const float vals[6] = {1, -2, 3.5f, 0, 65504, -0.25f};

TEST(test_valid_and_dtypes) {
    unsigned char data[24 + 12 + 12];
    memcpy(data, vals, 24);
    uint16_t f16[6] = {0x3C00, 0xC000, 0x4300, 0x0000, 0x7BFF, 0xB400};
    memcpy(data + 24, f16, 12);
    uint16_t bf[6];
    for (int i = 0; i < 6; i++) {
        uint32_t u;
        memcpy(&u, &vals[i], 4);
        bf[i] = (uint16_t)(u >> 16);
    }
    memcpy(data + 36, bf, 12);
    const char *h = "{\"__metadata__\":{\"frcnn.config\":\"{}\",\"k\":\"v\"},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                    "\"c\":{\"dtype\":\"BF16\",\"shape\":[6],\"data_offsets\":[36,48]},"
                    "\"b\":{\"dtype\":\"F16\",\"shape\":[3,2],\"data_offsets\":[24,36]}}";
    size_t size;
    unsigned char *buf = build(h, data, sizeof data, &size);
    fr_st_file f;
    fr_err e = {0};
    CHECKF(fr_st_parse(&f, buf, size, &e) == FR_OK, "%s", e.msg);
    CHECK(f.n == 3);
    CHECK(strcmp(fr_st_meta(&f, "k"), "v") == 0);
    CHECK(fr_st_meta(&f, "nope") == NULL);
    float out[6];
    int64_t s23[2] = {2, 3}, s32[2] = {3, 2}, s6[1] = {6};
    CHECK(fr_st_read_f32(&f, "a", 2, s23, out, &e) == FR_OK);
    CHECK(memcmp(out, vals, 24) == 0);
    CHECK(fr_st_read_f32(&f, "b", 2, s32, out, &e) == FR_OK);
    for (int i = 0; i < 6; i++) CHECK(out[i] == vals[i]);
    CHECK(fr_st_read_f32(&f, "c", 1, s6, out, &e) == FR_OK);
    for (int i = 0; i < 6; i++) CHECK(out[i] == (i == 4 ? 65280.0f : vals[i])); // bf16 truncates 65504
    // W6: wrong shape and missing tensor name the tensor and both shapes
    CHECK(fr_st_read_f32(&f, "a", 2, s32, out, &e) == FR_ERR_FORMAT);
    CHECKF(strstr(e.msg, "'a'") && strstr(e.msg, "[2, 3]") && strstr(e.msg, "[3, 2]"), "%s", e.msg);
    CHECK(fr_st_read_f32(&f, "zz", 1, s6, out, &e) == FR_ERR_FORMAT);
    CHECKF(strstr(e.msg, "missing tensor 'zz'") != NULL, "%s", e.msg);
    fr_st_close(&f);
}

TEST(test_subnormal_half) {
    uint16_t h[2] = {0x0001, 0x8400}; // smallest subnormal, -2^-14
    fr_err e = {0};
    size_t size;
    unsigned char *buf = build("{\"x\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", h, 4, &size);
    fr_st_file f;
    CHECK(fr_st_parse(&f, buf, size, &e) == FR_OK);
    float out[2];
    int64_t s2[1] = {2};
    CHECK(fr_st_read_f32(&f, "x", 1, s2, out, &e) == FR_OK);
    CHECK(out[0] == ldexpf(1, -24));
    CHECK(out[1] == -ldexpf(1, -14));
    fr_st_close(&f);
}

TEST(test_bad_headers) {
    fr_err e = {0};
    float d[8] = {0}; // 24 bytes used; 32 so the 28-byte "too long" case reads inside it
    const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[0,24]}}";
    CHECK(parse(ok, d, 24, &e) == FR_OK);
    // W2: truncated in the data / in the header
    CHECK(parse(ok, d, 20, &e) == FR_ERR_FORMAT);
    CHECKF(strstr(e.msg, "truncated") != NULL, "%s", e.msg);
    {
        size_t size;
        unsigned char *b = build(ok, d, 24, &size);
        fr_st_file f;
        CHECK(fr_st_parse(&f, b, 8 + 10, &e) == FR_ERR_FORMAT); // cut inside the header
        b = build(ok, d, 24, &size);
        CHECK(fr_st_parse(&f, b, 5, &e) == FR_ERR_FORMAT); // cut inside the length
    }
    // W3: header length 0 and > 100,000,000
    {
        unsigned char *b = fr_malloc(16);
        memset(b, 0, 16);
        fr_st_file f;
        CHECK(fr_st_parse(&f, b, 16, &e) == FR_ERR_FORMAT);
        b = fr_malloc(16);
        memset(b, 0, 16);
        uint64_t big = 100000001;
        memcpy(b, &big, 8);
        CHECK(fr_st_parse(&f, b, 16, &e) == FR_ERR_TOO_LARGE);
        b = fr_malloc(16);
        memset(b, 0xff, 16);
        CHECK(fr_st_parse(&f, b, 16, &e) == FR_ERR_TOO_LARGE);
    }
    // W4: not starting with '{', not JSON, not UTF-8, not an object
    CHECK(parse(" {}", NULL, 0, &e) == FR_ERR_FORMAT);
    CHECK(parse("{\"a\":", NULL, 0, &e) == FR_ERR_FORMAT);
    CHECK(parse("{\"\xff\xfe\":{}}", NULL, 0, &e) == FR_ERR_FORMAT);
    CHECKF(strstr(e.msg, "UTF-8") != NULL, "%s", e.msg);
    CHECK(parse("{\"\xc0\xaf\":1}", NULL, 0, &e) == FR_ERR_FORMAT); // overlong encoding
    CHECK(parse("{}", NULL, 0, &e) == FR_OK);                       // empty file is valid
    // W5: overlap, gap, end < begin, size mismatch, shape overflow, negative, fractional
    CHECK(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[8,20]}}", d, 24, &e) == FR_ERR_FORMAT);
    CHECKF(strstr(e.msg, "overlap") != NULL, "%s", e.msg);
    CHECK(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}", d, 24, &e) == FR_ERR_FORMAT);
    CHECKF(strstr(e.msg, "gap") != NULL, "%s", e.msg);
    CHECK(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[24,0]}}", d, 24, &e) == FR_ERR_FORMAT);
    CHECK(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[5],\"data_offsets\":[0,24]}}", d, 24, &e) == FR_ERR_FORMAT);
    CHECK(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
                "\"data_offsets\":[0,24]}}", d, 24, &e) == FR_ERR_FORMAT);
    CHECK(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[-6],\"data_offsets\":[0,24]}}", d, 24, &e) == FR_ERR_FORMAT);
    CHECK(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[6.5],\"data_offsets\":[0,24]}}", d, 24, &e) == FR_ERR_FORMAT);
    CHECK(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[0,24]}}", d, 28, &e) == FR_ERR_FORMAT);
    CHECK(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[0]}}", d, 24, &e) == FR_ERR_FORMAT);
    CHECK(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":\"6\",\"data_offsets\":[0,24]}}", d, 24, &e) == FR_ERR_FORMAT);
    CHECK(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,6],\"data_offsets\":[0,24]}}", d, 24, &e) ==
          FR_ERR_UNSUPPORTED);
    CHECK(parse("{\"a\":{\"dtype\":\"Q4\",\"shape\":[6],\"data_offsets\":[0,24]}}", d, 24, &e) == FR_ERR_UNSUPPORTED);
    CHECK(parse("{\"a\":[1,2]}", d, 0, &e) == FR_ERR_FORMAT);
    // W8: metadata values must be strings; duplicate names rejected
    CHECK(parse("{\"__metadata__\":{\"a\":1}}", NULL, 0, &e) == FR_ERR_FORMAT);
    CHECK(parse("{\"__metadata__\":[\"a\"]}", NULL, 0, &e) == FR_ERR_FORMAT);
    CHECK(parse("{\"__metadata__\":{\"a\":\"x\",\"a\":\"y\"}}", NULL, 0, &e) == FR_ERR_FORMAT);
    CHECK(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
                "\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[12,24]}}", d, 24, &e) == FR_ERR_FORMAT);
    CHECKF(strstr(e.msg, "duplicate") != NULL, "%s", e.msg);
}

TEST(test_dtype_and_nan) {
    fr_err e = {0};
    int32_t iv[6] = {0};
    size_t size;
    unsigned char *b = build("{\"i\":{\"dtype\":\"I32\",\"shape\":[6],\"data_offsets\":[0,24]}}", iv, 24, &size);
    fr_st_file f;
    CHECK(fr_st_parse(&f, b, size, &e) == FR_OK);
    float out[6];
    int64_t s6[1] = {6};
    CHECK(fr_st_read_f32(&f, "i", 1, s6, out, &e) == FR_ERR_UNSUPPORTED);
    CHECKF(strstr(e.msg, "'i'") && strstr(e.msg, "I32"), "%s", e.msg);
    fr_st_close(&f);
    // W7: one NaN or Inf is refused with the tensor name
    float nv[6] = {1, 2, NAN, 4, 5, 6};
    b = build("{\"w\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[0,24]}}", nv, 24, &size);
    CHECK(fr_st_parse(&f, b, size, &e) == FR_OK);
    CHECK(fr_st_read_f32(&f, "w", 1, s6, out, &e) == FR_ERR_INVALID);
    CHECKF(strstr(e.msg, "'w'") && strstr(e.msg, "index 2"), "%s", e.msg);
    fr_st_close(&f);
    uint16_t hinf[6] = {0x3C00, 0x7C00, 0, 0, 0, 0};
    b = build("{\"h\":{\"dtype\":\"F16\",\"shape\":[6],\"data_offsets\":[0,12]}}", hinf, 12, &size);
    CHECK(fr_st_parse(&f, b, size, &e) == FR_OK);
    CHECK(fr_st_read_f32(&f, "h", 1, s6, out, &e) == FR_ERR_INVALID);
    fr_st_close(&f);
}

TEST(test_files) {
    fr_err e = {0};
    fr_st_file f;
    // W1: missing file, a directory
    CHECK(fr_st_open(&f, "tests/tmp/definitely-missing.safetensors", &e) == FR_ERR_IO);
    CHECKF(strstr(e.msg, "definitely-missing") != NULL, "%s", e.msg);
    CHECK(fr_st_open(&f, "tests", &e) == FR_ERR_IO);
    // W9: the file is truncated after loading: the loaded copy still reads fine
    mkdir("tests/tmp", 0755);
    const char *path = "tests/tmp/w9.safetensors";
    size_t size;
    unsigned char *b = build("{\"a\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[0,24]}}", vals, 24, &size);
    FILE *fp = fopen(path, "wb");
    CHECK(fp && fwrite(b, 1, size, fp) == size);
    fclose(fp);
    fr_free(b);
    CHECK(fr_st_open(&f, path, &e) == FR_OK);
    CHECK(truncate(path, 10) == 0);
    float out[6];
    int64_t s6[1] = {6};
    CHECK(fr_st_read_f32(&f, "a", 1, s6, out, &e) == FR_OK);
    CHECK(out[4] == 65504);
    fr_st_close(&f);
    CHECK(fr_st_open(&f, path, &e) == FR_ERR_FORMAT); // now truncated on disk
    unlink(path);
}

TEST(test_alloc_failures) {
    const char *h = "{\"__metadata__\":{\"k\":\"v\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}";
    fr_alloc_init();
    int fired = 0;
    for (long k = 1; k < 200; k++) {
        size_t size;
        unsigned char *b = build(h, vals, 24, &size); // before arming
        fr_st_file f;
        fr_err e = {0};
        fr_alloc_fail_at(k);
        fr_status s = fr_st_parse(&f, b, size, &e);
        int hit = fr_alloc_failed();
        fr_alloc_fail_at(0);
        if (!hit) {
            CHECK(s == FR_OK);
            fr_st_close(&f);
            break;
        }
        fired++;
        CHECKF(s != FR_OK, "k=%ld", k);
    }
    CHECK(fired >= 5);
}

int main(void) {
    RUN(test_valid_and_dtypes);
    RUN(test_subnormal_half);
    RUN(test_bad_headers);
    RUN(test_dtype_and_nan);
    RUN(test_files);
    RUN(test_alloc_failures);
    return harness_done(__FILE__);
}
