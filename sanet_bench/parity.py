"""Rebuild the parity fixtures' weights (tests/fixtures/parity/README.md, "Weight recipe").

For every file in ``layout["files"]``: one ``torch.Generator`` seeded with the file's seed draws each listed
tensor in order as ``randn(shape) * std``. Used by the parity tests and by ``weights import`` tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor


def read_layout(folder: str | Path) -> dict:
    return json.loads((Path(folder) / "layout.json").read_text())


def rebuild_state(entry: dict) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(int(entry["seed"]))
    return {
        key: torch.randn(shape, generator=g, dtype=torch.float32) * std
        for key, shape, std in entry["tensors"]
    }


def rebuild_all(folder: str | Path) -> dict[str, dict[str, Tensor]]:
    layout = read_layout(folder)
    return {name: rebuild_state(entry) for name, entry in layout["files"].items()}


def write_official(folder: str | Path, out: str | Path) -> list[Path]:
    """Write the rebuilt state dicts under their official file names into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, state in rebuild_all(folder).items():
        torch.save(state, out / name)
        written.append(out / name)
    return written
