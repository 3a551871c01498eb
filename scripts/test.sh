#!/usr/bin/env bash
# Installs what the tests need, checks that every pinned download still resolves from its
# registry (not from the local cache), then runs every test of the workspace (unit and
# integration, on the real model and sample media).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --trainer
bash scripts/check-downloads.sh
# No module may import one that imports it back, in any crate of the workspace.
for dir in src plugins/retinaface/src testkit/src training/src; do
  if ! out=$(python3 scripts/module-cycles.py "$dir"); then
    echo "$out" >&2
    exit 1
  fi
done
# The plugin's shared object (target/debug/libgstretinaface.so): tests that run gst-launch-1.0 and
# the pipeline scripts load it; a test build alone only makes the rlib.
cargo build -p gst-plugin-retinaface
if cargo nextest --version >/dev/null 2>&1; then
  # One process per test: each test gets its own ONNX Runtime environment.
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
# The libtorch backend (README "GPU with libtorch"): parity tests with --features torch, backend=torch
# in gst-launch-1.0 and scripts/gpu-bench.sh --dry-run, all built in target/torch.
bash scripts/torch-test.sh
