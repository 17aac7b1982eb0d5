#!/bin/sh
# make bench: our engine (`frcnn bench`) beside PyTorch (eager reference, jit+channels_last) and
# ONNX Runtime's convolutions on the same full-size seeded R101-C4 model, image and thread count,
# then per setting a comparison table and the targets as PASS/FAIL lines.
# Usage: tools/bench.sh build/frcnn
# Environment (defaults in brackets):
#   BENCH_MODEL     weights [build/fixtures/r101_full.safetensors, written by make fixtures]
#   BENCH_IMAGE     image the peers run on [/usr/share/darknet/data/dog.jpg]
#   BENCH_THREADS   threads for everyone [2]
#   BENCH_RUNS      timed runs of each peer, the best is reported [1]
#   BENCH_OURS_RUNS timed runs of frcnn bench [3]
#   BENCH_WARMUP    untimed runs of each peer first [1]
#   BENCH_SETTINGS  the peers' settings HxW/proposals ["800x1333/1000 600x1000/300"]
#   BENCH_PEERS     peers to run: eager,best,ort or none [eager,best,ort]
#   BENCH_NODE_DIR  where onnxruntime-node is installed with npm when missing [build/node]
#   BENCH_ORT_VERSION  onnxruntime-node version to install [1.30.0]
#   BENCH_WORK      scratch, ONNX cache and the JSON results [build/bench]
#   BENCH_FAST      0 skips the fast-mode run (frcnn bench --fast) [1]
#   BENCH_STRICT=1  exit 1 when a target fails or is not measured
# Results: $BENCH_WORK/ours.json (frcnn bench --json), $BENCH_WORK/peers.json (bench_peers.py).
set -eu
bin=${1:-build/frcnn}
model=${BENCH_MODEL:-build/fixtures/r101_full.safetensors}
image=${BENCH_IMAGE:-/usr/share/darknet/data/dog.jpg}
threads=${BENCH_THREADS:-2}
runs=${BENCH_RUNS:-1}
ours_runs=${BENCH_OURS_RUNS:-3}
warmup=${BENCH_WARMUP:-1}
settings=${BENCH_SETTINGS:-800x1333/1000 600x1000/300}
peers=${BENCH_PEERS:-eager,best,ort}
work=${BENCH_WORK:-build/bench}
BENCH_NODE_DIR=${BENCH_NODE_DIR:-build/node}
export BENCH_NODE_DIR
py=/usr/bin/python3
here=$(dirname "$0")
start=$(date +%s)

[ -f "$model" ] || { echo "bench: $model missing (make fixtures writes it)" >&2; exit 1; }
[ -x "$bin" ] || { echo "bench: $bin missing (make builds it)" >&2; exit 1; }
[ -f "$image" ] || image=tests/data/det_small.png
mkdir -p "$work"
export OPENBLAS_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "bench: $threads threads, model $model, image $image"

# ONNX Runtime for node: installed once into an ignored folder; without it the ORT column is n/a
ort_reason=
case ",$peers," in
*,ort,*)
    ortpkg="$BENCH_NODE_DIR/node_modules/onnxruntime-node/package.json"
    if ! command -v node >/dev/null 2>&1; then
        ort_reason="node is not installed"
    elif [ ! -f "$ortpkg" ]; then
        echo "bench: installing onnxruntime-node@${BENCH_ORT_VERSION:-1.30.0} into $BENCH_NODE_DIR (npm --ignore-scripts)"
        mkdir -p "$BENCH_NODE_DIR"
        # --ignore-scripts: its install script downloads CUDA files; the CPU runtime is in the package
        if ! npm install --ignore-scripts --no-audit --no-fund --loglevel=error --prefix "$BENCH_NODE_DIR" \
            "onnxruntime-node@${BENCH_ORT_VERSION:-1.30.0}" >"$work/npm.log" 2>&1; then
            ort_reason="npm install onnxruntime-node failed (see $work/npm.log)"
        fi
    fi
    if [ -z "$ort_reason" ] && ! node -e "require(require('path').resolve(process.argv[1], 'node_modules', 'onnxruntime-node'))" \
        "$BENCH_NODE_DIR" >"$work/ort-check.log" 2>&1; then
        ort_reason="onnxruntime-node does not load (see $work/ort-check.log)"
    fi
    [ -z "$ort_reason" ] || echo "bench: ONNX Runtime unavailable: $ort_reason; continuing without it"
    ;;
esac

# Our engine: whatever columns frcnn bench prints; its --json (when it has one) feeds the comparison
echo
echo "=== frcnn bench"
rm -f "$work/ours.json"
help=$("$bin" bench --help 2>&1 || true)
set -- -m "$model" --runs "$ours_runs"
case $help in *--json*) set -- "$@" --json "$work/ours.json" ;; esac
case $help in *--image*) set -- "$@" --image "$image" ;; esac
case $help in *--setting*) [ -z "${BENCH_SETTINGS:-}" ] || for s in $settings; do set -- "$@" --setting "$s"; done ;; esac
"$bin" bench "$@" || echo "bench: frcnn bench failed (exit $?)"
[ -f "$work/ours.json" ] || echo "bench: no $work/ours.json (frcnn bench has no --json yet?): our columns are n/a"

# The fast mode (Winograd) on the same settings, unless BENCH_FAST=0
rm -f "$work/ours_fast.json"
fastcmp=
case $help in *--fast*)
    if [ "${BENCH_FAST:-1}" != 0 ]; then
        echo
        echo "=== frcnn bench --fast"
        for a in "$@"; do [ "$a" = "$work/ours.json" ] && a="$work/ours_fast.json"; set -- "$@" "$a"; shift; done
        "$bin" bench "$@" --fast || echo "bench: frcnn bench --fast failed (exit $?)"
        [ -f "$work/ours_fast.json" ] && fastcmp="--ours-fast $work/ours_fast.json"
    fi ;;
esac

# The peers, each measurement in its own process
rm -f "$work/peers.json"
if [ "$peers" != none ]; then
    echo
    echo "=== peers ($peers; warm-up $warmup, best of $runs)"
    set -- --model "$model" --image "$image" --threads "$threads" --runs "$runs" --warmup "$warmup" \
        --only "$peers" --work "$work" --json "$work/peers.json"
    for s in $settings; do set -- "$@" --setting "$s"; done
    [ -z "$ort_reason" ] || set -- "$@" --no-ort "$ort_reason"
    "$py" "$here/bench_peers.py" "$@" || echo "bench: bench_peers.py failed (exit $?)"
fi

rc=0
if [ -f "$work/peers.json" ]; then
    "$py" "$here/bench_peers.py" --compare --peers "$work/peers.json" --ours "$work/ours.json" $fastcmp \
        ${BENCH_STRICT:+--strict} || rc=$?
elif [ -f "$work/ours.json" ]; then
    echo "bench: no peer results: our own targets only"
    "$py" "$here/bench_peers.py" --compare --ours "$work/ours.json" $fastcmp ${BENCH_STRICT:+--strict} || rc=$?
else
    echo "bench: no results to compare"
    [ -z "${BENCH_STRICT:-}" ] || rc=1
fi
echo
echo "bench: done in $(($(date +%s) - start)) s (load now $(cut -d' ' -f1-3 /proc/loadavg))"
exit "$rc"
