#!/usr/bin/env bash
# NVR analysis: many cameras in one process, the way a site runs them. Each camera (an RTSP URL
# or a file; for a real camera give its sub-stream, e.g. 640×360) is decoded, motion is found
# (retinafacemotion), faces are detected only where something moves and on the whole frame every
# 2 s (refresh-interval=30 at 15 fps; faces of people standing still are kept in between), in
# async mode so a busy model never holds a camera back, tracked, and written as JSON lines per
# camera. All cameras share one model session.
#
#   pipelines/nvr.sh [--record] [--broker mqtt://HOST:PORT] OUTPUT_DIR [CAMERA …]
#
#   --record   also record each camera with faces blurred: OUTPUT_DIR/camN/playlist.m3u8 (HLS,
#              MPEG-TS segments), faces blurred before anything is encoded
#   --broker   also publish face events per camera to an MQTT broker (retinafacepublish)
#   CAMERA     rtsp://…, http(s)://…, file://… or a file path; default: the sample clips
#   SYNC=false (environment) processes files as fast as they decode instead of in real time
#
# Writes OUTPUT_DIR/camN.jsonl (one line per frame, see README "retinafacejson"); stops at the
# end of every file (Ctrl-C stops live cameras, closing the files properly).
set -euo pipefail
source "$(dirname "$0")/common.sh"
record=0 broker=
while [ $# -gt 0 ]; do
  case $1 in
    --record) record=1; shift ;;
    --broker) broker=${2:?--broker needs mqtt://HOST:PORT}; shift 2 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
outdir=${1:?usage: nvr.sh [--record] [--broker URL] OUTPUT_DIR [CAMERA …]}
shift
cameras=("$@")
[ ${#cameras[@]} -gt 0 ] || cameras=("$media/single_face.mp4" "$media/face_noface.mov")
sync=${SYNC:-true}
mkdir -p "$outdir"

branches=()
i=0
for cam in "${cameras[@]}"; do
  i=$((i + 1))
  name=cam$i
  case $cam in
    *://*) uri=$cam ;;
    *) [ -f "$cam" ] || { echo "no such file: $cam" >&2; exit 2; }
       uri=file://$(realpath "$cam") ;;
  esac
  branch=(uridecodebin "uri=$uri" ! videoconvert
    ! retinafacemotion ! retinafacedetect roi-type=motion refresh-interval=30 async=true
    ! retinafacetrack)
  if [ -n "$broker" ]; then
    branch+=(! retinafacepublish "broker=$broker" "camera=$name")
  fi
  branch+=(! retinafacejson "location=$outdir/$name.jsonl")
  if [ $record = 1 ]; then
    mkdir -p "$outdir/$name"
    branch+=(! retinafaceoverlay mode=blur margin=0.2 ! videoconvert
      ! x264enc speed-preset=veryfast ! h264parse ! mpegtsmux
      ! hlssink "location=$outdir/$name/segment-%05d.ts" "playlist-location=$outdir/$name/playlist.m3u8"
        target-duration=60 max-files=0 playlist-length=0)
  else
    branch+=(! fakesink "sync=$sync")
  fi
  branches+=("${branch[@]}")
done

exec gst-launch-1.0 -q -e "${branches[@]}"
