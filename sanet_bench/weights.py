"""Where checkpoints come from, and loading them safely.

Resolution for ``weights="official"``: an explicit ``weights_dir`` (files under their official names), else
the cache ``$SANET_BENCH_HOME/weights/<method>/`` (default ``SANET_BENCH_HOME`` is
``torch.hub.get_dir()/sanet_bench``, so ``TORCH_HOME`` is respected), else a one-line error naming where
the file is published and how to get it.

Checkpoints are read with ``torch.load(..., weights_only=True)`` (or safetensors): never unpickled.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from .errors import WeightsError
from .registry import MethodSpec, WeightFile


def home() -> Path:
    env = os.environ.get("SANET_BENCH_HOME")
    if env:
        return Path(env).expanduser()
    return Path(torch.hub.get_dir()) / "sanet_bench"


def cache_dir(method: str) -> Path:
    return home() / "weights" / method


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def where_published(f: WeightFile) -> str:
    if not f.sources:
        return "no public source is known"
    return f"published at {f.sources[0].url}"


def resolve_official(spec: MethodSpec, weights_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Paths of the method's official files, from ``weights_dir`` or the cache."""
    base = Path(weights_dir).expanduser() if weights_dir is not None else cache_dir(spec.name)
    paths: dict[str, Path] = {}
    missing: list[WeightFile] = []
    for f in spec.files:
        p = base / f.name
        if p.is_file():
            paths[f.name] = p
        elif not f.optional:
            missing.append(f)
    if missing and (latest := latest_iteration(base, [f.name for f in spec.files])):
        paths.update(latest)  # training checkpoints (`sanet-bench train`): *_iter_N files of the highest N
        missing = [f for f in missing if f.name not in latest]
    if missing:
        where = f"weights dir {base}" if weights_dir is not None else f"the cache {base}"
        files = "; ".join(f"{f.name} ({where_published(f)})" for f in missing)
        raise WeightsError(
            f"{spec.name}: official files missing in {where}: {files} — run `sanet-bench weights pull "
            f"{spec.name}` or `sanet-bench weights import DIR`, or use weights='random' for latency work"
        )
    return paths


_ITER_NAME = re.compile(r"(?P<stem>.+)_iter_(?P<n>\d+)(?P<ext>\.[A-Za-z0-9]+)")


def latest_iteration(base: Path, names: list[str]) -> dict[str, Path]:
    """``{name: base/<stem>_iter_N<ext>}`` for official names like ``decoder_iter_500000.pth``.

    N is the highest iteration at which every such name has a file in ``base``, so the decoder and transformer
    of one iteration stay paired. Empty when no N is complete. Used only when an official name is missing.
    """
    stems = {n: m for n in names if (m := _ITER_NAME.fullmatch(n))}
    common: set[int] | None = None
    for m in stems.values():
        found = {
            int(x["n"])
            for p in base.glob(f"{glob.escape(m['stem'])}_iter_*{m['ext']}")
            if (x := _ITER_NAME.fullmatch(p.name)) and x["stem"] == m["stem"] and p.is_file()
        }
        common = found if common is None else common & found
    if not common:
        return {}
    n = max(common)
    return {name: base / f"{m['stem']}_iter_{n}{m['ext']}" for name, m in stems.items()}


def read_state_dict(path: str | os.PathLike, expected: str = "") -> dict[str, Tensor]:
    """Read a flat ``{key: tensor}`` checkpoint without unpickling arbitrary objects."""
    path = Path(path)
    what = f" (expected {expected})" if expected else ""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such file{what}") from None
    except Exception as e:  # corrupt file, pickle with objects, truncated zip
        msg = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise WeightsError(f"{path}: not a readable weights-only checkpoint ({msg}){what}") from None
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsError(f"{path}: not a flat state dict of tensors{what}")
    return dict(state)


def load_strict(module: nn.Module, state: Mapping[str, Tensor], path: str | os.PathLike, expected: str) -> None:
    """``load_state_dict(strict=True)`` with a one-line error: missing/unexpected keys or first shape mismatch."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_few(unexpected)}")
        raise WeightsError(f"{path}: {', '.join(parts)}; expected {expected}")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise WeightsError(
                f"{path}: key {k} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}; expected {expected}"
            )
    module.load_state_dict({k: state[k].to(v.dtype) for k, v in own.items()}, strict=True)


def load_file_into(module: nn.Module, path: Path, spec: MethodSpec, file_name: str) -> None:
    expected = f"the official {spec.title} file {file_name} ({spec.file(file_name).layout})"
    load_strict(module, read_state_dict(path, expected), path, expected)


def _few(keys: list[str], n: int = 4) -> str:
    shown = ", ".join(keys[:n])
    return f"[{shown}{', ...' if len(keys) > n else ''}] ({len(keys)})"
