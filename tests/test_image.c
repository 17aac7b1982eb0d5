// test_image.c - image decode (hardened stb), the bad-input rows I1-I19 of
// shared/docs/bad-inputs.md, EXIF orientation, resize rules and the two preprocessing pipelines
// against golden data from tools/reference/fx_image.py (PIL, torch, OpenCV emulation).
#include "core/alloc.h"
#include "core/config.h"
#include "core/image.h"
#include "harness.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#define DATA "tests/data/images/"

// ---- helpers ------------------------------------------------------------------------------

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(sz > 0 ? (size_t)sz : 1);
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *n = (size_t)sz;
    return b;
}

static const char *fixtures(void) {
    const char *f = getenv("FIXTURES");
    return f && *f ? f : "build/fixtures";
}

static unsigned char *fixture(const char *name, size_t *n) {
    char p[1024];
    snprintf(p, sizeof p, "%s/image/%s", fixtures(), name);
    return slurp(p, n);
}

static fr_status dec(fr_image *img, const unsigned char *b, size_t n, fr_err *e) {
    return fr_image_decode(img, b, n, NULL, 1, e);
}

// Decodes and expects a given status; returns 1 if it matched.
static int expect_status(const unsigned char *b, size_t n, const fr_image_limits *lim,
                         fr_status want, const char *what) {
    fr_image img;
    fr_err e = {0};
    fr_status rc = fr_image_decode(&img, b, n, lim, 1, &e);
    if (rc == FR_OK) fr_image_free(&img);
    if (rc != want) {
        fprintf(stderr, "    %s: got %s (%s), want %s\n", what, fr_status_name(rc), e.msg,
                fr_status_name(want));
        return 0;
    }
    if (rc != FR_OK && !e.msg[0]) return 0;
    return 1;
}

static uint32_t crc32_calc(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xFFFFFFFFu;
}

typedef struct {
    unsigned char *b;
    size_t n, cap;
} buf;

static void put(buf *o, const void *p, size_t n) {
    if (o->n + n > o->cap) {
        o->cap = (o->n + n) * 2 + 64;
        o->b = realloc(o->b, o->cap);
    }
    memcpy(o->b + o->n, p, n);
    o->n += n;
}
static void put32(buf *o, uint32_t v) {
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
                          (unsigned char)v};
    put(o, b, 4);
}
static void chunk(buf *o, const char *type, const unsigned char *d, size_t n) {
    put32(o, (uint32_t)n);
    size_t at = o->n;
    put(o, type, 4);
    if (n) put(o, d, n);
    put32(o, crc32_calc(o->b + at, n + 4));
}

// zlib stream of stored blocks (no compression) for raw.
static void zstored(buf *o, const unsigned char *raw, size_t n) {
    unsigned char hdr[2] = {0x78, 0x01};
    put(o, hdr, 2);
    size_t i = 0;
    do {
        size_t k = n - i > 65535 ? 65535 : n - i;
        unsigned char h[5] = {(unsigned char)(i + k == n), (unsigned char)k, (unsigned char)(k >> 8),
                              (unsigned char)~k, (unsigned char)(~k >> 8)};
        put(o, h, 5);
        if (k) put(o, raw + i, k);
        i += k;
    } while (i < n);
    uint32_t a = 1, b2 = 0;
    for (size_t j = 0; j < n; j++) {
        a = (a + raw[j]) % 65521;
        b2 = (b2 + a) % 65521;
    }
    put32(o, b2 << 16 | a);
}

// A PNG from filtered scanlines `raw` (each row: filter byte 0 + data). extra: chunks placed
// before IDAT (already encoded). iend: whether to append IEND.
static buf make_png(uint32_t w, uint32_t h, int depth, int ctype, int interlace,
                    const unsigned char *raw, size_t rawn, const buf *extra, int iend) {
    buf o = {0};
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    put(&o, sig, 8);
    unsigned char ihdr[13] = {(unsigned char)(w >> 24), (unsigned char)(w >> 16), (unsigned char)(w >> 8),
                              (unsigned char)w, (unsigned char)(h >> 24), (unsigned char)(h >> 16),
                              (unsigned char)(h >> 8), (unsigned char)h, (unsigned char)depth,
                              (unsigned char)ctype, 0, 0, (unsigned char)interlace};
    chunk(&o, "IHDR", ihdr, 13);
    if (extra && extra->n) put(&o, extra->b, extra->n);
    buf z = {0};
    zstored(&z, raw, rawn);
    chunk(&o, "IDAT", z.b, z.n);
    free(z.b);
    if (iend) chunk(&o, "IEND", NULL, 0);
    return o;
}

// Filtered scanlines (filter 0) for w x h pixels of bpp bytes from px.
static unsigned char *scanlines(const unsigned char *px, int w, int h, int bpp, size_t *n) {
    *n = (size_t)h * (1 + (size_t)w * bpp);
    unsigned char *r = malloc(*n);
    for (int y = 0; y < h; y++) {
        r[(size_t)y * (1 + w * bpp)] = 0;
        memcpy(r + (size_t)y * (1 + w * bpp) + 1, px + (size_t)y * w * bpp, (size_t)w * bpp);
    }
    return r;
}

// Offset of the first JPEG marker 0xFF m (segment walk from SOI), or 0 if none.
static size_t jpeg_find(const unsigned char *b, size_t n, int m) {
    size_t p = 2;
    while (p + 4 <= n && b[p] == 0xFF) {
        if (b[p + 1] == m) return p;
        if (b[p + 1] == 0xDA || b[p + 1] == 0xD9) return 0;
        p += 2 + ((size_t)b[p + 2] << 8 | b[p + 3]);
    }
    return 0;
}

// b with `seg` inserted at offset `at`.
static buf splice(const unsigned char *b, size_t n, size_t at, const unsigned char *seg, size_t sn) {
    buf o = {0};
    put(&o, b, at);
    put(&o, seg, sn);
    put(&o, b + at, n - at);
    return o;
}

static fr_config cfg_d2(void) {
    fr_config c;
    memset(&c, 0, sizeof c);
    c.family = FR_FAMILY_DETECTRON2;
    c.resize = FR_RESIZE_DETECTRON2;
    c.input_rgb = 0;
    c.pixel_mean[0] = 103.530f, c.pixel_mean[1] = 116.280f, c.pixel_mean[2] = 123.675f;
    c.pixel_std[0] = c.pixel_std[1] = c.pixel_std[2] = 1.0f;
    c.min_size = 800, c.max_size = 1333;
    c.exif = 1;
    return c;
}

static fr_config cfg_py(void) {
    fr_config c = cfg_d2();
    c.family = FR_FAMILY_PYFRCNN;
    c.resize = FR_RESIZE_PYFRCNN;
    c.pixel_mean[0] = 102.9801f, c.pixel_mean[1] = 115.9465f, c.pixel_mean[2] = 122.7717f;
    c.min_size = 600, c.max_size = 1000;
    return c;
}

// Raw-identity config: mean 0, std 1, RGB order, so the output is the resized pixels.
static fr_config cfg_raw(fr_resize_rule r) {
    fr_config c = cfg_d2();
    c.resize = r;
    c.input_rgb = 1;
    c.pixel_mean[0] = c.pixel_mean[1] = c.pixel_mean[2] = 0;
    c.min_size = 0;
    return c;
}

typedef struct {
    char kind[16], a[256], b[256];
    int v[8];
    int nv;
} mline;

// Reads the fixture manifest (all lines); returns the count, or -1 when missing.
static int manifest(mline **out) {
    size_t n;
    unsigned char *m = fixture("manifest.txt", &n);
    if (!m) return -1;
    int cap = 4096, cnt = 0;
    mline *ls = calloc((size_t)cap, sizeof *ls);
    char *s = (char *)realloc(m, n + 1);
    s[n] = 0;
    for (char *line = strtok(s, "\n"); line && cnt < cap; line = strtok(NULL, "\n")) {
        mline *l = &ls[cnt];
        char tok[12][256];
        int k = 0;
        for (char *p = line; *p && k < 12;) {
            while (*p == ' ') p++;
            if (!*p) break;
            int j = 0;
            while (*p && *p != ' ' && j < 255) tok[k][j++] = *p++;
            tok[k][j] = 0;
            k++;
        }
        if (k < 2) continue;
        snprintf(l->kind, sizeof l->kind, "%.15s", tok[0]);
        // kinds: decode/exif/jpeg NAME W H EXP; pil IN W H OW OH EXP; d2/pyfrcnn IN W H MIN MAX
        // OW OH EXP; cv IN W H OW OH EXP; size RULE W H MIN MAX OW OH
        snprintf(l->a, sizeof l->a, "%s", tok[1]);
        snprintf(l->b, sizeof l->b, "%s", tok[k - 1]);
        l->nv = 0;
        int last = strcmp(l->kind, "size") == 0 ? k : k - 1;
        for (int i = 2; i < last && l->nv < 8; i++) l->v[l->nv++] = atoi(tok[i]);
        cnt++;
    }
    free(s);
    *out = ls;
    return cnt;
}

// ---- I1, I17: types ---------------------------------------------------------------------

TEST(test_unsupported_types) {
    static const struct {
        const char *what;
        const char *bytes;
        size_t n;
    } cases[] = {
        {"empty", "", 0},
        {"text", "hello world, not an image\n", 26},
        {"GIF", "GIF89a\x01\x00\x01\x00\x80\x00\x00", 13},
        {"BMP", "BM\x3a\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00", 14},
        {"WebP", "RIFF\x24\x00\x00\x00WEBPVP8 ", 16},
        {"TIFF", "II*\x00\x08\x00\x00\x00", 8},
        {"HEIC", "\x00\x00\x00\x18" "ftypheic\x00\x00\x00\x00", 16},
        {"PSD", "8BPS\x00\x01", 6},
        {"PIC", "\x53\x80\xF6\x34PICT", 8},
        {"HDR", "#?RADIANCE\n", 11},
        {"PNM", "P6\n1 1\n255\n\x01\x02\x03", 14},
        {"TGA", "\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01\x00\x18\x00", 18},
        {"JPEG without FF after SOI", "\xFF\xD8\x00\x00", 4},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECKF(expect_status((const unsigned char *)cases[i].bytes, cases[i].n, NULL,
                             FR_ERR_UNSUPPORTED, cases[i].what),
               "%s", cases[i].what);
    fr_image img;
    fr_err e = {0};
    CHECK(fr_image_decode(&img, (const unsigned char *)"GIF89a\x01\x00", 8, NULL, 1, &e) ==
          FR_ERR_UNSUPPORTED);
    CHECK(strstr(e.msg, "GIF") != NULL);
    CHECK(img.rgb == NULL);
}

TEST(test_byte_cap) {
    size_t n;
    unsigned char *b = slurp(DATA "tiny.jpg", &n);
    CHECK(b != NULL);
    if (!b) return;
    fr_image_limits lim;
    fr_image_limits_default(&lim);
    lim.max_bytes = n - 1;
    CHECK(expect_status(b, n, &lim, FR_ERR_TOO_LARGE, "byte cap"));
    lim.max_bytes = n;
    CHECK(expect_status(b, n, &lim, FR_OK, "byte cap exact"));
    free(b);
}

// ---- basic decodes ------------------------------------------------------------------------

TEST(test_small_files) {
    static const struct {
        const char *name;
        int w, h;
    } f[] = {{"tiny.jpg", 33, 25}, {"tiny.png", 33, 25}, {"prog.jpg", 40, 30}, {"gray.jpg", 20, 16},
             {"cmyk.jpg", 16, 12}, {"one.jpg", 1, 1},    {"exif6.jpg", 8, 12}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        char p[256];
        snprintf(p, sizeof p, DATA "%s", f[i].name);
        fr_image img;
        fr_err e = {0};
        fr_status rc = fr_image_load(&img, p, NULL, 1, &e);
        CHECKF(rc == FR_OK, "%s: %s", f[i].name, e.msg);
        if (rc) continue;
        CHECKF(img.w == f[i].w && img.h == f[i].h, "%s: %dx%d", f[i].name, img.w, img.h);
        fr_image_free(&img);
    }
    fr_image img;
    fr_err e = {0};
    CHECK(fr_image_load(&img, DATA "missing.jpg", NULL, 1, &e) == FR_ERR_IO);
    CHECK(strstr(e.msg, "missing.jpg") != NULL);
    CHECK(fr_image_load(&img, DATA, NULL, 1, &e) == FR_ERR_IO);
    fr_image_limits lim;
    fr_image_limits_default(&lim);
    lim.max_bytes = 10;
    CHECK(fr_image_load(&img, DATA "tiny.jpg", &lim, 1, &e) == FR_ERR_TOO_LARGE);
    CHECK(fr_image_load(&img, DATA "tiny.txt.nope", NULL, 1, &e) == FR_ERR_IO);
}

// ---- I2, I3: truncation -------------------------------------------------------------------

static void all_prefixes(const char *name) {
    size_t n;
    char p[256];
    snprintf(p, sizeof p, DATA "%s", name);
    unsigned char *b = slurp(p, &n);
    CHECKF(b != NULL, "%s", p);
    if (!b) return;
    int bad = 0;
    for (size_t k = 0; k < n; k++) {
        unsigned char *c = malloc(k ? k : 1); // exact-size copy so ASan sees any over-read
        memcpy(c, b, k);
        fr_image img;
        fr_err e = {0};
        fr_status rc = fr_image_decode(&img, c, k, NULL, 1, &e);
        if (rc == FR_OK) {
            fr_image_free(&img);
            if (bad++ < 3) fprintf(stderr, "    %s: prefix %zu of %zu decoded\n", name, k, n);
        } else if (rc != FR_ERR_FORMAT && rc != FR_ERR_UNSUPPORTED) {
            if (bad++ < 3) fprintf(stderr, "    %s: prefix %zu: %s\n", name, k, fr_status_name(rc));
        }
        free(c);
    }
    CHECKF(bad == 0, "%s: %d prefixes not rejected as corrupt", name, bad);
    CHECK(expect_status(b, n, NULL, FR_OK, name));
    free(b);
}

TEST(test_truncated_jpeg) {
    all_prefixes("tiny.jpg");
    all_prefixes("prog.jpg");
    all_prefixes("exif6.jpg");
}

TEST(test_truncated_png) {
    all_prefixes("tiny.png");
    size_t n;
    unsigned char *b = slurp(DATA "tiny.png", &n);
    if (!b) return;
    // Row I3: only IEND cut (stb alone decodes this).
    CHECK(memcmp(b + n - 8, "IEND", 4) == 0);
    CHECK(expect_status(b, n - 12, NULL, FR_ERR_FORMAT, "IEND cut"));
    // Trailing bytes after IEND are ignored.
    unsigned char *t = malloc(n + 5);
    memcpy(t, b, n);
    memcpy(t + n, "junk!", 5);
    CHECK(expect_status(t, n + 5, NULL, FR_OK, "after IEND"));
    free(t);
    free(b);
}

// ---- I4: CRC --------------------------------------------------------------------------------

TEST(test_png_crc) {
    size_t n;
    unsigned char *b = slurp(DATA "tiny.png", &n);
    if (!b) return;
    // Decision: CRCs are verified and a mismatch is FR_ERR_FORMAT (as libpng), in every chunk.
    unsigned char *c = malloc(n);
    memcpy(c, b, n);
    c[8 + 8 + 13] ^= 1; // IHDR CRC
    CHECK(expect_status(c, n, NULL, FR_ERR_FORMAT, "IHDR crc"));
    memcpy(c, b, n);
    c[n - 1] ^= 0x80; // IEND CRC
    CHECK(expect_status(c, n, NULL, FR_ERR_FORMAT, "IEND crc"));
    memcpy(c, b, n);
    c[n / 2] ^= 0x10; // inside IDAT data
    fr_image img;
    fr_err e = {0};
    CHECK(fr_image_decode(&img, c, n, NULL, 1, &e) == FR_ERR_FORMAT);
    CHECK(strstr(e.msg, "CRC") != NULL);
    free(c);
    free(b);
}

// ---- I5: 1x1 --------------------------------------------------------------------------------

TEST(test_one_pixel) {
    unsigned char raw[4] = {0, 10, 200, 30};
    buf p = make_png(1, 1, 8, 2, 0, raw, 4, NULL, 1);
    fr_image img;
    fr_err e = {0};
    CHECK(dec(&img, p.b, p.n, &e) == FR_OK);
    CHECK(img.w == 1 && img.h == 1 && img.rgb[0] == 10 && img.rgb[1] == 200 && img.rgb[2] == 30);
    fr_config cd = cfg_d2(), cp = cfg_py();
    int ow, oh;
    double s;
    fr_image_resized_size(&cd, 1, 1, &ow, &oh, &s);
    CHECK(ow == 800 && oh == 800);
    float *out = malloc(sizeof(float) * 3 * 800 * 800);
    CHECK(fr_image_preprocess(&img, &cd, ow, oh, out, &e) == FR_OK);
    CHECK_NEAR(out[0], 30 - 103.530f, 1e-4); // BGR
    CHECK_NEAR(out[3 * (800 * 800 - 1) + 2], 10 - 123.675f, 1e-4);
    fr_image_resized_size(&cp, 1, 1, &ow, &oh, &s);
    CHECK(ow == 600 && oh == 600 && s == 600.0);
    CHECK(fr_image_preprocess(&img, &cp, ow, oh, out, &e) == FR_OK);
    CHECK_NEAR(out[1], (float)(200 - 115.9465), 1e-4);
    free(out);
    fr_image_free(&img);
    free(p.b);
    size_t n;
    unsigned char *j = slurp(DATA "one.jpg", &n);
    CHECK(j && dec(&img, j, n, &e) == FR_OK && img.w == 1 && img.h == 1);
    fr_image_free(&img);
    free(j);
}

// ---- I6: extreme aspect --------------------------------------------------------------------

TEST(test_extreme_aspect) {
    for (int t = 0; t < 2; t++) {
        int w = t ? 4096 : 1, h = t ? 1 : 4096;
        unsigned char *px = calloc((size_t)w * h * 3, 1);
        for (int i = 0; i < w * h * 3; i++) px[i] = (unsigned char)(i * 13);
        size_t rn;
        unsigned char *raw = scanlines(px, w, h, 3, &rn);
        buf p = make_png((uint32_t)w, (uint32_t)h, 8, 2, 0, raw, rn, NULL, 1);
        // default aspect cap 64 -> too large
        CHECK(expect_status(p.b, p.n, NULL, FR_ERR_TOO_LARGE, "aspect cap"));
        fr_image_limits lim;
        fr_image_limits_default(&lim);
        lim.max_aspect = 0; // disabled: decodes, and the resize clamps sides to >= 1
        fr_image img;
        fr_err e = {0};
        CHECK(fr_image_decode(&img, p.b, p.n, &lim, 1, &e) == FR_OK);
        CHECK(img.w == w && img.h == h && memcmp(img.rgb, px, (size_t)w * h * 3) == 0);
        fr_config cd = cfg_d2(), cp = cfg_py();
        int ow, oh;
        double s;
        fr_image_resized_size(&cd, w, h, &ow, &oh, &s);
        CHECK((t ? oh : ow) == 1 && (t ? ow : oh) == 1333); // int(0.325 + 0.5) = 0 -> clamped 1
        float *out = malloc(sizeof(float) * 3 * (size_t)ow * oh);
        CHECK(fr_image_preprocess(&img, &cd, ow, oh, out, &e) == FR_OK);
        fr_image_resized_size(&cp, w, h, &ow, &oh, &s);
        CHECK((t ? oh : ow) == 1 && (t ? ow : oh) == 1000);
        out = realloc(out, sizeof(float) * 3 * (size_t)ow * oh);
        CHECK(fr_image_preprocess(&img, &cp, ow, oh, out, &e) == FR_OK);
        free(out);
        fr_image_free(&img);
        free(raw);
        free(px);
        free(p.b);
    }
}

// ---- I7, I8, I9, I10: size caps before decoding ---------------------------------------------

static buf png_header_only(uint32_t w, uint32_t h, int depth, int ctype) {
    unsigned char raw[64] = {0};
    return make_png(w, h, depth, ctype, 0, raw, sizeof raw, NULL, 1);
}

TEST(test_size_caps) {
    fr_image_limits hard; // hard caps only
    memset(&hard, 0, sizeof hard);
    fr_image_limits big;
    fr_image_limits_default(&big);
    big.max_side = 1 << 20;
    big.max_pixels = 1L << 40;
    // I7: PNG and JPEG claiming 30000 x 30000
    buf p = png_header_only(30000, 30000, 8, 2);
    CHECK(expect_status(p.b, p.n, NULL, FR_ERR_TOO_LARGE, "png 30000^2"));
    CHECK(expect_status(p.b, p.n, &big, FR_ERR_TOO_LARGE, "png 30000^2 big limits"));
    free(p.b);
    size_t n;
    unsigned char *j = slurp(DATA "tiny.jpg", &n);
    if (!j) return;
    size_t sof = jpeg_find(j, n, 0xC0);
    CHECK(sof > 0);
    unsigned char *c = malloc(n);
    struct {
        int w, h;
        fr_status want;
    } js[] = {{30000, 30000, FR_ERR_TOO_LARGE}, {8000, 8000, FR_ERR_TOO_LARGE}, // I7, I8
              {16385, 10, FR_ERR_TOO_LARGE},   {6400, 6400, FR_ERR_TOO_LARGE},
              {64, 4097, FR_ERR_TOO_LARGE}};
    for (size_t i = 0; i < sizeof js / sizeof js[0]; i++) {
        memcpy(c, j, n);
        c[sof + 5] = (unsigned char)(js[i].h >> 8), c[sof + 6] = (unsigned char)js[i].h;
        c[sof + 7] = (unsigned char)(js[i].w >> 8), c[sof + 8] = (unsigned char)js[i].w;
        CHECKF(expect_status(c, n, NULL, js[i].want, "jpeg cap"), "%dx%d", js[i].w, js[i].h);
    }
    // With the caps raised above the hard caps, 30000 still fails.
    memcpy(c, j, n);
    c[sof + 5] = 30000 >> 8, c[sof + 6] = 30000 & 255;
    CHECK(expect_status(c, n, &big, FR_ERR_TOO_LARGE, "jpeg hard cap"));
    free(c);
    free(j);
    // I9: 16-bit grey 26755 x 26755 (heap overflow in stb 2.27 without the cap)
    p = png_header_only(26755, 26755, 16, 0);
    CHECK(expect_status(p.b, p.n, NULL, FR_ERR_TOO_LARGE, "I9"));
    CHECK(expect_status(p.b, p.n, &hard, FR_ERR_TOO_LARGE, "I9 hard"));
    CHECK(expect_status(p.b, p.n, &big, FR_ERR_TOO_LARGE, "I9 big"));
    free(p.b);
    // I10: zlib bomb 16384 x 16384 RGB: over the pixel cap before anything is inflated
    p = png_header_only(16384, 16384, 8, 2);
    CHECK(expect_status(p.b, p.n, NULL, FR_ERR_TOO_LARGE, "I10"));
    free(p.b);
    // Pixel cap exactly at the limit passes the cap (and then fails on the short data).
    fr_image_limits lim;
    fr_image_limits_default(&lim);
    lim.max_pixels = 100 * 50;
    p = png_header_only(100, 50, 8, 2);
    CHECK(expect_status(p.b, p.n, &lim, FR_ERR_FORMAT, "at cap"));
    lim.max_pixels = 100 * 50 - 1;
    CHECK(expect_status(p.b, p.n, &lim, FR_ERR_TOO_LARGE, "over cap"));
    free(p.b);
}

// A bomb inside the caps: IDAT inflating to more (or less) than the image needs.
TEST(test_png_idat_size) {
    int w = 64, h = 64;
    size_t need = (size_t)h * (1 + w * 3);
    unsigned char *raw = calloc(need * 20, 1);
    buf p = make_png((uint32_t)w, (uint32_t)h, 8, 2, 0, raw, need * 20, NULL, 1);
    fr_image img;
    fr_err e = {0};
    CHECK(fr_image_decode(&img, p.b, p.n, NULL, 1, &e) == FR_ERR_FORMAT);
    free(p.b);
    p = make_png((uint32_t)w, (uint32_t)h, 8, 2, 0, raw, need + 1, NULL, 1);
    CHECK(expect_status(p.b, p.n, NULL, FR_ERR_FORMAT, "one byte too many"));
    free(p.b);
    p = make_png((uint32_t)w, (uint32_t)h, 8, 2, 0, raw, need - 1, NULL, 1);
    CHECK(expect_status(p.b, p.n, NULL, FR_ERR_FORMAT, "one byte short"));
    free(p.b);
    p = make_png((uint32_t)w, (uint32_t)h, 8, 2, 0, raw, need, NULL, 1);
    CHECK(expect_status(p.b, p.n, NULL, FR_OK, "exact"));
    free(p.b);
    // bad filter type byte
    raw[0] = 9;
    p = make_png((uint32_t)w, (uint32_t)h, 8, 2, 0, raw, need, NULL, 1);
    CHECK(expect_status(p.b, p.n, NULL, FR_ERR_FORMAT, "filter 9"));
    free(p.b);
    free(raw);
}

TEST(test_png_structure) {
    unsigned char raw[1 + 3 * 2 + 1 + 3 * 2] = {0};
    buf ok = make_png(2, 2, 8, 2, 0, raw, sizeof raw, NULL, 1);
    CHECK(expect_status(ok.b, ok.n, NULL, FR_OK, "ok"));
    // bad IHDR fields
    static const int combos[][2] = {{3, 2}, {16, 3}, {4, 2}, {8, 1}, {8, 5}, {8, 7}, {2, 4}, {0, 0}};
    for (size_t i = 0; i < sizeof combos / sizeof combos[0]; i++) {
        buf p = make_png(2, 2, combos[i][0], combos[i][1], 0, raw, sizeof raw, NULL, 1);
        CHECKF(expect_status(p.b, p.n, NULL, FR_ERR_FORMAT, "ihdr"), "depth %d ctype %d",
               combos[i][0], combos[i][1]);
        free(p.b);
    }
    buf p = make_png(2, 2, 8, 2, 2, raw, sizeof raw, NULL, 1);
    CHECK(expect_status(p.b, p.n, NULL, FR_ERR_FORMAT, "interlace 2"));
    free(p.b);
    p = make_png(0, 2, 8, 2, 0, raw, sizeof raw, NULL, 1);
    CHECK(expect_status(p.b, p.n, NULL, FR_ERR_FORMAT, "zero width"));
    free(p.b);
    p = make_png(0x80000000u, 2, 8, 2, 0, raw, sizeof raw, NULL, 1);
    CHECK(expect_status(p.b, p.n, NULL, FR_ERR_FORMAT, "2^31 width"));
    free(p.b);
    // no IDAT
    p = make_png(2, 2, 8, 2, 0, raw, sizeof raw, NULL, 1);
    {
        buf q = {0};
        put(&q, p.b, 33);          // signature + IHDR
        put(&q, p.b + p.n - 12, 12); // IEND
        CHECK(expect_status(q.b, q.n, NULL, FR_ERR_FORMAT, "no IDAT"));
        // IHDR not first
        buf r = {0};
        put(&r, p.b, 8);
        chunk(&r, "tEXt", (const unsigned char *)"a\0b", 3);
        put(&r, p.b + 8, p.n - 8);
        CHECK(expect_status(r.b, r.n, NULL, FR_ERR_FORMAT, "IHDR not first"));
        free(q.b);
        free(r.b);
    }
    free(p.b);
    // unknown critical chunk, known ancillary chunk, chunk length past the end
    buf x = {0};
    chunk(&x, "ABCD", (const unsigned char *)"zz", 2);
    p = make_png(2, 2, 8, 2, 0, raw, sizeof raw, &x, 1);
    CHECK(expect_status(p.b, p.n, NULL, FR_ERR_UNSUPPORTED, "critical ABCD"));
    free(p.b);
    x.n = 0;
    chunk(&x, "abCD", (const unsigned char *)"zz", 2);
    p = make_png(2, 2, 8, 2, 0, raw, sizeof raw, &x, 1);
    CHECK(expect_status(p.b, p.n, NULL, FR_OK, "ancillary abCD"));
    free(p.b);
    x.n = 0;
    chunk(&x, "ab1D", (const unsigned char *)"zz", 2);
    p = make_png(2, 2, 8, 2, 0, raw, sizeof raw, &x, 1);
    CHECK(expect_status(p.b, p.n, NULL, FR_ERR_FORMAT, "bad type letters"));
    free(p.b);
    x.n = 0;
    put32(&x, 0x7FFFFFF0u);
    put(&x, "teXt", 4);
    p = make_png(2, 2, 8, 2, 0, raw, sizeof raw, &x, 1);
    CHECK(expect_status(p.b, p.n, NULL, FR_ERR_FORMAT, "huge chunk"));
    free(p.b);
    x.n = 0;
    put32(&x, 0xFFFFFFF0u);
    put(&x, "teXt", 4);
    p = make_png(2, 2, 8, 2, 0, raw, sizeof raw, &x, 1);
    CHECK(expect_status(p.b, p.n, NULL, FR_ERR_FORMAT, "chunk length >= 2^31"));
    free(p.b);
    // PLTE in a greyscale image, tRNS in RGBA, bad tRNS length, palette image without PLTE
    x.n = 0;
    chunk(&x, "PLTE", (const unsigned char *)"abc", 3);
    unsigned char g[2 * 3] = {0};
    p = make_png(2, 2, 8, 0, 0, g, sizeof g, &x, 1);
    CHECK(expect_status(p.b, p.n, NULL, FR_ERR_FORMAT, "PLTE in grey"));
    free(p.b);
    x.n = 0;
    chunk(&x, "PLTE", (const unsigned char *)"abcd", 4);
    p = make_png(2, 2, 8, 3, 0, g, sizeof g, &x, 1);
    CHECK(expect_status(p.b, p.n, NULL, FR_ERR_FORMAT, "PLTE length 4"));
    free(p.b);
    p = make_png(2, 2, 8, 3, 0, g, sizeof g, NULL, 1);
    CHECK(expect_status(p.b, p.n, NULL, FR_ERR_FORMAT, "no PLTE"));
    free(p.b);
    x.n = 0;
    chunk(&x, "tRNS", (const unsigned char *)"\0\1", 2);
    unsigned char rgba[2 * (1 + 8)] = {0};
    p = make_png(2, 2, 8, 6, 0, rgba, sizeof rgba, &x, 1);
    CHECK(expect_status(p.b, p.n, NULL, FR_ERR_FORMAT, "tRNS with alpha"));
    free(p.b);
    p = make_png(2, 2, 8, 2, 0, raw, sizeof raw, &x, 1);
    CHECK(expect_status(p.b, p.n, NULL, FR_ERR_FORMAT, "tRNS length 2 in RGB"));
    free(p.b);
    x.n = 0;
    chunk(&x, "PLTE", (const unsigned char *)"abcdef", 6);
    chunk(&x, "tRNS", (const unsigned char *)"\1\2\3", 3);
    p = make_png(2, 2, 8, 3, 0, g, sizeof g, &x, 1);
    CHECK(expect_status(p.b, p.n, NULL, FR_ERR_FORMAT, "tRNS longer than PLTE"));
    free(p.b);
    // Apple CgBI
    {
        buf q = {0};
        put(&q, ok.b, 8);
        chunk(&q, "CgBI", (const unsigned char *)"\x50\x00\x20\x06", 4);
        put(&q, ok.b + 8, ok.n - 8);
        CHECK(expect_status(q.b, q.n, NULL, FR_ERR_UNSUPPORTED, "CgBI"));
        free(q.b);
    }
    // two IHDR; IDATs not consecutive
    {
        buf q = {0};
        put(&q, ok.b, 33);
        put(&q, ok.b + 8, 25);
        put(&q, ok.b + 33, ok.n - 33);
        CHECK(expect_status(q.b, q.n, NULL, FR_ERR_FORMAT, "two IHDR"));
        free(q.b);
        // split the IDAT of ok in two with a tEXt between
        size_t idat = 33;
        uint32_t len = (uint32_t)ok.b[idat] << 24 | ok.b[idat + 1] << 16 | ok.b[idat + 2] << 8 | ok.b[idat + 3];
        const unsigned char *d = ok.b + idat + 8;
        buf r = {0};
        put(&r, ok.b, 33);
        chunk(&r, "IDAT", d, 5);
        chunk(&r, "tEXt", (const unsigned char *)"a\0b", 3);
        chunk(&r, "IDAT", d + 5, len - 5);
        chunk(&r, "IEND", NULL, 0);
        CHECK(expect_status(r.b, r.n, NULL, FR_ERR_FORMAT, "IDAT split by tEXt"));
        r.n = 0;
        put(&r, ok.b, 33);
        chunk(&r, "IDAT", d, 5);
        chunk(&r, "IDAT", d + 5, 0);
        chunk(&r, "IDAT", d + 5, len - 5);
        chunk(&r, "IEND", NULL, 0);
        CHECK(expect_status(r.b, r.n, NULL, FR_OK, "IDAT split in three"));
        free(r.b);
    }
    free(x.b);
    free(ok.b);
}

// ---- I11: progressive, scan cap ------------------------------------------------------------

TEST(test_progressive_scans) {
    size_t n;
    unsigned char *b = slurp(DATA "prog.jpg", &n);
    if (!b) return;
    CHECK(expect_status(b, n, NULL, FR_OK, "progressive"));
    // Repeat the last scan (SOS + data before EOI) until over the cap of 100 scans.
    size_t last = 0;
    for (size_t i = 2; i + 1 < n; i++)
        if (b[i] == 0xFF && b[i + 1] == 0xDA) last = i;
    CHECK(last > 0 && b[n - 2] == 0xFF && b[n - 1] == 0xD9);
    size_t sn = n - 2 - last;
    buf o = {0};
    put(&o, b, n - 2);
    for (int k = 0; k < 100; k++) put(&o, b + last, sn);
    put(&o, b + n - 2, 2);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK(expect_status(o.b, o.n, NULL, FR_ERR_TOO_LARGE, "over 100 scans"));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK(t1.tv_sec - t0.tv_sec < 2);
    // exactly 100 scans: under the cap (stb then decodes or rejects the repeated scans)
    o.n = 0;
    put(&o, b, n - 2);
    for (int k = 0; k < 90; k++) put(&o, b + last, sn);
    put(&o, b + n - 2, 2);
    fr_image img;
    fr_err e = {0};
    fr_status rc = fr_image_decode(&img, o.b, o.n, NULL, 1, &e);
    CHECKF(rc == FR_OK || rc == FR_ERR_FORMAT, "%s", e.msg);
    if (rc == FR_OK) fr_image_free(&img);
    free(o.b);
    free(b);
}

// ---- JPEG structure, I15, I18 -------------------------------------------------------------

TEST(test_jpeg_unsupported) {
    size_t n;
    unsigned char *b = slurp(DATA "tiny.jpg", &n);
    if (!b) return;
    size_t sof = jpeg_find(b, n, 0xC0);
    CHECK(sof > 0);
    unsigned char *c = malloc(n);
    static const int sofs[] = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7};
    for (size_t i = 0; i < sizeof sofs / sizeof sofs[0]; i++) {
        memcpy(c, b, n);
        c[sof + 1] = (unsigned char)sofs[i];
        CHECKF(expect_status(c, n, NULL, FR_ERR_UNSUPPORTED, "SOFn"), "0xFF%02X", sofs[i]);
    }
    memcpy(c, b, n);
    c[sof + 1] = 0xC1; // extended sequential, 12-bit
    c[sof + 4] = 12;
    CHECK(expect_status(c, n, NULL, FR_ERR_UNSUPPORTED, "12-bit"));
    c[sof + 4] = 8;
    CHECK(expect_status(c, n, NULL, FR_OK, "SOF1 8-bit"));
    memcpy(c, b, n);
    c[sof + 5] = 0, c[sof + 6] = 0; // height 0 (DNL)
    CHECK(expect_status(c, n, NULL, FR_ERR_UNSUPPORTED, "DNL height"));
    free(c);
    // DAC (arithmetic conditioning) segment
    unsigned char dac[] = {0xFF, 0xCC, 0x00, 0x04, 0x00, 0x11};
    buf o = splice(b, n, 2, dac, sizeof dac);
    CHECK(expect_status(o.b, o.n, NULL, FR_ERR_UNSUPPORTED, "DAC"));
    free(o.b);
    free(b);
}

TEST(test_jpeg_dht) {
    size_t n;
    unsigned char *b = slurp(DATA "tiny.jpg", &n);
    if (!b) return;
    // I18: DHT whose code counts sum to 300 (> 256): the stb 2.27 table overflow.
    unsigned char seg[2 + 2 + 17 + 300];
    memset(seg, 0, sizeof seg);
    seg[0] = 0xFF, seg[1] = 0xC4;
    seg[2] = (2 + 17 + 300) >> 8, seg[3] = (2 + 17 + 300) & 255;
    seg[4] = 0x11; // AC table 1
    seg[4 + 16] = 255;
    seg[4 + 15] = 45; // lengths 15 and 16: 300 codes, a complete-enough prefix code
    fr_image img;
    fr_err e = {0};
    buf o = splice(b, n, 2, seg, sizeof seg);
    CHECK(fr_image_decode(&img, o.b, o.n, NULL, 1, &e) == FR_ERR_FORMAT);
    CHECK(strstr(e.msg, "300 codes") != NULL);
    free(o.b);
    // class 2, id 5, too many short codes, DC symbol 16, table truncated
    unsigned char s2[2 + 2 + 17 + 1] = {0xFF, 0xC4, 0, 2 + 17 + 1, 0x20};
    s2[5] = 1;
    o = splice(b, n, 2, s2, sizeof s2);
    CHECK(expect_status(o.b, o.n, NULL, FR_ERR_FORMAT, "class 2"));
    free(o.b);
    s2[4] = 0x05;
    o = splice(b, n, 2, s2, sizeof s2);
    CHECK(expect_status(o.b, o.n, NULL, FR_ERR_FORMAT, "id 5"));
    free(o.b);
    unsigned char s3[2 + 2 + 17 + 3] = {0xFF, 0xC4, 0, 2 + 17 + 3, 0x00};
    s3[5] = 3; // three codes of length 1
    o = splice(b, n, 2, s3, sizeof s3);
    CHECK(expect_status(o.b, o.n, NULL, FR_ERR_FORMAT, "3 codes of length 1"));
    free(o.b);
    unsigned char s4[2 + 2 + 17 + 1] = {0xFF, 0xC4, 0, 2 + 17 + 1, 0x00};
    s4[5] = 1;
    s4[21] = 16; // DC symbol 16
    o = splice(b, n, 2, s4, sizeof s4);
    CHECK(expect_status(o.b, o.n, NULL, FR_ERR_FORMAT, "DC symbol 16"));
    free(o.b);
    unsigned char s5[2 + 2 + 17] = {0xFF, 0xC4, 0, 2 + 17, 0x00};
    s5[5] = 1; // says 1 value, segment holds none
    o = splice(b, n, 2, s5, sizeof s5);
    CHECK(expect_status(o.b, o.n, NULL, FR_ERR_FORMAT, "DHT values past segment"));
    free(o.b);
    free(b);
}

TEST(test_jpeg_structure) {
    size_t n;
    unsigned char *b = slurp(DATA "tiny.jpg", &n);
    if (!b) return;
    unsigned char *c = malloc(n + 16);
    size_t sof = jpeg_find(b, n, 0xC0), dqt = jpeg_find(b, n, 0xDB), dht = jpeg_find(b, n, 0xC4);
    CHECK(sof && dqt && dht);
    // segment length running past the end
    memcpy(c, b, n);
    c[sof + 2] = 0xFF;
    CHECK(expect_status(c, n, NULL, FR_ERR_FORMAT, "SOF length"));
    // segment length < 2
    memcpy(c, b, n);
    c[dqt + 2] = 0, c[dqt + 3] = 1;
    CHECK(expect_status(c, n, NULL, FR_ERR_FORMAT, "length 1"));
    // bad component count, bad sampling, non-integer sampling, bad quant id
    memcpy(c, b, n);
    c[sof + 9] = 2;
    CHECK(expect_status(c, n, NULL, FR_ERR_UNSUPPORTED, "2 components"));
    memcpy(c, b, n);
    c[sof + 11] = 0x50;
    CHECK(expect_status(c, n, NULL, FR_ERR_FORMAT, "sampling 5"));
    memcpy(c, b, n);
    c[sof + 11] = 0x32; // Y 3x2 with chroma 1x1: integer; then 2x2 chroma is not
    c[sof + 14] = 0x22;
    CHECK(expect_status(c, n, NULL, FR_ERR_UNSUPPORTED, "ratio 3:2"));
    memcpy(c, b, n);
    c[sof + 12] = 4;
    CHECK(expect_status(c, n, NULL, FR_ERR_FORMAT, "tq 4"));
    // DQT precision 2, id 4
    memcpy(c, b, n);
    c[dqt + 4] = 0x20;
    CHECK(expect_status(c, n, NULL, FR_ERR_FORMAT, "DQT precision"));
    // quantisation table never defined: rename the DQT to COM
    memcpy(c, b, n);
    c[dqt + 1] = 0xFE;
    CHECK(expect_status(c, n, NULL, FR_ERR_FORMAT, "no DQT"));
    // Huffman table never defined
    memcpy(c, b, n);
    c[dht + 1] = 0xFE;
    CHECK(expect_status(c, n, NULL, FR_ERR_FORMAT, "no DHT"));
    // garbage instead of a marker, unknown marker, RST outside a scan, second SOI
    memcpy(c, b, n);
    c[dqt] = 0x00;
    CHECK(expect_status(c, n, NULL, FR_ERR_FORMAT, "garbage"));
    memcpy(c, b, n);
    c[dqt + 1] = 0xC8;
    CHECK(expect_status(c, n, NULL, FR_ERR_FORMAT, "JPG marker"));
    memcpy(c, b, n);
    c[dqt + 1] = 0x02;
    CHECK(expect_status(c, n, NULL, FR_ERR_FORMAT, "marker 02"));
    unsigned char rst[] = {0xFF, 0xD3};
    buf o = splice(b, n, 2, rst, 2);
    CHECK(expect_status(o.b, o.n, NULL, FR_ERR_FORMAT, "RST"));
    free(o.b);
    unsigned char soi[] = {0xFF, 0xD8};
    o = splice(b, n, 2, soi, 2);
    CHECK(expect_status(o.b, o.n, NULL, FR_ERR_FORMAT, "second SOI"));
    free(o.b);
    // fill bytes before a marker are fine; a COM and APP segment are fine
    unsigned char fill[] = {0xFF, 0xFF, 0xFF, 0xFE, 0x00, 0x05, 'h', 'i', '!', 0xFF, 0xE7, 0x00, 0x02};
    o = splice(b, n, 2, fill, sizeof fill);
    CHECK(expect_status(o.b, o.n, NULL, FR_OK, "fill, COM, APP7"));
    free(o.b);
    // two frame headers; SOS before SOF
    o = splice(b, n, sof, b + sof, 2 + ((size_t)b[sof + 2] << 8 | b[sof + 3]));
    CHECK(expect_status(o.b, o.n, NULL, FR_ERR_FORMAT, "two SOF"));
    free(o.b);
    unsigned char sos[] = {0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00};
    o = splice(b, n, 2, sos, sizeof sos);
    CHECK(expect_status(o.b, o.n, NULL, FR_ERR_FORMAT, "SOS first"));
    free(o.b);
    // EOI right after the headers (no scan), EOI missing, data after EOI ignored
    size_t sos_at = 0;
    for (size_t i = 2; i + 1 < n; i++)
        if (b[i] == 0xFF && b[i + 1] == 0xDA) {
            sos_at = i;
            break;
        }
    memcpy(c, b, sos_at);
    c[sos_at] = 0xFF, c[sos_at + 1] = 0xD9;
    CHECK(expect_status(c, sos_at + 2, NULL, FR_ERR_FORMAT, "no scan"));
    CHECK(expect_status(b, n - 2, NULL, FR_ERR_FORMAT, "no EOI"));
    memcpy(c, b, n);
    memcpy(c + n, "trailing", 8);
    CHECK(expect_status(c, n + 8, NULL, FR_OK, "after EOI"));
    // a scan naming a component that does not exist
    memcpy(c, b, n);
    c[sos_at + 5] = 77;
    CHECK(expect_status(c, n, NULL, FR_ERR_FORMAT, "unknown component"));
    // sequential scan with Ss != 0
    memcpy(c, b, n);
    size_t ns = c[sos_at + 4];
    c[sos_at + 5 + 2 * ns] = 1;
    CHECK(expect_status(c, n, NULL, FR_ERR_FORMAT, "Ss 1"));
    free(c);
    free(b);
}

// The entropy data of a scan cut short but followed by EOI: passes the structural check and
// must still be a clean error or a clean decode from stb (no sanitizer report).
TEST(test_jpeg_short_scan) {
    size_t n;
    unsigned char *b = slurp(DATA "tiny.jpg", &n);
    if (!b) return;
    size_t sos_at = 0;
    for (size_t i = 2; i + 1 < n; i++)
        if (b[i] == 0xFF && b[i + 1] == 0xDA) {
            sos_at = i;
            break;
        }
    size_t data = sos_at + 2 + ((size_t)b[sos_at + 2] << 8 | b[sos_at + 3]);
    unsigned char *c = malloc(n);
    int ok = 0, bad = 0;
    for (size_t k = data; k + 2 < n; k += 7) {
        memcpy(c, b, k);
        if (c[k - 1] == 0xFF) continue;
        c[k] = 0xFF, c[k + 1] = 0xD9;
        fr_image img;
        fr_err e = {0};
        fr_status rc = fr_image_decode(&img, c, k + 2, NULL, 1, &e);
        if (rc == FR_OK) ok++, fr_image_free(&img);
        else if (rc == FR_ERR_FORMAT) bad++;
        else CHECKF(0, "cut at %zu: %s", k, fr_status_name(rc));
    }
    CHECK(ok + bad > 0);
    free(c);
    free(b);
}

// A well-formed baseline JPEG whose DC differences add up past INT_MAX (16384 x 280 grey, every
// block +32767): signed overflow in stb 2.27's DC predictor, made defined (wrapv) in image_stb.c.
// Must decode (garbage pixels) without a sanitizer report.
TEST(test_jpeg_dc_overflow) {
    buf o = {0};
    static const unsigned char head[] = {
        0xFF, 0xD8,                                            // SOI
        0xFF, 0xDB, 0x00, 0x43, 0x00,                          // DQT 8-bit table 0 (64 ones)
    };
    put(&o, head, sizeof head);
    for (int i = 0; i < 64; i++) put(&o, "\x01", 1);
    static const unsigned char sof[] = {0xFF, 0xC0, 0x00, 0x0B, 8, 280 >> 8, 280 & 255, 0x40, 0x00,
                                        1, 1, 0x11, 0};
    put(&o, sof, sizeof sof);
    // DHT: DC table 0 = {15: '0'}, AC table 0 = {EOB: '0'}
    unsigned char dht[4 + 2 * 18] = {0xFF, 0xC4, 0x00, 2 + 2 * 18};
    dht[4] = 0x00, dht[5] = 1, dht[21] = 15;
    dht[22] = 0x10, dht[23] = 1, dht[39] = 0;
    put(&o, dht, sizeof dht);
    static const unsigned char sos[] = {0xFF, 0xDA, 0x00, 0x08, 1, 1, 0x00, 0, 63, 0};
    put(&o, sos, sizeof sos);
    // 71680 blocks of 17 bits: '0' (DC size 15), 15 ones (+32767), '0' (EOB)
    uint32_t acc = 0;
    int nb = 0;
    for (int blk = 0; blk < 2048 * 35; blk++) {
        for (int bit = 0; bit < 17; bit++) {
            acc = acc << 1 | (unsigned)(bit >= 1 && bit <= 15);
            if (++nb == 8) {
                unsigned char byte = (unsigned char)acc;
                put(&o, &byte, 1);
                if (byte == 0xFF) put(&o, "\0", 1);
                acc = 0, nb = 0;
            }
        }
    }
    if (nb) {
        unsigned char byte = (unsigned char)(acc << (8 - nb) | ((1u << (8 - nb)) - 1));
        put(&o, &byte, 1);
        if (byte == 0xFF) put(&o, "\0", 1);
    }
    put(&o, "\xFF\xD9", 2);
    fr_image img;
    fr_err e = {0};
    fr_status rc = fr_image_decode(&img, o.b, o.n, NULL, 1, &e);
    CHECKF(rc == FR_OK, "%s", e.msg);
    if (rc == FR_OK) {
        CHECK(img.w == 16384 && img.h == 280);
        fr_image_free(&img);
    }
    free(o.b);
}

// ---- I12, I13, I14: colour conversions -----------------------------------------------------

TEST(test_colour_fixtures) {
    mline *ls;
    int n = manifest(&ls);
    CHECKF(n > 0, "fixture %s/image/manifest.txt missing (run tools/reference/fx_image.py)", fixtures());
    if (n <= 0) return;
    int cases = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(ls[i].kind, "decode") && strcmp(ls[i].kind, "exif")) continue;
        size_t fn, en;
        unsigned char *f = fixture(ls[i].a, &fn), *exp = fixture(ls[i].b, &en);
        CHECKF(f && exp, "fixture %s", ls[i].a);
        if (f && exp) {
            fr_image img;
            fr_err e = {0};
            fr_status rc = fr_image_decode(&img, f, fn, NULL, 1, &e);
            CHECKF(rc == FR_OK, "%s: %s", ls[i].a, e.msg);
            if (rc == FR_OK) {
                CHECKF(img.w == ls[i].v[0] && img.h == ls[i].v[1], "%s: %dx%d", ls[i].a, img.w, img.h);
                CHECKF(en == (size_t)img.w * img.h * 3 && memcmp(img.rgb, exp, en) == 0,
                       "%s: pixels differ from PIL", ls[i].a);
                fr_image_free(&img);
            }
            cases++;
        }
        free(f);
        free(exp);
    }
    CHECK(cases >= 17);
    free(ls);
}

// Conversions checked by construction (stb behaviour where it differs from PIL is documented).
TEST(test_colour_constructed) {
    fr_image img;
    fr_err e = {0};
    // 16-bit grey: stb keeps the high byte (PIL would clip the 16-bit value to 255).
    unsigned char g16[1 + 4] = {0, 40000 >> 8, 40000 & 255, 100 >> 8, 100};
    buf p = make_png(2, 1, 16, 0, 0, g16, sizeof g16, NULL, 1);
    CHECK(dec(&img, p.b, p.n, &e) == FR_OK);
    CHECK(img.rgb[0] == 156 && img.rgb[1] == 156 && img.rgb[2] == 156 && img.rgb[3] == 0);
    fr_image_free(&img);
    free(p.b);
    // RGB + tRNS (stbi_info reports 4 channels for it in 2.27: #1419) -> 3 channels
    buf x = {0};
    chunk(&x, "tRNS", (const unsigned char *)"\0\1\0\2\0\3", 6);
    unsigned char rgb[1 + 6] = {0, 1, 2, 3, 9, 8, 7};
    p = make_png(2, 1, 8, 2, 0, rgb, sizeof rgb, &x, 1);
    CHECK(dec(&img, p.b, p.n, &e) == FR_OK);
    CHECK(img.w == 2 && memcmp(img.rgb, rgb + 1, 6) == 0);
    fr_image_free(&img);
    free(p.b);
    // grey + tRNS, 2-bit grey (scaled to 0..255), 4-bit palette with out-of-range indices
    x.n = 0;
    chunk(&x, "tRNS", (const unsigned char *)"\0\7", 2);
    unsigned char g8[1 + 2] = {0, 7, 200};
    p = make_png(2, 1, 8, 0, 0, g8, sizeof g8, &x, 1);
    CHECK(dec(&img, p.b, p.n, &e) == FR_OK);
    CHECK(img.rgb[0] == 7 && img.rgb[3] == 200 && img.rgb[5] == 200);
    fr_image_free(&img);
    free(p.b);
    unsigned char g2[1 + 1] = {0, 0x1B}; // 0,1,2,3 -> 0,85,170,255
    p = make_png(4, 1, 2, 0, 0, g2, sizeof g2, NULL, 1);
    CHECK(dec(&img, p.b, p.n, &e) == FR_OK);
    CHECK(img.rgb[0] == 0 && img.rgb[3] == 85 && img.rgb[6] == 170 && img.rgb[9] == 255);
    fr_image_free(&img);
    free(p.b);
    x.n = 0;
    chunk(&x, "PLTE", (const unsigned char *)"\x0a\x14\x1e\x28\x32\x3c", 6);
    chunk(&x, "tRNS", (const unsigned char *)"\x00", 1);
    unsigned char pal[1 + 2] = {0, 0x01, 0x9F}; // indices 0, 1, 9, 15
    p = make_png(4, 1, 4, 3, 0, pal, sizeof pal, &x, 1);
    CHECK(dec(&img, p.b, p.n, &e) == FR_OK);
    static const unsigned char want[12] = {10, 20, 30, 40, 50, 60, 9, 9, 9, 15, 15, 15};
    CHECK(img.w == 4 && memcmp(img.rgb, want, 12) == 0); // past PLTE: PIL's grey ramp
    fr_image_free(&img);
    free(p.b);
    free(x.b);
}

// stb (Debian 2.27) vs PIL/libjpeg-turbo on JPEG photos: the decoders differ (IDCT, chroma
// upsampling), so JPEG parity tests must allow this difference or use PNG inputs.
TEST(test_jpeg_vs_pil) {
    mline *ls;
    int n = manifest(&ls);
    CHECK(n > 0);
    if (n <= 0) return;
    int files = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(ls[i].kind, "jpeg")) continue;
        size_t fn, en;
        unsigned char *f = slurp(ls[i].a, &fn), *exp = fixture(ls[i].b, &en);
        CHECKF(f && exp, "%s", ls[i].a);
        if (f && exp) {
            fr_image img;
            fr_err e = {0};
            fr_status rc = fr_image_decode(&img, f, fn, NULL, 0, &e);
            CHECKF(rc == FR_OK, "%s: %s", ls[i].a, e.msg);
            if (rc == FR_OK && en == (size_t)img.w * img.h * 3) {
                size_t px_diff = 0, val_diff = 0, npx = (size_t)img.w * img.h;
                int maxd = 0;
                double sum = 0;
                for (size_t k = 0; k < npx; k++) {
                    int any = 0;
                    for (int c = 0; c < 3; c++) {
                        int d = abs((int)img.rgb[k * 3 + c] - (int)exp[k * 3 + c]);
                        if (d) any = 1, val_diff++;
                        if (d > maxd) maxd = d;
                        sum += d;
                    }
                    px_diff += any;
                }
                const char *base = strrchr(ls[i].a, '/');
                int cmyk = strstr(ls[i].a, "cmyk") != NULL;
                printf("  stb vs PIL %-10s %4dx%-4d pixels differing %7zu / %7zu (%5.1f%%), "
                       "max |d| %3d, mean |d| %.3f\n",
                       base ? base + 1 : ls[i].a, img.w, img.h, px_diff, npx, 100.0 * px_diff / npx,
                       maxd, sum / (3.0 * npx));
                if (cmyk) {
                    // Adobe CMYK (stored inverted): stb and Pillow 9.4 both compute
                    // R = (255 - C)(255 - K)/255, rounding differently.
                    CHECKF(sum / (3.0 * npx) < 0.5 && maxd <= 2, "%s: mean %.3f max %d", ls[i].a,
                           sum / (3.0 * npx), maxd);
                } else {
                    // measured here: max |d| 3, mean |d| <= 0.18 (libjpeg-turbo 2.1.5)
                    CHECKF(sum / (3.0 * npx) < 0.5 && maxd <= 8, "%s: mean %.3f max %d", ls[i].a,
                           sum / (3.0 * npx), maxd);
                }
                files++;
            } else if (rc == FR_OK) {
                CHECKF(0, "%s: size %dx%d vs PIL", ls[i].a, img.w, img.h);
            }
            if (rc == FR_OK) fr_image_free(&img);
        }
        free(f);
        free(exp);
    }
    CHECK(files >= 5);
    free(ls);
}

// ---- I16: EXIF orientation ------------------------------------------------------------------

// An APP1 Exif segment with IFD0 = {Orientation}, byte order le/be.
static size_t exif_app1(unsigned char *s, int orient, int le, int type, uint32_t count) {
    unsigned char t[26];
    size_t k = 0;
#define W16(v) (le ? (t[k++] = (unsigned char)(v), t[k++] = (unsigned char)((v) >> 8)) \
                   : (t[k++] = (unsigned char)((v) >> 8), t[k++] = (unsigned char)(v)))
#define W32(v) (le ? (W16((v) & 0xFFFF), W16((uint32_t)(v) >> 16)) : (W16((uint32_t)(v) >> 16), W16((v) & 0xFFFF)))
    t[k++] = le ? 'I' : 'M';
    t[k++] = le ? 'I' : 'M';
    W16(42);
    W32(8);
    W16(1);
    W16(0x0112);
    W16(type);
    W32(count);
    if (type == 4) W32(orient);
    else W16(orient), W16(0);
    W32(0);
#undef W16
#undef W32
    size_t n = 2 + 2 + 6 + k;
    s[0] = 0xFF, s[1] = 0xE1, s[2] = (unsigned char)((n - 2) >> 8), s[3] = (unsigned char)(n - 2);
    memcpy(s + 4, "Exif\0\0", 6);
    memcpy(s + 10, t, k);
    return n;
}

TEST(test_exif_jpeg) {
    size_t n;
    unsigned char *b = slurp(DATA "tiny.jpg", &n);
    if (!b) return;
    fr_image base;
    fr_err e = {0};
    CHECK(dec(&base, b, n, &e) == FR_OK);
    int W = base.w, H = base.h;
    for (int le = 0; le < 2; le++) {
        for (int o = 0; o <= 9; o++) {
            unsigned char seg[64];
            size_t sn = exif_app1(seg, o, le, o == 7 ? 4 : 3, 1);
            buf f = splice(b, n, 2, seg, sn);
            fr_image img, raw;
            CHECK(fr_image_decode(&img, f.b, f.n, NULL, 1, &e) == FR_OK);
            CHECK(fr_image_decode(&raw, f.b, f.n, NULL, 0, &e) == FR_OK);
            CHECK(raw.w == W && raw.h == H && memcmp(raw.rgb, base.rgb, (size_t)W * H * 3) == 0);
            int swap = o >= 5 && o <= 8;
            CHECKF(img.w == (swap ? H : W) && img.h == (swap ? W : H), "orientation %d le %d", o, le);
            int bad = 0;
            for (int y = 0; y < img.h && !bad; y++)
                for (int x = 0; x < img.w; x++) {
                    int sx, sy; // where PIL's transpose takes (x, y) from
                    switch (o) {
                    case 2: sx = W - 1 - x, sy = y; break;
                    case 3: sx = W - 1 - x, sy = H - 1 - y; break;
                    case 4: sx = x, sy = H - 1 - y; break;
                    case 5: sx = y, sy = x; break;
                    case 6: sx = y, sy = H - 1 - x; break;
                    case 7: sx = W - 1 - y, sy = H - 1 - x; break;
                    case 8: sx = W - 1 - y, sy = x; break;
                    default: sx = x, sy = y; break;
                    }
                    if (memcmp(img.rgb + ((size_t)y * img.w + x) * 3, base.rgb + ((size_t)sy * W + sx) * 3, 3)) {
                        bad = 1;
                        break;
                    }
                }
            CHECKF(!bad, "orientation %d le %d pixels", o, le);
            fr_image_free(&img);
            fr_image_free(&raw);
            free(f.b);
        }
    }
    // Malformed EXIF is ignored (PIL/detectron2 do the same): wrong type, count 2, offsets
    // outside the block, truncated IFD, not TIFF.
    unsigned char seg[64];
    size_t sn = exif_app1(seg, 6, 1, 3, 1);
    // Expectations checked against PIL 9.4's getexif() on the same bytes.
    struct {
        size_t at;
        unsigned char v;
        int rotated;
    } muts[] = {{10 + 12, 7, 0},   // type 7 UNDEFINED: PIL gives b"\x06", not an orientation
                {10 + 12, 3, 1},   // SHORT: valid
                {10 + 12, 1, 1},   // BYTE 6: PIL gives the int 6
                {10 + 14, 2, 1},   // SHORT count 2: PIL uses the first value
                {10 + 12, 5, 0},   // RATIONAL: ignored
                {10 + 10, 2, 0},   // tag 0x0102
                {10 + 4, 0xF0, 0}, // IFD offset past the end
                {10 + 8, 0xFF, 1}, // 255 entries announced, 1 present: PIL keeps what it read
                {10 + 2, 43, 0},   // not classic TIFF (PIL cannot even open this one)
                {10, 'X', 0}};     // bad byte order mark
    for (size_t i = 0; i < sizeof muts / sizeof muts[0]; i++) {
        unsigned char s2[64];
        memcpy(s2, seg, sn);
        s2[muts[i].at] = muts[i].v;
        buf f = splice(b, n, 2, s2, sn);
        fr_image img;
        CHECK(fr_image_decode(&img, f.b, f.n, NULL, 1, &e) == FR_OK);
        CHECKF(img.w == (muts[i].rotated ? H : W) && img.h == (muts[i].rotated ? W : H),
               "mutation %zu", i);
        fr_image_free(&img);
        free(f.b);
    }
    // Truncated TIFF inside the APP1 (the segment length is honest), tiny EXIF.
    for (size_t cut = 6; cut < sn - 4; cut++) {
        unsigned char s2[64];
        memcpy(s2, seg, sn);
        s2[2] = (unsigned char)((cut - 2) >> 8), s2[3] = (unsigned char)(cut - 2);
        buf f = splice(b, n, 2, s2, cut);
        fr_image img;
        CHECK(fr_image_decode(&img, f.b, f.n, NULL, 1, &e) == FR_OK);
        CHECK(img.w == W || cut == sn);
        fr_image_free(&img);
        free(f.b);
    }
    // The PIL-written file (orientation 6, little-endian, stored 12x8).
    fr_image img;
    CHECK(fr_image_load(&img, DATA "exif6.jpg", NULL, 1, &e) == FR_OK && img.w == 8 && img.h == 12);
    fr_image_free(&img);
    CHECK(fr_image_load(&img, DATA "exif6.jpg", NULL, 0, &e) == FR_OK && img.w == 12 && img.h == 8);
    fr_image_free(&img);
    fr_image_free(&base);
    free(b);
}

// ---- resize rules and pipelines -------------------------------------------------------------

TEST(test_resized_size) {
    mline *ls;
    int n = manifest(&ls);
    CHECK(n > 0);
    if (n <= 0) return;
    int cases = 0, bad = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(ls[i].kind, "size")) continue;
        fr_config c = strcmp(ls[i].a, "py") == 0 ? cfg_py() : cfg_d2();
        c.min_size = ls[i].v[2], c.max_size = ls[i].v[3];
        int ow, oh;
        double s;
        fr_image_resized_size(&c, ls[i].v[0], ls[i].v[1], &ow, &oh, &s);
        if (ow != ls[i].v[4] || oh != ls[i].v[5]) {
            if (bad++ < 5)
                fprintf(stderr, "    %s %dx%d (%d,%d): %dx%d, want %dx%d\n", ls[i].a, ls[i].v[0],
                        ls[i].v[1], ls[i].v[2], ls[i].v[3], ow, oh, ls[i].v[4], ls[i].v[5]);
        }
        cases++;
    }
    CHECK(cases >= 2000);
    CHECKF(bad == 0, "%d of %d sizes differ", bad, cases);
    // hand-checked: 640x480 -> 1067x800 (detectron2), 500x375 -> 800x600 scale 1.6 (py)
    fr_config d = cfg_d2(), p = cfg_py();
    int ow, oh;
    double s;
    fr_image_resized_size(&d, 640, 480, &ow, &oh, &s);
    CHECK(ow == 1067 && oh == 800);
    CHECK_NEAR(s, 800.0 / 480, 1e-12);
    fr_image_resized_size(&p, 500, 375, &ow, &oh, &s);
    CHECK(ow == 800 && oh == 600 && s == 1.6);
    fr_image_resized_size(&p, 2000, 1000, &ow, &oh, &s);
    CHECK(ow == 1000 && oh == 500 && s == 0.5);
    d.min_size = 0; // detectron2 MIN_SIZE_TEST 0: no resize
    fr_image_resized_size(&d, 123, 45, &ow, &oh, &s);
    CHECK(ow == 123 && oh == 45 && s == 1.0);
    free(ls);
}

static int compare_f32(const float *got, const float *exp, size_t n, double tol, double *maxd) {
    size_t bad = 0;
    *maxd = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)exp[i]);
        if (!(d <= tol)) bad++;
        if (d > *maxd || d != d) *maxd = d;
    }
    return (int)(bad > 0x7FFFFFFF ? 0x7FFFFFFF : bad);
}

TEST(test_pipelines) {
    mline *ls;
    int n = manifest(&ls);
    CHECK(n > 0);
    if (n <= 0) return;
    int counts[4] = {0};
    for (int i = 0; i < n; i++) {
        int kind = !strcmp(ls[i].kind, "pil") ? 0 : !strcmp(ls[i].kind, "d2") ? 1
                 : !strcmp(ls[i].kind, "cv") ? 2 : !strcmp(ls[i].kind, "pyfrcnn") ? 3 : -1;
        if (kind < 0) continue;
        size_t in_n, en;
        unsigned char *in = fixture(ls[i].a, &in_n), *exp = fixture(ls[i].b, &en);
        CHECKF(in && exp, "fixture %s / %s", ls[i].a, ls[i].b);
        if (!in || !exp) {
            free(in);
            free(exp);
            continue;
        }
        fr_image img = {ls[i].v[0], ls[i].v[1], in};
        int ow, oh;
        fr_config c;
        if (kind == 0 || kind == 2) {
            c = cfg_raw(kind == 0 ? FR_RESIZE_DETECTRON2 : FR_RESIZE_PYFRCNN);
            ow = ls[i].v[2], oh = ls[i].v[3];
        } else {
            c = kind == 1 ? cfg_d2() : cfg_py();
            c.min_size = ls[i].v[2], c.max_size = ls[i].v[3];
            double s;
            fr_image_resized_size(&c, img.w, img.h, &ow, &oh, &s);
            CHECKF(ow == ls[i].v[4] && oh == ls[i].v[5], "%s size %dx%d", ls[i].a, ow, oh);
        }
        size_t m = (size_t)ow * oh * 3;
        float *out = malloc(m * sizeof(float));
        fr_err e = {0};
        fr_status rc = fr_image_preprocess(&img, &c, ow, oh, out, &e);
        CHECKF(rc == FR_OK, "%s: %s", ls[i].b, e.msg);
        if (rc == FR_OK && kind == 0) {
            // PIL resize: compare uint8 exactly, count differing pixels
            size_t diff = 0;
            CHECK(en == m);
            for (size_t k = 0; k < m && k < en; k++) diff += out[k] != (float)exp[k];
            CHECKF(diff == 0, "PIL resize %dx%d -> %dx%d: %zu values differ", img.w, img.h, ow, oh, diff);
        } else if (rc == FR_OK) {
            CHECK(en == m * sizeof(float));
            double maxd = 0;
            // detectron2 and the dsize cv cases are exact; py-faster-rcnn's mean is float64
            // in numpy and float32 in fr_config (1 ulp at ~100).
            double tol = kind == 3 ? 1e-4 : 0.0;
            int bad = en == m * sizeof(float) ? compare_f32(out, (const float *)exp, m, tol, &maxd) : -1;
            CHECKF(bad == 0, "%s %dx%d -> %dx%d: %d values differ (max %g)", ls[i].kind, img.w, img.h,
                   ow, oh, bad, maxd);
            if (kind == 3) printf("  py-faster-rcnn input %s %dx%d: max |d| %.3g\n", ls[i].a, ow, oh, maxd);
        }
        counts[kind]++;
        free(out);
        free(in);
        free(exp);
    }
    CHECKF(counts[0] >= 9 && counts[1] >= 3 && counts[2] >= 9 && counts[3] >= 4, "%d %d %d %d",
           counts[0], counts[1], counts[2], counts[3]);
    free(ls);
}

TEST(test_same_size_copy) {
    unsigned char px[5 * 3 * 3];
    for (int i = 0; i < 45; i++) px[i] = (unsigned char)(i * 37);
    fr_image img = {5, 3, px};
    for (int f = 0; f < 2; f++) {
        fr_config c = f ? cfg_py() : cfg_d2();
        float out[45];
        fr_err e = {0};
        CHECK(fr_image_preprocess(&img, &c, 5, 3, out, &e) == FR_OK);
        int bad = 0;
        for (int i = 0; i < 15; i++)
            for (int ch = 0; ch < 3; ch++) {
                float want = f ? (float)((double)px[i * 3 + 2 - ch] - (double)c.pixel_mean[ch])
                               : ((float)px[i * 3 + 2 - ch] - c.pixel_mean[ch]) / c.pixel_std[ch];
                bad += out[i * 3 + ch] != want;
            }
        CHECK(bad == 0);
    }
    // std and RGB order applied
    fr_config c = cfg_d2();
    c.input_rgb = 1;
    c.pixel_mean[0] = 123.675f, c.pixel_mean[1] = 116.28f, c.pixel_mean[2] = 103.53f;
    c.pixel_std[0] = 58.395f, c.pixel_std[1] = 57.12f, c.pixel_std[2] = 57.375f;
    float out[45];
    fr_err e = {0};
    CHECK(fr_image_preprocess(&img, &c, 5, 3, out, &e) == FR_OK);
    CHECK(out[4] == ((float)px[4] - 116.28f) / 57.12f);
    // invalid arguments
    c.pixel_std[1] = 0;
    CHECK(fr_image_preprocess(&img, &c, 5, 3, out, &e) == FR_ERR_INVALID);
    c = cfg_d2();
    CHECK(fr_image_preprocess(&img, &c, 0, 3, out, &e) == FR_ERR_INVALID);
    CHECK(fr_image_preprocess(&img, &c, 5, 16385, out, &e) == FR_ERR_INVALID);
    fr_image none = {0, 0, NULL};
    CHECK(fr_image_preprocess(&none, &c, 5, 3, out, &e) == FR_ERR_INVALID);
}

// ---- allocation failures --------------------------------------------------------------------

static int run_pipeline(const unsigned char *b, size_t n, fr_status *st) {
    fr_image img;
    fr_err e = {0};
    fr_status rc = fr_image_decode(&img, b, n, NULL, 1, &e);
    if (rc == FR_OK) {
        fr_config cs[2] = {cfg_d2(), cfg_py()};
        for (int k = 0; k < 2 && rc == FR_OK; k++) {
            cs[k].min_size = 50, cs[k].max_size = 60;
            int ow, oh;
            double s;
            fr_image_resized_size(&cs[k], img.w, img.h, &ow, &oh, &s);
            float *out = malloc(sizeof(float) * 3 * (size_t)ow * oh);
            rc = fr_image_preprocess(&img, &cs[k], ow, oh, out, &e);
            free(out);
        }
        fr_image_free(&img);
    }
    *st = rc;
    return rc == FR_OK;
}

TEST(test_alloc_failures) {
    static const char *files[] = {"tiny.jpg", "prog.jpg", "tiny.png", "cmyk.jpg", "exif6.jpg", "gray.jpg"};
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        char p[256];
        snprintf(p, sizeof p, DATA "%s", files[f]);
        size_t n;
        unsigned char *b = slurp(p, &n);
        if (!b) continue;
        int k, bad = 0;
        for (k = 1; k < 10000; k++) {
            fr_status st;
            fr_alloc_fail_at(k);
            int ok = run_pipeline(b, n, &st);
            int failed = fr_alloc_failed();
            fr_alloc_fail_at(0);
            if (!failed) {
                CHECKF(ok, "%s: %s without an injected failure", files[f], fr_status_name(st));
                break;
            }
            if (st != FR_ERR_NOMEM && bad++ < 3)
                fprintf(stderr, "    %s: failing allocation %d gave %s\n", files[f], k, fr_status_name(st));
        }
        CHECKF(bad == 0, "%s: %d injected failures not reported as out of memory", files[f], bad);
        CHECK(k > 3 && k < 10000);
        free(b);
    }
    // palette PNG (padded copy) and a PNG with eXIf
    unsigned char raw[1 + 2] = {0, 0x01, 0x9F};
    buf x = {0};
    chunk(&x, "PLTE", (const unsigned char *)"\x0a\x14\x1e\x28\x32\x3c", 6);
    chunk(&x, "eXIf", (const unsigned char *)"MM\0*\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0\0\0\0\0", 26);
    buf p = make_png(4, 1, 4, 3, 0, raw, sizeof raw, &x, 1);
    int k;
    for (k = 1; k < 1000; k++) {
        fr_status st;
        fr_alloc_fail_at(k);
        run_pipeline(p.b, p.n, &st);
        int failed = fr_alloc_failed();
        fr_alloc_fail_at(0);
        if (!failed) {
            CHECK(st == FR_OK);
            break;
        }
        CHECKF(st == FR_ERR_NOMEM, "palette png: allocation %d: %s", k, fr_status_name(st));
    }
    fr_image img;
    fr_err e = {0};
    CHECK(dec(&img, p.b, p.n, &e) == FR_OK && img.w == 1 && img.h == 4); // eXIf orientation 6
    fr_image_free(&img);
    free(p.b);
    free(x.b);
}

// ---- I19: concurrent decodes ----------------------------------------------------------------

typedef struct {
    const unsigned char *b;
    size_t n;
    const fr_image *ref;
    int ok;
} thr_arg;

static void *thr_decode(void *p) {
    thr_arg *a = p;
    a->ok = 1;
    for (int i = 0; i < 20; i++) {
        fr_image img;
        fr_err e = {0};
        if (fr_image_decode(&img, a->b, a->n, NULL, 1, &e) != FR_OK) {
            a->ok = 0;
            break;
        }
        if (img.w != a->ref->w || img.h != a->ref->h ||
            memcmp(img.rgb, a->ref->rgb, (size_t)img.w * img.h * 3))
            a->ok = 0;
        fr_image_free(&img);
        // an error path in between (stb's failure reason is thread-local)
        if (fr_image_decode(&img, a->b, a->n - 3, NULL, 1, &e) == FR_OK) a->ok = 0;
    }
    return NULL;
}

TEST(test_concurrent) {
    const char *names[2] = {DATA "prog.jpg", DATA "tiny.png"};
    for (int f = 0; f < 2; f++) {
        size_t n;
        unsigned char *b = slurp(names[f], &n);
        if (!b) continue;
        fr_image ref;
        fr_err e = {0};
        CHECK(dec(&ref, b, n, &e) == FR_OK);
        pthread_t t[4];
        thr_arg a[4];
        for (int i = 0; i < 4; i++) {
            a[i] = (thr_arg){b, n, &ref, 0};
            pthread_create(&t[i], NULL, thr_decode, &a[i]);
        }
        for (int i = 0; i < 4; i++) {
            pthread_join(t[i], NULL);
            CHECK(a[i].ok);
        }
        fr_image_free(&ref);
        free(b);
    }
}

int main(void) {
    fr_alloc_init();
    RUN(test_unsupported_types);
    RUN(test_byte_cap);
    RUN(test_small_files);
    RUN(test_truncated_jpeg);
    RUN(test_truncated_png);
    RUN(test_png_crc);
    RUN(test_one_pixel);
    RUN(test_extreme_aspect);
    RUN(test_size_caps);
    RUN(test_png_idat_size);
    RUN(test_png_structure);
    RUN(test_progressive_scans);
    RUN(test_jpeg_unsupported);
    RUN(test_jpeg_dht);
    RUN(test_jpeg_structure);
    RUN(test_jpeg_short_scan);
    RUN(test_jpeg_dc_overflow);
    RUN(test_colour_fixtures);
    RUN(test_colour_constructed);
    RUN(test_jpeg_vs_pil);
    RUN(test_exif_jpeg);
    RUN(test_resized_size);
    RUN(test_pipelines);
    RUN(test_same_size_copy);
    RUN(test_alloc_failures);
    RUN(test_concurrent);
    return harness_done(__FILE__);
}
