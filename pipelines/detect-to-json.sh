#!/usr/bin/env bash
# Detect faces in a video file and write one JSON line per frame (see README: "JSON lines").
#
#   pipelines/detect-to-json.sh [INPUT_VIDEO] [OUTPUT_JSONL] [extra retinafacedetect properties…]
#
# Decoded frames go straight to retinafacedetect: it reads I420/NV12 itself, so no videoconvert
# is needed for the usual decoder outputs.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
input=${1:-${RETINAFACE_DATA:-/usr/local/share/retinaface}/media/face_noface.mov}
output=${2:-faces.jsonl}
shift $(($# > 2 ? 2 : $#))
# Use the plugin built in this checkout unless the caller points GStreamer elsewhere.
export GST_PLUGIN_PATH=${GST_PLUGIN_PATH:-$here/target/release}

exec gst-launch-1.0 -q \
  filesrc location="$input" ! decodebin ! video/x-raw \
  ! retinafacedetect "$@" \
  ! retinafacejson location="$output" \
  ! fakesink sync=false
