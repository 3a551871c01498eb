#!/usr/bin/env bash
# Small faces in wide scenes: AP@0.5, ms per frame and peak memory of inference-size=640,
# inference-size=0 and tiling=auto on a synthetic 1920×1080 and 3840×2160 NVR wall built from the
# sample photos (see examples/wall_eval/main.rs). Prints a markdown table for the README.
#
#   scripts/wall-eval.sh [--frames N (5)] [--rounds N (1)] [--threshold T (0.1)]
#
# Walls, ground truth and per-setting results go to target/wall-eval/.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --example wall_eval
exec target/release/examples/wall_eval "$@"
