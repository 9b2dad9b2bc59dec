"""sanet-bench: benchmark and evaluation suite for arbitrary neural style transfer."""

import os

from .errors import SanetBenchError

# OpenMP's idle threads spin briefly after each parallel region, then sleep: about 0.1 ms (libgomp, torch's
# OpenMP on Linux, counts about 100000 spins a millisecond). libgomp's default, about 3 ms, lets them take
# the cores that NNPACK's own thread pool needs (nn/winograd.py; a VGG encoder-decoder at 256 px on 2 cores:
# 0.81 s spinning, 0.45 s not); not spinning at all makes MKL's LAPACK, which runs many short parallel
# regions, wait for a wake-up in each (eigh of two 512x512 float64 matrices: 223 ms, 70 ms spinning briefly).
# Other OpenMP runtimes ignore GOMP_SPINCOUNT and only sleep (OMP_WAIT_POLICY=PASSIVE). The numbers are in
# docs/performance.md. The runtime reads them when torch is first imported, so they take effect where
# sanet_bench is imported first (the CLI, and every cell worker it starts); an explicit OMP_WAIT_POLICY or
# GOMP_SPINCOUNT wins.
OPENMP_ENV = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")  # recorded with every result
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

__version__ = "0.1.0"
__all__ = ["SanetBenchError", "list_methods", "load_method", "__version__"]

_LAZY = {"list_methods": "api", "load_method": "api"}  # they import torch: only on first use (PEP 562)


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
