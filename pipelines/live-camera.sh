#!/usr/bin/env bash
# Live camera template: camera → detect → draw → display, with the faces teed off as JSON lines
# for an NVR or any other consumer (tail -f the file).
#
#   pipelines/live-camera.sh [SOURCE] [OUTPUT_JSONL]
#
# SOURCE is a gst-launch fragment producing raw video, by default the first V4L2 camera; for an
# IP camera: 'rtspsrc location=rtsp://user:pass@camera/stream latency=200 ! decodebin'.
set -euo pipefail
source "$(dirname "$0")/common.sh"
source_fragment=${1:-v4l2src ! videoconvert}
json=${2:-faces.jsonl}

# leaky queue: under overload old frames are dropped instead of building up latency.
# shellcheck disable=SC2086
exec gst-launch-1.0 \
  $source_fragment ! queue max-size-buffers=2 leaky=downstream \
  ! retinafacedetect ! tee name=t \
  t. ! queue ! retinafacejson location="$json" ! fakesink sync=false \
  t. ! queue ! retinafaceoverlay mode=draw ! videoconvert ! autovideosink sync=false
