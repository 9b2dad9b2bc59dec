"""Where cells execute: ``local`` (this process; the default) or ``ray`` (a Ray cluster).

The runner and the profiler hand a backend *what* to run — a picklable worker factory and the cells — and
keep everything else (the stores, resume, the progress bar) in the driver. Backends import nothing above
them: the worker's code travels as a pickled reference, so this layer stays below the runner.

    backend = get_backend("ray", address="auto")   # or get_backend("local")
    with backend:
        for item, result in backend.map(make_worker, items, args=..., group=...):
            ...
"""

from __future__ import annotations

from typing import Any

from ..config import BACKENDS
from ..errors import ConfigError


class WorkerLost(Exception):
    """The result of an item whose worker died on every attempt (the message says why)."""


def get_backend(name: str, address: str | None = None, **options: Any) -> Any:
    """The backend called ``name`` (``options``: see :class:`~sanet_bench.backends.ray.RayBackend`)."""
    if name == "local":
        from .local import LocalBackend

        return LocalBackend()
    if name == "ray":
        from .ray import RayBackend

        return RayBackend(address, **options)
    raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
