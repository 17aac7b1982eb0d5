// image.c - image input: type sniffing, caps, EXIF orientation, resize rules and the network
// input (see image.h). Decoding itself is in image_stb.c (the hardened stb_image unit).
//
// Resizing reproduces the two reference pipelines exactly:
//   detectron2: PIL Image.resize(BILINEAR) on the uint8 image (Pillow's Resample.c: separable
//     two-pass, horizontal first over only the rows the vertical pass needs; triangle filter
//     whose support grows with the downscale factor (antialias); coefficients normalised in
//     double then rounded to 22-bit fixed point (PRECISION_BITS = 32-8-2); accumulation starts
//     at 1 << 21 and the result is shifted and clipped to uint8 after each pass), then
//     (x - mean) / std in float32.
//   py-faster-rcnn: float32 image minus mean (computed in double, as numpy does with a float64
//     mean), then cv2.resize(fx=fy=im_scale, INTER_LINEAR) on float32 (OpenCV resize.cpp:
//     source coordinate (d + 0.5) / scale - 0.5 rounded to float, x clamped to the border with
//     weight 0, rows clamped but weights kept, horizontal pass then vertical, all in float; an
//     exact 2x downscale runs OpenCV's INTER_AREA fast path, the mean of each 2x2 block).
#include "image.h"

#include "alloc.h"
#include "image_stb.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void fr_image_limits_default(fr_image_limits *lim) {
    lim->max_bytes = (size_t)100 << 20; // 100 MiB, the HTTP body cap
    lim->max_pixels = 40000000;         // 40 Mpx: about 120 MB of RGB
    lim->max_side = FR_IMAGE_HARD_MAX_SIDE;
    lim->max_aspect = 64;
}

void fr_image_free(fr_image *img) {
    if (!img) return;
    fr_free(img->rgb);
    img->rgb = NULL;
    img->w = img->h = 0;
}

// ---- type sniffing ------------------------------------------------------------------------

// A name for a type we recognise but do not decode, for the error message; NULL if unknown.
static const char *sniff_other(const unsigned char *b, size_t n) {
    if (n >= 6 && (memcmp(b, "GIF87a", 6) == 0 || memcmp(b, "GIF89a", 6) == 0)) return "GIF";
    if (n >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0) return "WebP";
    if (n >= 4 && (memcmp(b, "II*\0", 4) == 0 || memcmp(b, "MM\0*", 4) == 0)) return "TIFF";
    if (n >= 12 && memcmp(b + 4, "ftyp", 4) == 0) {
        if (memcmp(b + 8, "avif", 4) == 0 || memcmp(b + 8, "avis", 4) == 0) return "AVIF";
        return "HEIF/ISO media";
    }
    if (n >= 2 && b[0] == 'B' && b[1] == 'M') return "BMP";
    if (n >= 4 && memcmp(b, "8BPS", 4) == 0) return "PSD";
    if (n >= 4 && b[0] == 0x53 && b[1] == 0x80 && b[2] == 0xF6 && b[3] == 0x34) return "PIC";
    if (n >= 2 && b[0] == '#' && b[1] == '?') return "Radiance HDR";
    if (n >= 2 && b[0] == 'P' && b[1] >= '1' && b[1] <= '7') return "PNM";
    if (n >= 4 && b[0] == 0xFF && b[1] == 0x4F && b[2] == 0xFF && b[3] == 0x51) return "JPEG 2000";
    if (n >= 12 && memcmp(b, "\0\0\0\x0cjP  ", 8) == 0) return "JPEG 2000";
    if (n >= 2 && b[0] == 0xFF && b[1] == 0x0A) return "JPEG XL";
    if (n >= 4 && b[0] == 0 && b[1] == 0 && (b[2] == 1 || b[2] == 2) && b[3] == 0) return "ICO/CUR";
    return NULL;
}

// ---- EXIF orientation ---------------------------------------------------------------------

static unsigned rd16(const unsigned char *p, int le) {
    return le ? (unsigned)p[0] | (unsigned)p[1] << 8 : (unsigned)p[0] << 8 | p[1];
}
static uint32_t rd32(const unsigned char *p, int le) {
    return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
              : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

// The Orientation tag (0x0112) of IFD0 in a TIFF block, 1..8; 1 when absent or malformed.
// Follows what PIL's getexif() gives detectron2: entries are read until the data runs out (the
// ones read so far count), the last Orientation entry wins, any integer type is accepted and a
// count above 1 uses the first value (stored inline up to 4 bytes, else at an offset).
static int exif_orientation(const unsigned char *p, size_t n) {
    if (!p || n < 8) return 1;
    int le;
    if (p[0] == 'I' && p[1] == 'I') le = 1;
    else if (p[0] == 'M' && p[1] == 'M') le = 0;
    else return 1;
    if (rd16(p + 2, le) != 42) return 1;
    uint32_t off = rd32(p + 4, le);
    if (off > n - 2) return 1;
    size_t count = rd16(p + off, le), avail = (n - off - 2) / 12;
    if (count > avail) count = avail;
    int orient = 1;
    for (size_t i = 0; i < count; i++) {
        const unsigned char *e = p + off + 2 + 12 * i;
        if (rd16(e, le) != 0x0112) continue;
        unsigned type = rd16(e + 2, le);
        uint32_t cnt = rd32(e + 4, le), size;
        switch (type) {
        case 1: case 6: size = 1; break;  // BYTE, SBYTE
        case 3: case 8: size = 2; break;  // SHORT, SSHORT
        case 4: case 9: size = 4; break;  // LONG, SLONG
        default: continue;                // rationals, floats, UNDEFINED: not an orientation
        }
        if (cnt == 0) continue;
        const unsigned char *v = e + 8;
        if ((uint64_t)cnt * size > 4) {
            uint32_t at = rd32(e + 8, le);
            if ((uint64_t)at + (uint64_t)cnt * size > n) break; // PIL stops reading here
            v = p + at;
        }
        long val = size == 1 ? v[0] : size == 2 ? (long)rd16(v, le) : (long)rd32(v, le);
        if (type == 6) val = (signed char)v[0];
        if (type == 8) val = (int16_t)rd16(v, le);
        if (type == 9) val = (int32_t)rd32(v, le);
        orient = val >= 1 && val <= 8 ? (int)val : 1;
    }
    return orient;
}

// Rotates/flips img in place (new buffer) per EXIF orientation o, as PIL's transpose with
// detectron2's table: 2 FLIP_LEFT_RIGHT, 3 ROTATE_180, 4 FLIP_TOP_BOTTOM, 5 TRANSPOSE,
// 6 ROTATE_270, 7 TRANSVERSE, 8 ROTATE_90 (PIL angles are counter-clockwise).
static fr_status apply_orientation(fr_image *img, int o, fr_err *err) {
    if (o <= 1 || o > 8) return FR_OK;
    int w = img->w, h = img->h, swap = o >= 5;
    int ow = swap ? h : w, oh = swap ? w : h;
    unsigned char *dst = fr_malloc((size_t)w * h * 3);
    if (!dst) return fr_fail(err, FR_ERR_NOMEM, "image: out of memory applying EXIF orientation");
    const unsigned char *src = img->rgb;
    for (int y = 0; y < oh; y++) {
        for (int x = 0; x < ow; x++) {
            int sx, sy;
            switch (o) {
            case 2: sx = w - 1 - x, sy = y; break;
            case 3: sx = w - 1 - x, sy = h - 1 - y; break;
            case 4: sx = x, sy = h - 1 - y; break;
            case 5: sx = y, sy = x; break;
            case 6: sx = y, sy = h - 1 - x; break;
            case 7: sx = w - 1 - y, sy = h - 1 - x; break;
            default: sx = w - 1 - y, sy = x; break; // 8
            }
            memcpy(dst + ((size_t)y * ow + x) * 3, src + ((size_t)sy * w + sx) * 3, 3);
        }
    }
    fr_free(img->rgb);
    img->rgb = dst;
    img->w = ow;
    img->h = oh;
    return FR_OK;
}

// ---- decode -------------------------------------------------------------------------------

fr_status fr_image_decode(fr_image *img, const unsigned char *buf, size_t len,
                          const fr_image_limits *lim, int apply_exif, fr_err *err) {
    FR_ASSERT(img != NULL);
    img->w = img->h = 0;
    img->rgb = NULL;
    fr_image_limits def;
    if (!lim) {
        fr_image_limits_default(&def);
        lim = &def;
    }
    if (len == 0 || !buf) return fr_fail(err, FR_ERR_UNSUPPORTED, "unsupported image: empty input");
    if (lim->max_bytes > 0 && len > lim->max_bytes)
        return fr_fail(err, FR_ERR_TOO_LARGE, "image of %zu bytes is over the cap of %zu bytes", len,
                       lim->max_bytes);
    fr_image_kind kind;
    static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    if (len >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF) {
        kind = FR_IMAGE_KIND_JPEG;
    } else if (len >= 8 && memcmp(buf, png_sig, 8) == 0) {
        kind = FR_IMAGE_KIND_PNG;
    } else {
        const char *other = sniff_other(buf, len);
        if (other)
            return fr_fail(err, FR_ERR_UNSUPPORTED,
                           "unsupported image type (%s): only JPEG and PNG are accepted", other);
        return fr_fail(err, FR_ERR_UNSUPPORTED,
                       "unsupported image type: not a JPEG or PNG file");
    }
    fr_image_info info;
    fr_status rc = fr_image_stb_check(buf, len, kind, lim, &info, err);
    if (rc) return rc;
    rc = fr_image_stb_decode(buf, len, &info, img, err);
    if (rc) return rc;
    if (apply_exif && info.exif) {
        rc = apply_orientation(img, exif_orientation(info.exif, info.exif_len), err);
        if (rc) fr_image_free(img);
    }
    return rc;
}

fr_status fr_image_load(fr_image *img, const char *path, const fr_image_limits *lim,
                        int apply_exif, fr_err *err) {
    FR_ASSERT(img != NULL);
    img->w = img->h = 0;
    img->rgb = NULL;
    fr_image_limits def;
    if (!lim) {
        fr_image_limits_default(&def);
        lim = &def;
    }
    FILE *f = fopen(path, "rb");
    if (!f) return fr_fail(err, FR_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return fr_fail(err, FR_ERR_IO, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    if ((lim->max_bytes > 0 && n > lim->max_bytes) || (uint64_t)st.st_size > (uint64_t)INT_MAX) {
        fclose(f);
        return fr_fail(err, FR_ERR_TOO_LARGE, "%s: %lld bytes is over the image size cap", path,
                       (long long)st.st_size);
    }
    unsigned char *buf = fr_malloc(n);
    if (!buf) {
        fclose(f);
        return fr_fail(err, FR_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t got = n ? fread(buf, 1, n, f) : 0;
    int bad = got != n || ferror(f);
    fclose(f);
    if (bad) {
        fr_free(buf);
        return fr_fail(err, FR_ERR_IO, "%s: short read", path);
    }
    fr_status rc = fr_image_decode(img, buf, n, lim, apply_exif, err);
    fr_free(buf);
    if (rc) {
        // Prefix the path, keeping the decoder's message.
        if (err) {
            char msg[sizeof err->msg];
            snprintf(msg, sizeof msg, "%.200s: %.300s", path, err->msg);
            memcpy(err->msg, msg, sizeof msg);
        }
    }
    return rc;
}

// ---- resize rules -------------------------------------------------------------------------

static int clamp_side(double v) {
    if (!(v >= 1)) return 1;
    if (v > FR_IMAGE_HARD_MAX_SIDE) return FR_IMAGE_HARD_MAX_SIDE;
    return (int)v;
}

void fr_image_resized_size(const fr_config *cfg, int w, int h, int *out_w, int *out_h,
                           double *im_scale) {
    if (w < 1) w = 1;
    if (h < 1) h = 1;
    double scale = 1.0;
    int ow = w, oh = h;
    if (cfg->min_size > 0) {
        int short_side = w < h ? w : h, long_side = w < h ? h : w;
        if (cfg->resize == FR_RESIZE_PYFRCNN) {
            // py-faster-rcnn test.py _get_image_blob; sizes as cv2.resize computes them from fx/fy
            scale = (double)cfg->min_size / (double)short_side;
            if (cfg->max_size > 0 && nearbyint(scale * long_side) > cfg->max_size)
                scale = (double)cfg->max_size / (double)long_side;
            ow = clamp_side(nearbyint(w * scale));
            oh = clamp_side(nearbyint(h * scale));
        } else {
            // detectron2 ResizeShortestEdge.get_output_shape
            double size = cfg->min_size, newh, neww;
            scale = size / short_side;
            if (h < w) newh = size, neww = scale * w;
            else newh = scale * h, neww = size;
            double m = newh > neww ? newh : neww;
            if (cfg->max_size > 0 && m > cfg->max_size) {
                double s = cfg->max_size * 1.0 / m;
                newh = newh * s;
                neww = neww * s;
                scale *= s;
            }
            ow = clamp_side(floor(neww + 0.5));
            oh = clamp_side(floor(newh + 0.5));
        }
    }
    if (out_w) *out_w = ow;
    if (out_h) *out_h = oh;
    if (im_scale) *im_scale = scale;
}

// ---- PIL bilinear (detectron2) ------------------------------------------------------------

#define PIL_PRECISION_BITS (32 - 8 - 2)

typedef struct {
    int ksize;      // coefficients per output pixel
    int *bounds;    // [out][2]: first input index, number of inputs
    int32_t *kk;    // [out][ksize] fixed-point weights
} pil_coeffs;

static void pil_coeffs_free(pil_coeffs *c) {
    fr_free(c->bounds);
    fr_free(c->kk);
    c->bounds = NULL;
    c->kk = NULL;
}

static double pil_bilinear(double x) {
    if (x < 0.0) x = -x;
    if (x < 1.0) return 1.0 - x;
    return 0.0;
}

// Pillow precompute_coeffs + normalize_coeffs_8bpc for box (0, in_size).
static fr_status pil_coeffs_init(pil_coeffs *c, int in_size, int out_size, fr_err *err) {
    double *tmp = NULL;
    double scale = (double)(float)in_size / out_size, filterscale = scale;
    if (filterscale < 1.0) filterscale = 1.0;
    double support = 1.0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    c->ksize = ksize;
    c->bounds = fr_malloc((size_t)out_size * 2 * sizeof(int));
    c->kk = fr_calloc((size_t)out_size * ksize, sizeof(int32_t));
    tmp = fr_malloc((size_t)ksize * sizeof(double));
    if (!c->bounds || !c->kk || !tmp) {
        fr_free(tmp);
        pil_coeffs_free(c);
        return fr_fail(err, FR_ERR_NOMEM, "resize: out of memory");
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = 0.0 + (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        if (xmax < 0) xmax = 0;
        if (xmax > ksize) xmax = ksize; // cannot happen; keeps the writes in bounds
        for (int x = 0; x < xmax; x++) {
            double w = pil_bilinear((x + xmin - center + 0.5) * ss);
            tmp[x] = w;
            ww += w;
        }
        int32_t *k = c->kk + (size_t)xx * ksize;
        for (int x = 0; x < xmax; x++) {
            double v = ww != 0.0 ? tmp[x] / ww : tmp[x];
            k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PIL_PRECISION_BITS))
                         : (int32_t)(0.5 + v * (1 << PIL_PRECISION_BITS));
        }
        c->bounds[xx * 2] = xmin;
        c->bounds[xx * 2 + 1] = xmax;
    }
    fr_free(tmp);
    return FR_OK;
}

static unsigned char pil_clip8(int32_t ss) {
    int32_t v = ss >> PIL_PRECISION_BITS; // arithmetic shift, as Pillow
    return v < 0 ? 0 : v > 255 ? 255 : (unsigned char)v;
}

// Image.resize((ow, oh), BILINEAR) of an RGB uint8 image, into dst (ow*oh*3).
static fr_status pil_resize(const unsigned char *src, int w, int h, unsigned char *dst, int ow,
                            int oh, fr_err *err) {
    pil_coeffs cv = {0}, chz = {0};
    unsigned char *tmp = NULL;
    int32_t *acc = NULL;
    fr_status rc = pil_coeffs_init(&cv, h, oh, err);
    if (rc) return rc;
    int need_h = ow != w, need_v = oh != h;
    int ybox_first = cv.bounds[0];
    int ybox_last = cv.bounds[(oh - 1) * 2] + cv.bounds[(oh - 1) * 2 + 1];
    const unsigned char *in = src;
    int in_w = w;
    if (need_h) {
        rc = pil_coeffs_init(&chz, w, ow, err);
        if (rc) goto done;
        int rows = ybox_last - ybox_first;
        unsigned char *hout = dst;
        if (need_v) {
            tmp = fr_malloc((size_t)ow * rows * 3);
            if (!tmp) {
                rc = fr_fail(err, FR_ERR_NOMEM, "resize: out of memory");
                goto done;
            }
            hout = tmp;
        }
        for (int yy = 0; yy < rows; yy++) {
            const unsigned char *row = src + (size_t)(yy + ybox_first) * w * 3;
            unsigned char *o = hout + (size_t)yy * ow * 3;
            for (int xx = 0; xx < ow; xx++) {
                int xmin = chz.bounds[xx * 2], n = chz.bounds[xx * 2 + 1];
                const int32_t *k = chz.kk + (size_t)xx * chz.ksize;
                const unsigned char *p = row + (size_t)xmin * 3;
                int32_t s0 = 1 << (PIL_PRECISION_BITS - 1), s1 = s0, s2 = s0;
                for (int x = 0; x < n; x++) {
                    s0 += p[x * 3 + 0] * k[x];
                    s1 += p[x * 3 + 1] * k[x];
                    s2 += p[x * 3 + 2] * k[x];
                }
                o[xx * 3 + 0] = pil_clip8(s0);
                o[xx * 3 + 1] = pil_clip8(s1);
                o[xx * 3 + 2] = pil_clip8(s2);
            }
        }
        if (!need_v) goto done;
        for (int i = 0; i < oh; i++) cv.bounds[i * 2] -= ybox_first;
        in = tmp;
        in_w = ow;
    }
    // vertical pass, a row at a time into an int32 accumulator (integer sums: the same result
    // as Pillow's per-pixel loop)
    acc = fr_malloc((size_t)ow * 3 * sizeof(int32_t));
    if (!acc) {
        rc = fr_fail(err, FR_ERR_NOMEM, "resize: out of memory");
        goto done;
    }
    for (int yy = 0; yy < oh; yy++) {
        int ymin = cv.bounds[yy * 2], n = cv.bounds[yy * 2 + 1];
        const int32_t *k = cv.kk + (size_t)yy * cv.ksize;
        unsigned char *o = dst + (size_t)yy * ow * 3;
        for (int xx = 0; xx < ow * 3; xx++) acc[xx] = 1 << (PIL_PRECISION_BITS - 1);
        for (int y = 0; y < n; y++) {
            const unsigned char *row = in + (size_t)(y + ymin) * in_w * 3;
            int32_t ky = k[y];
            for (int xx = 0; xx < ow * 3; xx++) acc[xx] += row[xx] * ky;
        }
        for (int xx = 0; xx < ow * 3; xx++) o[xx] = pil_clip8(acc[xx]);
    }
done:
    fr_free(acc);
    fr_free(tmp);
    pil_coeffs_free(&cv);
    pil_coeffs_free(&chz);
    return rc;
}

// ---- OpenCV INTER_LINEAR on float32 (py-faster-rcnn) --------------------------------------

typedef struct {
    const unsigned char *src; // RGB uint8
    int w, h;
    int chan[3];              // source channel of each output channel
    float lut[3][256];        // (float)(v - mean[c]) computed in double, per output channel
} cv_src;

static float cv_px(const cv_src *s, int y, int x, int c) {
    return s->lut[c][s->src[((size_t)y * s->w + x) * 3 + s->chan[c]]];
}

// The exact 2x downscale: OpenCV switches INTER_LINEAR to its INTER_AREA fast path.
static void cv_area2(const cv_src *s, float *out, int ow, int oh) {
    for (int dy = 0; dy < oh; dy++) {
        int sy0 = dy * 2;
        for (int dx = 0; dx < ow; dx++) {
            int sx0 = dx * 2;
            for (int c = 0; c < 3; c++) {
                float v;
                if (sy0 + 2 <= s->h && sx0 + 2 <= s->w) {
                    float sum = 0;
                    sum += cv_px(s, sy0, sx0, c) + cv_px(s, sy0, sx0 + 1, c) +
                           cv_px(s, sy0 + 1, sx0, c) + cv_px(s, sy0 + 1, sx0 + 1, c);
                    v = sum * 0.25f;
                } else { // border: the mean of the pixels that exist
                    float sum = 0;
                    int count = 0;
                    for (int yy = sy0; yy < sy0 + 2 && yy < s->h; yy++)
                        for (int xx = sx0; xx < sx0 + 2 && xx < s->w; xx++) {
                            sum += cv_px(s, yy, xx, c);
                            count++;
                        }
                    v = count ? sum / count : 0.0f;
                }
                out[((size_t)dy * ow + dx) * 3 + c] = v;
            }
        }
    }
}

static int cv_floor(float v) {
    int i = (int)v;
    return i - (i > v);
}

static void cv_hresize(const cv_src *s, int row, const int *xofs, const float *alpha, int xmax,
                       int ow, float *d) {
    for (int dx = 0; dx < ow; dx++) {
        int sx = xofs[dx];
        for (int c = 0; c < 3; c++) {
            if (dx < xmax)
                d[dx * 3 + c] = cv_px(s, row, sx, c) * alpha[dx * 2] +
                                cv_px(s, row, sx + 1, c) * alpha[dx * 2 + 1];
            else
                d[dx * 3 + c] = cv_px(s, row, sx, c);
        }
    }
}

static fr_status cv_resize(const cv_src *s, float *out, int ow, int oh, double inv_sx,
                           double inv_sy, fr_err *err) {
    double scale_x = 1. / inv_sx, scale_y = 1. / inv_sy;
    int isx = (int)nearbyint(scale_x), isy = (int)nearbyint(scale_y);
    if (fabs(scale_x - isx) < 2.220446049250313e-16 && fabs(scale_y - isy) < 2.220446049250313e-16 &&
        isx == 2 && isy == 2) {
        cv_area2(s, out, ow, oh);
        return FR_OK;
    }
    int *xofs = fr_malloc((size_t)ow * sizeof(int));
    float *alpha = fr_malloc((size_t)ow * 2 * sizeof(float));
    float *rows = fr_malloc((size_t)ow * 3 * 2 * sizeof(float));
    if (!xofs || !alpha || !rows) {
        fr_free(xofs);
        fr_free(alpha);
        fr_free(rows);
        return fr_fail(err, FR_ERR_NOMEM, "resize: out of memory");
    }
    int xmax = ow;
    for (int dx = 0; dx < ow; dx++) {
        float fx = (float)((dx + 0.5) * scale_x - 0.5);
        int sx = cv_floor(fx);
        fx -= sx;
        if (sx < 0) fx = 0, sx = 0;
        if (sx + 1 >= s->w) {
            if (dx < xmax) xmax = dx;
            if (sx >= s->w - 1) fx = 0, sx = s->w - 1;
        }
        xofs[dx] = sx;
        alpha[dx * 2] = 1.f - fx;
        alpha[dx * 2 + 1] = fx;
    }
    float *h0 = rows, *h1 = rows + (size_t)ow * 3;
    int r0 = -1, r1 = -1; // source rows held in h0, h1
    for (int dy = 0; dy < oh; dy++) {
        float fy = (float)((dy + 0.5) * scale_y - 0.5);
        int sy = cv_floor(fy);
        fy -= sy;
        float b0 = 1.f - fy, b1 = fy;
        int y0 = sy < 0 ? 0 : sy >= s->h ? s->h - 1 : sy;
        int y1 = sy + 1 < 0 ? 0 : sy + 1 >= s->h ? s->h - 1 : sy + 1;
        if (r0 != y0) {
            if (r1 == y0) { // reuse the row computed for the previous output row
                float *t = h0;
                h0 = h1;
                h1 = t;
                r0 = y0;
                r1 = -1;
            } else {
                cv_hresize(s, y0, xofs, alpha, xmax, ow, h0);
                r0 = y0;
            }
        }
        if (r1 != y1) {
            cv_hresize(s, y1, xofs, alpha, xmax, ow, h1);
            r1 = y1;
        }
        float *o = out + (size_t)dy * ow * 3;
        for (int x = 0; x < ow * 3; x++) o[x] = h0[x] * b0 + h1[x] * b1;
    }
    fr_free(xofs);
    fr_free(alpha);
    fr_free(rows);
    return FR_OK;
}

// ---- network input ------------------------------------------------------------------------

fr_status fr_image_preprocess(const fr_image *img, const fr_config *cfg, int out_w, int out_h,
                              float *out, fr_err *err) {
    if (!img || !img->rgb || img->w < 1 || img->h < 1 || !cfg || !out)
        return fr_fail(err, FR_ERR_INVALID, "preprocess: no image");
    if (out_w < 1 || out_h < 1 || out_w > FR_IMAGE_HARD_MAX_SIDE || out_h > FR_IMAGE_HARD_MAX_SIDE)
        return fr_fail(err, FR_ERR_INVALID, "preprocess: bad output size %dx%d", out_w, out_h);
    for (int c = 0; c < 3; c++)
        if (!isfinite(cfg->pixel_mean[c]) || !isfinite(cfg->pixel_std[c]) || !(cfg->pixel_std[c] > 0))
            return fr_fail(err, FR_ERR_INVALID, "preprocess: bad pixel mean/std");
    int chan[3];
    for (int c = 0; c < 3; c++) chan[c] = cfg->input_rgb ? c : 2 - c;
    const float *mean = cfg->pixel_mean, *std = cfg->pixel_std;
    size_t n = (size_t)out_w * out_h;
    int same = out_w == img->w && out_h == img->h;

    if (cfg->resize == FR_RESIZE_PYFRCNN) {
        cv_src *s = fr_malloc(sizeof *s);
        if (!s) return fr_fail(err, FR_ERR_NOMEM, "preprocess: out of memory");
        s->src = img->rgb;
        s->w = img->w;
        s->h = img->h;
        for (int c = 0; c < 3; c++) {
            s->chan[c] = chan[c];
            for (int v = 0; v < 256; v++) s->lut[c][v] = (float)((double)v - (double)mean[c]);
        }
        fr_status rc = FR_OK;
        if (same) {
            // cv2.resize copies when dsize == ssize
            for (size_t i = 0; i < n; i++)
                for (int c = 0; c < 3; c++) out[i * 3 + c] = s->lut[c][img->rgb[i * 3 + chan[c]]];
        } else {
            // fx = fy = im_scale when the size is the rule's (what py-faster-rcnn passes);
            // otherwise OpenCV's dsize form, scale = out / in per axis.
            int rw, rh;
            double im_scale, isx, isy;
            fr_image_resized_size(cfg, img->w, img->h, &rw, &rh, &im_scale);
            if (rw == out_w && rh == out_h && cfg->min_size > 0) {
                isx = isy = im_scale;
            } else {
                isx = (double)out_w / img->w;
                isy = (double)out_h / img->h;
            }
            rc = cv_resize(s, out, out_w, out_h, isx, isy, err);
        }
        fr_free(s);
        if (rc) return rc;
        for (int c = 0; c < 3; c++)
            if (std[c] != 1.0f)
                for (size_t i = 0; i < n; i++) out[i * 3 + c] /= std[c];
        return FR_OK;
    }

    // detectron2: PIL resize on uint8, then (x - mean) / std in float32
    const unsigned char *px = img->rgb;
    unsigned char *rs = NULL;
    if (!same) {
        rs = fr_malloc(n * 3);
        if (!rs) return fr_fail(err, FR_ERR_NOMEM, "preprocess: out of memory");
        fr_status rc = pil_resize(img->rgb, img->w, img->h, rs, out_w, out_h, err);
        if (rc) {
            fr_free(rs);
            return rc;
        }
        px = rs;
    }
    // (float)v - mean, then / std, in float32 as torch does; tabulated per channel (same values)
    float lut[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) lut[c][v] = ((float)v - mean[c]) / std[c];
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = px + i * 3;
        out[i * 3 + 0] = lut[0][p[chan[0]]];
        out[i * 3 + 1] = lut[1][p[chan[1]]];
        out[i * 3 + 2] = lut[2][p[chan[2]]];
    }
    fr_free(rs);
    return FR_OK;
}
