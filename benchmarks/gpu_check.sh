#!/usr/bin/env bash
# Everything a lent GPU checks, as one prepared call (a lease is short: each part has a time limit and the
# parts run most-wanted first):
#   1. the CUDA tests (parity of every method on CUDA, profiler events and peak memory, a real out-of-memory
#      cell, bf16/fp16 channels_last, --compile), which skip where no GPU is present
#   2. the error of each fast path on CUDA (fp32, tf32, bf16, bf16 + channels_last, fp16) against the parity
#      fixtures: benchmarks/fast_path_error.py
#   3. a grid run on CUDA whose larger size cannot fit in the memory the process may use: it must become a
#      failure row saying "out of memory" and the run must go on (exit 1, the other cells ok)
#   4. the sweep, benchmarks/gpu_sweep.sh, with what is left of the budget
# Usage, from the repository root on the GPU machine (the package importable: pip install -e . or
# PYTHONPATH=.); where the tree was copied there without its .git, or over a stale one, name its commit so
# that the records do (SANET_BENCH_COMMIT):
#
#   SANET_BENCH_COMMIT=<commit copied> CHECK_OUT=/tmp/gpu-check BUDGET_S=540 bash benchmarks/gpu_check.sh
#
# Writes into CHECK_OUT: check.log (everything printed), fast_path_error_cuda.txt, and sweep/ (the sweep's
# profile runs, summary.txt, sweep.png; copy it to benchmarks/results/<gpu-name>/ and commit it).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
CHECK_OUT=${CHECK_OUT:?set CHECK_OUT to the folder for the logs and results}
BUDGET_S=${BUDGET_S:-540}
mkdir -p "$CHECK_OUT"
exec > >(tee -a "$CHECK_OUT/check.log") 2>&1
start=$(date +%s)
left() { echo $((BUDGET_S - ($(date +%s) - start))); }
part() { echo; echo "== $1 ($(date -u +%H:%M:%S), $(left) s of the budget left)"; }

part "0. machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu --format=csv
$PY -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', \
torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), 'gpu', torch.cuda.get_device_name(0))"

part "1. CUDA tests"
timeout -s INT -k 10 "${CAP_TESTS_S:-120}" $PY -m pytest -q -p no:cacheprovider -rs \
    -k "cuda or device_copies" tests/baselines tests/test_sanet.py tests/test_fast_paths.py \
    tests/test_profiling.py tests/test_metrics.py
echo "pytest exit: $?"

part "2. fast-path error on CUDA"
timeout -s INT -k 10 "${CAP_ERROR_S:-60}" $PY benchmarks/fast_path_error.py --device cuda \
    --paths fp32,tf32,bf16,bf16+cl,fp16 | tee "$CHECK_OUT/fast_path_error_cuda.txt"
echo "fast_path_error exit: ${PIPESTATUS[0]}"

part "3. grid run on CUDA with a cell past the memory allowed"
# the process may use 2 % of the card (about 2.8 GiB of an H200's): SANet at 4096 px needs 12.6 GiB, so that
# cell meets a real CUDA out-of-memory error (an image past a whole card takes minutes to prepare on the CPU)
grid=$(mktemp -d)
timeout -s INT -k 10 "${CAP_GRID_S:-60}" $PY -c "import sys, torch; torch.cuda.set_per_process_memory_fraction(0.02)
from cli import main
main(sys.argv[1:])" run --device cuda --methods sanet,adain --weights random --sizes 256,4096 --max-pairs 1 \
    --metrics content_loss,style_loss,ssim --no-references --no-profile --no-report --no-progress --out "$grid/run"
echo "run exit: $? (1 expected: the 4096 px cells fail with out of memory, the 256 px cells do not)"
$PY - "$grid/run" <<'EOF'
import sys

from sanet_bench.results import load

df = load(sys.argv[1])
print(df[["method", "size", "status", "error"]].to_string(index=False, max_colwidth=110))
EOF

part "4. sweep"
sweep_s=$(($(left) - 25))  # the summary's time stays in the budget; 0 or less would mean no limit there
if [ "$sweep_s" -gt 30 ]; then
    BUDGET_S=$sweep_s SWEEP_OUT="$CHECK_OUT/sweep" PY=$PY bash benchmarks/gpu_sweep.sh
    echo "sweep exit: $?"
else
    echo "sweep skipped: $sweep_s s left of the budget"
fi
echo "total $(($(date +%s) - start)) s"
