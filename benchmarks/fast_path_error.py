"""Max relative error of each fast path against the fp32 expected output of every parity case.

A plain script over the parity fixtures (``tests/fixtures/parity/``, weights rebuilt with
``tests/parity_weights.py``)::

    PYTHONPATH=. python benchmarks/fast_path_error.py   # every method: fp32, Winograd, channels_last, bf16
    PYTHONPATH=. python benchmarks/fast_path_error.py --methods wct --paths bf16,fp32+cl --device cuda

Error = max|out - expected| / max|expected| (the parity tests' measure; their tolerance is printed next to
it). Paths: ``fp32`` (the plain path, for reference), ``fp32+wino`` (NNPACK's Winograd 3x3 convolutions),
``fp32+cl`` (channels_last), ``bf16``, ``bf16+cl``,
``fp16`` and ``tf32`` (CUDA only: ``--device cpu`` skips them). ``fp32`` is full float32 on CUDA too.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from parity_weights import case_call, write_weights  # noqa: E402

from sanet_bench import load_method  # noqa: E402
from sanet_bench.io import format_table  # noqa: E402
from sanet_bench.method import prepare  # noqa: E402

PARITY = ROOT / "tests" / "fixtures" / "parity"
PATHS = {"fp32": ("fp32", False, False), "fp32+wino": ("fp32", False, True), "fp32+cl": ("fp32", True, False),
         "bf16": ("bf16", False, False), "bf16+cl": ("bf16", True, False), "fp16": ("fp16", False, False),
         "tf32": ("tf32", False, False)}
CUDA_ONLY = ("fp16", "tf32")


def rel_error(out: torch.Tensor, expected: torch.Tensor) -> float:
    return ((out.float().cpu() - expected).abs().max() / expected.abs().max()).item()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="", help="comma-separated parity folders (default: all)")
    ap.add_argument("--paths", default="fp32,fp32+wino,fp32+cl,bf16,bf16+cl",
                    help=f"comma-separated: {', '.join(PATHS)}")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    folders = sorted(p.name for p in PARITY.iterdir() if p.is_dir())
    if args.methods:
        folders = [f for f in folders if f in args.methods.split(",")]
    paths = [p for p in args.paths.split(",") if not (p in CUDA_ONLY and args.device == "cpu")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for folder in folders:
            worst: dict[tuple[str, str], list[float]] = {}
            tols: dict[str, float] = {}
            for case_path in sorted((PARITY / folder).glob("case_*.pt")):
                case = torch.load(case_path, weights_only=True)
                if "expected" not in case:
                    continue
                name, layout, kw = case_call(case)
                wdir = Path(tmp) / folder / layout
                if not wdir.exists():
                    write_weights(PARITY / folder, wdir, layout)
                tols[name] = case.get("tol_rel_max", 0.0)
                for p in paths:
                    dtype, cl, wino = PATHS[p]
                    try:
                        model = load_method(name, weights="official", weights_dir=wdir, device=args.device)
                        prepare(model, dtype, cl, winograd=wino)
                        out = model.stylize(case["content"], case["style"], **kw)
                        err = rel_error(out, case["expected"])
                    except Exception as e:  # a path a method does not support (or no weights): a result
                        print(f"{name} {case_path.stem} {p}: {type(e).__name__}: {e}"[:300], file=sys.stderr)
                        err = float("nan")
                    worst.setdefault((name, p), []).append(err)
            for name in dict.fromkeys(n for n, _ in worst):
                errs = [f"{max(worst[name, p], key=lambda e: (e != e, e)):.2g}" for p in paths]
                rows.append([name, str(len(worst[name, paths[0]])), f"{tols[name]:.2g}", *errs])
                print(" | ".join(rows[-1]), flush=True)
    print()
    print(format_table(["method", "cases", "parity tol", *[f"{p} max rel err" for p in paths]], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
