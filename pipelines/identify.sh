#!/usr/bin/env bash
# Who is it: a video file or a camera → detect → track → identify against a face library →
# faces drawn with their names → a window, or an H.264 MP4 (plus the faces, with names, as JSON
# lines beside it).
#
#   pipelines/identify.sh LIBRARY [INPUT] [OUTPUT_MP4] [UNKNOWN_DIR]
#
#   LIBRARY      a folder with one sub-folder of photos per person: LIBRARY/Alice/1.jpg, …
#   INPUT        a video file (default: the sample clip), or a camera: rtsp://… or /dev/video*
#   OUTPUT_MP4   write the video there (and OUTPUT.jsonl) instead of showing a window
#   UNKNOWN_DIR  write the best crop of each face nobody matched there (move one into
#                LIBRARY/<name>/ to enrol that person; the library is re-read at the next start)
#
# README "Who is it" says what is stored where (the library's cache is biometric data).
set -euo pipefail
source "$(dirname "$0")/common.sh"
library=${1:?usage: pipelines/identify.sh LIBRARY [INPUT] [OUTPUT_MP4] [UNKNOWN_DIR]}
input=${2:-$media/face_noface.mov}
output=${3:-}
unknown=${4:-}

case $input in
  rtsp://*) source=(rtspsrc location="$input" latency=200 ! decodebin) ;;
  /dev/video*) source=(v4l2src device="$input" ! videoconvert) ;;
  *) source=(filesrc location="$input" ! decodebin) ;;
esac

identify=(retinafacedetect ! retinafacetrack ! retinafaceidentify library="$library")
if [ -n "$unknown" ]; then
  identify+=(unknown-folder="$unknown")
fi
draw=(retinafaceoverlay mode=draw draw-labels=true)

if [ -z "$output" ]; then
  exec gst-launch-1.0 -q "${source[@]}" ! video/x-raw ! videoconvert ! "${identify[@]}" \
    ! "${draw[@]}" ! videoconvert ! autovideosink
fi
exec gst-launch-1.0 -q -e "${source[@]}" ! video/x-raw ! videoconvert ! "${identify[@]}" \
  ! retinafacejson location="${output%.*}.jsonl" ! "${draw[@]}" \
  ! videoconvert ! x264enc speed-preset=veryfast ! mp4mux ! filesink location="$output"
