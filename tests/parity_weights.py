"""Rebuild the parity fixtures' weights (tests/fixtures/parity/README.md, "Weight recipe").

For every file in ``layout["files"]``: one ``torch.Generator`` seeded with the file's seed draws each listed
tensor in order as ``mean + randn(shape) * std`` (``mean`` the optional 4th element: a number, or the exact
values of a fixed buffer). A layout with a ``checkpoint_container`` (ArtFlow's ``glow.pth``) is written as
``{"iter": 0, "state_dict": state}``, the container the reference's train.py saves.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor


def read_layout(folder: str | Path, layout: str = "layout.json") -> dict:
    return json.loads((Path(folder) / layout).read_text())


def rebuild_state(entry: dict) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(int(entry["seed"]))
    state = {}
    for key, shape, std, *mean in entry["tensors"]:
        t = torch.randn(shape, generator=g, dtype=torch.float32) * std
        state[key] = t + torch.as_tensor(mean[0], dtype=torch.float32) if mean else t
    return state


def rebuild_all(folder: str | Path, layout: str = "layout.json") -> dict[str, dict[str, Tensor]]:
    return {name: rebuild_state(entry) for name, entry in read_layout(folder, layout)["files"].items()}


def write_official(folder: str | Path, out: str | Path, layout: str = "layout.json") -> list[Path]:
    """Write the rebuilt state dicts under their official file names (sub-folders included) into ``out``."""
    out = Path(out)
    container = "checkpoint_container" in read_layout(folder, layout)
    written = []
    for name, state in rebuild_all(folder, layout).items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"iter": 0, "state_dict": state} if container else state, out / name)
        written.append(out / name)
    return written
