#!/usr/bin/python3
"""PASCAL VOC detection AP, re-implemented from reading voc_eval.py (rbgirshick/py-faster-rcnn
lib/datasets/voc_eval.py and its copy in detectron2/evaluation/pascal_voc_evaluation.py).

It follows that algorithm operation by operation with numpy, so that its float64 results are
the reference the C evaluator (src/eval) is tested against:
  - annotations read with ElementTree: the root's <object> children, int() coordinates;
  - detections ranked with np.argsort(-confidence) (numpy's default, unstable quicksort);
  - IoU with +1 areas; a match needs IoU > ovthresh (iou_ge=True: >=, the MATLAB devkit);
  - tp/fp by np.cumsum, rec = tp / npos, prec = tp / max(tp + fp, float64 eps);
  - AP07: 11 points at np.arange(0., 1.1, 0.1); AP10: area under the precision envelope.
Options beyond the original: iou_ge and stable ties (np.argsort kind="stable").

Usage:
  voc_eval_ref.py score --voc DIR [--set test] --results DIR [--json FILE] [--classes a,b]
  voc_eval_ref.py gen --out DIR [--images 5000] [--seed 1]
      writes a synthetic VOC set (DIR/VOC2007) and comp4 results (DIR/results) for timing
"""
import argparse
import json
import math
import os
import sys
import time
import xml.etree.ElementTree as ET

import numpy as np

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor")


def read_annotation(path):
    """The objects of one annotation file, read the way parse_rec reads them."""
    root = ET.parse(path).getroot()
    found = []
    for node in root.findall("object"):
        box = node.find("bndbox")
        found.append({
            "name": node.find("name").text,
            "difficult": int(node.find("difficult").text),
            "bbox": [int(box.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")],
        })
    return found


def average_precision(rec, prec, use_07_metric):
    """voc_ap: the 11-point VOC07 value or the VOC2010+ area under the envelope."""
    if use_07_metric:
        total = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            reached = rec >= t
            p = 0 if np.sum(reached) == 0 else np.max(prec[reached])
            total = total + p / 11.0
        return total
    r = np.concatenate(([0.0], rec, [1.0]))
    p = np.concatenate(([0.0], prec, [0.0]))
    for k in range(p.size - 1, 0, -1):
        p[k - 1] = np.maximum(p[k - 1], p[k])
    steps = np.where(r[1:] != r[:-1])[0]
    return np.sum((r[steps + 1] - r[steps]) * p[steps + 1])


def score_class(det_path, records, image_ids, cls, ovthresh=0.5, use_07=False, iou_ge=False,
                stable=False, missing_ok=False):
    """Returns (rec, prec, ap, stats) for one class, like voc_eval(). missing_ok: a missing
    det_path counts as no detections (voc_eval() fails on it)."""
    gt = {}
    npos = 0
    for img in image_ids:
        objs = [o for o in records[img] if o["name"] == cls]
        hard = np.array([o["difficult"] for o in objs]).astype(bool)
        gt[img] = {"bbox": np.array([o["bbox"] for o in objs]), "difficult": hard,
                   "det": [False] * len(objs)}
        npos = npos + sum(~hard)

    if missing_ok and not os.path.exists(det_path):
        rows = []
    else:
        with open(det_path, "r") as f:
            rows = [line.strip().split(" ") for line in f.readlines()]
    det_ids = [r[0] for r in rows]
    conf = np.array([float(r[1]) for r in rows])
    boxes = np.array([[float(v) for v in r[2:]] for r in rows]).reshape(-1, 4)

    order = np.argsort(-conf, kind="stable") if stable else np.argsort(-conf)
    boxes = boxes[order, :]
    det_ids = [det_ids[k] for k in order]

    nd = len(det_ids)
    tp = np.zeros(nd)
    fp = np.zeros(nd)
    for d in range(nd):
        g = gt[det_ids[d]]
        bb = boxes[d, :].astype(float)
        best = -np.inf
        gboxes = g["bbox"].astype(float)
        if gboxes.size > 0:
            ixmin = np.maximum(gboxes[:, 0], bb[0])
            iymin = np.maximum(gboxes[:, 1], bb[1])
            ixmax = np.minimum(gboxes[:, 2], bb[2])
            iymax = np.minimum(gboxes[:, 3], bb[3])
            iw = np.maximum(ixmax - ixmin + 1.0, 0.0)
            ih = np.maximum(iymax - iymin + 1.0, 0.0)
            inters = iw * ih
            uni = ((bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0)
                   + (gboxes[:, 2] - gboxes[:, 0] + 1.0) * (gboxes[:, 3] - gboxes[:, 1] + 1.0)
                   - inters)
            ov = inters / uni
            best = np.max(ov)
            jbest = np.argmax(ov)
        hit = best >= ovthresh if iou_ge else best > ovthresh
        if hit:
            if not g["difficult"][jbest]:
                if not g["det"][jbest]:
                    tp[d] = 1.0
                    g["det"][jbest] = 1
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0

    fp = np.cumsum(fp)
    tp = np.cumsum(tp)
    with np.errstate(divide="ignore", invalid="ignore"):
        rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    ap = average_precision(rec, prec, use_07)
    stats = {"npos": int(npos), "ndet": nd, "tp": int(tp[-1]) if nd else 0,
             "fp": int(fp[-1]) if nd else 0}
    return rec, prec, ap, stats


def read_list(path):
    with open(path, "r") as f:
        return [x.strip() for x in f.readlines()]


def evaluate(voc, image_set, results, classes=VOC_CLASSES, ids=None, **kw):
    """{"07": {cls: ap, "mAP": m}, "10": {...}, "stats": {cls: {...}}} with NaN as None.
    ids: score only these images of the set (their detections must be the only ones)."""
    if ids is None:
        ids = read_list(os.path.join(voc, "ImageSets", "Main", image_set + ".txt"))
    records = {i: read_annotation(os.path.join(voc, "Annotations", i + ".xml")) for i in ids}
    out = {"07": {}, "10": {}, "stats": {}}
    for cls in classes:
        # one ranking per class serves both metrics (voc_eval() recomputes the same arrays)
        path = os.path.join(results, "comp4_det_%s_%s.txt" % (image_set, cls))
        rec, prec, _, stats = score_class(path, records, ids, cls, use_07=False, **kw)
        out["07"][cls] = average_precision(rec, prec, True)
        out["10"][cls] = average_precision(rec, prec, False)
        out["stats"][cls] = stats
    for key in ("07", "10"):
        out[key]["mAP"] = np.mean([out[key][cls] for cls in classes])
    for key in ("07", "10"):
        out[key] = {k: (None if math.isnan(v) else float(v)) for k, v in out[key].items()}
    return out


def generate(out, n_images, seed):
    """A synthetic VOC-style set with comp4 results (about 25 detections per image)."""
    rng = np.random.default_rng(seed)
    voc = os.path.join(out, "VOC2007")
    res = os.path.join(out, "results")
    for d in ("Annotations", "ImageSets/Main", "JPEGImages"):
        os.makedirs(os.path.join(voc, d), exist_ok=True)
    os.makedirs(res, exist_ok=True)
    ids = ["%06d" % (i + 1) for i in range(n_images)]
    lines = {c: [] for c in VOC_CLASSES}
    for img in ids:
        w, h = int(rng.integers(200, 500)), int(rng.integers(200, 500))
        parts = ["<annotation><filename>%s.jpg</filename><size><width>%d</width>"
                 "<height>%d</height><depth>3</depth></size>" % (img, w, h)]
        for _ in range(int(rng.integers(1, 6))):
            c = VOC_CLASSES[int(rng.integers(0, 20))]
            x1, y1 = int(rng.integers(1, w - 20)), int(rng.integers(1, h - 20))
            x2, y2 = int(rng.integers(x1 + 5, w + 1)), int(rng.integers(y1 + 5, h + 1))
            diff = int(rng.random() < 0.1)
            parts.append("<object><name>%s</name><pose>Unspecified</pose><truncated>0</truncated>"
                         "<difficult>%d</difficult><bndbox><xmin>%d</xmin><ymin>%d</ymin>"
                         "<xmax>%d</xmax><ymax>%d</ymax></bndbox></object>"
                         % (c, diff, x1, y1, x2, y2))
            for _ in range(int(rng.integers(0, 4))):
                j = rng.normal(0, 8, 4)
                lines[c].append("%s %.3f %.1f %.1f %.1f %.1f" % (
                    img, rng.random(), x1 + j[0], y1 + j[1], x2 + j[2], y2 + j[3]))
        for _ in range(int(rng.integers(5, 20))):
            c = VOC_CLASSES[int(rng.integers(0, 20))]
            x1, y1 = rng.random() * (w - 10), rng.random() * (h - 10)
            lines[c].append("%s %.3f %.1f %.1f %.1f %.1f" % (
                img, rng.random() * 0.5, x1 + 1, y1 + 1, x1 + 10 + rng.random() * (w - x1 - 10),
                y1 + 10 + rng.random() * (h - y1 - 10)))
        parts.append("</annotation>\n")
        with open(os.path.join(voc, "Annotations", img + ".xml"), "w") as f:
            f.write("".join(parts))
    with open(os.path.join(voc, "ImageSets", "Main", "test.txt"), "w") as f:
        f.write("\n".join(ids) + "\n")
    for c in VOC_CLASSES:
        with open(os.path.join(res, "comp4_det_test_%s.txt" % c), "w") as f:
            f.write("\n".join(lines[c]))
    return voc, res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("score")
    s.add_argument("--voc", required=True)
    s.add_argument("--set", default="test")
    s.add_argument("--results", required=True)
    s.add_argument("--json")
    s.add_argument("--classes")
    s.add_argument("--iou-rule", choices=("voc_eval", "devkit"), default="voc_eval")
    s.add_argument("--ties", choices=("numpy", "stable"), default="numpy")
    g = sub.add_parser("gen")
    g.add_argument("--out", required=True)
    g.add_argument("--images", type=int, default=5000)
    g.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if a.cmd == "gen":
        voc, res = generate(a.out, a.images, a.seed)
        print("wrote %s and %s" % (voc, res))
        return
    classes = tuple(a.classes.split(",")) if a.classes else VOC_CLASSES
    t0 = time.time()
    r = evaluate(a.voc, a.set, a.results, classes, iou_ge=a.iou_rule == "devkit",
                 stable=a.ties == "stable")
    dt = time.time() - t0
    for c in classes:
        print("%-12s %8s %8s" % (c, r["07"][c], r["10"][c]))
    print("mAP07 %s mAP10 %s (%.2f s)" % (r["07"]["mAP"], r["10"]["mAP"], dt))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"07": r["07"], "10": r["10"]}, f)


if __name__ == "__main__":
    sys.exit(main())
