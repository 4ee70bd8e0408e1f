#!/usr/bin/env bash
# The GPU checks and benchmarks in one command, for a machine with a CUDA GPU:
#   bash benchmarks/gpu.sh [OUTDIR]
# Runs the gpu-marked tests, then the inference and training benchmarks (time to Dice >= 0.98
# from pressing Train, and the paper's 120 x 512², 500-epoch workload). Results in OUTDIR.
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${1:-${OUT:-benchmarks/out}}
mkdir -p "$OUTDIR"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; \
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"; } \
  > "$OUTDIR/gpu.txt" 2>&1
timeout 180 $PY -m pytest -q -m gpu -p no:cacheprovider tests/test_train.py tests/test_segment.py \
  > "$OUTDIR/gpu_tests.txt" 2>&1
timeout 480 $PY benchmarks/run.py --only infer train --paper-workload --json "$OUTDIR/bench_cuda.json" \
  --work /tmp/calcinosis-bench 2>&1 | tee "$OUTDIR/bench_log.txt"
