"""Peak CPU memory of the attention methods (SANet, StyTr2, AdaAttN) with content and style both at 512,
1024 and 2048 px.

A plain script, not a test::

    python benchmarks/attention_memory.py                   # 512, 1024, 2048 px; torch's default threads
    python benchmarks/attention_memory.py --methods sanet --sizes 256,512 --out runs/attn-mem

Random weights (memory does not depend on their values). Each size runs in a fresh ``spawn`` process: a
priming call at 64 px, then one ``stylize`` call whose peak RSS growth is measured (``VmHWM`` after minus
``VmRSS`` before, the loaded model and inputs excluded; see ``sanet_bench/profiling.py``). Thanks to the
chunked attention (:mod:`sanet_bench.nn.attention`) the [queries x keys] attention matrix is never
materialised, so peak memory should grow about linearly in pixels: ~4x from 1024 to 2048 px, where a full
attention matrix (SANet: 65536^2 floats = 16 GiB at 2048 px) would grow 16x. The references build it whole.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from sanet_bench.config import ProfileConfig
from sanet_bench.io import format_table
from sanet_bench.profiling import profile


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="sanet,stytr2,adaattn", help="comma-separated method names")
    ap.add_argument("--sizes", default="512,1024,2048", help="comma-separated px (content = style size)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    ap.add_argument("--out", type=Path, default=None, help="keep the records here (default: a temp folder)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    cfg = ProfileConfig(
        methods=[m for m in args.methods.split(",") if m.strip()], sizes=sizes, weights="random", repeats=0,
        warmup=0, count_flops=False, isolate=True, threads=args.threads,
    )
    with tempfile.TemporaryDirectory() as tmp:
        records = profile(cfg, args.out or tmp)
    print(f"Peak memory, CPU, random weights, content = style size, one process per size "
          f"({records[0]['env']['cpu']}, {records[0]['env']['threads']} threads)")
    rows, prev = [], {}
    for r in records:
        mib = r["peak_mem_bytes"] / 2**20 if r["peak_mem_bytes"] is not None else None
        last = prev.get(r["method"])
        growth = f"{mib / last:.2f}" if mib and last else "-"
        rows.append((r["method"], r["size"], r["size"] ** 2, "-" if mib is None else f"{mib:.1f}", growth,
                     r["status"] + (f": {r['error']}" if r["error"] else "")))
        prev[r["method"]] = mib
    print(format_table(("method", "size", "pixels", "peak MiB", "x prev", "status"), rows, left=(0, 5)))
    print("linear in pixels: x4 per doubling of the side; a full attention matrix: x16")
    print(f"convention: {records[0]['peak_mem_convention']}")


if __name__ == "__main__":  # spawn workers re-import this file: keep the work under the guard
    main()
