"""sanet-bench: benchmark and evaluation suite for arbitrary neural style transfer."""

import os

from .errors import SanetBenchError

# OpenMP's idle threads sleep instead of spinning after each parallel region. NNPACK's Winograd convolutions
# (nn/winograd.py) run on a thread pool of their own; spinning OpenMP threads take the cores it needs (a VGG
# encoder-decoder at 256 px on 2 cores: 0.81 s spinning, 0.45 s passive; oneDNN's own paths measured the
# same either way).
# libgomp reads it when torch is first imported, so it takes effect where sanet_bench is imported first (the
# CLI, and every cell worker it starts); an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
__all__ = ["SanetBenchError", "list_methods", "load_method", "__version__"]

_LAZY = {"list_methods": "api", "load_method": "api"}  # they import torch: only on first use (PEP 562)


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
