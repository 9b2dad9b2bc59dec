"""The identity-loss ablation report: ``render_ablation(folder, out_dir)`` reads a folder written by
``sanet-bench ablate identity`` (``ablation.json``, ``images/``, ``variants/*/losses.csv``) and writes
``out_dir/index.html`` + ``report.md`` (the main report's layout), ``figures/`` and ``data/cells.csv``.
``sanet-bench report FOLDER`` calls it for such a folder. It needs no model code."""

from __future__ import annotations

import html
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import SanetBenchError
from ..io import atomic_write_bytes
from . import figures, tables
from .render import Section, _fig_html, _fig_md, _kv_table, _section, _tbl, _text, write_pages

RECORD = "ablation.json"
START = "start"
LOSS_TERMS = ("loss_c", "loss_s", "l_identity1", "l_identity2")
# The paper's claim (Park & Lee 2019, Sec. 4.3, the identity-loss figure): trained without the identity
# loss, the output loses the content's structure; with it, the structure is kept while the style transfers.
# As signs of (no-identity - full) per metric: +1 higher, -1 lower, 0 no direction claimed.
EXPECTED = {
    "content_loss": (1, "higher: content structure is lost"),
    "ssim": (-1, "lower: content structure is lost"),
    "style_loss": (0, "no direction claimed: both transfer the style"),
    "l_identity1": (1, "higher: D(T(x, x)) no longer returns x"),
    "l_identity2": (1, "higher: D(T(x, x)) no longer returns x's features"),
}
LOWER_IS_BETTER = {"content_loss": True, "style_loss": True, "ssim": False, "lpips": True,
                   "l_identity1": True, "l_identity2": True}


class AblationReportError(SanetBenchError):
    """The folder is not an ablation folder, or its record is unreadable."""


def is_ablation(folder: str | Path) -> bool:
    return (Path(folder) / RECORD).is_file()


def _read(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / RECORD).read_text())
    except FileNotFoundError:
        raise AblationReportError(
            f"{folder}: no {RECORD} here; pass a folder written by `sanet-bench ablate identity --out DIR`"
        ) from None
    except (OSError, ValueError) as e:
        raise AblationReportError(f"{folder / RECORD}: unreadable ({e}); rerun the ablation") from None


def _ci(s: dict[str, float] | None, signed: bool = False) -> str:
    if not s:
        return "–"
    f = "{:+.4g}" if signed else "{:.4g}"
    return f"{f.format(s['mean'])} [{f.format(s['low'])}, {f.format(s['high'])}]"


def _verdict(s: dict[str, float] | None, sign: int) -> str:
    """Whether the paired difference's CI agrees with the expected sign."""
    if not s:
        return "not measured"
    if s["low"] <= 0 <= s["high"]:
        return "no clear difference (CI contains 0)"
    measured = 1 if s["low"] > 0 else -1
    if sign == 0:
        return "higher" if measured > 0 else "lower"
    return "as the paper" if measured == sign else "CONTRADICTS the paper"


def _start_label(rec: dict[str, Any]) -> str:
    init = rec.get("init") or {}
    kind = init.get("kind", "random")
    if kind == "demo":
        return "demo SANet weights (sanet-bench's, on the offline random encoder; NOT the paper's model)"
    if kind == "dir":
        return f"checkpoint folder {rec['train'].get('init_dir')} ({', '.join(init.get('files', {}))})"
    return f"random decoder and transform (seed {init.get('seed')}): untrained"


# ------------------------------------------------------------------------------------------------ figures
def _save_png(fig: Any, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=figures.DPI, bbox_inches="tight")
    figures.plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _img(path: Path) -> Any:
    from ..errors import ImageError
    from ..images import load_image

    try:
        return figures._as_array(load_image(path)), ""
    except ImageError as e:
        return None, str(e)[:60]


def outputs_figure(folder: Path, rec: dict[str, Any], fig_dir: Path) -> Path:
    """Rows: ``figure_pairs`` of the evaluated pairs; columns: content, style, the start, each variant."""
    a = rec["ablation"]
    pairs = rec["pairs"]
    k = min(a.get("figure_pairs", 4), len(pairs))
    shown = [pairs[round(i * len(pairs) / k)] for i in range(k)]
    models = [START, *a["variants"]]
    lam = {r["variant"]: (r["lambda_id1"], r["lambda_id2"]) for r in rec["table"]}
    titles = ["content", "style", "start\n(every variant's init)"]
    titles += [f"{v}\nλ_id1 {lam[v][0]:g}, λ_id2 {lam[v][1]:g}" for v in a["variants"]]
    cell = figures.CELL_IN * 1.2
    fig, axes = figures.plt.subplots(k, len(titles), figsize=(cell * len(titles), cell * k + 0.6),
                                     squeeze=False)
    for r, (c, s) in enumerate(shown):
        paths = [folder / "images" / "content" / f"{c}.png", folder / "images" / "style" / f"{s}.png"]
        paths += [folder / "images" / m / f"{c}__{s}.png" for m in models]
        for j, p in enumerate(paths):
            img, err = _img(p)
            figures._show(axes[r][j], img, err)
            if r == 0:
                axes[r][j].set_title(titles[j])
        axes[r][0].set_ylabel(f"{c}\n× {s}", fontsize=8)
    fig.suptitle(f"Outputs at {a['size']} px: the same cells for every variant")
    fig.subplots_adjust(wspace=0.04, hspace=0.06)
    return _save_png(fig, fig_dir / "outputs.png")


def loss_figure(folder: Path, rec: dict[str, Any], fig_dir: Path) -> Path:
    """The unweighted training losses of every variant against the iteration (log scale)."""
    variants = rec["ablation"]["variants"]
    fig, axes = figures.plt.subplots(1, len(LOSS_TERMS), figsize=(3.6 * len(LOSS_TERMS), 3.0))
    for v in variants:
        path = folder / "variants" / v / "losses.csv"
        if not path.is_file():
            continue
        df = pd.read_csv(path).dropna()
        for ax, term in zip(axes, LOSS_TERMS, strict=True):
            ax.plot(df["iteration"], df[term], label=v)
    for ax, term in zip(axes, LOSS_TERMS, strict=True):
        ax.set_title(f"{term} (unweighted)")
        ax.set_xlabel("iteration")
        ax.set_yscale("log")
    axes[0].legend()
    fig.tight_layout()
    return _save_png(fig, fig_dir / "loss_curves.png")


# ------------------------------------------------------------------------------------------------ tables
def _expected_table(rec: dict[str, Any]) -> tuple[tables.Table | None, list[str]]:
    """Paper's expectation vs the measured paired difference (no-identity - full); the contradictions."""
    diff = rec.get("vs_full", {}).get("no-identity")
    if diff is None:
        return None, []
    rows, contra = [], []
    for m, (sign, words) in EXPECTED.items():
        if m not in diff:
            continue
        verdict = _verdict(diff[m], sign)
        if verdict.startswith("CONTRADICTS"):
            contra.append(m)
        rows.append([m, words, _ci(diff[m], signed=True), verdict])
    caption = ("no-identity minus full over the same cells: mean [bootstrap 95% CI]; a verdict needs the CI "
               "to exclude 0")
    return tables.Table(["metric", "paper: no-identity vs full", "measured difference", "verdict"], rows,
                        caption=caption), contra


def _metric_table(rec: dict[str, Any], names: list[str]) -> tables.Table:
    models = [START, *rec["ablation"]["variants"]]
    lam = {r["variant"]: r for r in rec["table"]}
    header = ["model", "λ_id1", "λ_id2"]
    header += [f"{m} {tables.arrow(not LOWER_IS_BETTER.get(m, True))}" for m in names]
    rows = []
    for k in models:
        lid = ("–", "–") if k == START else (f"{lam[k]['lambda_id1']:g}", f"{lam[k]['lambda_id2']:g}")
        rows.append([k, *lid, *[_ci(rec["summary"][k].get(m)) for m in names]])
    n = len(rec["pairs"])
    return tables.Table(header, rows, caption=f"mean over {n} cells [seeded bootstrap 95% CI]; identity "
                        "losses on the evaluation images with the training encoder")


def _diff_table(rec: dict[str, Any], names: list[str]) -> tables.Table | None:
    vs = rec.get("vs_full", {})
    if not vs:
        return None
    rows = [[v, *[_ci(vs[v].get(m), signed=True) for m in names]] for v in vs]
    return tables.Table(["variant minus full", *names], rows,
                        caption="paired difference to full over the same cells [bootstrap 95% CI]")


def _train_table(rec: dict[str, Any]) -> tables.Table:
    rows = [[r["variant"], *[f"{r[f'train_{k}']:.4g}" for k in LOSS_TERMS],
             f"{rec['seconds_per_step'].get(r['variant'], 0):.2f}"] for r in rec["table"]]
    return tables.Table(["variant", *LOSS_TERMS, "s/step"], rows,
                        caption="unweighted training losses at the last logged iteration (one batch)")


# ------------------------------------------------------------------------------------------------ render
def render_ablation(folder: str | Path, out_dir: str | Path | None = None) -> Path:
    """Render the ablation in ``folder`` into ``out_dir`` (default ``reports/<folder name>``); returns the
    index.html path. ``out_dir=folder`` writes the report beside the run (what ``ablate identity`` does)."""
    folder = Path(folder)
    rec = _read(folder)
    out_dir = Path(out_dir) if out_dir is not None else Path("reports") / folder.resolve().name
    fig_dir = out_dir / "figures"
    if fig_dir.exists():
        shutil.rmtree(fig_dir)
    fig_dir.mkdir(parents=True)
    t, a = rec["train"], rec["ablation"]
    names = [m for m in [*a["metrics"], "l_identity1", "l_identity2"] if m in rec["summary"][START]]
    enc = rec["encoder"]
    enc_line = enc.get("id") or f"{enc['kind']} {enc.get('path')} sha256={enc.get('sha256')}"
    sections: list[Section] = []

    # -- summary --------------------------------------------------------------------------------------
    head = [_text(
        f"Park & Lee 2019, Eq. 4-8: {len(a['variants'])} variants differ only in the identity-loss weights; "
        f"each trains {t['iters']} steps from the same start, seed ({t['seed']}) and data, then all are "
        f"scored on the same {len(rec['pairs'])} (content, style) cells of grid `{a['grid']}` at "
        f"{a['size']} px."
    )]
    loud = [f"start: {_start_label(rec)}", f"training encoder: {enc_line}"]
    head.append((
        "> **Not the paper's models or data scale — these numbers describe this run only:**\n"
        + "\n".join(f"> - {x}" for x in loud),
        '<div class="loud"><b>Not the paper\'s models or data scale — these numbers describe this run '
        "only:</b><ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in loud) + "</ul></div>",
    ))
    exp, contra = _expected_table(rec)
    if exp is not None:
        head.append(_tbl(exp))
        if contra:
            head.append(_text(
                f"At this scale the measured effect CONTRADICTS the paper for {', '.join(contra)}: "
                "the no-identity variant is on the other side of full than the paper reports."
            ))
        else:
            agree = [m for m, (sign, _) in EXPECTED.items() if sign and m in rec["vs_full"]["no-identity"]
                     and _verdict(rec["vs_full"]["no-identity"][m], sign) == "as the paper"]
            head.append(_text(
                "Nothing measured here contradicts the paper; in the paper's direction with a CI that "
                f"excludes 0: {', '.join(agree) or 'none'}."
            ))
    else:
        head.append(_text("The paper's comparison needs both the full and the no-identity variants."))
    sections.append(_section("Summary", head))

    # -- metrics, figures -----------------------------------------------------------------------------
    parts = [_tbl(_metric_table(rec, names))]
    diff = _diff_table(rec, names)
    if diff is not None:
        parts.append(_tbl(diff))
    parts.append(_tbl(_train_table(rec)))
    if rec.get("missing_networks"):
        parts.append(_text(f"Missing metric networks: {rec['missing_networks']}"))
    sections.append(_section("Metrics", parts))
    figs = [outputs_figure(folder, rec, fig_dir)]
    sections.append(_section("Outputs", [(_fig_md(figs, out_dir), _fig_html(figs, out_dir))]))
    figs = [loss_figure(folder, rec, fig_dir)]
    sections.append(_section("Training losses", [(_fig_md(figs, out_dir), _fig_html(figs, out_dir))]))

    # -- settings and provenance ----------------------------------------------------------------------
    mach = rec.get("machine", {})
    sec = rec.get("seconds", {})
    settings = [
        ("training", f"{t['iters']} steps, batch {t['batch']}, {t['crop']} px crops of images resized to "
                     f"{t['load_size']} px ({t['resize']}), Adam lr {t['lr']} "
                     f"(transform x{t.get('transform_lr', 1):g}), decay {t['lr_decay']}, seed {t['seed']}"),
        ("lambdas (full)", f"c {t['lambda_c']:g}, s {t['lambda_s']:g}, id1 {t['lambda_id1']:g}, "
                           f"id2 {t['lambda_id2']:g}"),
        ("start", _start_label(rec)),
        ("training images", f"content {t['content_dir']}, style {t['style_dir']}"),
        ("training encoder", enc_line),
        ("metrics", f"{', '.join(a['metrics'])} on the saved 8-bit outputs; VGG: {rec['metrics_encoder']}"),
        ("seconds per step", ", ".join(f"{v} {s:.2f}" for v, s in rec["seconds_per_step"].items())),
        ("wall time", f"train {sec.get('train', 0):.0f} s, evaluation {sec.get('eval', 0):.0f} s"),
        ("machine", f"{mach.get('cpus')} CPUs, {mach.get('torch_threads')} torch threads, load average "
                    f"{mach.get('load_before')} before, {mach.get('load_after')} after"),
    ]
    cfg = json.dumps({"train": t, "ablation": a}, indent=2, sort_keys=True)
    sections.append(_section("Settings", [
        _tbl(_kv_table(settings)),
        (f"```json\n{cfg}\n```", f"<pre>{html.escape(cfg)}</pre>"),
    ]))

    data_dir = out_dir / "data"
    rows = [{"model": k, **{c: v for c, v in r.items() if c != "missing"}}
            for k, cells in rec["cells"].items() for r in cells]
    atomic_write_bytes(data_dir / "cells.csv", pd.DataFrame(rows).to_csv(index=False).encode())
    title = f"SANet identity-loss ablation — {folder.resolve().name}"
    return write_pages(out_dir, title, sections, links=[("cells.csv", "data/cells.csv")])
