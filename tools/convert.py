#!/usr/bin/python3
"""convert.py - convert Faster R-CNN ResNet-C4 checkpoints into frcnn's safetensors model file.

  convert.py IN OUT [--layout detectron2|torchvision|ruotianluo|jwyang] [--config FILE.json]
             [--classes a,b,...] [--name NAME] [--dtype f32|f16|bf16]

OUT holds the weights under detectron2's names (backbone.stem.conv1.weight, ...norm.running_var,
backbone.res4.22.conv2.weight, proposal_generator.rpn_head.*, roi_heads.res5.*,
roi_heads.box_predictor.*) with BatchNorm kept unfolded as FrozenBN `.norm.*` tensors, and the
model configuration (schema: src/core/config.h) as JSON in the metadata key "frcnn.config".
tools/reference/model.py and build/frcnn read it.

Layouts (detected from the key names when --layout is omitted):
  detectron2   model-zoo .pkl ({"model": {name: numpy array}, "__author__": ...}) or detectron2's
               own .pth ({"model": state_dict, ...}); names are already detectron2's.
  torchvision  torchvision ResNet names (conv1, bn1, layer1..layer3 under any prefix such as
               "backbone.body."; layer4 there or under roi_heads.box_head.), torchvision
               FasterRCNN RPN (rpn.head.conv[.0.0], cls_logits, bbox_pred) and predictor
               (roi_heads.box_predictor.*): stride in the 3x3, RGB input with torchvision's
               mean/std, background at index 0 with its own box row, anchors ratio-major
               (re-ordered here to detectron2's size-major order).
  ruotianluo   ruotianluo/pytorch-faster-rcnn resnetv1 state dict (resnet.*, rpn_net,
               rpn_cls_score_net, rpn_bbox_pred_net, cls_score_net, bbox_pred_net): caffe
               ResNet (stride in the 1x1), res5 stride 1, RPN conv 512 wide, 2A softmax.
  jwyang       jwyang/faster-rcnn.pytorch checkpoint ({"model": state_dict, "pooling_mode", ...}:
               RCNN_base.*, RCNN_top.*, RCNN_rpn.*, RCNN_cls_score, RCNN_bbox_pred).
The 2A RPN logits of ruotianluo and jwyang are blocked (channels [0, A) background, [A, 2A)
foreground: both reshape to (N, 2, A*H, W) before the softmax), which is the config's
"softmax2" layout, so they are copied as they are.

The configuration starts from --config, or from a config in configs/ picked for the layout
and class count; then what the weights and the layout fix is set (depth, classes, background
index, box rows, objectness, stride_in_1x1, res5 stride, input format/mean/std) and every change
to a given --config is reported. num_batches_tracked and known extras (ImageNet fc, anchor
buffers, ...) are dropped; unknown tensors are reported and dropped; a missing or mis-shaped
tensor is an error naming it.

Safe loading: torch.load is not used (this Debian torch 1.13 build ignores its pickle_module
argument, and weights_only=True is not a documented allow-list). Every pickle (.pkl, and the one
inside a .pth, zip or legacy format, whose storages are then read with numpy) goes through a
restricted unpickler that resolves only the globals that rebuild arrays and tensors: numpy
_reconstruct/ndarray/dtype/scalar, torch._utils._rebuild_tensor(_v2)/_rebuild_parameter and the
torch.<Type>Storage names (all replaced by numpy code), collections.OrderedDict and
_codecs.encode for latin1. Any other global (os.system, ...) makes the load fail before it can be
called. torch is not needed to convert.

Exit status: 0 converted, 1 error (one line on stderr), 2 bad usage.
"""
import argparse
import copy
import hashlib
import io
import json
import os
import pickle
import re
import sys
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "reference"))
import st  # noqa: E402

CONFIGS = os.path.join(os.path.dirname(HERE), "configs")
LAYOUTS = ("detectron2", "torchvision", "ruotianluo", "jwyang")
BLOCKS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}
BN_PARTS = ("weight", "bias", "running_mean", "running_var")
# torchvision.models.detection GeneralizedRCNNTransform defaults (0..1 scale), x 255
TV_MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
TV_STD = [0.229 * 255, 0.224 * 255, 0.225 * 255]
# py-faster-rcnn lib/fast_rcnn/config.py PIXEL_MEANS (BGR), used by ruotianluo and jwyang
CAFFE_MEAN = [102.9801, 115.9465, 122.7717]


class ConvertError(Exception):
    """A checkpoint that cannot be converted; the message says why."""


# ----------------------------------------------------------------------------------------------
# Restricted unpickling and torch file formats (read with numpy only; torch.load is not used:
# the Debian torch 1.13 build ignores its pickle_module argument unless weights_only is set)


def _latin1_encode(obj, encoding="latin1", errors="strict"):
    # Python 3 pickles bytes for protocol 2 as _codecs.encode(str, "latin1")
    if encoding not in ("latin1", "latin-1") or not isinstance(obj, str) or errors != "strict":
        raise pickle.UnpicklingError("_codecs.encode is allowed only for latin1 strings")
    return obj.encode("latin1")


# torch storage class name -> numpy dtype of its elements (BFloat16 kept as uint16 bits)
_STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "BFloat16Storage": "<u2",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?",
}


class _StorageType:
    """Stands for torch.<X>Storage in a pickle: the element type of a storage."""

    def __init__(self, name):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])
        self.bf16 = name == "BFloat16Storage"


class _Storage:
    """A torch storage as a 1-D numpy buffer (filled later for the legacy format)."""

    def __init__(self, arr, bf16):
        self.arr = arr
        self.bf16 = bf16


class BF16Array:
    """A bfloat16 tensor: uint16 bit patterns, widened to float32 by _as_array."""

    def __init__(self, bits):
        self.bits = bits


def _rebuild_tensor(storage, storage_offset, size, stride, *rest):
    """torch._utils._rebuild_tensor(_v2): a strided view of a storage, bounds-checked."""
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("tensor without a storage")
    size = tuple(int(x) for x in size)
    stride = tuple(int(x) for x in stride)
    off = int(storage_offset)
    if len(size) != len(stride) or min(size + stride + (off,)) < 0:
        raise pickle.UnpicklingError("tensor with a bad size/stride/offset")
    a = storage.arr
    if int(np.prod(size, dtype=np.int64)) == 0:
        v = np.zeros(size, a.dtype)
    else:
        last = off + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= a.size:
            raise pickle.UnpicklingError("tensor reaches past its storage")
        v = np.lib.stride_tricks.as_strided(a[off:], shape=size, strides=[s * a.itemsize for s in stride],
                                            writeable=False)
    return BF16Array(v) if storage.bf16 else v


def _rebuild_parameter(data, *rest):
    return data


def _allowed_globals():
    """{(module, name): object} the unpickler may resolve: numpy array reconstruction, torch
    tensor/storage reconstruction (replaced by the numpy versions above), OrderedDict."""
    import numpy.core.multiarray as ma

    allowed = {
        ("collections", "OrderedDict"): __import__("collections").OrderedDict,
        ("_codecs", "encode"): _latin1_encode,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    }
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = ma._reconstruct
        allowed[(mod, "scalar")] = ma.scalar
    for name in _STORAGE_DTYPES:
        allowed[("torch", name)] = _StorageType(name)
    return allowed


_ALLOWED = _allowed_globals()


class RestrictedUnpickler(pickle.Unpickler):
    """pickle.Unpickler that resolves only the globals in _ALLOWED; persistent ids (torch
    storages) only where a torch format reader installs persistent_load."""

    def find_class(self, module, name):
        obj = _ALLOWED.get((module, name))
        if obj is None:
            raise pickle.UnpicklingError(
                "pickle global %s.%s is not allowed (only numpy/torch/collections array and "
                "tensor reconstruction globals are)" % (module, name))
        return obj


def _restricted_load(f, persistent_load=None):
    u = RestrictedUnpickler(f, encoding="latin1")
    if persistent_load is not None:
        u.persistent_load = persistent_load
    return u.load()


TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # torch/serialization.py MAGIC_NUMBER (legacy format)
TORCH_LEGACY_PROTOCOL = 1001


def _storage_type(t):
    if not isinstance(t, _StorageType):
        raise pickle.UnpicklingError("persistent id with an unknown storage type")
    return t


def _load_torch_zip(path):
    """torch.save's zip format (torch >= 1.6): <dir>/data.pkl + <dir>/data/<key> storages."""
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        pkl = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
        if any(n.endswith("/constants.pkl") for n in names):
            raise ConvertError("%s: a TorchScript archive, not a checkpoint" % path)
        if len(pkl) != 1:
            raise ConvertError("%s: a zip file without torch's <dir>/data.pkl" % path)
        prefix = pkl[0][: -len("data.pkl")]
        if prefix + "byteorder" in names and z.read(prefix + "byteorder").strip() != b"little":
            raise ConvertError("%s: big-endian torch file: not supported" % path)
        cache = {}

        def persistent_load(pid):
            if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
                raise pickle.UnpicklingError("unsupported persistent id %r" % (pid[:1],))
            t, key = _storage_type(pid[1]), str(pid[2])
            if key not in cache:
                name = prefix + "data/" + key
                if name not in names:
                    raise pickle.UnpicklingError("storage %s is missing" % key)
                raw = z.read(name)
                if len(raw) % t.dtype.itemsize:
                    raise pickle.UnpicklingError("storage %s has a partial element" % key)
                cache[key] = _Storage(np.frombuffer(raw, dtype=t.dtype), t.bf16)
            return cache[key]

        with z.open(pkl[0]) as f:
            return _restricted_load(io.BytesIO(f.read()), persistent_load)


def _load_torch_legacy(path):
    """torch.save's legacy format (torch < 1.6, _use_new_zipfile_serialization=False): pickles
    of the magic number, protocol, sys_info, the object (storages as persistent ids), the
    storage keys; then per key an int64 element count and the raw elements."""
    with open(path, "rb") as f:
        if _restricted_load(f) != TORCH_MAGIC:
            raise ConvertError("%s: not a torch file" % path)
        if _restricted_load(f) != TORCH_LEGACY_PROTOCOL:
            raise ConvertError("%s: unknown torch legacy protocol" % path)
        info = _restricted_load(f)
        if isinstance(info, dict) and info.get("little_endian") is False:
            raise ConvertError("%s: big-endian torch file: not supported" % path)
        roots, views = {}, {}

        def persistent_load(pid):
            if not isinstance(pid, tuple) or len(pid) != 6 or pid[0] != "storage":
                raise pickle.UnpicklingError("unsupported persistent id %r" % (pid[:1],))
            _, t, key, _, numel, view = pid
            t, key, numel = _storage_type(t), str(key), int(numel)
            if key not in roots:
                if not 0 <= numel <= (1 << 34):
                    raise pickle.UnpicklingError("storage %s: implausible size %d" % (key, numel))
                roots[key] = _Storage(np.zeros(numel, dtype=t.dtype), t.bf16)
            if view is None:
                return roots[key]
            vkey, off, vsize = str(view[0]), int(view[1]), int(view[2])
            if vkey not in views:
                base = roots[key].arr
                if off < 0 or vsize < 0 or off + vsize > base.size:
                    raise pickle.UnpicklingError("storage view outside its storage")
                views[vkey] = _Storage(base[off: off + vsize], t.bf16)
            return views[vkey]

        result = _restricted_load(f, persistent_load)
        keys = _restricted_load(f)
        if not isinstance(keys, list):
            raise ConvertError("%s: bad storage key list" % path)
        for key in keys:
            key = str(key)
            if key not in roots:
                raise ConvertError("%s: data for an unknown storage %s" % (path, key))
            arr = roots[key].arr
            head = f.read(8)
            if len(head) != 8 or int.from_bytes(head, "little") != arr.size:
                raise ConvertError("%s: storage %s: size record does not match" % (path, key))
            raw = f.read(arr.nbytes)
            if len(raw) != arr.nbytes:
                raise ConvertError("%s: truncated (storage %s)" % (path, key))
            arr[...] = np.frombuffer(raw, dtype=arr.dtype)
        return result


def safe_load(path):
    """Reads a .pkl (plain pickle) or .pth (torch zip or legacy format) with the restricted
    unpickler. Raises ConvertError."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as e:
        raise ConvertError("%s: %s" % (path, e.strerror))
    try:
        if head.startswith(b"PK\x03\x04"):
            return _load_torch_zip(path)
        if head[257:262] == b"ustar":
            raise ConvertError("%s: torch's old tar format: not supported (load and re-save it)" % path)
        with open(path, "rb") as f:
            first = _restricted_load(f)
        if isinstance(first, int) and first == TORCH_MAGIC:
            return _load_torch_legacy(path)
        return first
    except ConvertError:
        raise
    except pickle.UnpicklingError as e:
        msg = str(e)
        if "not allowed" in msg:
            raise ConvertError("%s: refused: %s" % (path, msg))
        raise ConvertError("%s: not a readable checkpoint (%s)" % (path, msg))
    except (EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError, RuntimeError,
            OverflowError, MemoryError, zipfile.BadZipFile, OSError) as e:
        raise ConvertError("%s: not a readable checkpoint (%s: %s)" % (path, type(e).__name__, e))


# ----------------------------------------------------------------------------------------------
# Checkpoint contents


def _as_array(v):
    """numpy array for a numpy array, bfloat16 tensor or torch tensor; None for anything else."""
    if isinstance(v, np.ndarray):
        return v
    if isinstance(v, BF16Array):
        return st.bf16_to_f32(np.ascontiguousarray(v.bits))
    if type(v).__module__.startswith("torch") and hasattr(v, "detach"):
        v = v.detach().cpu()
        if v.is_floating_point():
            v = v.float()
        return v.numpy()
    return None


def state_dict_of(obj):
    """Returns ({name: numpy array}, extras dict) from a loaded checkpoint object."""
    extras = {}
    sd = obj
    if isinstance(obj, dict):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), dict):
                sd = obj[key]
                extras = {k: v for k, v in obj.items() if k != key and isinstance(v, (str, bool, int, float))}
                break
    if not isinstance(sd, dict) or not sd:
        raise ConvertError("the checkpoint holds no state dict (want {name: array} or {\"model\": {...}})")
    out = {}
    for k, v in sd.items():
        if not isinstance(k, str):
            raise ConvertError("state dict key %r is not a string" % (k,))
        a = _as_array(v)
        if a is None:
            raise ConvertError("%s: not an array or tensor (%s)" % (k, type(v).__name__))
        out[k] = a
    # DataParallel wraps every name in "module."
    if all(k.startswith("module.") for k in out):
        out = {k[len("module."):]: v for k, v in out.items()}
    return out, extras


def detect_layout(names):
    """The layout whose key names these are; raises ConvertError."""
    names = list(names)
    has = lambda pat: any(re.search(pat, k) for k in names)  # noqa: E731
    if has(r"^RCNN_(base|top|rpn)\."):
        return "jwyang"
    if has(r"^rpn_cls_score_net\.") or has(r"^resnet\.layer1\."):
        return "ruotianluo"
    if has(r"^backbone\.(stem|res[2-5])\.") or has(r"^proposal_generator\.rpn_head\."):
        return "detectron2"
    if has(r"(^|\.)layer1\.0\.conv1\.weight$") or has(r"^rpn\.head\."):
        return "torchvision"
    if has(r"^(res\d+_\d+_branch|res_conv1_bn|conv1_w$)"):
        raise ConvertError("Detectron1/Caffe2 names (res2_0_branch2a_w, ...): not supported; load the "
                           "file in detectron2 and save its state dict, then convert that")
    raise ConvertError("cannot tell the layout from the key names (%s, ...): pass --layout "
                       "detectron2|torchvision|ruotianluo|jwyang" % ", ".join(sorted(names)[:4]))


# ----------------------------------------------------------------------------------------------
# Renaming into detectron2 names


_INNER = [  # torchvision Bottleneck inner name <-> detectron2 BottleneckBlock inner name
    (r"conv([123])\.(weight|bias)", r"conv\1.\2"),
    (r"bn([123])\.(weight|bias|running_mean|running_var)", r"conv\1.norm.\2"),
    (r"downsample\.0\.(weight|bias)", r"shortcut.\1"),
    (r"downsample\.1\.(weight|bias|running_mean|running_var)", r"shortcut.norm.\1"),
]
_INNER_INV = [  # the inverse, for messages
    (r"conv([123])\.(weight|bias)", r"conv\1.\2"),
    (r"conv([123])\.norm\.(\w+)", r"bn\1.\2"),
    (r"shortcut\.(weight|bias)", r"downsample.0.\1"),
    (r"shortcut\.norm\.(\w+)", r"downsample.1.\1"),
]
_D2_STAGES = ["backbone.res2.", "backbone.res3.", "backbone.res4.", "roi_heads.res5."]
RPN = "proposal_generator.rpn_head."
PRED = "roi_heads.box_predictor."


class Spec:
    """Where a layout keeps each part: stem conv/BN module prefixes, the four stage prefixes
    (res2, res3, res4, res5; blocks "<prefix><b>.<torchvision inner name>"), whole-module
    renames {source module: detectron2 module} and the names dropped on purpose."""

    def __init__(self, stem_conv, stem_bn, stages, direct, drop):
        self.stem_conv, self.stem_bn, self.stages = stem_conv, stem_bn, stages
        self.direct, self.drop = direct, re.compile(drop)

    def rename(self, k):
        """detectron2 name for source name k, or None."""
        if k == self.stem_conv + "weight":
            return "backbone.stem.conv1.weight"
        if k.startswith(self.stem_bn) and k[len(self.stem_bn):] in BN_PARTS:
            return "backbone.stem.conv1.norm." + k[len(self.stem_bn):]
        for src, dst in zip(self.stages, _D2_STAGES):
            m = re.fullmatch(re.escape(src) + r"(\d+)\.(.+)", k)
            if m:
                for pat, rep in _INNER:
                    if re.fullmatch(pat, m.group(2)):
                        return "%s%s.%s" % (dst, m.group(1), re.sub(pat, rep, m.group(2)))
        mod, _, part = k.rpartition(".")
        if part in ("weight", "bias") and mod in self.direct:
            return self.direct[mod] + "." + part
        return None

    def source(self, d):
        """The source name of detectron2 name d (for messages)."""
        if d == "backbone.stem.conv1.weight":
            return self.stem_conv + "weight"
        if d.startswith("backbone.stem.conv1.norm."):
            return self.stem_bn + d.rsplit(".", 1)[1]
        for src, dst in zip(self.stages, _D2_STAGES):
            m = re.fullmatch(re.escape(dst) + r"(\d+)\.(.+)", d)
            if m:
                for pat, rep in _INNER_INV:
                    if re.fullmatch(pat, m.group(2)):
                        return "%s%s.%s" % (src, m.group(1), re.sub(pat, rep, m.group(2)))
        mod, _, part = d.rpartition(".")
        for a, b in self.direct.items():
            if b == mod:
                return a + "." + part
        return d


class _Identity(Spec):
    def __init__(self, drop):
        Spec.__init__(self, "", "", [], {}, drop)

    def rename(self, k):
        return k

    def source(self, d):
        return d


def spec_detectron2(names):
    return _Identity(r"(^|\.)num_batches_tracked$|^proposal_generator\.anchor_generator\.cell_anchors\."
                     r"|^pixel_(mean|std)$")


def spec_torchvision(names):
    bp = None
    for k in sorted(names, key=len):
        m = re.fullmatch(r"(.*?)layer1\.0\.conv1\.weight", k)
        if m:
            bp = m.group(1)
            break
    if bp is None:
        raise ConvertError("torchvision layout: no <prefix>layer1.0.conv1.weight tensor")
    if any(k.startswith("backbone.fpn.") for k in names):
        raise ConvertError("torchvision layout: backbone.fpn.* tensors: an FPN model is not a C4 model")
    res5 = bp + "layer4."
    if not any(k.startswith(res5) for k in names):
        for cand in ("roi_heads.box_head.layer4.", "roi_heads.box_head.0.", "roi_heads.box_head."):
            if any(re.match(re.escape(cand) + r"\d+\.", k) for k in names):
                res5 = cand
                break
    conv = "rpn.head.conv.0.0" if any(k.startswith("rpn.head.conv.0.0.") for k in names) else "rpn.head.conv"
    return Spec(bp + "conv1.", bp + "bn1.", ["%slayer%d." % (bp, i) for i in (1, 2, 3)] + [res5], {
        conv: RPN + "conv", "rpn.head.cls_logits": RPN + "objectness_logits",
        "rpn.head.bbox_pred": RPN + "anchor_deltas",
        "roi_heads.box_predictor.cls_score": PRED + "cls_score",
        "roi_heads.box_predictor.bbox_pred": PRED + "bbox_pred"},
        r"(^|\.)num_batches_tracked$|^%sfc\.(weight|bias)$" % re.escape(bp))


def spec_ruotianluo(names):
    return Spec("resnet.conv1.", "resnet.bn1.", ["resnet.layer%d." % i for i in (1, 2, 3, 4)], {
        "rpn_net": RPN + "conv", "rpn_cls_score_net": RPN + "objectness_logits",
        "rpn_bbox_pred_net": RPN + "anchor_deltas",
        "cls_score_net": PRED + "cls_score", "bbox_pred_net": PRED + "bbox_pred"},
        r"(^|\.)num_batches_tracked$|^resnet\.fc\.(weight|bias)$")


def spec_jwyang(names):
    # RCNN_base = conv1, bn1, relu, maxpool, layer1, layer2, layer3; RCNN_top = layer4
    return Spec("RCNN_base.0.", "RCNN_base.1.", ["RCNN_base.4.", "RCNN_base.5.", "RCNN_base.6.", "RCNN_top.0."], {
        "RCNN_rpn.RPN_Conv": RPN + "conv", "RCNN_rpn.RPN_cls_score": RPN + "objectness_logits",
        "RCNN_rpn.RPN_bbox_pred": RPN + "anchor_deltas",
        "RCNN_cls_score": PRED + "cls_score", "RCNN_bbox_pred": PRED + "bbox_pred"},
        r"(^|\.)num_batches_tracked$")


SPECS = {"detectron2": spec_detectron2, "torchvision": spec_torchvision,
         "ruotianluo": spec_ruotianluo, "jwyang": spec_jwyang}


def rename(sd, spec):
    """Returns ({detectron2 name: array}, {detectron2 name: source name}, dropped, unmatched)."""
    out, src, dropped, unmatched = {}, {}, [], []
    for k in sorted(sd):
        if spec.drop.search(k):
            dropped.append(k)
            continue
        d = spec.rename(k)
        if d is None:
            unmatched.append(k)
            continue
        if d in out:
            raise ConvertError("%s and %s both map to %s" % (src[d], k, d))
        out[d] = sd[k]
        src[d] = k
    return out, src, dropped, unmatched


# ----------------------------------------------------------------------------------------------
# Structure: expected names and shapes


def count_blocks(t, prefix):
    n = 0
    while "%s.%d.conv1.weight" % (prefix, n) in t:
        n += 1
    return n


def detect_depth(t):
    counts = [count_blocks(t, "backbone.res%d" % s) for s in (2, 3, 4)]
    for depth, b in BLOCKS.items():
        if b[:3] == counts:
            return depth
    raise ConvertError("res2..res4 have %s blocks: not ResNet-50/101/152 (%s)" % (
        counts, ", ".join("%d: %s" % (d, b[:3]) for d, b in BLOCKS.items())))


def expected_names(depth):
    """Required tensor names (the convs' optional .bias excluded)."""
    names = []

    def conv(p):
        names.append(p + ".weight")
        names.extend("%s.norm.%s" % (p, x) for x in BN_PARTS)

    conv("backbone.stem.conv1")
    stages = [("backbone.res%d" % (s + 2), n) for s, n in enumerate(BLOCKS[depth][:3])]
    stages.append(("roi_heads.res5", 3))
    for prefix, n in stages:
        for b in range(n):
            for c in ("conv1", "conv2", "conv3"):
                conv("%s.%d.%s" % (prefix, b, c))
            if b == 0:
                conv("%s.%d.shortcut" % (prefix, b))
    for m in ("conv", "objectness_logits", "anchor_deltas"):
        names += [RPN + m + ".weight", RPN + m + ".bias"]
    for m in ("cls_score", "bbox_pred"):
        names += [PRED + m + ".weight", PRED + m + ".bias"]
    return names


def conv_names(depth):
    """Names of every conv that has a FrozenBN (and may have a bias)."""
    return [n[: -len(".weight")] for n in expected_names(depth)
            if n.endswith(".weight") and ".norm." not in n and n.startswith(("backbone.", "roi_heads.res5"))]


def _named(name, src):
    """"detectron2 name (checkpoint name)" for messages."""
    s = src.get(name, name)
    return name if s == name else "%s (%s)" % (name, s)


def _shape(t, name, want, src):
    if list(t[name].shape) != list(want):
        raise ConvertError("%s: shape %s, expected %s" % (_named(name, src), list(t[name].shape), list(want)))


def check_shapes(t, depth, src):
    """Checks that the convs chain (cin/cout), BN sizes and the heads agree. Returns
    (res4 channels, RPN conv channels, res5 channels, cls_score rows, bbox_pred rows,
    objectness rows, anchor_deltas rows)."""

    def rows(name):
        return t[name].shape[0] if t[name].ndim >= 1 else -1

    def conv(p, cin, k, cout=None):
        co = cout if cout is not None else rows(p + ".weight")
        _shape(t, p + ".weight", [co, cin, k, k], src)
        for x in BN_PARTS:
            _shape(t, "%s.norm.%s" % (p, x), [co], src)
        if p + ".bias" in t:
            _shape(t, p + ".bias", [co], src)
        return co

    c = conv("backbone.stem.conv1", 3, 7)
    stages = [("backbone.res%d" % (s + 2), n) for s, n in enumerate(BLOCKS[depth][:3])]
    stages.append(("roi_heads.res5", 3))
    chans = []
    for prefix, n in stages:
        for b in range(n):
            p = "%s.%d" % (prefix, b)
            mid = conv(p + ".conv1", c, 1)
            conv(p + ".conv2", mid, 3, mid)
            out = conv(p + ".conv3", mid, 1)
            if b == 0:
                conv(p + ".shortcut", c, 1, out)
            elif out != c:
                _shape(t, p + ".conv3.weight", [c, mid, 1, 1], src)
            c = out
        chans.append(c)
    c4, c5 = chans[2], chans[3]
    hid = rows(RPN + "conv.weight")
    _shape(t, RPN + "conv.weight", [hid, c4, 3, 3], src)
    _shape(t, RPN + "conv.bias", [hid], src)
    obj = rows(RPN + "objectness_logits.weight")
    _shape(t, RPN + "objectness_logits.weight", [obj, hid, 1, 1], src)
    _shape(t, RPN + "objectness_logits.bias", [obj], src)
    dl = rows(RPN + "anchor_deltas.weight")
    _shape(t, RPN + "anchor_deltas.weight", [dl, hid, 1, 1], src)
    _shape(t, RPN + "anchor_deltas.bias", [dl], src)
    cls = rows(PRED + "cls_score.weight")
    _shape(t, PRED + "cls_score.weight", [cls, c5], src)
    _shape(t, PRED + "cls_score.bias", [cls], src)
    box = rows(PRED + "bbox_pred.weight")
    _shape(t, PRED + "bbox_pred.weight", [box, c5], src)
    _shape(t, PRED + "bbox_pred.bias", [box], src)
    if dl % 4 or box % 4:
        raise ConvertError("anchor_deltas (%d) / bbox_pred (%d) rows are not multiples of 4" % (dl, box))
    return c4, hid, c5, cls, box, obj, dl


# ----------------------------------------------------------------------------------------------
# Configuration


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        raise ConvertError("%s: %s" % (path, e.strerror))
    except ValueError as e:
        raise ConvertError("%s: not valid JSON (%s)" % (path, e))


def _class_list(k):
    """Known class lists for k foreground classes (the configs/ files), or None."""
    for f in ("detectron2_R50_C4_voc.json", "detectron2_R101_C4_coco.json"):
        c = load_json(os.path.join(CONFIGS, f))
        if len(c.get("classes", [])) == k:
            return list(c["classes"])
    return None


def _set(cfg, path, value, explicit, notes):
    """Sets cfg[a][b] = value; notes the change when the user's --config said otherwise."""
    d = cfg
    keys = path.split(".")
    for k in keys[:-1]:
        d = d.setdefault(k, {})
    old = d.get(keys[-1], None)
    if explicit and old is not None and old != value:
        notes.append("config %s: %s -> %s (fixed by the %s)" % (path, json.dumps(old), json.dumps(value), explicit))
    d[keys[-1]] = value


def build_config(layout, t, info, base, explicit, classes, name, extras, notes):
    """Returns the config dict for converted tensors t. info: check_shapes' tuple."""
    c4, hid, c5, cls_rows, box_rows, obj_rows, dl_rows = info
    cfg = copy.deepcopy(base)
    fact = "weights" if explicit else None
    lay = "%s layout" % layout if explicit else None
    for sec in ("input", "backbone", "anchors", "rpn", "roi", "head"):
        if not isinstance(cfg.get(sec), dict):
            raise ConvertError("config: missing section %r" % sec)
    _set(cfg, "backbone.depth", detect_depth(t), fact, notes)
    K = cls_rows - 1
    if K < 1:
        raise ConvertError("cls_score has %d rows: need background + at least one class" % cls_rows)
    if classes is not None:
        if len(classes) != K:
            raise ConvertError("--classes has %d names, the checkpoint has %d classes (cls_score rows %d "
                               "include background)" % (len(classes), K, cls_rows))
        cfg["classes"] = list(classes)
    elif len(cfg.get("classes", [])) != K:
        known = _class_list(K)
        if known is None:
            raise ConvertError("the checkpoint has %d classes and the config %d: pass --classes a,b,..."
                               % (K, len(cfg.get("classes", []))))
        if explicit:
            notes.append("config classes: %d names replaced by the %d-class list of configs/" % (len(cfg["classes"]), K))
        cfg["classes"] = known
    a = cfg["anchors"]
    A = len(a["sizes"]) * len(a["ratios"])
    R = box_rows // 4
    bg_first = layout != "detectron2"
    if bg_first:
        if R == K + 1:
            agn, incl = False, True
        elif R in (1, 2):
            agn, incl = True, R == 2
        else:
            raise ConvertError("bbox_pred has %d rows: want 4 x %d (classes + background) or 4 (class-agnostic)"
                               % (box_rows, K + 1))
    else:
        if R == K:
            agn, incl = False, False
        elif R == 1:
            agn, incl = True, False
        else:
            raise ConvertError("bbox_pred has %d rows: want 4 x %d classes or 4 (class-agnostic)" % (box_rows, K))
    _set(cfg, "head.background", "first" if bg_first else "last", lay, notes)
    _set(cfg, "head.class_agnostic", agn, fact, notes)
    _set(cfg, "head.box_includes_background", incl, fact, notes)
    softmax = layout in ("ruotianluo", "jwyang")
    _set(cfg, "rpn.objectness", "softmax2" if softmax else "sigmoid", lay, notes)
    if obj_rows != (2 * A if softmax else A) or dl_rows != 4 * A:
        raise ConvertError("the RPN has %d objectness and %d delta outputs; the config's %d sizes x %d ratios "
                           "= %d anchors want %d and %d: pass --config with matching anchors" % (
                               obj_rows, dl_rows, len(a["sizes"]), len(a["ratios"]), A, 2 * A if softmax else A, 4 * A))

    if layout == "detectron2":
        if not explicit:
            notes.append("note: a detectron2 checkpoint does not record STRIDE_IN_1X1 or the input format; "
                         "model-zoo models use true and BGR (the configs/ default): pass --config for a model "
                         "trained from torchvision weights")
        mean, std = extras.get("pixel_mean"), extras.get("pixel_std")
        if mean is not None:
            _set(cfg, "input.pixel_mean", [float(x) for x in mean], "checkpoint's pixel_mean", notes)
        if std is not None:
            _set(cfg, "input.pixel_std", [float(x) for x in std], "checkpoint's pixel_std", notes)
    elif layout == "torchvision":
        _set(cfg, "family", "detectron2", lay, notes)
        _set(cfg, "backbone.stride_in_1x1", False, lay, notes)
        _set(cfg, "backbone.res5_stride", 2, lay, notes)
        _set(cfg, "input.format", "RGB", lay, notes)
        _set(cfg, "input.pixel_mean", TV_MEAN, lay, notes)
        _set(cfg, "input.pixel_std", TV_STD, lay, notes)
        _set(cfg, "anchors.style", "detectron2", lay, notes)
        _set(cfg, "box_plus_one", False, lay, notes)
        notes.append("note: torchvision rounds its cell anchors to whole pixels and resizes the float image "
                     "with F.interpolate; this engine uses detectron2's unrounded anchors and PIL resize "
                     "(anchors differ by < 0.5 px)")
        if not explicit:
            # torchvision FasterRCNN test defaults: rpn_pre/post_nms_top_n_test 1000,
            # remove_small_boxes(1e-3); MultiScaleRoIAlign: sampling_ratio 2, aligned False
            cfg["rpn"].update({"pre_nms_topk": 1000, "post_nms_topk": 1000, "min_size": 0.001})
            cfg["roi"].update({"op": "align", "sampling_ratio": 2, "aligned": False})
    else:
        _set(cfg, "family", "py-faster-rcnn", lay, notes)
        _set(cfg, "backbone.stride_in_1x1", True, lay, notes)
        _set(cfg, "backbone.res5_stride", 1 if layout == "ruotianluo" else 2, lay, notes)
        _set(cfg, "input.format", "BGR", lay, notes)
        _set(cfg, "input.pixel_mean", CAFFE_MEAN, lay, notes)
        _set(cfg, "input.pixel_std", [1.0, 1.0, 1.0], lay, notes)
        _set(cfg, "anchors.style", "py-faster-rcnn", lay, notes)
        _set(cfg, "box_plus_one", True, lay, notes)
        if not explicit:
            # both repos: cfg.POOLING_SIZE 7, RoIAlign(aligned=False, sampling_ratio=0) for
            # POOLING_MODE "align"; no RPN min-size filter at test time
            cfg["rpn"]["min_size"] = 0
            cfg["roi"].update({"op": "align", "output_size": 7, "sampling_ratio": 0, "aligned": False})
        if layout == "jwyang" and "pooling_mode" in extras:
            pm = extras["pooling_mode"]
            if pm == "pool":
                _set(cfg, "roi.op", "pool", "checkpoint's pooling_mode", notes)
            elif pm in ("align", "crop"):
                _set(cfg, "roi.op", "align", "checkpoint's pooling_mode", notes)
                _set(cfg, "roi.aligned", False, "checkpoint's pooling_mode", notes)
                if pm == "crop":
                    notes.append("warning: pooling_mode 'crop' (affine grid + max pool) has no equivalent "
                                 "here; using RoIAlign: expect slightly different scores")
            else:
                raise ConvertError("checkpoint pooling_mode %r: want align, pool or crop" % (pm,))
        if layout == "ruotianluo":
            notes.append("note: ruotianluo's RPN NMS (torchvision.ops.nms) has no +1 in its areas; this "
                         "family's has (py-faster-rcnn)")
        if layout == "jwyang":
            notes.append("warning: jwyang's stem max pool is caffe-style (3x3/2, pad 0, ceil_mode); this "
                         "engine pools with pad 1 (detectron2/torchvision), shifting stem features by one "
                         "pixel: expect a small accuracy difference")
    if name:
        cfg["name"] = name
    return cfg


def default_base(layout, K):
    """(config dict, file name) the layout starts from without --config."""
    if layout in ("ruotianluo", "jwyang"):
        f = "pyfrcnn_res101_voc.json"
    elif layout == "detectron2" and K == 20:
        f = "detectron2_R50_C4_voc.json"
    else:
        f = "detectron2_R101_C4_coco.json"
    return load_json(os.path.join(CONFIGS, f)), f


# ----------------------------------------------------------------------------------------------
# The conversion


def reorder_torchvision_anchors(t, n_sizes, n_ratios):
    """torchvision AnchorGenerator orders a cell's anchors ratio-major (index r*S + s),
    detectron2 size-major (s*R + r): permutes the RPN output rows accordingly."""
    S, R = n_sizes, n_ratios
    perm = np.array([r * S + s for s in range(S) for r in range(R)])
    A = S * R
    for p in ("weight", "bias"):
        k = RPN + "objectness_logits." + p
        if t[k].shape[0] == A:
            t[k] = t[k][perm]
        k = RPN + "anchor_deltas." + p
        if t[k].shape[0] == 4 * A:
            t[k] = t[k].reshape((A, 4) + t[k].shape[1:])[perm].reshape(t[k].shape)


def convert(obj, layout=None, config=None, classes=None, name=None, log=None):
    """Converts a loaded checkpoint object. config: dict (explicit, as --config) or None.
    Returns (tensors {name: float32 array}, config dict, layout, notes list). Raises ConvertError."""
    notes = []
    sd, extras = state_dict_of(obj)
    if layout is None:
        layout = detect_layout(sd)
    elif layout not in LAYOUTS:
        raise ConvertError("unknown layout %r" % layout)
    spec = SPECS[layout](list(sd))
    t, src, dropped, unknown = rename(sd, spec)
    if layout == "detectron2":
        for k in ("pixel_mean", "pixel_std"):
            if k in sd:
                v = np.asarray(sd[k], dtype=np.float64).reshape(-1)
                if v.shape != (3,):
                    raise ConvertError("%s has %d values, want 3" % (k, v.size))
                extras[k] = v
    need = None
    try:
        depth = detect_depth(t)
        need = expected_names(depth)
    except ConvertError:
        if not t:
            raise ConvertError("no tensor matches the %s layout (keys: %s, ...)" % (
                layout, ", ".join(sorted(sd)[:4])))
        raise
    missing = [n for n in need if n not in t]
    if missing:
        named = [n if spec.source(n) == n else "%s (%s)" % (n, spec.source(n)) for n in missing[:6]]
        raise ConvertError("missing %d tensor%s for the %s layout: %s%s" % (
            len(missing), "s" if len(missing) > 1 else "", layout, ", ".join(named),
            ", ..." if len(missing) > 6 else ""))
    allowed = set(need) | {c + ".bias" for c in conv_names(depth)}
    unknown += [src[k] for k in sorted(t) if k not in allowed]
    t = {k: v for k, v in t.items() if k in allowed}
    for k, v in t.items():
        if v.dtype.kind != "f":
            raise ConvertError("%s: dtype %s is not floating point" % (_named(k, src), v.dtype))
        v = np.asarray(v, dtype=np.float32, order="C")
        if not np.isfinite(v).all():
            raise ConvertError("%s: non-finite values" % _named(k, src))
        t[k] = v
    info = check_shapes(t, depth, src)
    explicit = config is not None
    if explicit:
        base = config
    else:
        base, base_file = default_base(layout, info[3] - 1)
        notes.append("config: starting from configs/%s" % base_file)
    cfg = build_config(layout, t, info, base, "--config" if explicit else None, classes, name, extras, notes)
    if layout == "torchvision":
        reorder_torchvision_anchors(t, len(cfg["anchors"]["sizes"]), len(cfg["anchors"]["ratios"]))
    if dropped:
        notes.append("dropped %d tensors: %s" % (len(dropped), _summary(dropped)))
    if unknown:
        notes.append("unknown: %d tensors ignored: %s" % (len(unknown), _summary(unknown)))
    if log:
        for n in notes:
            log(n)
    return t, cfg, layout, notes


def _summary(names, n=5):
    kinds = sorted(set(re.sub(r"(?<=\.)\d+(?=\.)", "N", k) for k in names))
    return ", ".join(kinds[:n]) + (", ..." if len(kinds) > n else "")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="convert.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Converts a Faster R-CNN ResNet-C4 checkpoint (detectron2 .pkl/.pth, torchvision-style, "
                    "ruotianluo/pytorch-faster-rcnn or jwyang/faster-rcnn.pytorch .pth) into frcnn's "
                    "safetensors file: detectron2 tensor names, unfolded FrozenBN, the config JSON in the "
                    "metadata key frcnn.config.",
        epilog="Safe loading: pickles (.pkl, and the pickle inside a .pth, zip or legacy format) are read "
               "with a restricted unpickler that resolves only numpy/torch/collections array and tensor "
               "reconstruction globals (tensors are rebuilt with numpy; torch.load is not used); a file "
               "naming any other global (os.system, ...) is refused before anything runs.\n"
               "Exit status: 0 converted, 1 error, 2 bad usage.")
    ap.add_argument("input", metavar="IN", help="checkpoint (.pkl or .pth)")
    ap.add_argument("output", metavar="OUT", help="safetensors file to write")
    ap.add_argument("--layout", choices=LAYOUTS, help="checkpoint layout (default: detected from key names)")
    ap.add_argument("--config", metavar="FILE.json",
                    help="base config (default: one of configs/ picked by layout and class count); what the "
                         "weights and layout fix is still set, and reported when it changes")
    ap.add_argument("--classes", metavar="a,b,...", help="foreground class names, in the model's order")
    ap.add_argument("--name", help="model name in the config (default: --config's name, else OUT's stem)")
    ap.add_argument("--dtype", choices=("f32", "f16", "bf16"), default="f32", help="stored tensor type")
    args = ap.parse_args(argv)

    def log(msg):
        print("convert: %s" % msg, file=sys.stderr)

    try:
        if os.path.abspath(args.input) == os.path.abspath(args.output):
            raise ConvertError("OUT must differ from IN")
        config = load_json(args.config) if args.config else None
        if config is not None and not isinstance(config, dict):
            raise ConvertError("%s: not a JSON object" % args.config)
        classes = None
        if args.classes is not None:
            classes = [c.strip() for c in args.classes.split(",")]
            if any(not c for c in classes):
                raise ConvertError("--classes: empty class name")
        name = args.name
        if not name and config is None:
            name = os.path.splitext(os.path.basename(args.output))[0]
        obj = safe_load(args.input)
        t, cfg, layout, _ = convert(obj, args.layout, config, classes, name, log)
        meta = {
            "frcnn.config": json.dumps(cfg),
            "frcnn.converter": "tools/convert.py",
            "frcnn.layout": layout,
            "frcnn.source": os.path.basename(args.input),
            "frcnn.source_sha256": sha256_file(args.input),
        }
        st.save(args.output, t, metadata=meta, dtype=args.dtype.upper())
    except ConvertError as e:
        print("convert: %s" % e, file=sys.stderr)
        return 1
    except OSError as e:
        print("convert: %s: %s" % (e.filename or args.output, e.strerror), file=sys.stderr)
        return 1
    n = sum(v.size for v in t.values())
    print("convert: %s (%s layout) -> %s: %d tensors, %.1fM parameters, ResNet-%d, %d classes, %s" % (
        args.input, layout, args.output, len(t), n / 1e6, cfg["backbone"]["depth"], len(cfg["classes"]),
        args.dtype), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
