#!/usr/bin/env bash
# Face events to an MQTT broker, as an NVR publishes them: source → detect → track → publish
# (one `new` and one `end` event per person, with the best shot as a JPEG), optionally recording a
# blurred copy beside it (HLS, as pipelines/privacy-recorder.sh).
#
#   pipelines/camera-to-mqtt.sh [INPUT] [BROKER] [CAMERA] [RECORD_DIR]
#
#   INPUT       a video file (default: the sample clip), or a camera: rtsp://… or /dev/video*
#   BROKER      mqtt://host[:port] or mqtts://host[:port] (default mqtt://localhost:1883)
#   CAMERA      camera name, in every message and the topics retinaface/<CAMERA>/… (default door)
#   RECORD_DIR  also record the blurred video there (default: no recording)
#
# Watch the events in another terminal (a local broker: `mosquitto -p 1883`):
#   mosquitto_sub -h localhost -t 'retinaface/door/#' -v
# More settings (TLS, credentials, frames=true, snapshot-dir): README "Face events over MQTT".
set -euo pipefail
source "$(dirname "$0")/common.sh"
input=${1:-$media/face_noface.mov}
broker=${2:-mqtt://localhost:1883}
camera=${3:-door}
record=${4:-}

case $input in
  rtsp://*) source=(rtspsrc location="$input" latency=200 ! decodebin) ;;
  /dev/video*) source=(v4l2src device="$input" ! videoconvert) ;;
  *) source=(filesrc location="$input" ! decodebin) ;;
esac

# The publisher never blocks the stream: events wait in its queue while the broker is away.
events=(retinafacedetect ! retinafacetrack
  ! retinafacepublish broker="$broker" camera="$camera")
if [ -z "$record" ]; then
  exec gst-launch-1.0 -q -e "${source[@]}" ! video/x-raw ! videoconvert ! "${events[@]}" ! fakesink sync=true
fi
mkdir -p "$record"
exec gst-launch-1.0 -q -e "${source[@]}" ! video/x-raw ! videoconvert ! "${events[@]}" \
  ! retinafaceoverlay mode=blur margin=0.2 \
  ! videoconvert ! x264enc speed-preset=veryfast ! h264parse ! mpegtsmux \
  ! hlssink location="$record/segment-%05d.ts" playlist-location="$record/playlist.m3u8" \
    target-duration=60 max-files=0 playlist-length=0
