#!/usr/bin/env bash
# One device call that does all the GPU work of a session lent one machine for a short time:
# 1. training round 2 (benchmarks/gpu_train.sh round2, ~3.7 min), 2. the engines' GPU parity/latency check
# (python -m polyp_live.engines.gpu_check) on the round's atto checkpoint, 3. the budgeted benchmark (benchmarks/gpu.sh).
#
#   device run (carry .gpu): bash benchmarks/gpu_session.sh
#
# Everything returned under $OUT fits its limits (8 files, 16 MB each).
set -uo pipefail
cd "$(dirname "$0")/.."
. benchmarks/checkout_env.sh  # polyp_live.* importable without an install
export PYTHONUNBUFFERED=1 POLYP_LIVE_DATA="$PWD/.gpu/data"
OUT=${OUT:-runs/gpu-out}
mkdir -p "$OUT" /tmp/bench
start=$(date +%s)
bash benchmarks/gpu_train.sh round2
echo "training done after $(( $(date +%s) - start )) s"
ck=runs/r2-atto-256/best
if [ -f "$ck.safetensors" ]; then  # the likely default model: benchmark it as 'default'
  mkdir -p train/weights && cp "$ck.safetensors" train/weights/default.safetensors && cp "$ck.json" train/weights/default.json
  timeout --kill-after=5 70 python3 -m polyp_live.engines.gpu_check --checkpoint default --variants fp32,fp16,fp16-graphs \
    --out /tmp/bench/gpu_check.json >/tmp/bench/gpu_check.log 2>&1; echo "gpu_check exit $?"
  tail -n 15 /tmp/bench/gpu_check.log
fi
OUT=/tmp/bench GPU_BENCH_BUDGET_S=${GPU_BENCH_BUDGET_S:-120} bash benchmarks/gpu.sh
tar czf "$OUT/gpu_bench.tgz" -C /tmp bench
echo "session done after $(( $(date +%s) - start )) s"
