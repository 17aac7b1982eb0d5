// res5_head.c - res5 + mean pool + predictor on a batch of RoIs (see res5_head.h).
#include "res5_head.h"

void fr_box_head_forward(const fr_box_head *h, const fr_tensor *roi, int pre_strided, float *buf[2],
                         float *scratch, float *pooled, float *pred) {
    fr_tensor out;
    fr_stage_forward(h->res5, roi, buf, scratch, pre_strided, &out);
    fr_meanpool(&out, pooled);
    fr_linear(pooled, roi->n, h->feat, h->w, h->b, h->nout, pred);
}
