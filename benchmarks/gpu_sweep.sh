#!/usr/bin/env bash
# The one GPU run of issue #20: every method at 256-4096 px, fp32 and bf16, eager and --compile, with
# `sanet-bench profile` (records.jsonl per run), then a summary table. Run it once on a lent GPU:
#
#   bash benchmarks/gpu_sweep.sh                       # writes benchmarks/results/<gpu-name>/
#   SIZES=256,512 METHODS=sanet,adain bash benchmarks/gpu_sweep.sh    # a smaller sweep
#
# Each (method, size) is one cell; an out-of-memory size is a recorded result and the method's larger
# sizes are skipped (the profiler's rule), so the sweep always finishes. Weights: random (timings and
# memory do not depend on the values). --compile runs only at the two smallest sizes by default
# (COMPILE_SIZES): a compile per shape costs tens of seconds. Needs the package installed (pip install -e .)
# in the environment of PY. Prints, and writes summary.txt: median (and peak GiB) per cell and run. Commit
# the output folder.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
SIZES=${SIZES:-256,512,1024,2048,4096}
COMPILE_SIZES=${COMPILE_SIZES:-256,512}
METHODS=${METHODS:-}
REPEATS=${REPEATS:-5}
gpu=$($PY -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')")
if [ -z "$gpu" ]; then
    echo "error: no CUDA device visible to torch; this sweep is for a GPU machine" >&2
    exit 2
fi
out=${OUT:-benchmarks/results/$(echo "$gpu" | tr -cs 'A-Za-z0-9' '-' | sed 's/-*$//')}
mkdir -p "$out"
methods=()
[ -n "$METHODS" ] && methods=(--methods "$METHODS")
for dtype in fp32 bf16; do
    $PY cli.py profile --device cuda --dtype "$dtype" --sizes "$SIZES" --repeats "$REPEATS" \
        "${methods[@]}" --out "$out/$dtype" || echo "note: profile $dtype exited $? (its records say why)"
    $PY cli.py profile --device cuda --dtype "$dtype" --compile --sizes "$COMPILE_SIZES" \
        --repeats "$REPEATS" "${methods[@]}" --out "$out/$dtype-compile" \
        || echo "note: profile $dtype --compile exited $? (its records say why)"
done
$PY - "$out" <<'EOF'
import sys
from pathlib import Path

from sanet_bench.io import format_table
from sanet_bench.profiling import read_records

out = Path(sys.argv[1])
runs = sorted(p.name for p in out.iterdir() if (p / "records.jsonl").is_file())
cells: dict[tuple, dict[str, str]] = {}
for run in runs:
    for r in read_records(out / run):
        shown = f"{r['median_s'] * 1000:.1f} ms" if r["status"] == "ok" else r["status"]
        if r["status"] == "ok" and r.get("peak_mem_bytes"):
            shown += f" / {r['peak_mem_bytes'] / 2**30:.2f} GiB"
        cells.setdefault((r["method"], int(r["size"])), {})[run] = shown
rows = [[m, s, *[v.get(run, "-") for run in runs]] for (m, s), v in sorted(cells.items())]
text = format_table(["method", "size", *runs], rows, left=(0,))
(out / "summary.txt").write_text(text + "\n")
print(text)
EOF
