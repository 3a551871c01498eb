#!/usr/bin/env bash
# A still image → annotated PNG + the faces as JSON (one line).
#
#   pipelines/image-to-png.sh [INPUT_JPEG] [OUTPUT_PNG] [OUTPUT_JSON]
set -euo pipefail
source "$(dirname "$0")/common.sh"
input=${1:-$media/sample1.jpg}
output=${2:-faces.png}
json=${3:-${output%.*}.json}

exec gst-launch-1.0 -q \
  filesrc location="$input" ! jpegdec ! videoconvert ! video/x-raw,format=RGB \
  ! retinafacedetect ! retinafacejson location="$json" \
  ! retinafaceoverlay mode=draw thickness=3 landmark-radius=3 \
  ! videoconvert ! pngenc ! filesink location="$output"
