// draw.c - boxes and labels drawn into an RGB image, and a small PNG writer (see draw.h).
//
// PNG writer: each row gets the filter (None, Sub, Up, Average, Paeth) with the smallest sum of
// absolute signed bytes (the libpng / stb_image_write heuristic); the rows are compressed as one
// fixed-Huffman deflate block with a hash-chain LZ77 matcher (RFC 1951 3.2.6) into a buffer sized
// for the worst case up front, so nothing can overflow and every allocation failure is a clean
// FR_ERR_NOMEM.
#include "draw.h"

#include "alloc.h"
#include "image_stb.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include <stb/stb_easy_font.h>
#pragma GCC diagnostic pop

// ---- drawing ------------------------------------------------------------------------------

static void fill(fr_image *img, int x0, int y0, int x1, int y1, const unsigned char c[3]) {
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > img->w) x1 = img->w;
    if (y1 > img->h) y1 = img->h;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) memcpy(img->rgb + ((size_t)y * img->w + x) * 3, c, 3);
}

// Colours far apart from each other (Tableau 10 + 10 more).
static const unsigned char k_palette[20][3] = {
    {31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},   {148, 103, 189},
    {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207},
    {0, 255, 0},    {255, 0, 255},  {0, 128, 255},  {255, 200, 0},   {0, 0, 160},
    {160, 0, 0},    {0, 160, 120},  {255, 90, 90},  {90, 60, 255},   {200, 255, 120}};

static const unsigned char *colour_for(const char *label, int i) {
    uint32_t h = 2166136261u; // FNV-1a of the label, or the index when there is none
    if (label)
        for (const unsigned char *p = (const unsigned char *)label; *p; p++) h = (h ^ *p) * 16777619u;
    else
        h = (uint32_t)i;
    return k_palette[h % 20];
}

// Draws text with its top-left corner at (x, y), scale s, colour c. Returns the advance.
static int draw_text(fr_image *img, int x, int y, int s, const char *text, const unsigned char c[3]) {
    int adv = 0;
    for (const char *p = text; *p; p++) {
        char ch[2] = {*p, 0};
        _Alignas(16) char vb[1024]; // at most 11 quads of 64 bytes per glyph; stb stores floats
        int q = stb_easy_font_print(0, 0, ch, NULL, vb, (int)sizeof vb);
        for (int k = 0; k < q; k++) {
            float v0[2], v2[2];
            memcpy(v0, vb + (size_t)k * 64, sizeof v0);      // vertex 0: (x0, y0)
            memcpy(v2, vb + (size_t)k * 64 + 32, sizeof v2); // vertex 2: (x1, y1)
            fill(img, x + adv + (int)v0[0] * s, y + (int)v0[1] * s, x + adv + (int)v2[0] * s,
                 y + (int)v2[1] * s, c);
        }
        adv += stb_easy_font_width(ch) * s;
    }
    return adv;
}

void fr_draw_boxes(fr_image *img, const float *boxes, const char *const *labels,
                   const float *scores, int n) {
    if (!img || !img->rgb || img->w < 1 || img->h < 1 || !boxes || n <= 0) return;
    int lo = img->w < img->h ? img->w : img->h;
    int t = lo / 300 + 1;         // line thickness: 1 px below 300, 3 px at 800
    int s = lo >= 400 ? 2 : 1;    // text scale (glyphs are 10 px tall at scale 1)
    if (lo >= 1600) s = 3;
    for (int i = 0; i < n; i++) {
        const float *b = boxes + (size_t)i * 4;
        if (!isfinite(b[0]) || !isfinite(b[1]) || !isfinite(b[2]) || !isfinite(b[3])) continue;
        float fx1 = fminf(b[0], b[2]), fx2 = fmaxf(b[0], b[2]);
        float fy1 = fminf(b[1], b[3]), fy2 = fmaxf(b[1], b[3]);
        if (fx2 < 0 || fy2 < 0 || fx1 > img->w || fy1 > img->h) continue;
        int x1 = (int)floorf(fmaxf(fx1, 0)), y1 = (int)floorf(fmaxf(fy1, 0));
        int x2 = (int)ceilf(fminf(fx2, (float)img->w)), y2 = (int)ceilf(fminf(fy2, (float)img->h));
        if (x2 <= x1) x2 = x1 + 1;
        if (y2 <= y1) y2 = y1 + 1;
        const char *label = labels ? labels[i] : NULL;
        const unsigned char *c = colour_for(label, i);
        fill(img, x1, y1, x2, y1 + t, c);     // top
        fill(img, x1, y2 - t, x2, y2, c);     // bottom
        fill(img, x1, y1, x1 + t, y2, c);     // left
        fill(img, x2 - t, y1, x2, y2, c);     // right
        // tag text
        char text[80];
        size_t k = 0;
        if (label)
            for (const unsigned char *p = (const unsigned char *)label; *p && k < 48; p++)
                text[k++] = *p >= 32 && *p < 127 ? (char)*p : '?';
        text[k] = 0;
        if (scores && isfinite(scores[i]))
            snprintf(text + k, sizeof text - k, "%s%.2f", k ? " " : "", (double)scores[i]);
        if (!text[0]) continue;
        int th = 10 * s, pad = s, tw = stb_easy_font_width(text) * s + 2 * pad;
        int ty = y1 - th - 2 * pad >= 0 ? y1 - th - 2 * pad : y1; // above, else inside
        fill(img, x1, ty, x1 + tw, ty + th + 2 * pad, c);
        int lum = 299 * c[0] + 587 * c[1] + 114 * c[2];
        static const unsigned char black[3] = {0, 0, 0}, white[3] = {255, 255, 255};
        draw_text(img, x1 + pad, ty + pad + s, s, text, lum > 150000 ? black : white);
    }
}

// ---- PNG ----------------------------------------------------------------------------------

static uint32_t crc32_png(uint32_t c, const unsigned char *p, size_t n) {
    c = ~c;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return ~c;
}

static void be32_put(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

typedef struct {
    unsigned char *out;
    size_t pos;
    uint64_t bits;
    int nbits;
} bitw;

static void put_bits(bitw *w, uint32_t v, int n) {
    w->bits |= (uint64_t)v << w->nbits;
    w->nbits += n;
    while (w->nbits >= 8) {
        w->out[w->pos++] = (unsigned char)w->bits;
        w->bits >>= 8;
        w->nbits -= 8;
    }
}

// Huffman codes go out most significant bit first.
static void put_code(bitw *w, uint32_t code, int len) {
    uint32_t r = 0;
    for (int i = 0; i < len; i++) r |= ((code >> i) & 1) << (len - 1 - i);
    put_bits(w, r, len);
}

static void put_litlen(bitw *w, int sym) {
    if (sym < 144) put_code(w, 0x30 + sym, 8);
    else if (sym < 256) put_code(w, 0x190 + sym - 144, 9);
    else if (sym < 280) put_code(w, sym - 256, 7);
    else put_code(w, 0xC0 + sym - 280, 8);
}

static const int k_len_base[29] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                   31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
static const int k_len_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                    2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const int k_dist_base[30] = {1,    2,    3,    4,    5,    7,     9,     13,    17,  25,
                                    33,   49,   65,   97,   129,  193,   257,   385,   513, 769,
                                    1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
static const int k_dist_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                     6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

static void put_match(bitw *w, int len, int dist) {
    int i = 28;
    while (k_len_base[i] > len) i--;
    put_litlen(w, 257 + i);
    if (k_len_extra[i]) put_bits(w, (uint32_t)(len - k_len_base[i]), k_len_extra[i]);
    int d = 29;
    while (k_dist_base[d] > dist) d--;
    put_code(w, (uint32_t)d, 5);
    if (k_dist_extra[d]) put_bits(w, (uint32_t)(dist - k_dist_base[d]), k_dist_extra[d]);
}

#define ZWIN 32768
#define ZHASH (1 << 15)
#define ZCHAIN 16

// Worst case of deflate_fixed's output for n input bytes: a literal costs at most 9 bits, a match
// of >= 3 bytes at most 31 bits (8 + 5 + 5 + 13), so at most 32 bits per 3 bytes; plus headers.
static size_t deflate_bound(size_t n) { return (n / 3 + 1) * 4 + 16; }

// zlib stream (header, one fixed-Huffman block, Adler-32) of in[0..n) into out (deflate_bound(n)
// bytes). Returns the length, or 0 when the hash tables cannot be allocated.
static size_t deflate_fixed(const unsigned char *in, size_t n, unsigned char *out) {
    int32_t *head = fr_malloc(sizeof(int32_t) * ZHASH), *prev = fr_malloc(sizeof(int32_t) * ZWIN);
    if (!head || !prev) {
        fr_free(head);
        fr_free(prev);
        return 0;
    }
    for (int i = 0; i < ZHASH; i++) head[i] = -1;
    bitw w = {out, 0, 0, 0};
    out[w.pos++] = 0x78; // deflate, 32K window
    out[w.pos++] = 0x01; // (0x7801 % 31 == 0), fastest
    put_bits(&w, 1, 1);  // BFINAL
    put_bits(&w, 1, 2);  // BTYPE 01: fixed Huffman
    size_t i = 0;
#define ZH(p) ((((uint32_t)in[p] << 16) ^ ((uint32_t)in[(p) + 1] << 8) ^ in[(p) + 2]) * 2654435761u >> 17)
#define ZINSERT(p)                                                                                 \
    do {                                                                                           \
        uint32_t hh = ZH(p);                                                                       \
        prev[(p) % ZWIN] = head[hh];                                                               \
        head[hh] = (int32_t)(p);                                                                   \
    } while (0)
    while (i < n) {
        int best = 0, bdist = 0;
        if (i + 3 <= n) {
            int32_t cand = head[ZH(i)];
            size_t maxlen = n - i < 258 ? n - i : 258;
            for (int chain = 0; cand >= 0 && chain < ZCHAIN; chain++) {
                size_t dist = i - (size_t)cand;
                if (dist > ZWIN || dist == 0) break;
                size_t l = 0;
                while (l < maxlen && in[cand + l] == in[i + l]) l++;
                if ((int)l > best) {
                    best = (int)l;
                    bdist = (int)dist;
                    if (l == maxlen) break;
                }
                int32_t nx = prev[cand % ZWIN];
                if (nx >= cand) break; // slot reused by a newer position
                cand = nx;
            }
        }
        if (best >= 3) {
            put_match(&w, best, bdist);
            for (int k = 0; k < best; k++, i++)
                if (i + 3 <= n) ZINSERT(i);
        } else {
            put_litlen(&w, in[i]);
            if (i + 3 <= n) ZINSERT(i);
            i++;
        }
    }
#undef ZH
#undef ZINSERT
    put_litlen(&w, 256); // end of block
    if (w.nbits) put_bits(&w, 0, 8 - w.nbits);
    uint32_t a = 1, b = 0;
    for (size_t k = 0; k < n; k++) {
        a = (a + in[k]) % 65521;
        b = (b + a) % 65521;
    }
    be32_put(out + w.pos, b << 16 | a);
    w.pos += 4;
    fr_free(head);
    fr_free(prev);
    return w.pos;
}

static int paeth(int a, int b, int c) {
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    if (pa <= pb && pa <= pc) return a;
    return pb <= pc ? b : c;
}

// Filtered scanlines of img: h rows of (filter byte + 3w bytes).
static void png_filter(const fr_image *img, unsigned char *f) {
    size_t rb = (size_t)img->w * 3;
    for (int y = 0; y < img->h; y++) {
        const unsigned char *row = img->rgb + (size_t)y * rb, *up = y ? row - rb : NULL;
        unsigned char *o = f + (size_t)y * (rb + 1);
        long best = -1;
        int bt = 0;
        for (int t = 0; t < 5; t++) {
            long sum = 0;
            for (size_t x = 0; x < rb; x++) {
                int a = x >= 3 ? row[x - 3] : 0, b = up ? up[x] : 0, c = (x >= 3 && up) ? up[x - 3] : 0;
                int pred = t == 0 ? 0 : t == 1 ? a : t == 2 ? b : t == 3 ? (a + b) / 2 : paeth(a, b, c);
                sum += abs((signed char)(unsigned char)(row[x] - pred));
            }
            if (best < 0 || sum < best) best = sum, bt = t;
        }
        o[0] = (unsigned char)bt;
        for (size_t x = 0; x < rb; x++) {
            int a = x >= 3 ? row[x - 3] : 0, b = up ? up[x] : 0, c = (x >= 3 && up) ? up[x - 3] : 0;
            int pred = bt == 0 ? 0 : bt == 1 ? a : bt == 2 ? b : bt == 3 ? (a + b) / 2 : paeth(a, b, c);
            o[1 + x] = (unsigned char)(row[x] - pred);
        }
    }
}

fr_status fr_image_encode_png(const fr_image *img, unsigned char **png, size_t *len, fr_err *err) {
    *png = NULL;
    *len = 0;
    if (!img || !img->rgb || img->w < 1 || img->h < 1)
        return fr_fail(err, FR_ERR_INVALID, "PNG: no image");
    if (img->w > FR_IMAGE_HARD_MAX_SIDE || img->h > FR_IMAGE_HARD_MAX_SIDE)
        return fr_fail(err, FR_ERR_INVALID, "PNG: image %dx%d is over the size cap", img->w, img->h);
    size_t raw = (size_t)img->h * ((size_t)img->w * 3 + 1), zmax = deflate_bound(raw);
    unsigned char *f = fr_malloc(raw);
    // signature 8, IHDR 25, IDAT header 8 + data + CRC 4, IEND 12
    unsigned char *o = fr_malloc(8 + 25 + 8 + zmax + 4 + 12);
    if (!f || !o) {
        fr_free(f);
        fr_free(o);
        return fr_fail(err, FR_ERR_NOMEM, "PNG: out of memory for a %dx%d image", img->w, img->h);
    }
    png_filter(img, f);
    size_t zn = deflate_fixed(f, raw, o + 41);
    fr_free(f);
    if (!zn) {
        fr_free(o);
        return fr_fail(err, FR_ERR_NOMEM, "PNG: out of memory compressing");
    }
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    memcpy(o, sig, 8);
    be32_put(o + 8, 13);
    memcpy(o + 12, "IHDR", 4);
    be32_put(o + 16, (uint32_t)img->w);
    be32_put(o + 20, (uint32_t)img->h);
    o[24] = 8, o[25] = 2, o[26] = 0, o[27] = 0, o[28] = 0; // 8-bit RGB, not interlaced
    be32_put(o + 29, crc32_png(0, o + 12, 17));
    be32_put(o + 33, (uint32_t)zn);
    memcpy(o + 37, "IDAT", 4);
    be32_put(o + 41 + zn, crc32_png(0, o + 37, 4 + zn));
    unsigned char *e = o + 45 + zn;
    be32_put(e, 0);
    memcpy(e + 4, "IEND", 4);
    be32_put(e + 8, crc32_png(0, e + 4, 4));
    *png = o;
    *len = 45 + zn + 12;
    return FR_OK;
}

fr_status fr_image_write_png(const char *path, const fr_image *img, fr_err *err) {
    unsigned char *png;
    size_t n;
    fr_status rc = fr_image_encode_png(img, &png, &n, err);
    if (rc) return rc;
    FILE *f = fopen(path, "wb");
    if (!f) {
        int e = errno;
        fr_free(png);
        return fr_fail(err, FR_ERR_IO, "%s: %s", path, strerror(e));
    }
    size_t put = fwrite(png, 1, n, f);
    int bad = put != n || fflush(f) != 0;
    int e = errno;
    bad |= fclose(f) != 0;
    fr_free(png);
    if (bad) {
        remove(path);
        return fr_fail(err, FR_ERR_IO, "%s: write failed: %s", path, strerror(e ? e : EIO));
    }
    return FR_OK;
}
