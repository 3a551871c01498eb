#!/usr/bin/env bash
# Companion of scripts/gpu-bench.sh: bundles this machine's GStreamer (the libraries the bench
# binary and the few plugins it uses need, the plugin scanner) into DIR, for a GPU machine that
# has PyTorch but no GStreamer. Prints the bundle's size and the newest glibc symbol version it
# needs (DIR/GLIBC_REQUIRED), which gpu-bench.sh compares with the GPU machine's glibc.
#
#   scripts/gpu-bundle.sh DIR BINARY...    (BINARY: programs whose GStreamer libraries to add)
#
# Not bundled: glibc itself (libc, libm, libpthread, libdl, librt, the loader: they must come
# from the machine, hence the version check) and libtorch (PyTorch's own is used there).
# H.264 is decoded with openh264dec (libopenh264, about 1 MB) rather than avdec_h264, whose
# libavcodec with its codec libraries would not fit the 64 MiB a device call carries.
set -euo pipefail
DIR=${1:?usage: gpu-bundle.sh DIR BINARY...}
shift
ARCH_LIB=/usr/lib/x86_64-linux-gnu
PLUGIN_SRC=$ARCH_LIB/gstreamer-1.0
SCANNER=$ARCH_LIB/gstreamer1.0/gstreamer-1.0/gst-plugin-scanner
PLUGINS="coreelements app videoconvertscale imagefreeze jpeg isomp4 videoparsersbad openh264 typefindfunctions"

rm -rf "$DIR"
mkdir -p "$DIR/lib" "$DIR/plugins"
objects=("$SCANNER" "$@")
for p in $PLUGINS; do
  cp "$PLUGIN_SRC/libgst$p.so" "$DIR/plugins/"
  objects+=("$PLUGIN_SRC/libgst$p.so")
done
cp "$SCANNER" "$DIR/"

# Every shared library these objects load, except glibc's own and libtorch's (and the libraries
# beside it), copied once.
for obj in "${objects[@]}"; do
  ldd "$obj" | awk '/=> \// {print $3}'
done | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*|libresolv.so*|libutil.so*) continue ;;
    libtorch*|libc10*|libgomp*|libcudart*|libcupti*|libnv*|libcuda*) continue ;;
  esac
  cp -L "$lib" "$DIR/lib/"
done
strip --strip-unneeded "$DIR"/lib/*.so* "$DIR"/plugins/*.so 2>/dev/null || true

# The newest GLIBC_x.y any bundled file asks for.
required=$(for f in "$DIR"/lib/*.so* "$DIR"/plugins/*.so "$DIR/gst-plugin-scanner"; do
  objdump -T "$f" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' || true
done | sed 's/GLIBC_//' | sort -V | tail -1)
echo "$required" >"$DIR/GLIBC_REQUIRED"
echo "gpu-bundle: $(du -sm "$DIR" | cut -f1) MiB in $DIR ($(ls "$DIR/lib" | wc -l) libraries, $(ls "$DIR/plugins" | wc -l) plugins), needs glibc >= $required (built on $(getconf GNU_LIBC_VERSION))" >&2
