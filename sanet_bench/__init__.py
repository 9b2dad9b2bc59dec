"""sanet-bench: benchmark and evaluation suite for arbitrary neural style transfer."""

from .errors import SanetBenchError

__version__ = "0.1.0"
__all__ = ["SanetBenchError", "list_methods", "load_method", "__version__"]

_LAZY = {"list_methods": "api", "load_method": "api"}  # they import torch: only on first use (PEP 562)


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
