#!/usr/bin/env bash
# Measures what the resource-relevant properties of retinafacedetect cost on this machine: peak
# memory (RSS) and time per frame for inference-size up to native 4K, and confidence-threshold=0
# against the default (with blur and JSON, where every face costs metadata and drawing).
# Prints markdown tables for README "Limits". Each figure is one gst-launch-1.0 process: time per
# frame = (time for N+1 frames − time for 1 frame) / N, so model loading is left out.
#
#   scripts/limits.sh [FRAMES]        (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p gst-plugin-retinaface
export GST_PLUGIN_PATH=$PWD/target/release
DATA=${RETINAFACE_DATA:-${RETINAFACE_PREFIX:-/usr/local}/share/retinaface}
exec python3 - "$DATA/media" "${1:-10}" <<'PY'
import json, os, subprocess, sys, time

media, frames = sys.argv[1], int(sys.argv[2])

def run(w, h, props, n, tail="fakesink"):
    """Seconds and peak RSS (MiB) of one gst-launch-1.0 process over n frames."""
    desc = (f"filesrc location={media}/sample1.jpg ! jpegdec ! videoconvert ! videoscale ! "
            f"video/x-raw,format=I420,width={w},height={h} ! imagefreeze num-buffers={n} ! "
            f"retinafacedetect {props} ! {tail}")
    start = time.monotonic()
    child = subprocess.Popen(["gst-launch-1.0", "-q", *desc.split()])
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.monotonic() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        sys.exit(f"gst-launch-1.0 failed ({child.returncode}): {desc}")
    return seconds, usage.ru_maxrss / 1024

def per_frame(w, h, props, tail="fakesink"):
    one, _ = run(w, h, props, 1, tail)
    many, peak = run(w, h, props, frames + 1, tail)
    return (many - one) / frames * 1000, peak

print(f"inference-size on a 3840×2160 I420 frame ({frames} frames after the first):\n")
print("| inference-size | model input | ms/frame | peak RSS |\n|---|---|---:|---:|")
for size in [640, 1280, 1920, 2560, 3840, 4096]:
    ms, peak = per_frame(3840, 2160, f"inference-size={size}")
    h = round(2160 * size / 3840)
    label = f"{size}" + (" (= 0, native)" if size == 3840 else "")
    print(f"| {label} | {size}×{h} | {ms:.0f} | {peak:.0f} MiB |", flush=True)

tail = "retinafaceoverlay mode=blur ! retinafacejson location=/dev/null ! fakesink"
print(f"\nconfidence-threshold on a 1280×720 frame, with blur and JSON ({frames} frames after the first):\n")
print("| confidence-threshold | faces/frame | ms/frame | ratio |\n|---|---:|---:|---:|")
base = None
for thr in [0.6, 0.0]:
    ms, _ = per_frame(1280, 720, f"confidence-threshold={thr}", tail)
    out = subprocess.run(["gst-launch-1.0", "-q", *(
        f"filesrc location={media}/sample1.jpg ! jpegdec ! videoconvert ! videoscale ! "
        f"video/x-raw,format=I420,width=1280,height=720 ! retinafacedetect confidence-threshold={thr} ! "
        f"retinafacejson location=/dev/stdout ! fakesink").split()], check=True, capture_output=True, text=True, timeout=600).stdout
    faces = len(json.loads(out.splitlines()[0])["faces"])
    base = base or ms
    print(f"| {thr} | {faces} | {ms:.1f} | {ms / base:.2f}× |", flush=True)
PY
