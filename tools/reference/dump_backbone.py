#!/usr/bin/python3
"""dump_backbone.py - writes a backbone fixture: the preprocessed input and the stem/res2/res3/res4
activations of the reference model on one image, all NHWC float32.

  dump_backbone.py --weights MODEL.safetensors --image IMAGE --out FIXTURE.safetensors
                   [--config CONFIG.json]

Tensors: "input" [1, H, W, 3] (network input: resized, channel order of input.format, mean
subtracted, divided by std), "stem" [1, ceil(H/4), ceil(W/4), C] (after the max pool), "res2"
(same size), "res3" [1, ceil(H/8), ...], "res4" [1, ceil(H/16), ceil(W/16), C4]. Metadata:
"image" (the file's base name), "scale" (resize factor), "orig_h", "orig_w", "weights".
Used by fx_backbone.py and to regenerate tests/data/r101_narrow_fixture.safetensors.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model  # noqa: E402
import st  # noqa: E402


def nhwc(t):
    return t.permute(0, 2, 3, 1).contiguous().numpy()


def backbone_fixture(det, image_path, out, weights_name=""):
    """Runs preprocess + backbone of det on image_path and writes the fixture to out.
    Returns the dict of NCHW torch tensors and the preprocess info."""
    img = model.load_image(image_path, det.cfg["input"]["exif"])
    with torch.no_grad():
        x, info = det.preprocess(img)
        feats = det.backbone(x)
    tensors = {"input": nhwc(x)}
    for k in ("stem", "res2", "res3", "res4"):
        tensors[k] = nhwc(feats[k])
    meta = {
        "image": os.path.basename(image_path),
        "scale": repr(float(info["scale"])),
        "orig_h": str(info["orig_h"]),
        "orig_w": str(info["orig_w"]),
        "weights": weights_name,
    }
    st.save(out, tensors, meta)
    return feats, info


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", help="config JSON (default: the weights' frcnn.config)")
    a = ap.parse_args()
    det = model.Detector.load(a.weights, a.config)
    backbone_fixture(det, a.image, a.out, os.path.basename(a.weights))
    t, _ = st.load(a.out)
    for k in sorted(t):
        print("%s %s" % (k, list(t[k].shape)))


if __name__ == "__main__":
    main()
