#!/usr/bin/python3
"""fx_backbone.py - golden backbone data for the full-size detectron2 R101-C4 (run by
make_fixtures.py with --out DIR).

Writes
  DIR/r101_full.safetensors      full-size R101-C4 COCO weights (width-div 1, seed 0, calibrated
                                 on darknet's dog/horses/person photos); cached: regenerated
                                 only when model.py, make_weights.py, st.py or the config change
  DIR/dog.png                    /usr/share/darknet/data/dog.jpg decoded by PIL, saved as PNG
  DIR/backbone_full_dog.safetensors
                                 "input" [1, 800, 1067, 3] (detectron2 resize of dog.png,
                                 576x768 -> 800x1067, BGR minus mean) and "stem" (after the max
                                 pool), "res2", "res3", "res4" [1, 50, 67, 1024], all NHWC
                                 float32; metadata image, scale, orig_h, orig_w, weights
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dump_backbone  # noqa: E402
import fixtures  # noqa: E402
import model  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--out", required=True)
args = ap.parse_args()
os.makedirs(args.out, exist_ok=True)
t0 = time.time()
weights = fixtures.full_detectron2(args.out)
png = fixtures.png_of(args.out, "dog")
det = model.Detector.load(weights)
feats, info = dump_backbone.backbone_fixture(
    det, png, os.path.join(args.out, "backbone_full_dog.safetensors"), os.path.basename(weights)
)
print("fx_backbone: input %dx%d -> res4 %s in %.1f s" % (info["h"], info["w"], list(feats["res4"].shape), time.time() - t0))
