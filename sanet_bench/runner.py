"""The grid run: every (method, content, style, size, alpha) cell stylized, scored and recorded.

``run(cfg)`` checks the whole config before the first cell (a user error then stops with nothing written),
loads each method once, and for each cell: seeds torch from the cell key, loads the two images (content at
``size``, style at ``cfg.style_size`` or ``size``, both by ``cfg.resize``), adapts them to the method's
input policy (:func:`prepare_inputs`; the row records the policy and the sizes that went in), stylizes,
computes the metrics on the saved 8-bit output, writes the PNG atomically and appends one row (see
:mod:`sanet_bench.results`).
After the grid, the set pass (:func:`set_pass`) scores the set-level metrics once per (method, size, alpha,
style_size) group whose cells are all done, from the saved PNGs, and appends one ``"kind": "set"`` row each.

One process at a time: a run holds an exclusive lock on ``<run folder>/run.lock`` (``fcntl.flock``, released
when the process ends, even by SIGKILL); a second run on the same folder stops with the holder's pid.

Resume: rerunning the same config on the same folder skips the cells whose latest row is ``ok``; failed cells
are retried. A folder holding a run with another config is an error unless ``overwrite``. The identity of a
config is :func:`run_hash`: :func:`sanet_bench.config.config_hash` of the config without ``out``, ``report``
and ``profile``, which do not change any row. A kill (Ctrl-C or SIGKILL) loses at most the cell in flight.

A failing cell — unreadable image, out of memory, NaN output, missing weights, or a method that cannot be
loaded — becomes a ``failed`` row with a one-line error and the run goes on (tracebacks of unexpected
exceptions go to ``errors.log``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs on one folder are then not serialised
    fcntl = None  # type: ignore[assignment]

from . import results
from .api import list_methods, load_method, resolve_device
from .backends import WorkerLost, get_backend
from .config import RESIZE_POLICIES, RunConfig, to_dict
from .errors import ConfigError, SanetBenchError, is_out_of_memory, shorten
from .images import load_image, probe, require_min_side, save_image
from .io import JsonlStore, atomic_write_bytes
from .method import check_fast_path, prepare
from .metrics import Metric, build, encoder_id, evaluate, missing_components
from .nn.precision import cuda_tf32
from .provenance import environment
from .registry import InputPolicy, get_method_spec, get_metric_spec, metric_specs
from .results import REF_CONTENT, REFERENCES

OOM_HINT = "lower --sizes, use --device cpu or free device memory"
LOCK = "run.lock"


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

    def failed_beyond(self, methods: set[str]) -> bool:
        """Whether a cell failed whose method is not one of ``methods`` (e.g. those that could not load)."""
        if not len(self.table):
            return False
        return bool(((self.table["status"] == "failed") & ~self.table["method"].isin(methods)).any())


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




# where and how the cells run changes no row: a run resumes on another backend
NOT_HASHED = ("backend", "address", "workers")


def run_hash(cfg: RunConfig) -> str:
    d = {k: v for k, v in to_dict(cfg).items() if k not in NOT_HASHED}
    d.update(out="", report=False, profile=False)
    return hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def cell_seed(run_seed: int, key: str) -> int:
    return int(hashlib.sha256(f"{run_seed}|{key}".encode()).hexdigest()[:8], 16)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def disk_name(method: str) -> str:
    """A method's folder name on disk: ``ref:content`` -> ``ref-content`` (a colon is invalid on Windows)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", method)


def output_path(cell: Cell) -> Path:
    """Relative path of a cell's PNG inside the run folder."""
    return Path("images") / disk_name(cell.method) / str(cell.size) / (
        f"{_safe(cell.content.name)}__{_safe(cell.style.name)}__a{cell.alpha:g}.png"
    )


# ------------------------------------------------------------------------------------------------ checks
def validate(cfg: RunConfig) -> tuple[list[str], list[str]]:
    """Canonical method and metric names; any problem with ``cfg`` is a :class:`ConfigError`."""
    resolve_device(cfg.device)
    check_fast_path(cfg.dtype, cfg.device, cfg.winograd, cfg.compile)
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
    for m in methods:
        least = get_method_spec(m).min_size
        if min(cfg.sizes) < least:
            raise ConfigError(f"size {min(cfg.sizes)} is under {m}'s minimum of {least} px; e.g. --sizes 256")
    if cfg.style_size is not None and cfg.style_size < 16:
        raise ConfigError(f"style_size {cfg.style_size} is under the 16 px every method needs")
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
    msg = shorten(str(e))
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


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


def input_policy(method: str) -> InputPolicy:
    """``method``'s declared input policy; the reference rows take any size."""
    return InputPolicy() if method in REFERENCES else get_method_spec(method).input_policy


def _centre_crop(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    return x[..., top : top + h, left : left + w]


def prepare_inputs(
    policy: InputPolicy, content: torch.Tensor, style: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``content`` and ``style`` adapted to ``policy``, in this order: centre-crop each to a square
    (``square``), centre-crop each side down to a multiple of ``multiple``, resize the style to the content's
    size (``style_like_content``, antialiased bicubic). Images that already fit are returned unchanged."""
    out = []
    for x in (content, style):
        h, w = x.shape[-2:]
        if policy.square:
            h = w = min(h, w)
        m = max(1, policy.multiple)
        h, w = (h // m * m or h), (w // m * m or w)  # under one multiple: left for the method to refuse
        out.append(_centre_crop(x, h, w) if (h, w) != tuple(x.shape[-2:]) else x)
    content, style = out
    if policy.style_like_content and style.shape[-2:] != content.shape[-2:]:
        style = torch.nn.functional.interpolate(
            style, size=tuple(content.shape[-2:]), mode="bicubic", antialias=True, align_corners=False
        ).clamp(0, 1)
    return content, style


def _wxh(x: torch.Tensor) -> str:
    return f"{int(x.shape[-1])}x{int(x.shape[-2])}"


def _base_row(cell: Cell, cfg: RunConfig, h: str, device: torch.device) -> dict[str, Any]:
    return {
        "key": cell.key, "method": cell.method, "content": cell.content.name, "style": cell.style.name,
        "size": cell.size, "style_size": cell.style_size, "alpha": cell.alpha, "device": str(device),
        "seed": cell_seed(cfg.seed, cell.key), "config_hash": h, "weights": cfg.weights,
        "dtype": cfg.dtype, "channels_last": cfg.channels_last, "winograd": cfg.winograd,
        "compile": cfg.compile,
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
    if cell.method not in REFERENCES:  # a tiny file upscaled to the run size would be scored as a picture
        least = get_method_spec(cell.method).min_size
        for img, side in ((cell.content, least), (cell.style, 16)):
            if img.path is not None:
                require_min_side(img.path, getattr(img, "size", None) or probe(img.path), side, cell.method)
    torch.manual_seed(row["seed"])
    policy = input_policy(cell.method)
    content, style = prepare_inputs(
        policy, images.get(cell.content, cell.size), images.get(cell.style, cell.style_size)
    )
    row.update(input_policy=policy.describe(), content_input=_wxh(content), style_input=_wxh(style))
    if isinstance(getattr(model, "fast_path", None), dict):  # the fast path prepare() resolved
        row["channels_last"] = bool(model.fast_path["channels_last"])
        row["winograd"] = bool(model.fast_path["winograd"])
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


@dataclass
class CellResult:
    """What a worker sends back for one cell: the row, the weights it used, and — from a worker writing
    outside the run folder (a Ray actor) — the output PNG's bytes and the cell's errors.log text."""

    row: dict[str, Any]
    weights_info: dict[str, Any]
    png: bytes | None = None
    log: str = ""


class CellWorker:
    """Runs cells in one process: ``worker(cell[, content, style])`` -> :class:`CellResult`.

    Loads each method once (the last one stays loaded) and the per-image ``metrics`` on ``device``. With a
    ``run_dir`` it writes PNGs and errors.log there (the local backend); without one it writes them to a
    scratch folder and returns them, so only the driver writes the run folder (a Ray actor). ``content``
    and ``style``: the driver's decoded images (else the worker decodes them from the grid).
    """

    def __init__(self, cfg: RunConfig, h: str, enc_id: str, device: str, metrics: list[str],
                 run_dir: Path | None = None, scorers: list[Metric] | None = None,
                 images: _ImageCache | None = None):
        self.cfg, self.h, self.enc_id = cfg, h, enc_id
        self.device = resolve_device(device)
        if scorers is None:
            built = build(metrics, weights_dir=cfg.weights_dir, device=self.device)
            scorers = [m for m in built if m.per_image]
        self.scorers, self.cell_metrics = scorers, [m.name for m in scorers]
        self.images = images or _ImageCache(cfg.resize)
        self.remote = run_dir is None
        self.out_dir = Path(tempfile.mkdtemp(prefix="sanet-bench-cells-")) if run_dir is None else run_dir
        self.method: str | None = None
        self.model: Any = None
        self.info: dict[str, Any] = {}

    def _switch(self, method: str) -> None:
        self.model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        self.model, load_error = _load(method, self.cfg, self.device)
        self.method = method
        self.info = (self.model.weights_info if self.model is not None
                     else {"source": self.cfg.weights, "error": load_error})

    def __call__(self, cell: Cell, content: torch.Tensor | None = None,
                 style: torch.Tensor | None = None) -> CellResult:
        if content is not None:
            self.images.cache[(cell.content.role, cell.content.name, cell.size)] = content
        if style is not None:
            self.images.cache[(cell.style.role, cell.style.name, cell.style_size)] = style
        if cell.method != self.method:
            self._switch(cell.method)
        row = _base_row(cell, self.cfg, self.h, self.device)
        row.update(encoder=self.enc_id, weights=self.info.get("source"), weights_id=_weights_id(self.info))
        if self.model is None:
            row = _failed(row, self.info.get("error") or "method not loaded", self.cell_metrics)
        else:
            try:
                row = run_cell(cell, self.model, self.cfg, self.scorers, self.images, self.out_dir, row)
            except Exception as e:  # a failing cell is a row; the grid goes on
                row = _failed(row, _cell_error(e, cell, self.device, self.out_dir), self.cell_metrics)
        result = CellResult(row, self.info)
        if self.remote:
            if row.get("output"):
                png = self.out_dir / row["output"]
                result.png = png.read_bytes()
                png.unlink()
            log = self.out_dir / "errors.log"
            if log.is_file():
                result.log = log.read_text()
                log.unlink()
        return result

    def __del__(self) -> None:
        if getattr(self, "remote", False):
            shutil.rmtree(self.out_dir, ignore_errors=True)


def _lost_row(cell: Cell, cfg: RunConfig, h: str, device: torch.device, info: dict[str, Any], enc_id: str,
              error: str, metrics: list[str]) -> dict[str, Any]:
    row = _base_row(cell, cfg, h, device)
    row.update(encoder=enc_id, weights=info.get("source", cfg.weights), weights_id=_weights_id(info))
    return _failed(row, error, metrics)


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
    run_dir = Path(cfg.out).expanduser()
    with lock_run_dir(run_dir):
        return _run(cfg, methods, metrics, grid, cells, run_dir, overwrite, progress, say)


@contextlib.contextmanager
def lock_run_dir(run_dir: Path):
    """Hold the run folder's lock (``run.lock``, holding the pid) for the block; a :class:`ResultsError`
    naming the holder's pid when another process has it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    path = run_dir / LOCK
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise results.ResultsError(
                f"{run_dir}: in use by another sanet-bench run (process {holder}, lock {path}); wait for it "
                f"to finish or pass --out NEW_DIR"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            f.truncate(0)
            fcntl.flock(f, fcntl.LOCK_UN)


def _run(cfg, methods, metrics, grid, cells, run_dir, overwrite, progress, say) -> RunSummary:
    device = resolve_device(cfg.device)
    scorers = build(metrics, weights_dir=cfg.weights_dir, device=device)  # extractors load on first use...
    missing_nets = missing_components(scorers)  # ...which is now, so a wrong weight file stops the run here
    enc_id = encoder_id(scorers)
    per_image = [m for m in scorers if m.per_image]
    cell_metrics = [m.name for m in per_image]
    h = run_hash(cfg)
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
        input_policies={
            m: {"applied": input_policy(m).describe(), "note": input_policy(m).note} for m in methods
        },
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
    backend = get_backend(cfg.backend, cfg.address, workers=cfg.workers, gpus=int(device.type == "cuda"))
    if cfg.backend == "local":
        def make_worker() -> CellWorker:
            return CellWorker(cfg, h, enc_id, str(device), cell_metrics, run_dir, per_image, images)

        def args(c: Cell) -> tuple:
            return (c,)
    else:  # a remote worker: its own metrics, the driver's decoded images, PNGs sent back
        make_worker = partial(CellWorker, cfg, h, enc_id, device.type, cell_metrics)

        def args(c: Cell) -> tuple:
            return c, images.get(c.content, c.size), images.get(c.style, c.style_size)
    bar = tqdm(total=len(cells), initial=len(cells) - len(todo), unit="cell", disable=not progress)
    try:  # notices logged while the bar is up (a method's demo weights) go through tqdm.write, above it
        with logging_redirect_tqdm(), results.store(run_dir) as writer, backend:
            for cell, res in backend.map(make_worker, todo, args=args, group=lambda c: c.method,
                                         key=lambda c: c.key):
                if isinstance(res, WorkerLost):
                    info = manifest["weights"].get(cell.method, {})
                    row = _lost_row(cell, cfg, h, device, info, enc_id, str(res), cell_metrics)
                else:
                    row = res.row
                    if manifest["weights"].get(cell.method) != res.weights_info:
                        manifest["weights"][cell.method] = res.weights_info
                        results.write_manifest(run_dir, manifest)
                    if res.png is not None:
                        atomic_write_bytes(run_dir / row["output"], res.png)
                    if res.log:
                        with open(run_dir / "errors.log", "a") as f:
                            f.write(res.log)
                row["finished"] = _now()
                writer.append(row)
                ok += row["status"] == "ok"
                failed += row["status"] == "failed"
                bar.set_postfix_str(f"{cell.method} {cell.size}px", refresh=False)
                bar.update(1)
            sets = [m for m in scorers if not m.per_image]
            if sets:
                set_pass(cells, sets, cfg, h, device, images, run_dir, writer, manifest, enc_id)
        interrupted = False
    finally:
        bar.close()
        results.write_csv(run_dir)
        manifest["sessions"][-1].update(finished=_now(), ok=ok, failed=failed, interrupted=interrupted,
                                        backend=cfg.backend, retried=dict(backend.retries))
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
    metrics saw) and the grid's content and style images, then ``compute``d; its ``interval`` at
    ``results.CI_LEVEL`` goes in the row's ``intervals`` (or the reason in ``no_interval``). A metric that
    is missing or raises is recorded in the row's ``missing`` with the reason; unreadable PNGs make the row
    ``failed``. A rerun retries failed set rows and never duplicates ok ones (the latest row of a key wins).
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
        intervals: dict[str, list[float]] = {}
        no_interval: dict[str, str] = {}
        live = []
        for m in metrics:
            m.reset()
            reason = m.missing()
            if reason:
                missing[m.name] = reason
            else:
                live.append(m)
        try:
            with cuda_tf32(torch.device(device), False):  # set metrics in full float32, never TF32
                for c in group:
                    out = load_image(run_dir / ok_cells[c.key]["output"]).to(device)
                    content, style = prepare_inputs(  # what the cell's metrics compared the output with
                        input_policy(c.method), images.get(c.content, c.size),
                        images.get(c.style, c.style_size),
                    )
                    content, style = content.to(device), style.to(device)
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
                        continue
                    try:
                        intervals[m.name] = [float(v) for v in m.interval(results.CI_LEVEL)]
                    except Exception as e:  # the value stands; the row says why it has no interval
                        no_interval[m.name] = _one_line(e)
            row.update(status="ok", error=None)
        except SanetBenchError as e:  # an output PNG that cannot be read back
            row.update(status="failed", error=_one_line(e))
            values = {m.name: None for m in metrics}
        finally:
            for m in metrics:
                m.reset()  # drop the accumulated images and features
        row.update(metrics=values, missing=missing, intervals=intervals, no_interval=no_interval,
                   seconds_total=time.perf_counter() - t0, finished=_now())
        writer.append(row)
        written += 1
    return written


def _load(method: str, cfg: RunConfig, device: torch.device) -> tuple[Any, str | None]:
    if method in REFERENCES:
        return Reference(method, device), None
    try:
        weights = get_method_spec(method).weights_kind(cfg.weights)
        kw = {"weights": weights, "weights_dir": cfg.weights_dir, "seed": cfg.seed, "device": device}
        model = load_method(method, **kw)
        return prepare(model, cfg.dtype, cfg.channels_last, cfg.compile, cfg.winograd), None
    except SanetBenchError as e:
        return None, str(e)
    except Exception as e:
        if is_out_of_memory(e):
            return None, f"{method}: out of memory loading the model on {device}; {OOM_HINT}"
        raise


def _cell_error(e: Exception, cell: Cell, device: torch.device, run_dir: Path) -> str:
    if is_out_of_memory(e):
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
