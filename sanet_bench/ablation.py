"""The identity-loss ablation of SANet (Park & Lee 2019, Sec. 4.3): does L_identity matter?

Variants of the objective ``L = l_c L_c + l_s L_s + l_id1 L_id1 + l_id2 L_id2`` (Eq. 4):

* ``full``: the configured lambdas (1, 3, 50, 1);
* ``no-identity``: ``l_id1 = l_id2 = 0``;
* ``pixel-only``: ``l_id2 = 0`` (Eq. 7's pixel term only);
* ``feature-only``: ``l_id1 = 0`` (Eq. 7's feature term only).

Every variant trains with :func:`sanet_bench.train.train` from the same seed, data and initial weights
(``TrainConfig.init_dir``: random, a checkpoint folder, or ``"demo"``, the shipped demo SANet; only the
lambdas differ), into ``out/variants/<variant>/``; an interrupted ablation resumes there. The starting point
itself (``start``) and each variant, loaded like any checkpoint folder, are evaluated on the same (content,
style) pairs of a grid with the metric registry's ``evaluate`` (the function the runner scores cells with,
the metrics' own VGG) plus the identity losses on those images (:func:`identity_losses`, the training
encoder). Means come with seeded bootstrap 95% confidence intervals over the cells, and each variant's
paired difference to ``full`` with its own. ``out/ablation.json`` holds everything the report needs;
:func:`sanet_bench.report.ablation.render_ablation` writes ``out/index.html`` + ``out/report.md`` (and
``sanet-bench report OUT`` renders it again). Empty ``content_dir``/``style_dir`` in the train settings
mean: train on the grid's own content and style images (linked into ``out/data``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .api import load_method, resolve_device
from .config import to_dict
from .errors import ConfigError
from .images import save_image
from .io import atomic_write_bytes
from .train import LOG_FILE, TrainConfig, TrainResult, read_losses, train
from .weights import META_FILE

VARIANTS: dict[str, dict[str, float]] = {
    "full": {},
    "no-identity": {"lambda_id1": 0.0, "lambda_id2": 0.0},
    "pixel-only": {"lambda_id2": 0.0},
    "feature-only": {"lambda_id1": 0.0},
}
LOSS_TERMS = ("loss_c", "loss_s", "l_identity1", "l_identity2")


START = "start"  # the common starting point, evaluated like a variant
IDENTITY = ("l_identity1", "l_identity2")


@dataclass
class AblationConfig:
    """``sanet-bench ablate identity`` settings (TOML table ``[ablation]``; training in ``[train]``)."""

    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    grid: str = "embedded"
    size: int = 256  # evaluation content and style size (shorter side)
    max_pairs: int | None = 6
    metrics: list[str] = field(default_factory=lambda: ["content_loss", "style_loss", "ssim"])
    figure_pairs: int = 4  # pairs shown in the outputs figure (spread over the evaluated ones)
    out: str = "runs/ablation-identity"
    device: str = "cpu"

    def validate(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or not self.variants:
            got = unknown[0] if unknown else "(none)"
            raise ConfigError(f"ablation: unknown variant {got!r}; choose from {', '.join(VARIANTS)}")
        if self.figure_pairs < 1:
            raise ConfigError(f"ablation: figure_pairs={self.figure_pairs} must be >= 1")
        from .registry import get_metric_spec

        for m in self.metrics:
            get_metric_spec(m)


@dataclass
class AblationResult:
    out: Path
    report: Path  # index.html (report.md beside it)
    table: list[dict[str, Any]]  # one row per variant: lambdas, final losses, metric means
    seconds: dict[str, float]  # train / eval / report wall time


def _grid_folders(grid: Any, out: Path) -> tuple[Path, Path]:
    """Link (or copy) the grid's content and style files into ``out/data/{content,style}``."""
    import shutil

    dirs = []
    for role, images in (("content", grid.contents), ("style", grid.styles)):
        d = out / "data" / role
        d.mkdir(parents=True, exist_ok=True)
        for img in images:
            dst = d / f"{img.name}{Path(img.path).suffix}"
            if not dst.exists():
                try:
                    os.symlink(Path(img.path).resolve(), dst)
                except OSError:
                    shutil.copyfile(img.path, dst)
        dirs.append(d)
    return dirs[0], dirs[1]


def _metric_networks(metrics: list[str], device: torch.device) -> Any:
    from .metrics import build

    # weights_dir=None: a variant folder holds the encoder it was trained with (possibly the offline one)
    # under the official name, which must not be mistaken for the metric's official VGG.
    return build(metrics, weights_dir=None, device=device)


def identity_losses(model: Any, image: torch.Tensor) -> tuple[float, float]:
    """SANet's identity terms for one image (Eq. 7): pixel MSE and the summed relu1_1..relu5_1 feature MSE
    between ``D(T(x, x))`` and ``x``, with the model's own encoder (the one it was trained against)."""
    x = image.to(model.device)
    y = model.stylize(x, x)
    h, w = min(x.shape[-2], y.shape[-2]), min(x.shape[-1], y.shape[-1])
    x, y = x[..., :h, :w], y[..., :h, :w]
    with torch.no_grad():
        fx, fy = model.encoder(x), model.encoder(y)
    l1 = torch.nn.functional.mse_loss(y, x).item()
    l2 = sum(torch.nn.functional.mse_loss(a, b).item() for a, b in zip(fy, fx, strict=True))
    return l1, l2


def evaluate_model(
    model: Any, pairs: list[tuple[Any, Any]], size: int, nets: Any, images_dir: Path, on_cell=None
) -> list[dict[str, Any]]:
    """Stylize every pair with ``model``; one row per pair with the metric values and the identity losses
    (content term + style term, as in training). ``on_cell()`` is called after each pair (a progress bar)."""
    from .metrics import evaluate

    ident: dict[str, tuple[float, float]] = {}
    rows = []
    for content_img, style_img in pairs:
        content, style = content_img.load(size), style_img.load(size)
        out = model.stylize(content, style).cpu()
        values, missing = evaluate(out, content, style, nets)
        for key, img in ((f"c:{content_img.name}", content), (f"s:{style_img.name}", style)):
            if key not in ident:
                ident[key] = identity_losses(model, img)
        idc, ids = ident[f"c:{content_img.name}"], ident[f"s:{style_img.name}"]
        rel = f"{content_img.name}__{style_img.name}.png"
        save_image(out, images_dir / rel)
        rows.append({"content": content_img.name, "style": style_img.name, "image": rel, **values,
                     "l_identity1": idc[0] + ids[0], "l_identity2": idc[1] + ids[1], "missing": missing})
        if on_cell is not None:
            on_cell()
    return rows


def bootstrap_ci(values: list[float], resamples: int = 2000, seed: int = 0) -> dict[str, float] | None:
    """Mean and seeded percentile-bootstrap 95% CI over cells
    (:func:`sanet_bench.results.bootstrap_interval`), ``{"mean", "low", "high", "n"}``; None values are left
    out, None if nothing is left."""
    import numpy as np

    from .results import bootstrap_interval

    v = np.asarray([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return None
    low, high = bootstrap_interval(v, np.random.default_rng(seed), resamples)
    return {"mean": float(v.mean()), "low": low, "high": high, "n": int(v.size)}


def _summaries(cells: dict[str, list[dict[str, Any]]], names: list[str]) -> tuple[dict, dict]:
    """Per model: each metric's mean and CI; per variant: its paired difference to ``full`` (same cells)."""
    summary = {k: {m: bootstrap_ci([r[m] for r in rows]) for m in names} for k, rows in cells.items()}
    vs_full: dict[str, dict[str, Any]] = {}
    if "full" in cells:
        for k, rows in cells.items():
            if k in ("full", START):
                continue
            vs_full[k] = {
                m: bootstrap_ci([None if a[m] is None or b[m] is None else a[m] - b[m]
                                 for a, b in zip(rows, cells["full"], strict=True)])
                for m in names
            }
    return summary, vs_full


def _mean_step_seconds(folder: Path) -> float:
    """Mean logged wall time of one update (from ``losses.csv``, so a resumed run keeps its timing)."""
    rows = read_losses(folder / LOG_FILE)
    return sum(r["seconds"] for r in rows) / len(rows) if rows else 0.0


def run_ablation(train_cfg: TrainConfig, cfg: AblationConfig) -> AblationResult:
    """Train every variant, evaluate each and the start on the same pairs, write the report (module doc)."""
    from tqdm.auto import tqdm

    from .grids import get_grid
    from .metrics import encoder_id, missing_components
    from .report.ablation import render_ablation
    from .train import Trainer

    cfg.validate()
    out = Path(cfg.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    grid = get_grid(cfg.grid)
    pairs = grid.pairs(cfg.max_pairs)
    if not pairs:
        raise ConfigError(f"ablation: grid {cfg.grid!r} gives no pairs; check the grid and max_pairs")
    if not train_cfg.content_dir or not train_cfg.style_dir:
        c, s = _grid_folders(grid, out)
        train_cfg = dataclasses.replace(train_cfg, content_dir=train_cfg.content_dir or str(c),
                                        style_dir=train_cfg.style_dir or str(s))
    train_cfg = dataclasses.replace(train_cfg, device=cfg.device)
    device = resolve_device(cfg.device)
    load_before = os.getloadavg()

    t0 = time.perf_counter()
    trained: dict[str, TrainResult] = {}
    for v in cfg.variants:
        vcfg = dataclasses.replace(train_cfg, out=str(out / "variants" / v), **VARIANTS[v])
        trained[v] = train(vcfg)
    t1 = time.perf_counter()
    nets = _metric_networks(cfg.metrics, device)
    start = Trainer(train_cfg)  # the weights every variant started from
    models = {START: start.model.eval()}
    models |= {v: load_method("sanet", weights="official", weights_dir=trained[v].out, device=device)
               for v in cfg.variants}
    with tqdm(total=len(models) * len(pairs), desc="ablation eval", unit="cell",
              disable=not train_cfg.progress) as bar:
        cells = {k: evaluate_model(m, pairs, cfg.size, nets, out / "images" / k, on_cell=bar.update)
                 for k, m in models.items()}
    for role, images in (("content", grid.contents), ("style", grid.styles)):
        for img in images:
            if any(img.name in (c.name, s.name) for c, s in pairs):
                save_image(img.load(cfg.size), out / "images" / role / f"{img.name}.png")
    t2 = time.perf_counter()

    names = [*cfg.metrics, *IDENTITY]
    summary, vs_full = _summaries(cells, names)
    table = []
    for v in cfg.variants:
        vcfg = json.loads((trained[v].out / META_FILE).read_text())["config"]
        last = read_losses(trained[v].out / LOG_FILE)[-1]
        row: dict[str, Any] = {"variant": v, **{k: vcfg[k] for k in ("lambda_c", "lambda_s", "lambda_id1",
                                                                      "lambda_id2")}}
        row.update({f"train_{k}": last[k] for k in LOSS_TERMS})
        row.update({m: (summary[v][m] or {}).get("mean") for m in names})
        table.append(row)
    record = {
        "train": to_dict(train_cfg), "ablation": to_dict(cfg), "encoder": trained[cfg.variants[0]].encoder,
        "init": start.init_info, "metrics_encoder": encoder_id(nets),
        "missing_networks": missing_components(nets), "table": table,
        "pairs": [[c.name, s.name] for c, s in pairs], "cells": cells, "summary": summary, "vs_full": vs_full,
        "seconds_per_step": {v: _mean_step_seconds(trained[v].out) for v in cfg.variants},
        "seconds": {"train": t1 - t0, "eval": t2 - t1},
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "load_before": list(load_before), "load_after": list(os.getloadavg())},
    }
    atomic_write_bytes(out / "ablation.json", (json.dumps(record, indent=1, default=str) + "\n").encode())
    report = render_ablation(out, out)
    t3 = time.perf_counter()
    return AblationResult(out, report, table, {"train": t1 - t0, "eval": t2 - t1, "report": t3 - t2})
