// detector.h - the public API: load a model, run detection on images.
//
// fr_model is immutable after fr_model_load and may be shared by any number of threads.
// fr_session holds one worker's scratch memory (activation arena, buffers): one per thread.
// Results own their detection arrays (fr_result_free). All functions report failure through
// fr_status + fr_err and never exit the process.
#ifndef FR_DETECTOR_H
#define FR_DETECTOR_H

#include "core/config.h"
#include "core/image.h"
#include "core/status.h"

#include <stddef.h>

typedef struct fr_model fr_model;
typedef struct fr_session fr_session;

typedef struct {
    int class_id;   // 0..K-1, index into the config's classes
    float score;    // softmax probability
    float box[4];   // x1, y1, x2, y2 in original-image pixels
} fr_detection;

typedef struct {
    int width, height;    // original image size (after EXIF orientation)
    int n;                // number of detections, sorted by score descending
    fr_detection *dets;   // owned
    double ms_decode, ms_backbone, ms_rpn, ms_roi_head, ms_total; // stage times
    int num_proposals;    // proposals fed to the head
} fr_result;

typedef struct {
    float score_threshold;             // < 0: the model's head.score_thresh
    int max_detections;                // <= 0: the model's head.detections_per_image
    const unsigned char *class_mask;   // NULL: all classes; else K bytes, nonzero = keep
} fr_detect_opts;

// Loads a safetensors model. config_path (may be NULL) overrides the metadata config.
// Errors name the file and the tensor: missing, mis-shaped, wrong dtype, non-finite values.
fr_status fr_model_load(fr_model **out, const char *path, const char *config_path, fr_err *err);
// fr_model_load with flags: FR_MODEL_FAST turns on the fast mode, Winograd F(4x4, 3x3) for the
// 3x3 stride-1 convolutions (core/winograd.h): about 1.3-1.4x faster on a full-size R101-C4,
// results close to but not equal to exact mode (README, "Fast mode"), and 4x the memory for
// those layers' weights.
#define FR_MODEL_FAST 1u
fr_status fr_model_load_ex(fr_model **out, const char *path, const char *config_path, unsigned flags, fr_err *err);
int fr_model_fast(const fr_model *m); // 1 in fast mode
void fr_model_free(fr_model *m);
const fr_config *fr_model_config(const fr_model *m);
const char *fr_model_name(const fr_model *m);

// A worker's state; its arena is planned once for the config's largest input
fr_status fr_session_new(fr_session **out, const fr_model *m, fr_err *err);
void fr_session_free(fr_session *s);

// Runs detection on a decoded image.
fr_status fr_detect(fr_session *s, const fr_image *img, const fr_detect_opts *opts,
                    fr_result *res, fr_err *err);
void fr_result_free(fr_result *res);
void fr_detect_opts_default(fr_detect_opts *o);

// The JSON answer of CONTRACT.md ({"model", "width", "height", "detections", "timing_ms"}).
// Returns a malloc'd string (fr_free), NULL on OOM.
char *fr_result_to_json(const fr_model *m, const fr_result *res);

#endif
