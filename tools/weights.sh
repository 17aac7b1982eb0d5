#!/bin/bash
# weights.sh - `make weights`: downloads detectron2's COCO faster_rcnn_R_101_C4_3x and PascalVOC
# faster_rcnn_R_50_C4 checkpoints (needs internet), verifies them and converts them into
# models/ with tools/convert.py.
#
# Verification: detectron2 publishes no sha256 or size for its model files; MODEL_ZOO.md says
# "any model on this page contains its md5 prefix in its file name" (model_final_298dad.pkl),
# so the md5 prefix is checked, and the sha256 and size are printed. Pin them for later runs
# with EXPECT_SHA256_COCO=... / EXPECT_SHA256_VOC=... (checked when set).
# Environment: MODELS (default models), PY (default /usr/bin/python3), FRCNN (default
# build/frcnn: when present, `frcnn info` must accept each file), D2_BASE (default
# https://dl.fbaipublicfiles.com/detectron2), ONLY=coco|voc; MD5_COCO / MD5_VOC replace the
# md5 prefixes (for tools/test_convert.py only, which serves fake files over file://). Downloads are kept in
# $MODELS/download/ and reused when their md5 prefix matches. Exit 0 on success, 1 on failure.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
PY=${PY:-/usr/bin/python3}
MODELS=${MODELS:-$root/models}
D2_BASE=${D2_BASE:-https://dl.fbaipublicfiles.com/detectron2}
ONLY=${ONLY:-}
FRCNN=${FRCNN:-$root/build/frcnn}
DL="$MODELS/download"

fail() { echo "weights: $*" >&2; exit 1; }

command -v curl >/dev/null 2>&1 || fail "curl is not installed (apt-get install curl)"
command -v md5sum >/dev/null 2>&1 || fail "md5sum is not installed (coreutils)"
mkdir -p "$DL" || fail "cannot create $DL"

# fetch ID PATH MD5PREFIX CONFIG OUT EXPECTED_SHA256
fetch() {
  local id=$1 path=$2 md5p=$3 cfg=$4 out=$5 want_sha=$6
  local url="$D2_BASE/$path" file="$DL/$(basename "$path")"
  if [ -f "$file" ] && [ "$(md5sum "$file" | cut -c1-6)" = "$md5p" ]; then
    echo "weights: $id: using $file"
  else
    echo "weights: $id: downloading $url"
    rm -f "$file" "$file.part"
    local err rc
    err=$(curl -fL --retry 2 --connect-timeout 20 -sS -o "$file.part" "$url" 2>&1); rc=$?
    err=$(printf '%s\n' "$err" | tail -n 1)
    if [ $rc -ne 0 ]; then
      rm -f "$file.part"
      fail "$id: cannot download $url (curl exit $rc: $err). This step needs internet access; offline, copy $(basename "$path") into $DL/ by hand and rerun."
    fi
    local got
    got=$(md5sum "$file.part" | cut -c1-6)
    if [ "$got" != "$md5p" ]; then
      rm -f "$file.part"
      fail "$id: md5 of the download starts with $got, its name says $md5p (detectron2 MODEL_ZOO.md): corrupt or wrong file, removed"
    fi
    mv "$file.part" "$file" || fail "$id: cannot move $file.part"
  fi
  local sha size
  sha=$(sha256sum "$file" | cut -d' ' -f1)
  size=$(stat -c %s "$file")
  if [ -n "$want_sha" ]; then
    [ "$sha" = "$want_sha" ] || fail "$id: sha256 $sha differs from the expected $want_sha"
    echo "weights: $id: md5 prefix $md5p ok, sha256 $sha ok, $size bytes"
  else
    echo "weights: $id: md5 prefix $md5p ok; sha256 $sha, $size bytes (detectron2 publishes no sha256:"
    echo "         not verified; pin it with EXPECT_SHA256_$(echo "$id" | tr a-z A-Z)=$sha)"
  fi
  "$PY" "$root/tools/convert.py" "$file" "$MODELS/$out" --layout detectron2 --config "$root/configs/$cfg" \
    || fail "$id: conversion failed"
  if [ -x "$FRCNN" ]; then
    "$FRCNN" info -m "$MODELS/$out" >/dev/null || fail "$id: $FRCNN info rejects $MODELS/$out"
  fi
  echo "weights: $id: wrote $MODELS/$out"
}

# URLs and md5 prefixes: facebookresearch/detectron2 MODEL_ZOO.md (COCO Faster R-CNN R101-C4 3x,
# box AP 41.1; Pascal VOC R50-C4, trained on VOC 2007+2012 trainval, AP50 80.3 on VOC 2007 test).
if [ -z "$ONLY" ] || [ "$ONLY" = coco ]; then
  fetch coco COCO-Detection/faster_rcnn_R_101_C4_3x/138204752/model_final_298dad.pkl "${MD5_COCO:-298dad}" \
    detectron2_R101_C4_coco.json faster_rcnn_R_101_C4_3x.safetensors "${EXPECT_SHA256_COCO:-}"
fi
if [ -z "$ONLY" ] || [ "$ONLY" = voc ]; then
  fetch voc PascalVOC-Detection/faster_rcnn_R_50_C4/142202221/model_final_b1acc2.pkl "${MD5_VOC:-b1acc2}" \
    detectron2_R50_C4_voc.json faster_rcnn_R_50_C4_voc.safetensors "${EXPECT_SHA256_VOC:-}"
fi
