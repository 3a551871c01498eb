#!/usr/bin/env bash
# Installs what the tests need, then runs every test of the workspace (unit and integration, on
# the real model and sample media).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if cargo nextest --version >/dev/null 2>&1; then
  # One process per test: each test gets its own ONNX Runtime environment.
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
