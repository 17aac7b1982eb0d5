#!/bin/sh
# docker.sh - builds (`build`, make docker) or builds and tests (`test`, make docker-test) the
# image frcnn:latest from docker/Dockerfile.
#
# With a working Docker engine this is a plain `docker build` / `docker run`. When
# `docker info` fails (no engine, as on the project's build machines) and we are root, it
# starts a private dockerd for the duration of the command (state kept under
# $FRCNN_DOCKERD_DIR, default /var/tmp/frcnn-dockerd, so the base image and the build
# cache survive), installing docker.io first if needed; when debian:bookworm-slim can be
# neither found nor pulled, it makes it with debootstrap from the host's Debian mirror.
# The private daemon has no bridge network: builds use the host network and the test
# container runs on the host network bound to 127.0.0.1.
#
# test: run the image, wait for /readyz, POST a real photo (raw and multipart) and check the
# JSON, check the error mapping, /metrics, the HEALTHCHECK, the non-root user and PID 1,
# then `docker stop` (SIGTERM) and check exit code 0 within Docker's 10 s grace period.
# Photo: $FRCNN_TEST_PHOTO (default /usr/share/darknet/data/dog.jpg, Debian's darknet).
set -eu
cd "$(dirname "$0")/.."

IMAGE=${FRCNN_IMAGE:-frcnn:latest}
D=${FRCNN_DOCKERD_DIR:-/var/tmp/frcnn-dockerd}
DOCKER=docker
[ -x /usr/bin/docker ] && DOCKER=/usr/bin/docker # the legacy builder, no buildx needed
private=0
dockerd_pid=
container=

log() { echo "docker.sh: $*" >&2; }
fail() { log "FAILED: $*"; exit 1; }

cleanup() {
  if [ -n "$container" ]; then $DOCKER rm -f "$container" >/dev/null 2>&1 || true; fi
  if [ -n "$dockerd_pid" ]; then
    kill "$dockerd_pid" 2>/dev/null || true
    i=0
    while kill -0 "$dockerd_pid" 2>/dev/null && [ $i -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
    umount "$D/exec/netns/default" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Installs missing Debian packages when root, else names them and fails.
need_pkgs() {
  missing=""
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
  done
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends $missing >&2 ||
      { apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends $missing >&2; } ||
      fail "apt-get install$missing"
    return 0
  fi
  fail "missing packages; run: sudo apt-get install -y --no-install-recommends$missing"
}

engine() {
  if $DOCKER info >/dev/null 2>&1; then return 0; fi
  [ "$(id -u)" = 0 ] || fail "no Docker engine answers ('docker info'); start one or run as root"
  command -v dockerd >/dev/null 2>&1 || need_pkgs docker.io
  [ -x /usr/bin/docker ] && DOCKER=/usr/bin/docker
  mkdir -p "$D"
  export DOCKER_HOST="unix://$D/docker.sock"
  private=1
  if [ -f "$D/docker.pid" ]; then
    old=$(cat "$D/docker.pid" 2>/dev/null || true)
    if [ -n "$old" ] && kill -0 "$old" 2>/dev/null && $DOCKER info >/dev/null 2>&1; then
      log "using the private dockerd already running (pid $old)"
      return 0
    fi
    rm -f "$D/docker.pid"
  fi
  log "no Docker engine answers: starting a private dockerd in $D"
  dockerd --data-root "$D/root" --exec-root "$D/exec" --pidfile "$D/docker.pid" \
    -H "unix://$D/docker.sock" --storage-driver overlay2 --iptables=false --bridge=none \
    >"$D/dockerd.log" 2>&1 &
  dockerd_pid=$!
  i=0
  until $DOCKER info >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 300 ] || ! kill -0 "$dockerd_pid" 2>/dev/null; then
      tail -n 20 "$D/dockerd.log" >&2
      fail "the private dockerd did not start"
    fi
    sleep 0.1
  done
}

base_image() {
  $DOCKER image inspect debian:bookworm-slim >/dev/null 2>&1 && return 0
  if timeout 180 $DOCKER pull debian:bookworm-slim >/dev/null 2>&1; then return 0; fi
  [ "$(id -u)" = 0 ] || fail "cannot pull debian:bookworm-slim"
  command -v debootstrap >/dev/null 2>&1 || need_pkgs debootstrap
  mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null |
    grep -v security | head -n 1 || true)
  [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' \
    /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
  rootfs="$D/rootfs"
  rm -rf "$rootfs"
  log "cannot pull debian:bookworm-slim: making it with debootstrap from $mirror"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$D/debootstrap.log" 2>&1 ||
    { tail -n 20 "$D/debootstrap.log" >&2; fail "debootstrap"; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/cache/apt/*.bin
  # slim like the official image: no docs, man pages or translations, no apt caches
  printf 'path-exclude %s\n' '/usr/share/doc/*' '/usr/share/man/*' '/usr/share/groff/*' \
    '/usr/share/info/*' '/usr/share/lintian/*' '/usr/share/linda/*' '/usr/share/locale/*' \
    >"$rootfs/etc/dpkg/dpkg.cfg.d/docker"
  echo 'path-include /usr/share/doc/*/copyright' >>"$rootfs/etc/dpkg/dpkg.cfg.d/docker"
  printf '%s\n' \
    'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };' \
    'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };' \
    'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";' \
    >"$rootfs/etc/apt/apt.conf.d/docker-clean"
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
  rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*
  # the same apt sources as the official image (updates and security included)
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    cp /etc/apt/sources.list.d/debian.sources "$rootfs/etc/apt/sources.list.d/"
    rm -f "$rootfs/etc/apt/sources.list"
  fi
  tar -C "$rootfs" -c . | $DOCKER import - debian:bookworm-slim >/dev/null
  rm -rf "$rootfs"
}

build() {
  engine
  base_image
  t0=$(date +%s)
  if [ $private = 1 ]; then
    DOCKER_BUILDKIT=0 $DOCKER build --network host -f docker/Dockerfile -t "$IMAGE" .
  else
    $DOCKER build -f docker/Dockerfile -t "$IMAGE" .
  fi
  size=$($DOCKER image inspect -f '{{.Size}}' "$IMAGE")
  log "built $IMAGE in $(($(date +%s) - t0)) s: $((size / 1000000)) MB"
}

free_port() {
  python3 -c 'import socket
for p in (8080, 0):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(s.getsockname()[1]); break
    except OSError: pass'
}

# Checks a /v1/detect answer: the contract's fields, boxes inside the image, sorted scores.
check_json() { # file, max detections
  python3 - "$1" "$2" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
assert set(r) >= {"model", "width", "height", "detections", "timing_ms"}, r.keys()
w, h = r["width"], r["height"]
assert w > 0 and h > 0
d = r["detections"]
assert len(d) <= int(sys.argv[2]), len(d)
for x in d:
    x1, y1, x2, y2 = x["box"]
    assert isinstance(x["class_id"], int) and isinstance(x["label"], str)
    assert 0 <= x["score"] <= 1
    assert -0.5 <= x1 <= x2 <= w + 0.5 and -0.5 <= y1 <= y2 <= h + 0.5, x
assert [x["score"] for x in d] == sorted((x["score"] for x in d), reverse=True)
assert {"decode", "backbone", "rpn", "roi_head", "total"} <= set(r["timing_ms"])
print("%dx%d, %d detections, best: %s, %.0f ms" % (w, h, len(d),
      "%s %.2f" % (d[0]["label"], d[0]["score"]) if d else "-", r["timing_ms"]["total"]))
EOF
}

run_test() {
  build
  photo=${FRCNN_TEST_PHOTO:-/usr/share/darknet/data/dog.jpg}
  [ -f "$photo" ] || fail "no test photo $photo (tools/deps.sh test installs darknet, or set FRCNN_TEST_PHOTO)"
  command -v curl >/dev/null 2>&1 || need_pkgs curl
  command -v python3 >/dev/null 2>&1 || need_pkgs python3
  container=frcnn-test-$$
  tmp=$(mktemp -d)
  # the restrictions of deploy/deployment.yaml's securityContext
  harden="--read-only --cap-drop ALL --security-opt no-new-privileges"
  if [ $private = 1 ]; then
    port=$(free_port)
    if [ "$port" = 8080 ]; then
      $DOCKER run -d --name "$container" $harden --network host --health-interval 2s "$IMAGE" \
        -m /models/demo.safetensors --host 127.0.0.1 >/dev/null
    else # the image's HEALTHCHECK probes port 8080, which is taken here
      $DOCKER run -d --name "$container" $harden --network host --health-interval 2s \
        --health-cmd "/usr/local/bin/frcnn serve --healthcheck http://127.0.0.1:$port/healthz" \
        "$IMAGE" -m /models/demo.safetensors --host 127.0.0.1 --port "$port" >/dev/null
    fi
  else
    $DOCKER run -d --name "$container" $harden -p 127.0.0.1::8080 --health-interval 2s "$IMAGE" \
      >/dev/null
    port=$($DOCKER port "$container" 8080/tcp | head -n 1 | sed 's/.*://')
  fi
  url=http://127.0.0.1:$port
  log "container $container on $url"
  i=0
  until curl -fsS "$url/readyz" >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -le 240 ] || { $DOCKER logs "$container" 2>&1 | tail -n 20 >&2; fail "not ready after 120 s"; }
    sleep 0.5
  done
  # a real photo, raw body
  code=$(curl -sS -o "$tmp/raw.json" -w '%{http_code}' -H 'Content-Type: image/jpeg' \
    --data-binary @"$photo" "$url/v1/detect")
  [ "$code" = 200 ] || { cat "$tmp/raw.json" >&2; fail "raw POST answered $code"; }
  log "raw POST: $(check_json "$tmp/raw.json" 10000)" || fail "raw POST JSON"
  # multipart with options
  code=$(curl -sS -o "$tmp/mp.json" -w '%{http_code}' -F "image=@$photo;type=image/jpeg" \
    -F 'options={"max_detections": 3, "score_threshold": 0};type=application/json' "$url/v1/detect")
  [ "$code" = 200 ] || { cat "$tmp/mp.json" >&2; fail "multipart POST answered $code"; }
  log "multipart POST: $(check_json "$tmp/mp.json" 3)" || fail "multipart POST JSON"
  # error mapping
  code=$(curl -sS -o /dev/null -w '%{http_code}' -H 'Content-Type: text/plain' --data 'hi' "$url/v1/detect")
  [ "$code" = 415 ] || fail "text/plain answered $code, not 415"
  code=$(curl -sS -o /dev/null -w '%{http_code}' -H 'Content-Type: image/jpeg' --data 'not a jpeg' "$url/v1/detect")
  [ "$code" = 415 ] || fail "a text file sent as image/jpeg answered $code, not 415"
  head -c 3000 "$photo" >"$tmp/truncated.jpg"
  code=$(curl -sS -o /dev/null -w '%{http_code}' -H 'Content-Type: image/jpeg' \
    --data-binary @"$tmp/truncated.jpg" "$url/v1/detect")
  [ "$code" = 400 ] || fail "a truncated JPEG answered $code, not 400"
  curl -fsS "$url/metrics" | grep -q '^frcnn_http_requests_total{route="/v1/detect",code="200"} 2$' ||
    fail "/metrics does not count the 2 answers"
  curl -fsS "$url/" | grep -q '<canvas id="canvas"' || fail "GET / is not the page"
  # HEALTHCHECK, user, PID 1
  i=0
  until [ "$($DOCKER inspect -f '{{.State.Health.Status}}' "$container")" = healthy ]; do
    i=$((i + 1))
    [ $i -le 60 ] || fail "health status: $($DOCKER inspect -f '{{.State.Health.Status}}' "$container")"
    sleep 0.5
  done
  user=$($DOCKER exec "$container" id -u)
  [ "$user" != 0 ] || fail "runs as root"
  pid1=$($DOCKER exec "$container" cat /proc/1/comm)
  [ "$pid1" = frcnn ] || fail "PID 1 is '$pid1', not frcnn"
  log "healthy; uid $user; frcnn is PID 1"
  # SIGTERM: drain and exit 0 well within the 10 s grace period
  t0=$(date +%s.%N)
  $DOCKER stop -t 10 "$container" >/dev/null
  t1=$(date +%s.%N)
  rc=$($DOCKER inspect -f '{{.State.ExitCode}}' "$container")
  took=$(python3 -c "print('%.2f' % ($t1 - $t0))")
  $DOCKER logs "$container" 2>&1 | grep -q "drained; exiting" || fail "no clean drain in the logs"
  [ "$rc" = 0 ] || fail "exit code $rc after SIGTERM"
  python3 -c "import sys; sys.exit(0 if $took < 9 else 1)" || fail "docker stop took $took s"
  log "docker stop: exit 0 after $took s"
  rm -rf "$tmp"
  log "docker-test passed ($IMAGE, $((size / 1000000)) MB)"
}

case "${1:-build}" in
  build) build ;;
  test) run_test ;;
  *) echo "usage: tools/docker.sh build|test" >&2; exit 2 ;;
esac
