// image_stb.c - the hardened image decoder: a structural pre-validator plus the one copy of
// Debian's stb_image (2.27) in frcnn.
//
// stb_image is compiled here only, as static functions: the JPEG and PNG decoders, memory input
// only, no HDR/linear paths, dimensions capped (STBI_MAX_DIMENSIONS), allocation through
// fr_malloc/fr_realloc/fr_free. Never link -lstb: a default build also decodes GIF, BMP, PSD,
// PIC, TGA, HDR and PNM (bad-inputs row I17).
//
// stb 2.27 trusts several header fields that a crafted file controls: JPEG DHT code counts that
// sum above 256 overflow its Huffman tables (row I18), 16-bit PNGs near 26755^2 overflow a
// 32-bit size (row I9), a PNG whose IEND is cut still decodes (row I3), CRCs are ignored (row
// I4), zlib output grows without bound and palette entries past PLTE are read uninitialised.
// So before stb sees a byte, fr_image_stb_check walks the whole marker stream / chunk list:
//   JPEG: SOI, then segments whose lengths stay inside the buffer; SOF0/1/2 only, 8-bit,
//     1/3/4 components, sampling factors 1..4 in integer ratios; every DHT has class 0/1, id
//     0..3, at most 256 codes forming a valid prefix code and DC symbols <= 15; DQT ids 0..3;
//     SOS after SOF, with known components and tables that were defined; entropy data ends at a
//     marker; EOI must be reached; at most FR_IMAGE_MAX_JPEG_SCANS scans. Arithmetic coding,
//     lossless, hierarchical and 12-bit JPEGs are FR_ERR_UNSUPPORTED.
//   PNG: signature, IHDR first with valid fields, every chunk inside the buffer with a correct
//     CRC-32 (a corrupted CRC is an error, as in libpng), PLTE/tRNS consistent with the colour
//     type, consecutive IDATs, unknown critical chunks rejected, IEND present.
// The size caps apply as soon as IHDR / SOF gives the size, before anything is allocated.
//
// Known residual (stb 2.27, fixed upstream in 2.28, not detectable without entropy decoding):
// when a marker interrupts a block just as stbi__extend_receive needs bits, code_bits goes
// negative and the next refill shifts a zero by >= 32 bits (UBSan: shift exponent). On x86-64
// this shifts a zero and is harmless; it is reported only by sanitizer builds.
#include "image_stb.h"

#include "alloc.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <assert.h>

#define STBI_ONLY_JPEG
#define STBI_ONLY_PNG
#define STBI_NO_STDIO
#define STBI_NO_HDR
#define STBI_NO_LINEAR
#define STBI_MAX_DIMENSIONS FR_IMAGE_HARD_MAX_SIDE
#define STBI_MALLOC(n) fr_malloc(n)
#define STBI_REALLOC(p, n) fr_realloc(p, n)
#define STBI_FREE(p) fr_free(p)
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
// -Wunused-function stays off for this file: with STB_IMAGE_STATIC the header declares static
// functions it never defines (the GIF loader under STBI_ONLY_*, and
// stbi_set_unpremultiply_on_load_thread in 2.27), which GCC reports at the end of the unit.
#pragma GCC diagnostic ignored "-Wunused-function"
// Signed overflow in stb 2.27's JPEG DC prediction (dc_pred + diff, reachable with a crafted but
// well-formed file; fixed upstream in 2.28 by stbi__addints_valid) is made defined (wrap) for
// the stb functions only. The result is cut to 16 bits either way.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("wrapv")
#endif
// clang (the fuzzers): no wrapv pragma; keep UBSan from flagging stb 2.27's two known
// arithmetic UBs (this DC overflow, and a left shift of a negative value a crafted JPEG
// reaches, fixed in 2.28) so the fuzzers look for memory errors and our own UB instead.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((no_sanitize("signed-integer-overflow", "shift"))), apply_to = function)
#endif
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include <stb/stb_image.h>
#pragma GCC diagnostic pop
#if defined(__clang__)
#pragma clang attribute pop
#endif
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

static unsigned be16(const unsigned char *p) { return (unsigned)p[0] << 8 | p[1]; }
static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

// The effective caps: lim's values, never above the hard caps; a value <= 0 means "hard cap
// only" (aspect: no cap).
static fr_status check_caps(int w, int h, const fr_image_limits *lim, fr_err *err) {
    long max_side = FR_IMAGE_HARD_MAX_SIDE, max_pixels = FR_IMAGE_HARD_MAX_PIXELS;
    double max_aspect = 0;
    if (lim) {
        if (lim->max_side > 0 && lim->max_side < max_side) max_side = lim->max_side;
        if (lim->max_pixels > 0 && lim->max_pixels < max_pixels) max_pixels = lim->max_pixels;
        if (lim->max_aspect >= 1 && isfinite(lim->max_aspect)) max_aspect = lim->max_aspect;
    }
    if (w < 1 || h < 1) return fr_fail(err, FR_ERR_FORMAT, "image header: size %dx%d", w, h);
    if (w > max_side || h > max_side)
        return fr_fail(err, FR_ERR_TOO_LARGE, "image is %dx%d pixels: a side is over the cap of %ld",
                       w, h, max_side);
    if ((long long)w * h > max_pixels)
        return fr_fail(err, FR_ERR_TOO_LARGE, "image is %dx%d pixels: over the cap of %ld pixels",
                       w, h, max_pixels);
    int lo = w < h ? w : h, hi = w < h ? h : w;
    if (max_aspect > 0 && (double)hi > max_aspect * lo)
        return fr_fail(err, FR_ERR_TOO_LARGE,
                       "image is %dx%d pixels: aspect ratio over the cap of %g", w, h, max_aspect);
    return FR_OK;
}

// ---- JPEG ---------------------------------------------------------------------------------

typedef struct {
    int have_sof, progressive, ncomp;
    int comp_id[4], comp_tq[4];
    unsigned dqt, dht_dc, dht_ac; // bit masks of the tables defined so far
    int scans;
} jpeg_state;

static fr_status jpeg_sof(jpeg_state *st, int m, const unsigned char *s, size_t n,
                          const fr_image_limits *lim, fr_image_info *info, fr_err *err) {
    if (st->have_sof) return fr_fail(err, FR_ERR_FORMAT, "JPEG: more than one frame header");
    if (n < 6) return fr_fail(err, FR_ERR_FORMAT, "JPEG: frame header too short");
    int prec = s[0], h = (int)be16(s + 1), w = (int)be16(s + 3), nc = s[5];
    if (prec != 8)
        return fr_fail(err, FR_ERR_UNSUPPORTED, "JPEG: %d-bit samples not supported (8-bit only)",
                       prec);
    if (h == 0)
        return fr_fail(err, FR_ERR_UNSUPPORTED, "JPEG: height given later (DNL) not supported");
    if (w == 0) return fr_fail(err, FR_ERR_FORMAT, "JPEG: zero width");
    if (nc != 1 && nc != 3 && nc != 4)
        return fr_fail(err, FR_ERR_UNSUPPORTED, "JPEG: %d components not supported", nc);
    if (n != 6 + 3 * (size_t)nc) return fr_fail(err, FR_ERR_FORMAT, "JPEG: bad frame header length");
    int hmax = 1, vmax = 1;
    for (int i = 0; i < nc; i++) {
        const unsigned char *c = s + 6 + 3 * i;
        int hs = c[1] >> 4, vs = c[1] & 15;
        if (hs < 1 || hs > 4 || vs < 1 || vs > 4)
            return fr_fail(err, FR_ERR_FORMAT, "JPEG: bad sampling factors %dx%d", hs, vs);
        if (c[2] > 3) return fr_fail(err, FR_ERR_FORMAT, "JPEG: bad quantisation table id %d", c[2]);
        st->comp_id[i] = c[0];
        st->comp_tq[i] = c[2];
        if (hs > hmax) hmax = hs;
        if (vs > vmax) vmax = vs;
    }
    for (int i = 0; i < nc; i++) {
        const unsigned char *c = s + 6 + 3 * i;
        if (hmax % (c[1] >> 4) || vmax % (c[1] & 15))
            return fr_fail(err, FR_ERR_UNSUPPORTED, "JPEG: non-integer sampling ratios");
    }
    st->have_sof = 1;
    st->progressive = m == 0xC2;
    st->ncomp = nc;
    info->w = w;
    info->h = h;
    return check_caps(w, h, lim, err);
}

static fr_status jpeg_dht(jpeg_state *st, const unsigned char *s, size_t n, fr_err *err) {
    while (n > 0) {
        if (n < 17) return fr_fail(err, FR_ERR_FORMAT, "JPEG: Huffman table truncated");
        int tc = s[0] >> 4, th = s[0] & 15;
        if (tc > 1 || th > 3)
            return fr_fail(err, FR_ERR_FORMAT, "JPEG: bad Huffman table class %d / id %d", tc, th);
        unsigned total = 0, code = 0;
        for (int len = 1; len <= 16; len++) {
            total += s[len];
            code += s[len];
            if (code > (1u << len))
                return fr_fail(err, FR_ERR_FORMAT, "JPEG: Huffman code lengths are not a prefix code");
            code <<= 1;
        }
        if (total > 256)
            return fr_fail(err, FR_ERR_FORMAT, "JPEG: Huffman table has %u codes (at most 256)",
                           total);
        if (n < 17 + (size_t)total) return fr_fail(err, FR_ERR_FORMAT, "JPEG: Huffman table truncated");
        if (tc == 0) {
            for (unsigned i = 0; i < total; i++)
                if (s[17 + i] > 15)
                    return fr_fail(err, FR_ERR_FORMAT, "JPEG: DC Huffman symbol %d over 15",
                                   s[17 + i]);
            st->dht_dc |= 1u << th;
        } else {
            st->dht_ac |= 1u << th;
        }
        s += 17 + total;
        n -= 17 + total;
    }
    return FR_OK;
}

static fr_status jpeg_dqt(jpeg_state *st, const unsigned char *s, size_t n, fr_err *err) {
    while (n > 0) {
        int pq = s[0] >> 4, tq = s[0] & 15;
        if (pq > 1 || tq > 3)
            return fr_fail(err, FR_ERR_FORMAT, "JPEG: bad quantisation table precision/id");
        size_t need = 1 + 64 * (size_t)(pq + 1);
        if (n < need) return fr_fail(err, FR_ERR_FORMAT, "JPEG: quantisation table truncated");
        st->dqt |= 1u << tq;
        s += need;
        n -= need;
    }
    return FR_OK;
}

static fr_status jpeg_sos(jpeg_state *st, const unsigned char *s, size_t n, fr_err *err) {
    if (!st->have_sof) return fr_fail(err, FR_ERR_FORMAT, "JPEG: scan before the frame header");
    if (++st->scans > FR_IMAGE_MAX_JPEG_SCANS)
        return fr_fail(err, FR_ERR_TOO_LARGE, "JPEG: more than %d scans", FR_IMAGE_MAX_JPEG_SCANS);
    if (n < 1) return fr_fail(err, FR_ERR_FORMAT, "JPEG: scan header too short");
    int ns = s[0];
    if (ns < 1 || ns > st->ncomp) return fr_fail(err, FR_ERR_FORMAT, "JPEG: bad scan component count");
    if (n != 4 + 2 * (size_t)ns) return fr_fail(err, FR_ERR_FORMAT, "JPEG: bad scan header length");
    int ss = s[1 + 2 * ns], se = s[2 + 2 * ns], ah = s[3 + 2 * ns] >> 4, al = s[3 + 2 * ns] & 15;
    if (st->progressive) {
        if (ss > se || se > 63 || ah > 13 || al > 13 || (ss == 0 && se != 0) || (ss > 0 && ns != 1))
            return fr_fail(err, FR_ERR_FORMAT, "JPEG: bad progressive scan parameters");
    } else if (ss != 0 || ah != 0 || al != 0) {
        return fr_fail(err, FR_ERR_FORMAT, "JPEG: bad sequential scan parameters");
    }
    unsigned seen = 0;
    for (int i = 0; i < ns; i++) {
        int id = s[1 + 2 * i], td = s[2 + 2 * i] >> 4, ta = s[2 + 2 * i] & 15, k;
        for (k = 0; k < st->ncomp && st->comp_id[k] != id; k++) {
        }
        if (k == st->ncomp || (seen & (1u << k)))
            return fr_fail(err, FR_ERR_FORMAT, "JPEG: scan names an unknown or repeated component");
        seen |= 1u << k;
        if (td > 3 || ta > 3) return fr_fail(err, FR_ERR_FORMAT, "JPEG: bad Huffman table id in scan");
        if (!(st->dqt & (1u << st->comp_tq[k])))
            return fr_fail(err, FR_ERR_FORMAT, "JPEG: quantisation table %d not defined",
                           st->comp_tq[k]);
        int need_dc = st->progressive ? (ss == 0 && ah == 0) : 1;
        int need_ac = st->progressive ? ss > 0 : 1;
        if ((need_dc && !(st->dht_dc & (1u << td))) || (need_ac && !(st->dht_ac & (1u << ta))))
            return fr_fail(err, FR_ERR_FORMAT, "JPEG: scan uses an undefined Huffman table");
    }
    return FR_OK;
}

static fr_status jpeg_check(const unsigned char *b, size_t len, const fr_image_limits *lim,
                            fr_image_info *info, fr_err *err) {
    jpeg_state st;
    memset(&st, 0, sizeof st);
    if (len < 2 || b[0] != 0xFF || b[1] != 0xD8) return fr_fail(err, FR_ERR_FORMAT, "JPEG: no SOI");
    size_t pos = 2;
    for (;;) {
        if (pos >= len) return fr_fail(err, FR_ERR_FORMAT, "JPEG truncated: no EOI marker");
        if (b[pos] != 0xFF)
            return fr_fail(err, FR_ERR_FORMAT, "JPEG: expected a marker at byte %zu", pos);
        while (pos < len && b[pos] == 0xFF) pos++; // fill bytes
        if (pos >= len) return fr_fail(err, FR_ERR_FORMAT, "JPEG truncated: no EOI marker");
        int m = b[pos++];
        if (m == 0xD9) {
            if (!st.have_sof || st.scans == 0)
                return fr_fail(err, FR_ERR_FORMAT, "JPEG: no image data before EOI");
            break;
        }
        if (m == 0x00 || m == 0x01 || m == 0xD8 || (m >= 0xD0 && m <= 0xD7))
            return fr_fail(err, FR_ERR_FORMAT, "JPEG: unexpected marker 0xFF%02X", m);
        if (len - pos < 2) return fr_fail(err, FR_ERR_FORMAT, "JPEG truncated in a segment length");
        size_t seglen = be16(b + pos);
        if (seglen < 2) return fr_fail(err, FR_ERR_FORMAT, "JPEG: bad segment length");
        if (seglen > len - pos)
            return fr_fail(err, FR_ERR_FORMAT, "JPEG truncated: segment 0xFF%02X runs past the end", m);
        const unsigned char *s = b + pos + 2;
        size_t n = seglen - 2;
        pos += seglen;
        fr_status rc = FR_OK;
        switch (m) {
        case 0xC0:
        case 0xC1:
        case 0xC2: rc = jpeg_sof(&st, m, s, n, lim, info, err); break;
        case 0xC3:
            return fr_fail(err, FR_ERR_UNSUPPORTED, "JPEG: lossless JPEG (SOF3) not supported");
        case 0xC5:
        case 0xC6:
        case 0xC7:
            return fr_fail(err, FR_ERR_UNSUPPORTED, "JPEG: hierarchical JPEG (SOF%d) not supported",
                           m - 0xC0);
        case 0xC9:
        case 0xCA:
        case 0xCB:
        case 0xCD:
        case 0xCE:
        case 0xCF:
            return fr_fail(err, FR_ERR_UNSUPPORTED,
                           "JPEG: arithmetic coding (SOF%d) not supported", m - 0xC0);
        case 0xCC:
            return fr_fail(err, FR_ERR_UNSUPPORTED, "JPEG: arithmetic coding (DAC) not supported");
        case 0xF7: return fr_fail(err, FR_ERR_UNSUPPORTED, "JPEG-LS not supported");
        case 0xC4: rc = jpeg_dht(&st, s, n, err); break;
        case 0xDB: rc = jpeg_dqt(&st, s, n, err); break;
        case 0xDD:
            if (n != 2) rc = fr_fail(err, FR_ERR_FORMAT, "JPEG: bad DRI length");
            break;
        case 0xDC:
            if (n != 2) rc = fr_fail(err, FR_ERR_FORMAT, "JPEG: bad DNL length");
            break;
        case 0xDA: {
            rc = jpeg_sos(&st, s, n, err);
            if (rc) return rc;
            // Entropy-coded data: runs to the next marker other than FF00 (stuffing) or RSTn.
            while (pos < len) {
                if (b[pos] != 0xFF) {
                    pos++;
                    continue;
                }
                if (pos + 1 >= len) break;
                int c = b[pos + 1];
                if (c == 0x00 || (c >= 0xD0 && c <= 0xD7)) pos += 2;
                else if (c == 0xFF) pos++;
                else break;
            }
            if (pos + 1 >= len) return fr_fail(err, FR_ERR_FORMAT, "JPEG truncated inside a scan");
            break;
        }
        case 0xE1:
            if (!info->exif && n >= 6 && memcmp(s, "Exif\0\0", 6) == 0) {
                info->exif = s + 6;
                info->exif_len = n - 6;
            }
            break;
        default:
            if ((m >= 0xE0 && m <= 0xEF) || m == 0xFE) break; // APPn, COM
            return fr_fail(err, FR_ERR_FORMAT, "JPEG: unknown marker 0xFF%02X", m);
        }
        if (rc) return rc;
    }
    return FR_OK;
}

// ---- PNG ----------------------------------------------------------------------------------

static void crc_table(uint32_t t[256]) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        t[n] = c;
    }
}

static uint32_t crc32_of(const uint32_t t[256], const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = t[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static int png_channels(int ctype) {
    switch (ctype) {
    case 0: return 1;
    case 2: return 3;
    case 3: return 1;
    case 4: return 2;
    case 6: return 4;
    }
    return 0;
}

// Bytes of filtered scanlines for a w x h image (one filter byte per row), or 0 if empty.
static uint64_t png_pass_bytes(uint64_t w, uint64_t h, int bits_per_pixel) {
    if (w == 0 || h == 0) return 0;
    return h * (1 + (w * (uint64_t)bits_per_pixel + 7) / 8);
}

static uint64_t png_raw_bytes(int w, int h, int depth, int ctype, int interlace) {
    int bpp = depth * png_channels(ctype);
    if (!interlace) return png_pass_bytes((uint64_t)w, (uint64_t)h, bpp);
    // Adam7: x0, y0, dx, dy of the seven passes
    static const int a7[7][4] = {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4},
                                 {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}};
    uint64_t total = 0;
    for (int p = 0; p < 7; p++) {
        uint64_t pw = w > a7[p][0] ? (uint64_t)(w - a7[p][0] + a7[p][2] - 1) / a7[p][2] : 0;
        uint64_t ph = h > a7[p][1] ? (uint64_t)(h - a7[p][1] + a7[p][3] - 1) / a7[p][3] : 0;
        total += png_pass_bytes(pw, ph, bpp);
    }
    return total;
}

static int png_letter(unsigned char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }

static fr_status png_check(const unsigned char *b, size_t len, const fr_image_limits *lim,
                           fr_image_info *info, fr_err *err) {
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    if (len < 8 || memcmp(b, sig, 8) != 0) return fr_fail(err, FR_ERR_FORMAT, "PNG: bad signature");
    uint32_t crct[256];
    crc_table(crct);
    size_t pos = 8;
    int have_ihdr = 0, have_plte = 0, have_trns = 0, idat_state = 0; // 0 none, 1 in, 2 after
    for (;;) {
        if (len - pos < 12) return fr_fail(err, FR_ERR_FORMAT, "PNG truncated: no IEND chunk");
        uint32_t n = be32(b + pos);
        const unsigned char *type = b + pos + 4, *d = b + pos + 8;
        if (!png_letter(type[0]) || !png_letter(type[1]) || !png_letter(type[2]) ||
            !png_letter(type[3]))
            return fr_fail(err, FR_ERR_FORMAT, "PNG: bad chunk type at byte %zu", pos);
        if (n > 0x7FFFFFFFu || n > len - pos - 12)
            return fr_fail(err, FR_ERR_FORMAT, "PNG truncated: chunk %.4s runs past the end", type);
        if (crc32_of(crct, type, (size_t)n + 4) != be32(d + n))
            return fr_fail(err, FR_ERR_FORMAT, "PNG: CRC mismatch in chunk %.4s", type);
        if (!have_ihdr && memcmp(type, "IHDR", 4) != 0) {
            if (memcmp(type, "CgBI", 4) == 0)
                return fr_fail(err, FR_ERR_UNSUPPORTED, "PNG: Apple CgBI PNG not supported");
            return fr_fail(err, FR_ERR_FORMAT, "PNG: first chunk is not IHDR");
        }
        if (idat_state == 1 && memcmp(type, "IDAT", 4) != 0) idat_state = 2;
        if (memcmp(type, "IHDR", 4) == 0) {
            if (have_ihdr) return fr_fail(err, FR_ERR_FORMAT, "PNG: more than one IHDR");
            if (n != 13) return fr_fail(err, FR_ERR_FORMAT, "PNG: bad IHDR length");
            uint32_t w = be32(d), h = be32(d + 4);
            int depth = d[8], ctype = d[9];
            if (w == 0 || h == 0 || w > 0x7FFFFFFFu || h > 0x7FFFFFFFu)
                return fr_fail(err, FR_ERR_FORMAT, "PNG: bad size %ux%u", w, h);
            int ok = 0;
            switch (ctype) {
            case 0: ok = depth == 1 || depth == 2 || depth == 4 || depth == 8 || depth == 16; break;
            case 3: ok = depth == 1 || depth == 2 || depth == 4 || depth == 8; break;
            case 2:
            case 4:
            case 6: ok = depth == 8 || depth == 16; break;
            }
            if (!ok)
                return fr_fail(err, FR_ERR_FORMAT, "PNG: bad bit depth %d for colour type %d", depth,
                               ctype);
            if (d[10] != 0 || d[11] != 0 || d[12] > 1)
                return fr_fail(err, FR_ERR_FORMAT, "PNG: bad compression/filter/interlace method");
            have_ihdr = 1;
            info->png_depth = depth;
            info->png_ctype = ctype;
            info->png_interlace = d[12];
            // Sizes above INT_MAX fail the caps as TOO_LARGE, not as a format error.
            int wi = w > (uint32_t)INT_MAX ? INT_MAX : (int)w, hi = h > (uint32_t)INT_MAX ? INT_MAX : (int)h;
            info->w = wi;
            info->h = hi;
            fr_status rc = check_caps(wi, hi, lim, err);
            if (rc) return rc;
        } else if (memcmp(type, "PLTE", 4) == 0) {
            if (have_plte || idat_state) return fr_fail(err, FR_ERR_FORMAT, "PNG: misplaced PLTE");
            if (info->png_ctype == 0 || info->png_ctype == 4)
                return fr_fail(err, FR_ERR_FORMAT, "PNG: PLTE in a greyscale image");
            if (n == 0 || n % 3 || n > 768) return fr_fail(err, FR_ERR_FORMAT, "PNG: bad PLTE length");
            have_plte = 1;
            info->png_palette_entries = (int)(n / 3);
            info->png_plte_off = pos;
        } else if (memcmp(type, "tRNS", 4) == 0) {
            if (have_trns || idat_state) return fr_fail(err, FR_ERR_FORMAT, "PNG: misplaced tRNS");
            int ct = info->png_ctype;
            if (ct == 4 || ct == 6)
                return fr_fail(err, FR_ERR_FORMAT, "PNG: tRNS in an image with alpha");
            if (ct == 3 && (!have_plte || n > (uint32_t)info->png_palette_entries))
                return fr_fail(err, FR_ERR_FORMAT, "PNG: tRNS does not match PLTE");
            if ((ct == 0 && n != 2) || (ct == 2 && n != 6))
                return fr_fail(err, FR_ERR_FORMAT, "PNG: bad tRNS length");
            have_trns = 1;
        } else if (memcmp(type, "IDAT", 4) == 0) {
            if (idat_state == 2) return fr_fail(err, FR_ERR_FORMAT, "PNG: IDAT chunks not consecutive");
            if (info->png_ctype == 3 && !have_plte)
                return fr_fail(err, FR_ERR_FORMAT, "PNG: palette image without PLTE");
            idat_state = 1;
            info->png_idat_bytes += n;
        } else if (memcmp(type, "IEND", 4) == 0) {
            if (n != 0) return fr_fail(err, FR_ERR_FORMAT, "PNG: bad IEND length");
            break;
        } else if (memcmp(type, "eXIf", 4) == 0) {
            if (!info->exif) {
                info->exif = d;
                info->exif_len = n;
            }
        } else if (!(type[0] & 0x20)) {
            return fr_fail(err, FR_ERR_UNSUPPORTED, "PNG: unknown critical chunk %.4s", type);
        }
        pos += 12 + (size_t)n;
    }
    if (!idat_state) return fr_fail(err, FR_ERR_FORMAT, "PNG: no IDAT chunk");
    uint64_t raw = png_raw_bytes(info->w, info->h, info->png_depth, info->png_ctype,
                                 info->png_interlace);
    if (raw >= (uint64_t)INT_MAX)
        return fr_fail(err, FR_ERR_TOO_LARGE, "PNG: %llu bytes of image data is over the cap",
                       (unsigned long long)raw);
    info->png_raw_bytes = (size_t)raw;
    return FR_OK;
}

fr_status fr_image_stb_check(const unsigned char *buf, size_t len, fr_image_kind kind,
                             const fr_image_limits *lim, fr_image_info *info, fr_err *err) {
    memset(info, 0, sizeof *info);
    info->kind = kind;
    if (len > (size_t)INT_MAX) return fr_fail(err, FR_ERR_TOO_LARGE, "image of %zu bytes is over 2 GB", len);
    if (kind == FR_IMAGE_KIND_JPEG) return jpeg_check(buf, len, lim, info, err);
    if (kind == FR_IMAGE_KIND_PNG) return png_check(buf, len, lim, info, err);
    return fr_fail(err, FR_ERR_UNSUPPORTED, "unsupported image type");
}

// ---- decoding -----------------------------------------------------------------------------

// Inflates the IDAT stream into a buffer of exactly the size the header implies: corrupt
// data, too little data and too much data (a zlib bomb inside the pixel cap) are all errors,
// and the memory used is bounded by the image size.
static fr_status png_inflate_check(const unsigned char *b, const fr_image_info *info, fr_err *err) {
    fr_status rc = FR_OK;
    unsigned char *z = NULL, *raw = NULL;
    size_t pos = 8, zn = 0;
    // Gather the IDAT payloads (consecutive chunks, checked already).
    z = fr_malloc(info->png_idat_bytes);
    raw = fr_malloc(info->png_raw_bytes);
    if (!z || !raw) {
        rc = fr_fail(err, FR_ERR_NOMEM, "PNG: out of memory for %zu bytes of image data",
                     info->png_raw_bytes);
        goto done;
    }
    for (;;) {
        uint32_t n = be32(b + pos);
        if (memcmp(b + pos + 4, "IDAT", 4) == 0) {
            memcpy(z + zn, b + pos + 8, n);
            zn += n;
        } else if (memcmp(b + pos + 4, "IEND", 4) == 0) {
            break;
        }
        pos += 12 + (size_t)n;
    }
    FR_ASSERT(zn == info->png_idat_bytes);
    int got = stbi_zlib_decode_buffer((char *)raw, (int)info->png_raw_bytes, (const char *)z, (int)zn);
    if (got < 0) {
        const char *why = stbi_failure_reason();
        if (why && strcmp(why, "outofmem") == 0)
            rc = fr_fail(err, FR_ERR_NOMEM, "PNG: out of memory while inflating");
        else
            rc = fr_fail(err, FR_ERR_FORMAT, "PNG: image data is corrupt or larger than %zu bytes (%s)",
                         info->png_raw_bytes, why ? why : "zlib error");
    } else if ((size_t)got != info->png_raw_bytes) {
        rc = fr_fail(err, FR_ERR_FORMAT, "PNG: image data has %d bytes, %zu expected", got,
                     info->png_raw_bytes);
    }
done:
    fr_free(z);
    fr_free(raw);
    return rc;
}

// A copy of the PNG with its PLTE padded to 256 entries by PIL's default palette (entry i is
// grey i), which is what PIL shows for indices past the palette.
static unsigned char *png_pad_palette(const unsigned char *b, size_t len, const fr_image_info *info,
                                      size_t *out_len) {
    size_t off = info->png_plte_off, n = (size_t)info->png_palette_entries * 3, add = 768 - n;
    unsigned char *o = fr_malloc(len + add);
    if (!o) return NULL;
    memcpy(o, b, off + 8 + n);
    for (size_t i = info->png_palette_entries; i < 256; i++)
        memset(o + off + 8 + 3 * i, (int)i, 3);
    o[off] = 0;
    o[off + 1] = 0;
    o[off + 2] = 3;
    o[off + 3] = 0; // 768
    uint32_t t[256];
    crc_table(t);
    uint32_t crc = crc32_of(t, o + off + 4, 4 + 768);
    unsigned char *c = o + off + 8 + 768;
    c[0] = (unsigned char)(crc >> 24);
    c[1] = (unsigned char)(crc >> 16);
    c[2] = (unsigned char)(crc >> 8);
    c[3] = (unsigned char)crc;
    memcpy(c + 4, b + off + 12 + n, len - (off + 12 + n));
    *out_len = len + add;
    return o;
}

static fr_status stb_error(const char *what, fr_err *err) {
    const char *why = stbi_failure_reason();
    if (!why) why = "unknown error";
    if (strcmp(why, "outofmem") == 0) return fr_fail(err, FR_ERR_NOMEM, "%s: out of memory", what);
    if (strcmp(why, "too large") == 0) return fr_fail(err, FR_ERR_TOO_LARGE, "%s: image too large", what);
    return fr_fail(err, FR_ERR_FORMAT, "%s: corrupt image (%s)", what, why);
}

fr_status fr_image_stb_decode(const unsigned char *buf, size_t len, const fr_image_info *info,
                              fr_image *img, fr_err *err) {
    const char *what = info->kind == FR_IMAGE_KIND_PNG ? "PNG" : "JPEG";
    unsigned char *padded = NULL;
    fr_status rc = FR_OK;
    img->w = img->h = 0;
    img->rgb = NULL;
    if (info->kind == FR_IMAGE_KIND_PNG) {
        rc = png_inflate_check(buf, info, err);
        if (rc) return rc;
        if (info->png_ctype == 3 && info->png_palette_entries < 256) {
            padded = png_pad_palette(buf, len, info, &len);
            if (!padded) return fr_fail(err, FR_ERR_NOMEM, "PNG: out of memory");
            buf = padded;
        }
    }
    if (len > (size_t)INT_MAX) {
        rc = fr_fail(err, FR_ERR_TOO_LARGE, "%s: over 2 GB", what);
        goto done;
    }
    // The type is known: call stb's JPEG or PNG entry points directly. The public dispatchers
    // (stbi_info_from_memory, stbi_load_from_memory) try every format in turn, so an allocation
    // failure inside one test surfaced as "unknown image type" and was not an error at all when
    // a later test succeeded.
    int x = 0, y = 0, n = 0, is_png = info->kind == FR_IMAGE_KIND_PNG;
    stbi__context s;
    stbi__start_mem(&s, buf, (int)len);
    if (!(is_png ? stbi__png_info(&s, &x, &y, &n) : stbi__jpeg_info(&s, &x, &y, &n))) {
        rc = stb_error(what, err);
        goto done;
    }
    if (x != info->w || y != info->h) {
        rc = fr_fail(err, FR_ERR_FORMAT, "%s: inconsistent header (%dx%d vs %dx%d)", what, x, y,
                     info->w, info->h);
        goto done;
    }
    // Channels: always ask for 3 (stbi_info's count is wrong for RGB+tRNS in 2.27).
    // What stbi__load_and_postprocess_8bit does, minus the vertical flip, and without its leak of
    // the 16-bit buffer when the 8-bit one cannot be allocated.
    stbi__start_mem(&s, buf, (int)len);
    stbi__result_info ri;
    memset(&ri, 0, sizeof ri);
    ri.bits_per_channel = 8;
    ri.channel_order = STBI_ORDER_RGB;
    void *res = is_png ? stbi__png_load(&s, &x, &y, &n, 3, &ri) : stbi__jpeg_load(&s, &x, &y, &n, 3, &ri);
    if (!res) {
        rc = stb_error(what, err);
        goto done;
    }
    unsigned char *px = res;
    if (ri.bits_per_channel == 16) {
        px = stbi__convert_16_to_8((stbi__uint16 *)res, x, y, 3);
        if (!px) {
            fr_free(res);
            rc = stb_error(what, err);
            goto done;
        }
    } else if (ri.bits_per_channel != 8) {
        fr_free(res);
        rc = fr_fail(err, FR_ERR_INTERNAL, "%s: %d bits per channel from stb", what,
                     ri.bits_per_channel);
        goto done;
    }
    if (x != info->w || y != info->h) {
        fr_free(px);
        rc = fr_fail(err, FR_ERR_INTERNAL, "%s: decoded size %dx%d differs from the header", what,
                     x, y);
        goto done;
    }
    img->w = x;
    img->h = y;
    img->rgb = px; // allocated by fr_malloc via STBI_MALLOC
done:
    fr_free(padded);
    return rc;
}
