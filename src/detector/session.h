// session.h - private: a worker's planned buffers (see detector.h for the public API).
#ifndef FR_SESSION_PRIV_H
#define FR_SESSION_PRIV_H

#include "model.h"

// RoIs per res5 batch: 64 keeps the GEMMs efficient; fast mode's Winograd GEMMs have 4 rows
// (tiles) per RoI instead of 49 pixels, and 128 RoIs pay there (6.4 -> 6.1 s at 800x1333/1000)
static inline int fr_head_chunk(const fr_model *m) { return m->fast ? 128 : 64; }

// Pipeline stages, for per-stage timing (fr_session.ms) and bench attribution (fr_session.stage).
typedef enum {
    FR_STAGE_PRE, FR_STAGE_STEM, FR_STAGE_RES2, FR_STAGE_RES3, FR_STAGE_RES4, FR_STAGE_RPN_CONV,
    FR_STAGE_PROPOSALS, FR_STAGE_ROI, FR_STAGE_RES5, FR_STAGE_POST, FR_STAGE_COUNT
} fr_stage_id;
extern const char *const fr_stage_names[FR_STAGE_COUNT];

struct fr_session {
    const fr_model *m;
    fr_arena arena;       // everything below lives in it, planned once
    int max_h, max_w;     // largest network input planned for
    float *input;         // (max_h, max_w, 3)
    float *buf[2];        // backbone ping-pong, act floats each
    float *scratch;       // conv scratch
    size_t act, nscratch; // floats
    float *rpn_out;       // (H/16 * W/16, obj_ch + 4A)
    float *props;         // (post_nms_topk, 4) proposals, resized-image frame
    float *prop_logits;   // (post_nms_topk)
    float *roi_feat;      // (fr_head_chunk, S, S, C4) RoI features
    float *head_buf[2];   // res5 ping-pong
    float *head_scratch;
    float *pooled;        // (fr_head_chunk, feat)
    float *pred;          // (post_nms_topk, cls_out + box_out)
    size_t head_act, head_nscratch, roi_floats;
    int stage;                  // the stage running now (profiling); in the backbone,
    volatile int bb_part;       // ... FR_STAGE_STEM + bb_part
    double ms[FR_STAGE_COUNT];  // the last detection's stage times
};

// Runs stem..res4 on a preprocessed input (1, h, w, 3) with h, w within the plan.
// *res4 points into the session's buffers. ms[4]: stem, res2, res3, res4 times.
fr_status fr_session_backbone(fr_session *s, const fr_tensor *input, fr_tensor *res4, double ms[4], fr_err *err);

// Everything up to the predictor, for detect, tests and bench. Pointers refer to session
// memory, valid until the next call.
typedef struct {
    int img_w, img_h;         // network input (resized) size
    double im_scale;          // resize factor
    fr_tensor res4;           // (1, H/16, W/16, C4)
    int nprop;                // proposals
    const float *proposals;   // (nprop, 4) resized-image frame, reference order
    const float *proposal_scores; // (nprop) objectness logits (sigmoid) or fg probabilities
    const float *pred;        // (nprop, pred_stride): class logits then box deltas
    int pred_stride;
    double ms_preprocess, ms_backbone, ms_rpn, ms_head, ms_stages[4];
} fr_forward_out;

fr_status fr_session_forward(fr_session *s, const fr_image *img, fr_forward_out *o, fr_err *err);

#endif
