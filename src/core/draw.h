// draw.h - annotating an image with detections and writing images as PNG
// (`frcnn detect --draw OUT.png`, debugging).
//
// Drawing works in place on an fr_image (8-bit RGB, see image.h) and never allocates or fails.
// Text uses stb_easy_font's built-in segment font (ASCII), scaled with the image.
// PNG encoding is our own OOM-safe writer (filtered rows, deflate with fixed Huffman codes and
// LZ77): stb_image_write 1.16 asserts on a failed allocation inside its compressor and leaks its
// compressed buffer when the last allocation fails, so it is not used.
#ifndef FR_DRAW_H
#define FR_DRAW_H

#include "image.h"
#include "status.h"

#include <stddef.h>

// Draws n detections onto img:
//   boxes  n x 4 floats x1, y1, x2, y2 in img's pixels; clipped to the image, boxes with a
//          non-finite coordinate or nothing inside the image are skipped
//   labels n strings or NULL; a NULL entry draws no text; bytes outside printable ASCII are
//          drawn as '?', at most 48 characters
//   scores n floats or NULL; shown as "label 0.97"
// Each box gets a rectangle (thickness grows with the image) and a filled tag with the text above
// its top-left corner (inside the box when there is no room above). The colour is chosen from
// the label text, so one class keeps one colour.
void fr_draw_boxes(fr_image *img, const float *boxes, const char *const *labels,
                   const float *scores, int n);

// Encodes img as an 8-bit RGB PNG in memory. *png is allocated with fr_malloc (caller frees
// with fr_free), *len its size. Errors: FR_ERR_INVALID (no image, or over the hard size caps),
// FR_ERR_NOMEM.
fr_status fr_image_encode_png(const fr_image *img, unsigned char **png, size_t *len, fr_err *err);

// Writes img to path as PNG (created or truncated; removed again if writing fails).
// Errors: FR_ERR_IO (cannot create or write: the message names the path), FR_ERR_NOMEM,
// FR_ERR_INVALID.
fr_status fr_image_write_png(const char *path, const fr_image *img, fr_err *err);

#endif
