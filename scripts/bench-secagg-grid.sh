#!/usr/bin/env bash
# Runs the secure-aggregation benchmark grid (§9.10) and Flower's SecAgg+ primitives side
# by side; one result file per configuration under bench/secagg/.
#   scripts/bench-secagg-grid.sh [quick]   # quick: n in {100, 500} only
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=bench/secagg
mkdir -p "$OUT"
BIN=${QUORATE_BIN:-target/release/quorate}
[ -x "$BIN" ] || cargo build --release -p quorate-cli
PY=${FLOWER_PY:-third_party/venv-flwr/bin/python}
NS="100 500 1000"
[ "${1:-}" = quick ] && NS="100 500"
for n in $NS; do
  for m in 1000 100000; do
    for d in 0 0.1 0.3; do
      for g in full auto; do
        f="$OUT/n${n}_m${m}_d${d}_${g}.txt"
        if [ "$g" = full ]; then extra=(); else extra=(--neighbours auto); fi
        "$BIN" bench secagg --clients "$n" --length "$m" --dropout "$d" "${extra[@]}" > "$f" 2>&1 || echo "FAILED" >> "$f"
        if [ -x "$PY" ]; then
          k=$(sed -n 's/.*SecAgg+ k=\([0-9]*\).*/\1/p' "$f")
          t=$(sed -n 's/.* t=\([0-9]*\) .*/\1/p' "$f" | head -1)
          kargs=(); [ -n "$k" ] && kargs=(--neighbours "$k")
          "$PY" scripts/flower_secagg_bench.py --clients "$n" --length "$m" --dropout "$d" --threshold "$t" "${kargs[@]}" >> "$f" 2>&1 || echo "flower FAILED" >> "$f"
        fi
        echo "== $f"; tail -2 "$f"
      done
    done
  done
done
