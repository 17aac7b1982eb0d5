#!/bin/sh
# Installs (as root) or names (otherwise) the Debian 12 packages frcnn needs.
# Usage: tools/deps.sh build|test|all.  Shared by the Makefile, README and .ci/run.
# Exit 0 when everything is present afterwards, 1 when something is still missing.
set -u
build_pkgs="gcc make pkg-config libopenblas-openmp-dev libmicrohttpd-dev libcjson-dev libstb-dev libexpat1-dev"
test_pkgs="python3 python3-torch python3-torchvision python3-numpy darknet libonnx-testdata curl"
case "${1:-build}" in
  build) want="$build_pkgs" ;;
  test)  want="$build_pkgs $test_pkgs" ;;
  all)   want="$build_pkgs $test_pkgs clang libclang-rt-14-dev" ;;
  *) echo "usage: tools/deps.sh build|test|all" >&2; exit 2 ;;
esac
missing=""
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "deps: installing:$missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends $missing >&2 && exit 0
  echo "deps: apt-get failed" >&2; exit 1
fi
echo "deps: missing packages; run:" >&2
echo "  sudo apt-get install -y --no-install-recommends$missing" >&2
exit 1
