#!/usr/bin/env bash
# The quick demo behind `make demo`: the study (original / pruned / quantized / distilled /
# structured / combined) on a training subset with few epochs — minutes, a smoke test of the
# whole pipeline. Uses Fashion-MNIST when installed, else scikit-learn digits.
set -euo pipefail
OUT=${1:-runs/demo}
EP=.venv/bin/edgepress
DATA=$(.venv/bin/python -c 'from edgepress.data import default_data; print(default_data())')
MODEL=${EDGEPRESS_DEMO_MODEL:-cnn}
echo "== edgepress study --quick: $MODEL on $DATA -> $OUT"
$EP study --quick --model "$MODEL" --data "$DATA" --out "$OUT"
echo "== table: $OUT/study.md   report: $OUT/report.html"
