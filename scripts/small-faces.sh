#!/usr/bin/env bash
# The small-face model (README "Small faces: a stride-4 level"): fine-tunes the published mv0.25
# with a stride-4 level added (training/configs/mobilenet0.25-p2-small-faces.toml) on synthetic
# wide scenes made of 5 sample photos (training/examples/small_faces.rs; CPU, about 20 minutes on
# 2 cores), then measures it against the published model on NVR walls made of the 6 other photos,
# at inference-size=640 (examples/wall_eval: AP@0.5 and ms per frame, each run in its own
# process, interleaved over rounds). Prints a markdown table.
#
#   scripts/small-faces.sh [--scenes N (400)] [--epochs N (10)] [--rounds N (3)] [--eval-only]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${RETINAFACE_DATA:-${RETINAFACE_PREFIX:-/usr/local}/share/retinaface}
SCENES=400 EPOCHS=10 ROUNDS=3 TRAIN=1
while [ $# -gt 0 ]; do
  case $1 in
    --scenes) SCENES=$2; shift 2 ;;
    --epochs) EPOCHS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --eval-only) TRAIN=0; shift ;;
    *) echo "unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
OUT=target/small-faces
if [ "$TRAIN" = 1 ]; then
  cargo build --quiet -p retinaface-training --example small_faces
  target/debug/examples/small_faces --output "$OUT" --scenes "$SCENES" --epochs "$EPOCHS"
fi
[ -f "$OUT/small-faces.onnx" ] || { echo "$OUT/small-faces.onnx is missing: run without --eval-only" >&2; exit 1; }
cargo build --release --quiet --example wall_eval
# The held-out photos: none of them was in a training scene (training/examples/common/mod.rs).
exec target/release/examples/wall_eval \
  --models "$DATA/models/retinaface-mv025.onnx,$OUT/small-faces.onnx" \
  --photos sample6.jpg,test.jpg,test2.jpg,test3.jpg,test4.jpg,test5.jpg \
  --settings inference-size=640,inference-size=0 --walls 1080p,4K --frames 10 --rounds "$ROUNDS"
