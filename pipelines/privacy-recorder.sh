#!/usr/bin/env bash
# Privacy recorder, as an NVR records: source → detect → blur faces → H.264 → MP4 segments.
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

# async-finalize: each segment gets its own muxer and file sink, finalised in the background. With
# the default (one muxer, reset per segment) GStreamer 1.22's splitmuxsink intermittently never
# posts EOS on a loaded machine (≈ 1 run in 4 here, with all frames written); 0 of 16 with it.
exec gst-launch-1.0 -q -e \
  filesrc location="$input" ! decodebin ! video/x-raw \
  ! retinafacedetect ! retinafaceoverlay mode=blur margin=0.2 \
  ! videoconvert ! x264enc speed-preset=veryfast key-int-max=30 ! h264parse \
  ! splitmuxsink async-finalize=true muxer-factory=mp4mux location="$outdir/segment-%05d.mp4" \
    max-size-time=$((seconds * 1000000000))
