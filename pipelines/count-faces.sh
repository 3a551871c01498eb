#!/usr/bin/env bash
# Count the distinct faces in a video: detect every N-th frame, track (one ID per face for as long
# as it stays in view), write JSON lines, and print a one-line summary of the unique track IDs.
#
#   pipelines/count-faces.sh [INPUT_VIDEO] [OUTPUT_JSONL] [INTERVAL]
#
# INTERVAL (default 3): the detector runs on every INTERVAL-th frame; the tracker moves the faces
# along on the frames in between. The detector's confidence-threshold is lowered to the tracker's
# low-score (0.1) so that ByteTrack's second stage sees the unsure detections that keep a track
# alive (new tracks still need the tracker's high-score, 0.6). A face that leaves the view for
# longer than max-missed analysed frames (15) and comes back is counted again.
set -euo pipefail
source "$(dirname "$0")/common.sh"
input=${1:-$media/face_noface.mov}
output=${2:-faces.jsonl}
interval=${3:-3}

gst-launch-1.0 -q \
  filesrc location="$input" ! decodebin ! video/x-raw \
  ! retinafacedetect interval="$interval" confidence-threshold=0.1 \
  ! retinafacetrack \
  ! retinafacejson location="$output" \
  ! fakesink sync=false

frames=$(wc -l < "$output")
ids=$(grep -o '"id":[0-9][0-9]*' "$output" | cut -d: -f2 | sort -n | uniq | paste -sd, - || true)
count=$(if [ -n "$ids" ]; then tr ',' '\n' <<< "$ids" | wc -l; else echo 0; fi)
echo "count-faces: $(basename "$input"): $frames frames, $count unique face(s)${ids:+ (ids $ids)}, detector every $interval frame(s) -> $output"
