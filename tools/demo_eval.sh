#!/bin/sh
# demo_eval.sh - accuracy check of the bundled demo model on the shapes test split.
#
#   tools/demo_eval.sh [MODEL [WORKDIR]]      (defaults: models/demo.safetensors build/demo_eval)
#
# 1. generates the test split the model was trained against (tools/shapes.py, parameters from
#    the model's "frcnn.dataset" metadata) under WORKDIR/VOCdevkit;
# 2. runs the PyTorch reference (tools/reference/model.py) over it, writing detectron2-style
#    comp4 files to WORKDIR/ref and its APs to WORKDIR/ref.json, and prints the mAP table;
# 3. when FRCNN names the C binary (e.g. FRCNN=build/frcnn), runs `frcnn eval` on the same
#    split (comp4 files in WORKDIR/c, APs in WORKDIR/c.json) and checks that its VOC07 mAP is
#    >= MIN_MAP (0.90) and within TOL (0.002) of the reference's. Exit status 1 on failure.
# Environment: PY (/usr/bin/python3), FRCNN, MIN_MAP, TOL, THREADS (2).
set -eu
MODEL=${1:-models/demo.safetensors}
WORK=${2:-build/demo_eval}
PY=${PY:-/usr/bin/python3}
MIN_MAP=${MIN_MAP:-0.90}
TOL=${TOL:-0.002}
THREADS=${THREADS:-2}
HERE=$(dirname "$0")

[ -f "$MODEL" ] || { echo "demo_eval: $MODEL: no such model file" >&2; exit 1; }
mkdir -p "$WORK"
rm -rf "$WORK/ref" "$WORK/c"
"$PY" "$HERE/demo_eval.py" -m "$MODEL" --shapes "$WORK/VOCdevkit" --set test \
    --out "$WORK/ref" --json "$WORK/ref.json" --threads "$THREADS"
if [ -n "${FRCNN:-}" ]; then
    "$FRCNN" eval -m "$MODEL" --voc "$WORK/VOCdevkit/VOC2007" --set test --out "$WORK/c" \
        --json "$WORK/c.json"
    "$PY" "$HERE/demo_eval.py" --compare "$WORK/ref.json" "$WORK/c.json" --tol "$TOL" \
        --min-map "$MIN_MAP"
fi
