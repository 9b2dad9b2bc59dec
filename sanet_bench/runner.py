"""The grid run: every (method, content, style, size, alpha) cell stylized, scored and recorded.

``run(cfg)`` checks the whole config before the first cell (a user error then stops with nothing written),
loads each method once, and for each cell: seeds torch from the cell key, loads the two images (content at
``size``, style at ``cfg.style_size`` or ``size``, both by ``cfg.resize``), stylizes, computes the metrics
on the saved 8-bit output, writes the PNG atomically and appends one row (see :mod:`sanet_bench.results`).
After the grid, the set pass (:func:`set_pass`) scores the set-level metrics once per (method, size, alpha,
style_size) group whose cells are all done, from the saved PNGs, and appends one ``"kind": "set"`` row each.

Resume: rerunning the same config on the same folder skips the cells whose latest row is ``ok``; failed cells
are retried. A folder holding a run with another config is an error unless ``overwrite``. The identity of a
config is :func:`run_hash`: :func:`sanet_bench.config.config_hash` of the config without ``out``, ``report``
and ``profile``, which do not change any row. A kill (Ctrl-C or SIGKILL) loses at most the cell in flight.

A failing cell — unreadable image, out of memory, NaN output, missing weights, or a method that cannot be
loaded — becomes a ``failed`` row with a one-line error and the run goes on (tracebacks of unexpected
exceptions go to ``errors.log``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from . import results
from .api import list_methods, load_method, resolve_device
from .config import RESIZE_POLICIES, RunConfig, config_hash, to_dict
from .errors import ConfigError, SanetBenchError
from .images import load_image, save_image
from .io import JsonlStore
from .method import check_fast_path, prepare
from .metrics import Metric, build, encoder_id, evaluate, missing_components
from .provenance import environment
from .registry import get_method_spec, get_metric_spec, metric_specs
from .results import REF_CONTENT, REFERENCES

OOM_HINT = "lower --sizes, use --device cpu or free device memory"


@dataclass(frozen=True)
class Cell:
    method: str
    content: Any  # GridImage
    style: Any  # GridImage
    size: int
    style_size: int
    alpha: float

    @property
    def key(self) -> str:
        return results.cell_key(self.method, self.content.name, self.style.name, self.size, self.alpha)


@dataclass
class RunSummary:
    run_dir: Path
    cells: int  # in the grid
    skipped: int  # already done before this call
    ok: int  # finished ok in this call
    failed: int  # failed in this call
    table: Any  # pandas.DataFrame of the whole run (results.load)

    @property
    def any_failed(self) -> bool:
        return bool((self.table["status"] == "failed").any()) if len(self.table) else False


class Reference:
    """A reference row's "method": the content itself, or the style resized to the content's size, scored as
    if it were an output. It bounds each metric: a stylization should be closer to the style than the
    content is, and closer to the content than the style is."""

    weights_info = {"source": "reference"}

    def __init__(self, name: str, device: torch.device):
        self.name, self.device = name, device

    def stylize(self, content: torch.Tensor, style: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        if self.name == REF_CONTENT:
            return content.to(self.device)
        return torch.nn.functional.interpolate(
            style, size=content.shape[-2:], mode="bicubic", antialias=True, align_corners=False
        ).to(self.device)




def run_hash(cfg: RunConfig) -> str:
    return config_hash(dataclasses.replace(cfg, out="", report=False, profile=False))


def cell_seed(run_seed: int, key: str) -> int:
    return int(hashlib.sha256(f"{run_seed}|{key}".encode()).hexdigest()[:8], 16)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def output_path(cell: Cell) -> Path:
    """Relative path of a cell's PNG inside the run folder."""
    return Path("images") / cell.method / str(cell.size) / (
        f"{_safe(cell.content.name)}__{_safe(cell.style.name)}__a{cell.alpha:g}.png"
    )


# ------------------------------------------------------------------------------------------------ checks
def validate(cfg: RunConfig) -> tuple[list[str], list[str]]:
    """Canonical method and metric names; any problem with ``cfg`` is a :class:`ConfigError`."""
    resolve_device(cfg.device)
    check_fast_path(cfg.dtype, cfg.device)
    methods = list(dict.fromkeys(get_method_spec(m).name for m in cfg.methods)) or list_methods()
    metrics = list(dict.fromkeys(get_metric_spec(m).name for m in cfg.metrics)) or sorted(metric_specs())
    if not cfg.sizes or any(s <= 0 for s in cfg.sizes):
        raise ConfigError(f"sizes must be positive integers, got {cfg.sizes}; e.g. --sizes 256,512")
    if cfg.max_pairs < 0:
        raise ConfigError(f"max_pairs must be >= 0 (0: every pair), got {cfg.max_pairs}")
    if cfg.profile_repeats < 1:
        raise ConfigError(f"profile_repeats must be >= 1, got {cfg.profile_repeats}")
    if cfg.style_size is not None and cfg.style_size <= 0:
        raise ConfigError(f"style_size must be positive, got {cfg.style_size}")
    bad = [a for a in cfg.alphas if not 0.0 <= a <= 1.0]
    if bad:
        raise ConfigError(f"alphas must be in [0, 1], got {bad}; e.g. --alpha 0.5,1")
    if cfg.resize not in RESIZE_POLICIES:
        raise ConfigError(f"unknown resize policy {cfg.resize!r}; choose one of {', '.join(RESIZE_POLICIES)}")
    for name, opts in cfg.method_options.items():
        spec = get_method_spec(name)
        unknown = sorted(set(opts) - {o.name for o in spec.options})
        if unknown:
            known = ", ".join(o.name for o in spec.options) or "none"
            raise ConfigError(f"method_options.{name}: no option {', '.join(unknown)}; supported: {known}")
    kinds = {k for m in methods for k in get_method_spec(m).weights_kinds}
    if cfg.weights not in kinds:
        raise ConfigError(f"unknown weights {cfg.weights!r}; choose one of {', '.join(sorted(kinds))}")
    return methods, metrics


def plan(cfg: RunConfig, methods: list[str], grid: Any) -> list[Cell]:
    """Cells method-major, then size, alpha and the grid's pairs (content-major)."""
    pairs = grid.pairs(cfg.max_pairs or None)  # 0: every pair
    cells = []
    for m in methods + (list(REFERENCES) if cfg.references else []):
        alphas = [1.0] if m in REFERENCES else cfg.alphas or [get_method_spec(m).default_alpha]
        for size in cfg.sizes:
            for alpha in alphas:
                for c, s in pairs:
                    cells.append(Cell(m, c, s, int(size), int(cfg.style_size or size), float(alpha)))
    return cells


def _prepare_dir(run_dir: Path, h: str, overwrite: bool) -> None:
    for tmp in [*run_dir.glob(".*.tmp"), *run_dir.glob("images/**/.*.tmp")]:  # left by a kill mid-write
        tmp.unlink()
    manifest = results.read_manifest(run_dir)
    rows = results.read_rows(run_dir) if manifest is None else []
    other = (manifest is not None and manifest.get("config_hash") != h) or any(
        r.get("config_hash") != h for r in rows
    )
    if other and not overwrite:
        raise results.ResultsError(
            f"{run_dir}: holds a run with a different config; pass --overwrite to replace it or --out NEW_DIR"
        )
    if other or (overwrite and (manifest is not None or rows)):
        for name in (results.RESULTS, results.CSV, results.MANIFEST, "errors.log"):
            (run_dir / name).unlink(missing_ok=True)
        images = run_dir / "images"
        if images.is_dir():
            for p in sorted(images.rglob("*.png"), reverse=True):
                p.unlink()


# ------------------------------------------------------------------------------------------------ cells
def _one_line(e: BaseException) -> str:
    if isinstance(e, SanetBenchError):
        return str(e)
    msg = " ".join(str(e).split())[:300]
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def _is_oom(e: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", ())
    return isinstance(e, oom) or (isinstance(e, RuntimeError) and "out of memory" in str(e).lower())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _weights_id(info: dict[str, Any]) -> str:
    if info.get("files"):
        return ";".join(f"{n}={sha}" for n, sha in sorted(info["files"].items()))
    if info.get("source") == "random":
        return f"random(seed={info.get('seed')})"
    return str(info.get("source"))


class _ImageCache:
    """Grid images decoded once per (role, name, size) for the whole run (grids are small)."""

    def __init__(self, policy: str):
        self.policy = policy
        self.cache: dict[tuple[str, str, int], torch.Tensor] = {}

    def get(self, img: Any, size: int) -> torch.Tensor:
        k = (img.role, img.name, size)
        if k not in self.cache:
            self.cache[k] = img.load(size, self.policy)
        return self.cache[k]


def _base_row(cell: Cell, cfg: RunConfig, h: str, device: torch.device) -> dict[str, Any]:
    return {
        "key": cell.key, "method": cell.method, "content": cell.content.name, "style": cell.style.name,
        "size": cell.size, "style_size": cell.style_size, "alpha": cell.alpha, "device": str(device),
        "seed": cell_seed(cfg.seed, cell.key), "config_hash": h, "weights": cfg.weights,
        "dtype": cfg.dtype, "channels_last": cfg.channels_last, "compile": cfg.compile,
    }


def _failed(row: dict[str, Any], error: str, metrics: list[str]) -> dict[str, Any]:
    row.update(status="failed", error=error, metrics={m: None for m in metrics}, missing={})
    return row


def run_cell(
    cell: Cell, model: Any, cfg: RunConfig, metrics: list[Metric], images: _ImageCache,
    run_dir: Path, row: dict[str, Any],
) -> dict[str, Any]:
    """Stylize, score (``update`` of each per-image metric) and save one cell; returns the row (status ok)."""
    t0 = time.perf_counter()
    torch.manual_seed(row["seed"])
    content = images.get(cell.content, cell.size)
    style = images.get(cell.style, cell.style_size)
    device = model.device
    _sync(device)
    t1 = time.perf_counter()
    out = model.stylize(content, style, alpha=cell.alpha, **method_options(cfg, cell.method))
    _sync(device)
    seconds = time.perf_counter() - t1
    if not torch.isfinite(out).all():
        raise FloatingPointError(f"{cell.method} output has NaN/Inf at {cell.size} px; check the weights")
    out = out.detach()
    values, missing = evaluate(out, content, style, metrics)
    rel = output_path(cell)
    save_image(out.cpu(), run_dir / rel)
    row.update(
        status="ok", error=None, metrics=values, missing=missing, seconds=seconds,
        seconds_total=time.perf_counter() - t0, height=int(out.shape[-2]), width=int(out.shape[-1]),
        output=str(rel),
    )
    return row


# ------------------------------------------------------------------------------------------------ run
def run(
    cfg: RunConfig,
    *,
    overwrite: bool = False,
    grid: Any = None,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
) -> RunSummary:
    """Run the grid of ``cfg`` into ``cfg.out`` (resuming there); see the module doc."""
    say = echo or (lambda s: None)
    methods, metrics = validate(cfg)
    if grid is None:
        from .grids import get_grid

        grid = get_grid(cfg.grid)
    cells = plan(cfg, methods, grid)
    if not cells:
        raise ConfigError(f"grid {cfg.grid!r} gives no (content, style) pairs; check the grid and max_pairs")
    device = resolve_device(cfg.device)
    scorers = build(metrics, weights_dir=cfg.weights_dir, device=device)  # extractors load on first use...
    missing_nets = missing_components(scorers)  # ...which is now, so a wrong weight file stops the run here
    enc_id = encoder_id(scorers)
    per_image = [m for m in scorers if m.per_image]
    cell_metrics = [m.name for m in per_image]
    h = run_hash(cfg)
    run_dir = Path(cfg.out).expanduser()
    run_dir.mkdir(parents=True, exist_ok=True)
    _prepare_dir(run_dir, h, overwrite)

    done = {r["key"] for r in results.latest(results.read_rows(run_dir)) if r.get("status") == "ok"}
    manifest = results.read_manifest(run_dir) or {
        "created": _now(), "config": to_dict(cfg), "config_hash": h, "weights": {}, "sessions": [],
    }
    manifest.update(
        config=to_dict(cfg), config_hash=h, environment=environment(device), grid=_grid_info(grid),
        metrics={m: _metric_info(m) for m in metrics}, encoder=enc_id, missing_networks=missing_nets,
        cells=len(cells), methods=methods,
        method_options={m: method_options(cfg, m) for m in methods},
    )
    manifest["sessions"].append({"started": _now(), "skipped": sum(c.key in done for c in cells)})
    results.write_manifest(run_dir, manifest)
    if missing_nets:
        for need, reason in missing_nets.items():
            say(f"warning: metrics needing {need} are missing: {reason}")
    if "offline" in enc_id:
        say(f"warning: VGG metrics use {enc_id}")
    if cfg.weights == "random":
        say("warning: weights=random — outputs and metrics measure nothing about quality (latency work only)")

    todo = [c for c in cells if c.key not in done]
    ok = failed = 0
    interrupted = True
    images = _ImageCache(cfg.resize)
    bar = tqdm(total=len(cells), initial=len(cells) - len(todo), unit="cell", disable=not progress)
    try:
        with results.store(run_dir) as writer:
            for method in dict.fromkeys(c.method for c in cells):
                mine = [c for c in todo if c.method == method]
                if not mine:
                    continue
                model, load_error = _load(method, cfg, device)
                manifest["weights"][method] = (
                    model.weights_info if model is not None else {"source": cfg.weights, "error": load_error}
                )
                results.write_manifest(run_dir, manifest)
                for cell in mine:
                    bar.set_postfix_str(f"{cell.method} {cell.size}px", refresh=False)
                    row = _base_row(cell, cfg, h, device)
                    info = manifest["weights"][method]
                    row.update(
                        encoder=enc_id, weights=info.get("source"), weights_id=_weights_id(info)
                    )
                    if model is None:
                        row = _failed(row, load_error or "method not loaded", cell_metrics)
                    else:
                        try:
                            row = run_cell(cell, model, cfg, per_image, images, run_dir, row)
                        except Exception as e:  # a failing cell is a row; the grid goes on
                            row = _failed(row, _cell_error(e, cell, device, run_dir), cell_metrics)
                    row["finished"] = _now()
                    writer.append(row)
                    ok += row["status"] == "ok"
                    failed += row["status"] == "failed"
                    bar.update(1)
                del model
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            sets = [m for m in scorers if not m.per_image]
            if sets:
                set_pass(cells, sets, cfg, h, device, images, run_dir, writer, manifest, enc_id)
        interrupted = False
    finally:
        bar.close()
        results.write_csv(run_dir)
        manifest["sessions"][-1].update(finished=_now(), ok=ok, failed=failed, interrupted=interrupted)
        results.write_manifest(run_dir, manifest)
    return RunSummary(run_dir, len(cells), len(cells) - len(todo), ok, failed, results.load(run_dir))


def method_options(cfg: RunConfig, method: str) -> dict[str, Any]:
    """The options ``method`` runs with: its ``cfg.budget`` budget, overridden by ``cfg.method_options``."""
    if method in REFERENCES:
        return {}
    return get_method_spec(method).options_for(cfg.budget, cfg.method_options.get(method))


def set_key(method: str, size: int, alpha: float, style_size: int) -> str:
    return f"set|{method}|{int(size)}|{float(alpha):g}|{int(style_size)}"


def set_pass(
    cells: list[Cell], metrics: list[Metric], cfg: RunConfig, h: str, device: torch.device,
    images: _ImageCache, run_dir: Path, writer: JsonlStore, manifest: dict[str, Any], enc_id: str,
) -> int:
    """Score the set-level ``metrics`` once per (method, size, alpha, style_size) group whose cells are all
    ``ok`` and that has no ``ok`` set row yet; append one ``"kind": "set"`` row per group; returns how many.

    Each metric is ``reset``, ``update``d with every cell's saved PNG (exactly the 8-bit image the per-image
    metrics saw) and the grid's content and style images, then ``compute``d. A metric that is missing or
    raises is recorded in the row's ``missing`` with the reason; unreadable PNGs make the row ``failed``.
    A rerun retries failed set rows and never duplicates ok ones (the latest row of a key wins).
    """
    rows = results.latest(results.read_rows(run_dir))
    ok_cells = {r["key"]: r for r in rows if r.get("kind") != "set" and r.get("status") == "ok"}
    done = {r["key"] for r in rows if r.get("kind") == "set" and r.get("status") == "ok"}
    groups: dict[str, list[Cell]] = {}
    for c in cells:
        groups.setdefault(set_key(c.method, c.size, c.alpha, c.style_size), []).append(c)
    written = 0
    for key, group in groups.items():
        if key in done or any(c.key not in ok_cells for c in group):
            continue
        c0 = group[0]
        info = manifest["weights"].get(c0.method, {})
        row: dict[str, Any] = {
            "key": key, "kind": "set", "method": c0.method, "content": None, "style": None, "size": c0.size,
            "style_size": c0.style_size, "alpha": c0.alpha, "cells": len(group), "device": str(device),
            "config_hash": h, "weights": info.get("source", cfg.weights), "weights_id": _weights_id(info),
            "encoder": enc_id,
        }
        t0 = time.perf_counter()
        values: dict[str, float | None] = {m.name: None for m in metrics}
        missing: dict[str, str] = {}
        live = []
        for m in metrics:
            m.reset()
            reason = m.missing()
            if reason:
                missing[m.name] = reason
            else:
                live.append(m)
        try:
            for c in group:
                out = load_image(run_dir / ok_cells[c.key]["output"]).to(device)
                content = images.get(c.content, c.size).to(device)
                style = images.get(c.style, c.style_size).to(device)
                for m in list(live):
                    try:
                        m.update(out, content, style)
                    except Exception as e:  # a failing metric is a reason in the row, not a crash
                        missing[m.name] = _one_line(e)
                        live.remove(m)
            for m in live:
                try:
                    values[m.name] = float(m.compute())
                except Exception as e:
                    missing[m.name] = _one_line(e)
            row.update(status="ok", error=None)
        except SanetBenchError as e:  # an output PNG that cannot be read back
            row.update(status="failed", error=_one_line(e))
            values = {m.name: None for m in metrics}
        finally:
            for m in metrics:
                m.reset()  # drop the accumulated images and features
        row.update(metrics=values, missing=missing, seconds_total=time.perf_counter() - t0, finished=_now())
        writer.append(row)
        written += 1
    return written


def _load(method: str, cfg: RunConfig, device: torch.device) -> tuple[Any, str | None]:
    if method in REFERENCES:
        return Reference(method, device), None
    try:
        weights = get_method_spec(method).weights_kind(cfg.weights)
        kw = {"weights": weights, "weights_dir": cfg.weights_dir, "seed": cfg.seed, "device": device}
        return prepare(load_method(method, **kw), cfg.dtype, cfg.channels_last, cfg.compile), None
    except SanetBenchError as e:
        return None, str(e)
    except Exception as e:
        if _is_oom(e):
            return None, f"{method}: out of memory loading the model on {device}; {OOM_HINT}"
        raise


def _cell_error(e: Exception, cell: Cell, device: torch.device, run_dir: Path) -> str:
    if _is_oom(e):
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return f"out of memory at {cell.size} px on {device}; {OOM_HINT}"
    if isinstance(e, (SanetBenchError, FloatingPointError)):
        return _one_line(e)
    with open(run_dir / "errors.log", "a") as f:  # an unexpected exception: keep the traceback for a report
        f.write(f"--- {_now()} {cell.key}\n{traceback.format_exc()}\n")
    return f"{_one_line(e)} (unexpected; traceback in errors.log)"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _grid_info(grid: Any) -> dict[str, Any]:
    def img(i: Any) -> dict[str, Any]:
        return {
            "name": i.name, "path": str(i.path) if i.path else None, "sha256": i.sha256,
            "provenance": i.provenance, "url": i.url,
        }

    return {
        "name": getattr(grid, "name", None),
        "contents": [img(i) for i in grid.contents],
        "styles": [img(i) for i in grid.styles],
    }


def _metric_info(name: str) -> dict[str, Any]:
    return get_metric_spec(name).info()
