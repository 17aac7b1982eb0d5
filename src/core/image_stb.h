// image_stb.h - private interface of the hardened stb_image translation unit (image_stb.c).
//
// Only image.c includes this. image_stb.c holds the pre-validator (a structural check of the
// JPEG marker stream or the PNG chunk list that runs before any pixel is decoded) and the one
// copy of Debian's stb_image, compiled with only the JPEG and PNG decoders and the dimension cap
// below. Nothing here allocates except fr_image_stb_decode.
#ifndef FR_IMAGE_STB_H
#define FR_IMAGE_STB_H

#include "image.h"

#include <stddef.h>

// Hard caps applied whatever fr_image_limits says. stb_image 2.27 computes several buffer sizes
// in 32-bit ints (e.g. 16-bit grey -> RGB: 3*w*h*2, the heap overflow of bad-inputs row I9);
// with both caps every such product stays below 2^31.
#define FR_IMAGE_HARD_MAX_SIDE 16384          // also STBI_MAX_DIMENSIONS
#define FR_IMAGE_HARD_MAX_PIXELS (1L << 28)   // 16384 x 16384
// Progressive JPEG scan cap: decode time grows with scans x pixels (bad-inputs row I11; every
// scan walks all the blocks of its components). Encoders write about 10 scans (libjpeg's
// default progression), a few dozen at most; libjpeg-turbo's scan limit for untrusted input
// serves the same purpose.
#define FR_IMAGE_MAX_JPEG_SCANS 100

typedef enum { FR_IMAGE_KIND_JPEG = 1, FR_IMAGE_KIND_PNG = 2 } fr_image_kind;

// What the pre-validator learned from the headers. Pointers point into the caller's buffer.
typedef struct {
    fr_image_kind kind;
    int w, h;                   // stored size (before any EXIF orientation)
    const unsigned char *exif;  // TIFF block ("II*\0" / "MM\0*" ...) of the first JPEG APP1
                                // "Exif\0\0" segment or PNG eXIf chunk; NULL if none
    size_t exif_len;
    // PNG only
    int png_depth, png_ctype, png_interlace;
    int png_palette_entries;    // PLTE entries (0 if none)
    size_t png_plte_off;        // offset of the PLTE chunk (its length field) in the buffer
    size_t png_idat_bytes;      // sum of the IDAT chunk lengths
    size_t png_raw_bytes;       // exact size the concatenated IDAT stream must inflate to
} fr_image_info;

// Checks buf (len bytes, already sniffed as kind) without decoding pixels: every segment or
// chunk inside the buffer, the fields stb_image trusts, and the caps in lim (plus the hard caps
// above) as soon as the header gives the size. Fills info.
// Errors: FR_ERR_FORMAT (corrupt or truncated), FR_ERR_UNSUPPORTED (valid but not handled:
// 12-bit, arithmetic, lossless, hierarchical JPEG...), FR_ERR_TOO_LARGE (over a cap).
fr_status fr_image_stb_check(const unsigned char *buf, size_t len, fr_image_kind kind,
                             const fr_image_limits *lim, fr_image_info *info, fr_err *err);

// Decodes a buffer that passed fr_image_stb_check into 8-bit RGB: img->rgb is allocated with
// fr_malloc and owned by img. For PNG the IDAT stream is first inflated into a bounded buffer
// (it must give exactly info->png_raw_bytes) and palettes shorter than 256 entries are padded
// with PIL's grey ramp, so stb never reads uninitialised palette entries.
// Errors: FR_ERR_FORMAT, FR_ERR_NOMEM, FR_ERR_TOO_LARGE.
fr_status fr_image_stb_decode(const unsigned char *buf, size_t len, const fr_image_info *info,
                              fr_image *img, fr_err *err);

#endif
