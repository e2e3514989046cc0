#!/usr/bin/env bash
# The quick demo behind `make demo`: the study (original / pruned / quantized / distilled /
# structured / combined) on a training subset with few epochs — about three minutes on 2 cores, a
# smoke test of the whole pipeline. Uses Fashion-MNIST when installed, else scikit-learn digits.
set -euo pipefail
OUT=${1:-runs/demo}
EP=.venv/bin/edgepress
DATA=$(.venv/bin/python -c 'from edgepress.data import default_data; print(default_data())')
MODEL=${EDGEPRESS_DEMO_MODEL:-cnn}
if [ "$DATA" = digits ]; then
  echo "demo: Fashion-MNIST is not installed; using scikit-learn digits (8x8) instead"
fi
echo "demo: edgepress study --quick --model $MODEL --data $DATA --out $OUT"
START=$(date +%s)
$EP study --quick --model "$MODEL" --data "$DATA" --out "$OUT"
echo "demo: done in $(( $(date +%s) - START )) s"
cat <<NEXT

The report: $OUT/report.html   (the table: $OUT/study.md)

Next, try:
  $EP measure your-model.onnx --data $DATA        # any fp32 ONNX classifier: size, accuracy, latency
  $EP compress $OUT/runs/original --recipe recipes/prune-then-int8.yaml --out runs/mine
  $EP study --model $MODEL --data $DATA --out runs/study   # the full study (about 30 minutes)
NEXT
