// config.h - the model configuration: every knob that differs between model families.
//
// Source: a JSON object (configs/*.json, or the safetensors metadata key "frcnn.config").
// Parsing is strict: unknown keys, wrong types, non-finite numbers and out-of-range values
// are errors that name the key. All fields are required unless marked "default".
// Semantics per family: shared/docs/semantics.md (detectron2 R101-C4, py-faster-rcnn).
#ifndef FR_CONFIG_H
#define FR_CONFIG_H

#include "status.h"

#define FR_MAX_CLASSES 1000
#define FR_MAX_ANCHOR_SIZES 16
#define FR_MAX_ANCHOR_RATIOS 16

typedef enum { FR_FAMILY_DETECTRON2, FR_FAMILY_PYFRCNN } fr_family;
typedef enum { FR_RESIZE_DETECTRON2, FR_RESIZE_PYFRCNN } fr_resize_rule; // PIL bilinear / cv2 linear
typedef enum { FR_ANCHORS_DETECTRON2, FR_ANCHORS_PYFRCNN } fr_anchor_style;
typedef enum { FR_OBJ_SIGMOID, FR_OBJ_SOFTMAX2 } fr_objectness;
typedef enum { FR_ROI_ALIGN, FR_ROI_POOL } fr_roi_op;
typedef enum { FR_BG_LAST, FR_BG_FIRST } fr_background;

typedef struct {
    char name[128];
    fr_family family;
    int num_classes;          // K, foreground classes (no background)
    char **classes;           // K owned strings

    // "input"
    int input_rgb;            // "format": "BGR" (0) or "RGB" (1): channel order fed to the net
    float pixel_mean[3];      // in the "format" order, 0..255 scale
    float pixel_std[3];       // > 0
    int min_size, max_size;   // test resize: short side -> min_size, long side <= max_size
    fr_resize_rule resize;    // "resize": "detectron2" | "py-faster-rcnn"
    int exif;                 // apply the JPEG EXIF orientation first (default true)

    // "backbone"
    int depth;                // 50, 101 or 152 (block counts [3,4,6|23|36,3])
    int stride_in_1x1;        // stride of a stage's first block in its 1x1 (1) or 3x3 (0)
    float bn_eps;             // FrozenBN epsilon (default 1e-5)
    int res5_stride;          // 1 or 2: stride of res5's first block in the RoI head

    // "anchors"
    fr_anchor_style anchor_style; // detectron2: centred float anchors; py-faster-rcnn: rounded, +1
    int anchor_stride;        // feature stride in pixels (16)
    int num_sizes, num_ratios;
    float sizes[FR_MAX_ANCHOR_SIZES];   // anchor sides in pixels (py-faster-rcnn: base*scale)
    float ratios[FR_MAX_ANCHOR_RATIOS]; // h / w
    float anchor_offset;      // detectron2 ANCHOR_GENERATOR.OFFSET (default 0)

    // "rpn"
    fr_objectness objectness; // "sigmoid" (1 logit per anchor) | "softmax2" (bg block, fg block)
    int pre_nms_topk, post_nms_topk;
    float rpn_nms_thresh;
    float rpn_min_size;       // py-faster-rcnn: min side in original pixels (x im_scale); 0 = w,h > 0
    float rpn_box_weights[4];

    // "roi"
    fr_roi_op roi_op;
    int roi_size;             // output side (14)
    float spatial_scale;      // 1/16
    int sampling_ratio;       // <= 0: adaptive ceil(roi/out)
    int aligned;              // RoIAlign -0.5 pixel shift

    // "head"
    fr_background background;
    int class_agnostic;       // one box per RoI instead of one per class
    int box_includes_background; // bbox_pred has a row for background (py-faster-rcnn)
    float head_box_weights[4];
    float score_thresh;       // keep score > thresh
    float nms_thresh;         // per-class NMS IoU
    int detections_per_image;

    int box_plus_one;         // legacy +1 box widths and clipping to W-1 (py-faster-rcnn)
    float bbox_clamp;         // max dw/dh before exp (default log(1000/16))
} fr_config;

// Parses JSON text of len bytes into cfg (cfg zeroed first). On failure cfg holds nothing
// that needs freeing. The message names the key: "config: rpn.nms_thresh: must be in [0,1]".
fr_status fr_config_parse(fr_config *cfg, const char *json, size_t len, fr_err *err);
// Reads and parses a JSON file.
fr_status fr_config_load(fr_config *cfg, const char *path, fr_err *err);
// Writes cfg as a JSON object (malloc'd string, caller frees with fr_free). NULL on OOM.
char *fr_config_to_json(const fr_config *cfg);
void fr_config_free(fr_config *cfg);
// Block counts for a depth: 50 -> {3,4,6,3}, 101 -> {3,4,23,3}, 152 -> {3,8,36,3}.
int fr_config_blocks(int depth, int out[4]);

#endif
