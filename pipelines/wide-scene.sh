#!/usr/bin/env bash
# Wide-scene camera (a 4K overview, a lobby, a platform): small faces found with native-scale
# tiles (retinafacedetect tiling=auto), optionally only inside regions of interest (doors,
# counters); faces as JSON lines, boxes drawn, recorded as H.264 MP4.
#
#   pipelines/wide-scene.sh [SOURCE] [OUT.mp4] [OUT.jsonl] [REGIONS]
#
# SOURCE: a gst-launch fragment producing raw video; default: the sample clip. For an IP camera:
#   'rtspsrc location=rtsp://user:pass@camera/stream latency=200 ! decodebin' (stop with Ctrl-C;
#   -e finishes the MP4 cleanly).
# REGIONS: 'x,y,w,h;x,y,w,h' in frame pixels (empty = whole frame); a region outside the frame
#   gives a WARNING and is ignored. It can change while running (property `regions`).
set -euo pipefail
source "$(dirname "$0")/common.sh"
source_fragment=${1:-filesrc location=$media/WolfgangLanger_Pexels.mp4 ! decodebin}
output=${2:-wide-scene.mp4}
json=${3:-${output%.*}.jsonl}
regions=${4:-}

# shellcheck disable=SC2086
exec gst-launch-1.0 -q -e \
  $source_fragment ! video/x-raw \
  ! retinafacedetect tiling=auto regions="$regions" \
  ! retinafacejson location="$json" \
  ! retinafaceoverlay mode=draw \
  ! videoconvert ! x264enc speed-preset=veryfast ! mp4mux ! filesink location="$output"
