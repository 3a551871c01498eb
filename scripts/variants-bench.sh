#!/usr/bin/env bash
# Size and CPU cost of each trainer variant (training/configs/*.toml) next to the published
# mv0.25: parameters, convolution multiply-accumulates and priors at 640×640
# (`retinaface-train describe`), and ms per 640×360 frame in retinafacedetect (the model loaded
# once, 2 threads). The variants are trained for one step on one photo and exported: speed does
# not depend on the weights. A confidence threshold of 1.0 keeps the untrained models' random
# scores from adding NMS work (an untrained P2 model scores hundreds of priors above 0.999), so
# the rows compare the networks. Prints markdown (README "Training").
#
#   scripts/variants-bench.sh [--frames N]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${RETINAFACE_DATA:-${RETINAFACE_PREFIX:-/usr/local}/share/retinaface}
MEDIA=$DATA/media
FRAMES=100
[ "${1:-}" = --frames ] && FRAMES=$2
WORK=target/variants
mkdir -p "$WORK/set/images"
cp "$MEDIA/sample1.jpg" "$WORK/set/images/a.jpg"
printf '# a.jpg\n100 100 80 80\n' > "$WORK/set/label.txt"

cargo build --quiet -p retinaface-training
cargo build --release --quiet --example streams_bench
TRAIN=target/debug/retinaface-train
BENCH=target/release/examples/streams_bench

ms_per_frame() { # model
  local line fps
  line=$($BENCH throughput --streams 1 --branch "filesrc location=$MEDIA/sample1.jpg ! jpegdec ! videoconvert ! videoscale ! video/x-raw,format=I420,width=640,height=360 ! imagefreeze num-buffers=$FRAMES ! retinafacedetect model=$1 threads=2 confidence-threshold=1.0")
  fps=$(sed -n 's/.* fps=\([^ ]*\).*/\1/p' <<<"$line")
  awk -v f="$fps" 'BEGIN { printf "%.1f", 1000 / f }'
}

size_columns() { # describe arguments…: "parameters | MACs | priors"
  $TRAIN describe "$@" | python3 -c "import json,sys; d=json.load(sys.stdin); print(f\"{d['parameters']:,} | {d['macs']/1e9:.2f} G | {d['priors']:,}\")"
}

echo "| config | parameters | MACs (640×640) | priors (640×640) | ms per 640×360 frame | model file |"
echo "|---|---:|---:|---:|---:|---:|"
published=$DATA/models/retinaface-mv025.onnx
echo "| published mv0.25 (reference) | $(size_columns --model "$published") | $(ms_per_frame "$published") | $(du -k "$published" | cut -f1) KiB |"
for config in training/configs/*.toml; do
  name=$(basename "$config" .toml)
  run=$WORK/$name
  rm -rf "$run"
  $TRAIN train --config "$config" --labels "$WORK/set/label.txt" --output "$run" --epochs 1 \
    --batch-size 1 --image-size 320 --workers 1 --device cpu >/dev/null 2>&1 \
    || { echo "| $name | training failed: see $TRAIN train --config $config | |"; continue; }
  $TRAIN export --model "$run/model.safetensors" --output "$run.onnx" >/dev/null
  echo "| \`$name\` | $(size_columns --config "$config") | $(ms_per_frame "$run.onnx") | $(du -k "$run.onnx" | cut -f1) KiB |"
done
