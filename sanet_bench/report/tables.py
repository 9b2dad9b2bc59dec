"""Report tables: per-method mean ± std with the better direction and the best in bold; per-style breakdown;
performance. Each table is returned as a :class:`Table` and rendered to Markdown or HTML."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..results import REF_STYLE


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    bold: set[tuple[int, int]] = field(default_factory=set)  # (row, col) cells to emphasise
    caption: str = ""

    def markdown(self) -> str:
        def cell(r: int, c: int, v: str) -> str:
            v = v.replace("|", "\\|")
            return f"**{v}**" if (r, c) in self.bold and v else v

        lines = ["| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        lines += [
            "| " + " | ".join(cell(r, c, v) for c, v in enumerate(row)) + " |"
            for r, row in enumerate(self.rows)
        ]
        if self.caption:
            lines += ["", f"*{self.caption}*"]
        return "\n".join(lines)

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header)
        body = []
        for r, row in enumerate(self.rows):
            tds = []
            for c, v in enumerate(row):
                text = html.escape(v)
                tds.append(f"<td><b>{text}</b></td>" if (r, c) in self.bold and v else f"<td>{text}</td>")
            body.append("<tr>" + "".join(tds) + "</tr>")
        cap = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def arrow(higher_is_better: bool | None) -> str:
    return "↑" if higher_is_better else ("↓" if higher_is_better is not None else "")


def _fmt(mean: float, std: float | None) -> str:
    if mean is None or pd.isna(mean):
        return "–"
    return f"{mean:.4g} ± {0.0 if std is None or pd.isna(std) else std:.2g}"


def _best(values: dict[int, float], higher: bool | None) -> set[int]:
    vals = {i: v for i, v in values.items() if v is not None and not pd.isna(v)}
    if higher is None or len(vals) < 2:
        return set()
    target = max(vals.values()) if higher else min(vals.values())
    return {i for i, v in vals.items() if np.isclose(v, target, rtol=1e-9, atol=0)}


COPY_FRACTION = 0.01  # content_copies: under 1% of the style image's own content loss


def content_copies(df: pd.DataFrame, references: pd.DataFrame | None) -> dict[str, tuple[float, float]]:
    """Methods whose outputs are the content itself: ``{method: (its content loss, the style's)}``.

    A method qualifies when its mean ``content_loss`` over successful cells is under :data:`COPY_FRACTION`
    of the style reference's (the style image scored as the output: the content loss of an unrelated
    picture). Such a method did not move the image (e.g. an optimiser given too few iterations); it would
    otherwise be "best" on every output-vs-content metric. Empty without a style reference row.
    """
    if references is None or "content_loss" not in df or "content_loss" not in references:
        return {}
    style_ref = references.loc[references["method"] == REF_STYLE, "content_loss"].mean()
    if pd.isna(style_ref) or style_ref <= 0:
        return {}
    ok = df[df["status"] == "ok"].groupby("method", sort=False)["content_loss"].mean().dropna()
    return {m: (float(v), float(style_ref)) for m, v in ok.items() if v < COPY_FRACTION * style_ref}


def metric_summary(
    df: pd.DataFrame,
    metrics: list[str],
    better: dict[str, bool],
    labels: dict[str, str],
    references: pd.DataFrame | None = None,
    no_bold: set[str] = frozenset(),
) -> Table:
    """Method x metric (mean ± std over successful cells), best per column in bold among the methods.

    ``references`` (optional) holds reference rows (e.g. the content or the style itself as the output),
    shown below the methods and never bolded; nor are the methods in ``no_bold`` (see
    :func:`content_copies`).
    """
    ok = df[df["status"] == "ok"]
    methods = list(dict.fromkeys(df["method"]))
    header = ["method", "cells ok/all", *[f"{m} {arrow(better.get(m))}" for m in metrics]]
    rows, means = [], {m: {} for m in metrics}
    for i, method in enumerate(methods):
        g = ok[ok["method"] == method]
        n_all = int((df["method"] == method).sum())
        row = [labels.get(method, method), f"{len(g)}/{n_all}"]
        for m in metrics:
            col = g[m].dropna() if m in g else pd.Series(dtype=float)
            means[m][i] = col.mean() if len(col) and method not in no_bold else None
            row.append(_fmt(col.mean() if len(col) else None, col.std() if len(col) > 1 else None))
        rows.append(row)
    bold = {(i, 2 + j) for j, m in enumerate(metrics) for i in _best(means[m], better.get(m))}
    if references is not None:
        for name, g in references.groupby("method", sort=False):
            rows.append(
                [
                    f"reference: {name}",
                    f"{len(g)}/{len(g)}",
                    *[_fmt(g[m].mean(), g[m].std()) if m in g else "–" for m in metrics],
                ]
            )
    caption = "mean ± std over the grid's successful cells; bold: best method per column"
    if no_bold:
        copies = ", ".join(labels.get(m, m) for m in sorted(no_bold))
        caption += f" (not bolded: {copies}, which returned the content)"
    return Table(header, rows, bold, caption)


def per_style(
    df: pd.DataFrame,
    metric: str,
    higher: bool | None,
    labels: dict[str, str],
    no_bold: set[str] = frozenset(),
) -> Table:
    """Style x method means of one metric (best per style in bold, never a method in ``no_bold``)."""
    ok = df[(df["status"] == "ok") & df[metric].notna()] if metric in df else df.iloc[0:0]
    methods = list(dict.fromkeys(df["method"]))
    styles = sorted(df["style"].unique())
    header = ["style", *[labels.get(m, m) for m in methods]]
    rows, bold = [], set()
    for r, style in enumerate(styles):
        vals = {}
        row = [style]
        for j, m in enumerate(methods):
            v = ok[(ok["style"] == style) & (ok["method"] == m)][metric]
            vals[j] = v.mean() if len(v) else None
            row.append("–" if vals[j] is None else f"{vals[j]:.4g}")
        candidates = {j: v for j, v in vals.items() if methods[j] not in no_bold}
        bold |= {(r, 1 + j) for j in _best(candidates, higher)}
        rows.append(row)
    return Table(header, rows, bold, f"{metric} {arrow(higher)} per style (mean over contents and sizes)")


def performance(prof: pd.DataFrame, labels: dict[str, str]) -> Table:
    """One row per (method, size) — and device, with a ``device`` column, when ``prof`` holds several:
    median and IQR latency, stage medians, peak memory, GFLOP/s, status."""
    stage_cols = [c for c in prof.columns if c.startswith("stage_") and c.endswith("_s")]
    several = "device_id" in prof and prof["device_id"].nunique() > 1
    header = [
        "method",
        *(["device"] if several else []),
        "size",
        "median ms",
        "IQR ms",
        *[c[6:-2] + " ms" for c in stage_cols],
        "peak MiB",
        "GFLOP/s",
        "status",
    ]
    rows = []
    for _, r in prof.sort_values(["method", *(["device_id"] if several else []), "size"]).iterrows():

        def ms(v):
            return "–" if v is None or pd.isna(v) else f"{v * 1e3:.1f}"

        mem = r.get("peak_mem_bytes")
        gf = r.get("gflops_per_s")
        rows.append(
            [
                labels.get(r["method"], r["method"]),
                *([r["device_id"]] if several else []),
                str(int(r["size"])),
                ms(r.get("median_s")),
                ms(r.get("iqr_s")),
                *[ms(r.get(c)) for c in stage_cols],
                "–" if mem is None or pd.isna(mem) else f"{mem / 2**20:.0f}",
                "–" if gf is None or pd.isna(gf) else f"{gf:.1f}",
                str(r["status"]),
            ]
        )
    return Table(header, rows, caption="latency: median over repeats after warm-up; see conventions below")
