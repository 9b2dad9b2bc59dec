"""The main job: the grid run, then the profile, then the report — what ``sanet-bench run`` does.

:func:`sanet_bench.runner.run` runs and scores the grid; :func:`sanet_bench.profiling.profile_run` times the
same methods and sizes in isolation (``cfg.profile``); :func:`sanet_bench.report.render` writes the HTML and
Markdown report (``cfg.report``) from the run folder. This module sits above all three, so none of them
imports another upwards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .config import RunConfig
from .profiling import profile_run
from .report import render
from .runner import RunSummary
from .runner import run as run_grid


def run(
    cfg: RunConfig,
    *,
    overwrite: bool = False,
    grid: Any = None,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
) -> RunSummary:
    """Run the grid of ``cfg`` into ``cfg.out`` (resuming there), then profile it (first, so the report
    shows the profile) and render the report into ``cfg.out/report``, as ``cfg`` asks."""
    summary = run_grid(cfg, overwrite=overwrite, grid=grid, progress=progress, echo=echo)
    if cfg.profile:
        profile_run(cfg, summary.run_dir)
    if cfg.report:
        render(summary.run_dir, summary.run_dir / "report")
    return summary
