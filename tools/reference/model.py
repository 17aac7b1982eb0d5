"""model.py - PyTorch reference of the Faster R-CNN ResNet-C4 detector the C engine must match.

Two families, selected by the configuration (configs/*.json or the safetensors metadata key
"frcnn.config"; schema in src/core/config.h, semantics in shared/docs/semantics.md A and B):
  - detectron2 R50/R101/R152-C4 (COCO-Detection/faster_rcnn_R_101_C4_3x and friends):
    PIL bilinear resize, float anchors, sigmoid objectness, top-k -> clip -> NMS proposals,
    RoIAlignV2, background last, per-class batched_nms, rescale to the original image.
  - py-faster-rcnn / tf-faster-rcnn res101: mean subtraction then cv2 INTER_LINEAR resize,
    rounded +1 anchors, softmax2 objectness, clip -> min size -> top-k -> NMS (+1 areas),
    RoIPool, background first, boxes decoded in the original image, NMS 0.3 per class,
    100 per image over all classes.
Every knob the config has is honoured; the family decides the order of the RPN steps and the
final post-processing, box_plus_one decides the +1 pixel convention.

Weights use detectron2 tensor names (backbone.stem.conv1.weight, ...norm.running_var,
backbone.res4.22.conv3.weight, proposal_generator.rpn_head.*, roi_heads.res5.*,
roi_heads.box_predictor.*). Layer widths come from the tensor shapes. Layout is NCHW inside
(PyTorch); callers that write fixtures permute to NHWC.

The numbers follow the reference projects' own source: detectron2 (modeling/backbone/resnet.py,
anchor_generator.py, proposal_generator/{rpn,proposal_utils}.py, box_regression.py,
roi_heads/{roi_heads,fast_rcnn}.py, postprocessing.py, data/transforms/transform.py) and
py-faster-rcnn (lib/rpn/{generate_anchors,proposal_layer}.py, lib/fast_rcnn/{bbox_transform,
test}.py, lib/utils/blob.py, OpenCV's resize for INTER_LINEAR on float images).
"""
import copy
import json
import math

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image, ImageOps

import st

torch.set_num_threads(2)

BLOCKS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}
DEFAULT_CLAMP = math.log(1000.0 / 16)  # detectron2 box_regression._DEFAULT_SCALE_CLAMP


# ----------------------------------------------------------------------------------------------
# Configuration


def normalize_config(cfg):
    """Returns a deep copy of a config dict with the documented defaults filled in (the same
    defaults src/core/config.c applies) and the enumerations checked."""
    c = copy.deepcopy(cfg)
    for sec in ("input", "backbone", "anchors", "rpn", "roi", "head"):
        if not isinstance(c.get(sec), dict):
            raise ValueError("config: missing section %r" % sec)
    c["input"].setdefault("exif", True)
    c["backbone"].setdefault("bn_eps", 1e-5)
    c["backbone"].setdefault("res5_stride", 2)
    c["anchors"].setdefault("offset", 0.0)
    c["roi"].setdefault("sampling_ratio", 0)
    c["head"].setdefault("class_agnostic", False)
    c["head"].setdefault("box_includes_background", False)
    c.setdefault("box_plus_one", False)
    c.setdefault("bbox_clamp", DEFAULT_CLAMP)
    checks = [
        (c["family"], ("detectron2", "py-faster-rcnn"), "family"),
        (c["input"]["format"], ("BGR", "RGB"), "input.format"),
        (c["input"]["resize"], ("detectron2", "py-faster-rcnn"), "input.resize"),
        (c["anchors"]["style"], ("detectron2", "py-faster-rcnn"), "anchors.style"),
        (c["rpn"]["objectness"], ("sigmoid", "softmax2"), "rpn.objectness"),
        (c["roi"]["op"], ("align", "pool"), "roi.op"),
        (c["head"]["background"], ("last", "first"), "head.background"),
    ]
    for v, allowed, key in checks:
        if v not in allowed:
            raise ValueError("config: %s: unknown value %r" % (key, v))
    if c["backbone"]["depth"] not in BLOCKS:
        raise ValueError("config: backbone.depth must be 50, 101 or 152")
    return c


def load_config(path):
    with open(path) as f:
        return json.load(f)


# ----------------------------------------------------------------------------------------------
# Images and preprocessing


def load_image(path, exif=True):
    """Decodes an image file with PIL to uint8 RGB (H, W, 3), applying the EXIF orientation first
    when exif is set (detectron2 read_image / _apply_exif_orientation)."""
    im = Image.open(path)
    if exif:
        im = ImageOps.exif_transpose(im)
    return np.asarray(im.convert("RGB")).copy()


def detectron2_output_shape(h, w, short, max_size):
    """detectron2 ResizeShortestEdge.get_output_shape: (new_h, new_w, scale)."""
    size = short * 1.0
    s = size / min(h, w)
    if h < w:
        newh, neww = size, s * w
    else:
        newh, neww = s * h, size
    if max(newh, neww) > max_size:
        r = max_size * 1.0 / max(newh, neww)
        newh = newh * r
        neww = neww * r
        s = s * r
    return int(newh + 0.5), int(neww + 0.5), s


def pyfrcnn_scale(h, w, short, max_size):
    """py-faster-rcnn lib/fast_rcnn/test.py _get_image_blob: im_scale (a Python float)."""
    im_size_min, im_size_max = min(h, w), max(h, w)
    im_scale = float(short) / float(im_size_min)
    if np.round(im_scale * im_size_max) > max_size:
        im_scale = float(max_size) / float(im_size_max)
    return im_scale


def _cv_round(x):
    # saturate_cast<int>(double) = cvRound: round half to even (lrint)
    return int(np.rint(x))


def cv2_resize_linear(src, fx, fy):
    """cv2.resize(src, None, None, fx=fx, fy=fy, interpolation=cv2.INTER_LINEAR) for a float32
    (H, W, C) image, reimplemented from OpenCV's imgproc/src/resize.cpp (resizeGeneric_ with
    HResizeLinear / VResizeLinear, float coefficients): horizontal pass first, then vertical,
    in float32. An exact 2x downscale switches to INTER_AREA as OpenCV does."""
    src = np.ascontiguousarray(src, dtype=np.float32)
    H, W, C = src.shape
    dw, dh = _cv_round(W * fx), _cv_round(H * fy)
    if dw <= 0 or dh <= 0:
        raise ValueError("resize to an empty image")
    inv_x, inv_y = float(fx), float(fy)
    sx_, sy_ = 1.0 / inv_x, 1.0 / inv_y
    if sx_ == 2.0 and sy_ == 2.0:
        # OpenCV: INTER_LINEAR with scale exactly 2 in both axes becomes INTER_AREA, fast path
        # (ResizeAreaFast_Invoker): sum of the 2x2 block in row order, times 0.25; a block cut
        # by the image border is the mean of the pixels it has.
        out = np.zeros((dh, dw, C), np.float32)
        ih, iw = min(dh, H // 2), min(dw, W // 2)
        s = src[: 2 * ih, : 2 * iw]
        out[:ih, :iw] = (((s[0::2, 0::2] + s[0::2, 1::2]) + s[1::2, 0::2]) + s[1::2, 1::2]) * np.float32(0.25)
        for y in range(dh):
            for x in range(dw):
                if y < ih and x < iw:
                    continue
                acc = np.zeros(C, np.float32)
                n = 0
                for yy in (2 * y, 2 * y + 1):
                    for xx in (2 * x, 2 * x + 1):
                        if yy < H and xx < W:
                            acc = acc + src[yy, xx]
                            n += 1
                out[y, x] = acc / np.float32(n) if n else 0
        return out

    def coeffs(n_dst, n_src, scale, clamp_frac):
        d = np.arange(n_dst, dtype=np.float64)
        f = ((d + 0.5) * scale - 0.5).astype(np.float32)
        s = np.floor(f).astype(np.int64)
        f = (f - s.astype(np.float32)).astype(np.float32)
        if clamp_frac:  # horizontal: OpenCV sets fx = 0 at the borders
            lo = s < 0
            f[lo] = 0
            s[lo] = 0
            hi = s >= n_src - 1
            f[hi] = 0
            s[hi] = n_src - 1
        s0 = np.clip(s, 0, n_src - 1)
        s1 = np.clip(s + 1, 0, n_src - 1)
        return s0, s1, (np.float32(1) - f).astype(np.float32), f

    x0, x1, ax0, ax1 = coeffs(dw, W, sx_, True)
    y0, y1, by0, by1 = coeffs(dh, H, sy_, False)  # vertical: rows clipped, fy kept
    rows = src[:, x0, :] * ax0[None, :, None] + src[:, x1, :] * ax1[None, :, None]
    rows = rows.astype(np.float32)
    out = rows[y0] * by0[:, None, None] + rows[y1] * by1[:, None, None]
    return out.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Boxes


def decode(deltas, boxes, weights, clamp, plus_one):
    """detectron2 Box2BoxTransform.apply_deltas (plus_one=False) / py-faster-rcnn
    bbox_transform_inv (plus_one=True: widths x2 - x1 + 1). deltas (R, 4k), boxes (R, 4)."""
    deltas = deltas.float()
    boxes = boxes.to(deltas.dtype)
    one = 1.0 if plus_one else 0.0
    widths = boxes[:, 2] - boxes[:, 0] + one
    heights = boxes[:, 3] - boxes[:, 1] + one
    ctr_x = boxes[:, 0] + 0.5 * widths
    ctr_y = boxes[:, 1] + 0.5 * heights
    wx, wy, ww, wh = weights
    dx = deltas[:, 0::4] / wx
    dy = deltas[:, 1::4] / wy
    dw = deltas[:, 2::4] / ww
    dh = deltas[:, 3::4] / wh
    dw = torch.clamp(dw, max=clamp)
    dh = torch.clamp(dh, max=clamp)
    pcx = dx * widths[:, None] + ctr_x[:, None]
    pcy = dy * heights[:, None] + ctr_y[:, None]
    pw = torch.exp(dw) * widths[:, None]
    ph = torch.exp(dh) * heights[:, None]
    x1 = pcx - 0.5 * pw
    y1 = pcy - 0.5 * ph
    x2 = pcx + 0.5 * pw
    y2 = pcy + 0.5 * ph
    return torch.stack((x1, y1, x2, y2), dim=-1).reshape(deltas.shape)


def clip_boxes(boxes, h, w, plus_one):
    """detectron2 Boxes.clip: x in [0, w], y in [0, h]; py-faster-rcnn clip_boxes: [0, w-1]."""
    mx = w - 1 if plus_one else w
    my = h - 1 if plus_one else h
    b = boxes.reshape(-1, 4)
    x1 = b[:, 0].clamp(min=0, max=mx)
    y1 = b[:, 1].clamp(min=0, max=my)
    x2 = b[:, 2].clamp(min=0, max=mx)
    y2 = b[:, 3].clamp(min=0, max=my)
    return torch.stack((x1, y1, x2, y2), dim=-1).reshape(boxes.shape)


def stable_desc(scores):
    """Indices sorting scores descending, ties by lower index first: the tie rule of every sort
    here (torch.topk, torch.sort and numpy's quicksort, used by the references, leave the order of
    equal scores undefined; exact ties do occur by chance among thousands of float32 scores)."""
    return torch.from_numpy(np.argsort(-scores.numpy(), kind="stable"))


def topk_stable(scores, k):
    """(values, indices) of the k largest scores, ties by lower index first. Equal to torch.topk
    (detectron2's choice) except for the order of exactly equal scores, which torch.topk leaves
    undefined; fixing it makes the fixtures reproducible by another implementation."""
    idx = stable_desc(scores)[:k]
    return scores[idx], idx


def batched_nms(boxes, scores, idxs, thresh):
    """torchvision 0.14 ops.batched_nms, step by step: above 4000 coordinates (1000 boxes) one
    nms per class, the union then sorted by score (stable here, unstable there); otherwise the
    coordinate trick (class * (max coordinate + 1) added to the boxes in float32, then one nms),
    which rounds the coordinates of high class indices (shared/docs/semantics.md D).
    torchvision's nms itself sorts stably and suppresses when IoU > thresh (no +1)."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64)
    if boxes.numel() > 4000:
        keep_mask = torch.zeros_like(scores, dtype=torch.bool)
        for c in torch.unique(idxs):
            cur = torch.where(idxs == c)[0]
            keep_mask[cur[torchvision.ops.nms(boxes[cur], scores[cur], thresh)]] = True
        keep = torch.where(keep_mask)[0]
        return keep[stable_desc(scores[keep])]
    max_coordinate = boxes.max()
    offsets = idxs.to(boxes) * (max_coordinate + torch.tensor(1).to(boxes))
    return torchvision.ops.nms(boxes + offsets[:, None], scores, thresh)


def nms_plus_one(boxes, scores, thresh):
    """py-faster-rcnn nms (py_cpu_nms / gpu_nms): areas with +1, sort by score descending,
    suppress when IoU > thresh. float32. Returns kept indices into boxes, in score order."""
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64)
    order = stable_desc(scores)
    b = boxes[order]
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    n = b.shape[0]
    suppressed = torch.zeros(n, dtype=torch.bool)
    keep = []
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(i)
        if i + 1 == n:
            break
        xx1 = torch.maximum(x1[i], x1[i + 1:])
        yy1 = torch.maximum(y1[i], y1[i + 1:])
        xx2 = torch.minimum(x2[i], x2[i + 1:])
        yy2 = torch.minimum(y2[i], y2[i + 1:])
        ww = torch.clamp(xx2 - xx1 + 1, min=0.0)
        hh = torch.clamp(yy2 - yy1 + 1, min=0.0)
        inter = ww * hh
        ovr = inter / (areas[i] + areas[i + 1:] - inter)
        suppressed[i + 1:] |= ovr > thresh
    return order[torch.tensor(keep, dtype=torch.int64)]


def pyfrcnn_anchors(base_size, ratios, scales):
    """py-faster-rcnn generate_anchors: ratio outer, scale inner, rounded, +1 convention."""
    base = np.array([1, 1, base_size, base_size], dtype=np.float64) - 1

    def whctrs(a):
        w = a[2] - a[0] + 1
        h = a[3] - a[1] + 1
        return w, h, a[0] + 0.5 * (w - 1), a[1] + 0.5 * (h - 1)

    def mk(ws, hs, xc, yc):
        ws = ws[:, None]
        hs = hs[:, None]
        return np.hstack((xc - 0.5 * (ws - 1), yc - 0.5 * (hs - 1), xc + 0.5 * (ws - 1), yc + 0.5 * (hs - 1)))

    w, h, xc, yc = whctrs(base)
    size_ratios = (w * h) / np.asarray(ratios, dtype=np.float64)
    ws = np.round(np.sqrt(size_ratios))
    hs = np.round(ws * np.asarray(ratios, dtype=np.float64))
    ratio_anchors = mk(ws, hs, xc, yc)
    out = []
    for i in range(ratio_anchors.shape[0]):
        w, h, xc, yc = whctrs(ratio_anchors[i])
        out.append(mk(w * np.asarray(scales, np.float64), h * np.asarray(scales, np.float64), xc, yc))
    return np.vstack(out)


# ----------------------------------------------------------------------------------------------
# The detector


class Detector:
    """Holds weights (torch float32 tensors by detectron2 name) and a normalized config.

    Optional calibration hook: if self.calib is set, conv_bn() calls self.calib(norm_prefix, y)
    with each conv output before its FrozenBN (make_weights.py uses it to set BN statistics)."""

    def __init__(self, weights, cfg):
        self.cfg = normalize_config(cfg)
        self.w = {}
        for k, v in weights.items():
            if not isinstance(v, torch.Tensor):
                v = torch.from_numpy(np.ascontiguousarray(np.asarray(v, dtype=np.float32)))
            self.w[k] = v.float()
        self.calib = None
        self.blocks = BLOCKS[self.cfg["backbone"]["depth"]]
        self.K = len(self.cfg["classes"])

    @classmethod
    def load(cls, path, config=None):
        """Loads a safetensors file; the config comes from config (dict or JSON path) or from the
        file's "frcnn.config" metadata."""
        tensors, meta = st.load(path)
        if config is None:
            if "frcnn.config" not in meta:
                raise ValueError("%s: no frcnn.config metadata and no --config" % path)
            config = json.loads(meta["frcnn.config"])
        elif isinstance(config, str):
            config = load_config(config)
        return cls(tensors, config)

    def t(self, name):
        if name not in self.w:
            raise KeyError("missing tensor %s" % name)
        return self.w[name]

    @property
    def num_anchors(self):
        a = self.cfg["anchors"]
        return len(a["sizes"]) * len(a["ratios"])

    # -- preprocessing ---------------------------------------------------------------------
    def preprocess(self, img):
        """img: uint8 RGB (H, W, 3). Returns (x [1, 3, h, w] float32 in the config's channel
        order, info dict with orig_h, orig_w, h, w, scale)."""
        c = self.cfg["input"]
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError("preprocess wants uint8 (H, W, 3)")
        H0, W0 = img.shape[:2]
        im = img if c["format"] == "RGB" else img[:, :, ::-1]
        im = np.ascontiguousarray(im)
        mean = np.asarray(c["pixel_mean"], dtype=np.float64)
        std = np.asarray(c["pixel_std"], dtype=np.float64)
        if c["resize"] == "detectron2":
            # detectron2 ResizeShortestEdge + ResizeTransform.apply_image (PIL, uint8) then
            # GeneralizedRCNN.preprocess_image: (x - mean) / std in float32
            h, w, scale = detectron2_output_shape(H0, W0, c["min_size"], c["max_size"])
            pil = Image.fromarray(im).resize((w, h), Image.BILINEAR)
            r = np.asarray(pil)
            x = torch.as_tensor(r.astype("float32").transpose(2, 0, 1).copy())
            x = (x - torch.tensor(mean, dtype=torch.float32)[:, None, None]) / torch.tensor(
                std, dtype=torch.float32
            )[:, None, None]
        else:
            # py-faster-rcnn _get_image_blob: float32, im -= PIXEL_MEANS (computed in float64,
            # stored float32), cv2.resize(fx=fy=im_scale, INTER_LINEAR)
            scale = pyfrcnn_scale(H0, W0, c["min_size"], c["max_size"])
            f = im.astype(np.float32)
            f = ((f.astype(np.float64) - mean) / std).astype(np.float32)
            r = cv2_resize_linear(f, scale, scale)
            h, w = r.shape[:2]
            x = torch.from_numpy(r.transpose(2, 0, 1).copy())
        info = {"orig_h": H0, "orig_w": W0, "h": int(x.shape[1]), "w": int(x.shape[2]), "scale": scale}
        return x[None].contiguous(), info

    # -- backbone -------------------------------------------------------------------------
    def conv_bn(self, x, name, stride, padding):
        y = F.conv2d(x, self.t(name + ".weight"), self.w.get(name + ".bias"), stride, padding)
        n = name + ".norm"
        if self.calib is not None:
            self.calib(n, y)
        return F.batch_norm(
            y,
            self.t(n + ".running_mean"),
            self.t(n + ".running_var"),
            self.t(n + ".weight"),
            self.t(n + ".bias"),
            False,
            0.0,
            self.cfg["backbone"]["bn_eps"],
        )

    def bottleneck(self, x, name, stride):
        """detectron2 BottleneckBlock; stride in the 1x1 (stride_in_1x1) or in the 3x3."""
        s1, s3 = (stride, 1) if self.cfg["backbone"]["stride_in_1x1"] else (1, stride)
        out = F.relu(self.conv_bn(x, name + ".conv1", s1, 0))
        out = F.relu(self.conv_bn(out, name + ".conv2", s3, 1))
        out = self.conv_bn(out, name + ".conv3", 1, 0)
        if name + ".shortcut.weight" in self.w:
            sc = self.conv_bn(x, name + ".shortcut", stride, 0)
        else:
            sc = x
        return F.relu(out + sc)

    def stem(self, x):
        x = F.relu(self.conv_bn(x, "backbone.stem.conv1", 2, 3))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)

    def backbone(self, x):
        """Returns {"stem", "res2", "res3", "res4"} NCHW."""
        out = {}
        x = self.stem(x)
        out["stem"] = x
        for si, (stage, n) in enumerate(zip(("res2", "res3", "res4"), self.blocks[:3])):
            for b in range(n):
                x = self.bottleneck(x, "backbone.%s.%d" % (stage, b), 2 if (b == 0 and si > 0) else 1)
            out[stage] = x
        return out

    # -- RPN ------------------------------------------------------------------------------
    def rpn_head(self, res4):
        """Returns (scores [HWA] used for ranking: logits (sigmoid) or fg probabilities
        (softmax2), raw [HWA] logits or [HWA, 2] (bg, fg) logits, deltas [HWA, 4]), all in
        (H, W, A) order, A fastest."""
        p = "proposal_generator.rpn_head."
        t = F.relu(F.conv2d(res4, self.t(p + "conv.weight"), self.t(p + "conv.bias"), 1, 1))
        obj = F.conv2d(t, self.t(p + "objectness_logits.weight"), self.t(p + "objectness_logits.bias"))
        dl = F.conv2d(t, self.t(p + "anchor_deltas.weight"), self.t(p + "anchor_deltas.bias"))
        A = self.num_anchors
        _, _, H, W = dl.shape
        if dl.shape[1] != 4 * A:
            raise ValueError("anchor_deltas has %d outputs, want %d" % (dl.shape[1], 4 * A))
        deltas = dl.view(1, A, 4, H, W).permute(0, 3, 4, 1, 2).reshape(H * W * A, 4)
        if self.cfg["rpn"]["objectness"] == "sigmoid":
            if obj.shape[1] != A:
                raise ValueError("objectness_logits has %d outputs, want %d" % (obj.shape[1], A))
            raw = obj.permute(0, 2, 3, 1).reshape(-1)
            score = raw
        else:
            # py-faster-rcnn: channels [0, A) background, [A, 2A) foreground; softmax per pair
            if obj.shape[1] != 2 * A:
                raise ValueError("objectness_logits has %d outputs, want %d" % (obj.shape[1], 2 * A))
            bg = obj[:, :A].permute(0, 2, 3, 1).reshape(-1)
            fg = obj[:, A:].permute(0, 2, 3, 1).reshape(-1)
            raw = torch.stack((bg, fg), dim=1)
            score = F.softmax(raw, dim=1)[:, 1].contiguous()
        return score, raw, deltas

    def anchors(self, H, W):
        """All anchors [H*W*A, 4] for a feature map of H x W cells, (H, W, A) order."""
        a = self.cfg["anchors"]
        stride = a["stride"]
        if a["style"] == "detectron2":
            # DefaultAnchorGenerator.generate_cell_anchors: size outer, ratio inner
            cell = []
            for size in a["sizes"]:
                area = float(size) ** 2.0
                for ratio in a["ratios"]:
                    w = math.sqrt(area / ratio)
                    h = ratio * w
                    cell.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
            cell = torch.tensor(cell)
            off = a["offset"] * stride
            sx = torch.arange(off, W * stride, step=stride, dtype=torch.float32)
            sy = torch.arange(off, H * stride, step=stride, dtype=torch.float32)
            yy, xx = torch.meshgrid(sy, sx, indexing="ij")
            xx, yy = xx.reshape(-1), yy.reshape(-1)
            shifts = torch.stack((xx, yy, xx, yy), dim=1)
            return (shifts.view(-1, 1, 4) + cell.view(1, -1, 4)).reshape(-1, 4)
        scales = [s / float(stride) for s in a["sizes"]]
        cell = pyfrcnn_anchors(stride, a["ratios"], scales)
        sx = np.arange(0, W) * stride
        sy = np.arange(0, H) * stride
        sx, sy = np.meshgrid(sx, sy)
        shifts = np.vstack((sx.ravel(), sy.ravel(), sx.ravel(), sy.ravel())).transpose()
        anc = cell.reshape((1, -1, 4)) + shifts.reshape((1, -1, 4)).transpose((1, 0, 2))
        return torch.from_numpy(anc.reshape(-1, 4).astype(np.float32))

    def proposals(self, scores, deltas, anchors, info):
        """Returns (boxes [P, 4] in the resized image, scores [P]) in the reference's order."""
        r = self.cfg["rpn"]
        p1 = self.cfg["box_plus_one"]
        h, w = info["h"], info["w"]
        boxes = decode(deltas, anchors, r["box_weights"], self.cfg["bbox_clamp"], p1)
        if self.cfg["family"] == "detectron2":
            # find_top_rpn_proposals: top-k -> finite -> clip -> nonempty -> batched_nms -> keep
            k = min(scores.shape[0], r["pre_nms_topk"])
            top_s, top_i = topk_stable(scores, k)
            b = boxes[top_i]
            valid = torch.isfinite(b).all(dim=1) & torch.isfinite(top_s)
            b, top_s = b[valid], top_s[valid]
            b = clip_boxes(b, h, w, p1)
            one = 1.0 if p1 else 0.0
            ms = r["min_size"]
            keep = ((b[:, 2] - b[:, 0] + one) > ms) & ((b[:, 3] - b[:, 1] + one) > ms)
            b, top_s = b[keep], top_s[keep]
            if p1:
                keep = nms_plus_one(b, top_s, r["nms_thresh"])
            else:
                lvl = torch.zeros(b.shape[0], dtype=torch.int64)
                keep = batched_nms(b.float(), top_s, lvl, r["nms_thresh"])
            keep = keep[: r["post_nms_topk"]]
            return b[keep], top_s[keep]
        # py-faster-rcnn proposal_layer: clip -> min size (x im_scale) -> sort -> top-k -> NMS
        b = clip_boxes(boxes, h, w, p1)
        s = scores
        valid = torch.isfinite(b).all(dim=1) & torch.isfinite(s)
        b, s = b[valid], s[valid]
        one = 1.0 if p1 else 0.0
        ms = r["min_size"] * info["scale"]
        keep = ((b[:, 2] - b[:, 0] + one) >= ms) & ((b[:, 3] - b[:, 1] + one) >= ms)
        b, s = b[keep], s[keep]
        order = stable_desc(s)[: r["pre_nms_topk"]]
        b, s = b[order], s[order]
        if p1:
            keep = nms_plus_one(b, s, r["nms_thresh"])
        else:
            keep = torchvision.ops.nms(b, s, r["nms_thresh"])
        keep = keep[: r["post_nms_topk"]]
        return b[keep], s[keep]

    # -- RoI head -------------------------------------------------------------------------
    def roi_features(self, res4, boxes):
        """[P, C, S, S]: torchvision roi_align (detectron2 ROIAlignV2) or roi_pool."""
        r = self.cfg["roi"]
        rois = torch.cat([torch.zeros(boxes.shape[0], 1), boxes.float()], dim=1)
        S = r["output_size"]
        if r["op"] == "align":
            return torchvision.ops.roi_align(
                res4, rois, (S, S), r["spatial_scale"], r["sampling_ratio"], r["aligned"]
            )
        return torchvision.ops.roi_pool(res4, rois, (S, S), r["spatial_scale"])

    def res5(self, x):
        """roi_heads.res5 (3 bottlenecks, the first with res5_stride) then mean over H, W."""
        s = self.cfg["backbone"]["res5_stride"]
        for b in range(3):
            x = self.bottleneck(x, "roi_heads.res5.%d" % b, s if b == 0 else 1)
        return x.mean(dim=[2, 3])

    def pooled_features(self, res4, boxes, chunk=100):
        """RoI features then res5 and the mean, [P, C5], computed 100 RoIs at a time."""
        if boxes.shape[0] == 0:
            return torch.zeros(0, self.t("roi_heads.res5.2.conv3.weight").shape[0])
        return torch.cat(
            [self.res5(self.roi_features(res4, boxes[i : i + chunk])) for i in range(0, boxes.shape[0], chunk)]
        )

    def predictor(self, pooled):
        """(cls_logits [P, K+1], box_deltas [P, 4R])."""
        p = "roi_heads.box_predictor."
        cls = F.linear(pooled, self.t(p + "cls_score.weight"), self.t(p + "cls_score.bias"))
        box = F.linear(pooled, self.t(p + "bbox_pred.weight"), self.t(p + "bbox_pred.bias"))
        return cls, box

    # -- final detections -----------------------------------------------------------------
    def _fg_columns(self):
        """(score column per foreground class, box row per foreground class)."""
        hd = self.cfg["head"]
        K = self.K
        first = hd["background"] == "first"
        score_col = [c + 1 if first else c for c in range(K)]
        if hd["class_agnostic"]:
            row = (1 if first else 0) if hd["box_includes_background"] else 0
            box_row = [row] * K
        elif hd["box_includes_background"]:
            box_row = list(score_col)
        else:
            box_row = list(range(K))
        return score_col, box_row

    def postprocess(self, proposals, cls_logits, box_deltas, info):
        """Returns (boxes [D, 4] in original image pixels, scores [D], classes [D] int64),
        sorted by score descending."""
        hd = self.cfg["head"]
        p1 = self.cfg["box_plus_one"]
        K = self.K
        score_col, box_row = self._fg_columns()
        probs = F.softmax(cls_logits, dim=-1)
        R = box_deltas.shape[1] // 4
        if self.cfg["family"] == "py-faster-rcnn":
            return self._post_pyfrcnn(proposals, probs, box_deltas, info, score_col, box_row)
        # detectron2 fast_rcnn_inference_single_image + detector_postprocess
        h, w = info["h"], info["w"]
        boxes = decode(box_deltas, proposals, hd["box_weights"], self.cfg["bbox_clamp"], p1)
        valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(probs).all(dim=1)
        boxes, probs = boxes[valid], probs[valid]
        scores = probs[:, score_col]
        boxes = clip_boxes(boxes.reshape(-1, 4), h, w, p1).view(-1, R, 4)
        boxes = boxes[:, box_row, :]  # (P, K, 4)
        mask = scores > hd["score_thresh"]
        inds = mask.nonzero()
        b = boxes[mask]
        s = scores[mask]
        cls = inds[:, 1]
        if p1:
            keep = self._per_class_nms_plus_one(b, s, cls, hd["nms_thresh"])
        else:
            keep = batched_nms(b.float(), s, cls, hd["nms_thresh"])
        keep = keep[: hd["detections_per_image"]]
        b, s, cls = b[keep], s[keep], cls[keep]
        # detector_postprocess: scale to the original size, clip, drop empty boxes
        H0, W0 = info["orig_h"], info["orig_w"]
        sx, sy = W0 / w, H0 / h
        b = b.clone()
        b[:, 0::2] *= sx
        b[:, 1::2] *= sy
        b = clip_boxes(b, H0, W0, p1)
        one = 1.0 if p1 else 0.0
        ne = ((b[:, 2] - b[:, 0] + one) > 0) & ((b[:, 3] - b[:, 1] + one) > 0)
        return b[ne], s[ne], cls[ne]

    @staticmethod
    def _per_class_nms_plus_one(b, s, cls, thr):
        keeps = []
        for c in torch.unique(cls).tolist():
            idx = (cls == c).nonzero().view(-1)
            keeps.append(idx[nms_plus_one(b[idx], s[idx], thr)])
        if not keeps:
            return torch.zeros(0, dtype=torch.int64)
        keep = torch.cat(keeps)
        return keep[stable_desc(s[keep])]

    def _post_pyfrcnn(self, proposals, probs, box_deltas, info, score_col, box_row):
        """py-faster-rcnn im_detect + test_net: decode in the original image (rois / im_scale),
        clip to [0, W0-1] x [0, H0-1] (+1 convention), per class score > thresh then NMS, then
        keep the max_per_image best over all classes (>= the 100th score)."""
        hd = self.cfg["head"]
        p1 = self.cfg["box_plus_one"]
        H0, W0 = info["orig_h"], info["orig_w"]
        rois = proposals / info["scale"]
        boxes = decode(box_deltas, rois, hd["box_weights"], self.cfg["bbox_clamp"], p1)
        boxes = clip_boxes(boxes, H0, W0, p1)
        R = box_deltas.shape[1] // 4
        boxes = boxes.view(-1, R, 4)
        db, ds, dc = [], [], []
        for c in range(self.K):
            sc = probs[:, score_col[c]]
            inds = (sc > hd["score_thresh"]).nonzero().view(-1)
            cb, cs = boxes[inds, box_row[c]], sc[inds]
            if p1:
                keep = nms_plus_one(cb, cs, hd["nms_thresh"])
            else:
                keep = torchvision.ops.nms(cb, cs, hd["nms_thresh"])
            db.append(cb[keep])
            ds.append(cs[keep])
            dc.append(torch.full((keep.shape[0],), c, dtype=torch.int64))
        b, s, cl = torch.cat(db), torch.cat(ds), torch.cat(dc)
        mx = hd["detections_per_image"]
        if s.shape[0] > mx:
            thr = torch.sort(s).values[-mx]
            k = s >= thr
            b, s, cl = b[k], s[k], cl[k]
        order = stable_desc(s)
        return b[order], s[order], cl[order]

    # -- everything -----------------------------------------------------------------------
    def run(self, img, roi_keep=None):
        """Full inference on a uint8 RGB image; returns a dict of every intermediate (torch
        tensors, NCHW where spatial) plus "info". roi_keep: number of leading proposals whose
        RoI features are kept in the result (the rest are computed and dropped)."""
        with torch.no_grad():
            x, info = self.preprocess(img)
            feats = self.backbone(x)
            res4 = feats["res4"]
            score, raw, deltas = self.rpn_head(res4)
            H, W = res4.shape[2:]
            anc = self.anchors(H, W)
            props, pscore = self.proposals(score, deltas, anc, info)
            out = {"info": info, "input": x, "rpn_scores": score, "rpn_raw": raw, "rpn_deltas": deltas}
            out.update(feats)
            out["anchors"] = anc
            out["proposals"] = props
            out["proposal_scores"] = pscore
            chunks, pooled = [], []
            for i in range(0, props.shape[0], 100):
                f = self.roi_features(res4, props[i : i + 100])
                if roi_keep and i < roi_keep:
                    chunks.append(f[: roi_keep - i])
                pooled.append(self.res5(f))
            if pooled:
                pooled = torch.cat(pooled)
            else:
                pooled = torch.zeros(0, self.t("roi_heads.res5.2.conv3.weight").shape[0])
            if roi_keep:
                out["roi_features"] = torch.cat(chunks) if chunks else torch.zeros(0)
            out["pooled"] = pooled
            cls, box = self.predictor(pooled)
            out["cls_logits"], out["box_deltas"] = cls, box
            db, ds, dc = self.postprocess(props, cls, box, info)
            out["det_boxes"], out["det_scores"], out["det_classes"] = db, ds, dc
        return out
