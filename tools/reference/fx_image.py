#!/usr/bin/python3
"""fx_image.py - golden data for tests/test_image.c: decode, EXIF orientation and the two resize
pipelines, computed with PIL / numpy (never with the C code).

  --out DIR        writes DIR/image/* and the manifest DIR/image/manifest.txt
  --make-data DIR  (re)writes the small committed inputs of tests/data/images

Manifest lines (whitespace separated; files relative to DIR/image):
  decode NAME.png W H EXPECT.rgb      PIL Image.open(..).convert("RGB") of a lossless file
  exif NAME.png W H EXPECT.rgb        same after detectron2's _apply_exif_orientation
  size RULE W H MIN MAX OW OH        resized size; RULE d2 (detectron2) or py (py-faster-rcnn)
  jpeg PATH W H EXPECT.rgb            PIL (libjpeg-turbo) decode of a JPEG, for the stb comparison
  pil IN.rgb W H OW OH EXPECT.rgb     Image.resize((OW, OH), BILINEAR) of a raw RGB image
  d2 IN.rgb W H MIN MAX OW OH EXPECT.f32
        detectron2 input: ResizeShortestEdge(MIN, MAX) output size, PIL resize of the BGR array,
        then (x - PIXEL_MEAN) / PIXEL_STD in float32 with torch, BGR, the R-101 C4 constants
  cv IN.rgb W H OW OH EXPECT.f32
        cv2.resize(float32 RGB image, (OW, OH), INTER_LINEAR) emulated in numpy (dsize form)
  pyfrcnn IN.rgb W H MIN MAX OW OH EXPECT.f32
        py-faster-rcnn _get_image_blob: BGR float32 minus PIXEL_MEANS (float64), then
        cv2.resize(fx=fy=im_scale, INTER_LINEAR) emulated in numpy
*.rgb are raw uint8 RGB rows, *.f32 raw little-endian float32 HWC.

The OpenCV emulation follows modules/imgproc/src/resize.cpp (resizeGeneric_ with
HResizeLinear/VResizeLinear on float, and the INTER_AREA fast path that INTER_LINEAR takes for an
exact 2x downscale). When cv2 is importable it is also checked against the real cv2.resize.
"""
import argparse
import glob
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image

D2_MEAN = [103.530, 116.280, 123.675]  # detectron2 R-101 C4, BGR
D2_STD = [1.0, 1.0, 1.0]
PY_MEANS = np.array([[[102.9801, 115.9465, 122.7717]]])  # py-faster-rcnn cfg.PIXEL_MEANS, BGR


def texture(w, h, seed):
    """Deterministic photo-like RGB uint8: gradients, edges and noise."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    base = np.stack([
        128 + 100 * np.sin(x / (3 + w / 17.0)) * np.cos(y / (5 + h / 13.0)),
        (x * 255.0 / max(w - 1, 1)),
        (y * 255.0 / max(h - 1, 1)),
    ], axis=2)
    base[(x // 7 + y // 5) % 3 == 0] *= 0.5
    base += rng.normal(0, 18, size=base.shape)
    return np.clip(np.rint(base), 0, 255).astype(np.uint8)


# ---- OpenCV INTER_LINEAR on float32, emulated ------------------------------------------------

def cv_linear_f32(src, ow, oh, inv_sx, inv_sy):
    h, w, _ = src.shape
    if (ow, oh) == (w, h):
        return src.copy()
    scale_x, scale_y = 1.0 / inv_sx, 1.0 / inv_sy
    isx, isy = int(np.rint(scale_x)), int(np.rint(scale_y))
    eps = np.finfo(np.float64).eps
    if abs(scale_x - isx) < eps and abs(scale_y - isy) < eps and isx == 2 and isy == 2:
        return cv_area2_f32(src, ow, oh)
    dx = np.arange(ow)
    fx = ((dx + 0.5) * scale_x - 0.5).astype(np.float32)
    sx = np.floor(fx).astype(np.int64)
    fx = (fx - sx.astype(np.float32)).astype(np.float32)
    left = sx < 0
    fx[left] = 0
    sx[left] = 0
    right = sx + 1 >= w
    xmax = int(np.argmax(right)) if right.any() else ow
    clamp = sx >= w - 1
    fx[clamp] = 0
    sx[clamp] = w - 1
    a0 = np.float32(1) - fx
    a1 = fx
    hx = np.empty((h, ow, 3), np.float32)
    s1 = np.minimum(sx + 1, w - 1)
    hx[:, :xmax] = (src[:, sx[:xmax]] * a0[None, :xmax, None]
                    + src[:, s1[:xmax]] * a1[None, :xmax, None])
    hx[:, xmax:] = src[:, sx[xmax:]]
    dy = np.arange(oh)
    fy = ((dy + 0.5) * scale_y - 0.5).astype(np.float32)
    sy = np.floor(fy).astype(np.int64)
    fy = (fy - sy.astype(np.float32)).astype(np.float32)
    b0 = (np.float32(1) - fy)[:, None, None]
    b1 = fy[:, None, None]
    r0 = np.clip(sy, 0, h - 1)
    r1 = np.clip(sy + 1, 0, h - 1)
    return (hx[r0] * b0 + hx[r1] * b1).astype(np.float32)


def cv_area2_f32(src, ow, oh):
    h, w, _ = src.shape
    out = np.empty((oh, ow, 3), np.float32)
    for dy in range(oh):
        y0 = 2 * dy
        for dx in range(ow):
            x0 = 2 * dx
            if y0 + 2 <= h and x0 + 2 <= w:
                a, b = src[y0, x0], src[y0, x0 + 1]
                c, d = src[y0 + 1, x0], src[y0 + 1, x0 + 1]
                out[dy, dx] = (((a + b) + c) + d) * np.float32(0.25)
            else:
                s = np.zeros(3, np.float32)
                n = 0
                for yy in range(y0, min(y0 + 2, h)):
                    for xx in range(x0, min(x0 + 2, w)):
                        s = s + src[yy, xx]
                        n += 1
                out[dy, dx] = s / np.float32(n)
    return out


def cv_check(src, ow, oh, fx=None):
    """Compares the emulation with the real cv2.resize when cv2 is installed."""
    try:
        import cv2
    except ImportError:
        return
    if fx is None:
        real = cv2.resize(src, (ow, oh), interpolation=cv2.INTER_LINEAR)
        emu = cv_linear_f32(src, ow, oh, ow / src.shape[1], oh / src.shape[0])
    else:
        real = cv2.resize(src, None, None, fx=fx, fy=fx, interpolation=cv2.INTER_LINEAR)
        emu = cv_linear_f32(src, ow, oh, fx, fx)
    if real.shape != emu.shape:
        sys.exit("fx_image: cv2 size %s != emulated %s" % (real.shape, emu.shape))
    diff = float(np.abs(real.astype(np.float64) - emu).max())
    if diff > 1e-3:
        sys.exit("fx_image: OpenCV emulation differs from cv2 by %g" % diff)


# ---- reference pipelines ---------------------------------------------------------------------

def d2_output_shape(h, w, short, max_size):
    """detectron2 ResizeShortestEdge.get_output_shape."""
    size = short * 1.0
    scale = size / min(h, w)
    if h < w:
        newh, neww = size, scale * w
    else:
        newh, neww = scale * h, size
    if max(newh, neww) > max_size:
        scale = max_size * 1.0 / max(newh, neww)
        newh = newh * scale
        neww = neww * scale
    return int(newh + 0.5), int(neww + 0.5)


def d2_input(rgb, short, max_size):
    import torch
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    h, w = bgr.shape[:2]
    oh, ow = d2_output_shape(h, w, short, max_size)
    img = np.asarray(Image.fromarray(bgr).resize((ow, oh), Image.BILINEAR))
    x = torch.as_tensor(np.ascontiguousarray(img.astype("float32").transpose(2, 0, 1)))
    mean = torch.tensor(D2_MEAN).view(-1, 1, 1)
    std = torch.tensor(D2_STD).view(-1, 1, 1)
    y = (x - mean) / std
    return ow, oh, y.numpy().transpose(1, 2, 0).astype(np.float32)


def pyfrcnn_input(rgb, target, max_size):
    im = rgb[:, :, ::-1].astype(np.float32, copy=True)
    im -= PY_MEANS
    h, w = im.shape[:2]
    im_size_min, im_size_max = min(h, w), max(h, w)
    im_scale = float(target) / float(im_size_min)
    if np.round(im_scale * im_size_max) > max_size:
        im_scale = float(max_size) / float(im_size_max)
    ow, oh = int(np.rint(w * im_scale)), int(np.rint(h * im_scale))
    cv_check(im, ow, oh, fx=im_scale)
    return ow, oh, cv_linear_f32(im, ow, oh, im_scale, im_scale)


def exif_transpose_d2(im):
    """detectron2.data.detection_utils._apply_exif_orientation."""
    try:
        exif = im.getexif()
    except Exception:
        exif = None
    if exif is None:
        return im
    method = {2: Image.FLIP_LEFT_RIGHT, 3: Image.ROTATE_180, 4: Image.FLIP_TOP_BOTTOM,
              5: Image.TRANSPOSE, 6: Image.ROTATE_270, 7: Image.TRANSVERSE,
              8: Image.ROTATE_90}.get(exif.get(0x0112))
    return im.transpose(method) if method is not None else im


# ---- writing ---------------------------------------------------------------------------------

def png_chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)


def adam7_png(rgb):
    """An interlaced (Adam7) 8-bit RGB PNG; PIL cannot write interlaced files."""
    h, w, _ = rgb.shape
    raw = b""
    for x0, y0, dx, dy in [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4),
                           (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]:
        sub = rgb[y0::dy, x0::dx]
        if sub.size == 0:
            continue
        for row in sub:
            raw += b"\x00" + row.tobytes()
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1))
            + png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b""))


def make_data(d):
    os.makedirs(d, exist_ok=True)
    Image.fromarray(texture(33, 25, 1)).save(os.path.join(d, "tiny.jpg"), quality=90)
    Image.fromarray(texture(33, 25, 2)).save(os.path.join(d, "tiny.png"))
    Image.fromarray(texture(40, 30, 3)).save(os.path.join(d, "prog.jpg"), quality=85,
                                             progressive=True)
    Image.fromarray(texture(20, 16, 4)[:, :, 0]).save(os.path.join(d, "gray.jpg"), quality=90)
    cmyk = np.dstack([texture(16, 12, 5), texture(16, 12, 8)[:, :, :1]])  # K varies too
    Image.fromarray(cmyk, "CMYK").save(os.path.join(d, "cmyk.jpg"), quality=95)
    Image.fromarray(texture(1, 1, 6)).save(os.path.join(d, "one.jpg"), quality=90)
    ex = Image.Exif()
    ex[0x0112] = 6
    Image.fromarray(texture(12, 8, 7)).save(os.path.join(d, "exif6.jpg"), quality=90,
                                            exif=ex.tobytes())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--make-data")
    args = ap.parse_args()
    if args.make_data:
        make_data(args.make_data)
        return
    if not args.out:
        ap.error("--out or --make-data is required")
    od = os.path.join(args.out, "image")
    os.makedirs(od, exist_ok=True)
    lines = []

    def raw(name, arr):
        arr = np.ascontiguousarray(arr)
        if arr.dtype == np.float32:
            arr = arr.astype("<f4")
        with open(os.path.join(od, name), "wb") as f:
            f.write(arr.tobytes())
        return name

    # Lossless decodes through PIL's convert("RGB"), every colour type stb converts.
    t = texture(29, 21, 10)
    alpha = (np.arange(29 * 21).reshape(21, 29) * 7 % 256).astype(np.uint8)
    variants = {
        "rgb8": Image.fromarray(t),
        "gray8": Image.fromarray(t[:, :, 1]),
        "la8": Image.merge("LA", [Image.fromarray(t[:, :, 0]), Image.fromarray(alpha)]),
        "rgba8": Image.fromarray(np.dstack([t, alpha])),
        "pal": Image.fromarray(t).convert("P", palette=Image.ADAPTIVE, colors=37),
        "pal_trns": Image.fromarray(t).convert("P", palette=Image.ADAPTIVE, colors=200),
        "gray1": Image.fromarray(t[:, :, 2] > 128),
    }
    for name, im in variants.items():
        kw = {"transparency": 3} if name == "pal_trns" else {}
        path = os.path.join(od, name + ".png")
        im.save(path, **kw)
        back = Image.open(path)
        exp = np.asarray(back.convert("RGB"))
        lines.append("decode %s.png %d %d %s" % (name, exp.shape[1], exp.shape[0],
                                                 raw(name + ".rgb", exp)))
    # 16-bit RGB (PIL keeps the high byte, as stb does). 16-bit grey differs on purpose:
    # PIL clips the 0..65535 values to 255, stb keeps the high byte (tested in test_image.c).
    t16 = (t.astype(np.uint16) * 257 + (np.arange(t.size).reshape(t.shape) % 251)).astype(">u2")
    p16 = os.path.join(od, "rgb16.png")
    with open(p16, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 29, 21, 16, 2, 0, 0, 0))
                + png_chunk(b"IDAT", zlib.compress(b"".join(b"\x00" + r.tobytes() for r in t16)))
                + png_chunk(b"IEND", b""))
    exp = np.asarray(Image.open(p16).convert("RGB"))
    lines.append("decode rgb16.png 29 21 %s" % raw("rgb16.rgb", exp))
    with open(os.path.join(od, "adam7.png"), "wb") as f:
        f.write(adam7_png(texture(27, 19, 11)))
    exp = np.asarray(Image.open(os.path.join(od, "adam7.png")).convert("RGB"))
    lines.append("decode adam7.png 27 19 %s" % raw("adam7.rgb", exp))

    # EXIF orientation 1..8 in PNG eXIf chunks (lossless, so exact).
    base = Image.fromarray(texture(13, 7, 12))
    for o in range(1, 9):
        ex = Image.Exif()
        ex[0x0112] = o
        path = os.path.join(od, "exif%d.png" % o)
        base.save(path, exif=ex.tobytes())
        exp = np.asarray(exif_transpose_d2(Image.open(path)).convert("RGB"))
        lines.append("exif exif%d.png %d %d %s" % (o, exp.shape[1], exp.shape[0],
                                                   raw("exif%d.rgb" % o, exp)))

    # stb vs libjpeg-turbo on real photos, and the CMYK file.
    here = os.path.dirname(os.path.abspath(__file__))
    jpegs = sorted(glob.glob("/usr/share/darknet/data/*.jpg"))
    jpegs += [os.path.join(here, "..", "..", "tests", "data", "images", n)
              for n in ("tiny.jpg", "prog.jpg", "gray.jpg", "cmyk.jpg")]
    photos = {}
    for i, p in enumerate(jpegs):
        im = Image.open(p).convert("RGB")  # stored pixels: no EXIF orientation
        a = np.asarray(im)
        photos[os.path.basename(p)] = a
        lines.append("jpeg %s %d %d %s" % (os.path.normpath(p), a.shape[1], a.shape[0],
                                           raw("jpeg%d.rgb" % i, a)))

    # PIL bilinear resize: up, down, one axis, extreme.
    src = texture(61, 47, 13)
    inp = raw("pil_in.rgb", src)
    for ow, oh in [(100, 77), (30, 23), (61, 20), (20, 47), (1, 1), (7, 200), (183, 13),
                   (600, 5), (62, 48)]:
        out = np.asarray(Image.fromarray(src).resize((ow, oh), Image.BILINEAR))
        lines.append("pil %s 61 47 %d %d %s" % (inp, ow, oh, raw("pil_%dx%d.rgb" % (ow, oh), out)))
    dog = photos.get("dog.jpg")
    if dog is not None:
        dinp = raw("dog.rgb", dog)
        for ow, oh in [(1067, 800), (333, 250)]:
            out = np.asarray(Image.fromarray(dog).resize((ow, oh), Image.BILINEAR))
            lines.append("pil %s %d %d %d %d %s" % (dinp, dog.shape[1], dog.shape[0], ow, oh,
                                                    raw("pil_dog_%dx%d.rgb" % (ow, oh), out)))

    # detectron2 full input (resize rule + PIL + normalisation).
    for name, a, mn, mx in [("d2a", texture(90, 50, 14), 800, 1333),
                            ("d2b", texture(40, 300, 15), 800, 1333),
                            ("d2c", texture(64, 48, 16), 32, 40)]:
        ow, oh, y = d2_input(a, mn, mx)
        lines.append("d2 %s %d %d %d %d %d %d %s" % (raw(name + ".rgb", a), a.shape[1], a.shape[0],
                                                     mn, mx, ow, oh, raw(name + ".f32", y)))

    # OpenCV linear on float32, dsize form (mean 0: the float image is the uint8 RGB image).
    fsrc = src.astype(np.float32)
    for ow, oh in [(100, 77), (30, 23), (61, 20), (20, 47), (1, 1), (7, 200), (122, 94),
                   (30, 47), (200, 3)]:
        cv_check(fsrc, ow, oh)
        out = cv_linear_f32(fsrc, ow, oh, ow / 61.0, oh / 47.0)
        lines.append("cv %s 61 47 %d %d %s" % (inp, ow, oh, raw("cv_%dx%d.f32" % (ow, oh), out)))

    # py-faster-rcnn blobs: up, down, max-size capped, and the exact 2x downscale (area path).
    cases = [("py_a", texture(90, 50, 17), 600, 1000), ("py_b", texture(37, 400, 18), 600, 1000),
             ("py_c", texture(240, 160, 19), 80, 1000), ("py_d", texture(243, 160, 20), 80, 1000)]
    if dog is not None:
        cases.append(("py_dog", dog, 600, 1000))
    for name, a, mn, mx in cases:
        ow, oh, y = pyfrcnn_input(a, mn, mx)
        lines.append("pyfrcnn %s %d %d %d %d %d %d %s" % (raw(name + ".rgb", a), a.shape[1],
                                                          a.shape[0], mn, mx, ow, oh,
                                                          raw(name + ".f32", y)))

    # Resize rules on many sizes, extreme aspects included (sides clamped to >= 1 as frcnn does).
    rng = np.random.RandomState(21)
    sizes = [(640, 480), (480, 640), (500, 500), (1, 1), (1, 4096), (4096, 1), (1333, 800),
             (800, 1333), (1600, 1200), (2000, 1200), (333, 500), (16384, 16384), (3, 16384)]
    sizes += [(int(rng.randint(1, 5000)), int(rng.randint(1, 5000))) for _ in range(300)]
    for w, h in sizes:
        for mn, mx in [(800, 1333), (600, 1000), (32, 40), (640, 640)]:
            oh, ow = d2_output_shape(h, w, mn, mx)
            lines.append("size d2 %d %d %d %d %d %d" % (w, h, mn, mx, max(ow, 1), max(oh, 1)))
            s = float(mn) / float(min(h, w))
            if np.round(s * max(h, w)) > mx:
                s = float(mx) / float(max(h, w))
            lines.append("size py %d %d %d %d %d %d" % (w, h, mn, mx, max(int(np.rint(w * s)), 1),
                                                         max(int(np.rint(h * s)), 1)))

    with open(os.path.join(od, "manifest.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
