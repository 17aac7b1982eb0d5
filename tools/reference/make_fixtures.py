#!/usr/bin/python3
"""Writes every golden fixture the C tests read: runs each tools/reference/fx_*.py.

Each fx_*.py takes --out DIR and writes its files there (safetensors or JSON), computed
with the PyTorch reference, never with the C code.
"""
import argparse
import glob
import os
import subprocess
import sys

ap = argparse.ArgumentParser()
ap.add_argument("--out", required=True)
args = ap.parse_args()
os.makedirs(args.out, exist_ok=True)
here = os.path.dirname(os.path.abspath(__file__))
for script in sorted(glob.glob(os.path.join(here, "fx_*.py"))):
    print("fixtures:", os.path.basename(script), flush=True)
    r = subprocess.run([sys.executable, script, "--out", args.out])
    if r.returncode != 0:
        sys.exit("fixtures: %s failed (exit %d)" % (script, r.returncode))
