#!/usr/bin/env bash
# Privacy recorder, as an NVR records: source → detect → blur faces → H.264 → MPEG-TS segments
# plus an HLS playlist (OUTPUT_DIR/playlist.m3u8, playable by any HLS player or `gst-play-1.0`).
# Faces are blurred before anything is encoded, so the recording never holds them.
#
#   pipelines/privacy-recorder.sh [INPUT_VIDEO] [OUTPUT_DIR] [SEGMENT_SECONDS]
#
# For a camera replace the filesrc/decodebin part with e.g.
#   rtspsrc location=rtsp://camera/stream ! decodebin   or   v4l2src ! videoconvert
set -euo pipefail
source "$(dirname "$0")/common.sh"
input=${1:-$media/WolfgangLanger_Pexels.mp4}
outdir=${2:-recordings}
seconds=${3:-60}
mkdir -p "$outdir"

# Why MPEG-TS and hlssink rather than MP4 from splitmuxsink:
# - a TS segment is playable up to the last packet written, so a power cut loses seconds, not the
#   whole segment (an MP4 is unreadable until its index is written at the end);
# - GStreamer 1.22's splitmuxsink intermittently never posts EOS on a loaded machine, in both
#   finalisation modes (≈ 1 run in 3 here with all data written); hlssink: 0 hangs in 20.
# hlssink asks the encoder for a key frame every SEGMENT_SECONDS and starts a new file there.
exec gst-launch-1.0 -q -e \
  filesrc location="$input" ! decodebin ! video/x-raw \
  ! retinafacedetect ! retinafaceoverlay mode=blur margin=0.2 \
  ! videoconvert ! x264enc speed-preset=veryfast ! h264parse ! mpegtsmux \
  ! hlssink location="$outdir/segment-%05d.ts" playlist-location="$outdir/playlist.m3u8" \
    target-duration="$seconds" max-files=0 playlist-length=0
