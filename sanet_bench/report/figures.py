"""Report figures (matplotlib, Agg). Every figure that shows a method labels non-official weights loudly."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..errors import ImageError  # noqa: E402
from ..images import load_image  # noqa: E402

DPI = 110  # with ~2 in per image cell: ~220 px images, legible at 100 % zoom
CELL_IN = 2.0
LOUD_COLOR = "#c00000"
plt.rcParams.update({"font.size": 9, "axes.titlesize": 9, "figure.titlesize": 11})


def _save(fig, path: Path, svg: bool) -> list[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    out = [path]
    if svg:
        fig.savefig(path.with_suffix(".svg"), bbox_inches="tight")
        out.append(path.with_suffix(".svg"))
    plt.close(fig)
    return out


def _show(ax, img: np.ndarray | None, text: str = "") -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)
    if img is not None:
        ax.imshow(img)
    else:
        ax.set_facecolor("#eeeeee")
        ax.text(
            0.5,
            0.5,
            text,
            ha="center",
            va="center",
            wrap=True,
            fontsize=7,
            color=LOUD_COLOR,
            transform=ax.transAxes,
        )


def _as_array(t) -> np.ndarray:
    return t[0].clamp(0, 1).permute(1, 2, 0).numpy()


def comparison_pages(
    df: pd.DataFrame,
    image_paths: dict[tuple[str, str], str | None],
    run_dir: Path,
    out_dir: Path,
    size: int,
    methods: list[str],
    label: Callable[[str], tuple[str, bool]],
    rows_per_page: int = 6,
) -> list[Path]:
    """Rows: content/style pairs; columns: content, style, each method at ``size``. Split into pages."""
    cells = df[df["size"] == size]
    pairs = list(dict.fromkeys(zip(cells["content"], cells["style"], strict=True)))
    # one alpha per figure: each method's most common (its default in a default run)
    pages = [pairs[i : i + rows_per_page] for i in range(0, len(pairs), rows_per_page)]
    written: list[Path] = []
    for p, page in enumerate(pages, 1):
        ncols, lines = 2 + len(methods), 1
        fig, axes = plt.subplots(
            len(page), ncols, figsize=(CELL_IN * ncols, CELL_IN * len(page) + 0.5), squeeze=False
        )
        for r, (content, style) in enumerate(page):
            for c, (role, name) in enumerate((("content", content), ("style", style))):
                try:
                    path = image_paths.get((role, name))
                    img = _as_array(load_image(path, size)) if path else None
                    _show(axes[r][c], img, f"{role} image not available")
                except ImageError as e:
                    _show(axes[r][c], None, str(e)[:60])
                if r == 0:
                    axes[r][c].set_title(role)
                axes[r][c].set_ylabel(f"{content}\n× {style}" if c == 0 else "", fontsize=8)
            for j, method in enumerate(methods):
                ax = axes[r][2 + j]
                row = cells[
                    (cells["method"] == method) & (cells["content"] == content) & (cells["style"] == style)
                ]
                if row.empty:
                    _show(ax, None, "not run")
                elif row.iloc[0]["status"] != "ok":
                    _show(ax, None, "failed: " + str(row.iloc[0]["error"])[:70])
                else:
                    try:
                        _show(ax, _as_array(load_image(run_dir / row.iloc[0]["output"])))
                    except ImageError as e:
                        _show(ax, None, str(e)[:60])
                if r == 0:
                    text, loud = label(method)
                    title = text.replace(" [", "\n[").replace(", ", ",\n").replace(" α=", "\nα=")  # narrow
                    ax.set_title(title, color=LOUD_COLOR if loud else "black")
                    lines = max(lines, title.count("\n") + 1)
        above_titles = 1.0 + (0.2 + 0.16 * lines) / (CELL_IN * len(page) + 0.5)  # clear of the column titles
        fig.suptitle(f"Comparison at {size} px (page {p}/{len(pages)})", y=above_titles)
        axes[0][0].figure.subplots_adjust(wspace=0.04, hspace=0.08)
        written += _save(fig, out_dir / f"comparison_{size}_p{p}.png", svg=False)
    return written


def _method_lines(ax, prof: pd.DataFrame, y: str, scale: float, label: Callable[[str], tuple[str, bool]]):
    """A line per method, or per (method, device) when ``prof`` holds several devices (``device_id``)."""
    several = "device_id" in prof and prof["device_id"].nunique() > 1
    for keys, g in prof.groupby(["method", "device_id"] if several else ["method"], sort=True):
        g = g.sort_values("size")
        ok = g[g["status"] == "ok"]
        text, loud = label(keys[0])
        if several:
            text = f"{text} @ {keys[1]}"
        line = ax.plot(ok["size"], ok[y] * scale, marker="o", label=text)[0]
        if loud:
            line.set_linestyle("--")
        if y == "median_s" and "iqr_s" in ok:
            ax.errorbar(
                ok["size"],
                ok[y] * scale,
                yerr=ok["iqr_s"].fillna(0) * scale / 2,
                fmt="none",
                ecolor=line.get_color(),
                capsize=2,
            )
        oom = g[g["status"].isin(["oom", "skipped-after-oom"])]
        if not oom.empty:
            top = (ok[y].max() * scale * 1.5) if not ok.empty else 1.0
            ax.scatter(oom["size"], [top] * len(oom), marker="x", s=60, color=line.get_color(), zorder=5)
            for s in oom["size"]:
                ax.annotate(
                    "OOM",
                    (s, top),
                    textcoords="offset points",
                    xytext=(3, 3),
                    fontsize=7,
                    color=line.get_color(),
                )


def performance(
    prof: pd.DataFrame, out_dir: Path, label: Callable[[str], tuple[str, bool]], device: str
) -> list[Path]:
    """Latency and peak memory vs resolution (log-log), one line per method, OOM marked with x."""
    written: list[Path] = []
    for y, scale, ylabel, name in (
        ("median_s", 1e3, "median stylize latency (ms; bars: IQR)", "latency"),
        ("peak_mem_bytes", 1 / 2**20, "peak memory (MiB)", "memory"),
    ):
        if y not in prof or prof[y].dropna().empty:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        _method_lines(ax, prof, y, scale, label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        sizes = sorted(prof["size"].unique())
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.set_xlabel("content and style size (px, square)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{name.capitalize()} vs resolution on {device} (dashed: non-official weights)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        written += _save(fig, out_dir / f"{name}.png", svg=True)
    return written


def stages(prof: pd.DataFrame, out_dir: Path, label: Callable[[str], tuple[str, bool]]) -> list[Path]:
    """Stacked encode / transform / decode time per method at the largest size every method finished."""
    cols = [c for c in prof.columns if c.startswith("stage_") and c.endswith("_s")]
    ok = prof[prof["status"] == "ok"]
    if not cols or ok.empty:
        return []
    size = int(ok.groupby("method")["size"].max().min())
    at = ok[ok["size"] == size].set_index("method").sort_index()
    fig, ax = plt.subplots(figsize=(6.4, 0.5 * len(at) + 1.4))
    left = np.zeros(len(at))
    for col in cols:
        vals = at[col].fillna(0).to_numpy() * 1e3
        ax.barh([label(m)[0] for m in at.index], vals, left=left, label=col[len("stage_") : -2])
        left += vals
    rest = at["median_s"].to_numpy() * 1e3 - left
    ax.barh(
        [label(m)[0] for m in at.index], np.clip(rest, 0, None), left=left, label="other", color="#cccccc"
    )
    ax.set_xlabel(f"median time at {size} px (ms)")
    ax.set_title("Stage breakdown")
    ax.legend(fontsize=7)
    return _save(fig, out_dir / "stages.png", svg=True)


def quality_speed(
    points: pd.DataFrame,
    out_dir: Path,
    label: Callable[[str], tuple[str, bool]],
    metrics: list[str],
    better: dict[str, bool],
    size: int,
) -> list[Path]:
    """Scatter of each method's mean metric vs its median latency (one panel per metric)."""
    metrics = [m for m in metrics if m in points and points[m].notna().any()]
    if points.empty or not metrics:
        return []
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False, layout="constrained"
    )
    for ax, m in zip(axes[0], metrics, strict=True):
        for method, r in points.iterrows():
            if pd.isna(r[m]) or pd.isna(r["latency_s"]):
                continue
            text, loud = label(method)
            ax.scatter(r["latency_s"] * 1e3, r[m], color=LOUD_COLOR if loud else "#1f77b4")
            ax.annotate(
                text, (r["latency_s"] * 1e3, r[m]), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
        ax.set_xscale("log")
        ax.margins(x=0.35, y=0.15)  # room for the method labels
        ax.set_xlabel(f"latency at {size} px (ms)")
        ax.set_ylabel(f"{m} ({'higher' if better.get(m) else 'lower'} is better)")
        ax.grid(True, alpha=0.3)
    fig.suptitle("Quality vs speed (red: non-official weights)")
    return _save(fig, out_dir / "quality_speed.png", svg=True)


KIND_MARKERS = {"official": "o", "demo": "s", "trained": "^", "random": "X"}
REF_NAMES = {"ref:content": "the content unchanged", "ref:style": "the style image"}


def tradeoff(
    points: pd.DataFrame,
    refs: pd.DataFrame,
    out_dir: Path,
    label: Callable[[str], tuple[str, bool]],
    kinds: dict[str, str],
    front: set[str],
    size: int,
) -> list[Path]:
    """Content loss vs style loss at ``size`` (the way papers read the two): one point per method (rows of
    ``points``, columns ``content_loss``, ``style_loss``), marker by kind of weights, filled and bold when
    the method is in ``front``; the reference rows (``refs``, same columns, indexed by name) as anchors."""
    if points.empty or not {"content_loss", "style_loss"} <= set(points):
        return []
    fig, ax = plt.subplots(figsize=(9.0, 5.0), layout="constrained")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    bold = []  # legend entries of the front (labels in a legend stay legible when points crowd)
    for i, (method, r) in enumerate(points.iterrows()):
        if pd.isna(r["content_loss"]) or pd.isna(r["style_loss"]):
            continue
        color, on = colors[i % len(colors)], method in front
        kind = kinds.get(method, "")
        ax.scatter(
            r["content_loss"], r["style_loss"], s=60, marker=KIND_MARKERS.get(kind, "D"), zorder=3,
            color=color if on else "none", edgecolors=color, linewidths=1.5,
            label=f"{label(method)[0]} ({kind} weights)",
        )
        bold.append(on)
    for name, r in refs.iterrows():
        text = f"{name}: {REF_NAMES.get(str(name), name)}"
        ax.scatter(r["content_loss"], r["style_loss"], s=140, marker="*", color="black", zorder=3, label=text)
        ax.annotate(text, (r["content_loss"], r["style_loss"]), fontsize=7, xytext=(5, -10),
                    textcoords="offset points")
        bold.append(False)
    legend = ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    for text, on in zip(legend.get_texts(), bold, strict=True):
        text.set_fontweight("bold" if on else "normal")
    ax.margins(0.2)
    ax.set_xlabel("content loss ↓ (mean over the grid)")
    ax.set_ylabel("style loss ↓ (mean over the grid)")
    ax.set_title(
        f"Content vs style loss at {size} px — lower left is better; filled, bold: on the Pareto front\n"
        "among methods with the same kind of weights (marker: kind; different kinds are not ranked together)"
    )
    ax.grid(True, alpha=0.3)
    return _save(fig, out_dir / f"tradeoff_{size}.png", svg=True)


def nice_size(values: list[Any]) -> int:
    """The report's comparison size: the largest size present (closest to the papers' 512)."""
    sizes = sorted({int(v) for v in values if not (isinstance(v, float) and math.isnan(v))})
    return sizes[-1] if sizes else 0
