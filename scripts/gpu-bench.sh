#!/usr/bin/env bash
# The libtorch backend on a GPU machine in one run (issue 22, README "GPU with libtorch").
#
#   scripts/gpu-bench.sh --prepare   here: release builds with --features torch, the published
#                                    model as TorchScript, sample media, a small training set and,
#                                    for a machine without GStreamer, a bundle of it
#                                    (scripts/gpu-bundle.sh), all in target/gpu-bench (≤ 64 MiB,
#                                    what one device call carries)
#   scripts/gpu-bench.sh             on the GPU machine, in the repository root with
#                                    target/gpu-bench carried: checks the machine, measures, prints
#                                    one markdown table (≤ 8 minutes)
#   scripts/gpu-bench.sh --dry-run   here, on the CPU: the same preparation (debug builds, reused
#                                    from the torch tests) and the same steps with a few frames,
#                                    GStreamer taken from the bundle (CI runs this)
#
# Measured: detect-only throughput from decoded 1080p frames held in memory (imagefreeze repeats
# one decoded frame, so no decoding is timed) at inference-size=640 for 1/8/32/64 streams with
# batch-size 1/8/16, FP32 and FP16 (batch 32 is past the element's batch-size limit of 16);
# end to end with H.264 decoded on the CPU cores; the GPU memory the process holds (nvidia-smi,
# peak over the run); start-up (process start to the end of a 2-frame stream); ONNX Runtime's
# CUDA provider when its library is found (ORT_DYLIB_PATH, or onnxruntime-gpu in the PyTorch
# Python); the trainer's `bench` with and without the on-device photometric distortion.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=run
case "${1:-}" in
  --prepare) MODE=prepare ;;
  --dry-run) MODE=dry ;;
  "") ;;
  *) echo "usage: scripts/gpu-bench.sh [--prepare|--dry-run]" >&2; exit 2 ;;
esac
OUT=${GPU_BENCH_DIR:-target/gpu-bench}
[ "$MODE" = dry ] && OUT=${GPU_BENCH_DIR:-target/gpu-bench-dry}
CARRY_LIMIT_MIB=64
log() { printf '[gpu-bench] %s\n' "$*" >&2; }

# --- Preparation (this machine) -----------------------------------------------------------------
prepare() {
  local profile=$1 data=${RETINAFACE_DATA:-${RETINAFACE_PREFIX:-/usr/local}/share/retinaface}
  local flags=() dir=debug
  if [ "$profile" = release ]; then flags=(--release); dir=release; fi
  log "building streams_bench (--features torch, $profile) and retinaface-train ($profile)"
  cargo build "${flags[@]}" --quiet --example streams_bench --features retinaface/torch \
    --target-dir target/torch
  cargo build "${flags[@]}" --quiet -p retinaface-training
  rm -rf "$OUT"
  mkdir -p "$OUT/bin" "$OUT/models" "$OUT/media" "$OUT/train/images"
  strip -o "$OUT/bin/streams_bench" "target/torch/$dir/examples/streams_bench"
  strip -o "$OUT/bin/retinaface-train" "target/$dir/retinaface-train"
  cp "$data/models/retinaface-mv025.onnx" "$OUT/models/"
  "$OUT/bin/retinaface-train" torchscript --model "$OUT/models/retinaface-mv025.onnx" \
    --output "$OUT/models/retinaface-mv025.pt" >&2
  cp "$data"/media/sample[1-6].jpg "$OUT/media/"
  . scripts/lib/bench-clip.sh
  make_bench_clip target/bench/faces-1080p.mp4 "$data/media"
  cp target/bench/faces-1080p.mp4 "$OUT/media/"
  training_set "$data"
  bash scripts/gpu-bundle.sh "$OUT/gst" "$OUT/bin/streams_bench"
  local size
  size=$(du -sm "$OUT" | cut -f1)
  log "prepared $OUT: $size MiB"
  if [ "$size" -gt "$CARRY_LIMIT_MIB" ]; then
    log "$OUT is $size MiB, over the $CARRY_LIMIT_MIB MiB a device call carries"
    exit 1
  fi
}

# A WIDER-style label file of the six sample photos, faces as the plugin finds them (for the
# trainer's bench only: it times loading and training steps, not accuracy).
training_set() {
  local data=$1 i
  : >"$OUT/train/label.txt"
  for i in 1 2 3 4 5 6; do
    cp "$data/media/sample$i.jpg" "$OUT/train/images/"
    GST_PLUGIN_PATH=$PWD/target/debug gst-launch-1.0 -q filesrc location="$data/media/sample$i.jpg" \
      ! jpegdec ! videoconvert ! retinafacedetect model="$data/models/retinaface-mv025.onnx" \
      ! retinafacejson location="$OUT/train/faces$i.jsonl" ! fakesink
    python3 - "$OUT/train/faces$i.jsonl" "sample$i.jpg" >>"$OUT/train/label.txt" <<'PY'
import json, sys
frame = json.loads(open(sys.argv[1]).readline())
print(f"# {sys.argv[2]}")
for f in frame["faces"]:
    marks = " ".join(f"{x:.1f} {y:.1f} 0.0" for x, y in f["landmarks"])
    print(f"{f['x']:.1f} {f['y']:.1f} {f['width']:.1f} {f['height']:.1f} {marks} 1.0")
PY
    rm "$OUT/train/faces$i.jsonl"
  done
}

# --- The run (the GPU machine, or this one for --dry-run) ------------------------------------------
row() { echo "| $* |"; }

# libtorch: PyTorch's own (TORCH_LIB, the /opt/torch venv, python3's torch), else setup.sh's.
find_torch() {
  local py cand
  if [ -n "${TORCH_LIB:-}" ]; then echo "$TORCH_LIB"; return; fi
  for py in /opt/torch/.venv/bin/python3 python3; do
    cand=$("$py" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null) || continue
    [ -f "$cand/libtorch_cpu.so" ] && { echo "$cand"; return; }
  done
  cand=/usr/local/lib/retinaface-torch/torch/lib
  [ -f "$cand/libtorch_cpu.so" ] && echo "$cand"
}

# ONNX Runtime with CUDA: ORT_DYLIB_PATH, or onnxruntime-gpu beside PyTorch.
find_ort_cuda() {
  local py lib
  if [ -n "${ORT_DYLIB_PATH:-}" ]; then echo "$ORT_DYLIB_PATH"; return; fi
  for py in /opt/torch/.venv/bin/python3 python3; do
    lib=$("$py" -c 'import os, glob, onnxruntime as o; d = os.path.join(os.path.dirname(o.__file__), "capi"); print(sorted(glob.glob(d + "/libonnxruntime.so*"))[-1])' 2>/dev/null) || continue
    [ -f "$(dirname "$lib")/libonnxruntime_providers_cuda.so" ] && { echo "$lib"; return; }
  done
}

# The value of key $1 in the key=value line $2.
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }

# Runs "$@" with its output in LINE and the peak GPU memory (MiB, GPU 0) used while it ran,
# above what was used before, in PEAK_MIB ("n/a" on the CPU).
LINE= PEAK_MIB=n/a
measured() {
  if [ "$GPU" = none ]; then PEAK_MIB=n/a; LINE=$("$@"); return; fi
  local base peak_file pid status=0
  base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 | head -1)
  peak_file=$(mktemp)
  echo "$base" >"$peak_file"
  (while :; do
     nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 | head -1 >>"$peak_file"
     sleep 0.2
   done) &
  pid=$!
  LINE=$("$@") || status=$?
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  PEAK_MIB="$(( $(sort -n "$peak_file" | tail -1) - base )) MiB"
  rm -f "$peak_file"
  return $status
}

bench_run() { # streams, branch
  timeout "$RUN_LIMIT" "$OUT/bin/streams_bench" throughput --streams "$1" --branch "$2"
}

run() {
  local frames_total streams_list batch_list precisions e2e_frames e2e_streams train_batches train_size
  if [ "$MODE" = dry ]; then
    frames_total=4 streams_list="1 2" batch_list="1 2" e2e_frames=4 e2e_streams="1 2" train_batches=1 train_size=160
    RUN_LIMIT=120
  else
    frames_total=2000 streams_list="1 8 32 64" batch_list="1 8 16" e2e_frames=300 e2e_streams="1 8 32" train_batches=20 train_size=640
    RUN_LIMIT=120
  fi
  precisions="false true"
  local started=$SECONDS

  # What the machine has.
  GPU=none
  if [ "$MODE" != dry ] && command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    GPU=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader -i 0 | head -1)
  fi
  local torch_lib glibc gst
  torch_lib=$(find_torch) || true
  [ -n "$torch_lib" ] || { log "no libtorch found: set TORCH_LIB to PyTorch's torch/lib"; exit 1; }
  export LD_LIBRARY_PATH="$torch_lib:$(dirname "$(dirname "$torch_lib")")/nvidia/cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  glibc=$(getconf GNU_LIBC_VERSION | awk '{print $2}')
  if [ "$MODE" = dry ] || ! gst-inspect-1.0 imagefreeze >/dev/null 2>&1; then
    local need
    need=$(cat "$OUT/gst/GLIBC_REQUIRED")
    if [ "$(printf '%s\n%s\n' "$need" "$glibc" | sort -V | head -1)" != "$need" ]; then
      log "this machine's glibc $glibc is older than the $need the GStreamer bundle needs"
      exit 1
    fi
    export LD_LIBRARY_PATH="$PWD/$OUT/gst/lib:$LD_LIBRARY_PATH"
    export GST_PLUGIN_SYSTEM_PATH_1_0="$PWD/$OUT/gst/plugins" GST_PLUGIN_PATH_1_0=
    export GST_PLUGIN_SCANNER_1_0="$PWD/$OUT/gst/gst-plugin-scanner"
    export GST_REGISTRY_1_0="$PWD/$OUT/gst/registry.bin"
    gst="bundle ($(ls "$OUT/gst/plugins" | wc -l) plugins, needs glibc $need)"
  else
    gst="system $(gst-inspect-1.0 --version | sed -n 's/.*version \([0-9.]*\).*/\1/p' | head -1)"
  fi
  local media=$PWD/$OUT/media model=$PWD/$OUT/models/retinaface-mv025.pt props
  if [ "$GPU" = none ]; then props="backend=torch"; else props="backend=torch execution-provider=cuda device-id=0"; fi
  local decoder=openh264dec
  gst-inspect-1.0 avdec_h264 >/dev/null 2>&1 && decoder=avdec_h264

  echo "### libtorch backend: $( [ "$GPU" = none ] && echo "CPU dry run ($(nproc) cores)" || echo "$GPU" ), $(date -u +%Y-%m-%d)"
  echo
  echo "glibc $glibc; GStreamer: $gst; libtorch: $torch_lib; H.264 decoder: $decoder"
  echo
  echo "| measurement | streams | batch-size | precision | frames/s (all streams) | GPU memory (peak, process) | note |"
  echo "|---|---:|---:|---|---:|---:|---|"

  # Start-up: process start to the end of one 2-frame stream (model load, first inferences; the
  # bench program needs a frame after the preroll one).
  local t0 line
  t0=$(date +%s.%N)
  line=$(bench_run 1 "filesrc location=$media/sample1.jpg ! jpegdec ! videoconvert ! imagefreeze num-buffers=2 ! retinafacedetect $props model=$model")
  row "start-up (process start to end of a 2-frame stream) | 1 | 1 | FP32 | $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f s", b-a}') | | detect-only"

  # Detect-only: decoded 1080p frames in memory.
  local n b fp frames
  for fp in $precisions; do
    for n in $streams_list; do
      for b in $batch_list; do
        [ "$b" -gt "$n" ] && [ "$b" -gt 1 ] && continue
        frames=$(( (frames_total + n - 1) / n ))
        measured bench_run "$n" "filesrc location=$media/sample{p}.jpg ! jpegdec ! videoconvert ! videoscale ! video/x-raw,format=I420,width=1920,height=1080 ! imagefreeze num-buffers=$frames ! retinafacedetect $props model=$model inference-size=640 batch-size=$b batch-timeout=$([ "$b" -gt 1 ] && echo 2000 || echo 0) torch-fp16=$fp"
        row "detect-only, 1080p frames in memory | $n | $b | $([ $fp = true ] && echo FP16 || echo FP32) | $(field fps "$LINE") | $PEAK_MIB | $frames frames per stream"
            done
    done
  done

  # End to end: H.264 1080p decoded on the CPU.
  for n in $e2e_streams; do
    measured bench_run "$n" "filesrc location=$media/faces-1080p.mp4 ! qtdemux ! h264parse ! $decoder ! identity eos-after=$e2e_frames ! retinafacedetect $props model=$model inference-size=640 batch-size=$([ "$n" -gt 1 ] && echo 8 || echo 1) batch-timeout=2000"
    row "end to end, H.264 1080p decoded on CPU ($decoder) | $n | $([ "$n" -gt 1 ] && echo 8 || echo 1) | FP32 | $(field fps "$LINE") | $PEAK_MIB | $e2e_frames frames per stream"
    done

  # ONNX Runtime's CUDA provider, where its library is found.
  local ort
  ort=$(find_ort_cuda || true)
  if [ "$GPU" != none ] && [ -n "$ort" ]; then
    ORT_DYLIB_PATH=$ort measured bench_run 8 "filesrc location=$media/sample{p}.jpg ! jpegdec ! videoconvert ! videoscale ! video/x-raw,format=I420,width=1920,height=1080 ! imagefreeze num-buffers=$(( frames_total / 8 )) ! retinafacedetect execution-provider=cuda model=$PWD/$OUT/models/retinaface-mv025.onnx inference-size=640 batch-size=8 batch-timeout=2000"
    row "detect-only, ONNX Runtime CUDA provider | 8 | 8 | FP32 | $(field fps "$LINE") | $PEAK_MIB | $ort"
  else
    row "detect-only, ONNX Runtime CUDA provider | | | | | | not measured: $( [ "$GPU" = none ] && echo "no GPU" || echo "no onnxruntime-gpu library found (ORT_DYLIB_PATH)")"
  fi

  # The trainer's GPU target: bench with and without the on-device photometric distortion.
  local device=cuda on
  [ "$GPU" = none ] && device=cpu
  for on in true false; do
    line=$(timeout "$RUN_LIMIT" "$OUT/bin/retinaface-train" bench --labels "$OUT/train/label.txt" \
      --images "$OUT/train/images" --device "$device" --batches "$train_batches" --batch-size 8 --image-size "$train_size" \
      --workers "$(nproc)" --photometric-on-device "$on" 2>/dev/null | tr -d '\n ')
    row "retinaface-train bench --device $device, photometric-on-device=$on | | 8 | FP32 | | | $line"
    done
  echo
  log "done in $((SECONDS - started)) s"
}

case $MODE in
  prepare) prepare release ;;
  dry) prepare debug; run ;;
  run) run ;;
esac
