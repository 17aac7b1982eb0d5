// resnet.c - ResNet bottleneck stages on NHWC tensors (see resnet.h).
#include "resnet.h"

#include "core/alloc.h"
#include "core/config.h"
#include "core/timer.h"

#include <stdio.h>
#include <string.h>

fr_status fr_conv_load(fr_conv *c, fr_st_file *f, const char *name, int cin, int cout, int k, int stride,
                       int pad, float eps, fr_err *err) {
    char key[256];
    snprintf(key, sizeof key, "%s.weight", name);
    const fr_st_tensor *t = fr_st_find(f, key);
    if (!t) return fr_fail(err, FR_ERR_FORMAT, "missing tensor '%s' (expected shape [*, %d, %d, %d])", key, cin, k, k);
    if (cout < 0) {
        if (t->ndim != 4 || t->shape[0] < 1 || t->shape[0] > 65536)
            return fr_fail(err, FR_ERR_FORMAT, "tensor '%s' must be 4-d [cout, %d, %d, %d]", key, cin, k, k);
        cout = (int)t->shape[0];
    }
    int64_t shape[4] = {cout, cin, k, k};
    if (fr_conv_alloc(c, cin, cout, k, k, stride, pad)) return fr_fail(err, FR_ERR_NOMEM, "out of memory loading %s", key);
    fr_status st;
    // A 1x1 kernel's OIHW layout is already ours ([cout][cin]): read it in place. Larger
    // kernels go through a scratch copy to reorder them; the scratch also holds the BN vectors.
    size_t nw = k == 1 ? 0 : (size_t)cout * cin * k * k;
    float *tmp = fr_malloc((nw + 4 * (size_t)cout) * sizeof(float));
    if (!tmp) {
        fr_conv_free(c);
        return fr_fail(err, FR_ERR_NOMEM, "out of memory loading %s", key);
    }
    if ((st = fr_st_read_f32(f, key, 4, shape, k == 1 ? c->w : tmp, err))) goto done;
    if (k != 1) fr_conv_set_weight_oihw(c, tmp);
    int64_t vs[1] = {cout};
    snprintf(key, sizeof key, "%s.bias", name);
    int has_bias = fr_st_find(f, key) != NULL;
    if (has_bias && (st = fr_st_read_f32(f, key, 1, vs, c->b, err))) goto done;
    snprintf(key, sizeof key, "%s.norm.weight", name);
    if (fr_st_find(f, key) || !has_bias) {
        static const char *parts[4] = {"weight", "bias", "running_mean", "running_var"};
        float *bn = tmp + nw;
        for (int i = 0; i < 4; i++) {
            snprintf(key, sizeof key, "%s.norm.%s", name, parts[i]);
            if ((st = fr_st_read_f32(f, key, 1, vs, bn + (size_t)i * cout, err))) goto done;
        }
        for (int i = 0; i < cout; i++)
            if (!(bn[3 * cout + i] + eps > 0)) {
                st = fr_fail(err, FR_ERR_INVALID, "tensor '%s' has running_var + eps <= 0 at %d", key, i);
                goto done;
            }
        fr_conv_fold_bn(c, bn, bn + cout, bn + 2 * cout, bn + 3 * cout, eps);
    }
done:
    fr_free(tmp);
    if (st) fr_conv_free(c);
    return st;
}

void fr_stage_free(fr_stage *s) {
    for (int i = 0; s->blocks && i < s->nblocks; i++) {
        fr_bottleneck *b = &s->blocks[i];
        fr_conv_free(&b->conv1);
        fr_conv_free(&b->conv2);
        fr_conv_free(&b->conv3);
        fr_conv_free(&b->shortcut);
    }
    fr_free(s->blocks);
    memset(s, 0, sizeof *s);
}

fr_status fr_stage_load(fr_stage *s, fr_st_file *f, const char *prefix, int nblocks, int stride, int stride_in_1x1,
                        int cin, float eps, fr_err *err) {
    memset(s, 0, sizeof *s);
    s->blocks = fr_calloc((size_t)nblocks, sizeof *s->blocks);
    if (!s->blocks) return fr_fail(err, FR_ERR_NOMEM, "out of memory");
    s->nblocks = nblocks;
    s->cin = cin;
    s->stride = stride;
    char name[200];
    fr_status st = FR_OK;
    int c = cin;
    for (int i = 0; i < nblocks; i++) {
        fr_bottleneck *b = &s->blocks[i];
        int s1 = (i == 0 && stride_in_1x1) ? stride : 1, s3 = (i == 0 && !stride_in_1x1) ? stride : 1;
        snprintf(name, sizeof name, "%s.%d.conv1", prefix, i);
        if ((st = fr_conv_load(&b->conv1, f, name, c, -1, 1, s1, 0, eps, err))) goto fail;
        int mid = b->conv1.cout;
        snprintf(name, sizeof name, "%s.%d.conv2", prefix, i);
        if ((st = fr_conv_load(&b->conv2, f, name, mid, mid, 3, s3, 1, eps, err))) goto fail;
        snprintf(name, sizeof name, "%s.%d.conv3", prefix, i);
        if ((st = fr_conv_load(&b->conv3, f, name, mid, -1, 1, 1, 0, eps, err))) goto fail;
        int out = b->conv3.cout;
        snprintf(name, sizeof name, "%s.%d.shortcut.weight", prefix, i);
        b->has_shortcut = i == 0 || fr_st_find(f, name) != NULL;
        if (b->has_shortcut) {
            snprintf(name, sizeof name, "%s.%d.shortcut", prefix, i);
            if ((st = fr_conv_load(&b->shortcut, f, name, c, out, 1, i == 0 ? stride : 1, 0, eps, err))) goto fail;
            // the block adds both biases in conv3's epilogue (block_forward): one pass fewer
            for (int k = 0; k < out; k++) {
                b->conv3.b[k] += b->shortcut.b[k];
                b->shortcut.b[k] = 0.0f;
            }
        } else if (out != c) {
            st = fr_fail(err, FR_ERR_FORMAT, "%s.%d: %d input and %d output channels need a shortcut", prefix, i, c,
                         out);
            goto fail;
        }
        if (i > 0 && out != s->blocks[0].conv3.cout) {
            st = fr_fail(err, FR_ERR_FORMAT, "%s.%d.conv3.weight: %d output channels, block 0 has %d", prefix, i, out,
                         s->blocks[0].conv3.cout);
            goto fail;
        }
        c = out;
    }
    s->cout = c;
    return FR_OK;
fail:
    fr_stage_free(s);
    return st;
}

fr_status fr_backbone_load(fr_backbone *bb, fr_st_file *f, int depth, int stride_in_1x1, float eps, fr_err *err) {
    memset(bb, 0, sizeof *bb);
    int blocks[4];
    if (fr_config_blocks(depth, blocks)) return fr_fail(err, FR_ERR_INVALID, "unsupported depth %d", depth);
    fr_status st = fr_conv_load(&bb->stem, f, "backbone.stem.conv1", 3, -1, 7, 2, 3, eps, err);
    if (st) return st;
    int c = bb->stem.cout;
    static const char *names[3] = {"backbone.res2", "backbone.res3", "backbone.res4"};
    for (int i = 0; i < 3; i++) {
        if ((st = fr_stage_load(&bb->res[i], f, names[i], blocks[i], i == 0 ? 1 : 2, stride_in_1x1, c, eps, err))) {
            fr_backbone_free(bb);
            return st;
        }
        c = bb->res[i].cout;
    }
    return FR_OK;
}

void fr_backbone_free(fr_backbone *bb) {
    fr_conv_free(&bb->stem);
    for (int i = 0; i < 3; i++) fr_stage_free(&bb->res[i]);
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

// Scratch layout of one block: t1 | t2 | conv scratch. A projection shortcut is written
// straight into the block's output, which conv3 then accumulates onto.
static void block_plan(const fr_bottleneck *b, int n, int h, int w, int pre, size_t *act, size_t *scratch, int *ho,
                       int *wo) {
    fr_conv c1 = b->conv1, sc = b->shortcut;
    if (pre) c1.stride = sc.stride = 1;
    int h1 = fr_conv_out(&c1, h), w1 = fr_conv_out(&c1, w);
    int h2 = fr_conv_out(&b->conv2, h1), w2 = fr_conv_out(&b->conv2, w1);
    size_t t1 = (size_t)n * h1 * w1 * c1.cout, t2 = (size_t)n * h2 * w2 * b->conv2.cout;
    size_t out = (size_t)n * h2 * w2 * b->conv3.cout;
    size_t cs = max_sz(max_sz(fr_conv_scratch(&c1, n, h, w), fr_conv_scratch(&b->conv2, n, h1, w1)),
                       fr_conv_scratch(&b->conv3, n, h2, w2));
    if (b->has_shortcut) cs = max_sz(cs, fr_conv_scratch(&sc, n, h, w));
    size_t pad = 16 * 4; // alignment slack between the parts
    *act = out;
    *scratch = t1 + t2 + cs + pad;
    *ho = h2;
    *wo = w2;
}

void fr_stage_plan(const fr_stage *s, int n, int h, int w, size_t *act, size_t *scratch, int *ho, int *wo) {
    *act = *scratch = 0;
    for (int i = 0; i < s->nblocks; i++) {
        size_t a, sc;
        block_plan(&s->blocks[i], n, h, w, 0, &a, &sc, &h, &w);
        *act = max_sz(*act, a);
        *scratch = max_sz(*scratch, sc);
    }
    *ho = h;
    *wo = w;
}

void fr_backbone_out_size(int h, int w, int *ho, int *wo) {
    // stem conv 7x7/2 p3, max pool 3x3/2 p1, then two stride-2 stages (1x1 or 3x3 p1)
    h = fr_maxpool_out((h + 6 - 7) / 2 + 1);
    w = fr_maxpool_out((w + 6 - 7) / 2 + 1);
    for (int i = 0; i < 2; i++) {
        h = (h - 1) / 2 + 1;
        w = (w - 1) / 2 + 1;
    }
    *ho = h;
    *wo = w;
}

void fr_backbone_plan(const fr_backbone *bb, int h, int w, size_t *act, size_t *scratch) {
    int h1 = fr_conv_out(&bb->stem, h), w1 = fr_conv_out(&bb->stem, w);
    *act = (size_t)h1 * w1 * bb->stem.cout;
    *scratch = fr_conv_scratch(&bb->stem, 1, h, w);
    h = fr_maxpool_out(h1);
    w = fr_maxpool_out(w1);
    for (int i = 0; i < 3; i++) {
        size_t a, s;
        fr_stage_plan(&bb->res[i], 1, h, w, &a, &s, &h, &w);
        *act = max_sz(*act, a);
        *scratch = max_sz(*scratch, s);
    }
}

static float *align16(float *p) { return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

static void block_forward(const fr_bottleneck *b, const fr_tensor *x, fr_tensor *y, float *scratch, int pre) {
    fr_conv c1 = b->conv1, sc = b->shortcut;
    if (pre) c1.stride = sc.stride = 1;
    int h1 = fr_conv_out(&c1, x->h), w1 = fr_conv_out(&c1, x->w);
    int h2 = fr_conv_out(&b->conv2, h1), w2 = fr_conv_out(&b->conv2, w1);
    fr_tensor t1 = {align16(scratch), x->n, h1, w1, c1.cout};
    fr_tensor t2 = {align16(t1.data + fr_tensor_numel(&t1)), x->n, h2, w2, b->conv2.cout};
    float *rest = align16(t2.data + fr_tensor_numel(&t2));
    *y = (fr_tensor){y->data, x->n, h2, w2, b->conv3.cout};
    fr_tensor r = *x;
    if (b->has_shortcut) {
        fr_conv_forward_raw(&sc, x, y, rest); // y = shortcut(x) without its bias (folded into conv3's)
        r = *y;                               // conv3 accumulates onto it
    }
    // conv1's bias and ReLU are applied by conv2 while it builds its im2col rows
    fr_conv_forward_raw(&c1, x, &t1, rest);
    fr_conv_forward_act_in(&b->conv2, &t1, c1.b, &t2, NULL, 1, rest);
    fr_conv_forward(&b->conv3, &t2, y, &r, 1, rest);
}

void fr_stage_forward(const fr_stage *s, const fr_tensor *in, float *buf[2], float *scratch, int pre_strided,
                      fr_tensor *out) {
    fr_tensor cur = *in;
    int next = cur.data == buf[0] ? 1 : 0;
    for (int i = 0; i < s->nblocks; i++) {
        fr_tensor y = {buf[next], 0, 0, 0, 0};
        block_forward(&s->blocks[i], &cur, &y, scratch, i == 0 && pre_strided);
        cur = y;
        next ^= 1;
    }
    *out = cur;
}

void fr_backbone_forward(const fr_backbone *bb, const fr_tensor *img, float *buf[2], float *scratch, fr_tensor *out,
                         double ms[4], volatile int *part) {
    double t0 = fr_time_ms();
    if (part) *part = 0;
    fr_tensor s1 = {buf[0], 1, fr_conv_out(&bb->stem, img->h), fr_conv_out(&bb->stem, img->w), bb->stem.cout};
    fr_conv_forward(&bb->stem, img, &s1, NULL, 1, scratch);
    fr_tensor p = {buf[1], 1, fr_maxpool_out(s1.h), fr_maxpool_out(s1.w), s1.c};
    fr_maxpool3x3s2(&s1, &p);
    if (ms) ms[0] = fr_time_ms() - t0;
    fr_tensor cur = p;
    for (int i = 0; i < 3; i++) {
        t0 = fr_time_ms();
        if (part) *part = i + 1;
        fr_stage_forward(&bb->res[i], &cur, buf, scratch, 0, &cur);
        if (ms) ms[i + 1] = fr_time_ms() - t0;
    }
    *out = cur;
}
