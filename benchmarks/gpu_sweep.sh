#!/usr/bin/env bash
# The GPU sweep of issue #20: every method at 256-4096 px in fp32 and bf16, eager and --compile, and tf32,
# with `sanet-bench profile` (one records.jsonl per step), then benchmarks/sweep_summary.py (summary.txt and
# sweep.png). Run it once on a lent GPU:
#
#   bash benchmarks/gpu_sweep.sh                        # writes benchmarks/results/<gpu-name>/
#   BUDGET_S=300 bash benchmarks/gpu_sweep.sh           # stop each step when the sweep's 300 s are spent
#   SIZES=256,512 METHODS=sanet,adain bash benchmarks/gpu_sweep.sh    # a smaller sweep
#
# Steps, in this order (the most wanted first, so a budget cuts the least wanted):
#   fp32, bf16           SIZES (256-2048) x METHODS, REPEATS timed calls after one warm-up; FLOPs counted in fp32
#   fp32-big, bf16-big   BIG_SIZES (4096) x BIG_METHODS: ONE call each, no warm-up, no FLOP count (a 4096 px
#                        call of an attention method costs seconds to tens of seconds); the cell says whether
#                        the method reaches that size and what it allocates
#   fp32-compile, bf16-compile   COMPILE_SIZES x COMPILE_METHODS with --compile (a compile per shape costs tens
#                        of seconds)
#   tf32                 SIZES x METHODS with --dtype tf32 (float32 tensors, TF32 convolutions and matmuls)
#   mast, mast-big       MAST runs in float64 whatever --dtype says (its module says why), so it has no bf16
#                        step; its quadratic float64 kNN alignment keeps it below SIZES_FULL_PRECISION (2048 px)
#                        with REPEATS calls, and at that size with one call.
# Each (method, size) is one cell; an out-of-memory size is a recorded result and the method's larger sizes
# in that step are skipped (the profiler's rule), so every step finishes. With BUDGET_S set, a step still
# running when its share (its cap below, or what is left) is spent is interrupted: the cells it finished stay
# in its records.jsonl. Weights: random (timings and memory do not depend on the values). Needs the package
# importable by PY (pip install -e ., or run from the repository root). Commit the output folder.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
DEVICE=${DEVICE:-cuda}
SIZES=${SIZES:-256,512,1024,2048}
BIG_SIZES=${BIG_SIZES:-4096}
# the paper's methods first, then the attention methods, then the rest
METHODS=${METHODS:-sanet,adain,wct,avatar-net,stytr2,adaattn,cast,lst,lst-r31,artflow-adain,artflow-wct,gatys,mast,magenta}
BIG_METHODS=${BIG_METHODS:-sanet,stytr2,adaattn,avatar-net,adain,wct,cast,lst,lst-r31,artflow-adain,artflow-wct,gatys}
SIZES_FULL_PRECISION=${SIZES_FULL_PRECISION:-2048}
COMPILE_METHODS=${COMPILE_METHODS:-adain,sanet}
COMPILE_SIZES=${COMPILE_SIZES:-512}
REPEATS=${REPEATS:-5}
BUDGET_S=${BUDGET_S:-0}
if [ "$DEVICE" != cpu ]; then
    gpu=$($PY -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')")
    if [ -z "$gpu" ]; then
        echo "error: no CUDA device visible to torch; this sweep is for a GPU machine (DEVICE=cpu for a dry run)" >&2
        exit 2
    fi
else
    gpu=cpu-dry-run
fi
out=${SWEEP_OUT:-benchmarks/results/$(echo "$gpu" | tr -cs 'A-Za-z0-9' '-' | sed 's/-*$//')}
mkdir -p "$out"
start=$(date +%s)

without() {  # without LIST NAME: the comma-separated LIST without NAME
    echo ",$1," | sed "s/,$2,/,/g; s/^,//; s/,$//"
}

step() {  # step NAME CAP_S PROFILE-ARGS...: one profile run into $out/NAME, interrupted after CAP_S with a budget
    local name=$1 cap=$2 limit=0
    shift 2
    if [ "$BUDGET_S" -gt 0 ]; then
        limit=$((BUDGET_S - ($(date +%s) - start)))
        if [ "$limit" -le 15 ]; then
            echo "== $name: skipped, the sweep's budget of $BUDGET_S s is spent"
            return
        fi
        [ "$cap" -lt "$limit" ] && limit=$cap
    fi
    echo "== $name ($(date -u +%H:%M:%S), limit ${limit} s; 0: none)"
    timeout -s INT -k 15 "$limit" $PY cli.py profile --device "$DEVICE" "$@" --out "$out/$name"
    local rc=$?
    [ $rc -eq 0 ] || echo "note: step $name exited $rc (124: stopped by its limit; its records say what ran)"
}

has() {  # has LIST NAME: NAME is in the comma-separated LIST
    case ",$1," in *",$2,"*) return 0 ;; *) return 1 ;; esac
}

main=$(without "$METHODS" mast)
big=$(without "$BIG_METHODS" mast)
below=$(echo "$SIZES" | tr , '\n' | awk -v m="$SIZES_FULL_PRECISION" '$1 < m' | paste -sd, -)
one_call=(--repeats 1 --warmup 0 --no-count-flops)
step fp32 "${CAP_FP32_S:-150}" --dtype fp32 --sizes "$SIZES" --repeats "$REPEATS" --methods "$main"
step bf16 "${CAP_BF16_S:-100}" --dtype bf16 --sizes "$SIZES" --repeats "$REPEATS" --no-count-flops --methods "$main"
step fp32-big "${CAP_BIG_S:-110}" --dtype fp32 --sizes "$BIG_SIZES" "${one_call[@]}" --methods "$big"
step bf16-big "${CAP_BIG_BF16_S:-60}" --dtype bf16 --sizes "$BIG_SIZES" "${one_call[@]}" --methods "$big"
for dtype in fp32 bf16; do
    step "$dtype-compile" "${CAP_COMPILE_S:-60}" --dtype "$dtype" --compile --sizes "$COMPILE_SIZES" \
        --repeats "$REPEATS" --no-count-flops --methods "$(without "$COMPILE_METHODS" mast)"
done
if [ "$DEVICE" != cpu ]; then  # TF32 is a CUDA mode
    step tf32 "${CAP_TF32_S:-90}" --dtype tf32 --sizes "$SIZES" --repeats "$REPEATS" --no-count-flops --methods "$main"
fi
if has "$METHODS" mast; then
    [ -n "$below" ] && step mast "${CAP_MAST_S:-60}" --dtype fp32 --sizes "$below" --repeats "$REPEATS" --methods mast
    step mast-big "${CAP_MAST_S:-40}" --dtype fp32 --sizes "$SIZES_FULL_PRECISION" "${one_call[@]}" --methods mast
fi
$PY benchmarks/sweep_summary.py "$out"
