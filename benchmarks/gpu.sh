#!/usr/bin/env bash
# The GPU checks and benchmarks in one command, for a machine with a CUDA GPU:
#   bash benchmarks/gpu.sh [OUTDIR]
# In order: THROUGHPUT_PROBE=1 adds benchmarks/gpu_throughput_probe.py first (steady 512²
# training images/s per precision, upsampling and convolution route); the inference and
# training benchmarks (time to Dice >= 0.98 from pressing Train, and the paper's 120 x 512²,
# 500-epoch workload); the start-up breakdown (STARTUP_VARIANTS: plan-free, nchw,
# cudnn-everywhere, cudnn-v7, cudnn-everywhere-v7; empty for none), each with a kernel profile at 512²; COMPILE_PROBE=1 adds
# benchmarks/gpu_compile_probe.py, twice (cold, then with inductor's cache); last the
# gpu-marked tests, the fused batch norm's in a second process (SKIP_TESTS=1 leaves them out;
# TESTS_TIMEOUT limits the first, FUSED_TESTS_TIMEOUT the second, TESTS_TIMEOUT by default).
# PROBE_VARIANTS picks the probe's variants; BENCH_ARGS adds arguments to benchmarks/run.py.
# From the probe: if its float16 step failed, the training benchmarks fall back to bfloat16
# (--cuda-dtype); otherwise the variant it projects fastest for the paper workload (batch 120,
# batch norm fused with its activation, cuDNN's autotuner) gets a paper-workload run of its
# own, before train_segmenter's own one. Results in OUTDIR.
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${1:-${OUT:-benchmarks/out}}
mkdir -p "$OUTDIR"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; \
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), torch.cuda.is_available())"; } \
  > "$OUTDIR/gpu.txt" 2>&1
EXTRA=""
if [ "${THROUGHPUT_PROBE:-0}" = 1 ]; then
  # shellcheck disable=SC2086
  timeout "${PROBE_TIMEOUT:-200}" $PY benchmarks/gpu_throughput_probe.py --json "$OUTDIR/throughput_probe.json" \
    ${PROBE_VARIANTS:+--variants $PROBE_VARIANTS} > "$OUTDIR/throughput_probe.log" 2>&1
  # images/s of a probe variant: 0 when it failed, "absent" when it was not asked for
  probe_rate() {
    $PY -c "import json,sys; r={v['variant']: v.get('images_per_s', 0) for v in json.load(open(sys.argv[1]))}; \
print(r.get(sys.argv[2], 'absent'))" "$OUTDIR/throughput_probe.json" "$1" 2>/dev/null || echo 0
  }
  if [ "$(probe_rate fp16-join-pad)" = 0 ]; then
    EXTRA="--cuda-dtype bfloat16"
    echo "the float16 probe failed: training benchmarks in bfloat16" | tee -a "$OUTDIR/gpu.txt"
  else
    # The paper workload: first the probed float16 variant that projects it fastest (its first
    # step, autotuning included, plus 60,000 images at its steady rate) when that beats
    # train_segmenter's own step by 3 %, then train_segmenter's own run (b60).
    PAPER_RUNS=$($PY benchmarks/_gpu.py best-paper-run "$OUTDIR/throughput_probe.json" 2>>"$OUTDIR/gpu.txt" || echo b60)
    EXTRA="--paper-runs $PAPER_RUNS"
    echo "paper-workload runs: $PAPER_RUNS" | tee -a "$OUTDIR/gpu.txt"
  fi
fi
# shellcheck disable=SC2086
timeout "${BENCH_TIMEOUT:-480}" $PY benchmarks/run.py --only infer train --paper-workload --json "$OUTDIR/bench_cuda.json" \
  --work /tmp/calcinosis-bench $EXTRA ${BENCH_ARGS:-} 2>&1 | tee "$OUTDIR/bench_log.txt"
for variant in ${STARTUP_VARIANTS-plan-free nchw cudnn-everywhere}; do
  case $variant in plan-free) flag="";; cudnn-everywhere-v7) flag="--cudnn-everywhere --cudnn-v7";; *) flag=--$variant;; esac
  # shellcheck disable=SC2086
  timeout 90 $PY benchmarks/gpu_startup.py $flag --profile --json "$OUTDIR/startup-$variant.json" \
    > "$OUTDIR/startup-$variant.log" 2>&1
done
if [ "${COMPILE_PROBE:-0}" = 1 ]; then
  # twice: the second process finds the first one's kernels in inductor's on-disk cache
  for run in cold warm-cache; do
    timeout "${COMPILE_TIMEOUT:-150}" $PY benchmarks/gpu_compile_probe.py --json "$OUTDIR/compile-$run.json" \
      >> "$OUTDIR/compile.log" 2>&1
  done
fi
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  # the fused batch norm's tests in a process of their own, last: a kernel that faulted would
  # leave its process's CUDA context unusable for the tests after it
  timeout "${TESTS_TIMEOUT:-240}" $PY -m pytest -q -m gpu -k "not fused" -p no:cacheprovider tests/test_train.py \
    tests/test_segment.py tests/test_cuda_convs.py tests/test_cuda_decoder.py > "$OUTDIR/gpu_tests.txt" 2>&1
  timeout "${FUSED_TESTS_TIMEOUT:-${TESTS_TIMEOUT:-240}}" $PY -m pytest -q -m gpu -k fused -p no:cacheprovider tests/test_train.py \
    tests/test_cuda_batchnorm.py > "$OUTDIR/gpu_tests_fused.txt" 2>&1
fi
exit 0
