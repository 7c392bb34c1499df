#!/usr/bin/env bash
# Fetches libonnxruntime from the PyPI `onnxruntime` wheel into third_party/onnxruntime.
# Idempotent. The library does not depend on Python; pip is only the download client.
set -euo pipefail
ORT_VERSION="${ORT_VERSION:-1.31.1}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/third_party/onnxruntime"
if [ -f "$DEST/libonnxruntime.so.$ORT_VERSION" ]; then
  echo "onnxruntime $ORT_VERSION present in $DEST"
  exit 0
fi
echo "fetching onnxruntime $ORT_VERSION from PyPI into $DEST ..."
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version 3.11 --platform manylinux_2_28_x86_64 \
  "onnxruntime==$ORT_VERSION" -d "$TMP"
mkdir -p "$DEST"
python3 - "$TMP"/onnxruntime-*.whl "$DEST" <<'PY'
import os, sys, zipfile
whl, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if n.startswith("onnxruntime/capi/libonnxruntime") or n in ("onnxruntime/LICENSE", "onnxruntime/ThirdPartyNotices.txt"):
            out = os.path.join(dest, os.path.basename(n))
            with z.open(n) as s, open(out + ".part", "wb") as d:
                d.write(s.read())
            os.chmod(out + ".part", 0o755)
            os.replace(out + ".part", out)
PY
ln -sf "libonnxruntime.so.$ORT_VERSION" "$DEST/libonnxruntime.so.1"
ln -sf libonnxruntime.so.1 "$DEST/libonnxruntime.so"
echo "onnxruntime $ORT_VERSION ready: $DEST/libonnxruntime.so.$ORT_VERSION"
