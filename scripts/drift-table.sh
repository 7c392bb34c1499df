#!/usr/bin/env bash
# Measures the honest drift of the generated transformer and all-MiniLM-L6-v2 across the CPU
# provider and the OpenVINO plugin at f32 and bf16 (SPEC §14.10) and prints the Markdown table
# of the README. Usage: scripts/drift-table.sh [SAMPLES] (default 20).
set -euo pipefail
cd "$(dirname "$0")/.."
SAMPLES="${1:-20}"
./scripts/fetch-onnxruntime.sh >/dev/null
./scripts/fetch-openvino-ep.sh >/dev/null
./scripts/fetch-models.sh >/dev/null
cargo build --quiet --bin quorate
Q="${CARGO_TARGET_DIR:-target}/debug/quorate"
OUT="${DRIFT_OUT:-models/calibration}"
mkdir -p "$OUT"
"$Q" gen-model transformer --out third_party/models/transformer.onnx >/dev/null
"$Q" calibrate --model third_party/models/transformer.onnx --name "generated transformer" \
  --providers cpu,openvino:CPU:f32,openvino:CPU:bf16 --samples "$SAMPLES" --vocab 1000 \
  --seq-min 8 --seq-max 256 --out "$OUT/transformer.json" --table
"$Q" calibrate --model third_party/models/all-MiniLM-L6-v2-int8.onnx --name all-MiniLM-L6-v2 \
  --providers cpu,openvino:CPU:f32,openvino:CPU:bf16 --samples "$SAMPLES" --vocab 30522 \
  --seq-min 8 --seq-max 256 --out "$OUT/minilm.json" --table
