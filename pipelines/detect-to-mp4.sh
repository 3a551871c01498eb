#!/usr/bin/env bash
# A video file → detect faces → draw them → H.264 MP4 you can watch, plus the faces as JSON lines.
#
#   pipelines/detect-to-mp4.sh [INPUT_VIDEO] [OUTPUT_MP4] [OUTPUT_JSONL]
set -euo pipefail
source "$(dirname "$0")/common.sh"
input=${1:-$media/face_noface.mov}
output=${2:-faces.mp4}
json=${3:-${output%.*}.jsonl}

# retinafacejson is a pass-through: it records what the detector found, then the overlay draws it.
exec gst-launch-1.0 -q -e \
  filesrc location="$input" ! decodebin ! video/x-raw \
  ! retinafacedetect \
  ! retinafacejson location="$json" \
  ! retinafaceoverlay mode=draw \
  ! videoconvert ! x264enc speed-preset=veryfast ! mp4mux ! filesink location="$output"
