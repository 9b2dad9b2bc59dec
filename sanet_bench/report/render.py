"""Assemble a run folder into ``index.html`` (offline: no external resources, images by relative path),
``report.md``, ``figures/`` (PNG, and SVG for plots) and ``data/`` (the raw CSVs)."""

from __future__ import annotations

import html
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .. import results
from ..io import atomic_write_bytes
from ..results import REFERENCES
from . import figures, labels, tables

CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:1em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.2em;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;
text-align:left}th{background:#f3f3f3}caption{caption-side:bottom;font-size:12px;color:#555;text-align:left}
img{max-width:100%}.loud{background:#fde8e8;border:2px solid #c00000;padding:.6em 1em;color:#900}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:12px}h2{border-bottom:1px solid #ddd}"""

MAIN_METRICS = ("content_loss", "style_loss", "ssim", "lpips")


@dataclass
class Section:
    title: str
    markdown: str
    html: str


def _fig_md(paths: list[Path], out_dir: Path) -> str:
    return "\n\n".join(
        f"![{p.stem}]({p.relative_to(out_dir).as_posix()})" for p in paths if p.suffix == ".png"
    )


def _fig_html(paths: list[Path], out_dir: Path) -> str:
    return "".join(
        f'<p><img src="{html.escape(p.relative_to(out_dir).as_posix())}" alt="{html.escape(p.stem)}"></p>'
        for p in paths
        if p.suffix == ".png"
    )


def _set_metrics_tables(
    run_dir: Path, contracts: dict[str, Any], better: dict[str, bool], short: dict[str, str]
) -> list[tables.Table]:
    """One table per size of the run's set rows (``kind: set``); none when there are none."""
    sets = results.load_sets(run_dir)
    if sets.empty:
        return []
    names = [m for m in results.metric_columns(sets) if not contracts.get(m, {}).get("per_image", True)]
    return [tables.set_metrics(sets, names, better, short, s) for s in sorted({int(x) for x in sets["size"]})]


def _list(intro: str, items: list[str]) -> tuple[str, str]:
    return (
        intro + "\n\n" + "\n".join(f"- {i}" for i in items),
        f"<p>{html.escape(intro)}</p><ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>",
    )


def _fix_first(error: str) -> tuple[str, str]:
    """``(fix, problem)`` of a one-line error written ``problem — fix`` (``("", error)`` otherwise)."""
    problem, sep, fix = error.rpartition(" — ")
    return (fix, problem) if sep else ("", error)


def _xy(means: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """``{row name: (content loss, style loss)}`` of a frame of means."""
    return {str(m): (r[tables.TRADEOFF[0]], r[tables.TRADEOFF[1]]) for m, r in means.iterrows()}


def _variants(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, tuple[str, float]]]:
    """``df`` with ``method`` naming what the report compares: the method, or ``method α=A`` for a method run
    at several alphas; and ``{that name: (method, alpha)}``."""
    several = df.groupby("method")["alpha"].nunique() > 1
    names = [f"{m} α={a:g}" if several[m] else m for m, a in zip(df["method"], df["alpha"], strict=True)]
    variant_of = {n: (m, float(a)) for n, m, a in zip(names, df["method"], df["alpha"], strict=True)}
    return df.assign(method=names), variant_of


def _adapted_inputs(df: pd.DataFrame, manifest: dict[str, Any]) -> Any:
    """Which methods ran on inputs adapted to their input policy, how, and the sizes that went in."""
    notes = manifest.get("input_policies", {})
    if "input_policy" not in df:
        return None
    rows = []
    for method, g in df[df["input_policy"].notna()].groupby("method", sort=False):
        applied = str(g["input_policy"].iloc[0])
        if applied == "any size":
            continue
        rows.append([
            str(method), applied, ", ".join(sorted(set(g["content_input"].dropna()))),
            ", ".join(sorted(set(g["style_input"].dropna()))), (notes.get(method) or {}).get("note", ""),
        ])
    if not rows:
        return None
    return tables.Table(
        ["method", "applied", "content in (WxH)", "style in (WxH)", "why (the reference)"], rows,
        caption="inputs cropped or resized before stylize to what the method's reference can compute; "
        "its metrics compare the output with these inputs",
    )


def _section(title: str, parts: list[tuple[str, str]]) -> Section:
    """``parts``: (markdown, html) pairs."""
    return Section(title, "\n\n".join(m for m, _ in parts if m), "".join(h for _, h in parts))


def _conv_paths(df: pd.DataFrame) -> str | None:
    """Which convolution path each method's rows ran (as ``prepare`` resolved it; older runs: None)."""
    if "winograd" not in df.columns:
        return None
    names = {"winograd": "Winograd F(6x6,3x3) (NNPACK)", "channels_last": "direct, channels_last",
             "plain": "direct"}
    groups: dict[str, list[str]] = {}
    for method, rows in df.groupby("method", sort=False):
        flags = [c for c in ("winograd", "channels_last") if c in rows and rows[c].eq(True).any()]
        groups.setdefault(names[(flags or ["plain"])[0]], []).append(str(method))
    return "3x3 convolutions (outputs within the parity tolerances on each path): " + "; ".join(
        f"{path}: {', '.join(ms)}" for path, ms in groups.items()
    )


def _text(s: str) -> tuple[str, str]:
    return s, f"<p>{html.escape(s)}</p>"


def _kv_table(rows: list[tuple[str, Any]], caption: str = "") -> tables.Table:
    return tables.Table(
        ["key", "value"], [[k, "–" if v is None else str(v)] for k, v in rows], caption=caption
    )


def _tbl(t: tables.Table) -> tuple[str, str]:
    return t.markdown(), t.html()


def _load_profile(run_dir: Path) -> pd.DataFrame | None:
    from ..profiling import RECORDS, load_records

    if not (run_dir / "profile" / RECORDS).is_file():  # this run was not profiled
        return None
    return load_records(run_dir)


def render(
    run_dir: str | Path, out_dir: str | Path | None = None, extra_sections: list[Section] = ()
) -> Path:
    """Render ``run_dir`` into ``out_dir`` (default ``reports/<run name>``); returns the index.html path."""
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else Path("reports") / run_dir.resolve().name
    if not (run_dir / results.RESULTS).is_file():
        raise results.ResultsError(
            f"{run_dir}: no {results.RESULTS} here; pass a folder written by `sanet-bench run --out DIR`"
        )
    df = results.load(run_dir)
    if df.empty:
        raise results.ResultsError(
            f"{run_dir / results.RESULTS}: no result rows yet; run `sanet-bench run` first"
        )
    manifest = results.read_manifest(run_dir) or {}
    prof = _load_profile(run_dir)
    fig_dir = out_dir / "figures"
    if fig_dir.exists():
        shutil.rmtree(fig_dir)
    weights: dict[str, Any] = manifest.get("weights", {})
    contracts: dict[str, Any] = manifest.get("metrics", {})
    better = {m: c.get("higher_is_better") for m, c in contracts.items()}

    # the options each method ran with (its budget's, then the config's); older runs: the config's
    options = manifest.get("method_options") or manifest.get("config", {}).get("method_options", {})
    counts = results.count_line(df)
    not_run = results.could_not_run(df, manifest)
    fast = labels.fast_path_mark(manifest.get("config"))  # "[BF16, not fp32]" etc.; "" for fp32
    is_ref = df["method"].isin(REFERENCES)
    refs = df[is_ref]  # reference rows: the content / style scored as outputs
    everything, df = df, df[~is_ref & ~df["method"].isin(list(not_run))]
    df, variant_of = _variants(df)
    kinds = {v: labels.weights_source(weights.get(m)) for v, (m, _) in variant_of.items()}

    def label(key: str) -> tuple[str, bool]:
        """A method (or a method at one alpha): weights, alpha and any non-default option."""
        method, alpha = variant_of.get(key, (key, None))
        info = weights.get(method)
        text = labels.short_label(method, info) + fast + ("" if alpha is None else f" α={alpha:g}")
        opts = ", ".join(f"{k}={v}" for k, v in (options.get(method) or {}).items())
        return text + (f", {opts}" if opts else ""), not labels.is_official(info)

    short = {m: labels.short_label(m, weights.get(m)) for m in dict.fromkeys(list(everything["method"]))}

    def perf_label(method: str) -> tuple[str, bool]:
        """A profiled method: timed at its default alpha, with its options."""
        opts = ", ".join(f"{k}={v}" for k, v in (options.get(method) or {}).items())
        info = weights.get(method)
        text = labels.short_label(method, info) + fast + (f", {opts}" if opts else "")
        return text, not labels.is_official(info)
    named = {v: label(v)[0] for v in variant_of}
    methods = list(dict.fromkeys(df["method"]))
    metrics = results.metric_columns(df)
    sections: list[Section] = []

    # -- header ---------------------------------------------------------------------------------------
    env = manifest.get("environment", {})
    loud = list(dict.fromkeys(variant_of[v][0] for v in methods if label(v)[1]))
    head: list[tuple[str, str]] = [
        _text(
            f"Run folder {run_dir} — {counts} — config "
            f"{str(manifest.get('config_hash', ''))[:12]} — commit {env.get('commit')}"
            f"{' (dirty)' if env.get('dirty') else ''} — device {env.get('device')} "
            f"({env.get('gpu') or env.get('cpu')}) — torch {env.get('torch')}"
        )
    ]
    if loud:
        intro = "Not the published models — their images and numbers describe these weights only:"
        items = [f"{m}: {labels.long_label(weights.get(m))}" for m in loud]
        head.append((
            f"> **{intro}**\n" + "\n".join(f"> - {i}" for i in items),
            f'<div class="loud"><b>{html.escape(intro)}</b><ul>'
            + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul></div>",
        ))
    by_kind: dict[str, list[str]] = {}
    for v in methods:
        by_kind.setdefault(kinds[v], []).append(named[v])
    if len(by_kind) > 1:
        head.append(_text(
            "Different kinds of model — do not rank them against each other: "
            + "; ".join(f"{k} ({labels.KIND.get(k, 'unknown weights')}): {', '.join(v)}"
                        for k, v in sorted(by_kind.items()))
            + ". Bold rows and the trade-off fronts compare methods of one kind only."
        ))
    if manifest.get("encoder"):
        head.append(_text(f"VGG metrics computed with: {manifest['encoder']}"))
    paths = _conv_paths(df)
    if paths:
        head.append(_text(paths))
    sections.append(_section("Summary", head))
    if not_run:
        sections.append(_section("Methods that could not run", [_tbl(tables.Table(
            ["method", "how to get its files", "why"],
            [[m, *_fix_first(r)] for m, r in not_run.items()],
            caption="no cell of these methods ran; they are left out of the figures and tables below",
        ))]))
    adapted = _adapted_inputs(everything[~is_ref], manifest)
    if adapted is not None:
        sections.append(_section("Adapted inputs", [_tbl(adapted)]))

    # -- comparison figures ---------------------------------------------------------------------------
    size = figures.nice_size(list(df["size"]))
    grid = manifest.get("grid", {})
    paths = {("content", i["name"]): i.get("path") for i in grid.get("contents", [])}
    paths |= {("style", i["name"]): i.get("path") for i in grid.get("styles", [])}
    if size:
        pages = figures.comparison_pages(df, paths, run_dir, fig_dir, size, methods, label)
        sections.append(
            _section(f"Comparison at {size} px", [(_fig_md(pages, out_dir), _fig_html(pages, out_dir))])
        )

    # -- metric tables --------------------------------------------------------------------------------
    if metrics:
        references = refs if not refs.empty else None
        copies = tables.content_copies(df, references)
        figs = []
        for s in sorted({int(x) for x in df["size"]}):
            ok_at = df[(df["status"] == "ok") & (df["size"] == s)]
            pts = ok_at.groupby("method", sort=False)[[c for c in tables.TRADEOFF if c in ok_at]].mean()
            if len(pts.columns) < 2:
                continue
            ref_at = refs[refs["size"] == s].groupby("method")[list(pts.columns)].mean()
            front = tables.fronts_by_kind(_xy(pts), kinds, set(copies), _xy(ref_at))
            figs += figures.tradeoff(pts, ref_at, fig_dir, label, kinds, front, s)
        parts = [(_fig_md(figs, out_dir), _fig_html(figs, out_dir))] if figs else []
        parts.append(_tbl(tables.metric_summary(df, metrics, better, named, references, set(copies), kinds)))
        said = tables.significance(df, metrics, named)
        if said:
            parts.append(_list(
                "Differences between methods (paired Wilcoxon signed-rank test over the cells both scored, "
                "Holm-corrected over the pairs of methods, per metric):", said))
        for m, (loss, style_loss) in copies.items():
            opts = ", ".join(f"{k}={v}" for k, v in options.get(variant_of[m][0], {}).items()) or "defaults"
            parts.append(_text(
                f"{named[m]} returned the content: its mean content loss {loss:.3g} is under "
                f"{tables.COPY_FRACTION:.0%} of the style image's own ({style_loss:.3g}), so it did not "
                f"move the image with its options ({opts}); it is left off the Pareto front. Give it a "
                "larger budget (method_options in the config) to see it stylise."
            ))
        for m in [m for m in MAIN_METRICS if m in metrics and df[m].notna().any()]:
            parts.append(_tbl(tables.per_style(df, m, better.get(m), named)))
        missing = df.loc[df["missing"].fillna("") != "", "missing"].unique() if "missing" in df else []
        if len(missing):
            parts.append(_text("Missing metrics: " + " | ".join(sorted(set(missing)))[:600]))
        sections.append(_section("Metrics", parts))
    set_tables = _set_metrics_tables(run_dir, contracts, better, short)
    if set_tables:
        sections.append(_section("Set-level metrics", [_tbl(t) for t in set_tables]))

    # -- performance ----------------------------------------------------------------------------------
    if prof is not None and not prof.empty:
        ids = sorted(prof["device_id"].unique())
        # several devices (a Ray profile): a curve per (method, device); stages and quality-speed on the first
        main = prof[prof["device_id"] == ids[0]] if len(ids) > 1 else prof
        dev = " | ".join(ids) if len(ids) > 1 else str(prof["device"].iloc[0])
        figs = figures.performance(prof, fig_dir, perf_label, dev)
        figs += figures.stages(main, fig_dir, perf_label)
        common = set(prof.loc[prof["status"] == "ok", "size"].astype(int)) & set(df["size"].astype(int))
        psize = max(common) if common else size  # quality and speed measured at the same size
        ok_prof = main[(main["status"] == "ok") & (main["size"] == psize)].set_index("method")
        pts = df[(df["status"] == "ok") & (df["size"] == psize)].groupby("method")[metrics].mean()
        pts["latency_s"] = ok_prof["median_s"].reindex(pts.index)
        figs += figures.quality_speed(
            pts, fig_dir, label, [m for m in MAIN_METRICS if m in pts], better, psize
        )
        conv = sorted(set(prof["peak_mem_convention"].dropna())) if "peak_mem_convention" in prof else []
        sections.append(
            _section(
                "Performance",
                [
                    (_fig_md(figs, out_dir), _fig_html(figs, out_dir)),
                    _tbl(tables.performance(prof, short)),
                    _text("Timed at each method's default alpha. Peak memory convention: "
                          + ("; ".join(conv) or "not recorded")),
                ],
            )
        )
    else:
        sections.append(
            _section(
                "Performance",
                [
                    _text(
                        "No profile records in this run "
                        "(run with --profile, or `sanet-bench profile --out RUN/profile`)."
                    )
                ],
            )
        )

    sections.extend(extra_sections)

    # -- provenance -----------------------------------------------------------------------------------
    prov: list[tuple[str, str]] = []
    prov.append(
        _tbl(
            tables.Table(
                ["method", "weights"],
                [[m, labels.long_label(weights.get(m))] for m in methods],
                caption="weights identity per method (sha256 of each official file)",
            )
        )
    )
    metric_rows = [
        [
            m,
            c.get("compares", ""),
            tables.arrow(c.get("higher_is_better"))
            + (" higher is better" if c.get("higher_is_better") else " lower is better"),
            c.get("input_range", ""),
            c.get("convention", ""),
            ", ".join(c.get("needs", [])),
        ]
        for m, c in contracts.items()
    ]
    prov.append(
        _tbl(
            tables.Table(
                ["metric", "compares", "direction", "input range", "convention", "needs"],
                metric_rows,
                caption="metric conventions",
            )
        )
    )
    env_rows = [(k, v) for k, v in env.items() if k != "versions"] + list((env.get("versions") or {}).items())
    prov.append(_tbl(_kv_table(env_rows, "environment")))
    cfg = json.dumps(manifest.get("config", {}), indent=2, sort_keys=True)
    cfg_hash = html.escape(str(manifest.get("config_hash")))
    prov.append(
        (
            f"Config (sha256 {manifest.get('config_hash')}):\n\n```json\n{cfg}\n```",
            f"<p>Config (sha256 {cfg_hash}):</p><pre>{html.escape(cfg)}</pre>",
        )
    )
    imgs = [
        [r, i["name"], i.get("provenance") or "", (i.get("sha256") or "")[:16]]
        for r, key in (("content", "contents"), ("style", "styles"))
        for i in grid.get(key, [])
    ]
    if imgs:
        prov.append(
            _tbl(
                tables.Table(["role", "image", "provenance", "sha256 (prefix)"], imgs, caption="grid images")
            )
        )
    failed = df[df["status"] != "ok"]  # the methods that could not run at all have their own section
    if not failed.empty:
        rows = [
            [named[r["method"]], f"{r['content']} × {r['style']} @ {r['size']}", str(r["error"])]
            for _, r in failed.head(50).iterrows()
        ]
        prov.append(
            _tbl(tables.Table(["method", "cell", "error"], rows, caption=f"{len(failed)} failed cells"))
        )
    sections.append(_section("Provenance", prov))

    # -- data and output files ------------------------------------------------------------------------
    data_dir = out_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(data_dir / "results.csv", everything.to_csv(index=False).encode())
    atomic_write_bytes(data_dir / "summary.csv", results.summary(everything).to_csv().encode())
    if prof is not None:
        atomic_write_bytes(data_dir / "profile.csv", prof.to_csv(index=False).encode())
    links = "Raw data: [results.csv](data/results.csv), [summary.csv](data/summary.csv)" + (
        ", [profile.csv](data/profile.csv)" if prof is not None else ""
    )
    title = f"sanet-bench report — {run_dir.resolve().name}"
    md = f"# {title}\n\n" + "\n\n".join(f"## {s.title}\n\n{s.markdown}" for s in sections) + f"\n\n{links}\n"
    body = "".join(f"<h2>{html.escape(s.title)}</h2>{s.html}" for s in sections)
    links_html = (
        '<p>Raw data: <a href="data/results.csv">results.csv</a>, <a href="data/summary.csv">summary.csv</a>'
        + (', <a href="data/profile.csv">profile.csv</a>' if prof is not None else "")
        + "</p>"
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>{body}{links_html}</body></html>"
    )
    atomic_write_bytes(out_dir / "report.md", md.encode())
    atomic_write_bytes(out_dir / "index.html", page.encode())
    return out_dir / "index.html"


def write_pages(
    out_dir: str | Path, title: str, sections: list[Section], links: list[tuple[str, str]] = ()
) -> Path:
    """Write ``out_dir/report.md`` and ``out_dir/index.html`` from ``sections`` in the main report's layout
    (same CSS, headings and offline HTML); ``links`` are (label, relative path) pairs listed as raw data.
    For reports other than a run's (e.g. :func:`sanet_bench.report.ablation.render_ablation`)."""
    out_dir = Path(out_dir)
    md_links = ", ".join(f"[{label}]({path})" for label, path in links)
    html_links = ", ".join(f'<a href="{html.escape(path)}">{html.escape(label)}</a>' for label, path in links)
    md = f"# {title}\n\n" + "\n\n".join(f"## {s.title}\n\n{s.markdown}" for s in sections)
    body = "".join(f"<h2>{html.escape(s.title)}</h2>{s.html}" for s in sections)
    if links:
        md += f"\n\nRaw data: {md_links}"
        body += f"<p>Raw data: {html_links}</p>"
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    atomic_write_bytes(out_dir / "report.md", (md + "\n").encode())
    atomic_write_bytes(out_dir / "index.html", page.encode())
    return out_dir / "index.html"
