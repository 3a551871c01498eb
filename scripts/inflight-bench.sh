#!/usr/bin/env bash
# Frames in flight in one stream (README "Frames in flight"): the whole process's time to detect
# faces on every frame of the 1080p H.264 benchmark clip (300 frames, made once from the sample
# photos), for `retinafacedetect frames-in-flight=1,2,3` against the loop a Python user writes
# (OpenCV decode + resize, ONNX Runtime, NMS: scripts/lib/python_loop.py). Rounds interleave the
# contenders; prints medians, each one's speed against the Python loop, and CPU use.
#
#   scripts/inflight-bench.sh [ROUNDS]        (default 5)
#
# The Python loop runs in a virtual environment made once in target/pybench with pinned wheels
# from PyPI (only this benchmark needs them).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
DATA=${RETINAFACE_DATA:-${RETINAFACE_PREFIX:-/usr/local}/share/retinaface}
MODEL=$DATA/models/retinaface-mv025.onnx
CLIP=target/bench/faces-1080p.mp4
. scripts/lib/bench-clip.sh
make_bench_clip "$CLIP" "$DATA/media"
cargo build --release --quiet -p gst-plugin-retinaface
export GST_PLUGIN_PATH=$PWD/target/release
VENV=target/pybench
if ! "$VENV/bin/python" -c 'import cv2, onnxruntime, numpy' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    numpy==2.2.6 onnxruntime==1.31.1 opencv-python-headless==4.12.0.88
fi


run_one() { # name -> "wall cpu"
  local name=$1 start end usage
  usage=$(mktemp)
  start=$(date +%s.%N)
  case $name in
    python) /usr/bin/time -o "$usage" -f '%U %S' "$VENV/bin/python" scripts/lib/python_loop.py "$CLIP" "$MODEL" >/dev/null ;;
    *) /usr/bin/time -o "$usage" -f '%U %S' gst-launch-1.0 -q filesrc location="$CLIP" ! qtdemux ! h264parse \
         ! avdec_h264 ! retinafacedetect "frames-in-flight=${name#fif}" ! fakesink ;;
  esac
  end=$(date +%s.%N)
  read -r user sys <"$usage"
  rm -f "$usage"
  echo "$(echo "$end - $start" | bc) $(echo "$user + $sys" | bc)"
}

contenders=(python fif1 fif2 fif3)
declare -A walls cpus
for r in $(seq "$ROUNDS"); do
  for c in "${contenders[@]}"; do
    read -r wall cpu < <(run_one "$c")
    walls[$c]+="$wall "
    cpus[$c]+="$cpu "
    printf '[inflight] round %s %s: %.2f s, %.2f CPU s\n' "$r" "$c" "$wall" "$cpu" >&2
  done
done

median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
py=$(median <<<"${walls[python]}")
echo "| contender (300 frames of 1080p H.264, whole process) | median wall | frames/s | vs Python loop | CPU (cores busy) |"
echo "|---|---:|---:|---:|---:|"
for c in "${contenders[@]}"; do
  w=$(median <<<"${walls[$c]}")
  u=$(median <<<"${cpus[$c]}")
  case $c in python) label="Python: OpenCV + ONNX Runtime loop" ;; *) label="retinafacedetect frames-in-flight=${c#fif}" ;; esac
  awk -v l="$label" -v w="$w" -v u="$u" -v p="$py" \
    'BEGIN { printf "| %s | %.2f s | %.1f | %.2f× | %.2f |\n", l, w, 300 / w, p / w, u / w }'
done
