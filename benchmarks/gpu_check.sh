#!/usr/bin/env bash
# Everything that needs a GPU, in one run on a machine with CUDA (a lent device): the GPU tests
# (tests/gpu and the local methods on cuda), then the benchmark suite at full GPU sizes.
# Results go to $OUT (default /tmp/gpu-check): env.txt, gpu-tests.log, bench.log, gpu.json.
#
#   OUT=/tmp/gpu bash benchmarks/gpu_check.sh
#   GPU_TESTS=none CASES=resnet50 BENCH_TIMEOUT=300 bash benchmarks/gpu_check.sh
#
# Knobs: GPU_TESTS (pytest arguments, or none), CASES (suite cases), TESTS_TIMEOUT and
# BENCH_TIMEOUT (seconds; 20 s before it, every thread's stack goes to bench.log), PYTHON. The figures of the runs so far are in docs/benchmarks.md.
#
# Python packages missing on the machine (mnist1d, plotly) can come as wheels in .whl/.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
PY=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=$PWD:/tmp/site
fi
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
  $PY -c "import torch, torchvision, timm; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'timm', timm.__version__)"
  nproc
} 2>&1 | tee "$OUT/env.txt"

TESTS=${GPU_TESTS:-"tests/gpu tests/ensembles/test_local_methods_e2e.py::test_every_local_method_trains_a_run_that_ensemble_judges[cuda]"}
if [ "$TESTS" != none ]; then  # GPU_TESTS=none: the benchmarks only
  set -f  # test ids such as ...[cuda] are not file patterns
  timeout "${TESTS_TIMEOUT:-200}" $PY -m pytest -q -p no:cacheprovider -rA $TESTS 2>&1 | tee "$OUT/gpu-tests.log"
  set +f
fi

BENCH_TIMEOUT=${BENCH_TIMEOUT:-360}
export BENCH_STACKS_AFTER=$((BENCH_TIMEOUT - 20))  # every thread's stack, if it stalls
timeout -k 10 -s INT "$BENCH_TIMEOUT" $PY benchmarks/suite.py --device cuda --cases ${CASES:-resnet20 resnet50} \
  --json "$OUT/gpu.json" 2>&1 | tee "$OUT/bench.log"
