"""Report tables: per-method mean with its seeded 95% bootstrap interval and the better direction, the
content-loss/style-loss Pareto front in bold (no single column crowns a "best"), and in words which method
differences are significant (paired Wilcoxon, Holm); per-style breakdown; set-level metrics per size;
performance. Each table is returned as a :class:`Table` and rendered to Markdown or HTML."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import pandas as pd

from .. import results
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


def _fmt_ci(ci: dict[tuple[str, str], pd.Series], method: str, metric: str) -> str:
    """``mean [lo, hi]`` of one row of :func:`sanet_bench.results.confidence` (``–`` when absent)."""
    r = ci.get((method, metric))
    return "–" if r is None else f"{r['mean']:.4g} [{r['lo']:.4g}, {r['hi']:.4g}]"


def _intervals(df: pd.DataFrame, metrics: list[str]) -> dict[tuple[str, str], pd.Series]:
    """``{(method, metric): confidence row}`` over the ok cells of ``df`` (rows without a status count)."""
    if "status" not in df:
        df = df.assign(status="ok")
    ci = results.confidence(df, [m for m in metrics if m in df])
    return {(r["method"], r["metric"]): r for _, r in ci.iterrows()}


def pareto_front(points: dict[str, tuple[float, float]]) -> set[str]:
    """The names whose (x, y) no other point dominates (lower or equal in both, lower in one); lower is better
    in both. NaN points are never on the front."""
    ok = {k: p for k, p in points.items() if not (pd.isna(p[0]) or pd.isna(p[1]))}
    return {
        k for k, (x, y) in ok.items()
        if not any(x2 <= x and y2 <= y and (x2 < x or y2 < y) for j, (x2, y2) in ok.items() if j != k)
    }


def fronts_by_kind(
    points: dict[str, tuple[float, float]],
    kinds: dict[str, str],
    exclude: set[str] = frozenset(),
    anchors: dict[str, tuple[float, float]] | None = None,
) -> set[str]:
    """:func:`pareto_front` within each kind of weights (``kinds[name]``: official, demo, random, ...):
    methods of different kinds of model are not ranked against each other. ``exclude``: never on a front.
    ``anchors`` (the reference rows) dominate like methods but are never on a front: a method with more
    style loss than the unchanged content is not on it."""
    anchors = {f"\0{k}": p for k, p in (anchors or {}).items()}
    groups: dict[str, dict[str, tuple[float, float]]] = {}
    for k, p in points.items():
        if k not in exclude:
            groups.setdefault(kinds.get(k, ""), dict(anchors))[k] = p
    return set().union(*[pareto_front(g) for g in groups.values()]) - set(anchors)


TRADEOFF = ("content_loss", "style_loss")  # the two metrics read together: the papers' trade-off

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
    kinds: dict[str, str] | None = None,
) -> Table:
    """Method x metric (``mean [lo, hi]``: mean and seeded 95% bootstrap interval over the successful cells,
    :func:`sanet_bench.results.confidence`) with each method's kind of weights.

    Bold: the methods on the content-loss/style-loss Pareto front among those with the same kind of weights
    (``kinds``, method -> kind; :func:`fronts_by_kind`, the references as anchors) — their name and those
    two cells. No column is
    crowned on its own: a method that barely stylises has the lowest content loss. ``references``
    (optional): reference rows (the content or the style itself as the output), shown below the methods as
    anchors, never bolded; nor are the methods in ``no_bold`` (see :func:`content_copies`).
    """
    kinds = kinds or {}
    ok = df[df["status"] == "ok"]
    methods = list(dict.fromkeys(df["method"]))
    header = ["method", "weights", "cells ok/all", *[f"{m} {arrow(better.get(m))}" for m in metrics]]
    rows, points = [], {}
    ci = _intervals(df, metrics)
    for method in methods:
        g = ok[ok["method"] == method]
        n_all = int((df["method"] == method).sum())
        rows.append([labels.get(method, method), kinds.get(method, "–"), f"{len(g)}/{n_all}",
                     *[_fmt_ci(ci, method, m) for m in metrics]])
        if all(m in g for m in TRADEOFF):
            points[method] = (g[TRADEOFF[0]].mean(), g[TRADEOFF[1]].mean())
    anchors = {}
    if references is not None and all(m in references for m in TRADEOFF):
        for name, g in references.groupby("method", sort=False):
            anchors[str(name)] = (g[TRADEOFF[0]].mean(), g[TRADEOFF[1]].mean())
    front = fronts_by_kind(points, kinds, set(no_bold), anchors)
    cols = [0] + [3 + metrics.index(m) for m in TRADEOFF if m in metrics]
    bold = {(i, c) for i, method in enumerate(methods) if method in front for c in cols}
    if references is not None:
        ref_ci = _intervals(references, metrics)
        for name, g in references.groupby("method", sort=False):
            rows.append([f"reference: {name}", "–", f"{len(g)}/{len(g)}",
                         *[_fmt_ci(ref_ci, name, m) for m in metrics]])
    caption = (
        f"mean [{results.CI_LEVEL:.0%} bootstrap interval] over the grid's successful cells "
        f"({results.N_BOOT} resamples, seeded); bold: on the Pareto front of content loss and style "
        "loss among methods with the same kind of weights (no such method, and no reference, has both "
        "lower); no single column has a best"
    )
    if no_bold:
        copies = ", ".join(labels.get(m, m) for m in sorted(no_bold))
        caption += f" (not bolded: {copies}, which returned the content)"
    return Table(header, rows, bold, caption)


MIN_PAIRED = 6  # two-sided Wilcoxon signed-rank: with 5 pairs or fewer no p-value is under 0.05
SIGNIFICANCE = 0.05


def significance(df: pd.DataFrame, metrics: list[str], labels: dict[str, str]) -> list[str]:
    """One sentence per metric saying which method differences are significant: a paired Wilcoxon
    signed-rank test on the cells (content, style, size) both methods scored, Holm-corrected over the pairs
    of methods (:func:`sanet_bench.results.paired_tests`; each method in ``df`` runs at one alpha), e.g.
    ``content_loss: adain < sanet (p=0.003); other differences not significant at 0.05 (Wilcoxon ...)``.
    A pair with fewer than :data:`MIN_PAIRED` shared cells cannot reach significance: the sentence says so."""
    tests = results.paired_tests(df, metrics, SIGNIFICANCE, on=("content", "style", "size"))
    out = []
    for m in metrics:
        t = tests[tests["metric"] == m]
        if t.empty:
            continue
        family = f"Wilcoxon signed-rank, Holm over {len(t)} pair{'s' if len(t) > 1 else ''}"
        if (t["n"] < MIN_PAIRED).all():
            out.append(f"{m}: too few shared cells to test ({int(t['n'].max())} at most; a paired test needs "
                       f"{MIN_PAIRED}), no difference can be called significant")
            continue
        said = []
        for _, r in t[t["significant"]].sort_values("p_holm").iterrows():
            lo, hi = (r["method_a"], r["method_b"]) if r["mean_diff"] < 0 else (r["method_b"], r["method_a"])
            said.append(f"{labels.get(lo, lo)} < {labels.get(hi, hi)} (p={r['p_holm']:.2g})")
        if not said:
            said.append(f"no difference significant at {SIGNIFICANCE:g}")
        elif not t["significant"].all():
            said.append(f"other differences not significant at {SIGNIFICANCE:g}")
        few = [f"{labels.get(r['method_a'], r['method_a'])} vs {labels.get(r['method_b'], r['method_b'])} "
               f"(n={int(r['n'])})" for _, r in t[t["n"] < MIN_PAIRED].iterrows()]
        if few:
            said.append(f"too few shared cells to test {', '.join(few)}")
        out.append(f"{m}: " + "; ".join(said) + f" ({family})")
    return out


def set_metrics(sets: pd.DataFrame, names: list[str], better: dict[str, bool], labels: dict[str, str],
                size: int) -> Table:
    """The set-level rows (``results.load_sets``) of one size: one value per method and alpha over its cells,
    with its interval where the metric gives one, and the reason (and fix) of each metric that is missing."""
    at = sets[sets["size"] == size]
    header = ["method", "alpha", "cells", *[f"{m} {arrow(better.get(m))}" for m in names], "missing"]

    def cell(r, m: str) -> str:
        if pd.isna(r[m]):
            return "–"
        lo, hi = r.get(f"{m}_lo"), r.get(f"{m}_hi")
        return f"{r[m]:.4g}" + ("" if lo is None or pd.isna(lo) else f" [{lo:.4g}, {hi:.4g}]")

    rows = [
        [labels.get(r["method"], r["method"]), f"{r['alpha']:g}", str(r.get("cells")),
         *[cell(r, m) for m in names],
         "" if pd.isna(r.get("missing")) else str(r["missing"])]
        for _, r in at.iterrows()
    ]
    caption = (f"set-level metrics at {size} px: one value per method and alpha over its cells, with a "
               f"{results.CI_LEVEL:.0%} delete-one jackknife interval over the cells (a bootstrap would "
               "repeat images, which inflates FID); no paired test between methods; FID grows as 1/N on few "
               "images: compare sets of the same size only")
    return Table(header, rows, caption=caption)


def per_style(df: pd.DataFrame, metric: str, higher: bool | None, labels: dict[str, str]) -> Table:
    """Style x method means of one metric; nothing in bold (one metric alone ranks nothing)."""
    ok = df[(df["status"] == "ok") & df[metric].notna()] if metric in df else df.iloc[0:0]
    methods = list(dict.fromkeys(df["method"]))
    styles = sorted(df["style"].unique())
    header = ["style", *[labels.get(m, m) for m in methods]]
    rows = []
    for style in styles:
        row = [style]
        for m in methods:
            v = ok[(ok["style"] == style) & (ok["method"] == m)][metric]
            row.append(f"{v.mean():.4g}" if len(v) else "–")
        rows.append(row)
    return Table(header, rows, caption=f"{metric} {arrow(higher)} per style (mean over contents and sizes)")


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
