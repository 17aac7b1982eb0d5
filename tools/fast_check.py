#!/usr/bin/python3
"""fast_check.py - what the fast mode (Winograd, `--fast`) changes in the detections.

  tools/fast_check.py [--frcnn build/frcnn] -m MODEL IMAGE...

Runs `frcnn detect` on the images in exact mode and in fast mode, matches the two lists greedily
(same class, highest IoU first, IoU >= 0.5) and prints per image: detections in each mode,
matched pairs, the largest box-corner difference (pixels) and score difference of the matched
pairs, their smallest IoU, and the highest score among the unmatched detections (a detection
near the score threshold can appear in one mode only). Standard library only.
"""
import argparse
import json
import subprocess
import sys


def detect(frcnn, model, images, fast):
    cmd = [frcnn, "detect", "-m", model, "--quiet"] + (["--fast"] if fast else []) + images
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode not in (0, 1):  # 1: some image failed (its line is an error object)
        sys.exit("fast_check: %s exited %d: %s" % (" ".join(cmd), r.returncode, r.stderr.strip()))
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def iou(a, b):
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    i = w * h
    return i / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - i)


def compare(ex, fa):
    pairs = sorted(((iou(d["box"], e["box"]), i, j) for i, d in enumerate(ex) for j, e in enumerate(fa)
                    if d["class_id"] == e["class_id"]), reverse=True)
    used_e, used_f, matched = set(), set(), []
    for v, i, j in pairs:
        if v < 0.5 or i in used_e or j in used_f:
            continue
        used_e.add(i)
        used_f.add(j)
        matched.append((v, ex[i], fa[j]))
    box = max((abs(p - q) for _, d, e in matched for p, q in zip(d["box"], e["box"])), default=0.0)
    score = max((abs(d["score"] - e["score"]) for _, d, e in matched), default=0.0)
    low = min((v for v, _, _ in matched), default=1.0)
    unmatched = [d["score"] for i, d in enumerate(ex) if i not in used_e] + \
                [e["score"] for j, e in enumerate(fa) if j not in used_f]
    return len(matched), box, score, low, max(unmatched, default=0.0), len(unmatched)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frcnn", default="build/frcnn")
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("images", nargs="+")
    a = ap.parse_args()
    ex = detect(a.frcnn, a.model, a.images, False)
    fa = detect(a.frcnn, a.model, a.images, True)
    print("%-28s %5s %5s %7s %9s %9s %7s %9s" % ("image", "exact", "fast", "matched", "max box", "max score",
                                                 "min IoU", "unmatched"))
    for img, e, f in zip(a.images, ex, fa):
        if "detections" not in e or "detections" not in f:
            print("%-28s error: %s" % (img.split("/")[-1][:28], e.get("error", f.get("error"))))
            continue
        n, box, score, low, um, nu = compare(e["detections"], f["detections"])
        print("%-28s %5d %5d %7d %7.3fpx %9.2e %7.4f %3d (max score %.3f)" % (
            img.split("/")[-1][:28], len(e["detections"]), len(f["detections"]), n, box, score, low, nu, um))
    return 0


if __name__ == "__main__":
    sys.exit(main())
