"""SANet's peak CPU memory with content and style both at 512, 1024 and 2048 px (issue 2).

A plain script, not a test::

    python benchmarks/sanet_memory.py                      # 512, 1024, 2048 px; torch's default threads
    python benchmarks/sanet_memory.py --sizes 256,512 --out runs/sanet-mem

Random weights (memory does not depend on their values). Each size runs in a fresh ``spawn`` process: a
priming call at 64 px, then one ``stylize`` call whose peak RSS growth is measured (``VmHWM`` after minus
``VmRSS`` before, the loaded model and inputs excluded; see ``sanet_bench/profiling.py``). Thanks to the
chunked attention in ``sanet_bench/sanet.py`` the [HWc x HWs] attention matrix is never materialised, so
peak memory should grow about linearly in pixels: ~4x from 1024 to 2048 px, where a full attention matrix
(65536^2 floats = 16 GiB at 2048 px) would grow 16x.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from sanet_bench.profiling import ProfileConfig, profile


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="512,1024,2048", help="comma-separated px (content = style size)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    ap.add_argument("--out", type=Path, default=None, help="keep the records here (default: a temp folder)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    cfg = ProfileConfig(
        methods=["sanet"], sizes=sizes, weights="random", repeats=0, warmup=0, count_flops=False,
        isolate=True, threads=args.threads,
    )
    with tempfile.TemporaryDirectory() as tmp:
        records = profile(cfg, args.out or tmp)
    print(f"SANet peak memory, CPU, random weights, content = style size, one process per size "
          f"({records[0]['env']['cpu']}, {records[0]['env']['threads']} threads)")
    print(f"{'size':>6}  {'pixels':>10}  {'peak MiB':>9}  {'x prev':>6}  status")
    prev = None
    for r in records:
        mib = r["peak_mem_bytes"] / 2**20 if r["peak_mem_bytes"] is not None else None
        growth = f"{mib / prev:6.2f}" if mib and prev else "     -"
        shown = f"{mib:9.1f}" if mib is not None else "        -"
        error = f": {r['error']}" if r["error"] else ""
        print(f"{r['size']:>6}  {r['size'] ** 2:>10}  {shown}  {growth}  {r['status']}{error}")
        prev = mib
    peak = {r["size"]: r["peak_mem_bytes"] for r in records if r["status"] == "ok"}
    if peak.get(1024) and peak.get(2048):
        print(f"growth 1024 -> 2048 px: {peak[2048] / peak[1024]:.2f}x (pixels 4x: linear in pixels is ~4x)")
    print(f"convention: {records[0]['peak_mem_convention']}")


if __name__ == "__main__":  # spawn workers re-import this file: keep the work under the guard
    main()
