#!/usr/bin/env bash
# Soak test: a long stream through detect → overlay (blur) → JSON lines, then many
# NULL → PLAYING → EOS → NULL cycles in the same process. Prints RSS and the thread count at the
# start and the end of each part (README "Soak" quotes a run).
#
#   scripts/soak.sh [--frames 100000] [--cycles 1000] [--size 320x240] [--interval 3] [--image JPG]
#                   [--cycle-elements "retinafacedetect ! …"]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --example soak
exec target/release/examples/soak "$@"
