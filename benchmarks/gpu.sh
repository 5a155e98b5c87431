#!/usr/bin/env bash
# The GPU benchmark, as one prepared call on a lent GPU machine (H100/H200; PyTorch + CUDA there; no
# TensorRT, PyAV, PyQt6 or network needed):
#
#   here:        bash benchmarks/gpu_data.sh              # a small copy of real frames into .gpu/data (ignored)
#   device run:  bash benchmarks/gpu.sh                    (carry: .gpu; timeout_s 600)
#   CPU check:   POLYP_BENCH_NO_AV=1 bash benchmarks/gpu.sh --device cpu --dry-run
#
# Runs benchmarks/gpu_bench.py (see its docstring for the plan): GPU vs CPU preprocessing, latency of the default
# model and PEFNet-small (eager, CUDA graphs), the 1080p file-mode pipeline and the 1080p60 live camera, then the
# compiled rows (torch.compile reduce-overhead, then max-autotune) and the other models -- each item only if it
# fits in GPU_BENCH_BUDGET_S seconds (default 530). Real frames: $POLYP_LIVE_DATA, else .gpu/data when carried,
# else the bundled samples/ clip. Writes gpu_bench-<gpu>.json/.md and gpu_bench.log to $OUT (else
# benchmarks/results), rewritten after every row, so a cut-off run keeps what it measured.
set -uo pipefail
cd "$(dirname "$0")/.."
. benchmarks/checkout_env.sh  # polyp_live.* importable without an install
export PYTHONUNBUFFERED=1
if [ -z "${POLYP_LIVE_DATA:-}" ] && [ -d .gpu/data ]; then export POLYP_LIVE_DATA="$PWD/.gpu/data"; fi
BUDGET=${GPU_BENCH_BUDGET_S:-530}
DEST=${OUT:-benchmarks/results}
mkdir -p "$DEST"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "frames from ${POLYP_LIVE_DATA:-../shared/data (or the samples/ clip)}"
# A hard stop shortly after the budget, so one slow item (a long compile) cannot eat the caller's remaining time.
timeout --signal=INT --kill-after=5 "$((${BUDGET%.*} + 15))" \
  python3 benchmarks/gpu_bench.py --budget "$BUDGET" --out "$DEST" "$@" >"$DEST/gpu_bench.log" 2>&1
rc=$?
grep -v "^|" "$DEST/gpu_bench.log" | grep -v "^INFO" | tail -n 60
echo "gpu_bench exit $rc"
exit $rc
