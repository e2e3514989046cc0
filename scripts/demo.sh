#!/usr/bin/env bash
# The quick demo behind `make demo`: train two models, export, measure and compare them.
# Uses Fashion-MNIST when installed, else scikit-learn digits.
set -euo pipefail
OUT=${1:-runs/demo}
EP=.venv/bin/edgepress
DATA=$(.venv/bin/python -c 'from edgepress.data import default_data; print(default_data())')
echo "== edgepress demo on $DATA -> $OUT"
$EP train --model lenet5 --data "$DATA" --epochs 3 --out "$OUT/lenet5"
$EP train --model lenet5:width=0.5 --data "$DATA" --epochs 3 --out "$OUT/lenet5-half"
$EP export "$OUT/lenet5"
$EP measure "$OUT/lenet5"
$EP compare "$OUT/lenet5" "$OUT/lenet5-half" --json "$OUT/compare.json"
echo "== runs in $OUT; comparison in $OUT/compare.json"
