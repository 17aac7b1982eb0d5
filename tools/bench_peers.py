#!/usr/bin/python3
"""bench_peers.py - the peer side of `make bench`: PyTorch and ONNX Runtime on the same model,
image and thread count as `frcnn bench`, and the final comparison table with the issue's targets.

  bench_peers.py --model FILE --image IMG [--threads 2] [--runs 1] [--warmup 1]
                 [--setting 800x1333/1000 --setting 600x1000/300 ...] [--only eager,best,ort]
                 [--eager-chunk 100] [--work build/bench] [--node node] [--json OUT]
  bench_peers.py --compare --peers PEERS.json [--ours OURS.json] [--strict]

A setting HxW/P is a network input of H x W pixels and P proposals kept after the RPN's NMS.
The image is first resized (PIL bilinear, outside the timed region) to W x H, and the model's
config is overridden to min_size = min(H, W), max_size = max(H, W), rpn.post_nms_topk = P, so
the reference's own preprocessing yields exactly H x W. For each setting it measures, each in
its own subprocess (peak RSS = that process's ru_maxrss from wait4), after --warmup untimed runs,
the best of --runs timed runs of:
  eager  tools/reference/model.py's Detector end to end (preprocess, backbone, RPN head and
         proposals, RoIAlign and res5 in chunks of --eager-chunk RoIs as Detector.run does,
         predictor, post-processing) with torch.set_num_threads(threads).
  best   the same pipeline with its convolutions as torch.jit.freeze(torch.jit.trace(...)) in
         channels_last (--jit optimize: torch.jit.optimize_for_inference instead): backbone +
         RPN head convs as one module, res5 head (3 blocks + mean) on all P RoIs as another;
         proposals, RoIAlign, predictor and post-processing stay eager.
  ort    the same two conv modules exported with torch.onnx.export (opset 13, res5 on a fixed
         batch of P RoIs) and run with onnxruntime-node (tools/bench_ort.js, threads intra-op
         threads) on the reference's own input image tensor and RoI features; each graph in its
         own node process. RoIAlign, proposals and NMS are not included: "convolutions only".
ONNX files are cached in --work (keyed by the model file's path, size and mtime); the float32
inputs written for node are deleted after use.

--json writes {"threads", "runs", "warmup", "image", "model", "torch", "ort", "settings": [
  {"name": "800x1333/1000", "h", "w", "proposals",
   "eager": {"total_ms", "stages": {..ms}, "peak_rss_mb", "proposals", "detections"},
   "best":  {same},
   "ort":   {"total_ms" (both graphs), "stages": {"backbone_rpn_head", "res5"},
             "peak_rss_mb" (the larger), "peak_rss_mb_graphs": {..}}}]}
A part that failed has {"error": "..."} instead.

--compare reads that file and `frcnn bench --json` output ({"settings": [{"name", "total_ms",
"stages", "sgemm_ms", "peak_rss_mb"}]}), prints ours beside each peer with the ratios, then one
PASS/FAIL line per target of the issue (N/A when a number is missing); --strict exits 1 on any
FAIL or N/A.
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SETTING_RE = re.compile(r"^([0-9]{2,5})x([0-9]{2,5})/([0-9]{1,5})$")
DEFAULT_SETTINGS = ["800x1333/1000", "600x1000/300"]
EXPORT_VERSION = 1  # part of the ONNX cache key: bump when _modules() or the export call changes


def parse_setting(s):
    m = SETTING_RE.match(s)
    if not m:
        raise ValueError("setting %r: want HxW/P, e.g. 800x1333/1000" % s)
    h, w, p = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if not (32 <= h <= 4096 and 32 <= w <= 4096 and 1 <= p <= 10000):
        raise ValueError("setting %r: H and W must be 32..4096, P 1..10000" % s)
    return h, w, p


# ----------------------------------------------------------------------------------------------
# Worker side (imports torch): one measurement per process


def _torch_setup(threads):
    sys.path.insert(0, os.path.join(HERE, "reference"))
    import torch

    import model as ref  # sets 2 threads at import; overridden below

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    return torch, ref


def _load(ref, args):
    """Detector with the setting's config and the image resized to the setting's W x H."""
    from PIL import Image
    import numpy as np

    h, w, p = parse_setting(args.setting)
    det = ref.Detector.load(args.model)
    c = det.cfg
    c["input"]["min_size"] = min(h, w)
    c["input"]["max_size"] = max(h, w)
    c["rpn"]["post_nms_topk"] = p
    img = ref.load_image(args.image, c["input"]["exif"])
    if img.shape[:2] != (h, w):
        img = np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR)).copy()
    x, info = det.preprocess(img)
    if (info["h"], info["w"]) != (h, w):
        raise RuntimeError("preprocess gave %dx%d, want %dx%d" % (info["h"], info["w"], h, w))
    return det, img, p


def _modules(torch, det):
    """(backbone + RPN head convs, res5 head) as nn.Modules holding the detector's weights."""
    nn = torch.nn
    F = torch.nn.functional
    eps = det.cfg["backbone"]["bn_eps"]
    in1x1 = det.cfg["backbone"]["stride_in_1x1"]

    def conv(name, stride, padding):
        wt = det.t(name + ".weight")
        b = det.w.get(name + ".bias")
        m = nn.Conv2d(wt.shape[1], wt.shape[0], tuple(wt.shape[2:]), stride, padding, bias=b is not None)
        m.weight.data.copy_(wt)
        if b is not None:
            m.bias.data.copy_(b)
        return m

    class ConvBN(nn.Module):
        def __init__(self, name, stride, padding):
            super().__init__()
            self.conv = conv(name, stride, padding)
            n = name + ".norm"
            self.bn = nn.BatchNorm2d(self.conv.out_channels, eps=eps)
            self.bn.running_mean.copy_(det.t(n + ".running_mean"))
            self.bn.running_var.copy_(det.t(n + ".running_var"))
            self.bn.weight.data.copy_(det.t(n + ".weight"))
            self.bn.bias.data.copy_(det.t(n + ".bias"))

        def forward(self, x):
            return self.bn(self.conv(x))

    class Block(nn.Module):
        def __init__(self, name, stride):
            super().__init__()
            s1, s3 = (stride, 1) if in1x1 else (1, stride)
            self.conv1 = ConvBN(name + ".conv1", s1, 0)
            self.conv2 = ConvBN(name + ".conv2", s3, 1)
            self.conv3 = ConvBN(name + ".conv3", 1, 0)
            self.shortcut = ConvBN(name + ".shortcut", stride, 0) if name + ".shortcut.weight" in det.w else None

        def forward(self, x):
            y = F.relu(self.conv1(x))
            y = F.relu(self.conv2(y))
            y = self.conv3(y)
            sc = self.shortcut(x) if self.shortcut is not None else x
            return F.relu(y + sc)

    class BackboneRPN(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = ConvBN("backbone.stem.conv1", 2, 3)
            blocks = []
            for si, (stage, n) in enumerate(zip(("res2", "res3", "res4"), det.blocks[:3])):
                for b in range(n):
                    blocks.append(Block("backbone.%s.%d" % (stage, b), 2 if (b == 0 and si > 0) else 1))
            self.blocks = nn.Sequential(*blocks)
            p = "proposal_generator.rpn_head."
            self.rpn = conv(p + "conv", 1, 1)
            self.obj = conv(p + "objectness_logits", 1, 0)
            self.dl = conv(p + "anchor_deltas", 1, 0)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.stem(x)), kernel_size=3, stride=2, padding=1)
            res4 = self.blocks(x)
            t = F.relu(self.rpn(res4))
            return res4, self.obj(t), self.dl(t)

    class Res5(nn.Module):
        def __init__(self):
            super().__init__()
            s = det.cfg["backbone"]["res5_stride"]
            self.blocks = nn.Sequential(*[Block("roi_heads.res5.%d" % b, s if b == 0 else 1) for b in range(3)])

        def forward(self, x):
            return self.blocks(x).mean(dim=[2, 3])

    return BackboneRPN().eval(), Res5().eval()


def _rpn_outputs(torch, det, obj, dl):
    """Detector.rpn_head's reshaping of the raw conv outputs: (scores, deltas) in (H, W, A)."""
    A = det.num_anchors
    obj, dl = obj.contiguous(), dl.contiguous()
    _, _, H, W = dl.shape
    deltas = dl.reshape(1, A, 4, H, W).permute(0, 3, 4, 1, 2).reshape(H * W * A, 4)
    if det.cfg["rpn"]["objectness"] == "sigmoid":
        return obj.permute(0, 2, 3, 1).reshape(-1), deltas
    bg = obj[:, :A].permute(0, 2, 3, 1).reshape(-1)
    fg = obj[:, A:].permute(0, 2, 3, 1).reshape(-1)
    return torch.softmax(torch.stack((bg, fg), dim=1), dim=1)[:, 1].contiguous(), deltas


def _eager_once(torch, det, img, chunk):
    T = {"preprocess": 0.0, "backbone": 0.0, "rpn": 0.0, "roialign": 0.0, "res5": 0.0, "post": 0.0}
    with torch.no_grad():
        t0 = a = time.perf_counter()
        x, info = det.preprocess(img)
        b = time.perf_counter()
        T["preprocess"] += b - a
        res4 = det.backbone(x)["res4"]
        a = time.perf_counter()
        T["backbone"] += a - b
        score, _, deltas = det.rpn_head(res4)
        anc = det.anchors(res4.shape[2], res4.shape[3])
        props, _ = det.proposals(score, deltas, anc, info)
        b = time.perf_counter()
        T["rpn"] += b - a
        n = props.shape[0]
        step = chunk if chunk > 0 else max(n, 1)
        pooled = []
        for i in range(0, n, step):
            a = time.perf_counter()
            f = det.roi_features(res4, props[i : i + step])
            b = time.perf_counter()
            pooled.append(det.res5(f))
            T["roialign"] += b - a
            T["res5"] += time.perf_counter() - b
        a = time.perf_counter()
        pooled = torch.cat(pooled) if pooled else torch.zeros(0, det.t("roi_heads.res5.2.conv3.weight").shape[0])
        cls, box = det.predictor(pooled)
        b = time.perf_counter()
        T["res5"] += b - a
        db, ds, _ = det.postprocess(props, cls, box, info)
        T["post"] += time.perf_counter() - b
        total = time.perf_counter() - t0
    return total, T, n, ds


def _best_once(torch, det, bb, r5, img):
    cl = torch.channels_last
    T = {}
    with torch.no_grad():
        t0 = a = time.perf_counter()
        x, info = det.preprocess(img)
        b = time.perf_counter()
        T["preprocess"] = b - a
        res4, obj, dl = bb(x.contiguous(memory_format=cl))
        a = time.perf_counter()
        T["backbone_rpn_head"] = a - b
        score, deltas = _rpn_outputs(torch, det, obj, dl)
        anc = det.anchors(res4.shape[2], res4.shape[3])
        props, _ = det.proposals(score, deltas, anc, info)
        b = time.perf_counter()
        T["proposals"] = b - a
        f = det.roi_features(res4.contiguous(), props)
        a = time.perf_counter()
        T["roialign"] = a - b
        if props.shape[0]:
            pooled = r5(f.contiguous(memory_format=cl))
        else:
            pooled = torch.zeros(0, det.t("roi_heads.res5.2.conv3.weight").shape[0])
        cls, box = det.predictor(pooled)
        b = time.perf_counter()
        T["res5"] = b - a
        db, ds, _ = det.postprocess(props, cls, box, info)
        T["post"] = time.perf_counter() - b
        total = time.perf_counter() - t0
    return total, T, props.shape[0], ds


def _timed(torch, fn, warmup, runs):
    """Best of runs after warmup untimed runs: (total_ms, stages_ms, proposals, top scores)."""
    for _ in range(warmup):
        fn()
    best = None
    for _ in range(runs):
        r = fn()
        if best is None or r[0] < best[0]:
            best = r
    total, T, n, ds = best
    return {
        "total_ms": total * 1e3,
        "stages": {k: v * 1e3 for k, v in T.items()},
        "proposals": int(n),
        "detections": int(ds.shape[0]),
        "top_scores": [round(float(s), 5) for s in ds[:5]],
        "torch": torch.__version__,
    }


def worker_eager(args):
    torch, ref = _torch_setup(args.threads)
    det, img, _ = _load(ref, args)
    return _timed(torch, lambda: _eager_once(torch, det, img, args.eager_chunk), args.warmup, args.runs)


def worker_best(args):
    torch, ref = _torch_setup(args.threads)
    det, img, _ = _load(ref, args)
    cl = torch.channels_last
    bb, r5 = _modules(torch, det)
    det.w = {k: v for k, v in det.w.items() if not k.startswith(("backbone.", "roi_heads.res5."))}
    bb, r5 = bb.to(memory_format=cl), r5.to(memory_format=cl)
    S = det.cfg["roi"]["output_size"]
    cin = r5.blocks[0].conv1.conv.in_channels
    # The legacy graph executor optimises on the first call; the profiling one would re-plan on
    # the second (its CPU fuser is off, so both run the same frozen graph).
    torch._C._jit_set_profiling_executor(False)
    t = time.perf_counter()
    with torch.no_grad():
        # traced on small inputs (the graphs have no shape-dependent ops), then frozen: BN folded
        opt = torch.jit.optimize_for_inference if args.jit == "optimize" else torch.jit.freeze
        # (check_trace off: it re-runs and compares the trace, 8x the tracing time; the detections
        # are compared with eager's instead)
        def jit(m, example):
            return opt(torch.jit.trace(m, example.contiguous(memory_format=cl), check_trace=False).eval())

        bbj = jit(bb, torch.zeros(1, 3, 64, 64))
        r5j = jit(r5, torch.zeros(2, cin, S, S))
    del bb, r5
    prep = (time.perf_counter() - t) * 1e3
    r = _timed(torch, lambda: _best_once(torch, det, bbj, r5j, img), args.warmup, args.runs)
    r["trace_freeze_ms"] = prep
    r["jit"] = args.jit
    return r


def _model_key(path):
    st = os.stat(path)
    return {"model": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def worker_export(args):
    """Writes image.f32 and rois.f32 (the reference's own tensors: network input, RoIAlign
    output), objectness.f32 and pooled.f32 (the reference's outputs: RPN objectness logits, res5
    head output of the first 8 RoIs) into --dir, and the two ONNX graphs when the cached ones do
    not match the model file and setting."""
    torch, ref = _torch_setup(args.threads)
    det, img, p = _load(ref, args)
    bb, r5 = _modules(torch, det)
    with torch.no_grad():
        x, info = det.preprocess(img)
        res4, obj, dl = bb(x)
        score, deltas = _rpn_outputs(torch, det, obj, dl)
        props, _ = det.proposals(score, deltas, det.anchors(res4.shape[2], res4.shape[3]), info)
        n = props.shape[0]
        if n == 0:
            raise RuntimeError("no proposals: cannot build the res5 input")
        # fixed batch of P RoIs: repeat the proposals when the RPN kept fewer than P
        props = props[torch.arange(p) % n]
        feats = det.roi_features(res4, props).contiguous()
        head = r5(feats[:8])  # reference output of the first RoIs, for bench_ort.js --check
        del res4, dl
    os.makedirs(args.dir, exist_ok=True)
    x.numpy().tofile(os.path.join(args.dir, "image.f32"))
    feats.numpy().tofile(os.path.join(args.dir, "rois.f32"))
    obj.contiguous().numpy().tofile(os.path.join(args.dir, "objectness.f32"))
    head.contiguous().numpy().tofile(os.path.join(args.dir, "pooled.f32"))
    key = dict(_model_key(args.model), setting=args.setting, torch=torch.__version__, opset=13,
               version=EXPORT_VERSION)
    stamp = os.path.join(args.dir, "stamp.json")
    try:
        with open(stamp) as f:
            cached = json.load(f) == key
    except (OSError, ValueError):
        cached = False
    paths = [os.path.join(args.dir, n) for n in ("backbone_rpn.onnx", "res5.onnx")]
    cached = cached and all(os.path.isfile(q) for q in paths)
    t = time.perf_counter()
    if not cached:
        if os.path.exists(stamp):
            os.unlink(stamp)
        with torch.no_grad():
            torch.onnx.export(bb, (x,), paths[0], opset_version=13, input_names=["image"],
                              output_names=["res4", "objectness", "deltas"], do_constant_folding=True)
            del bb
            torch.onnx.export(r5, (feats,), paths[1], opset_version=13, input_names=["rois"],
                              output_names=["pooled"], do_constant_folding=True)
        with open(stamp, "w") as f:
            json.dump(key, f)
    return {
        "proposals": int(n),
        "image_dims": list(x.shape),
        "rois_dims": list(feats.shape),
        "export_ms": (time.perf_counter() - t) * 1e3,
        "cached": cached,
        "torch": torch.__version__,
    }


# ----------------------------------------------------------------------------------------------
# Orchestrator: one subprocess per measurement


def run_child(cmd, env):
    """Runs cmd, returns (exit code, peak RSS MB of that process alone (wait4 ru_maxrss, KB on
    Linux), wall s, error text)."""
    t = time.perf_counter()
    try:
        p = subprocess.Popen(cmd, env=env)
    except OSError as e:
        return 127, 0.0, 0.0, str(e)
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, ru.ru_maxrss / 1024.0, time.perf_counter() - t, ""


def child_env(threads):
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[k] = str(threads)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def python_worker(args, kind, setting, extra=()):
    out = os.path.join(args.work, "%s.json" % kind)
    if os.path.exists(out):
        os.unlink(out)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--model", args.model,
           "--image", args.image, "--threads", str(args.threads), "--runs", str(args.runs),
           "--warmup", str(args.warmup), "--setting", setting, "--eager-chunk", str(args.eager_chunk),
           "--jit", args.jit, "--out", out] + list(extra)
    rc, rss, wall, err = run_child(cmd, child_env(args.threads))
    if rc != 0:
        return {"error": "%s worker failed (exit %d)%s" % (kind, rc, ": " + err if err else "")}
    with open(out) as f:
        r = json.load(f)
    r["peak_rss_mb"] = rss
    r["wall_s"] = wall
    return r


def ort_measure(args, setting):
    h, w, p = parse_setting(setting)
    d = os.path.join(args.work, "onnx-%dx%d-%d" % (h, w, p))
    ex = python_worker(args, "export", setting, ["--dir", d])
    if "error" in ex:
        return ex
    js = os.path.join(HERE, "bench_ort.js")
    res = {"stages": {}, "peak_rss_mb_graphs": {}, "export": ex}
    graphs = [
        ("backbone_rpn_head", "backbone_rpn.onnx", "image", "image.f32", ex["image_dims"], "objectness"),
        ("res5", "res5.onnx", "rois", "rois.f32", ex["rois_dims"], "pooled"),
    ]
    try:
        for stage, onnx, iname, ifile, dims, check in graphs:
            out = os.path.join(d, stage + ".json")
            if os.path.exists(out):
                os.unlink(out)
            cmd = [args.node, js, "--model", os.path.join(d, onnx),
                   "--input", "%s=%s:%s" % (iname, os.path.join(d, ifile), ",".join(map(str, dims))),
                   "--threads", str(args.threads), "--runs", str(args.runs), "--warmup", str(args.warmup),
                   "--check", "%s=%s" % (check, os.path.join(d, check + ".f32")), "--json", out]
            rc, rss, wall, err = run_child(cmd, child_env(args.threads))
            if rc != 0:
                return {"error": "bench_ort.js on %s failed (exit %d)%s" % (onnx, rc, ": " + err if err else "")}
            with open(out) as f:
                r = json.load(f)
            res["stages"][stage] = r["best_ms"]
            res["peak_rss_mb_graphs"][stage] = rss
            res.setdefault("checks", {}).update(r.get("checks", {}))
            res["ort_version"] = r.get("ort_version")
    finally:
        for n in ("image.f32", "rois.f32", "objectness.f32", "pooled.f32"):
            if os.path.exists(os.path.join(d, n)):
                os.unlink(os.path.join(d, n))
    res["total_ms"] = sum(res["stages"].values())
    res["peak_rss_mb"] = max(res["peak_rss_mb_graphs"].values())
    res["proposals"] = ex["proposals"]
    return res


def fmt(v, w=9, prec=1):
    if v is None:
        return "-".rjust(w)
    return ("%.*f" % (prec, v)).rjust(w)


def print_peers(doc):
    print("\nPeers: PyTorch %s, ONNX Runtime %s, %d threads, warm-up %d, best of %d run(s); times in ms"
          % (doc.get("torch") or "n/a", doc.get("ort") or "n/a", doc["threads"], doc["warmup"], doc["runs"]))
    hdr = "%-15s %-16s %9s %9s %9s %9s %9s %9s %9s" % (
        "setting", "peer", "backbone", "RPN", "RoIAlign", "res5", "other", "total", "RSS MB")
    print(hdr)
    print("-" * len(hdr))
    for s in doc["settings"]:
        name = s["name"]
        for label, key in (("PyTorch eager", "eager"), ("PyTorch jit+CL", "best"), ("ORT convs", "ort")):
            r = s.get(key)
            if r is None:
                continue
            if "error" in r:
                print("%-15s %-16s %s" % (name, label, r["error"]))
                name = ""
                continue
            st = r["stages"]
            if key == "eager":
                cols = [st["backbone"], st["rpn"], st["roialign"], st["res5"], st["preprocess"] + st["post"]]
            elif key == "best":
                cols = [st["backbone_rpn_head"], st["proposals"], st["roialign"], st["res5"],
                        st["preprocess"] + st["post"]]
            else:
                cols = [st["backbone_rpn_head"], None, None, st["res5"], None]
            rss = r["peak_rss_mb"]
            rs = "%.0f" % rss if key != "ort" else "%.0f/%.0f" % (
                r["peak_rss_mb_graphs"].get("backbone_rpn_head", 0), r["peak_rss_mb_graphs"].get("res5", 0))
            print("%-15s %-16s %s %s %9s" % (name, label, " ".join(fmt(c) for c in cols), fmt(r["total_ms"]), rs))
            name = ""
        e, b = s.get("eager", {}), s.get("best", {})
        if "top_scores" in e and "top_scores" in b and (
            e["detections"] != b["detections"]
            or any(abs(x - y) > 1e-3 for x, y in zip(e["top_scores"], b["top_scores"]))
        ):
            print("%-15s WARNING: jit+CL detections differ from eager: %d %s vs %d %s" % (
                "", b["detections"], b["top_scores"], e["detections"], e["top_scores"]))
        if s.get("eager", {}).get("proposals") not in (None, s["proposals"]):
            print("%-15s note: the RPN kept %d of %d proposals" % ("", s["eager"]["proposals"], s["proposals"]))
    print("jit+CL: backbone column = backbone + RPN head convs (one frozen module), RPN column = proposals.")
    print("ORT: backbone + RPN head convs graph and res5 graph only (no RoIAlign, proposals, NMS);"
          " RSS per graph process.")


def orchestrate(args):
    settings = args.setting or DEFAULT_SETTINGS
    for s in settings:
        parse_setting(s)
    for f in (args.model, args.image):
        if not os.path.isfile(f):
            sys.exit("bench_peers: %s: no such file" % f)
    only = set(args.only.split(","))
    if not only <= {"eager", "best", "ort"}:
        sys.exit("bench_peers: --only takes eager,best,ort")
    os.makedirs(args.work, exist_ok=True)
    doc = {"threads": args.threads, "runs": args.runs, "warmup": args.warmup, "image": args.image,
           "model": args.model, "eager_chunk": args.eager_chunk, "jit": args.jit, "torch": None,
           "ort": None, "settings": []}
    for s in settings:
        h, w, p = parse_setting(s)
        e = {"name": s, "h": h, "w": w, "proposals": p}
        for kind in ("eager", "best"):
            if kind in only:
                print("bench_peers: %s, PyTorch %s ..." % (s, kind), flush=True)
                e[kind] = python_worker(args, kind, s)
                doc["torch"] = doc["torch"] or e[kind].get("torch")
        if "ort" in only:
            if args.no_ort:
                e["ort"] = {"error": "ONNX Runtime unavailable: %s" % args.no_ort}
            else:
                print("bench_peers: %s, ONNX Runtime ..." % s, flush=True)
                e["ort"] = ort_measure(args, s)
                doc["ort"] = doc["ort"] or e["ort"].get("ort_version")
                doc["torch"] = doc["torch"] or e["ort"].get("export", {}).get("torch")
        doc["settings"].append(e)
        if args.json:  # written after each setting so a later failure keeps what was measured
            with open(args.json, "w") as f:
                json.dump(doc, f, indent=1)
    print_peers(doc)
    return 0


# ----------------------------------------------------------------------------------------------
# Comparison with our engine and the targets


def _targets(name):
    """The issue's targets for a setting: (description, peer key, limit, comparison). For "sgemm"
    the value is our time / the sgemm-only time, for "nongemm" the share of our time outside
    GEMMs, for "rss" our peak RSS in MB, otherwise the
    peer's time / our time ("best" = the faster of PyTorch eager and jit+channels_last)."""
    t = [
        ("end to end <= 1.10x the sgemm-only time", "sgemm", 1.10, "le"),
        ("faster than ONNX Runtime's convolutions alone", "ort", 1.0, "gt"),
        ("non-GEMM work < 5% of the total", "nongemm", 0.05, "lt"),
    ]
    if name == "800x1333/1000":
        t += [
            (">= 1.5x faster than PyTorch's best", "best", 1.5, "ge"),
            (">= 2.0x faster than PyTorch eager", "eager", 2.0, "ge"),
            ("peak RSS <= 600 MB", "rss", 600.0, "le"),
            ("weights load in < 1 s", "load", 1000.0, "lt"),
        ]
    elif name == "600x1000/300":
        t += [(">= 1.4x faster than PyTorch eager", "eager", 1.4, "ge")]
    return t


def _num(d, k):
    v = d.get(k) if isinstance(d, dict) else None
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) and v > 0 else None


def _load_ours(path):
    """({setting name: entry} from frcnn bench --json, why a setting may be missing)."""
    if not path:
        return {}, "no --ours file"
    try:
        with open(path) as f:
            doc = json.load(f)
        sets = doc.get("settings") if isinstance(doc, dict) else None
        if not isinstance(sets, list):
            return {}, "%s has no settings list" % path
    except (OSError, ValueError) as e:
        return {}, "frcnn bench --json unreadable (%s)" % e
    return {s.get("name"): s for s in sets if isinstance(s, dict)}, "not in frcnn bench --json output"


def compare(args):
    ours_by, why = _load_ours(args.ours)
    fast_by, _ = _load_ours(args.ours_fast) if args.ours_fast else ({}, None)
    if args.peers:
        with open(args.peers) as f:
            peers = json.load(f)
    else:  # ours alone: the sgemm and memory targets
        peers = {"threads": "?", "settings": [{"name": n} for n in ours_by if isinstance(n, str)]}
    bad = 0
    print("\nComparison (%s threads): \"x ours\" = that time / our end-to-end time, above 1 means ours is faster"
          % peers.get("threads", "?"))
    for s in peers["settings"]:
        name = s["name"]
        o = ours_by.get(name, {})
        ot = _num(o, "total_ms")
        print("\n== %s%s" % (name, "" if o else "  (ours: %s)" % why))
        hdr = "%-34s %11s %8s %12s" % ("", "total ms", "x ours", "peak RSS MB")
        print(hdr)
        print("-" * len(hdr))
        peer = {k: s.get(k) if isinstance(s.get(k), dict) else {} for k in ("eager", "best", "ort")}
        rows = [
            ("frcnn (ours), end to end", ot, _num(o, "peak_rss_mb")),
            ("cblas_sgemm alone, same GEMMs", _num(o, "sgemm_ms"), None),
            ("PyTorch eager, end to end", _num(peer["eager"], "total_ms"), _num(peer["eager"], "peak_rss_mb")),
            ("PyTorch jit+channels_last, e2e", _num(peer["best"], "total_ms"), _num(peer["best"], "peak_rss_mb")),
            ("ONNX Runtime, convolutions only", _num(peer["ort"], "total_ms"), _num(peer["ort"], "peak_rss_mb")),
        ]
        f = fast_by.get(name, {})
        if args.ours_fast:
            rows.append(("frcnn --fast (Winograd), e2e", _num(f, "total_ms"), _num(f, "peak_rss_mb")))
        for i, (label, t, rss) in enumerate(rows):
            ratio = "%.2fx" % (t / ot) if i and t and ot else ""
            print("%-34s %11s %8s %12s" % (label, fmt(t, 11), ratio, fmt(rss, 12, 0)))
        for k, v in peer.items():
            if "error" in v:
                print("(%s: %s)" % (k, v["error"]))
        torch_times = [t for t in (rows[2][1], rows[3][1]) if t]
        peer_t = {"ort": rows[4][1], "eager": rows[2][1], "best": min(torch_times) if torch_times else None}
        for desc, key, limit, op in _targets(name):
            if key == "rss":
                v = _num(o, "peak_rss_mb")
                shown = "peak RSS %s MB" % fmt(v, 0, 0)
            elif key == "load":
                v = _num(o, "load_ms")
                shown = "load %s ms" % fmt(v, 0, 0)
            elif key == "nongemm":
                g = _num(o, "gemm_in_pipeline_ms")
                v = (ot - g) / ot if ot and g and g <= ot else None
                shown = "non-GEMM share %s" % ("-" if v is None else "%.1f%%" % (100 * v))
            elif key == "sgemm":
                v = ot / rows[1][1] if ot and rows[1][1] else None
                shown = "ours / sgemm-only = %sx" % fmt(v, 0, 3)
            else:
                v = peer_t[key] / ot if ot and peer_t[key] else None
                shown = "%s / ours = %sx" % ({"ort": "ORT", "eager": "eager", "best": "best PyTorch"}[key],
                                             fmt(v, 0, 2))
            if v is None:
                print("N/A   %s: not measured" % desc)
                bad += 1
                continue
            ok = {"le": v <= limit, "ge": v >= limit, "gt": v > limit, "lt": v < limit}[op]
            bad += not ok
            print("%s  %s: %s" % ("PASS" if ok else "FAIL", desc, shown))
        if args.ours_fast:  # the "beyond" item: reported, not counted in --strict
            # exact mode as frcnn bench --fast measured it, interleaved with the fast runs (the
            # same stretch of time); the separate exact run above only where that is missing
            ft = _num(f, "total_ms")
            xt = _num(f, "exact_ms_interleaved")
            how = "exact runs interleaved with the fast ones, %s ms" % fmt(xt, 0, 0)
            if not xt:
                xt, how = ot, "exact from the separate run"
            v = xt / ft if xt and ft else None
            print("%s  fast mode >= 1.3x faster than exact mode: exact / fast = %sx (%s; separate runs: %sx)" % (
                "N/A " if v is None else "PASS" if v >= 1.3 else "FAIL", fmt(v, 0, 2), how,
                fmt(ot / ft if ot and ft else None, 0, 2)))
    return 1 if (args.strict and bad) else 0


# ----------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--image", default="/usr/share/darknet/data/dog.jpg")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=1, help="timed runs, the best is reported (default 1)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs before (default 1)")
    ap.add_argument("--setting", action="append", help="HxW/P (repeatable; default %s)" % " ".join(DEFAULT_SETTINGS))
    ap.add_argument("--only", default="eager,best,ort", help="peers to run (default eager,best,ort)")
    ap.add_argument("--eager-chunk", type=int, default=100,
                    help="RoIs per RoIAlign+res5 call in eager (model.py: 100; 0 = all at once)")
    ap.add_argument("--jit", choices=("freeze", "optimize"), default="freeze",
                    help="best variant: torch.jit.freeze (default) or torch.jit.optimize_for_inference")
    ap.add_argument("--work", default="build/bench", help="ONNX cache and scratch folder")
    ap.add_argument("--node", default="node")
    ap.add_argument("--no-ort", metavar="REASON", help="skip ONNX Runtime, recording REASON")
    ap.add_argument("--json")
    ap.add_argument("--compare", action="store_true")
    ap.add_argument("--peers")
    ap.add_argument("--ours")
    ap.add_argument("--ours-fast", help="frcnn bench --fast --json output: adds the fast-mode row")
    ap.add_argument("--strict", action="store_true")
    ap.add_argument("--worker", choices=("eager", "best", "export"), help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not (1 <= args.threads <= 256 and 1 <= args.runs <= 100 and 0 <= args.warmup <= 100
            and args.eager_chunk >= 0):
        ap.error("--threads 1..256, --runs 1..100, --warmup 0..100, --eager-chunk >= 0")
    if args.compare:
        if not args.peers and not args.ours:
            ap.error("--compare needs --peers and/or --ours")
        return compare(args)
    if not args.model:
        ap.error("--model is required")
    if args.worker:
        if not args.setting or len(args.setting) != 1 or not args.out:
            ap.error("--worker needs one --setting and --out")
        args.setting = args.setting[0]
        fn = {"eager": worker_eager, "best": worker_best, "export": worker_export}[args.worker]
        r = fn(args)
        with open(args.out, "w") as f:
            json.dump(r, f)
        return 0
    try:
        return orchestrate(args)
    except ValueError as e:
        sys.exit("bench_peers: %s" % e)


if __name__ == "__main__":
    sys.exit(main())
