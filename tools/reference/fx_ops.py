#!/usr/bin/python3
"""fx_ops.py - golden data for the data-dependent stages: NMS, orderings, RoIAlign/RoIPool,
RPN proposal selection and detection post-processing.

Every expected value is computed here by the references themselves (torch / torchvision
1.13/0.14 CPU ops, and numpy re-statements of detectron2's and py-faster-rcnn's Python code,
written from their documented behaviour), never by the C code. Output (in --out DIR):

  ops_order.safetensors   torch.sort / torch.topk / numpy argsort orders with many ties
  ops_nms.safetensors     torchvision nms / batched_nms keep lists, py-faster-rcnn NMS
  ops_roi.safetensors     torchvision roi_align (aligned 0/1, sampling 0/2) and roi_pool
  ops_rpn.safetensors     detectron2 find_top_rpn_proposals and py-faster-rcnn proposal_layer
  ops_head.safetensors    fast_rcnn_inference_single_image + detector_postprocess, and
                          py-faster-rcnn im_detect + test_net post-processing
  ops_onnx.safetensors    the RoiAlign / NonMaxSuppression cases of Debian's
                          libonnx-testdata (/usr/share/libonnx-testdata), converted

Integer tensors are I64. Layouts are the C API's: feature maps NHWC, RoI outputs
(R, out, out, C), boxes (n, 4) x1 y1 x2 y2.
py-faster-rcnn ran numpy < 1.20, whose float32 exp was libm's expf: it is called here
through ctypes so both sides use the same exp.
"""
import argparse
import ctypes
import ctypes.util
import math
import os
import struct
import sys

import numpy as np
import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

torch.set_num_threads(1)
F32 = np.float32
ONNX_DIR = "/usr/share/libonnx-testdata/data/node"

_libm = ctypes.CDLL(ctypes.util.find_library("m"))
_libm.expf.restype = ctypes.c_float
_libm.expf.argtypes = [ctypes.c_float]


def expf(a):
    """libm expf elementwise on a float32 array."""
    a = np.asarray(a, dtype=F32)
    out = np.array([_libm.expf(float(v)) for v in a.ravel()], dtype=F32)
    return out.reshape(a.shape)


def i64(a):
    return np.asarray(a, dtype=np.int64)


# --------------------------------------------------------------------------- orderings
def fx_order(rng):
    t = {}
    for case, (n, levels, nan) in enumerate([(10, 3, 0), (17, 2, 0), (100, 4, 3), (1000, 7, 10),
                                             (9000, 30, 20), (63000, 500, 0), (70000, 1, 0)]):
        v = rng.integers(0, levels, n).astype(F32) / F32(3)
        if nan:
            v[rng.integers(0, n, nan)] = np.nan
        t["sort%d_v" % case] = v
        t["sort%d_idx" % case] = i64(torch.from_numpy(v).sort(descending=True)[1].numpy())
        for kk, k in enumerate(sorted({1, max(1, n // 64), max(1, n // 2), min(n, 6000), n})):
            idx = torch.from_numpy(v)[None].topk(k, dim=1)[1][0]
            t["sort%d_topk%d" % (case, kk)] = i64(idx.numpy())
        t["sort%d_npdesc" % case] = i64(v.argsort()[::-1].copy())
    x = np.concatenate([rng.normal(0, 3, 20000), rng.uniform(-110, 110, 5000), [0, -0.0, 88.7, 89, -87.5, -103.9, -104.1]])
    t["exp_x"] = x.astype(F32)
    t["exp_y"] = torch.exp(torch.from_numpy(x.astype(F32))).numpy()
    z = rng.normal(0, 3, (64, 81)).astype(F32)
    z[5, :7] = 20.0  # ties
    t["softmax81_x"], t["softmax81_y"] = z, torch.softmax(torch.from_numpy(z), -1).numpy()
    t["softmax5_x"], t["softmax5_y"] = z[:, :5].copy(), torch.softmax(torch.from_numpy(z[:, :5].copy()), -1).numpy()
    t["softmax21_x"], t["softmax21_y"] = z[:, :21].copy(), torch.softmax(torch.from_numpy(z[:, :21].copy()), -1).numpy()
    st.save(os.path.join(OUT, "ops_order.safetensors"), t)


# --------------------------------------------------------------------------- NMS
def rand_boxes(rng, n, size=600.0, wmax=200.0, quant=None):
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(1, wmax, (n, 2))
    b = np.concatenate([xy, xy + wh], 1).astype(F32)
    if quant:
        b = (np.round(b / quant) * quant).astype(F32)
    return b


def nms_plus_one(boxes, order, thr):
    """py-faster-rcnn's GPU kernel rule in float32: +1 areas, suppress IoU > float(thr)."""
    thr = F32(thr)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1 + F32(1)) * (y2 - y1 + F32(1))
    supp = np.zeros(len(boxes), bool)
    keep = []
    for a, i in enumerate(order):
        if supp[i]:
            continue
        keep.append(i)
        rest = order[a + 1:]
        w = np.maximum(F32(0), np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + F32(1))
        h = np.maximum(F32(0), np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + F32(1))
        inter = w * h
        ovr = inter / (area[i] + area[rest] - inter)
        supp[rest[ovr > thr]] = True
    return np.array(keep, dtype=np.int64)


def fx_nms(rng):
    t = {}
    cases = [  # n, score levels (0 = continuous), classes, thr, box quantum
        (300, 0, 1, 0.5, None), (3000, 0, 1, 0.7, None), (6000, 50, 1, 0.7, 4.0),
        (800, 0, 12, 0.5, None), (800, 6, 5, 0.5, 2.0), (2500, 0, 20, 0.5, None),
        (2500, 8, 7, 0.3, 2.0), (1000, 0, 3, 0.6, None), (1001, 0, 3, 0.6, None),
    ]
    for c, (n, levels, ncls, thr, quant) in enumerate(cases):
        b = rand_boxes(rng, n, quant=quant)
        s = (rng.integers(0, levels, n) / levels if levels else rng.random(n)).astype(F32)
        cls = rng.integers(0, ncls, n)
        bt, stt = torch.from_numpy(b), torch.from_numpy(s)
        t["nms%d_boxes" % c] = b
        t["nms%d_scores" % c] = s
        t["nms%d_classes" % c] = i64(cls)
        t["nms%d_thr" % c] = np.array([thr], F32)
        t["nms%d_keep" % c] = i64(torchvision.ops.nms(bt, stt, thr).numpy())
        t["nms%d_bkeep" % c] = i64(torchvision.ops.batched_nms(bt, stt, torch.from_numpy(cls), thr).numpy())
        if n <= 2500:  # (the float32 re-statement is slow in Python)
            t["nms%d_p1keep" % c] = nms_plus_one(b, s.argsort()[::-1].copy(), thr)
    st.save(os.path.join(OUT, "ops_nms.safetensors"), t)


# --------------------------------------------------------------------------- RoI ops
def fx_roi(rng):
    t = {}
    H, W, C = 23, 31, 19
    feat = rng.normal(size=(1, C, H, W)).astype(F32)
    img_h, img_w = H * 16, W * 16
    R = 60
    x1 = rng.uniform(-40, img_w, R)
    y1 = rng.uniform(-40, img_h, R)
    bw = np.exp(rng.uniform(0, 6.5, R))
    bh = np.exp(rng.uniform(0, 6.5, R))
    boxes = np.stack([x1, y1, x1 + bw, y1 + bh], 1).astype(F32)
    boxes[0] = [0, 0, img_w, img_h]               # whole map
    boxes[1] = [100, 100, 100, 100]               # empty
    boxes[2] = [200, 150, 180, 140]               # inverted
    boxes[3] = [img_w - 3, img_h - 3, img_w + 50, img_h + 60]  # past the far corner
    boxes[4] = [-100, -100, -20, -30]             # before the map
    boxes[5] = [5.5, 7.25, 37.75, 61.5]
    t["roi_feat"] = feat.transpose(0, 2, 3, 1).copy()  # NHWC
    t["roi_boxes"] = boxes
    rois = torch.cat([torch.zeros(R, 1), torch.from_numpy(boxes)], 1)
    ft = torch.from_numpy(feat)
    for out in (7, 14):
        for aligned in (0, 1):
            for sr in (0, 2):
                y = torchvision.ops.roi_align(ft, rois, out, 1.0 / 16, sr, bool(aligned))
                t["align_o%d_a%d_s%d" % (out, aligned, sr)] = y.permute(0, 2, 3, 1).contiguous().numpy()
        y = torchvision.ops.roi_pool(ft, rois, out, 1.0 / 16)
        t["pool_o%d" % out] = y.permute(0, 2, 3, 1).contiguous().numpy()
    st.save(os.path.join(OUT, "ops_roi.safetensors"), t)


# --------------------------------------------------------------------------- box coding
def d2_cell_anchors(sizes, ratios):
    a = []
    for s in sizes:
        area = s ** 2.0
        for r in ratios:
            w = math.sqrt(area / r)
            h = r * w
            a.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
    return torch.tensor(a).float()


def d2_grid_anchors(cell, H, W, stride, offset):
    sx = torch.arange(offset * stride, W * stride, step=stride, dtype=torch.float32)
    sy = torch.arange(offset * stride, H * stride, step=stride, dtype=torch.float32)
    gy, gx = torch.meshgrid(sy, sx, indexing="ij")
    gx, gy = gx.reshape(-1), gy.reshape(-1)
    shifts = torch.stack((gx, gy, gx, gy), 1)
    return (shifts.view(-1, 1, 4) + cell.view(1, -1, 4)).reshape(-1, 4)


def d2_apply_deltas(deltas, boxes, weights, clamp=math.log(1000.0 / 16)):
    deltas = deltas.float()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    cx = boxes[:, 0] + 0.5 * w
    cy = boxes[:, 1] + 0.5 * h
    wx, wy, ww, wh = weights
    dx = deltas[:, 0::4] / wx
    dy = deltas[:, 1::4] / wy
    dw = torch.clamp(deltas[:, 2::4] / ww, max=clamp)
    dh = torch.clamp(deltas[:, 3::4] / wh, max=clamp)
    pcx = dx * w[:, None] + cx[:, None]
    pcy = dy * h[:, None] + cy[:, None]
    pw = torch.exp(dw) * w[:, None]
    ph = torch.exp(dh) * h[:, None]
    out = torch.stack((pcx - 0.5 * pw, pcy - 0.5 * ph, pcx + 0.5 * pw, pcy + 0.5 * ph), -1)
    return out.reshape(deltas.shape)


def clip_t(b, h, w):
    return torch.stack((b[:, 0].clamp(min=0, max=w), b[:, 1].clamp(min=0, max=h),
                        b[:, 2].clamp(min=0, max=w), b[:, 3].clamp(min=0, max=h)), -1)


def pyf_cell_anchors(base, ratios, scales):
    """generate_anchors(base_size, ratios, scales) re-stated: ratio outer, scale inner."""
    def whctr(a):
        w = a[2] - a[0] + 1
        h = a[3] - a[1] + 1
        return w, h, a[0] + 0.5 * (w - 1), a[1] + 0.5 * (h - 1)

    def mk(ws, hs, cx, cy):
        return [[cx - 0.5 * (w - 1), cy - 0.5 * (h - 1), cx + 0.5 * (w - 1), cy + 0.5 * (h - 1)]
                for w, h in zip(ws, hs)]

    w, h, cx, cy = whctr(np.array([0, 0, base - 1, base - 1], dtype=np.float64))
    ws = np.round(np.sqrt(w * h / np.array(ratios)))
    hs = np.round(ws * np.array(ratios))
    out = []
    for ra in mk(ws, hs, cx, cy):
        w2, h2, cx2, cy2 = whctr(np.array(ra))
        out += mk(w2 * np.array(scales), h2 * np.array(scales), cx2, cy2)
    return np.array(out)


def pyf_decode(boxes, deltas):
    """bbox_transform_inv in float32 (+1 widths, x2 = ctr + 0.5 w)."""
    boxes = boxes.astype(F32)
    deltas = deltas.astype(F32)
    w = boxes[:, 2] - boxes[:, 0] + F32(1)
    h = boxes[:, 3] - boxes[:, 1] + F32(1)
    cx = boxes[:, 0] + F32(0.5) * w
    cy = boxes[:, 1] + F32(0.5) * h
    dx, dy, dw, dh = deltas[:, 0::4], deltas[:, 1::4], deltas[:, 2::4], deltas[:, 3::4]
    pcx = dx * w[:, None] + cx[:, None]
    pcy = dy * h[:, None] + cy[:, None]
    pw = expf(dw) * w[:, None]
    ph = expf(dh) * h[:, None]
    out = np.zeros(deltas.shape, F32)
    out[:, 0::4] = pcx - F32(0.5) * pw
    out[:, 1::4] = pcy - F32(0.5) * ph
    out[:, 2::4] = pcx + F32(0.5) * pw
    out[:, 3::4] = pcy + F32(0.5) * ph
    return out


def pyf_clip(b, h, w):
    b = b.copy()
    b[:, 0::4] = np.maximum(np.minimum(b[:, 0::4], F32(w - 1)), F32(0))
    b[:, 1::4] = np.maximum(np.minimum(b[:, 1::4], F32(h - 1)), F32(0))
    b[:, 2::4] = np.maximum(np.minimum(b[:, 2::4], F32(w - 1)), F32(0))
    b[:, 3::4] = np.maximum(np.minimum(b[:, 3::4], F32(h - 1)), F32(0))
    return b


# --------------------------------------------------------------------------- RPN
def fx_rpn(rng):
    t = {}
    sizes, ratios = [32, 64, 128, 256, 512], [0.5, 1.0, 2.0]
    cell = d2_cell_anchors(sizes, ratios)
    t["d2_cell"] = cell.numpy()
    t["pyf_cell"] = pyf_cell_anchors(16, [0.5, 1, 2], [8, 16, 32]).astype(F32)
    # detectron2 cases: H, W, img_h, img_w, pre, post, logit quantum (ties), min_size, thr
    cases = [(20, 30, 318, 477, 6000, 1000, 0, 0.0, 0.7),
             (20, 30, 318, 477, 6000, 1000, 0.25, 0.0, 0.7),
             (20, 30, 318, 477, 100, 50, 0, 0.0, 0.7),
             (20, 30, 318, 477, 900, 300, 0.5, 0.0, 0.7),
             (7, 9, 100, 140, 6000, 1000, 0, 2.0, 0.5)]
    for c, (H, W, ih, iw, pre, post, q, mins, thr) in enumerate(cases):
        A = cell.shape[0]
        logits = rng.normal(0, 2, (H, W, A)).astype(F32)
        if q:
            logits = (np.round(logits / q) * q).astype(F32)
        deltas = rng.normal(0, 0.3, (H, W, A, 4)).astype(F32)
        deltas[0, 0, 0, 2] = 9.0   # clamped dw
        deltas[1, 2, 3, 3] = 50.0  # clamped dh
        if c == 0:
            deltas[2, 3, :, 0] = np.nan  # dropped (non-finite)
            logits[2, 3, :] = 10.0       # ...even though they score high
            logits[4, 4, 1] = np.inf
        anchors = d2_grid_anchors(cell, H, W, 16, 0.0)
        props = d2_apply_deltas(torch.from_numpy(deltas.reshape(-1, 4)), anchors, (1.0, 1.0, 1.0, 1.0))
        lg = torch.from_numpy(logits.reshape(-1))
        k = min(pre, lg.numel())
        sc, idx = lg[None].topk(k, dim=1)
        sc, b = sc[0], props[idx[0]]
        valid = torch.isfinite(b).all(dim=1) & torch.isfinite(sc)
        b, sc = b[valid], sc[valid]
        b = clip_t(b, ih, iw)
        keep = ((b[:, 2] - b[:, 0]) > mins) & ((b[:, 3] - b[:, 1]) > mins)
        b, sc = b[keep], sc[keep]
        keep = torchvision.ops.batched_nms(b, sc, torch.zeros(len(b), dtype=torch.int64), thr)[:post]
        p = "d2rpn%d_" % c
        t[p + "logits"] = logits
        t[p + "deltas"] = deltas
        t[p + "meta"] = np.array([H, W, ih, iw, pre, post, mins, thr], F32)
        t[p + "anchors"] = anchors.numpy()
        t[p + "boxes"] = b[keep].numpy()
        t[p + "scores"] = sc[keep].numpy()

    # py-faster-rcnn proposal_layer: 9 anchors, softmax2 (bg block, fg block)
    pcell = t["pyf_cell"].astype(np.float64)
    for c, (H, W, ih, iw, scale, pre, post, q) in enumerate([(25, 38, 400, 600, 1.2, 6000, 300, 0),
                                                             (25, 38, 400, 600, 0.8, 500, 100, 0.5),
                                                             (6, 8, 90, 120, 1.0, 6000, 300, 0)]):
        A = pcell.shape[0]
        cls = rng.normal(0, 2, (H, W, 2 * A)).astype(F32)
        if q:
            cls = (np.round(cls / q) * q).astype(F32)
        deltas = rng.normal(0, 0.3, (H, W, A, 4)).astype(F32)
        sx, sy = np.meshgrid(np.arange(W) * 16, np.arange(H) * 16)
        shifts = np.stack([sx.ravel(), sy.ravel(), sx.ravel(), sy.ravel()], 1)
        anchors = (pcell[None] + shifts[:, None]).reshape(-1, 4)
        bg, fg = cls[..., :A].reshape(-1), cls[..., A:].reshape(-1)
        m = np.maximum(bg, fg)
        eb, ef = expf(bg - m), expf(fg - m)
        scores = ef / (eb + ef)
        props = pyf_clip(pyf_decode(anchors, deltas.reshape(-1, 4)), ih, iw)
        im_scale = F32(scale)
        mins = F32(16) * im_scale
        ws = props[:, 2] - props[:, 0] + F32(1)
        hs = props[:, 3] - props[:, 1] + F32(1)
        keep = np.where((ws >= mins) & (hs >= mins))[0]
        props, scores = props[keep], scores[keep]
        order = scores.argsort()[::-1][:pre]
        props, scores = props[order], scores[order]
        order = scores.argsort()[::-1]
        keep = nms_plus_one(props, order, 0.7)[:post]
        p = "pyfrpn%d_" % c
        t[p + "cls"] = cls
        t[p + "deltas"] = deltas
        t[p + "meta"] = np.array([H, W, ih, iw, pre, post, scale, 0.7], F32)
        t[p + "boxes"] = props[keep]
        t[p + "scores"] = scores[keep]
    st.save(os.path.join(OUT, "ops_rpn.safetensors"), t)


# --------------------------------------------------------------------------- head
def d2_head(props, logits, deltas, ih, iw, oh, ow, thresh, nms, topk):
    boxes = d2_apply_deltas(deltas, props, (10.0, 10.0, 5.0, 5.0))
    scores = torch.softmax(logits, -1)
    valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores).all(dim=1)
    boxes, scores = boxes[valid], scores[valid]
    scores = scores[:, :-1]
    nb = boxes.shape[1] // 4
    boxes = clip_t(boxes.reshape(-1, 4), ih, iw).view(-1, nb, 4)
    mask = scores > thresh
    inds = mask.nonzero()
    boxes = boxes[inds[:, 0], 0] if nb == 1 else boxes[mask]
    scores = scores[mask]
    keep = torchvision.ops.batched_nms(boxes, scores, inds[:, 1], nms)[:topk]
    boxes, scores, cls = boxes[keep], scores[keep], inds[keep, 1]
    sx, sy = ow / iw, oh / ih
    boxes = boxes.clone()
    boxes[:, 0::2] *= sx
    boxes[:, 1::2] *= sy
    boxes = clip_t(boxes, oh, ow)
    ne = ((boxes[:, 2] - boxes[:, 0]) > 0) & ((boxes[:, 3] - boxes[:, 1]) > 0)
    return boxes[ne], scores[ne], cls[ne]


def pyf_head(props, logits, deltas, oh, ow, im_scale, thresh, nms, max_per_image):
    boxes = props / F32(im_scale)
    m = logits.max(1, keepdims=True)
    e = expf(logits - m)
    s = np.zeros(len(e), F32)
    for j in range(e.shape[1]):
        s = s + e[:, j]
    scores = e / s[:, None]
    pred = pyf_clip(pyf_decode(boxes, deltas), oh, ow)
    dets = []
    for j in range(1, scores.shape[1]):
        inds = np.where(scores[:, j] > F32(thresh))[0]
        cb = pred[inds, 4 * j:4 * j + 4]
        cs = scores[inds, j]
        keep = nms_plus_one(cb, cs.argsort()[::-1], nms) if len(inds) else np.zeros(0, np.int64)
        dets.append((cb[keep], cs[keep], np.full(len(keep), j - 1)))
    allsc = np.concatenate([d[1] for d in dets])
    if max_per_image > 0 and len(allsc) > max_per_image:
        th = np.sort(allsc)[-max_per_image]
        dets = [(b[s >= th], s[s >= th], c[s >= th]) for b, s, c in dets]
    b = np.concatenate([d[0] for d in dets]).reshape(-1, 4)
    s = np.concatenate([d[1] for d in dets])
    c = np.concatenate([d[2] for d in dets])
    order = np.argsort(-s, kind="stable")  # the C output order: score desc, then class, NMS order
    return b[order], s[order], c[order]


def fx_head(rng):
    t = {}
    # detectron2: R, K, img (h, w), orig (h, w), thresh, nms, topk, class-agnostic, sharpness
    cases = [(300, 20, 480, 640, 375, 500, 0.05, 0.5, 100, 0, 3.0),
             (1000, 80, 800, 1067, 600, 800, 0.001, 0.5, 100, 0, 1.0),
             (200, 5, 333, 500, 1000, 1500, 0.05, 0.5, 100, 1, 2.0),
             (150, 10, 600, 600, 600, 600, 0.0, 0.6, 30, 0, 2.0)]
    for c, (R, K, ih, iw, oh, ow, thr, nms, topk, agn, sharp) in enumerate(cases):
        xy = rng.uniform(0, [iw, ih], (R, 2))
        wh = rng.uniform(8, [iw / 2, ih / 2], (R, 2))
        props = np.concatenate([xy, np.minimum(xy + wh, [iw, ih])], 1).astype(F32)
        logits = (rng.normal(0, sharp, (R, K + 1))).astype(F32)
        logits[:, -1] += F32(1.0)
        logits[R // 2:R // 2 + 10] = logits[R // 2 - 10:R // 2]  # tied scores
        nd = 4 if agn else 4 * K
        deltas = rng.normal(0, 1.0, (R, nd)).astype(F32)
        deltas[3, 2] = 100.0
        if c == 0:
            deltas[5, 0] = np.nan  # drops proposal 5 entirely
        b, s, cl = d2_head(torch.from_numpy(props), torch.from_numpy(logits), torch.from_numpy(deltas),
                           ih, iw, oh, ow, thr, nms, topk)
        p = "d2head%d_" % c
        t[p + "props"], t[p + "logits"], t[p + "deltas"] = props, logits, deltas
        t[p + "meta"] = np.array([R, K, ih, iw, oh, ow, thr, nms, topk, agn], F32)
        t[p + "boxes"], t[p + "scores"], t[p + "classes"] = b.numpy(), s.numpy(), i64(cl.numpy())
    for c, (R, K, ih, iw, oh, ow, scale, thr, nms, mpi) in enumerate([
            (300, 20, 600, 800, 375, 500, 1.6, 0.05, 0.3, 100),
            (300, 20, 600, 900, 400, 600, 1.5, 0.0, 0.3, 100)]):
        xy = rng.uniform(0, [iw, ih], (R, 2))
        wh = rng.uniform(8, [iw / 2, ih / 2], (R, 2))
        props = np.concatenate([xy, np.minimum(xy + wh, [iw - 1, ih - 1])], 1).astype(F32)
        logits = rng.normal(0, 2.0, (R, K + 1)).astype(F32)
        logits[:, 0] += F32(1.0)
        deltas = rng.normal(0, 0.2, (R, 4 * (K + 1))).astype(F32)
        b, s, cl = pyf_head(props, logits, deltas, oh, ow, scale, thr, nms, mpi)
        p = "pyfhead%d_" % c
        t[p + "props"], t[p + "logits"], t[p + "deltas"] = props, logits, deltas
        t[p + "meta"] = np.array([R, K, ih, iw, oh, ow, scale, thr, nms, mpi], F32)
        t[p + "boxes"], t[p + "scores"], t[p + "classes"] = b, s, i64(cl)
    st.save(os.path.join(OUT, "ops_head.safetensors"), t)


# --------------------------------------------------------------------------- ONNX test data
def pb_fields(buf):
    """Minimal protobuf wire-format reader: yields (field number, wire type, value)."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        f, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(buf, i)
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 2:
            n, i = varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError("protobuf: wire type %d" % wt)
        yield f, wt, v


def varint(buf, i):
    r = s = 0
    while True:
        b = buf[i]
        i += 1
        r |= (b & 0x7F) << s
        s += 7
        if not b & 0x80:
            return r, i


def packed_varints(v):
    out, i = [], 0
    while i < len(v):
        x, i = varint(v, i)
        out.append(x - (1 << 64) if x >= 1 << 63 else x)
    return out


def pb_tensor(path):
    """ONNX TensorProto -> numpy (float32 / int64)."""
    dims, dtype, raw, fl, il = [], 1, None, [], []
    with open(path, "rb") as f:
        buf = f.read()
    for f, wt, v in pb_fields(buf):
        if f == 1:
            dims += packed_varints(v) if wt == 2 else [v]
        elif f == 2:
            dtype = v
        elif f == 4:
            fl += list(struct.unpack("<%df" % (len(v) // 4), v)) if wt == 2 else [struct.unpack("<f", v)[0]]
        elif f == 7:
            il += packed_varints(v) if wt == 2 else [v]
        elif f == 9:
            raw = v
    if dtype == 1:
        a = np.frombuffer(raw, "<f4") if raw is not None else np.array(fl, F32)
    elif dtype == 7:
        a = np.frombuffer(raw, "<i8") if raw is not None else np.array(il, np.int64)
    else:
        raise ValueError("%s: tensor data type %d" % (path, dtype))
    return a.reshape(dims).copy()


def pb_attributes(model_path):
    """{name: value} of the single node in an ONNX test model."""
    with open(model_path, "rb") as f:
        buf = f.read()
    attrs = {}
    for f, _, graph in pb_fields(buf):
        if f != 7:
            continue
        for g, _, node in pb_fields(graph):
            if g != 1:
                continue
            for n, _, attr in pb_fields(node):
                if n != 5:
                    continue
                name, val = None, None
                for a, wt, v in pb_fields(attr):
                    if a == 1:
                        name = v.decode()
                    elif a == 2:
                        val = struct.unpack("<f", v)[0]
                    elif a == 3:
                        val = v
                    elif a == 4:
                        val = v.decode()
                attrs[name] = val
    return attrs


def fx_onnx():
    t = {}
    for mode in ("aligned_false", "aligned_true"):
        d = os.path.join(ONNX_DIR, "test_roialign_" + mode)
        a = pb_attributes(os.path.join(d, "model.onnx"))
        ds = os.path.join(d, "test_data_set_0")
        x = pb_tensor(os.path.join(ds, "input_0.pb"))
        rois = pb_tensor(os.path.join(ds, "input_1.pb"))
        y = pb_tensor(os.path.join(ds, "output_0.pb"))
        aligned = 1 if a.get("coordinate_transformation_mode", "half_pixel") == "half_pixel" else 0
        t["onnx_" + mode + "_x"] = x.transpose(0, 2, 3, 1).astype(F32).copy()
        t["onnx_" + mode + "_rois"] = rois.astype(F32)
        t["onnx_" + mode + "_y"] = y.transpose(0, 2, 3, 1).astype(F32).copy()
        t["onnx_" + mode + "_attr"] = np.array([a["output_height"], a["output_width"], a["sampling_ratio"],
                                                a["spatial_scale"], aligned], F32)
    names = sorted(n for n in os.listdir(ONNX_DIR) if n.startswith("test_nonmaxsuppression_"))
    t["onnx_nms_count"] = i64([len(names)])
    for k, name in enumerate(names):
        d = os.path.join(ONNX_DIR, name)
        a = pb_attributes(os.path.join(d, "model.onnx"))
        ds = os.path.join(d, "test_data_set_0")
        ins = [pb_tensor(os.path.join(ds, "input_%d.pb" % i)) for i in range(5)
               if os.path.exists(os.path.join(ds, "input_%d.pb" % i))]
        boxes, scores = ins[0].astype(F32), ins[1].astype(F32)
        maxout = int(ins[2].ravel()[0]) if len(ins) > 2 else 0
        iou = float(ins[3].ravel()[0]) if len(ins) > 3 else 0.0
        sthr = float(ins[4].ravel()[0]) if len(ins) > 4 else -np.inf
        if a.get("center_point_box", 0):
            xc, yc, w, h = boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]
            boxes = np.stack([xc - w / F32(2), yc - h / F32(2), xc + w / F32(2), yc + h / F32(2)], -1)
        else:  # [y1, x1, y2, x2], corners in either order
            y1, x1, y2, x2 = boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]
            boxes = np.stack([np.minimum(x1, x2), np.minimum(y1, y2), np.maximum(x1, x2), np.maximum(y1, y2)], -1)
        p = "onnx_nms%d_" % k
        t[p + "boxes"] = boxes.astype(F32)
        t[p + "scores"] = scores
        t[p + "params"] = np.array([maxout, iou, sthr if np.isfinite(sthr) else -1e30], np.float64).astype(F32)
        t[p + "selected"] = i64(pb_tensor(os.path.join(ds, "output_0.pb")))
    st.save(os.path.join(OUT, "ops_onnx.safetensors"), t)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    OUT = ap.parse_args().out
    os.makedirs(OUT, exist_ok=True)
    if not os.path.isdir(ONNX_DIR):
        sys.exit("fx_ops: %s missing (Debian package libonnx-testdata)" % ONNX_DIR)
    rng = np.random.default_rng(20240607)
    fx_order(rng)
    fx_nms(rng)
    fx_roi(rng)
    fx_rpn(rng)
    fx_head(rng)
    fx_onnx()
