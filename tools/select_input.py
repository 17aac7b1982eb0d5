#!/usr/bin/python3
"""select_input.py - picks a demo model's test-time settings on held-out images, then scores it.

  select_input.py -m MODEL.safetensors [--out OUT.safetensors] [--sizes 384:544,448:640]
                  [--grid SECTION.KEY=V1,V2,...]... [--heldout DIR] [--n-heldout 200]
                  [--test DIR] [--threads 2]

The last step after tools/train.py. A run trains on several sizes (--train-min-sizes) and
writes one of them into the config; which test-time size (or other test-time setting) scores
best is a measurement, and it must not be made on the test split that the model's mAP is
reported on, nor on the training images (train.py trains on trainval: train + the first n_val
val images). So:
 1. generates a held-out split under --heldout (a VOCdevkit root) with tools/shapes.py: the
    model's dataset parameters (its "frcnn.dataset" metadata) with n_val + N val images; the
    last N (ids never trained on) are listed as ImageSets/Main/heldout.txt;
 2. runs the PyTorch reference there for every candidate config (each --sizes MIN:MAX pair
    times each value of each --grid key, e.g. --grid head.score_thresh=0.05,0.01) and prints
    their VOC07 / VOC2010+ mAPs and how many objects of each class no detection found;
 3. writes the best candidate's settings into the model's "frcnn.config" (the first listed
    wins a tie), scores it on the model's test split (generated under --test as
    tools/demo_eval.py --shapes does) and records that as "frcnn.ref_map07" /
    "frcnn.ref_map10" / "frcnn.ref_eval";
 4. appends all of it to the model's .train.log (copied beside OUT first when OUT differs).
Writes MODEL in place unless --out is given.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "reference"))
import demo_eval  # noqa: E402
import shapes  # noqa: E402
import st  # noqa: E402
import train  # noqa: E402  (model_base, Log, eval_test_split)


def parse_sizes(s):
    out = []
    for item in s.split(","):
        try:
            lo, hi = (int(v) for v in item.split(":"))
        except ValueError:
            raise argparse.ArgumentTypeError("sizes: MIN:MAX pairs separated by commas, got %r"
                                             % item)
        if not (32 <= lo <= hi <= 4096):
            raise argparse.ArgumentTypeError("sizes: need 32 <= MIN <= MAX <= 4096, got %r" % item)
        out.append((lo, hi))
    return out


def parse_grid(s):
    """SECTION.KEY=V1,V2,... (numbers) -> (section, key, [values])."""
    try:
        name, vals = s.split("=", 1)
        sec, key = name.split(".")
        values = [json.loads(v) for v in vals.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("grid: SECTION.KEY=V1,V2,... with numbers, got %r" % s)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise argparse.ArgumentTypeError("grid: values must be numbers, got %r" % s)
    return sec, key, values


def make_heldout(params, out, n, log):
    """The held-out split: n val images past the n_val the model trained on; returns VOC2007."""
    n_val = int(params["n_val"])
    root = shapes.generate(out, params["seed"], 0, n_val + n, 0,
                           (params["width"], params["height"]), params["quality"], log=log)
    ids = demo_eval.read_set(root, "val")[n_val:]
    if len(ids) != n:
        raise SystemExit("select_input: %s lists %d val images, expected %d"
                         % (root, len(ids) + n_val, n_val + n))
    with open(os.path.join(root, "ImageSets", "Main", "heldout.txt"), "w") as f:
        f.write("".join(i + "\n" for i in ids))
    log("select_input: held-out split: val ids %s..%s (%d images) in %s"
        % (ids[0], ids[-1], n, root))
    return root


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.split("\n")[2:]))
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--out", help="write here instead of in place")
    ap.add_argument("--sizes", type=parse_sizes, default=parse_sizes("384:544,448:640"),
                    help="candidate MIN:MAX input sizes")
    ap.add_argument("--grid", type=parse_grid, action="append", default=[],
                    metavar="SECTION.KEY=V1,V2", help="candidate values of one config key")
    ap.add_argument("--heldout", default=os.path.join(HERE, "..", "build", "shapes_heldout"),
                    help="VOCdevkit root for the held-out split (generated)")
    ap.add_argument("--n-heldout", type=int, default=200)
    ap.add_argument("--test", default=os.path.join(HERE, "..", "build", "demo_eval", "VOCdevkit"),
                    help="VOCdevkit root for the model's test split (generated)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    if not 1 <= a.n_heldout <= shapes.MAX_PER_SPLIT // 2:
        ap.error("--n-heldout must be in 1..%d" % (shapes.MAX_PER_SPLIT // 2))
    out = os.path.abspath(a.out or a.model)
    try:
        tensors, meta = st.load(a.model)
        cfg = json.loads(meta["frcnn.config"])
        params = json.loads(meta["frcnn.dataset"])
    except (OSError, ValueError, KeyError) as e:
        raise SystemExit("select_input: %s: not a model tools/train.py wrote (%s)" % (a.model, e))
    for sec, key, _ in a.grid:
        if not isinstance(cfg.get(sec), dict) or key not in cfg[sec]:
            raise SystemExit("select_input: --grid %s.%s: the model's config has no such key"
                             % (sec, key))
    history = ""
    src_log = train.model_base(a.model) + ".train.log"
    if os.path.isfile(src_log):
        with open(src_log) as f:  # read before the log beside OUT is opened: it may be this file
            history = f.read()
    log = train.Log(train.model_base(out) + ".train.log", history)

    log("select_input: ---- test-time settings chosen on held-out images "
        "(tools/select_input.py) ----")
    ho = make_heldout(params, a.heldout, a.n_heldout, log)
    cands = []
    for lo, hi in a.sizes:
        c = json.loads(json.dumps(cfg))
        c["input"]["min_size"], c["input"]["max_size"] = lo, hi
        cands.append(c)
    for sec, key, values in a.grid:
        cands = [dict(c, **{sec: dict(c[sec], **{key: v})}) for c in cands for v in values]
    work = tempfile.mkdtemp(prefix="select_input_")
    rows = []
    for n, c in enumerate(cands):
        desc = ", ".join(["min_size %d max_size %d"
                          % (c["input"]["min_size"], c["input"]["max_size"])]
                         + ["%s.%s %s" % (sec, key, c[sec][key]) for sec, key, _ in a.grid])
        d = os.path.join(work, str(n))
        classes, names = demo_eval.run_reference(a.model, ho, "heldout", d, c, a.threads,
                                                 log=lambda *x: None)
        r = demo_eval.score(ho, "heldout", d, classes, log=log)
        rows.append((r["07"]["mAP"], c, desc))
        missed = " ".join("%s %d/%d" % (k, r["npos"][k] - r["tp"][k], r["npos"][k])
                          for k in classes)
        log("select_input: heldout %s: VOC07 %.4f, VOC2010+ %.4f; never found: %s"
            % (desc, r["07"]["mAP"], r["10"]["mAP"], missed))
    _, cfg, desc = max(rows, key=lambda r: r[0])  # max keeps the first of equals
    log("select_input: chosen %s" % desc)
    test = demo_eval.make_test_split(a.model, a.test)
    res, n = train.eval_test_split(a.model, test, os.path.join(work, "test"), cfg, a.threads, 0,
                                   meta, log)
    meta["frcnn.config"] = json.dumps(cfg)
    st.save(out, tensors, meta, dtype="F32")
    log("select_input: reference VOC07 mAP on the test split (%d images): %.4f (VOC2010+ %.4f); "
        "wrote %s" % (n, res["07"]["mAP"], res["10"]["mAP"], out))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
