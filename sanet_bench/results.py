"""Run results: the row schema, the append-only JSONL store, the CSV view, the manifest and the summary.

A run folder holds:

* ``results.jsonl`` — the source of truth: one JSON object per line, one line per finished cell attempt,
  appended with a single ``write`` + fsync, so an interrupted run never leaves a half row (a trailing
  partial line, e.g. after a crash of the disk layer, is ignored on reading and cut off before appending).
  A cell retried later (a failure rerun) appends a new line; the latest line of a cell wins.
  Set-level metrics add one row per (method, size, alpha, style_size) group, marked ``"kind": "set"`` (key
  ``set|method|size|alpha|style_size``); :func:`load` leaves them out, :func:`load_sets` reads them.
* ``results.csv`` — the per-cell table, flattened, regenerated atomically from the JSONL after every run.
* ``manifest.json`` — the config and its hash, environment (versions, device, commit), grid images,
  metric contracts, the metric encoder and each method's weights identity.
* ``images/<method>/<size>/<content>__<style>__a<alpha>.png`` — the outputs (written atomically).

Columns of :func:`load` (one row per cell, README-ready):

============== ===========================================================================================
key            ``method|content|style|size|alpha`` — the cell's identity
method         registered method name
content, style grid image names
size           content size in px (by the run's resize policy); ``style_size`` the style's
alpha          content-style trade-off used (the method's default when the config lists none)
status         ``ok`` or ``failed``
error          one-line reason of a failure (unreadable image, out of memory, NaN output, missing weights)
<metric>       one column per metric (``content_loss``, ``content_loss_raw``, ``style_loss``,
               ``style_loss_gram``, ``lpips``, ``ssim``); NaN when failed or missing
missing        ``metric: reason; ...`` for metrics that could not be computed (e.g. LPIPS without AlexNet)
seconds        stylize wall time of the cell (device synchronised), excluding image IO and metrics
seconds_total  the whole cell: image loading, stylize, metrics, saving
height, width  output size in px
input_policy   the method's input policy as applied (``InputPolicy.describe()``, e.g. ``centre-cropped square,
               sides a multiple of 8``; ``any size``: the grid's images went in unchanged)
content_input  ``WxH`` of the content that went into the method, after its input policy; ``style_input`` the
               style's
output         output PNG path relative to the run folder
weights        ``official`` or ``random``
weights_id     official: ``file=sha256;...``; random: ``random(seed=N)`` — never quality numbers
encoder        what computed the VGG metrics: ``official vgg_normalised.pth sha256=...`` or the offline
               encoder's loud id (values then NOT comparable with papers)
device         torch device of the cell
seed           the cell's torch seed (from the run seed and the key)
config_hash    identity of the run config that produced the row
finished       UTC time the row was written
============== ===========================================================================================
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import SanetBenchError
from .io import JsonlStore, atomic_write_bytes, format_table, json_safe

RESULTS = "results.jsonl"
CSV = "results.csv"
MANIFEST = "manifest.json"
KEY_COLUMNS = ("method", "content", "style", "size", "alpha")
FRONT = ("key", *KEY_COLUMNS, "style_size", "status", "error")
BACK = (
    "missing", "seconds", "seconds_total", "height", "width", "input_policy", "content_input", "style_input",
    "output", "weights", "weights_id", "encoder",
    "device", "seed", "config_hash", "finished",
)

# Reference rows: the content and the (resized) style scored as if they were outputs, to bound each metric.
REF_CONTENT, REF_STYLE = "ref:content", "ref:style"
REFERENCES = (REF_CONTENT, REF_STYLE)


class ResultsError(SanetBenchError):
    """A results folder is unusable: corrupt JSONL, or it holds a run with another config."""


def cell_key(method: str, content: str, style: str, size: int, alpha: float) -> str:
    return f"{method}|{content}|{style}|{int(size)}|{float(alpha):g}"


def _path(run_dir: str | os.PathLike, name: str) -> Path:
    p = Path(run_dir)
    return p if p.name == name else p / name


def store(run_dir: str | os.PathLike) -> JsonlStore:
    """The run's ``results.jsonl`` (``run_dir`` or the file itself)."""
    return JsonlStore(_path(run_dir, RESULTS), ResultsError)


def read_rows(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every complete row of ``results.jsonl`` in file order (a trailing partial line is ignored)."""
    return store(run_dir).read()


def repair(run_dir: str | os.PathLike) -> int:
    """Cut a trailing partial line off ``results.jsonl`` before appending; returns the bytes removed."""
    return store(run_dir).repair()


def latest(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last row of each cell, in the order cells first appeared."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        out[r["key"]] = r  # a dict keeps a key's first position when its value is replaced
    return list(out.values())


def to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Flatten rows (metrics to columns, ``missing`` to ``metric: reason; ...``) in the documented order."""
    metric_names: list[str] = []
    flat = []
    for r in rows:
        d = {k: v for k, v in r.items() if k not in ("metrics", "missing")}
        for name, value in (r.get("metrics") or {}).items():
            if name not in metric_names:
                metric_names.append(name)
            d[name] = value
        d["missing"] = "; ".join(f"{k}: {v}" for k, v in sorted((r.get("missing") or {}).items())) or None
        flat.append(d)
    cols = [*FRONT, *sorted(metric_names), *BACK]
    df = pd.DataFrame(flat)
    for c in cols:
        if c not in df.columns:
            df[c] = None
    extra = [c for c in df.columns if c not in cols]
    df = df[cols + extra]
    for c in metric_names:
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    return df


def load(run_dir: str | os.PathLike) -> pd.DataFrame:
    """The run's table: one row per cell (its latest attempt), columns as documented in the module doc."""
    return to_frame([r for r in latest(read_rows(run_dir)) if r.get("kind") != "set"])


def load_sets(run_dir: str | os.PathLike) -> pd.DataFrame:
    """The set-level rows (latest per group): method, size, alpha, style_size, cells, status, one column per
    set-level metric, missing; ``<metric>_lo`` / ``<metric>_hi``: its confidence interval at ``CI_LEVEL``
    (the metric's own resampling of the set; NaN where it has none, the reason in ``no_interval``)."""
    rows = [r for r in latest(read_rows(run_dir)) if r.get("kind") == "set"]
    df = to_frame([{k: v for k, v in r.items() if k not in ("intervals", "no_interval")} for r in rows])
    for m in sorted({m for r in rows for m in r.get("metrics") or {}}):
        for i, end in enumerate(("lo", "hi")):
            df[f"{m}_{end}"] = [float((r.get("intervals") or {}).get(m, [np.nan] * 2)[i]) for r in rows]
    df["no_interval"] = [
        "; ".join(f"{k}: {v}" for k, v in sorted((r.get("no_interval") or {}).items())) or None for r in rows
    ]
    return df


def write_csv(run_dir: str | os.PathLike) -> Path:
    """Regenerate ``results.csv`` from the JSONL, atomically."""
    buf = io.StringIO()
    load(run_dir).to_csv(buf, index=False)
    path = Path(run_dir) / CSV
    atomic_write_bytes(path, buf.getvalue().encode())
    return path


def metric_columns(df: pd.DataFrame) -> list[str]:
    known = set(FRONT) | set(BACK)
    return [c for c in df.columns if c not in known and pd.api.types.is_float_dtype(df[c])]


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Method x metric: mean and std over the method's successful cells, plus ok / failed counts."""
    ok = df[df["status"] == "ok"]
    metrics = metric_columns(df)
    stats = ok.groupby("method")[metrics].agg(["mean", "std"]) if metrics else pd.DataFrame()
    counts = df.groupby("method")["status"].value_counts().unstack(fill_value=0)
    for s in ("ok", "failed"):
        if s not in counts:
            counts[s] = 0
    counts.columns = pd.MultiIndex.from_tuples([("cells", c) for c in counts.columns])
    return counts[[("cells", "ok"), ("cells", "failed")]].join(stats, how="left")


def format_summary(df: pd.DataFrame) -> str:
    """The summary as a plain-text table: ``mean ± std`` per metric (``-`` where nothing was computed)."""
    if df.empty:
        return "no results"
    s = summary(df)
    metrics = metric_columns(df)
    header = ["method", "ok", "failed", *metrics]
    lines = []
    for method, row in s.iterrows():
        cells = [str(method), str(int(row[("cells", "ok")])), str(int(row[("cells", "failed")]))]
        for m in metrics:
            mean, std = row.get((m, "mean")), row.get((m, "std"))
            if mean is None or pd.isna(mean):
                cells.append("-")
            else:
                cells.append(f"{mean:.4g} ± {0.0 if pd.isna(std) else std:.2g}")
        lines.append(cells)
    return format_table(header, lines, left=range(len(header)))


def count_line(df: pd.DataFrame) -> str:
    """How many cells a run has, the same way everywhere (terminal and report): method cells ok and failed,
    then the reference cells, e.g. ``24 method cells ok, 8 failed; 8 reference cells``. Set rows are not
    cells (:func:`load` leaves them out)."""
    if "kind" in df:
        df = df[df["kind"] != "set"]
    is_ref = df["method"].isin(REFERENCES) if len(df) else pd.Series(dtype=bool)
    cells, refs = df[~is_ref], df[is_ref]
    ok = int((cells["status"] == "ok").sum()) if len(cells) else 0
    line = f"{ok} method cells ok, {len(cells) - ok} failed"
    return line + (f"; {len(refs)} reference cells" if len(refs) else "")


def could_not_run(df: pd.DataFrame, manifest: dict[str, Any] | None) -> dict[str, str]:
    """``{method: one-line reason with its fix}`` for each method (not a reference) without a single ok cell:
    the method's load error from the manifest (e.g. its weight files are missing: ``sanet-bench weights pull
    NAME``), else the most common error of its cells."""
    weights = (manifest or {}).get("weights", {})
    out: dict[str, str] = {}
    for method, g in df[~df["method"].isin(REFERENCES)].groupby("method", sort=False):
        if (g["status"] == "ok").any():
            continue
        errors = g["error"].dropna()
        reason = (weights.get(method) or {}).get("error") or (
            errors.mode().iloc[0] if len(errors) else "no cell finished"
        )
        out[str(method)] = str(reason)
    return out


def read_manifest(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise ResultsError(f"{path}: not valid JSON; delete it or rerun with --overwrite") from None


def write_manifest(run_dir: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    path = Path(run_dir) / MANIFEST
    atomic_write_bytes(path, (json.dumps(json_safe(manifest), indent=2, sort_keys=True) + "\n").encode())
    return path


CI_LEVEL, N_BOOT = 0.95, 2000


def bootstrap_interval(values: np.ndarray, rng: np.random.Generator, n_boot: int = N_BOOT,
                       level: float = CI_LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``: ``n_boot`` resamples with replacement drawn
    from ``rng`` (seed it: reports are reproducible)."""
    means = values[rng.integers(0, len(values), (n_boot, len(values)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def confidence(df: pd.DataFrame, metrics: list[str] | None = None, *, n_boot: int = N_BOOT,
               level: float = CI_LEVEL, seed: int = 0) -> pd.DataFrame:
    """Per method and metric: ``mean``, percentile bootstrap interval ``lo``..``hi`` (``level``, ``n_boot``
    resamples of the method's ok cells with replacement, generator seeded with ``seed``: reports are
    reproducible) and ``n`` cells. A single cell gives ``lo == hi == mean``."""
    ok = df[df["status"] == "ok"]
    rng = np.random.default_rng(seed)
    out = []
    for method, g in ok.groupby("method", sort=False):
        for m in metrics or metric_columns(df):
            v = g[m].dropna().to_numpy(float) if m in g else np.array([])
            if not len(v):
                continue
            lo, hi = bootstrap_interval(v, rng, n_boot, level)
            out.append({"method": method, "metric": m, "mean": v.mean(), "lo": lo, "hi": hi, "n": len(v)})
    return pd.DataFrame(out, columns=["method", "metric", "mean", "lo", "hi", "n"])


def paired_tests(df: pd.DataFrame, metrics: list[str] | None = None, alpha: float = 0.05,
                 on: tuple[str, ...] = ("content", "style", "size", "alpha")) -> pd.DataFrame:
    """Every pair of methods on every metric, over the cells (the columns ``on``) both scored:
    Wilcoxon signed-rank p-value (scipy, two-sided), Holm-corrected over the method pairs of that metric
    (``p_holm``), ``significant`` when ``p_holm < alpha``; ``mean_diff`` is a - b. Pair on
    ``("content", "style", "size")`` when each method ran at its own alpha (the report's variants)."""
    from itertools import combinations

    from scipy.stats import wilcoxon

    ok = df[df["status"] == "ok"]
    cell = list(on)
    rows = []
    for m in metrics or metric_columns(df):
        wide = ok.pivot_table(index=cell, columns="method", values=m, aggfunc="first")
        family = []
        for a, b in combinations([x for x in dict.fromkeys(ok["method"]) if x in wide], 2):
            pair = wide[[a, b]].dropna()
            d = (pair[a] - pair[b]).to_numpy(float)
            p = float(wilcoxon(d).pvalue) if len(d) and np.any(d != 0) else 1.0
            family.append({"metric": m, "method_a": a, "method_b": b, "n": len(d),
                           "mean_diff": float(d.mean()) if len(d) else np.nan, "p": p})
        order = sorted(range(len(family)), key=lambda i: family[i]["p"])
        running = 0.0
        for rank, i in enumerate(order):  # Holm step-down, made monotone
            running = max(running, min(1.0, (len(family) - rank) * family[i]["p"]))
            family[i]["p_holm"] = running
            family[i]["significant"] = running < alpha
        rows += family
    cols = ["metric", "method_a", "method_b", "n", "mean_diff", "p", "p_holm", "significant"]
    return pd.DataFrame(rows, columns=cols)
