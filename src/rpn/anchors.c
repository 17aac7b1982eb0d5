// anchors.c - cell anchors and their shifts over the feature grid, detectron2 and
// py-faster-rcnn styles (see rpn.h).
#include "rpn.h"

#include "core/nms.h"

#include <math.h>

fr_status fr_anchors_cell(const fr_config *cfg, float *cell, int *num, fr_err *err) {
    *num = 0;
    if (cfg->num_sizes < 1 || cfg->num_sizes > FR_MAX_ANCHOR_SIZES || cfg->num_ratios < 1 ||
        cfg->num_ratios > FR_MAX_ANCHOR_RATIOS)
        return fr_fail(err, FR_ERR_INVALID, "anchors: %d sizes x %d ratios (need 1..%d each)",
                       cfg->num_sizes, cfg->num_ratios, FR_MAX_ANCHOR_SIZES);
    if (cfg->anchor_stride < 1)
        return fr_fail(err, FR_ERR_INVALID, "anchors: stride %d must be >= 1", cfg->anchor_stride);
    for (int i = 0; i < cfg->num_sizes; i++)
        if (!(cfg->sizes[i] > 0) || !isfinite(cfg->sizes[i]))
            return fr_fail(err, FR_ERR_INVALID, "anchors: size %g must be > 0", cfg->sizes[i]);
    for (int j = 0; j < cfg->num_ratios; j++)
        if (!(cfg->ratios[j] > 0) || !isfinite(cfg->ratios[j]))
            return fr_fail(err, FR_ERR_INVALID, "anchors: ratio %g must be > 0", cfg->ratios[j]);

    // Sizes and ratios come from JSON decimals: use the decimal the config wrote, as the
    // reference's Python floats are.
    int a = 0;
    if (cfg->anchor_style == FR_ANCHORS_DETECTRON2) {
        for (int i = 0; i < cfg->num_sizes; i++) {
            double area = pow(fr_decimal_of_float(cfg->sizes[i]), 2.0);
            for (int j = 0; j < cfg->num_ratios; j++, a++) {
                double r = fr_decimal_of_float(cfg->ratios[j]);
                double w = sqrt(area / r), h = r * w;
                cell[4 * a + 0] = (float)(-w / 2.0);
                cell[4 * a + 1] = (float)(-h / 2.0);
                cell[4 * a + 2] = (float)(w / 2.0);
                cell[4 * a + 3] = (float)(h / 2.0);
            }
        }
    } else {
        // generate_anchors(base_size=stride, ratios, scales=sizes/stride)
        const double base = cfg->anchor_stride;
        const double ctr = 0.5 * (base - 1.0); // _whctrs of [0, 0, base-1, base-1]
        for (int j = 0; j < cfg->num_ratios; j++) {
            double r = fr_decimal_of_float(cfg->ratios[j]);
            double ws = nearbyint(sqrt(base * base / r)); // np.round: half to even
            double hs = nearbyint(ws * r);
            // ratio anchor [ctr - 0.5(ws-1), ..., ctr + 0.5(ws-1)]: its w, h, centre
            double x1 = ctr - 0.5 * (ws - 1.0), y1 = ctr - 0.5 * (hs - 1.0);
            double x2 = ctr + 0.5 * (ws - 1.0), y2 = ctr + 0.5 * (hs - 1.0);
            double w = x2 - x1 + 1.0, h = y2 - y1 + 1.0;
            double cx = x1 + 0.5 * (w - 1.0), cy = y1 + 0.5 * (h - 1.0);
            for (int i = 0; i < cfg->num_sizes; i++, a++) {
                double s = fr_decimal_of_float(cfg->sizes[i]) / base;
                double sw = w * s, sh = h * s;
                cell[4 * a + 0] = (float)(cx - 0.5 * (sw - 1.0));
                cell[4 * a + 1] = (float)(cy - 0.5 * (sh - 1.0));
                cell[4 * a + 2] = (float)(cx + 0.5 * (sw - 1.0));
                cell[4 * a + 3] = (float)(cy + 0.5 * (sh - 1.0));
            }
        }
    }
    *num = a;
    return FR_OK;
}

void fr_anchors_grid(const fr_config *cfg, const float *cell, int num, int feat_h, int feat_w,
                     float *out) {
    const double stride = cfg->anchor_stride;
    const double start = fr_decimal_of_float(cfg->anchor_offset) * stride;
    for (int y = 0; y < feat_h; y++) {
        const float sy = (float)(start + stride * y); // torch.arange(offset*stride, .., stride)
        for (int x = 0; x < feat_w; x++) {
            const float sx = (float)(start + stride * x);
            float *o = out + 4 * ((size_t)(y * feat_w + x) * num);
            for (int a = 0; a < num; a++) {
                o[4 * a + 0] = sx + cell[4 * a + 0];
                o[4 * a + 1] = sy + cell[4 * a + 1];
                o[4 * a + 2] = sx + cell[4 * a + 2];
                o[4 * a + 3] = sy + cell[4 * a + 3];
            }
        }
    }
}
