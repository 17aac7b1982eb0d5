#!/usr/bin/python3
"""Golden data for the VOC evaluator (tests/test_eval_golden.c), under OUT/eval/:

  cases/NNN/VOC2007/...      random seeded VOC trees (GT with difficult objects, <part>s,
                             <owner>/<source> names, whitespace in numbers, degenerate boxes)
  cases/NNN/results/         comp4 files with ties (scores at 3, 2, 1 decimals or constant),
                             duplicates, IoU exactly 0.5 under the +1 convention, empty files
  cases/NNN/golden.json      APs from tools/voc_eval_ref.py (numpy): {"voc_eval", "devkit",
                             "stable"} x {"07", "10", "stats"}; NaN as null
  argsort.json               np.argsort results on tie-heavy arrays and on arrays built by
                             McIlroy's quicksort adversary (forcing numpy's heapsort fallback)
  numpy.json                 np.sum results (hex) and np.arange(0., 1.1, 0.1) (hex)

Everything is computed with numpy, never with the C code. Run: fx_eval.py --out DIR.
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import voc_eval_ref as ref  # noqa: E402

N_CASES = 40


def xml_for(rng, w, h, objs):
    """An annotation in VOC style; some variation that ElementTree reads the same way."""
    pretty = rng.random() < 0.5
    nl, ind = ("\n", "\t") if pretty else ("", "")
    p = ["<annotation>", "%s<folder>VOC2007</folder>" % ind,
         "%s<filename>x.jpg</filename>" % ind,
         "%s<source><database>The VOC2007 Database</database><name>not an object</name></source>"
         % ind,
         "%s<owner><flickrid>someone</flickrid><name>Fried Camels</name></owner>" % ind,
         "%s<size><width>%d</width><height>%d</height><depth>3</depth></size>" % (ind, w, h),
         "%s<segmented>0</segmented>" % ind]
    for o in objs:
        def num(v):
            return (" %d " % v) if rng.random() < 0.1 else ("%d" % v)
        box = "<bndbox><xmin>%s</xmin><ymin>%s</ymin><xmax>%s</xmax><ymax>%s</ymax></bndbox>" % (
            num(o["bbox"][0]), num(o["bbox"][1]), num(o["bbox"][2]), num(o["bbox"][3]))
        part = ""
        if rng.random() < 0.2:  # a person-layout part: its name and box are not the object's
            part = ("<part><name>head</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>3</xmax>"
                    "<ymax>3</ymax></bndbox></part>")
        inner = ["<name>%s</name>" % o["name"], "<pose>Unspecified</pose>",
                 "<truncated>%d</truncated>" % int(rng.random() < 0.3),
                 "<difficult>%d</difficult>" % o["difficult"]]
        if rng.random() < 0.5:
            inner += [part, box]
        else:
            inner += [box, part]
        p.append("%s<object>%s%s%s</object>" % (ind, nl, nl.join(ind * 2 + x for x in inner if x),
                                                nl + ind))
    p.append("</annotation>")
    return nl.join(p) + "\n"


def make_case(root, k):
    rng = np.random.default_rng(1000 + k)
    voc = os.path.join(root, "VOC2007")
    res = os.path.join(root, "results")
    for d in ("Annotations", "ImageSets/Main"):
        os.makedirs(os.path.join(voc, d), exist_ok=True)
    os.makedirs(res, exist_ok=True)
    big = k % 8 == 7
    n_img = int(rng.integers(30, 120)) if big else int(rng.integers(1, 30))
    classes = list(ref.VOC_CLASSES)
    active = [classes[i] for i in rng.choice(20, size=int(rng.integers(1, 9)), replace=False)]
    only_difficult = active[0] if rng.random() < 0.4 else None
    style = ["3", "2", "1", "const"][k % 4]
    nan_case = k % 6 == 5

    def score():
        if style == "const":
            return 0.5
        return round(float(rng.random()), int(style))

    ids = ["%06d" % (int(v)) for v in rng.choice(999999, size=n_img, replace=False)]
    dets = {c: [] for c in classes}
    for img in ids:
        w, h = int(rng.integers(60, 500)), int(rng.integers(60, 500))
        objs = []
        for _ in range(int(rng.integers(0, 6 if not big else 9))):
            c = active[int(rng.integers(0, len(active)))]
            x1, y1 = int(rng.integers(1, w - 10)), int(rng.integers(1, h - 10))
            x2, y2 = int(rng.integers(x1, w + 1)), int(rng.integers(y1, h + 1))
            if rng.random() < 0.02:
                x1, x2 = x2 + 1, x1  # degenerate: voc_eval.py keeps it as written
            diff = 1 if c == only_difficult else int(rng.random() < 0.25)
            objs.append({"name": c, "difficult": diff, "bbox": [x1, y1, x2, y2]})
        with open(os.path.join(voc, "Annotations", img + ".xml"), "w") as f:
            f.write(xml_for(rng, w, h, objs))
        for o in objs:
            x1, y1, x2, y2 = o["bbox"]
            for _ in range(int(rng.integers(0, 4)) if rng.random() < 0.85 else 0):
                r = rng.random()
                if r < 0.15 and (y2 - y1 + 1) % 2 == 0 and y2 >= y1:
                    box = (x1, y1, x2, y1 + (y2 - y1 + 1) // 2 - 1)  # IoU exactly 0.5 (+1 areas)
                elif r < 0.25:
                    box = (x1, y1, x2, y2)
                else:
                    j = rng.normal(0, max(2.0, 0.15 * (x2 - x1)), 4)
                    box = (x1 + j[0], y1 + j[1], x2 + j[2], y2 + j[3])
                dets[o["name"]].append((img, score(), box))
        for _ in range(int(rng.integers(0, 4))):  # false positives, any class
            if nan_case and rng.random() < 0.3:  # a class without positives: AP10 is NaN
                c = classes[int(rng.integers(0, 20))]
            else:
                c = active[int(rng.integers(0, len(active)))]
            x1, y1 = float(rng.random() * w), float(rng.random() * h)
            box = (x1, y1, x1 + float(rng.random() * 100), y1 + float(rng.random() * 100))
            dets[c].append((img, score(), box))
    order = rng.permutation(n_img)
    with open(os.path.join(voc, "ImageSets", "Main", "test.txt"), "w") as f:
        f.write("".join(ids[i] + "\n" for i in order))
    for c in classes:
        lines = dets[c]
        if rng.random() < 0.5:
            rng.shuffle(lines)
        text = "\n".join("%s %.3f %.1f %.1f %.1f %.1f" % (i, s, *b) for i, s, b in lines)
        with open(os.path.join(res, "comp4_det_test_%s.txt" % c), "w") as f:
            f.write(text + ("\n" if text and rng.random() < 0.5 else ""))
    golden = {}
    for name, kw in (("voc_eval", {}), ("devkit", {"iou_ge": True}), ("stable", {"stable": True})):
        golden[name] = ref.evaluate(voc, "test", res, **kw)
    with open(os.path.join(root, "golden.json"), "w") as f:
        json.dump(golden, f)


# ---- numpy's float64 argsort (generic introsort), ported to build adversarial inputs only.
# The golden permutations always come from np.argsort itself.

class Port:
    def __init__(self, less):
        self.less = less
        self.heapsorted = False

    def heap(self, a, lo, n):
        less = self.less
        self.heapsorted = True

        def get(i):
            return a[lo + i - 1]

        def put(i, v):
            a[lo + i - 1] = v
        for l in range(n >> 1, 0, -1):
            tmp = get(l)
            i, j = l, l << 1
            while j <= n:
                if j < n and less(get(j), get(j + 1)):
                    j += 1
                if less(tmp, get(j)):
                    put(i, get(j))
                    i, j = j, j + j
                else:
                    break
            put(i, tmp)
        while n > 1:
            tmp = get(n)
            put(n, get(1))
            n -= 1
            i, j = 1, 2
            while j <= n:
                if j < n and less(get(j), get(j + 1)):
                    j += 1
                if less(tmp, get(j)):
                    put(i, get(j))
                    i, j = j, j + j
                else:
                    break
            put(i, tmp)

    def argsort(self, n):
        less = self.less
        a = list(range(n))
        if n < 2:
            return a
        pl, pr = 0, n - 1
        stack = []
        cdepth = 2 * (n.bit_length() - 1)
        while True:
            if cdepth < 0:
                self.heap(a, pl, pr - pl + 1)
            else:
                while pr - pl > 15:
                    pm = pl + ((pr - pl) >> 1)
                    if less(a[pm], a[pl]):
                        a[pm], a[pl] = a[pl], a[pm]
                    if less(a[pr], a[pm]):
                        a[pr], a[pm] = a[pm], a[pr]
                    if less(a[pm], a[pl]):
                        a[pm], a[pl] = a[pl], a[pm]
                    vp = a[pm]
                    pi, pj = pl, pr - 1
                    a[pm], a[pj] = a[pj], a[pm]
                    while True:
                        pi += 1
                        while less(a[pi], vp):
                            pi += 1
                        pj -= 1
                        while less(vp, a[pj]):
                            pj -= 1
                        if pi >= pj:
                            break
                        a[pi], a[pj] = a[pj], a[pi]
                    a[pi], a[pr - 1] = a[pr - 1], a[pi]
                    cdepth -= 1
                    if pi - pl < pr - pi:
                        stack.append((pi + 1, pr, cdepth))
                        pr = pi - 1
                    else:
                        stack.append((pl, pi - 1, cdepth))
                        pl = pi + 1
                for i in range(pl + 1, pr + 1):
                    vi = a[i]
                    j = i
                    while j > pl and less(vi, a[j - 1]):
                        a[j] = a[j - 1]
                        j -= 1
                    a[j] = vi
            if not stack:
                break
            pl, pr, cdepth = stack.pop()
        return a


def killer(n):
    """McIlroy's adversary ("A Killer Adversary for Quicksort") against the port."""
    gas = n - 1
    val = [gas] * n
    state = {"solid": 0, "cand": 0}

    def less(x, y):
        if val[x] == gas and val[y] == gas:
            z = x if x == state["cand"] else y
            val[z] = state["solid"]
            state["solid"] += 1
        if val[x] == gas:
            state["cand"] = x
        elif val[y] == gas:
            state["cand"] = y
        return val[x] < val[y]
    p = Port(less)
    p.argsort(n)
    return [float(v) for v in val], p.heapsorted


def argsort_cases(rng):
    cases = []

    def add(v, tag):
        v = np.asarray(v, dtype=np.float64)
        idx = np.argsort(v)
        port = Port(lambda x, y: v[x] < v[y]).argsort(len(v))
        assert list(idx) == port, "the port disagrees with numpy (%s)" % tag
        cases.append({"tag": tag, "v": [float(x) for x in v], "idx": [int(i) for i in idx]})
    for n in list(range(0, 40)) + [50, 64, 100, 127, 128, 129, 200, 500, 1000, 3000]:
        add(rng.integers(0, 4, size=n).astype(float), "ties4 n=%d" % n)
        add(np.round(rng.random(n), 1), "1dec n=%d" % n)
        add(-np.round(rng.random(n), 3), "neg3dec n=%d" % n)
    for n in (17, 100, 1000):
        add(np.full(n, 0.5), "const n=%d" % n)
        add(np.arange(n, dtype=float), "asc n=%d" % n)
        add(np.arange(n, dtype=float)[::-1], "desc n=%d" % n)
        add(np.repeat(np.arange(n // 10 + 1, dtype=float), 10)[:n][::-1], "runs n=%d" % n)
    for n in (64, 300, 1000):
        v, used_heap = killer(n)
        assert used_heap, "the adversary did not reach the heapsort fallback"
        add(v, "killer n=%d (heapsort)" % n)
        add([-x for x in v], "killer-neg n=%d" % n)
    return cases


def numpy_cases(rng):
    sums = []
    for n in list(range(0, 20)) + [100, 128, 129, 255, 1000, 8191, 8192, 8193, 17000]:
        a = rng.random(n) * 10.0 ** rng.integers(-8, 8, size=n)
        if n % 3 == 0:
            a = -a
        sums.append({"a": [float(x) for x in a], "sum": float(np.sum(a)).hex(),
                     "mean": float(np.mean(a)).hex() if n else None})
    return {"sum": sums, "arange07": [float(t).hex() for t in np.arange(0.0, 1.1, 0.1)],
            "eps": float(np.finfo(np.float64).eps).hex()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    out = os.path.join(ap.parse_args().out, "eval")
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    for k in range(N_CASES):
        make_case(os.path.join(out, "cases", "%03d" % k), k)
    rng = np.random.default_rng(7)
    with open(os.path.join(out, "argsort.json"), "w") as f:
        json.dump(argsort_cases(rng), f)
    with open(os.path.join(out, "numpy.json"), "w") as f:
        json.dump(numpy_cases(rng), f)
    print("fx_eval: %d cases, argsort and numpy goldens in %s" % (N_CASES, out))


if __name__ == "__main__":
    main()
