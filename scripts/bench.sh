#!/usr/bin/env bash
# Benchmarks retinafacedetect: element overhead against a bare ONNX Runtime run, and pipeline
# throughput on a 1080p H.264 clip. Prints a markdown table for the README.
#
#   scripts/bench.sh [--rounds N] [--frames N]      (other options: see examples/bench.rs)
#
# The clip (target/bench/faces-1080p.mp4, 300 frames at 30 fps) is made once from the sample
# photos installed by scripts/setup.sh: 50 frames of each of sample1..6.jpg, cropped to 16:9.
set -euo pipefail

cd "$(dirname "$0")/.."
DATA=${RETINAFACE_DATA:-${RETINAFACE_PREFIX:-/usr/local}/share/retinaface}
MEDIA=$DATA/media
CLIP=target/bench/faces-1080p.mp4

log() { printf '[bench] %s\n' "$*" >&2; }

if [ ! -f "$CLIP" ]; then
  log "making $CLIP"
  mkdir -p "$(dirname "$CLIP")"
  # One branch per photo: decode, crop to 16:9, scale, repeat as 50 frames; concat plays the
  # branches one after the other. concat restarts timestamps at every branch, so identity
  # single-segment=true turns them into one running timeline for the encoder and muxer.
  branches=()
  for i in 1 2 3 4 5 6; do
    branches+=(filesrc location="$MEDIA/sample$i.jpg" ! jpegdec ! aspectratiocrop aspect-ratio=16/9
      ! videoscale ! videoconvert
      ! video/x-raw,format=I420,width=1920,height=1080,pixel-aspect-ratio=1/1
      ! imagefreeze num-buffers=50 ! video/x-raw,framerate=30/1 ! c.)
  done
  gst-launch-1.0 -q concat name=c ! identity single-segment=true \
    ! x264enc speed-preset=veryfast ! mp4mux ! filesink location="$CLIP.part" "${branches[@]}"
  mv "$CLIP.part" "$CLIP"
fi

cargo build --release --example bench
exec target/release/examples/bench --clip "$CLIP" --image "$MEDIA/sample1.jpg" "$@"
