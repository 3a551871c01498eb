#!/usr/bin/env bash
# Many streams in one process, on this machine's CPU (README "Many streams"): memory and frames/s
# for 1, 8 and 32 streams with a shared and with separate sessions; 8 streams at batch-size 1 and
# 8; a live 1080p30 source at inference-size=0 in async and in sync mode; NVR capacity (1080p
# H.264 decode + detect every 3rd frame + track). Each row is a separate process, all rows of
# one table come from one run of this script. Prints markdown.
#
#   scripts/streams-bench.sh [--quick]     (--quick: fewer frames, for a smoke test)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${RETINAFACE_DATA:-${RETINAFACE_PREFIX:-/usr/local}/share/retinaface}
MEDIA=$DATA/media
CLIP=target/bench/faces-1080p.mp4
FRAMES=30 LIVE_S=10
[ "${1:-}" = --quick ] && FRAMES=6 LIVE_S=3

. scripts/lib/bench-clip.sh
make_bench_clip "$CLIP" "$MEDIA"
cargo build --release --quiet --example streams_bench
BENCH=target/release/examples/streams_bench

# The value of key $1 in the key=value line $2.
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }

photo_branch() { # frames, detector properties
  echo "filesrc location=$MEDIA/sample{p}.jpg ! jpegdec ! videoconvert ! videoscale ! video/x-raw,format=I420,width=640,height=360 ! imagefreeze num-buffers=$1 ! retinafacedetect $2"
}

echo "### Memory and frames/s: N streams of 640×360 I420 (photos), $FRAMES frames each"
echo
echo "| streams | sessions | frames/s (all streams) | RSS while running | peak RSS |"
echo "|---:|---|---:|---:|---:|"
for n in 1 8 32; do
  for shared in true false; do
    line=$($BENCH throughput --streams $n --branch "$(photo_branch $FRAMES "shared=$shared")")
    sessions=$([ $shared = true ] && echo "1 shared" || echo "$n separate")
    echo "| $n | $sessions | $(field fps "$line") | $(field rss_running_mib "$line") MiB | $(field peak_rss_mib "$line") MiB |"
  done
done

echo
echo "### Batching: 8 streams of 640×360 sharing one session, $((FRAMES * 2)) frames each"
echo
echo "| batch-size | batch-timeout | frames/s (all streams) |"
echo "|---:|---:|---:|"
for batch in "1 0" "8 5000"; do
  set -- $batch
  line=$($BENCH throughput --streams 8 --branch "$(photo_branch $((FRAMES * 2)) "batch-size=$1 batch-timeout=$2")")
  echo "| $1 | $2 µs | $(field fps "$line") |"
done

echo
echo "### Live 1080p30 source at inference-size=0 (native, ≈ 10× slower than real time here), $LIVE_S s"
echo
echo "| mode | captured | reached the sink | rendered | inferences finished (fresh faces) | analysed on their own frame | behind capture at the sink: median / p95 / max | latency reported |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for mode in true false; do
  line=$($BENCH live --seconds $LIVE_S --branch "filesrc location=$MEDIA/sample1.jpg ! jpegdec ! videoconvert ! videoscale ! video/x-raw,format=I420,width=1920,height=1080 ! imagefreeze is-live=true ! video/x-raw,framerate=30/1 ! retinafacedetect inference-size=0 post-messages=true async=$mode")
  label=$([ $mode = true ] && echo "async=true" || echo "sync (default)")
  echo "| $label | $(field captured "$line") | $(field reached_sink "$line") | $(field rendered "$line") | $(field inferences "$line") | $(field analysed "$line") | $(field behind_ms_median "$line") / $(field behind_ms_p95 "$line") / $(field behind_ms_max "$line") ms | $(field reported_latency_ms "$line") ms |"
done

echo
echo "### NVR capacity: 1080p H.264 streams, decode + detect every 3rd frame + track (avdec_h264, ${CLIP##*/})"
echo
echo "| streams | frames/s (all streams) | analysed | 15 fps cameras sustained |"
echo "|---:|---:|---:|---:|"
for n in 1 2 4; do
  line=$($BENCH throughput --streams $n --branch "filesrc location=$CLIP ! qtdemux ! h264parse ! avdec_h264 ! retinafacedetect interval=3 ! retinafacetrack")
  fps=$(field fps "$line")
  echo "| $n | $fps | $(field analysed "$line") | $(awk -v f="$fps" 'BEGIN { printf "%.1f", f / 15 }') |"
done
