# The benchmark clip: 300 frames of 1920x1080 H.264 at 30 fps, 50 frames of each of the sample
# photos sample1..6.jpg cropped to 16:9. Made once; used by scripts/bench.sh and
# scripts/streams-bench.sh.
#
#   make_bench_clip CLIP MEDIA_DIR
make_bench_clip() {
  local clip=$1 media=$2
  [ -f "$clip" ] && return 0
  printf '[bench] making %s\n' "$clip" >&2
  mkdir -p "$(dirname "$clip")"
  # One branch per photo: decode, crop to 16:9, scale, repeat as 50 frames; concat plays the
  # branches one after the other. concat restarts timestamps at every branch, so identity
  # single-segment=true turns them into one running timeline for the encoder and muxer.
  local branches=() i
  for i in 1 2 3 4 5 6; do
    branches+=(filesrc location="$media/sample$i.jpg" ! jpegdec ! aspectratiocrop aspect-ratio=16/9
      ! videoscale ! videoconvert
      ! video/x-raw,format=I420,width=1920,height=1080,pixel-aspect-ratio=1/1
      ! imagefreeze num-buffers=50 ! video/x-raw,framerate=30/1 ! c.)
  done
  gst-launch-1.0 -q concat name=c ! identity single-segment=true \
    ! x264enc speed-preset=veryfast ! mp4mux ! filesink location="$clip.part" "${branches[@]}"
  mv "$clip.part" "$clip"
}
