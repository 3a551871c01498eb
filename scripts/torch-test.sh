#!/usr/bin/env bash
# The libtorch backend's checks (README "GPU with libtorch"), on the CPU: the published model
# converted to TorchScript by the trainer, the parity tests against ONNX Runtime with
# `--features torch` and the unit tests of the on-device preprocessing, the plugin built with it
# running backend=torch in gst-launch-1.0, and scripts/gpu-bench.sh --dry-run. Everything built
# with the feature goes to target/torch, so the default plugin (target/debug/libgstretinaface.so,
# ONNX Runtime only) is never replaced.
#
#   scripts/torch-test.sh      (scripts/test.sh runs it after the workspace tests)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${RETINAFACE_DATA:-${RETINAFACE_PREFIX:-/usr/local}/share/retinaface}
TORCH_TARGET=target/torch
export RETINAFACE_TORCH_MODEL=$PWD/$TORCH_TARGET/models/retinaface-mv025.pt

cargo build --quiet -p retinaface-training
mkdir -p "$(dirname "$RETINAFACE_TORCH_MODEL")"
target/debug/retinaface-train torchscript --model "$DATA/models/retinaface-mv025.onnx" \
  --output "$RETINAFACE_TORCH_MODEL"

# The parity tests, and the unit tests of the input the backend makes on the device from 8-bit
# pixels against the CPU preprocessing (src/engine/torch.rs).
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run -p retinaface --features torch --target-dir "$TORCH_TARGET" --test torch_parity
  cargo nextest run -p retinaface --features torch --target-dir "$TORCH_TARGET" --lib engine::torch
else
  cargo test -p retinaface --features torch --target-dir "$TORCH_TARGET" --test torch_parity
  cargo test -p retinaface --features torch --target-dir "$TORCH_TARGET" --lib engine::torch
fi

cargo build --quiet -p gst-plugin-retinaface --features torch --target-dir "$TORCH_TARGET"
out=$(GST_PLUGIN_PATH=$PWD/$TORCH_TARGET/debug timeout 120 gst-launch-1.0 -q \
  filesrc location="$DATA/media/sample1.jpg" ! jpegdec ! videoconvert \
  ! retinafacedetect backend=torch model="$RETINAFACE_TORCH_MODEL" ! retinafacejson ! fakesink)
case $out in
  *'"faces":[{'*) echo "torch-test: gst-launch-1.0 … retinafacedetect backend=torch found faces on sample1.jpg" ;;
  *) echo "torch-test: backend=torch found no face on sample1.jpg: $out" >&2; exit 1 ;;
esac

timeout 600 bash scripts/gpu-bench.sh --dry-run
