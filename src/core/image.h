// image.h - decoding untrusted JPEG/PNG bytes and turning them into the network input.
//
// Decoding uses Debian's stb_image compiled into one hardened translation unit
// (image_stb.c: only the JPEG and PNG decoders, 8-bit path, a dimension cap, and a pixel cap
// checked from the header before any pixel is decoded). Before stb sees the bytes, a
// pre-validator walks the whole JPEG marker stream / PNG chunk list (segment lengths, Huffman
// tables, frame and scan headers, PNG CRCs, IEND present, IDAT inflating to exactly the
// image size); see image_stb.c and shared/docs/bad-inputs.md rows I1-I19.
// The EXIF orientation (JPEG APP1 "Exif", PNG eXIf) is applied when asked, as detectron2's
// read_image does with PIL.
// Conversions to RGB follow PIL's convert("RGB") except one documented case: 16-bit greyscale
// PNGs keep the high byte (PIL clips the 16-bit value to 255). Palette indices past PLTE give
// PIL's grey ramp (index i -> grey i).
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

// Caps checked before decoding. Whatever the values, sides above 16384 and images above 2^28
// pixels are always refused (stb_image 2.27 computes buffer sizes in 32-bit ints).
typedef struct {
    size_t max_bytes;  // encoded size cap (default 100 MiB); 0: no cap
    long max_pixels;   // w*h cap, checked before decoding (default 40e6); <= 0: hard cap only
    int max_side;      // cap on either side (default 16384); <= 0: hard cap only
    double max_aspect; // long/short side cap (default 64); < 1: no aspect cap
} fr_image_limits;

// Fills the documented defaults.
void fr_image_limits_default(fr_image_limits *lim);

// Decodes a JPEG or PNG from memory into 8-bit RGB (grey, grey+alpha, RGBA, palette, CMYK,
// 16-bit are converted; alpha dropped). apply_exif: rotate/flip per the EXIF Orientation tag
// (img->w, img->h are then the displayed size). lim NULL: fr_image_limits_default.
// Errors: FR_ERR_UNSUPPORTED (empty, not JPEG/PNG: the message names GIF, WebP, TIFF, HEIF...;
// 12-bit, arithmetic, lossless or hierarchical JPEG), FR_ERR_TOO_LARGE (bytes, pixels, side,
// aspect or progressive scans over the limits), FR_ERR_FORMAT (corrupt or truncated, including a
// PNG CRC mismatch or missing IEND), FR_ERR_NOMEM. On error img holds nothing.
fr_status fr_image_decode(fr_image *img, const unsigned char *buf, size_t len,
                          const fr_image_limits *lim, int apply_exif, fr_err *err);
// Reads a file and decodes it (FR_ERR_IO when unreadable or not a regular file,
// FR_ERR_TOO_LARGE when over lim->max_bytes before reading it). Messages start with the path.
fr_status fr_image_load(fr_image *img, const char *path, const fr_image_limits *lim,
                        int apply_exif, fr_err *err);
void fr_image_free(fr_image *img);

// The resized size for an image of w x h under cfg's resize rule (min_size/max_size):
// detectron2 (ResizeShortestEdge.get_output_shape): short side -> min, long = scale*long; if the
//   longer of the two > max, both are multiplied by max/longer; side = int(side + 0.5).
// py-faster-rcnn (_get_image_blob): im_scale = min/short; if round(im_scale*long) > max,
//   im_scale = max/long; sides as cv2.resize(fx=fy=im_scale) makes them: cvRound(side*im_scale).
// min_size <= 0: no resize (detectron2's MIN_SIZE_TEST 0); max_size <= 0: no long-side cap.
// Sides are clamped to [1, 16384] (an extreme aspect can round a side to 0, bad-inputs row I6).
// *im_scale (any out pointer may be NULL): py-faster-rcnn's im_scale; detectron2: the scale the
// rule applied before rounding (map boxes back with w/out_w and h/out_h there).
void fr_image_resized_size(const fr_config *cfg, int w, int h, int *out_w, int *out_h,
                           double *im_scale);

// Resizes img to out_w x out_h with cfg's interpolation and writes the network input:
// out[(y*out_w + x)*3 + c] in cfg's channel order (input_rgb), float32 NHWC; out holds
// out_w*out_h*3 floats. Matches the references bit for bit (tests/test_image.c), except that
// py-faster-rcnn's float64 mean is the float32 of fr_config here (values within 1.5e-5):
// detectron2: PIL Image.resize(BILINEAR) on the uint8 image (antialiasing support when
//   shrinking, 22-bit fixed point, rounding and clipping like Pillow), then
//   (pixel - mean[c]) / std[c] in float32.
// py-faster-rcnn: (float)(pixel - mean[c]) (in double, as numpy with a float64 mean), then
//   cv2.resize INTER_LINEAR on float32 (OpenCV's INTER_AREA path for an exact 2x shrink, as cv2
//   switches to it), then / std[c]. When (out_w, out_h) is the rule's size for img, fx = fy =
//   im_scale as py-faster-rcnn passes them; otherwise cv2's dsize form (out / in per axis).
// out size == image size: no resize (both libraries copy).
// Errors: FR_ERR_INVALID (no image, out size outside [1, 16384], std <= 0 or non-finite
// mean/std), FR_ERR_NOMEM.
fr_status fr_image_preprocess(const fr_image *img, const fr_config *cfg, int out_w, int out_h,
                              float *out, fr_err *err);

#endif
