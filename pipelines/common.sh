# Sourced by the pipeline scripts: where the plugin and the sample media are.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
media=${RETINAFACE_DATA:-/usr/local/share/retinaface}/media
# Use the plugin built in this checkout (release build) unless the caller points GStreamer elsewhere.
export GST_PLUGIN_PATH=${GST_PLUGIN_PATH:-$here/target/release}
