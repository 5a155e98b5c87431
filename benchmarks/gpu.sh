#!/usr/bin/env bash
# The GPU benchmark, as one prepared call on a lent GPU machine (H100/H200; PyTorch + CUDA there; no
# TensorRT, PyAV, PyQt6 or network needed):
#
#   device run: GPU_BENCH_BUDGET_S=120 bash benchmarks/gpu.sh
#   CPU check here: POLYP_BENCH_NO_AV=1 bash benchmarks/gpu.sh --device cpu --dry-run
#
# Runs benchmarks/gpu_bench.py: PyTorch CUDA FP16 (+ CUDA graphs) batch 1 for PEFNet-small 352x352 first,
# then the default model, tiny and base, FP32 and batch 4/16 rows, the pipeline on the bundled 1080p clip
# (OpenCV decode into memory, JSON Lines sink) and torch.compile last -- each item only if it fits in
# GPU_BENCH_BUDGET_S seconds (default 420). Writes gpu_bench-<gpu>.json/.md and gpu_bench.log to $OUT
# (else benchmarks/results), rewritten after every row, so a cut-off run keeps what it measured.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
BUDGET=${GPU_BENCH_BUDGET_S:-420}
DEST=${OUT:-benchmarks/results}
mkdir -p "$DEST"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
# A hard stop shortly after the budget, so one slow item cannot eat the caller's remaining time.
timeout --signal=INT --kill-after=5 "$((${BUDGET%.*} + 15))" \
  python3 benchmarks/gpu_bench.py --budget "$BUDGET" --out "$DEST" "$@" >"$DEST/gpu_bench.log" 2>&1
rc=$?
grep -v "^|" "$DEST/gpu_bench.log" | tail -n 40
grep "^|" "$DEST/gpu_bench.log" | head -n 40
echo "gpu_bench exit $rc"
exit $rc
