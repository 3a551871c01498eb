#!/usr/bin/env bash
# Detect faces in a video file and write one JSON line per frame (see README: "JSON lines").
#
#   pipelines/detect-to-json.sh [INPUT_VIDEO] [OUTPUT_JSONL] [extra retinafacedetect properties…]
#
# Decoded frames go straight to retinafacedetect: it reads I420/NV12 itself, so no videoconvert
# is needed for the usual decoder outputs.
set -euo pipefail
source "$(dirname "$0")/common.sh"
input=${1:-$media/face_noface.mov}
output=${2:-faces.jsonl}
shift $(($# > 2 ? 2 : $#))

exec gst-launch-1.0 -q \
  filesrc location="$input" ! decodebin ! video/x-raw \
  ! retinafacedetect "$@" \
  ! retinafacejson location="$output" \
  ! fakesink sync=false
