#!/usr/bin/env bash
# The GPU checks and benchmarks in one command, for a machine with a CUDA GPU:
#   bash benchmarks/gpu.sh [OUTDIR]
# Runs the gpu-marked tests; the inference and training benchmarks (time to Dice >= 0.98 from
# pressing Train, and the paper's 120 x 512², 500-epoch workload); then the start-up breakdown
# with the plan-free 1 x 1 and depthwise layers in channels-last and NCHW and with every layer
# on cuDNN, each with a kernel profile at 512². Results in OUTDIR.
# SKIP_TESTS=1 leaves the tests out; BENCH_ARGS adds arguments to benchmarks/run.py;
# STARTUP_VARIANTS picks among plan-free, nchw and cudnn-everywhere;
# COMPILE_PROBE=1 adds benchmarks/gpu_compile_probe.py; THROUGHPUT_PROBE=1 adds
# benchmarks/gpu_throughput_probe.py (512² throughput: autotuning, other encoders).
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${1:-${OUT:-benchmarks/out}}
mkdir -p "$OUTDIR"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; \
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"; } \
  > "$OUTDIR/gpu.txt" 2>&1
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  timeout 240 $PY -m pytest -q -m gpu -p no:cacheprovider tests/test_train.py tests/test_segment.py tests/test_cuda_convs.py \
    > "$OUTDIR/gpu_tests.txt" 2>&1
fi
# shellcheck disable=SC2086
timeout 480 $PY benchmarks/run.py --only infer train --paper-workload --json "$OUTDIR/bench_cuda.json" \
  --work /tmp/calcinosis-bench ${BENCH_ARGS:-} 2>&1 | tee "$OUTDIR/bench_log.txt"
for variant in ${STARTUP_VARIANTS:-plan-free nchw cudnn-everywhere}; do
  case $variant in plan-free) flag="";; *) flag=--$variant;; esac
  # shellcheck disable=SC2086
  timeout 90 $PY benchmarks/gpu_startup.py $flag --profile --json "$OUTDIR/startup-$variant.json" \
    > "$OUTDIR/startup-$variant.log" 2>&1
done
if [ "${THROUGHPUT_PROBE:-0}" = 1 ]; then
  timeout 300 $PY benchmarks/gpu_throughput_probe.py --json "$OUTDIR/throughput_probe.json" \
    > "$OUTDIR/throughput_probe.log" 2>&1
fi
if [ "${COMPILE_PROBE:-0}" = 1 ]; then
  timeout 75 $PY benchmarks/gpu_compile_probe.py --json "$OUTDIR/compile.json" > "$OUTDIR/compile.log" 2>&1
fi
exit 0
