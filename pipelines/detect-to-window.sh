#!/usr/bin/env bash
# A video file → detect faces → draw them → a window on the desktop.
#
#   pipelines/detect-to-window.sh [INPUT_VIDEO]
set -euo pipefail
source "$(dirname "$0")/common.sh"
input=${1:-$media/face_noface.mov}

exec gst-launch-1.0 \
  filesrc location="$input" ! decodebin ! video/x-raw \
  ! retinafacedetect ! retinafaceoverlay mode=draw \
  ! videoconvert ! autovideosink
