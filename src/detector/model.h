// model.h - private: the loaded network, shared by detector.c, bench and tests.
//
// fr_model owns every weight (folded, NHWC-ready) and the parsed config; it is read-only
// after fr_model_load and shared by all sessions/threads.
#ifndef FR_MODEL_PRIV_H
#define FR_MODEL_PRIV_H

#include "backbone/resnet.h"
#include "core/config.h"
#include "detector.h"

struct fr_model {
    fr_config cfg;
    fr_backbone bb;
    fr_conv rpn_conv;     // 3x3 C -> C, bias, ReLU
    fr_conv rpn_out;      // 1x1 merged: [obj_ch objectness | 4A deltas]
    int num_anchors;      // A per cell
    int obj_ch;           // A (sigmoid) or 2A (softmax2: bg block then fg block)
    fr_stage res5;        // roi_heads.res5
    float *pred_w;        // [cls_out + box_out][feat], merged predictor, owned
    float *pred_b;        // [cls_out + box_out]
    int feat;             // res5 output channels (2048)
    int cls_out, box_out; // K+1 and 4 x (K or 1 box rows, + 1 with a background row)
    size_t weight_bytes;  // folded weights in memory
    int unused_tensors;   // tensors in the file the model did not use
    int fast;             // FR_MODEL_FAST: Winograd weights made (make_fast)
};

// Loads from an already opened safetensors file (used by tests and fuzzing); cfg_json
// (may be NULL) overrides the metadata config.
fr_status fr_model_load_st(fr_model **out, fr_st_file *f, const char *cfg_json, size_t cfg_len, fr_err *err);

// Fast mode (FR_MODEL_FAST): Winograd weights for every 3x3 / stride 1 convolution (res2-res5
// conv2, the RPN conv); before any session is made. FR_OK or FR_ERR_NOMEM (model unchanged
// in its results, some layers may have their Winograd weights).
fr_status fr_model_make_fast(fr_model *m);

#endif
