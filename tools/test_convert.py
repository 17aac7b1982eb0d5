#!/usr/bin/python3
"""test_convert.py - tests of tools/convert.py and tools/weights.sh (run by tests/test_convert.c).

  test_convert.py [--out DIR]

Synthetic checkpoints are written in each layout at 1/16 width (real key names, real module
classes where the original project uses torchvision's) and converted. Checks:
  (a) names: the converted file holds exactly the tensors tools/reference/model.py reads (a
      recording weight dict during a forward pass on a small random image), with the shapes
      of the original at every width, and a full-size (ResNet-101) mapping check on zero-stride
      arrays;
  (b) numerics: small PyTorch modules with the ORIGINAL project's semantics (torchvision
      Bottleneck with the stride in the 3x3 and 0..1 RGB normalisation; ruotianluo's strides
      moved to the 1x1 and res5 stride 1; jwyang's caffe bottleneck, 2A blocked softmax,
      RoIAlign 7x7) against model.py on the converted file: backbone res4, RPN scores and
      deltas per anchor (geometry-matched for torchvision), res5 + predictor on RoIs;
  (c) converted files go to DIR for the C side (fr_model_load, `frcnn info`, fr_detect);
  errors: unknown layout keys, missing and mis-shaped tensors, forbidden pickle globals in
      .pkl / zip .pth / legacy .pth (nothing runs), truncated files, bad --classes, exit codes;
  weights.sh: offline and checksum-mismatch failures; download (file://), verify, convert,
      reuse of the download, a pinned sha256.
Prints "ok NAME" or "FAIL NAME: why" per check and a last line "checks: N ok, M failed".
Exit 0 only if every check passed. Deterministic (fixed seeds); a few seconds on 2 cores.
"""
import argparse
import contextlib
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "reference"))
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402
from torchvision.models.detection.anchor_utils import AnchorGenerator  # noqa: E402
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor  # noqa: E402
from torchvision.models.detection.rpn import RPNHead  # noqa: E402
from torchvision.models.resnet import Bottleneck as TVBottleneck  # noqa: E402

import convert  # noqa: E402
import model  # noqa: E402
import st  # noqa: E402

torch.set_num_threads(2)
DIV = 16  # width divisor: stem 4, res2 4/16, res3 8/32, res4 16/64, res5 32/128
BLOCKS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}
PASSED, FAILED = [], []


def check(name, cond, why=""):
    if cond:
        PASSED.append(name)
        print("ok %s" % name)
    else:
        FAILED.append(name)
        print("FAIL %s: %s" % (name, why))
    sys.stdout.flush()
    return bool(cond)


def close(name, got, want, rel=1e-4):
    """Checks max |got - want| <= rel * max(1, max |want|)."""
    got = torch.as_tensor(got).float()
    want = torch.as_tensor(want).float()
    if got.shape != want.shape:
        return check(name, False, "shape %s, want %s" % (list(got.shape), list(want.shape)))
    d = (got - want).abs().max().item() if want.numel() else 0.0
    lim = rel * max(1.0, want.abs().max().item() if want.numel() else 0.0)
    return check(name, d <= lim, "max diff %.3g > %.3g" % (d, lim))


# ----------------------------------------------------------------------------------------------
# Modules with the original projects' semantics (narrow)


def randomize(module, gen):
    """Well-behaved random weights: He convs, jittered BN statistics, small residual branches."""
    with torch.no_grad():
        for name, m in module.named_modules():
            if isinstance(m, nn.Conv2d):
                fan = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
            elif isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(1 + 0.1 * torch.randn(c, generator=gen))
                if name.endswith("bn3"):
                    m.weight.mul_(0.2)
                m.bias.copy_(0.1 * torch.randn(c, generator=gen))
                m.running_mean.copy_(0.2 * torch.randn(c, generator=gen))
                m.running_var.copy_(torch.exp(0.3 * torch.randn(c, generator=gen)) * 2)
                m.num_batches_tracked.fill_(1000)
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) / m.in_features ** 0.5)
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
    module.eval()
    return module


def tv_layer(inplanes, planes, blocks, stride):
    """torchvision ResNet._make_layer with torchvision's own Bottleneck (stride in the 3x3)."""
    down = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4))
    layers = [TVBottleneck(inplanes, planes, stride, down)]
    layers += [TVBottleneck(planes * 4, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class TVResNet(nn.Module):
    """torchvision.models.resnet.ResNet's modules and names (conv1, bn1, maxpool, layer1..4) at
    1/DIV width."""

    def __init__(self, depth, with_layer4=True):
        super().__init__()
        w = 64 // DIV
        b = BLOCKS[depth]
        self.conv1 = nn.Conv2d(3, w, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = tv_layer(w, w, b[0], 1)
        self.layer2 = tv_layer(4 * w, 2 * w, b[1], 2)
        self.layer3 = tv_layer(8 * w, 4 * w, b[2], 2)
        if with_layer4:
            self.layer4 = tv_layer(16 * w, 8 * w, 3, 2)

    def res4(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer3(self.layer2(self.layer1(x)))


class TVC4(nn.Module):
    """A C4 detector from torchvision parts: backbone.body (conv1..layer3), torchvision RPNHead
    and FastRCNNPredictor, layer4 as roi_heads.box_head.layer4."""

    def __init__(self, depth, K, A):
        super().__init__()
        w = 64 // DIV
        self.backbone = nn.Module()
        self.backbone.body = TVResNet(depth, with_layer4=False)
        self.rpn = nn.Module()
        self.rpn.head = RPNHead(16 * w, A)
        self.roi_heads = nn.Module()
        self.roi_heads.box_head = nn.Module()
        self.roi_heads.box_head.layer4 = tv_layer(16 * w, 8 * w, 3, 2)
        self.roi_heads.box_predictor = FastRCNNPredictor(32 * w, K + 1)


class RLNet(nn.Module):
    """ruotianluo/pytorch-faster-rcnn resnetv1 + Network: torchvision ResNet with the stride of
    layer2/layer3's first block moved to conv1 and layer4's first block at stride 1 (as its
    resnet_v1.py does), RPN conv 512 (cfg.RPN_CHANNELS) wide, 2A logits."""

    def __init__(self, depth, K, A):
        super().__init__()
        self.resnet = TVResNet(depth)
        for i in (2, 3):
            getattr(self.resnet, "layer%d" % i)[0].conv1.stride = (2, 2)
            getattr(self.resnet, "layer%d" % i)[0].conv2.stride = (1, 1)
        self.resnet.layer4[0].conv2.stride = (1, 1)
        self.resnet.layer4[0].downsample[0].stride = (1, 1)
        w = 64 // DIV
        hid = 512 // DIV
        self.rpn_net = nn.Conv2d(16 * w, hid, 3, padding=1)
        self.rpn_cls_score_net = nn.Conv2d(hid, 2 * A, 1)
        self.rpn_bbox_pred_net = nn.Conv2d(hid, 4 * A, 1)
        self.cls_score_net = nn.Linear(32 * w, K + 1)
        self.bbox_pred_net = nn.Linear(32 * w, 4 * (K + 1))


class JWBottleneck(nn.Module):
    """jwyang/faster-rcnn.pytorch resnet.py Bottleneck: caffe ResNet, stride in conv1 (1x1)."""

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, stride, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (self.downsample(x) if self.downsample is not None else x))


def jw_layer(inplanes, planes, blocks, stride):
    down = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4))
    return nn.Sequential(JWBottleneck(inplanes, planes, stride, down),
                         *[JWBottleneck(planes * 4, planes) for _ in range(blocks - 1)])


class JWNet(nn.Module):
    """jwyang/faster-rcnn.pytorch resnet(_fasterRCNN): RCNN_base = conv1, bn1, relu, caffe max pool
    (3x3/2, pad 0, ceil_mode), layer1..3; RCNN_top = layer4 (stride 2); RCNN_rpn 512 wide."""

    def __init__(self, depth, K, A, agnostic=False):
        super().__init__()
        w = 64 // DIV
        b = BLOCKS[depth]
        self.RCNN_base = nn.Sequential(
            nn.Conv2d(3, w, 7, 2, 3, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 0, ceil_mode=True),
            jw_layer(w, w, b[0], 1), jw_layer(4 * w, 2 * w, b[1], 2), jw_layer(8 * w, 4 * w, b[2], 2))
        self.RCNN_top = nn.Sequential(jw_layer(16 * w, 8 * w, 3, 2))
        hid = 512 // DIV
        self.RCNN_rpn = nn.Module()
        self.RCNN_rpn.RPN_Conv = nn.Conv2d(16 * w, hid, 3, 1, 1)
        self.RCNN_rpn.RPN_cls_score = nn.Conv2d(hid, 2 * A, 1)
        self.RCNN_rpn.RPN_bbox_pred = nn.Conv2d(hid, 4 * A, 1)
        self.RCNN_cls_score = nn.Linear(32 * w, K + 1)
        self.RCNN_bbox_pred = nn.Linear(32 * w, 4 if agnostic else 4 * (K + 1))


def d2_tensors(depth, K, A, gen):
    """Random detectron2-named arrays (model zoo layout) at 1/DIV width."""
    w = 64 // DIV
    t = {}

    def conv(p, cout, cin, k):
        t[p + ".weight"] = torch.randn(cout, cin, k, k, generator=gen) * (2.0 / (cin * k * k)) ** 0.5
        t[p + ".norm.weight"] = 1 + 0.1 * torch.randn(cout, generator=gen)
        t[p + ".norm.bias"] = 0.1 * torch.randn(cout, generator=gen)
        t[p + ".norm.running_mean"] = 0.1 * torch.randn(cout, generator=gen)
        t[p + ".norm.running_var"] = torch.exp(0.2 * torch.randn(cout, generator=gen))

    conv("backbone.stem.conv1", w, 3, 7)
    cin = w
    stages = [("backbone.res%d" % (i + 2), n, w << i) for i, n in enumerate(BLOCKS[depth][:3])]
    stages.append(("roi_heads.res5", 3, w << 3))
    for prefix, n, mid in stages:
        for b in range(n):
            p = "%s.%d" % (prefix, b)
            conv(p + ".conv1", mid, cin, 1)
            conv(p + ".conv2", mid, mid, 3)
            conv(p + ".conv3", 4 * mid, mid, 1)
            t[p + ".conv3.norm.weight"] *= 0.2
            if b == 0:
                conv(p + ".shortcut", 4 * mid, cin, 1)
            cin = 4 * mid
    c4 = 16 * w
    r = "proposal_generator.rpn_head."
    for name, cout, k in (("conv", c4, 3), ("objectness_logits", A, 1), ("anchor_deltas", 4 * A, 1)):
        t[r + name + ".weight"] = torch.randn(cout, c4, k, k, generator=gen) * 0.05
        t[r + name + ".bias"] = 0.1 * torch.randn(cout, generator=gen)
    q = "roi_heads.box_predictor."
    t[q + "cls_score.weight"] = torch.randn(K + 1, 32 * w, generator=gen) * 0.1
    t[q + "cls_score.bias"] = 0.1 * torch.randn(K + 1, generator=gen)
    t[q + "bbox_pred.weight"] = torch.randn(4 * K, 32 * w, generator=gen) * 0.1
    t[q + "bbox_pred.bias"] = 0.1 * torch.randn(4 * K, generator=gen)
    return {k: v.float().numpy() for k, v in t.items()}


# ----------------------------------------------------------------------------------------------
# Helpers


class Recorder(dict):
    """Weight dict that records every name model.py looks up."""

    def __init__(self, *a):
        super().__init__(*a)
        self.seen = set()

    def __getitem__(self, k):
        self.seen.add(k)
        return super().__getitem__(k)

    def get(self, k, default=None):
        self.seen.add(k)
        return super().get(k, default)

    def __contains__(self, k):
        self.seen.add(k)
        return super().__contains__(k)


def image(h, w, seed):
    """Textured uint8 RGB test image (noise over gradients: no flat regions)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255.0 / w, y * 255.0 / h, (x + y) * 127.0 / (w + h)], axis=2)
    return np.clip(base + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)


def run_cli(argv):
    """convert.main(argv) in-process: (exit code, stderr text)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            rc = convert.main(argv)
        except SystemExit as e:
            rc = e.code
    return rc, err.getvalue()


def model_py_check(tag, path, names_want=None):
    """(a): model.py loads the file, a forward pass on a small image reads exactly the file's
    tensors (no more, none missing) and gives finite outputs. Returns the Detector."""
    d = model.Detector.load(path)
    names = set(d.w)
    if names_want is not None:
        check(tag + ".names_exact", names == set(names_want),
              "extra %s missing %s" % (sorted(names - set(names_want))[:3], sorted(set(names_want) - names)[:3]))
    d.w = Recorder(d.w)
    c = d.cfg
    c["input"]["min_size"], c["input"]["max_size"] = 72, 120
    c["rpn"]["pre_nms_topk"], c["rpn"]["post_nms_topk"] = 300, 40
    try:
        out = d.run(image(60, 90, 7))
        ok = all(torch.isfinite(out[k]).all() for k in ("res4", "rpn_scores", "pooled", "cls_logits", "box_deltas"))
        check(tag + ".model_py_forward", ok and out["cls_logits"].shape[1] == d.K + 1, "non-finite outputs")
        used = d.w.seen & names
        check(tag + ".model_py_reads_every_tensor", used == names, "unused: %s" % sorted(names - used)[:4])
    except Exception as e:  # a missing or mis-shaped tensor
        check(tag + ".model_py_forward", False, "%s: %s" % (type(e).__name__, e))
    d.w = dict(d.w)
    return d


def same_size_cfg(d, img):
    """Makes preprocessing an identity resize for img (short side = min_size, scale 1)."""
    h, w = img.shape[:2]
    d.cfg["input"]["min_size"] = min(h, w)
    d.cfg["input"]["max_size"] = max(h, w)


def width_names_shapes(depth, K, hid, A, obj_rows, box_rows, div):
    """{detectron2 name: shape} a converted model must have, written out from the architecture
    (independent of convert.py)."""
    w = 64 // div
    s = {}

    def conv(p, cout, cin, k):
        s[p + ".weight"] = (cout, cin, k, k)
        for x in ("weight", "bias", "running_mean", "running_var"):
            s[p + ".norm." + x] = (cout,)

    conv("backbone.stem.conv1", w, 3, 7)
    cin = w
    stages = [("backbone.res%d" % (i + 2), n, w << i) for i, n in enumerate(BLOCKS[depth][:3])]
    stages.append(("roi_heads.res5", 3, w << 3))
    for prefix, n, mid in stages:
        for b in range(n):
            p = "%s.%d" % (prefix, b)
            conv(p + ".conv1", mid, cin, 1)
            conv(p + ".conv2", mid, mid, 3)
            conv(p + ".conv3", 4 * mid, mid, 1)
            if b == 0:
                conv(p + ".shortcut", 4 * mid, cin, 1)
            cin = 4 * mid
    r = "proposal_generator.rpn_head."
    s[r + "conv.weight"], s[r + "conv.bias"] = (hid, 16 * w, 3, 3), (hid,)
    s[r + "objectness_logits.weight"], s[r + "objectness_logits.bias"] = (obj_rows, hid, 1, 1), (obj_rows,)
    s[r + "anchor_deltas.weight"], s[r + "anchor_deltas.bias"] = (4 * A, hid, 1, 1), (4 * A,)
    q = "roi_heads.box_predictor."
    s[q + "cls_score.weight"], s[q + "cls_score.bias"] = (K + 1, 32 * w), (K + 1,)
    s[q + "bbox_pred.weight"], s[q + "bbox_pred.bias"] = (box_rows, 32 * w), (box_rows,)
    return s


def shapes_match(tag, tensors, want):
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    bad = [k for k in want if got.get(k) != tuple(want[k])]
    extra = sorted(set(got) - set(want))
    return check(tag, not bad and not extra,
                 "wrong/missing %s extra %s" % ([(k, got.get(k), want[k]) for k in bad[:3]], extra[:3]))


# ----------------------------------------------------------------------------------------------
# Layout tests


def test_detectron2(tmp, out):
    gen = torch.Generator().manual_seed(1)
    K, A = 80, 15
    t = d2_tensors(50, K, A, gen)
    extra = dict(t)
    extra["proposal_generator.anchor_generator.cell_anchors.0"] = np.zeros((15, 4), np.float32)
    extra["roi_heads.box_head.fc9.weight"] = np.ones((2, 2), np.float32)  # unknown
    # model zoo .pkl: protocol 2 (numpy bytes go through _codecs.encode), numpy arrays
    src = os.path.join(tmp, "d2_zoo.pkl")
    with open(src, "wb") as f:
        pickle.dump({"model": extra, "__author__": "Detectron2 Model Zoo"}, f, protocol=2)
    dst = os.path.join(out, "detectron2.safetensors")
    rc, err = run_cli([src, dst])
    check("d2.pkl_converts", rc == 0, err.strip().splitlines()[-1:] if err else rc)
    if rc:
        return
    got, meta = st.load(dst)
    cfg = json.loads(meta["frcnn.config"])
    check("d2.values_unchanged", set(got) == set(t) and all(np.array_equal(got[k], t[k]) for k in t),
          "names or values differ from the checkpoint")
    check("d2.layout_detected", meta.get("frcnn.layout") == "detectron2", meta.get("frcnn.layout"))
    check("d2.config_coco", cfg["family"] == "detectron2" and len(cfg["classes"]) == 80 and cfg["backbone"]["depth"] == 50
          and cfg["head"]["background"] == "last" and cfg["rpn"]["objectness"] == "sigmoid"
          and cfg["backbone"]["stride_in_1x1"] is True and cfg["name"] == "detectron2", json.dumps(cfg)[:200])
    check("d2.extras_reported", "cell_anchors" in err and "box_head.fc9" in err and "unknown" in err, err)
    model_py_check("d2", dst, width_names_shapes(50, K, 64, A, A, 4 * K, DIV))

    # detectron2's own .pth (zip): {"model": state_dict of tensors, ...}, 20 classes, f16 output
    gen = torch.Generator().manual_seed(2)
    t = d2_tensors(50, 20, A, gen)
    sd = {k: torch.from_numpy(v) for k, v in t.items()}
    sd["pixel_mean"] = torch.tensor([103.5, 116.5, 123.5]).view(3, 1, 1)
    sd["pixel_std"] = torch.tensor([57.0, 57.5, 58.0]).view(3, 1, 1)
    # a bfloat16 tensor (bf16-exact values) and one sharing a storage at an offset
    k = "backbone.res2.1.conv1.norm.bias"
    t[k] = st.bf16_to_f32(st.f32_to_bf16(t[k]))
    sd[k] = torch.from_numpy(t[k]).to(torch.bfloat16)
    k = "roi_heads.box_predictor.cls_score.bias"
    big = torch.cat([torch.full((5,), 7.0), torch.from_numpy(t[k])])
    sd[k] = big[5:]
    src = os.path.join(tmp, "d2_own.pth")
    torch.save({"model": sd, "iteration": 9999, "optimizer": {"state": {}, "param_groups": []}}, src)
    dst = os.path.join(out, "detectron2_voc_f16.safetensors")
    rc, err = run_cli([src, dst, "--dtype", "f16"])
    check("d2.pth_converts", rc == 0, err.strip().splitlines()[-1:] if err else rc)
    if rc:
        return
    hdr, meta, _ = st.read_header(dst)
    cfg = json.loads(meta["frcnn.config"])
    check("d2.f16_stored", all(v["dtype"] == "F16" for v in hdr.values()), "dtypes")
    check("d2.voc_config_picked", cfg["classes"][0] == "aeroplane" and len(cfg["classes"]) == 20, cfg["classes"][:2])
    check("d2.pixel_mean_from_checkpoint", cfg["input"]["pixel_mean"] == [103.5, 116.5, 123.5]
          and cfg["input"]["pixel_std"] == [57.0, 57.5, 58.0], cfg["input"])
    got, _ = st.load(dst)
    check("d2.f16_values", all(np.array_equal(got[k], t[k].astype(np.float16).astype(np.float32)) for k in t),
          "values differ from the checkpoint rounded to f16 (bf16 tensor, shared storage)")
    model_py_check("d2_voc", dst)


def test_torchvision(tmp, out):
    gen = torch.Generator().manual_seed(3)
    K, A = 80, 15
    net = randomize(TVC4(50, K, A), gen)
    src = os.path.join(tmp, "tv.pth")
    torch.save(net.state_dict(), src)
    dst = os.path.join(out, "torchvision.safetensors")
    rc, err = run_cli([src, dst])
    check("tv.converts", rc == 0, err.strip().splitlines()[-1:] if err else rc)
    if rc:
        return
    meta = st.load_metadata(dst)
    cfg = json.loads(meta["frcnn.config"])
    check("tv.layout_detected", meta["frcnn.layout"] == "torchvision", meta["frcnn.layout"])
    check("tv.config", cfg["input"]["format"] == "RGB" and cfg["backbone"]["stride_in_1x1"] is False
          and cfg["head"]["background"] == "first" and cfg["head"]["box_includes_background"] is True
          and np.allclose(cfg["input"]["pixel_mean"], [123.675, 116.28, 103.53])
          and np.allclose(cfg["input"]["pixel_std"], [58.395, 57.12, 57.375]), json.dumps(cfg["input"]))
    check("tv.num_batches_tracked_dropped", "num_batches_tracked" in err and "dropped" in err, err)
    d = model_py_check("tv", dst, width_names_shapes(50, K, 64, A, A, 4 * (K + 1), DIV))

    # (b) numerics against torchvision's semantics
    img = image(96, 128, 11)
    same_size_cfg(d, img)
    with torch.no_grad():
        mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
        std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
        x_tv = ((torch.from_numpy(img).permute(2, 0, 1).float() / 255.0 - mean) / std)[None]
        x, info = d.preprocess(img)
        close("tv.input_rgb_mean_std", x, x_tv, 1e-5)
        r4_tv = net.backbone.body.res4(x_tv)
        r4 = d.backbone(x)["res4"]
        close("tv.backbone_res4", r4, r4_tv)
        # RPN: torchvision orders a cell's anchors ratio-major; match them by geometry
        logits, deltas = net.rpn.head([r4_tv])
        H, W = r4_tv.shape[2:]
        obj_tv = logits[0].permute(0, 2, 3, 1).reshape(-1)
        dl_tv = deltas[0].view(1, A, 4, H, W).permute(0, 3, 4, 1, 2).reshape(-1, 4)
        ag = AnchorGenerator(sizes=((32, 64, 128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),))
        cell_tv = ag.generate_anchors([32, 64, 128, 256, 512], [0.5, 1.0, 2.0])
        _, raw, dl = d.rpn_head(r4_tv)
        cell = d.anchors(1, 1)
        dist = (cell[:, None, :] - cell_tv[None, :, :]).abs().amax(dim=2)
        match = dist.argmin(dim=1)
        check("tv.anchor_geometry_matches", sorted(match.tolist()) == list(range(A))
              and dist.min(dim=1).values.max().item() <= 0.5 + 1e-4, "anchors do not pair up within 0.5 px")
        idx = (torch.arange(H * W)[:, None] * A + match[None, :]).reshape(-1)
        close("tv.rpn_objectness_per_anchor", raw, obj_tv[idx])
        close("tv.rpn_deltas_per_anchor", dl, dl_tv[idx])
        # head: torchvision roi_align (sampling_ratio 2, aligned False) -> layer4 -> mean -> predictor
        boxes = torch.tensor([[4.0, 6.0, 60.0, 50.0], [30.5, 10.0, 120.0, 90.0], [0.0, 0.0, 127.0, 95.0]])
        f_tv = torchvision.ops.roi_align(r4_tv, [boxes], 14, 1 / 16.0, 2, False)
        pooled_tv = net.roi_heads.box_head.layer4(f_tv).mean(dim=[2, 3])
        cls_tv, box_tv = net.roi_heads.box_predictor(pooled_tv)
        cls, box = d.predictor(d.res5(d.roi_features(r4_tv, boxes)))
        close("tv.head_cls_logits", cls, cls_tv)
        close("tv.head_box_deltas", box, box_tv)
    # the same weights under other torchvision-style prefixes: plain ResNet names with layer4,
    # the pre-0.13 RPNHead conv name, DataParallel's "module."
    sd = {}
    for k, v in net.state_dict().items():
        k = k.replace("backbone.body.", "").replace("roi_heads.box_head.layer4.", "layer4.")
        sd["module." + k.replace("rpn.head.conv.0.0.", "rpn.head.conv.")] = v
    t2, _, lay, _ = convert.convert(sd)
    ref, _ = st.load(dst)
    check("tv.other_prefixes_same_tensors", lay == "torchvision" and set(t2) == set(ref)
          and all(np.array_equal(t2[k], ref[k]) for k in ref), "differs from the backbone.body. file")
    score_col, box_row = d._fg_columns()
    check("tv.background_first_with_box_row", score_col == list(range(1, K + 1)) and box_row == list(range(1, K + 1)),
          "columns %s rows %s" % (score_col[:3], box_row[:3]))


def test_ruotianluo(tmp, out):
    gen = torch.Generator().manual_seed(4)
    K, A = 20, 9
    net = randomize(RLNet(50, K, A), gen)
    sd = net.state_dict()
    sd["resnet.fc.weight"] = torch.zeros(10, 32 * 64 // DIV)  # checkpoints from before fc was deleted
    sd["resnet.fc.bias"] = torch.zeros(10)
    src = os.path.join(tmp, "rl.pth")
    torch.save(sd, src, _use_new_zipfile_serialization=False)  # legacy format, as in 2017-2019
    dst = os.path.join(out, "ruotianluo.safetensors")
    rc, err = run_cli([src, dst])
    check("rl.legacy_pth_converts", rc == 0, err.strip().splitlines()[-1:] if err else rc)
    if rc:
        return
    meta = st.load_metadata(dst)
    cfg = json.loads(meta["frcnn.config"])
    check("rl.config", meta["frcnn.layout"] == "ruotianluo" and cfg["family"] == "py-faster-rcnn"
          and cfg["backbone"]["res5_stride"] == 1 and cfg["backbone"]["stride_in_1x1"] is True
          and cfg["rpn"]["objectness"] == "softmax2" and cfg["roi"]["output_size"] == 7
          and cfg["roi"]["aligned"] is False and cfg["head"]["background"] == "first"
          and cfg["classes"][0] == "aeroplane", json.dumps(cfg)[:300])
    check("rl.fc_dropped", "resnet.fc" in err, err)
    d = model_py_check("rl", dst, width_names_shapes(50, K, 32, A, 2 * A, 4 * (K + 1), DIV))

    img = image(96, 128, 12)
    same_size_cfg(d, img)
    with torch.no_grad():
        # ruotianluo test.py _get_image_blob: BGR float32 minus PIXEL_MEANS (no resize at scale 1)
        bgr = img[:, :, ::-1].astype(np.float32) - np.array(convert.CAFFE_MEAN, dtype=np.float32)
        x_rl = torch.from_numpy(bgr.transpose(2, 0, 1).copy())[None]
        x, info = d.preprocess(img)
        close("rl.input_bgr_caffe_mean", x, x_rl, 1e-6)
        r4_rl = net.resnet.res4(x_rl)
        close("rl.backbone_res4", d.backbone(x)["res4"], r4_rl)
        # network.py _region_proposal: view (1, 2, -1, W), softmax over dim 1, fg = [..., A:]
        rpn = F.relu(net.rpn_net(r4_rl))
        s = net.rpn_cls_score_net(rpn)
        prob = F.softmax(s.view(1, 2, -1, s.shape[-1]), dim=1).view_as(s).permute(0, 2, 3, 1)
        fg_rl = prob[:, :, :, A:].reshape(-1)
        dl_rl = net.rpn_bbox_pred_net(rpn).permute(0, 2, 3, 1).reshape(-1, 4)
        score, raw, dl = d.rpn_head(r4_rl)
        close("rl.rpn_fg_prob", score, fg_rl)
        close("rl.rpn_deltas", dl, dl_rl)
        # RoIAlign((7, 7), 1/16, 0) -> layer4 (stride 1) -> mean(3).mean(2) -> cls/bbox nets
        boxes = torch.tensor([[4.0, 6.0, 60.0, 50.0], [30.5, 10.0, 120.0, 90.0], [0.0, 0.0, 127.0, 95.0]])
        rois = torch.cat([torch.zeros(3, 1), boxes], dim=1)
        f_rl = torchvision.ops.RoIAlign((7, 7), 1.0 / 16.0, 0)(r4_rl, rois)
        fc7 = net.resnet.layer4(f_rl).mean(3).mean(2)
        cls, box = d.predictor(d.res5(d.roi_features(r4_rl, boxes)))
        close("rl.head_cls_logits", cls, net.cls_score_net(fc7))
        close("rl.head_box_deltas", box, net.bbox_pred_net(fc7))
    score_col, box_row = d._fg_columns()
    check("rl.background_first_with_box_row", score_col == list(range(1, K + 1)) and box_row == score_col, "")


def test_jwyang(tmp, out):
    gen = torch.Generator().manual_seed(5)
    K, A = 20, 9
    net = randomize(JWNet(101, K, A), gen)
    src = os.path.join(tmp, "faster_rcnn_1_7_10021.pth")
    torch.save({"session": 1, "epoch": 7, "model": net.state_dict(),
                "optimizer": {"state": {0: {"momentum_buffer": torch.zeros(3)}},
                              "param_groups": [{"lr": 0.001, "momentum": 0.9, "params": [0]}]},
                "pooling_mode": "align", "class_agnostic": False}, src)
    dst = os.path.join(out, "jwyang.safetensors")
    rc, err = run_cli([src, dst])
    check("jw.converts", rc == 0, err.strip().splitlines()[-1:] if err else rc)
    if rc:
        return
    meta = st.load_metadata(dst)
    cfg = json.loads(meta["frcnn.config"])
    check("jw.config", meta["frcnn.layout"] == "jwyang" and cfg["backbone"]["depth"] == 101
          and cfg["backbone"]["res5_stride"] == 2 and cfg["rpn"]["objectness"] == "softmax2"
          and cfg["roi"]["op"] == "align" and cfg["roi"]["output_size"] == 7 and cfg["rpn"]["min_size"] == 0
          and cfg["head"]["class_agnostic"] is False and cfg["head"]["box_includes_background"] is True,
          json.dumps(cfg)[:300])
    check("jw.stem_pool_warning", "ceil_mode" in err, err)
    d = model_py_check("jw", dst, width_names_shapes(101, K, 32, A, 2 * A, 4 * (K + 1), DIV))

    img = image(96, 128, 13)
    same_size_cfg(d, img)
    with torch.no_grad():
        bgr = img[:, :, ::-1].astype(np.float32) - np.array(convert.CAFFE_MEAN, dtype=np.float32)
        x_jw = torch.from_numpy(bgr.transpose(2, 0, 1).copy())[None]
        x, info = d.preprocess(img)
        base = net.RCNN_base
        close("jw.stem_conv_bn_relu", F.relu(d.conv_bn(x, "backbone.stem.conv1", 2, 3)), base[2](base[1](base[0](x_jw))))
        # the stem max pool differs (caffe ceil mode, reported by the converter); from the
        # pooled stem on, res2..res4 follow the converted model's bottlenecks exactly
        y = base[3](base[2](base[1](base[0](x_jw))))
        r4_jw = base[6](base[5](base[4](y)))
        z = y
        for si, (stage, n) in enumerate(zip(("res2", "res3", "res4"), d.blocks[:3])):
            for b in range(n):
                z = d.bottleneck(z, "backbone.%s.%d" % (stage, b), 2 if (b == 0 and si > 0) else 1)
        close("jw.res2_to_res4", z, r4_jw)
        # rpn.py: reshape(score, 2) -> softmax(1) -> reshape back; proposal layer takes [:, A:]
        rpn = F.relu(net.RCNN_rpn.RPN_Conv(r4_jw))
        s = net.RCNN_rpn.RPN_cls_score(rpn)
        n, c, h, w = s.shape
        prob = F.softmax(s.view(n, 2, c * h // 2, w), dim=1).view(n, c, h, w)
        fg_jw = prob[:, A:].permute(0, 2, 3, 1).reshape(-1)
        dl_jw = net.RCNN_rpn.RPN_bbox_pred(rpn).permute(0, 2, 3, 1).reshape(-1, 4)
        score, raw, dl = d.rpn_head(r4_jw)
        close("jw.rpn_fg_prob", score, fg_jw)
        close("jw.rpn_deltas", dl, dl_jw)
        # RCNN_roi_align (7x7, 1/16, sampling 0, not aligned) -> RCNN_top -> mean(3).mean(2)
        boxes = torch.tensor([[4.0, 6.0, 60.0, 50.0], [30.5, 10.0, 120.0, 90.0], [0.0, 0.0, 127.0, 95.0]])
        f_jw = torchvision.ops.roi_align(r4_jw, [boxes], (7, 7), 1.0 / 16.0, 0, False)
        fc7 = net.RCNN_top(f_jw).mean(3).mean(2)
        cls, box = d.predictor(d.res5(d.roi_features(r4_jw, boxes)))
        close("jw.head_cls_logits", cls, net.RCNN_cls_score(fc7))
        close("jw.head_box_deltas", box, net.RCNN_bbox_pred(fc7))

    # class-agnostic boxes, RoIPool checkpoint
    gen = torch.Generator().manual_seed(6)
    net = randomize(JWNet(50, K, A, agnostic=True), gen)
    src = os.path.join(tmp, "jw_agn.pth")
    torch.save({"model": net.state_dict(), "pooling_mode": "pool", "class_agnostic": True}, src)
    dst = os.path.join(out, "jwyang_agnostic_pool.safetensors")
    rc, err = run_cli([src, dst])
    check("jw.agnostic_pool_converts", rc == 0, err.strip().splitlines()[-1:] if err else rc)
    if rc:
        return
    cfg = json.loads(st.load_metadata(dst)["frcnn.config"])
    check("jw.agnostic_pool_config", cfg["head"]["class_agnostic"] is True and cfg["head"]["box_includes_background"] is False
          and cfg["roi"]["op"] == "pool", json.dumps(cfg["head"]) + json.dumps(cfg["roi"]))
    model_py_check("jw_agn", dst, width_names_shapes(50, K, 32, A, 2 * A, 4, DIV))


def test_full_size():
    """The renaming at full width (ResNet-101) on zero-stride arrays: names and shapes."""
    def zeros(sd):
        return {k: np.broadcast_to(np.float32(0.01), tuple(v.shape)) for k, v in sd.items()}

    cases = []
    global DIV
    saved = DIV
    inits = {n: getattr(nn.init, n) for n in ("kaiming_uniform_", "uniform_", "normal_", "ones_", "zeros_")}
    try:
        DIV = 1
        for n in inits:  # shapes only: torch.empty-like parameters, no random fill
            setattr(nn.init, n, lambda t, *a, **k: t)
        jw = JWNet(101, 20, 9).state_dict()
        rl = RLNet(101, 20, 9).state_dict()
        tv = TVC4(101, 80, 15).state_dict()
    finally:
        DIV = saved
        for n, f in inits.items():
            setattr(nn.init, n, f)
    cases.append(("jwyang", {"model": zeros(jw), "pooling_mode": "align"}, 512, 9, 18, 84, 20))
    cases.append(("ruotianluo", zeros(rl), 512, 9, 18, 84, 20))
    cases.append(("torchvision", zeros(tv), 1024, 15, 15, 324, 80))
    for layout, obj, hid, A, obj_rows, box_rows, K in cases:
        try:
            t, cfg, lay, _ = convert.convert(obj)
            shapes_match("full." + layout + "_names_shapes", t, width_names_shapes(101, K, hid, A, obj_rows, box_rows, 1))
        except convert.ConvertError as e:
            check("full." + layout + "_names_shapes", False, str(e))
    # detectron2 R101-C4 COCO (the `make weights` model): every name at full width
    want = width_names_shapes(101, 80, 1024, 15, 15, 320, 1)
    try:
        t, cfg, lay, _ = convert.convert({"model": {k: np.broadcast_to(np.float32(0.01), s) for k, s in want.items()},
                                          "__author__": "Detectron2 Model Zoo"})
        shapes_match("full.detectron2_names_shapes", t, want)
        check("full.detectron2_config", cfg["name"] == "faster_rcnn_R_101_C4_3x" and cfg["backbone"]["depth"] == 101, cfg["name"])
    except convert.ConvertError as e:
        check("full.detectron2_names_shapes", False, str(e))


class Evil:
    """Unpickling this runs a shell command (the marker file proves whether it ran)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ("touch %s" % self.marker,))


def test_errors(tmp):
    gen = torch.Generator().manual_seed(7)
    base = d2_tensors(50, 20, 15, gen)

    def conv_err(obj, **kw):
        try:
            convert.convert(obj, **kw)
            return None
        except convert.ConvertError as e:
            return str(e)

    e = conv_err({"encoder.layers.0.weight": np.zeros((2, 2), np.float32), "decoder.bias": np.zeros(2, np.float32)})
    check("err.unknown_layout_keys", e is not None and "cannot tell the layout" in e, e)
    e = conv_err({"res2_0_branch2a_w": np.zeros((2, 2), np.float32)})
    check("err.detectron1_names", e is not None and "Detectron1" in e, e)
    e = conv_err({"model": base}, layout="jwyang")
    check("err.layout_mismatch", e is not None and "no tensor matches the jwyang layout" in e, e)
    sd = dict(base)
    del sd["proposal_generator.rpn_head.anchor_deltas.weight"]
    e = conv_err({"model": sd})
    check("err.missing_tensor", e is not None and "missing 1 tensor" in e and "anchor_deltas.weight" in e, e)
    gen = torch.Generator().manual_seed(8)
    jw = JWNet(50, 20, 9).state_dict()
    del jw["RCNN_base.6.2.bn2.running_var"]
    e = conv_err({"model": jw})
    check("err.missing_bn_stat", e is not None and "backbone.res4.2.conv2.norm.running_var "
          "(RCNN_base.6.2.bn2.running_var)" in e, e)
    rl = RLNet(50, 20, 9).state_dict()
    del rl["rpn_bbox_pred_net.weight"], rl["resnet.layer4.0.downsample.1.weight"]
    e = conv_err(rl)
    check("err.missing_names_source", e is not None and "missing 2 tensors" in e
          and "(rpn_bbox_pred_net.weight)" in e and "(resnet.layer4.0.downsample.1.weight)" in e, e)
    sd = dict(base)
    sd["roi_heads.box_predictor.bbox_pred.weight"] = sd["roi_heads.box_predictor.bbox_pred.weight"][:-4]
    sd["roi_heads.box_predictor.bbox_pred.bias"] = sd["roi_heads.box_predictor.bbox_pred.bias"][:-4]
    e = conv_err({"model": sd})
    check("err.box_rows", e is not None and "bbox_pred has 76 rows" in e, e)
    sd = dict(base)
    sd["backbone.res3.1.conv2.weight"] = sd["backbone.res3.1.conv2.weight"][:, :, :2, :2]
    e = conv_err({"model": sd})
    check("err.misshaped", e is not None and "backbone.res3.1.conv2.weight" in e and "expected" in e, e)
    sd = dict(base)
    sd["backbone.res2.0.conv1.weight"] = sd["backbone.res2.0.conv1.weight"].copy()
    sd["backbone.res2.0.conv1.weight"][0, 0, 0, 0] = np.nan
    e = conv_err({"model": sd})
    check("err.non_finite", e is not None and "non-finite" in e, e)
    e = conv_err({"model": base}, classes=["a", "b"])
    check("err.classes_count", e is not None and "--classes has 2 names" in e, e)
    e = conv_err({"model": base}, classes=["c%d" % i for i in range(20)])
    check("ok.classes_option", e is None, e)
    tv = TVC4(50, 80, 15).state_dict()
    tv["backbone.fpn.inner_blocks.0.0.weight"] = torch.zeros(4, 4, 1, 1)
    e = conv_err(tv)
    check("err.fpn_is_not_c4", e is not None and "FPN" in e, e)
    tv_cfg = json.load(open(os.path.join(ROOT, "configs", "detectron2_R101_C4_coco.json")))
    tv_cfg["anchors"]["sizes"] = [32, 64]
    e = conv_err({"model": base}, config=tv_cfg)
    check("err.anchor_count", e is not None and "anchors want 6" in e, e)

    # forbidden globals: nothing may run
    marker = os.path.join(tmp, "pwned")
    cases = []
    p = os.path.join(tmp, "evil.pkl")
    with open(p, "wb") as f:
        pickle.dump({"model": {"x": Evil(marker)}, "__author__": "x"}, f)
    cases.append(("pkl", p))
    p = os.path.join(tmp, "evil_zip.pth")
    torch.save({"model": {"backbone.stem.conv1.weight": torch.zeros(1)}, "hook": Evil(marker)}, p)
    cases.append(("zip_pth", p))
    p = os.path.join(tmp, "evil_legacy.pth")
    torch.save({"model": {"a": torch.zeros(1)}, "hook": Evil(marker)}, p, _use_new_zipfile_serialization=False)
    cases.append(("legacy_pth", p))
    for tag, p in cases:
        rc, err = run_cli([p, os.path.join(tmp, "evil.safetensors")])
        check("err.forbidden_global_" + tag, rc == 1 and "refused" in err and "system is not allowed" in err
              and not os.path.exists(marker) and not os.path.exists(os.path.join(tmp, "evil.safetensors")),
              "rc %s, marker %s: %s" % (rc, os.path.exists(marker), err.strip()))
    # truncated files, usage
    good = os.path.join(tmp, "good.pkl")
    with open(good, "wb") as f:
        pickle.dump({"model": base, "__author__": "Detectron2 Model Zoo"}, f, protocol=4)
    data = open(good, "rb").read()
    with open(os.path.join(tmp, "trunc.pkl"), "wb") as f:
        f.write(data[: len(data) // 2])
    rc, err = run_cli([os.path.join(tmp, "trunc.pkl"), os.path.join(tmp, "t.safetensors")])
    check("err.truncated_pkl", rc == 1 and "not a readable checkpoint" in err, err.strip())
    zp = os.path.join(tmp, "d2_own.pth")
    data = open(zp, "rb").read()
    with open(os.path.join(tmp, "trunc.pth"), "wb") as f:
        f.write(data[: len(data) // 2])
    rc, err = run_cli([os.path.join(tmp, "trunc.pth"), os.path.join(tmp, "t.safetensors")])
    check("err.truncated_pth", rc == 1 and err.startswith("convert: ") and "Traceback" not in err, err.strip())
    rc, err = run_cli([os.path.join(tmp, "missing.pkl"), os.path.join(tmp, "t.safetensors")])
    check("err.no_such_file", rc == 1 and "No such file" in err, err.strip())
    rc, err = run_cli([good, os.path.join(tmp, "t.safetensors"), "--layout", "caffe"])
    check("err.bad_usage_exit_2", rc == 2, rc)
    rc, err = run_cli([good, os.path.join(tmp, "no_dir", "t.safetensors")])
    check("err.unwritable_output", rc == 1 and "convert: " in err and "Traceback" not in err, err.strip())
    r = subprocess.run([sys.executable, os.path.join(HERE, "convert.py"), "--help"], capture_output=True, text=True)
    check("help_mentions_restricted_unpickler", r.returncode == 0 and "restricted" in r.stdout
          and "unpickler" in r.stdout, r.stdout[-300:])


def test_weights_sh(tmp):
    sh = os.path.join(HERE, "weights.sh")
    models = os.path.join(tmp, "models")
    env = dict(os.environ, MODELS=models, D2_BASE="http://127.0.0.1:9/detectron2")
    r = subprocess.run([sh], capture_output=True, text=True, env=env, timeout=60)
    left = os.listdir(models) if os.path.isdir(models) else []
    dl = os.path.join(models, "download")
    left += os.listdir(dl) if os.path.isdir(dl) else []
    check("weights.offline_fails_clearly", r.returncode != 0 and "cannot download" in r.stderr
          and "internet" in r.stderr and not [f for f in left if f != "download"],
          "rc %d, left %s: %s" % (r.returncode, left, r.stderr.strip()[-300:]))
    # a served file whose md5 does not start with the name's prefix
    srv = os.path.join(tmp, "srv", "COCO-Detection", "faster_rcnn_R_101_C4_3x", "138204752")
    os.makedirs(srv)
    with open(os.path.join(srv, "model_final_298dad.pkl"), "wb") as f:
        f.write(b"<html>not a checkpoint</html>" * 1000)
    env["D2_BASE"] = "file://" + os.path.join(tmp, "srv")
    r = subprocess.run([sh], capture_output=True, text=True, env=env, timeout=60)
    check("weights.md5_mismatch_fails", r.returncode != 0 and "md5" in r.stderr
          and not os.path.exists(os.path.join(dl, "model_final_298dad.pkl")),
          "rc %d: %s" % (r.returncode, r.stderr.strip()[-300:]))


def test_weights_sh_success(tmp, out):
    """The download -> verify -> convert path, served over file:// with the md5 prefix of the
    served (synthetic detectron2) file standing in for detectron2's."""
    import hashlib

    sh = os.path.join(HERE, "weights.sh")
    srv = os.path.join(tmp, "srv2", "COCO-Detection", "faster_rcnn_R_101_C4_3x", "138204752")
    os.makedirs(srv)
    served = os.path.join(srv, "model_final_298dad.pkl")
    shutil.copy(os.path.join(tmp, "d2_zoo.pkl"), served)
    data = open(served, "rb").read()
    md5, sha = hashlib.md5(data).hexdigest()[:6], hashlib.sha256(data).hexdigest()
    models = os.path.join(tmp, "models_ok")
    env = dict(os.environ, MODELS=models, D2_BASE="file://" + os.path.join(tmp, "srv2"), ONLY="coco",
               MD5_COCO=md5, FRCNN=os.path.join(os.environ.get("BUILD", os.path.join(ROOT, "build")), "frcnn"))
    r = subprocess.run([sh], capture_output=True, text=True, env=env, timeout=120)
    dst = os.path.join(models, "faster_rcnn_R_101_C4_3x.safetensors")
    ok = r.returncode == 0 and os.path.exists(dst)
    check("weights.download_verify_convert", ok and ("sha256 %s, %d bytes" % (sha, len(data))) in r.stdout
          and "not verified" in r.stdout, "rc %d: %s %s" % (r.returncode, r.stdout[-300:], r.stderr[-300:]))
    if ok:
        cfg = json.loads(st.load_metadata(dst)["frcnn.config"])
        check("weights.coco_config", cfg["name"] == "faster_rcnn_R_101_C4_3x" and len(cfg["classes"]) == 80, cfg["name"])
    os.remove(served)  # the second run must reuse the download
    env["EXPECT_SHA256_COCO"] = sha
    r = subprocess.run([sh], capture_output=True, text=True, env=env, timeout=120)
    check("weights.reuses_download_sha256_pinned", r.returncode == 0 and "using" in r.stdout
          and "sha256 %s ok" % sha in r.stdout, "rc %d: %s %s" % (r.returncode, r.stdout[-300:], r.stderr[-300:]))
    env["EXPECT_SHA256_COCO"] = "0" * 64
    r = subprocess.run([sh], capture_output=True, text=True, env=env, timeout=120)
    check("weights.sha256_mismatch_fails", r.returncode != 0 and "differs from the expected" in r.stderr,
          "rc %d: %s" % (r.returncode, r.stderr[-300:]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "tests", "convert"),
                    help="where the converted files for the C side go")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for f in os.listdir(args.out):
        if f.endswith(".safetensors"):
            os.remove(os.path.join(args.out, f))
    tmp = tempfile.mkdtemp(prefix="frcnn_convert_")
    try:
        for fn, a in ((test_detectron2, (tmp, args.out)), (test_torchvision, (tmp, args.out)),
                      (test_ruotianluo, (tmp, args.out)), (test_jwyang, (tmp, args.out)),
                      (test_full_size, ()), (test_errors, (tmp,)), (test_weights_sh, (tmp,)),
                      (test_weights_sh_success, (tmp, args.out))):
            try:
                fn(*a)
            except Exception:
                check(fn.__name__, False, traceback.format_exc().strip().replace("\n", " | ")[-600:])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("checks: %d ok, %d failed" % (len(PASSED), len(FAILED)))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
