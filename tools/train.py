#!/usr/bin/python3
"""train.py - trains the bundled demo model: a narrow ResNet-101-C4 Faster R-CNN on tools/shapes.py data.

  train.py [--out models/demo.safetensors] [--data build/shapes] [--width-div 8]
           [--iters 1500] [--max-minutes 30] [--device cpu|cuda] [--threads 2] [--seed 0]
           [--init MODEL] ...

Steps:
 1. Generates (or reuses) the synthetic VOC dataset with tools/shapes.py under --data
    (--n-train, --n-val, --n-test, --data-seed, --size).
 2. Builds the weights with tools/reference/make_weights.py's detectron2-named tensors for
    ResNet-101 (all 101 layers: blocks [3, 4, 23] + res5 [3]) at --width-div, and sets every
    FrozenBN's running_mean/var from the statistics of its own input on --calib-images
    training images (layer by layer, like make_weights.py; res5 on GT and random boxes). The
    last BN of each residual branch starts at 0 (identity residual blocks, so the net starts
    shallow: "zero-init residual"; --residual-gamma). Heads get
    detectron2's init: RPN normal(0.01), cls_score normal(0.01), bbox_pred normal(0.001).
    --init MODEL skips this step and continues training a model train.py wrote: its tensors,
    BN statistics and config (input sizes, width) are kept; a fresh schedule (warmup, cosine)
    runs from --lr; the metadata's iterations and minutes are cumulative, "frcnn.init" names
    the starting model, and the new log starts with the old one.
 3. Trains with the reference model's own forward code (tools/reference/model.py) and the
    detectron2 losses:
      RPN: anchors matched to GT at IoU 0.7 / 0.3 (plus each GT's best anchors), 256 anchors
        per image with up to 50% positives, BCE objectness, L1 box loss (detectron2
        SMOOTH_L1_BETA 0), both summed and divided by 256 x images;
      proposals (no gradient): top --train-pre-nms, clip, NMS 0.7, keep --train-post-nms,
        plus the GT boxes; matched at IoU 0.5; --rois-per-image RoIs (detectron2: 512) with
        up to 25% foreground; softmax cross-entropy and class-specific L1 box loss with
        weights (10, 10, 5, 5) summed over the foreground and divided by the RoI count.
    FrozenBN stays frozen (running statistics fixed); conv weights, BN weight/bias and head
    parameters train. SGD, momentum 0.9, weight decay 1e-4 (none on BN and biases), linear
    warmup then cosine decay. Horizontal flips. Gradient norm clipped at --clip.
    The schedule's progress is max(iteration / --iters, elapsed / --max-minutes), so a run
    cut short by the time budget still ends with a decayed learning rate (such a run is not
    bit-reproducible; one limited by --iters is, for a given torch version and device).
 4. Writes --out (F32 safetensors with detectron2 names incl. norm.{weight,bias,running_mean,
    running_var}; the config JSON under "frcnn.config" in the metadata), a training log next
    to it (<out without .safetensors>.train.log), then runs the reference model from the
    written file over the test split and prints its VOC07 mAP (tools/demo_eval.py), which is
    also stored in the metadata ("frcnn.ref_map07", "frcnn.ref_map10").

Runs on torch 1.13 (Debian python3-torch, CPU) and torch 2.x (--device cuda).
Ctrl-C stops training early and still writes the model.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "reference"))
sys.path.insert(0, HERE)
import demo_eval  # noqa: E402
import voc_eval_ref  # noqa: E402
import make_weights  # noqa: E402
import model  # noqa: E402
import shapes  # noqa: E402
import st  # noqa: E402

# The demo model's configuration (schema: src/core/config.h; semantics: detectron2 family,
# shared/docs/semantics.md A) with the small input sizes and anchors for the shapes data.
DEMO_CONFIG = {
    "name": "shapes_R101_C4_demo",
    "family": "detectron2",
    "classes": list(shapes.CLASSES),
    "input": {
        "format": "BGR",
        "pixel_mean": [103.530, 116.280, 123.675],  # detectron2 MODEL.PIXEL_MEAN
        "pixel_std": [57.375, 57.120, 58.395],      # detectron2's torchvision-style PIXEL_STD
        "min_size": 256,
        "max_size": 384,
        "resize": "detectron2",
        "exif": True,
    },
    "backbone": {"depth": 101, "stride_in_1x1": True, "bn_eps": 1e-5, "res5_stride": 2},
    "anchors": {"style": "detectron2", "stride": 16, "sizes": [16, 32, 64, 128, 256],
                "ratios": [0.5, 1.0, 2.0], "offset": 0.0},
    "rpn": {"objectness": "sigmoid", "pre_nms_topk": 1000, "post_nms_topk": 300,
            "nms_thresh": 0.7, "min_size": 0, "box_weights": [1.0, 1.0, 1.0, 1.0]},
    "roi": {"op": "align", "output_size": 14, "spatial_scale": 0.0625, "sampling_ratio": 0,
            "aligned": True},
    "head": {"background": "last", "class_agnostic": False, "box_includes_background": False,
             "box_weights": [10.0, 10.0, 5.0, 5.0], "score_thresh": 0.05, "nms_thresh": 0.5,
             "detections_per_image": 100},
    "box_plus_one": False,
}

RPN_BATCH = 256         # detectron2 MODEL.RPN.BATCH_SIZE_PER_IMAGE
RPN_POS_FRACTION = 0.5  # MODEL.RPN.POSITIVE_FRACTION
RPN_IOU = (0.3, 0.7)    # MODEL.RPN.IOU_THRESHOLDS
ROI_POS_FRACTION = 0.25  # MODEL.ROI_HEADS.POSITIVE_FRACTION
ROI_IOU = 0.5           # MODEL.ROI_HEADS.IOU_THRESHOLDS
RPN_TRAIN_NMS = 0.7     # MODEL.RPN.NMS_THRESH


class Log:
    """Prints and appends to a log file, which starts with the text head."""

    def __init__(self, path, head=""):
        self.f = open(path, "w") if path else None
        if self.f and head:
            self.f.write(head if head.endswith("\n") else head + "\n")

    def __call__(self, *args):
        s = " ".join(str(a) for a in args)
        print(s, flush=True)
        if self.f:
            self.f.write(s + "\n")
            self.f.flush()


# ----------------------------------------------------------------------------------------------
# Data


def load_split(root, set_name, classes):
    """[(id, jpeg path, boxes float32 (n, 4), classes int64 (n,))]. Boxes follow detectron2's
    pascal_voc loader: [xmin - 1, ymin - 1, xmax, ymax] (0-based corners, continuous)."""
    out = []
    for iid in demo_eval.read_set(root, set_name):
        objs = voc_eval_ref.read_annotation(os.path.join(root, "Annotations", iid + ".xml"))
        b = np.array([o["bbox"] for o in objs], dtype=np.float32).reshape(-1, 4)
        b[:, :2] -= 1.0
        c = np.array([classes.index(o["name"]) for o in objs], dtype=np.int64)
        out.append((iid, os.path.join(root, "JPEGImages", iid + ".jpg"), b, c))
    return out


_IMAGES = {}


def load_example(det, item, flip):
    """Returns (x [1, 3, h, w], gt boxes in the resized image [n, 4], classes [n])."""
    _, path, boxes, cls = item
    img = _IMAGES.get(path)
    if img is None:  # decoded once: the training set is small (2,000 images: ~0.5 GB)
        img = model.load_image(path, det.cfg["input"]["exif"])
        _IMAGES[path] = img
    H0, W0 = img.shape[:2]
    b = boxes.copy()
    if flip:
        img = np.ascontiguousarray(img[:, ::-1])
        b[:, [0, 2]] = W0 - boxes[:, [2, 0]]
    x, info = det.preprocess(img)
    sx, sy = info["w"] / float(W0), info["h"] / float(H0)
    b = b * np.array([sx, sy, sx, sy], dtype=np.float32)
    return x, torch.from_numpy(b), torch.from_numpy(cls)


# ----------------------------------------------------------------------------------------------
# Initial weights


def init_weights(cfg, div, seed, det_items, log, residual_gamma=0.0):
    """make_weights.py tensors with FrozenBN statistics calibrated on a few training images and
    detectron2's head init. Returns {name: float32 tensor}."""
    gen = torch.Generator().manual_seed(seed)
    w = make_weights.init_tensors(cfg, div, gen)
    det = model.Detector(w, cfg)
    w = det.w

    def calib(norm, y):
        m = y.mean(dim=(0, 2, 3))
        v = y.var(dim=(0, 2, 3), unbiased=False)
        v = torch.maximum(v, 1e-4 * v.mean() + 1e-12)
        w[norm + ".running_mean"].copy_(m)
        w[norm + ".running_var"].copy_(v)
        if norm.endswith("conv3.norm"):  # residual branches start at zero (Goyal et al.)
            w[norm + ".weight"].fill_(residual_gamma)
        else:
            w[norm + ".weight"].fill_(1.0)
        w[norm + ".bias"].zero_()

    with torch.no_grad():
        exs = [load_example(det, it, False) for it in det_items]
        x = torch.cat([e[0] for e in exs])
        det.calib = calib
        res4 = det.backbone(x)["res4"]
        det.calib = None
        # res5 statistics on the GT boxes and as many random boxes
        feats = []
        for i, (xi, b, _) in enumerate(exs):
            h, wd = xi.shape[2], xi.shape[3]
            n = max(b.shape[0], 4)
            cxy = torch.rand(n, 2, generator=gen) * torch.tensor([wd, h])
            s = torch.exp(torch.rand(n, 1, generator=gen) * math.log(12.0)) * 12.0
            rnd = torch.cat([cxy - s / 2, cxy + s / 2], dim=1)
            boxes = model.clip_boxes(torch.cat([b, rnd]), h, wd, False)
            feats.append(det.roi_features(res4[i : i + 1], boxes))
        det.calib = calib
        det.res5(torch.cat(feats))
        det.calib = None
    log("init: FrozenBN statistics from %d images (%s), res4 %s std %.3f"
        % (len(det_items), ",".join(it[0] for it in det_items[:4]) + ("..." if len(det_items) > 4 else ""),
           tuple(res4.shape), res4.std().item()))
    p = "proposal_generator.rpn_head."
    q = "roi_heads.box_predictor."
    for name, std in ((p + "conv", 0.01), (p + "objectness_logits", 0.01), (p + "anchor_deltas", 0.01),
                      (q + "cls_score", 0.01), (q + "bbox_pred", 0.001)):
        w[name + ".weight"].normal_(0.0, std, generator=gen)
        w[name + ".bias"].zero_()
    return w


# ----------------------------------------------------------------------------------------------
# Training-speed versions of two reference ops (same numbers up to float rounding)


class TrainDetector(model.Detector):
    """The reference detector for training. bn_mode "frozen": each FrozenBN folded into its conv
    on the fly (what detectron2's FrozenBatchNorm2d computes, as one conv with bias): gradients
    reach the conv weight and the BN weight/bias; running_mean/var stay fixed. "batch":
    BatchNorm with batch statistics (the running statistics are re-estimated after training,
    see precise_bn). "stats": batch statistics accumulated into the running ones with
    momentum self.bn_momentum, no gradient (used by precise_bn)."""

    bn_mode = "frozen"      # for the backbone (stem, res2..res4)
    bn_mode_head = None     # for roi_heads.res5 (None: same as bn_mode)
    bn_momentum = 0.1

    def conv_bn(self, x, name, stride, padding):
        n = name + ".norm"
        eps = self.cfg["backbone"]["bn_eps"]
        mode = self.bn_mode
        if self.bn_mode_head is not None and name.startswith("roi_heads."):
            mode = self.bn_mode_head
        if mode != "frozen":
            y = F.conv2d(x, self.t(name + ".weight"), None, stride, padding)
            return F.batch_norm(y, self.t(n + ".running_mean"), self.t(n + ".running_var"),
                                self.t(n + ".weight"), self.t(n + ".bias"), True,
                                self.bn_momentum, eps)
        s = self.t(n + ".weight") * torch.rsqrt(self.t(n + ".running_var") + eps)
        wt = self.t(name + ".weight") * s[:, None, None, None]
        b = self.t(n + ".bias") - self.t(n + ".running_mean") * s
        return F.conv2d(x, wt, b, stride, padding)


def _align_axis(start, size, S, grid, n):
    """RoIAlign's sampling along one axis as a matrix (R, S, n): row p holds the weights of the
    n feature cells for output bin p (bilinear weights of the grid[r] samples of the bin,
    divided by grid[r]; samples outside [-1, n] count 0, as torchvision's bilinear_interpolate)."""
    R = start.shape[0]
    G = max(int(grid.max().item()) if R else 1, 1)
    dev = start.device
    bin_size = size / S
    p = torch.arange(S, device=dev, dtype=start.dtype)
    i = torch.arange(G, device=dev, dtype=start.dtype)
    g = grid.clamp(min=1).to(start.dtype)
    # sample coordinates (R, S, G)
    y = (start[:, None, None] + p[None, :, None] * bin_size[:, None, None]
         + (i[None, None, :] + 0.5) * bin_size[:, None, None] / g[:, None, None])
    used = (i[None, None, :] < grid[:, None, None]).to(start.dtype)
    valid = ((y >= -1.0) & (y <= n)).to(start.dtype) * used
    y = y.clamp(min=0)
    low = y.floor().long()
    at_end = low >= n - 1
    low = torch.where(at_end, torch.full_like(low, n - 1), low)
    high = torch.where(at_end, low, low + 1)
    y = torch.where(at_end, low.to(y.dtype), y)
    ly = y - low.to(y.dtype)
    hy = 1.0 - ly
    m = torch.zeros(R, S, n, device=dev, dtype=start.dtype)
    wl = hy * valid / g[:, None, None]
    wh = ly * valid / g[:, None, None]
    m.scatter_add_(2, low, wl)
    m.scatter_add_(2, high, wh)
    return m


def roi_align(feat, boxes, S, scale, sampling_ratio, aligned):
    """torch.cat([torchvision.ops.roi_align(feat[b:b+1], boxes[b], (S, S), scale,
    sampling_ratio, aligned) for b]) computed as two matrix products per image (bilinear
    sampling is separable in y and x): the same numbers up to summation order, with a much
    faster backward pass on CPU. boxes: per image (R_b, 4) [x1, y1, x2, y2], no gradient."""
    N, C, H, W = feat.shape
    parts = []
    for b in range(N):
        with torch.no_grad():
            r = boxes[b].to(feat.dtype)
            off = 0.5 if aligned else 0.0
            x1 = r[:, 0] * scale - off
            y1 = r[:, 1] * scale - off
            rw = r[:, 2] * scale - off - x1
            rh = r[:, 3] * scale - off - y1
            if not aligned:
                rw = rw.clamp(min=1.0)
                rh = rh.clamp(min=1.0)
            if sampling_ratio > 0:
                gx = torch.full(rw.shape, sampling_ratio, dtype=torch.long, device=rw.device)
                gy = gx
            else:
                gx = torch.ceil(rw / S).long()
                gy = torch.ceil(rh / S).long()
            ay = _align_axis(y1, rh, S, gy, H)  # (R, S, H)
            ax = _align_axis(x1, rw, S, gx, W)  # (R, S, W)
        t = torch.einsum("rph,chw->rcpw", ay, feat[b])
        parts.append(torch.einsum("rcpw,rqw->rcpq", t, ax))
    return torch.cat(parts)


# ----------------------------------------------------------------------------------------------
# Targets


def encode(src, dst, weights):
    """detectron2 Box2BoxTransform.get_deltas (the inverse of model.decode)."""
    wx, wy, ww, wh = weights
    sw = src[:, 2] - src[:, 0]
    sh = src[:, 3] - src[:, 1]
    sx = src[:, 0] + 0.5 * sw
    sy = src[:, 1] + 0.5 * sh
    tw = dst[:, 2] - dst[:, 0]
    th = dst[:, 3] - dst[:, 1]
    tx = dst[:, 0] + 0.5 * tw
    ty = dst[:, 1] + 0.5 * th
    return torch.stack((wx * (tx - sx) / sw, wy * (ty - sy) / sh,
                        ww * torch.log(tw / sw), wh * torch.log(th / sh)), dim=1)


def match(iou, lo, hi, low_quality):
    """detectron2 Matcher on an IoU matrix (G, N): returns (matched gt index [N], label [N])
    with label 0 below lo, -1 in [lo, hi), 1 at or above hi; low_quality also labels 1 every
    prediction that is some GT's best match (set_low_quality_matches_)."""
    vals, idx = iou.max(dim=0)
    label = torch.ones_like(idx)
    label[vals < hi] = -1
    label[vals < lo] = 0
    if low_quality:
        best = iou.max(dim=1).values
        ok = best > 0
        _, preds = ((iou == best[:, None]) & ok[:, None]).nonzero(as_tuple=True)
        label[preds] = 1
    return idx, label


def subsample(pos_mask, neg_mask, num, fraction, gen):
    """detectron2 subsample_labels: up to num * fraction positives, the rest negatives, chosen at
    random. Returns (positive indices, negative indices) on the masks' device."""
    pos = pos_mask.nonzero().view(-1)
    neg = neg_mask.nonzero().view(-1)
    npos = min(int(num * fraction), pos.numel())
    nneg = min(num - npos, neg.numel())
    pp = torch.randperm(pos.numel(), generator=gen)[:npos].to(pos.device)
    pn = torch.randperm(neg.numel(), generator=gen)[:nneg].to(neg.device)
    return pos[pp], neg[pn]


# ----------------------------------------------------------------------------------------------
# Training step


def rpn_outputs(det, res4):
    """Batched RPN head: (logits [N, HWA], deltas [N, HWA, 4]) in model.rpn_head's order."""
    p = "proposal_generator.rpn_head."
    t = F.relu(F.conv2d(res4, det.t(p + "conv.weight"), det.t(p + "conv.bias"), 1, 1))
    obj = F.conv2d(t, det.t(p + "objectness_logits.weight"), det.t(p + "objectness_logits.bias"))
    dl = F.conv2d(t, det.t(p + "anchor_deltas.weight"), det.t(p + "anchor_deltas.bias"))
    N, A, H, W = obj.shape
    logits = obj.permute(0, 2, 3, 1).reshape(N, -1)
    deltas = dl.view(N, A, 4, H, W).permute(0, 3, 4, 1, 2).reshape(N, -1, 4)
    return logits, deltas


def train_proposals(logits, deltas, anchors, h, w, pre, post):
    """find_top_rpn_proposals for one training image (no gradient)."""
    cfg_r = DEMO_CONFIG["rpn"]
    boxes = model.decode(deltas, anchors, cfg_r["box_weights"], model.DEFAULT_CLAMP, False)
    k = min(pre, logits.shape[0])
    s, i = logits.topk(k)
    b = boxes[i]
    ok = torch.isfinite(b).all(dim=1) & torch.isfinite(s)
    b, s = model.clip_boxes(b[ok], h, w, False), s[ok]
    keep = ((b[:, 2] - b[:, 0]) > 0) & ((b[:, 3] - b[:, 1]) > 0)
    b, s = b[keep], s[keep]
    keep = torchvision.ops.nms(b, s, RPN_TRAIN_NMS)[:post]
    return b[keep]


def losses(det, batch, anchors_cache, a, gen, device):
    """One forward pass over a batch [(x, gt boxes, gt classes)]; returns a dict of losses."""
    cfg = det.cfg
    K = det.K
    x = torch.cat([e[0] for e in batch]).to(device)
    res4 = det.backbone(x)["res4"]
    N, _, Hf, Wf = res4.shape
    h, w = x.shape[2], x.shape[3]
    key = (Hf, Wf)
    if key not in anchors_cache:
        anchors_cache[key] = det.anchors(Hf, Wf).to(device)
    anchors = anchors_cache[key]
    logits, deltas = rpn_outputs(det, res4)
    hw = cfg["head"]["box_weights"]
    rw = cfg["rpn"]["box_weights"]
    obj_l, obj_t, loc_l, loc_t = [], [], [], []
    rois, roi_cls, roi_tgt = [], [], []
    for i, (_, gt, gcls) in enumerate(batch):
        gt = gt.to(device)
        gcls = gcls.to(device)
        iou = torchvision.ops.box_iou(gt, anchors)
        idx, lab = match(iou, RPN_IOU[0], RPN_IOU[1], True)
        pos, neg = subsample(lab == 1, lab == 0, RPN_BATCH, RPN_POS_FRACTION, gen)
        sel = torch.cat([pos, neg])
        obj_l.append(logits[i, sel])
        obj_t.append(torch.cat([torch.ones(pos.numel()), torch.zeros(neg.numel())]).to(device))
        loc_l.append(deltas[i, pos])
        loc_t.append(encode(anchors[pos], gt[idx[pos]], rw))
        with torch.no_grad():
            props = train_proposals(logits[i].detach(), deltas[i].detach(), anchors, h, w,
                                    a.train_pre_nms, a.train_post_nms)
            props = torch.cat([props, gt])  # detectron2 PROPOSAL_APPEND_GT
            piou = torchvision.ops.box_iou(gt, props)
            pidx, plab = match(piou, ROI_IOU, ROI_IOU, False)
            fg, bg = subsample(plab == 1, plab == 0, a.rois_per_image, ROI_POS_FRACTION, gen)
            sel = torch.cat([fg, bg])
            cls_t = torch.full((sel.numel(),), K, dtype=torch.int64, device=device)
            cls_t[: fg.numel()] = gcls[pidx[fg]]
            tgt = encode(props[fg], gt[pidx[fg]], hw)
        rois.append(props[sel])
        roi_cls.append(cls_t)
        roi_tgt.append(tgt)
    norm = float(RPN_BATCH * N)
    out = {
        "rpn_cls": F.binary_cross_entropy_with_logits(torch.cat(obj_l), torch.cat(obj_t), reduction="sum") / norm,
        "rpn_loc": F.l1_loss(torch.cat(loc_l), torch.cat(loc_t), reduction="sum") / norm,
    }
    r = cfg["roi"]
    S = r["output_size"]
    feats = roi_align(res4, rois, S, r["spatial_scale"], r["sampling_ratio"], r["aligned"])
    pooled = det.res5(feats)
    cls_logits, box_deltas = det.predictor(pooled)
    cls_t = torch.cat(roi_cls)
    tgt = torch.cat(roi_tgt)
    out["cls"] = F.cross_entropy(cls_logits, cls_t)
    fg = (cls_t < K).nonzero().view(-1)
    pred = box_deltas.view(-1, K, 4)[fg, cls_t[fg]]
    out["box"] = F.l1_loss(pred, tgt, reduction="sum") / max(cls_t.numel(), 1)
    out["fg"] = torch.tensor(float(fg.numel()) / max(cls_t.numel(), 1))
    return out


# ----------------------------------------------------------------------------------------------


def precise_bn(det, items, a, gen, device, log):
    """Re-estimates every BN's running statistics as the average of the batch statistics over
    the given images (detectron2's PreciseBN): first the backbone, layer statistics
    accumulated with batch-statistics normalization as in training; then, with the backbone
    frozen at those statistics, res5 on RoIs sampled exactly as in training (the distribution
    the box head was trained on)."""
    with torch.no_grad():
        for k in det.w:
            if k.endswith(".running_mean"):
                det.w[k].zero_()
            elif k.endswith(".running_var"):
                det.w[k].fill_(1.0)
        batches = [items[i : i + a.batch] for i in range(0, len(items), a.batch)]
        det.bn_mode, det.bn_mode_head = "stats", "frozen"
        for nb, its in enumerate(batches, 1):
            det.bn_momentum = 1.0 / nb  # cumulative average
            x = torch.cat([load_example(det, it, False)[0] for it in its]).to(device)
            det.backbone(x)
        det.bn_mode, det.bn_mode_head = "frozen", "stats"
        cache = {}
        for nb, its in enumerate(batches, 1):
            det.bn_momentum = 1.0 / nb
            losses(det, [load_example(det, it, False) for it in its], cache, a, gen, device)
    det.bn_mode, det.bn_mode_head = "frozen", None
    log("train: BN statistics re-estimated on %d images" % len(items))


def export(path, w, cfg, meta_extra):
    tensors = {k: v.detach().cpu().float().numpy() for k, v in w.items()}
    meta = {"frcnn.config": json.dumps(cfg)}
    meta.update(meta_extra)
    st.save(path, tensors, meta, dtype="F32")
    return tensors, meta


def eval_test_split(model_path, root, res_dir, config, threads, limit, meta, log):
    """Runs the reference (config: None = the file's own) over the test split under root (its
    first `limit` images if limit), prints the AP table and records the mAPs in meta as
    "frcnn.ref_map07" / "frcnn.ref_map10" / "frcnn.ref_eval". Returns (scores, images run)."""
    classes, names = demo_eval.run_reference(model_path, root, "test", res_dir, config,
                                             threads=threads, limit=limit, log=log)
    res = demo_eval.score(root, "test", res_dir, classes, names if limit else None, log=log)
    demo_eval.print_table(res, classes, log=log)
    meta["frcnn.ref_map07"] = "%.6f" % res["07"]["mAP"]
    meta["frcnn.ref_map10"] = "%.6f" % res["10"]["mAP"]
    meta["frcnn.ref_eval"] = "test split, %d images" % len(names)
    return res, len(names)


def model_base(path):
    """A model's path without .safetensors: its log and reference results sit beside it."""
    return path[: -len(".safetensors")] if path.endswith(".safetensors") else path


def load_init(path, a, log):
    """--init: the tensors, config and training history of a model train.py wrote. Returns
    (weights, config, iterations, minutes, description); exits on a file that does not fit."""
    try:
        tensors, meta = st.load(path)
        cfg = json.loads(meta["frcnn.config"])
        div = int(meta.get("frcnn.width_div", "0"))
        iters = int(meta.get("frcnn.iters", "0"))
        minutes = float(meta.get("frcnn.train_minutes", "0"))
    except (OSError, ValueError, KeyError) as e:
        sys.exit("train: --init %s: not a model train.py wrote (%s)" % (path, e))
    if cfg.get("classes") != list(shapes.CLASSES) or div < 1:
        sys.exit("train: --init %s: classes %s, width-div %d; expected %s and a width-div"
                 % (path, cfg.get("classes"), div, shapes.CLASSES))
    ref = make_weights.init_tensors(cfg, div, torch.Generator().manual_seed(0))
    bad = sorted(set(ref) ^ set(tensors)) or [k for k in ref if tuple(ref[k].shape) != tensors[k].shape]
    if bad:
        sys.exit("train: --init %s: tensors do not match a width-div %d model (%s...)"
                 % (path, div, ", ".join(bad[:3])))
    if div != a.width_div:
        log("train: --init: the model's own width-div %d is kept" % div)
        a.width_div = div
    for k in ("min_size", "max_size"):
        v = getattr(a, k)
        if v is not None and v != cfg["input"][k]:
            log("train: --init: input %s %d -> %d" % (k, cfg["input"][k], v))
            cfg["input"][k] = v
    w = {k: torch.from_numpy(v.astype(np.float32)) for k, v in tensors.items()}
    desc = "%s (%d iterations, %.1f min, reference VOC07 mAP %s)" % (
        os.path.basename(path), iters, minutes, meta.get("frcnn.ref_map07", "?"))
    log("train: continuing from " + desc)
    return w, cfg, iters, minutes, desc


def lr_at(a, it, elapsed):
    prog = it / float(a.iters)
    if a.max_minutes > 0:
        prog = max(prog, elapsed / (60.0 * a.max_minutes))
    prog = min(prog, 1.0)
    if it < a.warmup:
        f = a.warmup_factor + (1 - a.warmup_factor) * it / float(a.warmup)
    else:
        f = 1.0
    return a.lr * f * 0.5 * (1.0 + math.cos(math.pi * prog)), prog


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.split("\n")[2:]))
    ap.add_argument("--out", default=os.path.join(HERE, "..", "models", "demo.safetensors"))
    ap.add_argument("--data", default=os.path.join(HERE, "..", "build", "shapes"),
                    help="VOCdevkit root for the shapes dataset (generated if missing)")
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--n-val", type=int, default=50)
    ap.add_argument("--n-test", type=int, default=200)
    ap.add_argument("--size", type=shapes.parse_size, default=(320, 240))
    ap.add_argument("--width-div", type=int, default=8, help="channel divisor (make_weights.py)")
    ap.add_argument("--min-size", type=int, default=None,
                    help="test-time input min_size in the config (default 256; with --init: the "
                         "model's own unless given)")
    ap.add_argument("--max-size", type=int, default=None,
                    help="test-time input max_size (default 384; with --init: the model's own)")
    ap.add_argument("--train-min-sizes", type=str, default="",
                    help="comma-separated min_size choices, one drawn per iteration (detectron2 "
                         "INPUT.MIN_SIZE_TRAIN, sampling 'choice'; default: the config's min_size)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iters", type=int, default=1500)
    ap.add_argument("--max-minutes", type=float, default=30.0,
                    help="training time budget (0 = none); the schedule follows it")
    ap.add_argument("--batch", type=int, default=2, help="images per iteration")
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--warmup-factor", type=float, default=0.001)
    ap.add_argument("--clip", type=float, default=10.0, help="gradient norm clip (0 = off)")
    ap.add_argument("--rois-per-image", type=int, default=64,
                    help="RoIs sampled per image for the box head (detectron2: 512)")
    ap.add_argument("--train-pre-nms", type=int, default=2000)
    ap.add_argument("--train-post-nms", type=int, default=500)
    ap.add_argument("--calib-images", type=int, default=8)
    ap.add_argument("--residual-gamma", type=float, default=0.0,
                    help="initial weight of each residual branch's last BN (0: zero-init residual)")
    ap.add_argument("--bn", choices=("frozen", "batch"), default="batch",
                    help="frozen: FrozenBN with the calibrated statistics (trains conv and BN "
                         "affine); batch: batch statistics while training, then re-estimated")
    ap.add_argument("--bn-images", type=int, default=64,
                    help="images for re-estimating the BN statistics (--bn batch)")
    ap.add_argument("--init", metavar="SAFETENSORS",
                    help="start from this model (one train.py wrote) instead of fresh weights: "
                         "its config, width and BN statistics are kept (continued training)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--no-eval", action="store_true", help="skip the test-split evaluation")
    ap.add_argument("--eval-limit", type=int, default=0, help="evaluate on the first N test images")
    a = ap.parse_args(argv)
    if a.iters < 1 or a.batch < 1 or a.rois_per_image < 4 or a.width_div < 1:
        ap.error("--iters, --batch, --width-div must be >= 1 and --rois-per-image >= 4")
    try:
        a.train_min_sizes = [int(v) for v in a.train_min_sizes.split(",") if v.strip()]
    except ValueError:
        ap.error("--train-min-sizes: comma-separated integers")
    for v in a.train_min_sizes + [x for x in (a.min_size, a.max_size) if x is not None]:
        if not 32 <= v <= 4096:
            ap.error("input sizes must be within 32..4096 (got %d)" % v)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    device = torch.device(a.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed image size: pick the fastest kernels once
    out = os.path.abspath(a.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    base = model_base(out)
    history = ""
    if a.init and os.path.isfile(model_base(a.init) + ".train.log"):
        with open(model_base(a.init) + ".train.log") as f:  # read before --out's log is opened: it may be the same file
            history = f.read()
    log = Log(base + ".train.log", history)  # a continued run's log starts with the log of the run it continues
    if a.init:
        log("train: ---- continued from %s ----" % a.init)
    log("train: torch %s, torchvision %s, device %s, threads %d" % (
        torch.__version__, torchvision.__version__, device, torch.get_num_threads()))
    log("train: args " + " ".join("%s=%s" % kv for kv in sorted(vars(a).items())))

    root = shapes.generate(a.data, a.data_seed, a.n_train, a.n_val, a.n_test, a.size, force=False, log=log)
    init = None
    if a.init:
        init = load_init(a.init, a, log)
        cfg = init[1]
    else:
        cfg = json.loads(json.dumps(DEMO_CONFIG))
        cfg["input"]["min_size"] = a.min_size if a.min_size is not None else 256
        cfg["input"]["max_size"] = a.max_size if a.max_size is not None else 384
    cfg = model.normalize_config(cfg)
    classes = cfg["classes"]
    train = load_split(root, "trainval", classes)
    if not train:
        sys.exit("train: no training images (--n-train 0?)")
    log("train: %d training images, %d objects" % (len(train), sum(len(t[3]) for t in train)))

    gen = torch.Generator().manual_seed(a.seed)
    order = torch.randperm(len(train), generator=gen).tolist()
    if init is not None:
        w = init[0]
    else:
        w = init_weights(cfg, a.width_div, a.seed, [train[i] for i in order[: a.calib_images]], log,
                         a.residual_gamma)
    nparam = sum(v.numel() for v in w.values())
    log("train: %d tensors, %d values (%.1f MB as F32), width-div %d"
        % (len(w), nparam, nparam * 4 / 1e6, a.width_div))
    wd, nowd = [], []
    for k in list(w.keys()):
        v = w[k].to(device)
        if k.endswith(".running_mean") or k.endswith(".running_var"):
            w[k] = v
            continue
        v = v.detach().clone().requires_grad_(True)
        w[k] = v
        (nowd if (".norm." in k or k.endswith(".bias")) else wd).append(v)
    det = TrainDetector({}, cfg)
    det.w = w
    det.bn_mode = a.bn
    opt = torch.optim.SGD([{"params": wd, "weight_decay": a.weight_decay},
                           {"params": nowd, "weight_decay": 0.0}], lr=a.lr, momentum=a.momentum)
    anchors_cache = {}
    t0 = time.time()
    hist = {}
    it = 0
    epoch_pos = a.calib_images  # the shuffled order continues after the calibration images
    stopped = "iterations"
    try:
        while it < a.iters:
            elapsed = time.time() - t0
            lr, prog = lr_at(a, it, elapsed)
            if prog >= 1.0:
                stopped = "time budget"
                break
            for g in opt.param_groups:
                g["lr"] = lr
            batch = []
            test_min = cfg["input"]["min_size"]
            if a.train_min_sizes:  # one size per iteration: the batch is one tensor
                pick = int(torch.randint(len(a.train_min_sizes), (1,), generator=gen).item())
                det.cfg["input"]["min_size"] = a.train_min_sizes[pick]
            for _ in range(a.batch):
                if epoch_pos >= len(order):
                    order = torch.randperm(len(train), generator=gen).tolist()
                    epoch_pos = 0
                item = train[order[epoch_pos]]
                epoch_pos += 1
                flip = bool(torch.rand(1, generator=gen).item() < 0.5)
                batch.append(load_example(det, item, flip))
            det.cfg["input"]["min_size"] = test_min
            ls = losses(det, batch, anchors_cache, a, gen, device)
            total = ls["rpn_cls"] + ls["rpn_loc"] + ls["cls"] + ls["box"]
            if not torch.isfinite(total):
                raise RuntimeError("loss is not finite at iteration %d: %s"
                                   % (it, {k: float(v) for k, v in ls.items()}))
            opt.zero_grad()
            total.backward()
            gnorm = 0.0
            if a.clip > 0:
                gnorm = float(torch.nn.utils.clip_grad_norm_(wd + nowd, a.clip))
            opt.step()
            it += 1
            for k, v in list(ls.items()) + [("total", total), ("gnorm", torch.tensor(gnorm))]:
                hist.setdefault(k, []).append(float(v))
            if it % a.log_every == 0 or it == a.iters or it == 1:
                n = min(a.log_every, len(hist["total"]))
                el = time.time() - t0
                med = {k: float(np.median(v[-n:])) for k, v in hist.items()}
                log("iter %5d  lr %.5f  total %.3f  rpn_cls %.3f  rpn_loc %.3f  cls %.3f  box %.3f  fg %.2f  "
                    "gnorm %.2f  %.2f s/it  %.1f min" % (
                        it, lr, med["total"], med["rpn_cls"], med["rpn_loc"], med["cls"], med["box"],
                        med["fg"], med["gnorm"], el / it, el / 60))
    except KeyboardInterrupt:
        stopped = "interrupt"
    if a.bn == "batch":
        precise_bn(det, [train[i] for i in order[: a.bn_images]], a, gen, device, log)
    minutes = (time.time() - t0) / 60.0
    log("train: stopped by %s after %d iterations, %.1f min (%.2f s/iter)"
        % (stopped, it, minutes, minutes * 60 / max(it, 1)))
    meta = {
        "frcnn.generator": "tools/train.py (trained on tools/shapes.py data)",
        "frcnn.seed": str(a.seed),
        "frcnn.width_div": str(a.width_div),
        "frcnn.iters": str(it + (init[2] if init else 0)),
        "frcnn.train_minutes": "%.1f" % (minutes + (init[3] if init else 0.0)),
        "frcnn.dataset": json.dumps(shapes.params_of(argparse.Namespace(
            seed=a.data_seed, n_train=a.n_train, n_val=a.n_val, n_test=a.n_test, size=a.size,
            quality=90))),
    }
    if init is not None:
        meta["frcnn.init"] = init[4]
    export(out, w, cfg, meta)
    log("train: wrote %s (%.2f MB)" % (out, os.path.getsize(out) / 1e6))
    if a.no_eval or a.n_test == 0:
        return 0
    res, n = eval_test_split(out, root, base + ".ref_results", None, a.threads, a.eval_limit, meta, log)
    export(out, w, cfg, meta)
    log("train: reference VOC07 mAP on the test split (%d images): %.4f" % (n, res["07"]["mAP"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
