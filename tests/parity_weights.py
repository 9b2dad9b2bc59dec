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


# How each parity folder's stylize cases call the public API: (method name, layout file, stylize kwargs).
def case_call(case: dict) -> tuple[str, str, dict]:
    """``(method name, layout file, keyword arguments of stylize)`` for a parity case with an ``expected``."""
    m = case["method"]
    if m == "adain":
        return "adain", "layout.json", {"alpha": case["alpha"], "preserve_color": case["preserve_color"]}
    if m == "wct":
        return "wct", "layout.json", {"alpha": case["alpha"]}
    if m == "avatar_net":
        return "avatar-net", "layout.json", {"alpha": case["inter_weight"]}
    if m == "mast":
        return "mast", "layout.json", {"alpha": case["style_weight"]}
    if m == "lst":
        return {"r41": "lst", "r31": "lst-r31"}[case["layer"]], "layout.json", {}
    if m == "artflow":
        return f"artflow-{case['operator']}", case["layout"], {}
    return m, "layout.json", {}


def write_weights(folder: str | Path, out: str | Path, layout: str = "layout.json") -> Path:
    """The parity weights of ``folder`` in ``out`` as ``load_method(..., weights_dir=out)`` reads them
    (Avatar-Net: its converted ``.npz`` of TF-named arrays)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if Path(folder).name == "avatar_net":
        import numpy as np

        from baselines.avatar_net import NPZ

        state = rebuild_state(read_layout(folder, layout)["files"]["model.ckpt"])
        np.savez(out / NPZ, **{k: v.numpy() for k, v in state.items()})
    else:
        write_official(folder, out, layout)
    return out
