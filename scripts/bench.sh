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

. scripts/lib/bench-clip.sh
make_bench_clip "$CLIP" "$MEDIA"

cargo build --release --example bench
exec target/release/examples/bench --clip "$CLIP" --image "$MEDIA/sample1.jpg" "$@"
