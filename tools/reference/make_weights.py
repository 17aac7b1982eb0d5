#!/usr/bin/python3
"""make_weights.py - seeded, calibrated random test weights for the ResNet-C4 Faster R-CNN.

  make_weights.py --config CONFIG.json --width-div D --seed S --calib IMAGE --out FILE.safetensors
                  [--dtype f32|f16|bf16] [--min-size N] [--max-size N]
                  [--classes-from OTHER.json] [--name NAME]

Writes every tensor a detectron2 R50/R101/R152-C4 checkpoint has, with detectron2 names, for
the config's depth and family (softmax2 objectness -> 2A logits, box_includes_background ->
a background box row, ...). --width-div divides every channel count (1 = full size: stem 64,
res2 64/256, res3 128/512, res4 256/1024, res5 512/2048, RPN conv = res4 channels).

Random weights are made well-behaved as shared/docs/semantics.md section D describes:
  - convs He-normal; each FrozenBN's running_mean/var set from the channel statistics of its own
    input (the conv output) on the first calibration image, passing through the net layer by
    layer, then jittered (mean +- 0.1 sigma, var x exp(0.2 N)) with weight 1 +- 0.1 and bias
    0.1 N, so that folding the BN into the conv is really exercised; res5's statistics come
    from the RoIs of that image's proposals;
  - conv3.norm of every residual branch scaled by 0.15 (activations stay O(1) through res4);
  - RPN objectness / anchor_deltas rescaled to output spreads of about 1 and 0.1, bbox_pred to
    0.25, over all calibration images (--calib may repeat);
  - cls_score: random projections of the (ridge-)whitened pooled features with spread 1,
    sharpened 1.5x; then a few "planted objects" per calibration image (a proposal away from
    the border whose class logit is raised by 14 along its whitened feature direction, so it
    and its overlapping neighbours stand clearly above the rest); then a constant added to the
    background logit so the config's score threshold sits in a wide gap of the sorted scores of
    every calibration image, each planted object keeping a score >= 0.3.
The config JSON goes into the metadata under "frcnn.config" (plus frcnn.seed, frcnn.width_div,
frcnn.calib, frcnn.bg_bias, frcnn.generator). Deterministic for a given seed, torch version and
CPU (BN statistics come from float32 convolutions).
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model  # noqa: E402
import st  # noqa: E402

MAX_CALIB_ROIS = 256
RIDGE = 0.1  # feature covariance regularisation, times the mean variance
BOOST = 14.0  # logit boost of a planted object


def widths(div):
    """Channel counts for a width divisor: (stem, [(bottleneck, out) for res2..res5])."""
    def d(c):
        if c % div:
            raise ValueError("width-div %d does not divide %d" % (div, c))
        return c // div

    return d(64), [(d(64), d(256)), (d(128), d(512)), (d(256), d(1024)), (d(512), d(2048))]


def num_box_rows(cfg):
    hd = cfg["head"]
    K = len(cfg["classes"])
    if hd["class_agnostic"]:
        return 2 if hd["box_includes_background"] else 1
    return K + 1 if hd["box_includes_background"] else K


def init_tensors(cfg, div, gen):
    """Random tensors by detectron2 name (BN statistics placeholders, fixed later)."""
    w = {}

    def conv(name, cout, cin, k):
        std = math.sqrt(2.0 / (cin * k * k))
        w[name + ".weight"] = torch.randn(cout, cin, k, k, generator=gen) * std

    def bn(name, c):
        w[name + ".norm.weight"] = 1.0 + 0.1 * torch.randn(c, generator=gen)
        w[name + ".norm.bias"] = 0.1 * torch.randn(c, generator=gen)
        w[name + ".norm.running_mean"] = torch.zeros(c)
        w[name + ".norm.running_var"] = torch.ones(c)

    def block(prefix, cin, mid, cout):
        conv(prefix + ".conv1", mid, cin, 1)
        bn(prefix + ".conv1", mid)
        conv(prefix + ".conv2", mid, mid, 3)
        bn(prefix + ".conv2", mid)
        conv(prefix + ".conv3", cout, mid, 1)
        bn(prefix + ".conv3", cout)
        if cin != cout:  # detectron2: shortcut iff in_channels != out_channels
            conv(prefix + ".shortcut", cout, cin, 1)
            bn(prefix + ".shortcut", cout)

    stem, stages = widths(div)
    conv("backbone.stem.conv1", stem, 3, 7)
    bn("backbone.stem.conv1", stem)
    cin = stem
    blocks = model.BLOCKS[cfg["backbone"]["depth"]]
    for si, name in enumerate(("res2", "res3", "res4")):
        mid, cout = stages[si]
        for b in range(blocks[si]):
            block("backbone.%s.%d" % (name, b), cin, mid, cout)
            cin = cout
    c4 = cin
    mid, c5 = stages[3]
    for b in range(3):
        block("roi_heads.res5.%d" % b, c4 if b == 0 else c5, mid, c5)
    A = len(cfg["anchors"]["sizes"]) * len(cfg["anchors"]["ratios"])
    nobj = A if cfg["rpn"]["objectness"] == "sigmoid" else 2 * A
    p = "proposal_generator.rpn_head."
    conv(p + "conv", c4, c4, 3)
    w[p + "conv.bias"] = 0.01 * torch.randn(c4, generator=gen)
    conv(p + "objectness_logits", nobj, c4, 1)
    w[p + "objectness_logits.bias"] = torch.zeros(nobj)
    conv(p + "anchor_deltas", 4 * A, c4, 1)
    w[p + "anchor_deltas.bias"] = torch.zeros(4 * A)
    K = len(cfg["classes"])
    q = "roi_heads.box_predictor."
    w[q + "cls_score.weight"] = torch.randn(K + 1, c5, generator=gen) / math.sqrt(c5)
    w[q + "cls_score.bias"] = torch.zeros(K + 1)
    R = num_box_rows(cfg)
    w[q + "bbox_pred.weight"] = torch.randn(4 * R, c5, generator=gen) / math.sqrt(c5)
    w[q + "bbox_pred.bias"] = torch.zeros(4 * R)
    return w


def standardize_1x1(wt, bias, out, target_std, gen, bias_jitter=0.0):
    """Rescales a 1x1 conv / linear so each output channel has std target_std and mean
    bias_jitter * N(0,1) on the calibration data. out: (N, C) outputs before the change."""
    mean = out.mean(dim=0)
    std = out.std(dim=0).clamp(min=1e-6)
    scale = target_std / std
    shape = (-1,) + (1,) * (wt.dim() - 1)
    wt.mul_(scale.view(shape))
    bias.copy_((bias - mean) * scale + bias_jitter * torch.randn(bias.shape, generator=gen))


def pick_bg_bias(logits_list, cfg, planted=()):
    """Chooses the constant added to the background logit so the config's score threshold sits
    in a wide (log-ratio) gap of the sorted foreground scores of every calibration image: the
    first image gets 3..100 (proposal, class) pairs above the threshold, the others 1..100, and
    the smallest gap over the images is maximised, while every planted object
    (image, proposal, logit column) keeps a score of at least 0.3.
    logits_list: [(P, K+1)] before the bias. Returns (bias, [n above per image], gap)."""
    hd = cfg["head"]
    thr = hd["score_thresh"]
    prep = []
    for logits in logits_list:
        bg = 0 if hd["background"] == "first" else logits.shape[1] - 1
        fg = [c for c in range(logits.shape[1]) if c != bg]
        z = logits.double()
        # log score of pair (i, k) = z[i, k] - logaddexp(z[i, bg] + B, logsumexp(z[i, fg]))
        prep.append((z[:, fg], z[:, bg], torch.logsumexp(z[:, fg], dim=1), bg))
    lthr = math.log(thr)
    grid = torch.arange(-10.0, 40.0, 0.05, dtype=torch.float64)
    # for every image and every B on the grid: the 201 best log scores, in chunks of 50 B values
    tops = []
    for zf, zb, lse, _ in prep:
        cols = []
        for c0 in range(0, grid.numel(), 50):
            g = grid[c0 : c0 + 50]
            den = torch.logaddexp(zb[:, None] + g[None, :], lse[:, None])  # (P, nB)
            ls = (zf[:, :, None] - den[:, None, :]).reshape(-1, g.numel())
            cols.append(torch.topk(ls, min(201, ls.shape[0]), dim=0).values)
        tops.append(torch.cat(cols, dim=1))  # (201, nB)
    best = None
    for j, B in enumerate(grid.tolist()):
        ns, gaps = [], []
        for top in tops:
            col = top[:, j]
            n = int((col > lthr).sum())
            ns.append(n)
            if n < 1 or n > 100 or n >= col.shape[0]:
                gaps.append(-1.0)
            else:
                gaps.append(min(float(col[n - 1]) - lthr, lthr - float(col[n])))
        if ns[0] < 3:
            continue
        low = False
        for i, t, col in planted:
            zf, zb, lse, bg = prep[i]
            den = float(torch.logaddexp(zb[t] + B, lse[t]))
            k = col - 1 if bg == 0 else col
            low |= float(zf[t, k]) - den < math.log(0.3)
        if low:
            continue
        gap = min(gaps)
        if gap > 0 and (best is None or gap > best[2]):
            best = (float(B), ns, gap)
    if best is None:
        raise RuntimeError("no background bias gives every calibration image 1..100 scores above the threshold")
    return best


def plant_objects(wc, bc, pooled, m, sinv, props, cfg, gen, log, n_obj, boost=BOOST):
    """Makes a few proposals of a calibration image stand out: for n_obj classes, adds to the
    class's cls_score row the whitened direction of one proposal's pooled feature,
    boost * S^-1 d / (d' S^-1 d) with d = f[t] - m (S: feature covariance of all calibration
    RoIs), which raises that proposal's logit by `boost` and barely moves unrelated proposals
    (overlapping, similar-looking ones rise too, as real detections do). Targets are
    high-objectness proposals away from the image border (where every image looks alike: zero
    padding, clipped boxes), covering at least 1% of the image, overlapping each other by
    IoU < 0.3."""
    hd = cfg["head"]
    K = len(cfg["classes"])
    W = float(props[:, 2].max())
    H = float(props[:, 3].max())
    area = (props[:, 2] - props[:, 0]) * (props[:, 3] - props[:, 1])
    mx, my = 0.03 * W, 0.03 * H
    chosen = []
    for i in range(props.shape[0]):
        x1, y1, x2, y2 = props[i].tolist()
        if area[i] < 0.01 * W * H or x1 < mx or y1 < my or x2 > W - mx or y2 > H - my:
            continue
        if chosen and float(torchvision.ops.box_iou(props[i : i + 1], props[chosen]).max()) >= 0.3:
            continue
        chosen.append(i)
        if len(chosen) == n_obj:
            break
    classes = torch.randperm(K, generator=gen)[: len(chosen)].tolist()
    for t, c in zip(chosen, classes):
        row = c + 1 if hd["background"] == "first" else c
        d = pooled[t] - m
        v = sinv @ d
        dv = boost * v / float(d.dot(v))
        wc[row] += dv
        bc[row] -= dv.dot(m)
    log("calib: planted classes %s on proposals %s" % (classes, chosen))
    return [(t, c + 1 if hd["background"] == "first" else c) for t, c in zip(chosen, classes)]


def make(cfg, div, seed, calib_paths, log=print):
    """Returns ({name: float32 numpy}, {metadata}). calib_paths[0] calibrates the FrozenBN
    statistics; all of them calibrate the RPN and predictor scales and the background bias."""
    cfg = model.normalize_config(cfg)
    gen = torch.Generator().manual_seed(seed)
    w = init_tensors(cfg, div, gen)
    det = model.Detector(w, cfg)
    w = det.w  # the same tensors (already float32), edited in place below

    def calib(norm, y):
        m = y.mean(dim=(0, 2, 3))
        v = y.var(dim=(0, 2, 3), unbiased=False)
        v = torch.maximum(v, 1e-4 * v.mean() + 1e-12)
        n1 = torch.randn(m.shape, generator=gen)
        n2 = torch.randn(m.shape, generator=gen)
        w[norm + ".running_mean"].copy_(m + 0.1 * v.sqrt() * n1)
        w[norm + ".running_var"].copy_(v * torch.exp(0.2 * n2))
        if norm.endswith("conv3.norm"):
            w[norm + ".weight"].mul_(0.15)
            w[norm + ".bias"].mul_(0.15)

    imgs = [model.load_image(p, cfg["input"]["exif"]) for p in calib_paths]
    p = "proposal_generator.rpn_head."
    q = "roi_heads.box_predictor."
    with torch.no_grad():
        # 1. FrozenBN statistics of the backbone, layer by layer, on the first image
        x, info = det.preprocess(imgs[0])
        det.calib = calib
        det.backbone(x)
        det.calib = None
        ins = [det.preprocess(im) for im in imgs]
        res4s = [det.backbone(x)["res4"] for x, _ in ins]
        log("calib: input %s, res4 %s std %s" % (tuple(ins[0][0].shape), tuple(res4s[0].shape),
                                                  " ".join("%.3f" % r.std().item() for r in res4s)))
        # 2. RPN output scales over all images
        ts = []
        for res4 in res4s:
            t = torch.relu(torch.nn.functional.conv2d(res4, w[p + "conv.weight"], w[p + "conv.bias"], 1, 1))
            ts.append(t.permute(0, 2, 3, 1).reshape(-1, t.shape[1]))
        tf = torch.cat(ts)
        C4 = tf.shape[1]
        o = tf @ w[p + "objectness_logits.weight"].view(-1, C4).t()
        if cfg["rpn"]["objectness"] == "sigmoid":
            standardize_1x1(w[p + "objectness_logits.weight"], w[p + "objectness_logits.bias"], o, 1.0, gen, 0.3)
        else:  # bg and fg logits each std 1/sqrt(2): their difference spreads about 1
            standardize_1x1(w[p + "objectness_logits.weight"], w[p + "objectness_logits.bias"], o,
                            math.sqrt(0.5), gen, 0.2)
        d = tf @ w[p + "anchor_deltas.weight"].view(-1, C4).t()
        standardize_1x1(w[p + "anchor_deltas.weight"], w[p + "anchor_deltas.bias"], d, 0.1, gen)
        # 3. proposals; res5 FrozenBN statistics on the first image's RoIs
        props = []
        for res4, (_, inf) in zip(res4s, ins):
            score, raw, deltas = det.rpn_head(res4)
            anc = det.anchors(res4.shape[2], res4.shape[3])
            pr, _ = det.proposals(score, deltas, anc, inf)
            if pr.shape[0] == 0:
                raise RuntimeError("a calibration image gave no proposals")
            props.append(pr)
        log("calib: proposals %s" % [pr.shape[0] for pr in props])
        det.calib = calib
        det.res5(det.roi_features(res4s[0], props[0][:MAX_CALIB_ROIS]))
        det.calib = None
        pooled = [det.pooled_features(r, pr) for r, pr in zip(res4s, props)]
        allp = torch.cat(pooled)
        # 4. predictor. Class logits are random projections of the whitened features (S: the
        # covariance of all calibration RoI features), spread 1 then sharpened 1.5x, so images
        # whose features are larger or differently spread do not flood the output; a few planted
        # objects per image; a constant background bias.
        m = allp.mean(dim=0)
        C = allp.shape[1]
        cen = (allp - m).double()
        S = cen.t() @ cen / cen.shape[0]
        S += (RIDGE * float(S.trace()) / C + 1e-12) * torch.eye(C, dtype=S.dtype)
        ev, U = torch.linalg.eigh(S)
        s_isqrt = ((U * ev.rsqrt()) @ U.t()).float()
        sinv = ((U / ev) @ U.t()).float()
        wc, bc = w[q + "cls_score.weight"], w[q + "cls_score.bias"]
        wc.copy_(1.5 * (torch.randn(wc.shape, generator=gen) @ s_isqrt) / math.sqrt(C))
        bc.copy_(1.5 * 0.5 * torch.randn(bc.shape, generator=gen) - wc @ m)
        b = allp @ w[q + "bbox_pred.weight"].t()
        standardize_1x1(w[q + "bbox_pred.weight"], w[q + "bbox_pred.bias"], b, 0.25, gen)
        planted = []
        for i in range(len(pooled)):
            pl = plant_objects(wc, bc, pooled[i], m, sinv, props[i], cfg, gen, log, 3 if i == 0 else 2)
            planted += [(i, t, col) for t, col in pl]
        B, ns, gap = pick_bg_bias([det.predictor(pl)[0] for pl in pooled], cfg, planted)
        bg = 0 if cfg["head"]["background"] == "first" else wc.shape[0] - 1
        bc[bg] += B
        log("calib: background bias %.2f: %s scores above %g, gap x%.2f"
            % (B, ns, cfg["head"]["score_thresh"], math.exp(gap)))
    tensors = {k: v.numpy().astype(np.float32) for k, v in w.items()}
    meta = {
        "frcnn.config": json.dumps(cfg),
        "frcnn.seed": str(seed),
        "frcnn.width_div": str(div),
        "frcnn.calib": ",".join(os.path.basename(p) for p in calib_paths),
        "frcnn.bg_bias": "%.4f" % B,
        "frcnn.generator": "tools/reference/make_weights.py (random test weights, not a trained model)",
    }
    return tensors, meta


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="config JSON (configs/*.json)")
    ap.add_argument("--width-div", type=int, default=1, help="divide every channel count (1 = full)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--calib", required=True, action="append",
                    help="calibration image (repeat: the first sets the BN statistics, all set the head scales)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", choices=("f32", "f16", "bf16"), default="f32")
    ap.add_argument("--min-size", type=int, help="override input.min_size")
    ap.add_argument("--max-size", type=int, help="override input.max_size")
    ap.add_argument("--classes-from", help="take the class list from this config JSON")
    ap.add_argument("--name", help="override the config name")
    a = ap.parse_args(argv)
    cfg = model.load_config(a.config)
    if a.min_size:
        cfg["input"]["min_size"] = a.min_size
    if a.max_size:
        cfg["input"]["max_size"] = a.max_size
    if a.classes_from:
        cfg["classes"] = model.load_config(a.classes_from)["classes"]
    if a.name:
        cfg["name"] = a.name
    tensors, meta = make(cfg, a.width_div, a.seed, a.calib)
    st.save(a.out, tensors, meta, dtype=a.dtype.upper())
    print("wrote %s (%d tensors, %.1f MB)" % (a.out, len(tensors), os.path.getsize(a.out) / 1e6))


if __name__ == "__main__":
    main()
