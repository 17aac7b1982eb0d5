#!/bin/sh
# page_test.sh - runs page.test.mjs: starts `frcnn serve` with the test model on 127.0.0.1,
# drives its upload page in headless Chromium, stops it (SIGTERM, exit 0).
# Needs Debian's chromium and `npm ci --prefix tests/server` (playwright-core).
# usage: tests/server/page_test.sh [BINARY]      (from the repository root)
set -eu
cd "$(dirname "$0")/../.."
bin=${1:-build/frcnn}
model=${PAGE_TEST_MODEL:-tests/data/r101_narrow.safetensors}
photo=${PAGE_TEST_PHOTO:-/usr/share/darknet/data/dog.jpg}
command -v node >/dev/null || { echo "page_test: needs node" >&2; exit 1; }
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || { echo "page_test: needs chromium (apt-get install chromium)" >&2; exit 1; }
[ -d tests/server/node_modules/playwright-core ] || npm ci --prefix tests/server --no-audit --no-fund >&2
mkdir -p build/tests/tmp
log=build/tests/tmp/page_test_server.log
"$bin" serve -m "$model" --host 127.0.0.1 --port 0 --access-log none 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
port=
i=0
while [ -z "$port" ] && [ $i -lt 100 ]; do
  port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log")
  i=$((i + 1))
  sleep 0.1
done
[ -n "$port" ] || { cat "$log" >&2; exit 1; }
rc=0
node tests/server/page.test.mjs "http://127.0.0.1:$port/" "$photo" || rc=$?
kill -TERM $pid
wait $pid || { echo "page_test: server exit status $?" >&2; rc=1; }
trap - EXIT
exit $rc
