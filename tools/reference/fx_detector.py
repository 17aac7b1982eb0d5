#!/usr/bin/python3
"""fx_detector.py - golden whole-detector data (run by make_fixtures.py with --out DIR).

For four models and three photos (darknet's dog, horses, person; written as DIR/<name>.png, the
PIL decode, so both engines read identical pixels) writes DIR/det_<model>_<image>.safetensors:
  models: narrow     tests/data/r101_narrow.safetensors (detectron2 R101-C4, width/8, 20 VOC
                     classes, input 160/256)
          narrow_pyfrcnn  DIR/r101_narrow_pyfrcnn.safetensors (py-faster-rcnn res101 VOC config,
                     width/8, input 160/256; generated and cached here)
          full       DIR/r101_full.safetensors (detectron2 R101-C4 COCO, 800/1333, 1000 proposals;
                     generated and cached by fx_backbone.py / here)
          full_pyfrcnn   DIR/r101_full_pyfrcnn.safetensors (configs/pyfrcnn_res101_voc.json:
                     600/1000, 300 proposals; generated and cached here)
  tensors (float32; spatial ones NHWC; A anchors per cell, K classes, P proposals, D detections):
    input [1, H, W, 3]            network input (resized, format channel order, minus mean, / std)
    res4 [1, Hf, Wf, C4]          backbone output
    anchors [Hf*Wf*A, 4]          (Hf, Wf, A) order, A fastest, resized-image pixels
    rpn_logits [Hf*Wf*A]          raw objectness logits (sigmoid family), or
               [Hf*Wf*A, 2]       (background, foreground) logits (softmax2 family)
    rpn_scores [Hf*Wf*A]          the score proposals are ranked by: the logit (sigmoid) or the
                                  foreground softmax probability (softmax2)
    rpn_deltas [Hf*Wf*A, 4]       (dx, dy, dw, dh) per anchor
    proposals [P, 4]              x1 y1 x2 y2 in the resized image, in the reference's order
    proposal_logits [P]           their rpn_scores
    roi_features [min(8,P), S, S, C4]  RoIAlign / RoIPool output of the first 8 proposals
    pooled [P, C5]                res5 output averaged over space (box head input)
    cls_logits [P, K+1]           raw class logits (background last or first per config)
    box_deltas [P, 4R]            R = K (detectron2) or K+1 (py-faster-rcnn: background row)
    det_boxes [D, 4]              final boxes in original image pixels
    det_scores [D], det_classes [D]  score and 0-based foreground class (as float32)
  metadata: image, weights, orig_h, orig_w, h, w, scale, score_thresh, pairs_above (number of
    (proposal, class) scores above the threshold), score_margin (min |ln(score / threshold)| over
    all pairs: how far the closest score is from the threshold), rpn_ties (equal rpn_scores
    among the pre-NMS top-k), frcnn.fx_hash (cache key).
A fixture is rewritten only when model.py, st.py, this script, the weights or the image change.
"""
import argparse
import hashlib
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixtures  # noqa: E402
import model  # noqa: E402
import st  # noqa: E402

IMAGES = ["dog", "horses", "person"]
HERE = os.path.dirname(os.path.abspath(__file__))


def nhwc(t):
    return t.permute(0, 2, 3, 1).contiguous().numpy()


def file_key(path):
    meta = st.load_metadata(path)
    if "frcnn.gen_hash" in meta:
        return meta["frcnn.gen_hash"]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for blk in iter(lambda: f.read(1 << 20), b""):
            h.update(blk)
    return h.hexdigest()


def fx_hash(weights_key, png):
    h = hashlib.sha256()
    for f in ("model.py", "st.py", "fx_detector.py"):
        with open(os.path.join(HERE, f), "rb") as fh:
            h.update(fh.read())
    h.update(weights_key.encode())
    with open(png, "rb") as fh:
        h.update(fh.read())
    return h.hexdigest()


def diagnostics(det, o):
    hd = det.cfg["head"]
    thr = hd["score_thresh"]
    probs = torch.softmax(o["cls_logits"].double(), dim=1)
    cols, _ = det._fg_columns()
    s = probs[:, cols].reshape(-1)
    above = int((s > thr).sum())
    margin = float(torch.abs(torch.log(s.clamp(min=1e-300) / thr)).min()) if s.numel() else float("inf")
    k = min(o["rpn_scores"].numel(), det.cfg["rpn"]["pre_nms_topk"])
    top = torch.topk(o["rpn_scores"], k).values
    ties = int(top.numel() - torch.unique(top).numel())
    return above, margin, ties


def write_case(out_dir, tag, weights, det, wkey, image):
    png = fixtures.png_of(out_dir, image)
    path = os.path.join(out_dir, "det_%s_%s.safetensors" % (tag, image))
    key = fx_hash(wkey, png)
    if os.path.exists(path):
        try:
            if st.load_metadata(path).get("frcnn.fx_hash") == key:
                return path, None
        except (OSError, ValueError):
            pass
    t0 = time.time()
    img = model.load_image(png, det.cfg["input"]["exif"])
    o = det.run(img, roi_keep=8)
    info = o["info"]
    t = {
        "input": nhwc(o["input"]),
        "res4": nhwc(o["res4"]),
        "anchors": o["anchors"].numpy(),
        "rpn_logits": o["rpn_raw"].numpy(),
        "rpn_scores": o["rpn_scores"].numpy(),
        "rpn_deltas": o["rpn_deltas"].numpy(),
        "proposals": o["proposals"].numpy(),
        "proposal_logits": o["proposal_scores"].numpy(),
        "roi_features": nhwc(o["roi_features"]) if o["proposals"].shape[0] else np.zeros((0, 0, 0, 0), np.float32),
        "pooled": o["pooled"].numpy(),
        "cls_logits": o["cls_logits"].numpy(),
        "box_deltas": o["box_deltas"].numpy(),
        "det_boxes": o["det_boxes"].numpy().reshape(-1, 4),
        "det_scores": o["det_scores"].numpy(),
        "det_classes": o["det_classes"].numpy().astype(np.float32),
    }
    above, margin, ties = diagnostics(det, o)
    meta = {
        "image": os.path.basename(png),
        "weights": os.path.basename(weights),
        "orig_h": str(info["orig_h"]),
        "orig_w": str(info["orig_w"]),
        "h": str(info["h"]),
        "w": str(info["w"]),
        "scale": repr(float(info["scale"])),
        "score_thresh": repr(float(det.cfg["head"]["score_thresh"])),
        "pairs_above": str(above),
        "score_margin": "%.4f" % margin,
        "rpn_ties": str(ties),
        "frcnn.fx_hash": key,
    }
    st.save(path, t, meta)
    dt = time.time() - t0
    print(
        "fx_detector: %s: input %dx%d, %d proposals, %d detections (%d pairs above %.2f, closest "
        "score x%.3f from it, %d rpn ties) %.1f s"
        % (os.path.basename(path), info["h"], info["w"], t["proposals"].shape[0], t["det_scores"].shape[0],
           above, det.cfg["head"]["score_thresh"], math.exp(margin), ties, dt),
        flush=True,
    )
    return path, dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", help="comma-separated model tags (narrow,narrow_pyfrcnn,full,full_pyfrcnn)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()
    models = [
        ("narrow", lambda: fixtures.NARROW_D2),
        ("narrow_pyfrcnn", lambda: fixtures.narrow_pyfrcnn(args.out)),
        ("full", lambda: fixtures.full_detectron2(args.out)),
        ("full_pyfrcnn", lambda: fixtures.full_pyfrcnn(args.out)),
    ]
    only = set(args.only.split(",")) if args.only else None
    for tag, get in models:
        if only and tag not in only:
            continue
        weights = get()
        wkey = file_key(weights)
        det = None
        for image in IMAGES:
            png = fixtures.png_of(args.out, image)
            path = os.path.join(args.out, "det_%s_%s.safetensors" % (tag, image))
            if os.path.exists(path) and st.load_metadata(path).get("frcnn.fx_hash") == fx_hash(wkey, png):
                continue
            if det is None:
                det = model.Detector.load(weights)
            write_case(args.out, tag, weights, det, wkey, image)
    print("fx_detector: done in %.1f s" % (time.time() - t0))


if __name__ == "__main__":
    main()
