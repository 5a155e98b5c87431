#!/usr/bin/env bash
# The paper's Table IV ablation on the EfficientNet-Lite0 encoder, on this 2-core CPU, at equal steps:
# with / without MPE blocks, ImageNet-pretrained / from scratch, and the loss (structure vs Jaccard).
# Every arm: the committed 600/200 split, 192x192, batch 8, Adam 5e-4 (encoder 0.5x), 1 warm-up epoch,
# cosine, no EMA (it lags in runs this short), colour jitter 0.2, EPOCHS epochs (default 3). Results: runs/ablation/*/metrics.json
# and a table on stdout (benchmarks/results/train/ablation-cpu/ keeps the logs).
#
#   bash benchmarks/ablation_lite.sh [EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-3}
DATA=${POLYP_LIVE_DATA:-../shared/data}/kvasir-seg
PY=${PYTHON:-.venv/bin/python}
common=(--data "$DATA" --split-file train/splits/kvasir_seg_600_200.json --size 192 --batch-size 8 --lr 5e-4
        --encoder-lr-scale 0.5 --warmup-epochs 1 --ema 0 --color-jitter 0.2 --epochs "$EPOCHS" --val-every "$EPOCHS"
        --save-dtype float16 --no-progress --device cpu)
run() {  # NAME ARGS...
  local name=$1; shift
  "$PY" -m polyp_live.train.cli_train "${common[@]}" --out "runs/ablation/$name" "$@" >"runs/ablation/$name.log" 2>&1
}
mkdir -p runs/ablation
run mpe-pretrained-structure --variant lite0 --pretrained --loss structure
run nompe-pretrained-structure --variant lite0-nompe --pretrained --loss structure
run mpe-scratch-structure --variant lite0 --loss structure
run mpe-pretrained-jaccard --variant lite0 --pretrained --loss jaccard
"$PY" - <<'PY'
import json, pathlib
print("| arm | variant | encoder | loss | val Dice | val IoU | epochs | minutes |")
print("|---|---|---|---|---|---|---|---|")
for d in sorted(pathlib.Path("runs/ablation").glob("*/metrics.json")):
    m = json.loads(d.read_text())
    _, init, loss = d.parent.name.split("-")
    print(f"| {d.parent.name} | {m['variant']} | {'ImageNet' if init == 'pretrained' else 'scratch'} | {loss} | "
          f"{m['best_val_dice']:.4f} | {m['best_val_iou']:.4f} | {m['epochs_run']} | {m['elapsed_s'] / 60:.1f} |")
PY
