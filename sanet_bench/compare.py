"""Regression comparison of two profile runs (``sanet-bench compare BASE NEW``).

Cells are matched on (method, size, device type, dtype, ``compile``, options). The memory format and the
convolution algorithm are not part of a cell: channels_last and Winograd change how the same convolutions
are computed (outputs within the parity tolerances), and a release that turns one on by default must still
be compared with the one before.
For each cell present and ``ok`` in both runs: the medians, their ratio NEW/BASE, and a one-sided
Mann-Whitney U test (scipy) of "NEW's raw repeat samples are larger than BASE's". A cell is a
**regression** when it is slower than the threshold (ratio > 1 + threshold) **and** significant (p < alpha,
default 0.05).

The test needs at least 3 repeats in each run, and an exact U test of 3 vs 3 samples cannot reach
p < 0.05 (its smallest p-value is 1/C(6,3) = 0.05): use 4 or more repeats (``profile``'s default is 5).
Cells with too few samples are reported as ``too-few-repeats`` and never fail the comparison.

Peak memory is shown beside the times (one measured call per run, so no test; on CPU an RSS delta in a fresh
process, which varies by 10-30 % between processes): the two peaks and their ratio, marked ``*`` where the
runs recorded different ``peak_mem_convention`` strings (d4d24c6's CPU measure, for one, returned no freed
heap to the kernel first and so reads lower), which the note then names.

Several runs of one side (passes of the same code, e.g. interleaved with the other side's on a noisy
machine) can be pooled: per cell, all their repeat samples together (the median and the U test over them)
and the median of their peaks. A cell that failed in any pooled run counts as failed on that side. The U
test then treats samples from different runs as independent, so a difference between runs (large on a
shared machine) reads as significant: pooling shows where a change stands over several passes; a regression
it flags is still to be confirmed by passes interleaved with the base.

A cell that ran in BASE but failed in NEW (``oom``/``error``/``skipped-after-oom``) is a regression too.
Runs from different hardware (GPU name on CUDA, CPU model on CPU) are refused unless ``cross_device``.
A run may hold several devices (a Ray profile): cells are then matched per device identity too (and named
with it); two single-device runs match on the cell alone, so ``cross_device`` compares them.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import mannwhitneyu

from .errors import ConfigError
from .io import format_table as text_table
from .profiling import device_identity, read_records, summarize

MIN_REPEATS = 3


def parse_threshold(text: str | float) -> float:
    """``"5%"`` or ``0.05`` -> 0.05."""
    raw = str(text).strip()
    try:
        value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        raise ConfigError(f"threshold {text!r} is not a number; write it as 5% or 0.05") from None
    if not raw.endswith("%") and value >= 1:
        raise ConfigError(f"threshold {text!r} is ambiguous; write a percentage (5%) or a fraction (0.05)")
    if value < 0:
        raise ConfigError(f"threshold {text!r} is negative; write it as 5% or 0.05")
    return value


def cell_key(rec: dict[str, Any], per_device: bool = False) -> tuple:
    """The cell a record measures; ``per_device``: its device identity is part of it (last element)."""
    flags = rec.get("flags") or {}
    return (
        rec["method"], int(rec["size"]), str(rec.get("device", "cpu")).split(":")[0],
        rec.get("dtype", "fp32"), bool(flags.get("compile")),
        json.dumps(rec.get("options") or {}, sort_keys=True),
        device_identity(rec.get("env") or {}) if per_device else None,
    )


def cell_name(key: tuple) -> str:
    method, size, device, dtype, compiled, options, identity = key
    flags = " compile" if compiled else ""
    opts = "" if options == "{}" else f" {options}"
    on = f" on {identity}" if identity else ""
    return f"{method} {size}px {device} {dtype}{flags}{opts}{on}"


@dataclass
class CellComparison:
    key: tuple
    # regression | new-failure | slower-ns (slower, not significant) | faster | same | too-few-repeats |
    # failed (in both) | fixed (failed in base only) | only-base | only-new | no-median
    verdict: str
    base_status: str | None = None
    new_status: str | None = None
    base_median_s: float | None = None
    new_median_s: float | None = None
    ratio: float | None = None
    p_value: float | None = None
    n_base: int = 0
    n_new: int = 0
    base_peak_bytes: int | None = None
    new_peak_bytes: int | None = None
    peak_ratio: float | None = None
    peak_conventions: tuple[str | None, str | None] = (None, None)  # (base, new)

    @property
    def same_peak_convention(self) -> bool:
        return self.peak_conventions[0] == self.peak_conventions[1]

    @property
    def name(self) -> str:
        return cell_name(self.key)

    @property
    def failed(self) -> bool:
        return self.verdict in ("regression", "new-failure")


@dataclass
class Comparison:
    cells: list[CellComparison]
    threshold: float
    alpha: float
    base_devices: list[str] = field(default_factory=list)
    new_devices: list[str] = field(default_factory=list)
    base_runs: int = 1  # how many runs each side pools
    new_runs: int = 1

    @property
    def regressions(self) -> list[CellComparison]:
        return [c for c in self.cells if c.failed]


def _one_sided_p(base: list[float], new: list[float]) -> float:
    """P(new samples this much larger than base | no difference), Mann-Whitney U, one-sided.

    Small samples always use the exact null distribution: scipy's default switches to the normal
    approximation when there are ties, which reaches p < 0.05 with 3 vs 3 samples where the exact test cannot.
    """
    method = "exact" if min(len(base), len(new)) < 8 else "auto"
    return float(mannwhitneyu(new, base, alternative="greater", method=method).pvalue)


def _compare_cell(key, b: dict | None, n: dict | None, threshold: float, alpha: float) -> CellComparison:
    if b is None or n is None:
        return CellComparison(key, "only-new" if b is None else "only-base",
                              base_status=b and b["status"], new_status=n and n["status"])
    c = CellComparison(key, "", base_status=b["status"], new_status=n["status"],
                       base_median_s=b.get("median_s"), new_median_s=n.get("median_s"))
    if b["status"] != "ok" or n["status"] != "ok":
        c.verdict = "new-failure" if b["status"] == "ok" else ("fixed" if n["status"] == "ok" else "failed")
        return c
    c.base_peak_bytes, c.new_peak_bytes = b.get("peak_mem_bytes"), n.get("peak_mem_bytes")
    if c.base_peak_bytes and c.new_peak_bytes is not None:
        c.peak_ratio = c.new_peak_bytes / c.base_peak_bytes
        c.peak_conventions = (b.get("peak_mem_convention"), n.get("peak_mem_convention"))
    bs, ns = list(b.get("samples_s") or []), list(n.get("samples_s") or [])
    c.n_base, c.n_new = len(bs), len(ns)
    if c.base_median_s and c.new_median_s is not None:
        c.ratio = c.new_median_s / c.base_median_s
    if min(c.n_base, c.n_new) < MIN_REPEATS:
        c.verdict = "too-few-repeats"
        return c
    c.p_value = _one_sided_p(bs, ns)
    if c.ratio is None:
        c.verdict = "no-median"  # samples but a zero/absent median: a hand-edited or broken record
    elif c.ratio > 1 + threshold:
        c.verdict = "regression" if c.p_value < alpha else "slower-ns"
    elif c.ratio < 1 - threshold:
        c.verdict = "faster"
    else:
        c.verdict = "same"
    return c


def _devices(records: list[dict[str, Any]]) -> list[str]:
    return sorted({device_identity(r.get("env") or {}) for r in records})


def _pool(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One record for a cell measured in several runs: the first failure if any run failed, else the
    repeat samples of all runs, their median, the median of the runs' peaks (None if a run has none) and
    the peak conventions (joined with " | " where they differ)."""
    if len(records) == 1:
        return records[0]
    failed = [r for r in records if r["status"] != "ok"]
    if failed:
        return failed[0]
    samples = [x for r in records for x in r.get("samples_s") or []]
    median, iqr = summarize(samples)
    peaks = [r.get("peak_mem_bytes") for r in records]
    conventions = {r.get("peak_mem_convention") for r in records}
    convention = conventions.pop() if len(conventions) == 1 else " | ".join(sorted(map(str, conventions)))
    return {
        **records[0], "samples_s": samples, "median_s": median, "iqr_s": iqr,
        "peak_mem_bytes": None if None in peaks else int(np.median(peaks)), "peak_mem_convention": convention,
    }


def _runs(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str | os.PathLike]:
    return [paths] if isinstance(paths, str | os.PathLike) else list(paths)


def compare_runs(
    base: str | os.PathLike | Sequence[str | os.PathLike],
    new: str | os.PathLike | Sequence[str | os.PathLike],
    threshold: float = 0.05, alpha: float = 0.05, cross_device: bool = False,
) -> Comparison:
    """Compare two profile folders (or run folders holding ``profile/``), or two lists of them, each list
    pooled (see the module docstring)."""
    base_runs, new_runs = _runs(base), _runs(new)
    if not base_runs or not new_runs:
        raise ConfigError("compare needs at least one base run and one new run")
    base_recs = [read_records(p) for p in base_runs]
    new_recs = [read_records(p) for p in new_runs]
    bdev = _devices([r for recs in base_recs for r in recs])
    ndev = _devices([r for recs in new_recs for r in recs])
    if bdev != ndev and not cross_device:
        raise ConfigError(
            f"{', '.join(map(str, base_runs))} ran on {', '.join(bdev)} but {', '.join(map(str, new_runs))} "
            f"ran on {', '.join(ndev)}; "
            "timings from different hardware are not comparable — pass --cross-device to compare anyway"
        )
    per_device = len(bdev) > 1 or len(ndev) > 1

    def cells(runs: list[list[dict[str, Any]]]) -> dict[tuple, dict[str, Any]]:
        grouped: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
        for recs in runs:
            for r in recs:
                grouped[cell_key(r, per_device)].append(r)
        return {k: _pool(v) for k, v in grouped.items()}

    bmap, nmap = cells(base_recs), cells(new_recs)
    keys = sorted(set(bmap) | set(nmap))
    comp = [_compare_cell(k, bmap.get(k), nmap.get(k), threshold, alpha) for k in keys]
    return Comparison(comp, threshold, alpha, bdev, ndev, len(base_runs), len(new_runs))


def _fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.2f} ms" if x < 1 else f"{x:.3f} s"


def _fmt_mib(x: int | None) -> str:
    return "-" if x is None else f"{x / 2**20:.0f} MiB"


def format_table(comp: Comparison) -> str:
    """An aligned text table: cell, both medians, ratio, p-value, both peaks and their ratio, verdict."""
    header = ("cell", "base median", "new median", "ratio", "p (U, 1-sided)", "n", "base peak", "new peak",
              "peak ratio", "verdict")
    rows: list[tuple[str, ...]] = [header]
    for c in comp.cells:
        mark = "" if c.same_peak_convention else "*"
        peak_ratio = "-" if c.peak_ratio is None else f"{c.peak_ratio:.2f}{mark}"
        rows.append((
            c.name,
            _fmt_s(c.base_median_s) if c.base_status == "ok" else (c.base_status or "-"),
            _fmt_s(c.new_median_s) if c.new_status == "ok" else (c.new_status or "-"),
            "-" if c.ratio is None else f"{c.ratio:.3f}",
            "-" if c.p_value is None else f"{c.p_value:.3g}",
            f"{c.n_base}/{c.n_new}" if c.n_base or c.n_new else "-",
            _fmt_mib(c.base_peak_bytes) if c.peak_ratio is not None else "-",
            _fmt_mib(c.new_peak_bytes) if c.peak_ratio is not None else "-",
            peak_ratio,
            c.verdict,
        ))
    table = text_table(header, rows[1:], left=(0, len(header) - 1))
    note = (f"regression: ratio > {1 + comp.threshold:.3f} and p < {comp.alpha} (Mann-Whitney U on the raw "
            f"repeat samples, needs >= {MIN_REPEATS} repeats per run; 3 vs 3 cannot reach p < 0.05)")
    if comp.base_devices != comp.new_devices:
        note += f"; CROSS-DEVICE: base {', '.join(comp.base_devices)} vs new {', '.join(comp.new_devices)}"
    lines = [table, "", note, "peak: one measured call per run, shown, not tested (module doc of "
             "sanet_bench.compare)"]
    if comp.base_runs > 1 or comp.new_runs > 1:
        lines.append(f"pooled: {comp.base_runs} base run(s), {comp.new_runs} new run(s); median and U test "
                     "over all their samples (runs taken as independent), peak = median of the runs' peaks")
    differing = sorted({c.peak_conventions for c in comp.cells if c.peak_ratio is not None
                        and not c.same_peak_convention}, key=str)
    for base_conv, new_conv in differing:
        lines.append(f"* peak measured differently: base '{base_conv}'; new '{new_conv}'")
    return "\n".join(lines)
