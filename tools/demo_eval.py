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

Scoring is voc_eval.py (rbgirshick/py-faster-rcnn lib/datasets/voc_eval.py, the same code as
detectron2/evaluation/pascal_voc_evaluation.py): detections ranked by np.argsort(-score),
each takes the GT of its class with the highest IoU (+1 areas); IoU > 0.5 on a free
non-difficult GT is a TP, on a difficult GT it is ignored, else FP; AP07 = 11-point,
AP10 = area under the precision envelope; mAP = np.mean over the classes.
--json FILE writes {"07": {"<class>": ap, ..., "mAP": m}, "10": {...}} (NaN as null), the
shape `frcnn eval --json` writes.
"""
import argparse
import json
import math
import os
import sys
import time
import xml.etree.ElementTree as ET

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
VOC_CLASSES = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor"]


# ----------------------------------------------------------------------------------------------
# voc_eval.py semantics


def read_set(root, set_name):
    with open(os.path.join(root, "ImageSets", "Main", set_name + ".txt")) as f:
        return [x.strip() for x in f.readlines() if x.strip()]


def parse_rec(path):
    """voc_eval.py parse_rec: [{name, difficult, bbox}] per <object>."""
    objs = []
    for obj in ET.parse(path).findall("object"):
        d = obj.find("difficult")
        bb = obj.find("bndbox")
        objs.append({
            "name": obj.find("name").text,
            "difficult": int(d.text) if d is not None else 0,
            "bbox": [int(bb.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")],
        })
    return objs


def voc_ap(rec, prec, use_07_metric):
    """voc_eval.py voc_ap."""
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            if np.sum(rec >= t) == 0:
                p = 0
            else:
                p = np.max(prec[rec >= t])
            ap = ap + p / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


def voc_eval_class(lines, recs, imagenames, classname, ovthresh=0.5):
    """voc_eval.py voc_eval for one class given its comp4 lines; returns (rec, prec, ap07, ap10,
    npos, ndet)."""
    class_recs = {}
    npos = 0
    for name in imagenames:
        R = [o for o in recs[name] if o["name"] == classname]
        bbox = np.array([x["bbox"] for x in R])
        difficult = np.array([x["difficult"] for x in R]).astype(bool)
        det = [False] * len(R)
        npos = npos + sum(~difficult)
        class_recs[name] = {"bbox": bbox, "difficult": difficult, "det": det}
    splitlines = [x.strip().split(" ") for x in lines]
    image_ids = [x[0] for x in splitlines]
    confidence = np.array([float(x[1]) for x in splitlines])
    BB = np.array([[float(z) for z in x[2:]] for x in splitlines]).reshape(-1, 4)
    sorted_ind = np.argsort(-confidence)
    BB = BB[sorted_ind, :]
    image_ids = [image_ids[x] for x in sorted_ind]
    nd = len(image_ids)
    tp = np.zeros(nd)
    fp = np.zeros(nd)
    for d in range(nd):
        R = class_recs[image_ids[d]]
        bb = BB[d, :].astype(float)
        ovmax = -np.inf
        BBGT = R["bbox"].astype(float)
        if BBGT.size > 0:
            ixmin = np.maximum(BBGT[:, 0], bb[0])
            iymin = np.maximum(BBGT[:, 1], bb[1])
            ixmax = np.minimum(BBGT[:, 2], bb[2])
            iymax = np.minimum(BBGT[:, 3], bb[3])
            iw = np.maximum(ixmax - ixmin + 1.0, 0.0)
            ih = np.maximum(iymax - iymin + 1.0, 0.0)
            inters = iw * ih
            uni = ((bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0)
                   + (BBGT[:, 2] - BBGT[:, 0] + 1.0) * (BBGT[:, 3] - BBGT[:, 1] + 1.0) - inters)
            overlaps = inters / uni
            ovmax = np.max(overlaps)
            jmax = np.argmax(overlaps)
        if ovmax > ovthresh:
            if not R["difficult"][jmax]:
                if not R["det"][jmax]:
                    tp[d] = 1.0
                    R["det"][jmax] = 1
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0
    fp = np.cumsum(fp)
    tp = np.cumsum(tp)
    with np.errstate(divide="ignore", invalid="ignore"):
        rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return rec, prec, voc_ap(rec, prec, True), voc_ap(rec, prec, False), int(npos), nd


def comp4_path(d, set_name, cls):
    return os.path.join(d, "comp4_det_%s_%s.txt" % (set_name, cls))


def score(root, set_name, results_dir, classes, names=None, log=print):
    """Scores comp4 files; returns {"07": {cls: ap, "mAP": m}, "10": {...}, "npos": {...},
    "ndet": {...}} (a missing file counts as no detections). names: the image ids (default:
    the whole set). Uses tools/voc_eval_ref.py (the evaluator the C side is tested against)
    when it is there, scores the whole set and every file exists, else this file's copy of the
    same algorithm."""
    missing = [c for c in classes if not os.path.exists(comp4_path(results_dir, set_name, c))]
    for c in missing:
        log("eval: %s missing: no detections for %s" % (comp4_path(results_dir, set_name, c), c))
    if names is None and not missing and os.path.exists(os.path.join(HERE, "voc_eval_ref.py")):
        sys.path.insert(0, HERE)
        import voc_eval_ref

        r = voc_eval_ref.evaluate(root, set_name, results_dir, classes)
        nan = float("nan")
        out = {m: {k: (nan if v is None else v) for k, v in r[m].items()} for m in ("07", "10")}
        out["npos"] = {c: r["stats"][c]["npos"] for c in classes}
        out["ndet"] = {c: r["stats"][c]["ndet"] for c in classes}
        out["scorer"] = "tools/voc_eval_ref.py"
        return out
    if names is None:
        names = read_set(root, set_name)
    recs = {n: parse_rec(os.path.join(root, "Annotations", n + ".xml")) for n in names}
    out = {"07": {}, "10": {}, "npos": {}, "ndet": {}, "scorer": "tools/demo_eval.py"}
    for c in classes:
        lines = []
        if c not in missing:
            with open(comp4_path(results_dir, set_name, c)) as f:
                lines = [x for x in f.readlines() if x.strip()]
        _, _, a07, a10, npos, nd = voc_eval_class(lines, recs, names, c)
        out["07"][c] = float(a07)
        out["10"][c] = float(a10)
        out["npos"][c] = npos
        out["ndet"][c] = nd
    for m in ("07", "10"):
        out[m]["mAP"] = float(np.mean([out[m][c] for c in classes]))
    return out


def print_table(res, classes, log=print):
    log("%-14s %8s %8s %6s %6s" % ("class", "AP07", "AP10", "npos", "dets"))
    for c in classes:
        log("%-14s %8.2f %8.2f %6d %6d" % (c, 100 * res["07"][c], 100 * res["10"][c],
                                            res["npos"][c], res["ndet"][c]))
    log("mAP (VOC07 11-point): %.4f" % res["07"]["mAP"])
    log("mAP (VOC2010+ area):  %.4f" % res["10"]["mAP"])
    log("(scored by %s)" % res.get("scorer", "?"))


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
        classes = a.classes.split(",") if a.classes else VOC_CLASSES
        results = a.results
        names = None
    res = score(a.voc, a.set, results, classes, names)
    print_table(res, classes)
    if a.json:
        write_json(a.json, res, classes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
