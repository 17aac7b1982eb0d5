#!/usr/bin/python3
"""demo_eval.py - runs the PyTorch reference detector over a VOC split and scores it (VOC07 and VOC2010+).

  demo_eval.py -m MODEL.safetensors --voc VOCdevkit/VOC2007 [--set test] [--out DIR]
               [--json FILE] [--config CONFIG.json] [--threads N] [--limit N]
  demo_eval.py -m MODEL.safetensors --shapes DIR [--out DIR] [--json FILE] ...
  demo_eval.py --voc VOCdevkit/VOC2007 --results DIR [--set test] [--json FILE]
               [--classes a,b,...]
  demo_eval.py --compare REF.json OTHER.json [--tol 0.002] [--min-map 0.90]

With -m: runs tools/reference/model.py on every image of ImageSets/Main/<set>.txt, writes
DIR/comp4_det_<set>_<class>.txt exactly as detectron2's PascalVOCDetectionEvaluator does
("<id> <score %.3f> <x1+1 %.1f> <y1+1 %.1f> <x2 %.1f> <y2 %.1f>", the +1 in float32 on the
0-based box, images in list order, detections in score order), then scores them.
--shapes DIR (instead of --voc): first generates, with tools/shapes.py, the test split the
model was evaluated on when trained (its "frcnn.dataset" metadata: seed, size, count, JPEG
quality) under DIR (a VOCdevkit root), then runs on DIR/VOC2007.
With --results: scores existing comp4 files (classes from --classes, default the 20 VOC ones).
--compare: exit 1 unless both JSON files' VOC07 mAPs are within --tol of each other and the
second is at least --min-map (the demo model's acceptance check; prints both).

Scoring is tools/voc_eval_ref.py, voc_eval.py's algorithm (rbgirshick/py-faster-rcnn
lib/datasets/voc_eval.py, the same code as detectron2/evaluation/pascal_voc_evaluation.py)
re-implemented operation by operation: the evaluator the C side is tested against.
--json FILE writes {"07": {"<class>": ap, ..., "mAP": m}, "10": {...}} (NaN as null), the
shape `frcnn eval --json` writes.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import voc_eval_ref  # noqa: E402


# ----------------------------------------------------------------------------------------------
# Scoring: tools/voc_eval_ref.py (voc_eval.py's algorithm, the evaluator the C side is tested
# against)


def read_set(root, set_name):
    return voc_eval_ref.read_list(os.path.join(root, "ImageSets", "Main", set_name + ".txt"))


def comp4_path(d, set_name, cls):
    return os.path.join(d, "comp4_det_%s_%s.txt" % (set_name, cls))


def score(root, set_name, results_dir, classes, names=None, log=print):
    """Scores comp4 files; returns {"07": {cls: ap, "mAP": m}, "10": {...}, "npos": {...},
    "ndet": {...}, "tp": {...}} (a missing file counts as no detections). names: the image ids
    (default: the whole set)."""
    for c in classes:
        if not os.path.exists(comp4_path(results_dir, set_name, c)):
            log("eval: %s missing: no detections for %s" % (comp4_path(results_dir, set_name, c), c))
    r = voc_eval_ref.evaluate(root, set_name, results_dir, classes, ids=names, missing_ok=True)
    nan = float("nan")
    out = {m: {k: (nan if v is None else v) for k, v in r[m].items()} for m in ("07", "10")}
    out["npos"] = {c: r["stats"][c]["npos"] for c in classes}
    out["ndet"] = {c: r["stats"][c]["ndet"] for c in classes}
    out["tp"] = {c: r["stats"][c]["tp"] for c in classes}
    return out


def print_table(res, classes, log=print):
    log("%-14s %8s %8s %6s %6s" % ("class", "AP07", "AP10", "npos", "dets"))
    for c in classes:
        log("%-14s %8.2f %8.2f %6d %6d" % (c, 100 * res["07"][c], 100 * res["10"][c],
                                            res["npos"][c], res["ndet"][c]))
    log("mAP (VOC07 11-point): %.4f" % res["07"]["mAP"])
    log("mAP (VOC2010+ area):  %.4f" % res["10"]["mAP"])


def write_json(path, res, classes):
    def v(x):
        return None if isinstance(x, float) and math.isnan(x) else x

    obj = {m: dict([(c, v(res[m][c])) for c in classes] + [("mAP", v(res[m]["mAP"]))])
           for m in ("07", "10")}
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


# ----------------------------------------------------------------------------------------------
# Running the reference model


def comp4_line(iid, score_, box):
    """detectron2 PascalVOCDetectionEvaluator: xmin += 1, ymin += 1 on the float32 box."""
    xmin, ymin, xmax, ymax = box
    xmin += np.float32(1)
    ymin += np.float32(1)
    return "%s %.3f %.1f %.1f %.1f %.1f\n" % (iid, score_, xmin, ymin, xmax, ymax)


def run_reference(model_path, root, set_name, out_dir, config=None, threads=2, limit=0,
                  log=print):
    """Runs the reference detector over the set (its first `limit` images if limit), writes the
    comp4 files; returns (classes, image ids run)."""
    sys.path.insert(0, os.path.join(HERE, "reference"))
    import torch
    import model

    torch.set_num_threads(threads)
    det = model.Detector.load(model_path, config)
    classes = det.cfg["classes"]
    names = read_set(root, set_name)
    if limit:
        names = names[:limit]
    os.makedirs(out_dir, exist_ok=True)
    lines = {c: [] for c in classes}
    t0 = time.time()
    for k, iid in enumerate(names):
        img = model.load_image(os.path.join(root, "JPEGImages", iid + ".jpg"), det.cfg["input"]["exif"])
        r = det.run(img)
        boxes = r["det_boxes"].numpy().astype(np.float32)
        scores = r["det_scores"].numpy().astype(np.float32)
        cls = r["det_classes"].numpy()
        for b, s, c in zip(boxes, scores, cls):
            lines[classes[int(c)]].append(comp4_line(iid, float(s), b.copy()))
        if (k + 1) % 50 == 0 or k + 1 == len(names):
            log("eval: %d/%d images, %.2f s/image" % (k + 1, len(names), (time.time() - t0) / (k + 1)))
    for c in classes:
        with open(comp4_path(out_dir, set_name, c), "w") as f:
            f.write("".join(lines[c]))
    return classes, names


def make_test_split(model_path, out):
    """Generates the test split recorded in the model's "frcnn.dataset" metadata under out;
    returns the VOC2007 directory."""
    sys.path.insert(0, os.path.join(HERE, "reference"))
    import shapes
    import st

    _, meta, _ = st.read_header(model_path)
    if "frcnn.dataset" not in meta:
        raise SystemExit("%s: no frcnn.dataset metadata (not made by tools/train.py)" % model_path)
    p = json.loads(meta["frcnn.dataset"])
    return shapes.generate(out, p["seed"], 0, 0, p["n_test"], (p["width"], p["height"]), p["quality"])


def compare(ref_path, other_path, tol, min_map):
    """The acceptance check: |mAP07(other) - mAP07(ref)| <= tol and mAP07(other) >= min_map."""
    with open(ref_path) as f:
        ref = json.load(f)
    with open(other_path) as f:
        other = json.load(f)
    r, o = ref["07"]["mAP"], other["07"]["mAP"]
    ok = r is not None and o is not None and abs(o - r) <= tol and o >= min_map
    print("compare: VOC07 mAP %s %s, %s %s, |diff| %s (tol %g), min %g: %s" % (
        ref_path, r, other_path, o, None if r is None or o is None else "%.6f" % abs(o - r), tol,
        min_map, "ok" if ok else "FAILED"))
    return 0 if ok else 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.split("\n")[2:]))
    ap.add_argument("-m", "--model", help="safetensors model (runs the reference)")
    ap.add_argument("--voc", help="the VOC2007 directory")
    ap.add_argument("--shapes", help="generate the model's shapes test split here (VOCdevkit root)")
    ap.add_argument("--compare", nargs=2, metavar=("REF_JSON", "OTHER_JSON"))
    ap.add_argument("--tol", type=float, default=0.002)
    ap.add_argument("--min-map", type=float, default=0.90)
    ap.add_argument("--set", default="test")
    ap.add_argument("--out", help="where the comp4 files go (default: a temporary dir)")
    ap.add_argument("--results", help="score existing comp4 files in this dir (no model)")
    ap.add_argument("--classes", help="comma-separated classes for --results (default VOC's 20)")
    ap.add_argument("--config", help="config JSON overriding the model's frcnn.config")
    ap.add_argument("--json", help="write the APs as JSON here")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="only the first N images (debugging)")
    a = ap.parse_args(argv)
    if a.compare:
        return compare(a.compare[0], a.compare[1], a.tol, a.min_map)
    if a.shapes:
        if not a.model:
            ap.error("--shapes needs -m MODEL")
        a.voc = make_test_split(a.model, a.shapes)
    if not a.voc:
        ap.error("give --voc DIR or --shapes DIR")
    if bool(a.model) == bool(a.results):
        ap.error("give exactly one of -m MODEL and --results DIR")
    if a.model:
        out = a.out
        if not out:
            import tempfile
            out = tempfile.mkdtemp(prefix="demo_eval_")
        classes, names = run_reference(a.model, a.voc, a.set, out, a.config, a.threads, a.limit)
        results = out
        print("eval: comp4 files in %s" % out)
    else:
        classes = a.classes.split(",") if a.classes else list(voc_eval_ref.VOC_CLASSES)
        results = a.results
        names = None
    res = score(a.voc, a.set, results, classes, names)
    print_table(res, classes)
    if a.json:
        write_json(a.json, res, classes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
