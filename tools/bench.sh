#!/bin/sh
# make bench: the benchmark table on the full-size seeded R101-C4 model (build/fixtures,
# written by tools/reference/fx_backbone.py). Usage: tools/bench.sh build/frcnn
set -eu
bin=${1:-build/frcnn}
model=${BENCH_MODEL:-build/fixtures/r101_full.safetensors}
[ -f "$model" ] || { echo "bench: $model missing (make fixtures writes it)" >&2; exit 1; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), OpenBLAS threads ${OPENBLAS_NUM_THREADS:-default}"
exec "$bin" bench -m "$model" --runs "${BENCH_RUNS:-3}"
