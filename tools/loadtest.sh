#!/bin/sh
# loadtest.sh - `make loadtest`: two rounds of LOADTEST_CLIENTS (64) concurrent keep-alive
# clients posting a real photo to `frcnn serve` on 127.0.0.1 for LOADTEST_SECONDS (60) each.
# Passes when: every answer is 200 or 503 (no other status, no reset or timeout); the
# server's counters (/metrics) and its access log equal the clients' counts; no request was
# aborted; threads and file descriptors are back to their baseline after each round; and
# RSS grew by less than 5 MB from the end of round 1 to the end of round 2. Prints p50/p99.
# Then SIGTERM: exit 0.
# usage: tools/loadtest.sh [BINARY]   env: LOADTEST_MODEL, LOADTEST_IMAGE, LOADTEST_CLIENTS,
#        LOADTEST_SECONDS, LOADTEST_BACKOFF_MS (a client's pause after a 503, default 0)
set -eu
cd "$(dirname "$0")/.."
bin=${1:-build/frcnn}
model=${LOADTEST_MODEL:-}
if [ -z "$model" ]; then
  model=models/demo.safetensors
  [ -f "$model" ] || model=tests/data/r101_narrow.safetensors
fi
image=${LOADTEST_IMAGE:-/usr/share/darknet/data/dog.jpg}
clients=${LOADTEST_CLIENTS:-64}
seconds=${LOADTEST_SECONDS:-60}
backoff=${LOADTEST_BACKOFF_MS:-0}
out=build/loadtest
mkdir -p "$out"
[ -x "$bin" ] || { echo "loadtest: no binary $bin (make)" >&2; exit 1; }
[ -f "$model" ] || { echo "loadtest: no model $model" >&2; exit 1; }
[ -f "$image" ] || { echo "loadtest: no image $image (tools/deps.sh test installs darknet's photos)" >&2; exit 1; }
command -v curl >/dev/null || { echo "loadtest: needs curl" >&2; exit 1; }
cc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-function -pthread -Itests/server -o "$out/loadgen" \
  tests/server/loadgen.c

fails=0
check() { # condition-text, then the test as arguments
  what=$1
  shift
  if "$@"; then echo "  ok: $what"; else echo "  FAILED: $what"; fails=$((fails + 1)); fi
}

rm -f "$out/access.log" "$out/server.log"
"$bin" serve -m "$model" --host 127.0.0.1 --port 0 --access-log "$out/access.log" \
  2>"$out/server.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
port=
i=0
while [ -z "$port" ] && [ $i -lt 100 ]; do
  port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$out/server.log")
  i=$((i + 1))
  sleep 0.1
done
[ -n "$port" ] || { cat "$out/server.log" >&2; echo "loadtest: the server did not start" >&2; exit 1; }
url=http://127.0.0.1:$port
i=0
until curl -fs "$url/readyz" >/dev/null; do
  i=$((i + 1))
  [ $i -lt 600 ] || { echo "loadtest: not ready" >&2; exit 1; }
  sleep 0.1
done

metric() { curl -fs "$url/metrics" | awk -v k="$1" '$1 == k { print $2; f = 1 } END { if (!f) print 0 }'; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status"; }
threads() { awk '/^Threads:/ { print $2 }' "/proc/$pid/status"; }
fds() { ls "/proc/$pid/fd" | wc -l; }
idle() { # waits until nothing is queued, running or connected (but this probe)
  j=0
  while [ $j -lt 300 ]; do
    m=$(curl -fs "$url/metrics")
    q=$(echo "$m" | awk '$1 == "frcnn_queue_depth" { print $2 }')
    r=$(echo "$m" | awk '$1 == "frcnn_inflight" { print $2 }')
    c=$(echo "$m" | awk '$1 == "frcnn_http_open_connections" { print $2 }')
    [ "$q" = 0 ] && [ "$r" = 0 ] && [ "$c" = 1 ] && return 0
    j=$((j + 1))
    sleep 0.1
  done
  return 1
}

# warm-up: the first inference creates the compute threads and touches the arena
curl -fs -o /dev/null -H 'Content-Type: image/jpeg' --data-binary @"$image" "$url/v1/detect"
idle
base_threads=$(threads)
base_fds=$(fds)
echo "loadtest: $bin serve on $url, model $model, image $image"
echo "baseline: $base_threads threads, $base_fds fds, RSS $(($(rss_kb) / 1024)) MB"

sum200=1 # the warm-up
sum503=0
for round in 1 2; do
  echo "round $round: $clients clients for $seconds s"
  "$out/loadgen" "$port" "$clients" "$seconds" "$image" "$backoff" | tee "$out/round$round.txt"
  counts=$(sed -n 's/^COUNTS //p' "$out/round$round.txt")
  c200=$(echo "$counts" | sed 's/.*200=\([0-9]*\).*/\1/')
  c503=$(echo "$counts" | sed 's/.*503=\([0-9]*\).*/\1/')
  other=$(echo "$counts" | sed 's/.*other=\([0-9]*\).*/\1/')
  errors=$(echo "$counts" | sed 's/.*errors=\([0-9]*\).*/\1/')
  sum200=$((sum200 + c200))
  sum503=$((sum503 + c503))
  check "only 200 and 503 answers (other $other, errors $errors)" test "$other" = 0 -a "$errors" = 0
  check "back to idle" idle
  t=$(threads)
  f=$(fds)
  check "threads back to baseline ($t vs $base_threads)" test "$t" = "$base_threads"
  check "file descriptors back to baseline ($f vs $base_fds)" test "$f" = "$base_fds"
  eval "rss$round=$(rss_kb)"
  echo "  RSS after round $round: $(($(rss_kb) / 1024)) MB"
done
s200=$(metric 'frcnn_http_requests_total{route="/v1/detect",code="200"}')
s503=$(metric 'frcnn_http_requests_total{route="/v1/detect",code="503"}')
aborted=$(metric 'frcnn_http_requests_aborted_total{route="/v1/detect"}')
check "server counted 200: $s200, clients $sum200" test "$s200" = "$sum200"
check "server counted 503: $s503, clients $sum503" test "$s503" = "$sum503"
check "no aborted requests ($aborted)" test "$aborted" = 0
logged=$(grep -c '"path":"/v1/detect"' "$out/access.log" || true)
check "access log has one line per detection request ($logged)" test "$logged" = $((sum200 + sum503))
growth=$((rss2 - rss1))
check "RSS growth between rounds < 5 MB ($((growth / 1024)) MB, $growth kB)" test "$growth" -lt 5120
kill -TERM $pid
rc=0
wait $pid || rc=$?
trap - EXIT
check "SIGTERM: exit status 0 ($rc)" test "$rc" = 0
if [ $fails -gt 0 ]; then
  echo "loadtest: $fails check(s) FAILED"
  exit 1
fi
echo "loadtest: passed"
