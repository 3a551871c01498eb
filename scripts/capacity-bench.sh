#!/usr/bin/env bash
# How many cameras this machine analyses in real time (README "How many cameras"): camera
# sub-streams of 640×360 at 15 fps H.264, each a pipeline of its own in one process sharing one
# engine, paced by the clock like live sources; for every-frame detection, interval=3 + track and
# motion-gated + track, the largest count that stays real time, CPU, memory per camera, and the
# faces the gated pipeline finds against per-frame detection. All rows from one run. Prints
# markdown.
#
#   scripts/capacity-bench.sh [--window SECONDS] [--max CAMERAS]
#
# The clips (target/capacity/site-20.mp4: faces walk through 20 % of the time; site-0.mp4: nobody)
# are made once from the sample photos installed by scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=target/capacity
cargo build --release --quiet --example capacity
BIN=target/release/examples/capacity
mkdir -p "$DIR"
[ -f "$DIR/site-20.mp4" ] || "$BIN" make-clip --out "$DIR/site-20.mp4" --activity 0.2 --seconds 40
[ -f "$DIR/site-0.mp4" ] || "$BIN" make-clip --out "$DIR/site-0.mp4" --activity 0 --seconds 40
echo "### How many cameras: $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $(date -u +%F)"
echo
exec "$BIN" search --clip "$DIR/site-20.mp4" --idle "$DIR/site-0.mp4" "$@"
