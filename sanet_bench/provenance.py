"""Where a number came from: software versions, hardware and the source commit, captured cheaply.

``environment(device)`` is recorded in every run manifest (and by the profiler) so a result can be traced to
the torch/CUDA build, the accelerator and the commit that produced it. Everything here is best effort: a
field that cannot be read is ``None``, never an error, and nothing is slower than a ``git`` call (2 s cap).
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from . import OPENMP_ENV

REPO_ROOT = Path(__file__).resolve().parent.parent
# Distributions whose versions change numbers or speed; recorded with every run.
PACKAGES = (
    "sanet-bench", "torch", "torchvision", "numpy", "pillow", "lpips", "pytorch-msssim", "pandas",
    "onnxruntime", "safetensors",
)


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=2, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_commit() -> str | None:
    """The commit of the source tree this package runs from: ``SANET_BENCH_COMMIT`` where set (a tree copied
    to a remote machine without its .git, or over a stale one), else git's HEAD, else None."""
    return os.environ.get("SANET_BENCH_COMMIT") or _git("rev-parse", "HEAD") or None


def git_dirty() -> bool | None:
    """True when tracked files differ from the commit (untracked files ignored); None outside git or where
    ``SANET_BENCH_COMMIT`` names the commit (git's view of the tree may be stale there)."""
    if os.environ.get("SANET_BENCH_COMMIT"):
        return None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status)


def versions() -> dict[str, str | None]:
    """Installed versions of the distributions in :data:`PACKAGES` (None when not installed)."""
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


@functools.lru_cache(maxsize=1)
def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


@functools.lru_cache(maxsize=1)
def nvidia_driver() -> str | None:
    """The NVIDIA driver version from /proc (Linux) or nvidia-smi; None where neither answers."""
    try:
        with open("/proc/driver/nvidia/version") as f:
            first = f.readline()
        for tok in first.split():
            if tok[:1].isdigit() and tok.count(".") >= 1:
                return tok
    except OSError:
        pass
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=2, check=True,
        )
        return out.stdout.strip().splitlines()[0] or None
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def environment(device: str | torch.device = "cpu") -> dict[str, Any]:
    """Software, hardware and source identity for results produced on ``device``.

    Each version appears once (``versions`` holds the packages without a field of their own). ``cuda`` and
    ``cudnn`` are the versions used on a CUDA device; elsewhere ``cuda`` says the build's CUDA is not used
    ("CUDA build 13.0, not used"; None for a CPU-only build) and ``cudnn`` is None."""
    dev = torch.device(device)
    cuda_ok = torch.cuda.is_available()
    gpu = None
    gpu_memory = None
    if dev.type == "cuda" and cuda_ok:
        idx = dev.index if dev.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(idx)
        gpu, gpu_memory = props.name, int(props.total_memory)
    vers = versions()
    on_cuda = dev.type == "cuda"
    cuda_unused = f"CUDA build {torch.version.cuda}, not used" if torch.version.cuda else None
    return {
        "package": vers.get("sanet-bench"),
        "commit": git_commit(),
        "dirty": git_dirty(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": vers.get("torchvision"),
        "cuda": torch.version.cuda if on_cuda else cuda_unused,
        "cudnn": torch.backends.cudnn.version() if on_cuda and torch.backends.cudnn.is_available() else None,
        "cuda_available": cuda_ok,
        "device": str(dev),
        "gpu": gpu,
        "gpu_memory_bytes": gpu_memory,
        "driver": nvidia_driver() if dev.type == "cuda" else None,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "openmp": " ".join(f"{k}={os.environ[k]}" for k in OPENMP_ENV if k in os.environ) or None,
        "versions": {k: v for k, v in vers.items() if k not in ("sanet-bench", "torch", "torchvision")},
    }
