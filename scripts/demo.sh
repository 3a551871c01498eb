#!/usr/bin/env bash
# The demo: installs what is needed, builds the plugin, runs pipelines/detect-to-mp4.sh on a
# sample video with the default model — an annotated MP4 to watch plus the faces as JSON lines —
# and prints a one-line summary.
#
#   scripts/demo.sh [INPUT_VIDEO] [OUTPUT_MP4]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --quiet -p gst-plugin-retinaface

input=${1:-${RETINAFACE_DATA:-/usr/local/share/retinaface}/media/face_noface.mov}
output=${2:-target/demo/faces.mp4}
json=${output%.*}.jsonl
mkdir -p "$(dirname "$output")"

start=$(date +%s.%N)
pipelines/detect-to-mp4.sh "$input" "$output" "$json"
end=$(date +%s.%N)

python3 - "$json" "$start" "$end" "$input" "$output" <<'PY'
import json, sys
path, start, end, source, video = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
lines = [json.loads(l) for l in open(path)]
faces = [len(l["faces"]) for l in lines]
seconds = end - start
print(f"demo: {source.rsplit('/', 1)[-1]}: {len(lines)} frames, {sum(1 for n in faces if n)} with faces, "
      f"{sum(faces)} faces, {len(lines) / seconds:.1f} fps incl. model load and H.264 encoding -> {video} + {path}")
PY
