"""fixtures.py - helpers shared by the fx_*.py fixture scripts: test images as PNG, cached
generated weight files.

Weight files generated into the fixture directory are reused while the generating inputs are
unchanged: the SHA-256 of model.py, make_weights.py, st.py, the config and the arguments is
stored in the file's metadata ("frcnn.gen_hash") and compared before reuse.
"""
import hashlib
import json
import os
import sys
import time

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import make_weights  # noqa: E402
import model  # noqa: E402
import st  # noqa: E402

DARKNET = "/usr/share/darknet/data"


def config_path(name):
    return os.path.join(REPO, "configs", name)


def png_of(out_dir, name):
    """DIR/<name>.png: /usr/share/darknet/data/<name>.jpg decoded by PIL (RGB), saved losslessly,
    so both engines read identical pixels (no JPEG decoder differences in parity tests)."""
    dst = os.path.join(out_dir, name + ".png")
    src = os.path.join(DARKNET, name + ".jpg")
    if not os.path.exists(src):
        sys.exit("fixtures: %s is missing (Debian package darknet data)" % src)
    rgb = np.asarray(Image.open(src).convert("RGB"))
    if os.path.exists(dst):
        try:
            if np.array_equal(np.asarray(Image.open(dst).convert("RGB")), rgb):
                return dst
        except OSError:
            pass
    Image.fromarray(rgb).save(dst + ".tmp.png", optimize=False)
    os.replace(dst + ".tmp.png", dst)
    return dst


def _hash(cfg, args):
    h = hashlib.sha256()
    for f in ("model.py", "make_weights.py", "st.py"):
        with open(os.path.join(HERE, f), "rb") as fh:
            h.update(fh.read())
    h.update(json.dumps(cfg, sort_keys=True).encode())
    h.update(json.dumps(args, sort_keys=True).encode())
    return h.hexdigest()


def ensure_weights(out_dir, filename, cfg, width_div, seed, calib_names):
    """Returns the path of DIR/filename, generating it with make_weights.make() unless a file
    made from the same inputs is already there. calib_names: darknet image names."""
    path = os.path.join(out_dir, filename)
    calib = [os.path.join(DARKNET, n + ".jpg") for n in calib_names]
    digest = _hash(cfg, {"width_div": width_div, "seed": seed, "calib": calib_names})
    if os.path.exists(path):
        try:
            if st.load_metadata(path).get("frcnn.gen_hash") == digest:
                return path
        except (OSError, ValueError):
            pass
    t0 = time.time()
    print("fixtures: generating %s (width-div %d, seed %d)" % (filename, width_div, seed), flush=True)
    tensors, meta = make_weights.make(cfg, width_div, seed, calib, log=lambda m: print("  " + m, flush=True))
    meta["frcnn.gen_hash"] = digest
    st.save(path, tensors, meta)
    print("fixtures: wrote %s (%.0f MB) in %.0f s" % (path, os.path.getsize(path) / 1e6, time.time() - t0), flush=True)
    return path


def full_detectron2(out_dir):
    """DIR/r101_full.safetensors: full-size detectron2 R101-C4 COCO (80 classes), seed 0."""
    cfg = model.load_config(config_path("detectron2_R101_C4_coco.json"))
    return ensure_weights(out_dir, "r101_full.safetensors", cfg, 1, 0, ["dog", "horses", "person"])


def full_pyfrcnn(out_dir):
    """DIR/r101_full_pyfrcnn.safetensors: full-size py-faster-rcnn res101 VOC, seed 0."""
    cfg = model.load_config(config_path("pyfrcnn_res101_voc.json"))
    return ensure_weights(out_dir, "r101_full_pyfrcnn.safetensors", cfg, 1, 0, ["dog", "horses", "person"])


def narrow_pyfrcnn(out_dir):
    """DIR/r101_narrow_pyfrcnn.safetensors: width-div 8 py-faster-rcnn res101 VOC, seed 1,
    input sizes 160 / 256 like tests/data/r101_narrow.safetensors."""
    cfg = model.load_config(config_path("pyfrcnn_res101_voc.json"))
    cfg["name"] = "r101_narrow_pyfrcnn"
    cfg["input"]["min_size"] = 160
    cfg["input"]["max_size"] = 256
    return ensure_weights(out_dir, "r101_narrow_pyfrcnn.safetensors", cfg, 8, 1, ["dog", "horses", "person"])


NARROW_D2 = os.path.join(REPO, "tests", "data", "r101_narrow.safetensors")
