// image.h - decoding untrusted JPEG/PNG bytes and turning them into the network input.
//
// Decoding uses Debian's stb_image compiled into one hardened translation unit
// (image_stb.c: only the JPEG and PNG decoders, 8-bit path, a dimension cap, and a
// pixel cap checked from the header before any pixel is decoded). The EXIF orientation
// of a JPEG is applied when asked (detectron2's read_image does this).
// Ownership: fr_image owns its pixels; free with fr_image_free.
#ifndef FR_IMAGE_H
#define FR_IMAGE_H

#include "config.h"
#include "status.h"

#include <stddef.h>

typedef struct {
    int w, h;           // pixels
    unsigned char *rgb; // w*h*3 bytes, R,G,B interleaved, row-major; owned
} fr_image;

typedef struct {
    size_t max_bytes;  // encoded size cap (default 100 MB)
    long max_pixels;   // w*h cap, checked before decoding (default 40e6)
    int max_side;      // cap on either side (default 16384)
    double max_aspect; // long/short side cap (default 64)
} fr_image_limits;

// Fills the documented defaults.
void fr_image_limits_default(fr_image_limits *lim);

// Decodes a JPEG or PNG from memory into 8-bit RGB (grey, grey+alpha, RGBA, palette, CMYK,
// 16-bit are converted; alpha dropped). apply_exif: rotate/flip per the EXIF Orientation tag.
// Errors: FR_ERR_UNSUPPORTED (not JPEG/PNG, 12-bit, arithmetic coding...), FR_ERR_TOO_LARGE
// (bytes, pixels, side or aspect over the limits), FR_ERR_FORMAT (corrupt/truncated),
// FR_ERR_NOMEM.
fr_status fr_image_decode(fr_image *img, const unsigned char *buf, size_t len,
                          const fr_image_limits *lim, int apply_exif, fr_err *err);
// Reads a file and decodes it (FR_ERR_IO when unreadable).
fr_status fr_image_load(fr_image *img, const char *path, const fr_image_limits *lim,
                        int apply_exif, fr_err *err);
void fr_image_free(fr_image *img);

// The resized size for an image of w x h under cfg's resize rule (min_size/max_size):
// detectron2: scale = min/short, if long*scale > max: scale = max/long; side = int(side*scale+0.5)
// py-faster-rcnn: scale = min/short, if round(scale*long) > max: scale = max/long; cv2 sizes.
// Sides are clamped to >= 1. *scale_x = out_w / w, *scale_y = out_h / h.
void fr_image_resized_size(const fr_config *cfg, int w, int h, int *out_w, int *out_h,
                           double *im_scale);

// Resizes img to out_w x out_h with cfg's interpolation (detectron2: PIL bilinear with its
// antialiasing filter when shrinking, on uint8, rounding like PIL; py-faster-rcnn: OpenCV
// INTER_LINEAR) and writes the network input: out[(y*out_w + x)*3 + c] in cfg's channel
// order, (pixel - mean[c]) / std[c], float32 NHWC. out holds out_w*out_h*3 floats.
fr_status fr_image_preprocess(const fr_image *img, const fr_config *cfg, int out_w, int out_h,
                              float *out, fr_err *err);

#endif
