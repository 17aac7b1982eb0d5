#!/usr/bin/python3
"""shapes.py - a deterministic synthetic detection dataset in PASCAL VOC layout (the demo model's data).

  shapes.py --out DIR [--seed S] [--n-train N] [--n-val N] [--n-test M] [--size WxH]
            [--quality Q] [--force] [--quiet]

Writes DIR/VOC2007/ (DIR is the VOCdevkit root):
  Annotations/<id>.xml          VOC XML: <size>, one <object> per shape with <name>, <pose>,
                                <truncated>, <difficult>, <bndbox> (1-based inclusive pixels)
  ImageSets/Main/<set>.txt      train, val, test, trainval (ids, one per line)
  ImageSets/Main/<cls>_<set>.txt  VOC per-class lists: "<id> 1" (present), "-1" (absent),
                                " 0" (only difficult instances)
  JPEGImages/<id>.jpg           RGB JPEG (PIL, quality Q)
  shapes.json                   the generation parameters and the dataset statistics
An existing dataset with the same parameters (shapes.json) is kept unless --force.

Classes (in this order): circle, square, triangle, star. Each image has a textured background
(two-colour gradient, smooth low-frequency noise, a faint stripe/checker/grid pattern, thin
clutter lines) and 2..8 shapes of log-uniform size (circumscribed diameter 20..140 px at
240 px image height, 8% of them tiny: 6..15 px; scaled with min(W, H)), random colour (kept
at a distance from the local background), random rotation, solid/shaded/striped fill; later
shapes and occasional bars drawn on top occlude earlier ones, shapes may be cut by the image
border. Placements that would leave an
object less than 20% visible are redrawn. Per-pixel Gaussian noise is added last, so no
two image regions are exactly flat (semantics.md D: ties in RPN scores).

Boxes are the bounding box of the object's visible pixels (VOC: the visible extent).
difficult = 1 when the visible part is under 40% of the whole shape (occluded or cut by the
border) or the visible box's longer side is under 14 px (scaled like the sizes);
truncated = 1 when the border cuts the shape.

Determinism: image i of split s (train 0, val 1, test 2) draws from
numpy.random.default_rng([seed, s, i]) only, so a split's images do not depend on the size of
the other splits (the test split is the same whatever --n-train is). Ids: train 1xxxxx,
val 2xxxxx, test 3xxxxx (i + 1 in the last five digits). Same bytes for the same seed, numpy,
PIL and libjpeg versions.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ["circle", "square", "triangle", "star"]
SPLITS = ["train", "val", "test"]
MAX_PER_SPLIT = 99999
GENERATOR_VERSION = 1  # bump when the images change for a given seed

# Sizes at the reference height of 240 px (scaled by min(W, H) / 240).
SIZE_MIN, SIZE_MAX = 20.0, 140.0  # circumscribed diameter, log-uniform
TINY_P, TINY_MIN, TINY_MAX = 0.08, 6.0, 15.0  # a few tiny shapes (mostly difficult)
TINY_SIDE = 14.0      # visible box longer side below this -> difficult
MIN_VISIBLE = 0.20    # placements leaving an object less visible are redrawn
DIFFICULT_VISIBLE = 0.40
MIN_COLOR_DIST = 90.0  # RGB distance between a shape's colour and its local background
MIN_OBJECTS, MAX_OBJECTS = 2, 8  # shapes attempted per image (placements may fail)


def image_id(split_index, i):
    return "%d%05d" % (split_index + 1, i + 1)


# ----------------------------------------------------------------------------------------------
# Shapes: polygons / ellipses in canvas coordinates


def shape_geometry(cls, cx, cy, s, rng):
    """Returns ("ellipse", bbox) or ("polygon", points) for a shape of class cls with its
    circumscribed diameter about s, centred at (cx, cy), randomly rotated."""
    r = s / 2.0
    theta = rng.uniform(0, 2 * math.pi)
    if cls == "circle":
        return "ellipse", (cx - r, cy - r, cx + r, cy + r)
    if cls == "square":
        n, radii, phase = 4, [r] * 4, math.pi / 4
    elif cls == "triangle":
        n, radii, phase = 3, [r] * 3, -math.pi / 2
    else:  # star: 5 points, inner radius 0.38..0.5 of the outer one
        inner = r * rng.uniform(0.38, 0.5)
        n, radii, phase = 10, [r if k % 2 == 0 else inner for k in range(10)], -math.pi / 2
    pts = []
    for k in range(n):
        a = theta + phase + 2 * math.pi * k / n
        pts.append((cx + radii[k] * math.cos(a), cy + radii[k] * math.sin(a)))
    return "polygon", pts


def draw_mask(kind, geom, x0, y0, w, h):
    """Boolean mask (h, w) of a shape, for the box of that size whose corner is (x0, y0)."""
    m = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(m)
    if kind == "ellipse":
        d.ellipse([geom[0] - x0, geom[1] - y0, geom[2] - x0, geom[3] - y0], fill=255)
    else:
        d.polygon([(x - x0, y - y0) for x, y in geom], fill=255)
    return np.asarray(m) > 127


# ----------------------------------------------------------------------------------------------
# Textures


def smooth_noise(rng, h, w, cell):
    """Low-frequency RGB noise (h, w, 3) in about [-1, 1]: a coarse random grid upsampled
    bicubically."""
    gh, gw = max(2, h // cell + 2), max(2, w // cell + 2)
    g = rng.integers(0, 256, size=(gh, gw, 3), dtype=np.uint8)
    im = Image.fromarray(g, mode="RGB").resize((w, h), Image.BICUBIC)
    return np.asarray(im).astype(np.float32) * np.float32(1 / 128.0) - np.float32(1.0)


def ramp(h, w, a):
    """(h, w) float32 in [0, 1] increasing along the direction of angle a."""
    x = np.arange(w, dtype=np.float32) * np.float32(math.cos(a))
    y = np.arange(h, dtype=np.float32) * np.float32(math.sin(a))
    t = y[:, None] + x[None, :]
    lo, hi = float(t.min()), float(t.max())
    return (t - np.float32(lo)) * np.float32(1.0 / max(hi - lo, 1.0))


def background(rng, h, w):
    """A textured float32 RGB background (h, w, 3) in 0..255."""
    c0 = rng.uniform(30, 225, size=3).astype(np.float32)
    c1 = np.clip(c0 + rng.normal(0, 50, size=3), 0, 255).astype(np.float32)
    t = ramp(h, w, rng.uniform(0, 2 * math.pi))[:, :, None]
    img = c0 + (c1 - c0) * t
    img += smooth_noise(rng, h, w, int(rng.integers(16, 64))) * np.float32(rng.uniform(8, 30))
    kind = rng.integers(0, 4)
    amp = np.float32(rng.uniform(6, 18))
    if kind == 1:  # stripes
        f = rng.uniform(0.05, 0.3)
        b = rng.uniform(0, 2 * math.pi)
        x = np.arange(w, dtype=np.float32) * np.float32(f * math.cos(b))
        y = np.arange(h, dtype=np.float32) * np.float32(f * math.sin(b))
        img += (amp * np.sin(y[:, None] + x[None, :]))[:, :, None]
    elif kind == 2:  # checker
        p = int(rng.integers(6, 24))
        cx = (np.arange(w) // p) % 2
        cy = (np.arange(h) // p) % 2
        img += (amp * ((cx[None, :] ^ cy[:, None]) * 2 - 1).astype(np.float32))[:, :, None]
    elif kind == 3:  # grid lines
        p = int(rng.integers(10, 32))
        gx = (np.arange(w) % p) < 1.5
        gy = (np.arange(h) % p) < 1.5
        img += (amp * (gx[None, :] | gy[:, None]).astype(np.float32))[:, :, None]
    # thin clutter lines (behind the shapes)
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(pil)
    for _ in range(int(rng.integers(0, 6))):
        p0 = (rng.uniform(0, w), rng.uniform(0, h))
        p1 = (p0[0] + rng.normal(0, w / 3), p0[1] + rng.normal(0, h / 3))
        col = tuple(int(v) for v in rng.integers(0, 256, size=3))
        d.line([p0, p1], fill=col, width=int(rng.integers(1, 3)))
    return np.asarray(pil).astype(np.float32)


def pick_color(rng, bg_mean):
    """A colour at least MIN_COLOR_DIST from bg_mean (the farthest of up to 30 tries)."""
    best, best_d = None, -1.0
    for _ in range(30):
        c = rng.uniform(0, 255, size=3)
        d = float(np.linalg.norm(c - bg_mean))
        if d > best_d:
            best, best_d = c, d
        if d >= MIN_COLOR_DIST:
            break
    return best.astype(np.float32)


def fill_texture(rng, color, h, w):
    """The shape's fill (h, w, 3) for its box: solid, shaded or striped."""
    kind = rng.integers(0, 3)
    base = np.broadcast_to(color[None, None, :], (h, w, 3))
    if kind == 0:
        return base
    t = ramp(h, w, rng.uniform(0, 2 * math.pi))
    if kind == 1:  # shading
        k = np.float32(rng.uniform(0.6, 1.0)) + np.float32(rng.uniform(0.2, 0.5)) * t
        return np.clip(base * k[:, :, None], 0, 255)
    second = np.clip(color + rng.normal(0, 60, size=3), 0, 255).astype(np.float32)
    sel = (t * (max(h, w) / rng.uniform(3, 8))) % 2 < 1
    return np.where(sel[:, :, None], base, second[None, None, :])


# ----------------------------------------------------------------------------------------------
# One image


def geom_box(kind, geom):
    if kind == "ellipse":
        x0, y0, x1, y1 = geom
    else:
        xs = [p[0] for p in geom]
        ys = [p[1] for p in geom]
        x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
    return int(math.floor(x0)) - 1, int(math.floor(y0)) - 1, int(math.ceil(x1)) + 2, int(math.ceil(y1)) + 2


def make_image(rng, W, H):
    """Returns (uint8 RGB array (H, W, 3), [object dicts]) for one image."""
    scale = min(W, H) / 240.0
    img = background(rng, H, W)
    n = int(rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1))
    objs = []  # cls, area (whole shape, border included), vis (visible pixels)
    owner = np.full((H, W), -1, dtype=np.int32)  # object owning each pixel (-2: a bar)

    def place(mask, x0, y0, area, new):
        """Clips a mask whose corner is (x0, y0) to the image; returns (slices, clipped mask,
        pixels each earlier object would lose) or None when an object would become less than
        MIN_VISIBLE visible (new: the mask is a new object with that area)."""
        cx0, cy0 = max(x0, 0), max(y0, 0)
        cx1, cy1 = min(x0 + mask.shape[1], W), min(y0 + mask.shape[0], H)
        if cx0 >= cx1 or cy0 >= cy1:
            return None
        m = mask[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
        vis_new = int(m.sum())
        if new and vis_new < MIN_VISIBLE * area:
            return None
        sl = (slice(cy0, cy1), slice(cx0, cx1))
        under = owner[sl][m]
        lost = np.bincount(under[under >= 0], minlength=len(objs)) if len(objs) else np.zeros(0, int)
        for j, o in enumerate(objs):
            if o["vis"] - lost[j] < MIN_VISIBLE * o["area"]:
                return None
        return sl, m, lost, vis_new

    for _ in range(n):
        for _try in range(10):
            cls = CLASSES[int(rng.integers(0, len(CLASSES)))]
            lo, hi = (TINY_MIN, TINY_MAX) if rng.uniform() < TINY_P else (SIZE_MIN, SIZE_MAX)
            s = math.exp(rng.uniform(math.log(lo), math.log(hi))) * scale
            cx, cy = rng.uniform(0, W), rng.uniform(0, H)
            kind, geom = shape_geometry(cls, cx, cy, s, rng)
            x0, y0, x1, y1 = geom_box(kind, geom)
            mask = draw_mask(kind, geom, x0, y0, x1 - x0, y1 - y0)
            area = int(mask.sum())
            if area < 4:
                continue
            p = place(mask, x0, y0, area, True)
            if p is None:
                continue
            sl, m, lost, vis_new = p
            sub = img[sl]
            bg_mean = sub[m].mean(axis=0)
            color = pick_color(rng, bg_mean)
            tex = fill_texture(rng, color, m.shape[0], m.shape[1])
            sub[m] = tex[m]
            for j in range(len(objs)):
                objs[j]["vis"] -= int(lost[j])
            owner[sl][m] = len(objs)
            objs.append({"cls": cls, "area": area, "vis": vis_new, "cut": vis_new < area})
            break
    # occluding bars on top (not objects)
    bars = int(rng.integers(1, 3)) if rng.uniform() < 0.35 else 0
    for _ in range(bars):
        p0 = (rng.uniform(0, W), rng.uniform(0, H))
        a = rng.uniform(0, 2 * math.pi)
        L = rng.uniform(0.3, 1.0) * max(W, H)
        p1 = (p0[0] + L * math.cos(a), p0[1] + L * math.sin(a))
        width = int(rng.integers(3, max(4, int(10 * scale))))
        col = rng.uniform(0, 255, size=3).astype(np.float32)
        pil_m = Image.new("L", (W, H), 0)
        ImageDraw.Draw(pil_m).line([p0, p1], fill=255, width=width)
        p = place(np.asarray(pil_m) > 127, 0, 0, 0, False)
        if p is None:
            continue
        sl, m, lost, _ = p
        img[sl][m] = col
        for j in range(len(objs)):
            objs[j]["vis"] -= int(lost[j])
        owner[sl][m] = -2
    # annotations from the visible pixels
    out = []
    for j, o in enumerate(objs):
        ys, xs = np.nonzero(owner == j)
        x0, x1, y0, y1 = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
        frac = o["vis"] / float(o["area"])
        side = max(x1 - x0 + 1, y1 - y0 + 1)
        truncated = int(o["cut"])
        difficult = int(frac < DIFFICULT_VISIBLE or side < TINY_SIDE * scale)
        out.append({"name": o["cls"], "box": [x0 + 1, y0 + 1, x1 + 1, y1 + 1],  # VOC 1-based
                    "truncated": truncated, "difficult": difficult, "visible": frac})
    img += rng.standard_normal(size=img.shape, dtype=np.float32) * np.float32(rng.uniform(3, 8))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), out


def annotation_xml(iid, W, H, objs):
    lines = ["<annotation>", "\t<folder>VOC2007</folder>", "\t<filename>%s.jpg</filename>" % iid,
             "\t<source>", "\t\t<database>frcnn shapes (tools/shapes.py)</database>", "\t</source>",
             "\t<size>", "\t\t<width>%d</width>" % W, "\t\t<height>%d</height>" % H,
             "\t\t<depth>3</depth>", "\t</size>", "\t<segmented>0</segmented>"]
    for o in objs:
        b = o["box"]
        lines += ["\t<object>", "\t\t<name>%s</name>" % o["name"], "\t\t<pose>Unspecified</pose>",
                  "\t\t<truncated>%d</truncated>" % o["truncated"],
                  "\t\t<difficult>%d</difficult>" % o["difficult"], "\t\t<bndbox>",
                  "\t\t\t<xmin>%d</xmin>" % b[0], "\t\t\t<ymin>%d</ymin>" % b[1],
                  "\t\t\t<xmax>%d</xmax>" % b[2], "\t\t\t<ymax>%d</ymax>" % b[3],
                  "\t\t</bndbox>", "\t</object>"]
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# The dataset


def params_of(a):
    W, H = a.size
    return {"generator": "tools/shapes.py", "version": GENERATOR_VERSION, "seed": a.seed,
            "n_train": a.n_train, "n_val": a.n_val, "n_test": a.n_test, "width": W,
            "height": H, "quality": a.quality, "classes": CLASSES}


def generate(out, seed=0, n_train=1000, n_val=50, n_test=200, size=(320, 240), quality=90,
             force=False, log=print):
    """Writes the dataset under out (the VOCdevkit root); returns the VOC2007 directory.
    Skips the work when out/VOC2007/shapes.json records the same parameters (unless force)."""
    a = argparse.Namespace(seed=seed, n_train=n_train, n_val=n_val, n_test=n_test, size=size,
                           quality=quality)
    for k in ("n_train", "n_val", "n_test"):
        v = getattr(a, k)
        if not 0 <= v <= MAX_PER_SPLIT:
            raise ValueError("--%s must be in 0..%d" % (k.replace("_", "-"), MAX_PER_SPLIT))
    W, H = size
    if not (32 <= W <= 4096 and 32 <= H <= 4096):
        raise ValueError("--size: each side must be in 32..4096")
    root = os.path.join(out, "VOC2007")
    params = params_of(a)
    manifest = os.path.join(root, "shapes.json")
    if not force and os.path.exists(manifest):
        try:
            with open(manifest) as f:
                old = json.load(f)
            if old.get("params") == params:
                log("shapes: %s is up to date" % root)
                return root
        except (OSError, ValueError):
            pass
    for d in ("Annotations", "ImageSets/Main", "JPEGImages"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    t0 = time.time()
    counts = {n: {s: [0, 0] for s in SPLITS} for n in CLASSES}  # [objects, difficult]
    sides = {s: [] for s in SPLITS}
    lists = {}
    presence = {}
    for si, split in enumerate(SPLITS):
        ids = []
        for i in range(getattr(a, "n_" + split)):
            iid = image_id(si, i)
            rng = np.random.default_rng([seed, si, i])
            img, objs = make_image(rng, W, H)
            Image.fromarray(img).save(os.path.join(root, "JPEGImages", iid + ".jpg"),
                                      quality=quality)
            with open(os.path.join(root, "Annotations", iid + ".xml"), "w") as f:
                f.write(annotation_xml(iid, W, H, objs))
            pres = {}
            for o in objs:
                counts[o["name"]][split][0] += 1
                counts[o["name"]][split][1] += o["difficult"]
                b = o["box"]
                sides[split].append(max(b[2] - b[0] + 1, b[3] - b[1] + 1))
                p = 0 if o["difficult"] else 1
                pres[o["name"]] = max(pres.get(o["name"], 0), p)
            presence[iid] = pres
            ids.append(iid)
        lists[split] = ids
    lists["trainval"] = lists["train"] + lists["val"]
    main = os.path.join(root, "ImageSets", "Main")
    for s, ids in lists.items():
        with open(os.path.join(main, s + ".txt"), "w") as f:
            f.write("".join(i + "\n" for i in ids))
        for c in CLASSES:
            with open(os.path.join(main, "%s_%s.txt" % (c, s)), "w") as f:
                for i in ids:
                    v = presence[i].get(c, -1)
                    f.write("%s %2d\n" % (i, v))
    stats = {}
    for s in SPLITS:
        sd = sorted(sides[s])
        stats[s] = {
            "images": len(lists[s]),
            "objects": sum(counts[c][s][0] for c in CLASSES),
            "difficult": sum(counts[c][s][1] for c in CLASSES),
            "per_class": {c: {"objects": counts[c][s][0], "difficult": counts[c][s][1]}
                          for c in CLASSES},
            "box_side_px": ({"min": sd[0], "median": sd[len(sd) // 2], "max": sd[-1]} if sd else None),
        }
    with open(manifest, "w") as f:
        json.dump({"params": params, "stats": stats}, f, indent=1)
        f.write("\n")
    n = sum(len(lists[s]) for s in SPLITS)
    log("shapes: wrote %d images to %s in %.1f s" % (n, root, time.time() - t0))
    for s in SPLITS:
        st = stats[s]
        if st["images"]:
            log("shapes:   %-5s %5d images, %5d objects (%d difficult): %s" % (
                s, st["images"], st["objects"], st["difficult"],
                ", ".join("%s %d/%d" % (c, v["objects"], v["difficult"])
                          for c, v in st["per_class"].items())))
    return root


def parse_size(s):
    try:
        w, h = s.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError("--size wants WxH, e.g. 320x240")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.split("\n")[2:]))
    ap.add_argument("--out", required=True, help="VOCdevkit root (VOC2007/ is created inside)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-train", type=int, default=1000)
    ap.add_argument("--n-val", type=int, default=50)
    ap.add_argument("--n-test", type=int, default=200)
    ap.add_argument("--size", type=parse_size, default=(320, 240), help="image WxH (320x240)")
    ap.add_argument("--quality", type=int, default=90, help="JPEG quality (90)")
    ap.add_argument("--force", action="store_true", help="regenerate even if up to date")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    if not 1 <= a.quality <= 100:
        ap.error("--quality must be in 1..100")
    try:
        generate(a.out, a.seed, a.n_train, a.n_val, a.n_test, a.size, a.quality, a.force,
                 log=(lambda *_: None) if a.quiet else print)
    except ValueError as e:
        ap.error(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
