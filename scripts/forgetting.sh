#!/usr/bin/env bash
# Fine-tuning that does not forget: fine-tunes the published mv0.25 on 5 sample photos (batch 4,
# 30 iterations, CPU) with each recipe and prints AP@0.5 on 6 held-out photos at full size, 1/2
# and 1/3 (README "Fine-tuning that does not forget"). About 8 minutes on 2 cores.
#
#   scripts/forgetting.sh [--iterations N] [--batch N] [--recipes issue,lr1e-4,freeze,distill,recommended]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet -p retinaface-training --example forgetting
exec target/debug/examples/forgetting --output target/forgetting "$@"
