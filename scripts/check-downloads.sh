#!/usr/bin/env bash
# Proves that every download pinned in scripts/lib/pins.sh still resolves from its registry to the
# pinned file and checksum, with exactly the flags scripts/setup.sh downloads it with, and without
# looking at setup's cache (a cached wheel once hid a pin that pip could no longer resolve).
# pip runs its resolver in --dry-run mode, which fetches metadata, not the wheels.
#
#   scripts/check-downloads.sh        (run by scripts/test.sh, so by CI)
set -euo pipefail
cd "$(dirname "$0")"
. lib/pins.sh

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0

resolve() { # requirement flag-set report-file: pip's choice for exactly setup's flags
  local args; mapfile -t args < <(pip_flags "$2")
  python3 -m pip install --dry-run --ignore-installed --no-deps --no-cache-dir --quiet \
    --disable-pip-version-check --root-user-action=ignore --target "$tmp/target" \
    --report "$3" "${args[@]}" "$1" >"$3.log" 2>&1
}
chosen() { # report-file -> "file sha256"
  python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))["install"][0]["download_info"]
print(r["url"].rsplit("/", 1)[-1], r["archive_info"]["hashes"]["sha256"])' "$1"
}

# The check must be able to fail: the flags that broke fresh machines (a wheel tagged only
# manylinux2014 asked for as manylinux_2_28) must not resolve.
if python3 -m pip install --dry-run --ignore-installed --no-deps --no-cache-dir --quiet \
  --disable-pip-version-check --root-user-action=ignore --target "$tmp/target" \
  --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64 \
  nvidia-cuda-runtime==13.0.96 >/dev/null 2>&1; then
  echo "[check-downloads] ERROR: a wheel tagged only manylinux2014 resolved under --platform manylinux_2_28_x86_64;" \
    "this pip widens platform tags, so the check below proves less than it claims" >&2
  failed=1
fi

i=0
for line in "${PYPI_PINS[@]}"; do
  read -r _ req file sum flags <<<"$line"
  i=$((i + 1))
  report=$tmp/pin$i.json
  got=""
  for try in 1 2 3; do
    if resolve "$req" "$flags" "$report"; then got=$(chosen "$report"); break; fi
    sleep $((try * 2))
  done
  if [ "$got" = "$file $sum" ]; then
    echo "[check-downloads] ok   PyPI $req -> $file"
  else
    echo "[check-downloads] FAIL PyPI $req with flags '$flags': expected '$file $sum', pip resolved '${got:-nothing}'" >&2
    sed 's/^/    /' "$report.log" >&2 || true
    failed=1
  fi
done

for line in "${NPM_PINS[@]}"; do
  read -r _ req file _ integrity <<<"$line"
  got=""
  for try in 1 2 3; do
    got=$(npm view "$req" dist.integrity 2>/dev/null) && [ -n "$got" ] && break
    sleep $((try * 2))
  done
  if [ "$got" = "$integrity" ]; then
    echo "[check-downloads] ok   npm  $req -> $file"
  else
    echo "[check-downloads] FAIL npm $req: expected integrity $integrity, registry says '${got:-nothing}'" >&2
    failed=1
  fi
done

[ "$failed" = 0 ] || { echo "[check-downloads] a pinned download no longer resolves: fix scripts/lib/pins.sh" >&2; exit 1; }
