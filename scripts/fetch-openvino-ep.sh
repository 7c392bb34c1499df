#!/usr/bin/env bash
# Fetches the OpenVINO plugin execution provider (PyPI `onnxruntime-ep-openvino`, MIT, OpenVINO
# inside) into third_party/openvino-ep: the plugin library, the OpenVINO and TBB libraries it
# finds through its RPATH, and the licence notices. The wheel's SHA-256 is pinned; a wheel with
# another digest is refused. Idempotent. pip is only the download client: the libraries do not
# depend on Python. The plugin is loaded by the onnxruntime library of fetch-onnxruntime.sh
# (SPEC §12.2.1).
set -euo pipefail
OV_EP_VERSION="1.8.1"
OV_EP_SHA256="3832643158c8c187fcab6db661cde2a8c06a2b3559d95d0f2411ac0e51c5e924"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/third_party/openvino-ep"
STAMP="$DEST/.version"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$OV_EP_VERSION $OV_EP_SHA256" ]; then
  echo "OpenVINO plugin EP $OV_EP_VERSION present in $DEST"
  exit 0
fi
echo "fetching onnxruntime-ep-openvino $OV_EP_VERSION from PyPI into $DEST ..."
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version 3.11 --platform manylinux_2_28_x86_64 \
  "onnxruntime-ep-openvino==$OV_EP_VERSION" -d "$TMP"
WHL=("$TMP"/onnxruntime_ep_openvino-"$OV_EP_VERSION"-*.whl)
GOT="$(sha256sum "${WHL[0]}" | cut -d' ' -f1)"
if [ "$GOT" != "$OV_EP_SHA256" ]; then
  echo "error: ${WHL[0]##*/} has SHA-256 $GOT, expected $OV_EP_SHA256; refusing it" >&2
  exit 1
fi
mkdir -p "$DEST"
python3 - "${WHL[0]}" "$DEST" <<'PY'
import os, sys, zipfile
whl, dest = sys.argv[1], sys.argv[2]
pkg = "onnxruntime_ep_openvino/"
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        base = n[len(pkg):] if n.startswith(pkg) else None
        if not base or "/" in base:
            continue
        # Shared libraries (the plugin, OpenVINO, its device plugins, TBB) and the notices.
        # cache.json is a GPU kernel cache, useless without a GPU.
        if ".so" not in base and base != "third-party-programs.txt":
            continue
        out = os.path.join(dest, base)
        with z.open(n) as s, open(out + ".part", "wb") as d:
            d.write(s.read())
        os.chmod(out + ".part", 0o755)
        os.replace(out + ".part", out)
    for n in z.namelist():
        if n.endswith(".dist-info/METADATA"):
            with z.open(n) as s, open(os.path.join(dest, "METADATA"), "wb") as d:
                d.write(s.read())
PY
echo "$OV_EP_VERSION $OV_EP_SHA256" > "$STAMP"
echo "OpenVINO plugin EP $OV_EP_VERSION ready: $DEST/libonnxruntime_providers_openvino_plugin.so"
