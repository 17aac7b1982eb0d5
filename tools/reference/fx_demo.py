#!/usr/bin/python3
"""fx_demo.py - golden accuracy of the bundled demo model (models/demo.safetensors).

Generates the model's shapes test split (tools/shapes.py, parameters from the model's
"frcnn.dataset" metadata) under OUT/demo/VOCdevkit, runs the PyTorch reference detector
(tools/reference/model.py) over it and writes its comp4 files to OUT/demo/ref and its APs
(both VOC metrics, tools/demo_eval.py's scoring) to OUT/demo/ref.json. tests/test_demo.c runs
`frcnn eval` on the same split and compares.
"""
import argparse
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
import demo_eval  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--out", required=True)
ap.add_argument("--model", default=os.path.join(HERE, "..", "..", "models", "demo.safetensors"))
a = ap.parse_args()
work = os.path.join(a.out, "demo")
shutil.rmtree(work, ignore_errors=True)
voc = demo_eval.make_test_split(a.model, os.path.join(work, "VOCdevkit"))
classes, names = demo_eval.run_reference(a.model, voc, "test", os.path.join(work, "ref"), threads=2)
res = demo_eval.score(voc, "test", os.path.join(work, "ref"), classes, None)
demo_eval.print_table(res, classes)
demo_eval.write_json(os.path.join(work, "ref.json"), res, classes)
