#!/usr/bin/env bash
# What face identification costs on the CPU (README "Who is it", **Cost.**): ms per embedding
# (alignment included) at batch 1 and batch 8 through the original fr_feature.onnx (fixed batch of
# 1) and through a batched copy made by `retinaface-train rebatch`; and the CPU per frame that
# identification adds to detection for 8 streams of a 3-face photo, per track (track start, steady
# state) and untracked. All figures from one run. Prints markdown.
#
#   scripts/identify-bench.sh [--rounds N] [--streams N] [--frames N] [--photo NAME]
#
# The batched copy is written to target/identify-bench/fr_feature-batch.onnx.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${RETINAFACE_DATA:-${RETINAFACE_PREFIX:-/usr/local}/share/retinaface}
MODEL=$DATA/models/fr_feature.onnx
DIR=target/identify-bench
BATCHED=$DIR/fr_feature-batch.onnx

cargo build --quiet -p retinaface-training
mkdir -p "$DIR"
target/debug/retinaface-train rebatch --model "$MODEL" --output "$BATCHED"
cargo build --release --quiet --example identify_bench
echo "load before: $(uptime)"
target/release/examples/identify_bench --model "$MODEL" --batched "$BATCHED" "$@"
echo "load after: $(uptime)"
