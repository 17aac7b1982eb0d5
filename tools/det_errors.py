#!/usr/bin/python3
"""det_errors.py - where a detector's false positives come from, on a VOC-layout split.

  tools/det_errors.py --voc VOCdevkit/VOC2007 --results DIR [--set test] [--score 0.3 0.5 0.7]

Reads the comp4 files (`comp4_det_<set>_<class>.txt`, as `frcnn eval --out DIR` and
tools/demo_eval.py write them) and the annotations, takes every detection scoring at least each
--score threshold, highest first, and sorts it by its best-overlapping ground-truth object
(VOC's inclusive-pixel IoU): TP (same class, IoU >= 0.5, object not yet matched), duplicate
(that object already matched), difficult (matches a difficult object), wrong-class (IoU >= 0.5
with an object of another class), poor-loc (same class, 0.1 <= IoU < 0.5), poor-loc+wrong,
background (IoU < 0.1 with everything). Then the recall at IoU 0.5 (any score) by object size.
"""
import argparse
import glob
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import demo_eval  # noqa: E402
import voc_eval_ref  # noqa: E402


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = ix * iy
    u = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter
    return inter / u


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--voc", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--set", default="test")
    ap.add_argument("--score", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    a = ap.parse_args()
    ids = demo_eval.read_set(a.voc, a.set)
    gts = {i: voc_eval_ref.read_annotation(os.path.join(a.voc, "Annotations", i + ".xml")) for i in ids}
    dets = []
    pattern = os.path.join(a.results, "comp4_det_%s_*.txt" % a.set)
    for f in glob.glob(pattern):
        cls = os.path.basename(f)[len("comp4_det_%s_" % a.set):-4]
        for line in open(f):
            p = line.split()
            if len(p) == 6 and p[0] in gts:
                dets.append((float(p[1]), p[0], cls, [float(v) for v in p[2:]]))
    if not dets:
        sys.exit("det_errors: no detections in %s" % pattern)
    dets.sort(key=lambda d: -d[0])
    kinds = ("TP", "duplicate", "difficult", "wrong-class", "poor-loc", "poor-loc+wrong", "background")
    print("%-7s" % "score>=" + "".join("%15s" % k for k in kinds))
    for thr in a.score:
        used, cnt = set(), dict.fromkeys(kinds, 0)
        for s, img, cls, box in dets:
            if s < thr:
                break
            best, k, obj = 0.0, -1, None
            for j, o in enumerate(gts[img]):
                v = iou(o["bbox"], box)
                if v > best:
                    best, k, obj = v, j, o
            if obj is None or best < 0.1:
                t = "background"
            elif best >= 0.5 and obj["name"] == cls:
                t = "difficult" if obj["difficult"] else "duplicate" if (img, k) in used else "TP"
                used.add((img, k))
            elif best >= 0.5:
                t = "wrong-class"
            else:
                t = "poor-loc" if obj["name"] == cls else "poor-loc+wrong"
            cnt[t] += 1
        print("%-7.2f" % thr + "".join("%15d" % cnt[k] for k in kinds))
    print("\nrecall at IoU 0.5 (same class, any score) by the object's shorter side:")
    bins = {}
    for img in ids:
        mine = [d for d in dets if d[1] == img]
        for o in gts[img]:
            if o["difficult"]:
                continue
            b = o["bbox"]
            side = min(b[2] - b[0] + 1, b[3] - b[1] + 1)
            hit = any(d[2] == o["name"] and iou(b, d[3]) >= 0.5 for d in mine)
            bins.setdefault(min(int(side // 16), 6), []).append(hit)
    for k in sorted(bins):
        v = bins[k]
        print("  %3d-%s px: %4d objects, recall %.2f" % (k * 16, "%3d" % (k * 16 + 15) if k < 6 else "   ", len(v),
                                                          sum(v) / len(v)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
