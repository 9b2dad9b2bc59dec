"""The report renders a run folder into offline HTML + Markdown with every figure, loud weight labels and
the better-direction/best-in-bold tables. Built on a synthetic run folder so it is fast and exact."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from sanet_bench import results
from sanet_bench.images import save_image
from sanet_bench.report import render
from sanet_bench.report.tables import (
    content_copies,
    fronts_by_kind,
    metric_summary,
    pareto_front,
    per_style,
    significance,
)

CONTRACTS = {
    "content_loss": {
        "compares": "output-content",
        "higher_is_better": False,
        "input_range": "RGB [0,1]",
        "convention": "relu4_1+relu5_1 mvn MSE",
        "needs": ["vgg19-normalised"],
    },
    "ssim": {
        "compares": "output-content",
        "higher_is_better": True,
        "input_range": "RGB [0,1]",
        "convention": "luminance SSIM",
        "needs": [],
    },
}


def _run_folder(root: Path, methods=("sanet", "adain", "wct"), sizes=(32, 48), profile=True) -> Path:
    run = root / "run"
    g = torch.Generator().manual_seed(0)
    grid = {"name": "tiny", "contents": [], "styles": []}
    for role, names in (("content", ("c1", "c2")), ("style", ("s1", "s2"))):
        for n in names:
            p = save_image(torch.rand(1, 3, 40, 56, generator=g), root / "grid" / role / f"{n}.png")
            grid[role + "s"].append(
                {"name": n, "path": str(p), "provenance": f"generated {n}", "sha256": "ab" * 32}
            )
    rows = []
    for i, m in enumerate(methods):
        for size in sizes:
            for c in ("c1", "c2"):
                for s in ("s1", "s2"):
                    out = f"images/{m}/{size}/{c}__{s}__a1.png"
                    failed = m == "wct" and c == "c2" and s == "s2" and size == sizes[-1]
                    if not failed:
                        save_image(torch.rand(1, 3, size, size, generator=g), run / out)
                    rows.append(
                        {
                            "key": f"{m}|{c}|{s}|{size}|1",
                            "method": m,
                            "content": c,
                            "style": s,
                            "size": size,
                            "alpha": 1.0,
                            "style_size": size,
                            "status": "failed" if failed else "ok",
                            "error": "out of memory at 48 px on cpu" if failed else None,
                            "content_loss": None if failed else 1.0 + i + 0.01 * size,
                            "ssim": None if failed else 0.5 - 0.1 * i,
                            "missing": "",
                            "seconds": 0.1 * (i + 1),
                            "output": out,
                            "weights": "official" if m == "sanet" else "random",
                        }
                    )
    run.mkdir(parents=True, exist_ok=True)
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    weights = {m: {"source": "random", "seed": 0} for m in methods}
    weights["sanet"] = {"source": "official", "files": {"decoder_iter_500000.pth": "d" * 64}}
    manifest = {
        "config": {"methods": list(methods)},
        "config_hash": "f" * 64,
        "metrics": CONTRACTS,
        "weights": weights,
        "grid": grid,
        "encoder": "official vgg_normalised.pth sha256=" + "e" * 64,
        "environment": {"commit": "abc123", "device": "cpu", "cpu": "test cpu", "torch": "2.x"},
    }
    (run / "manifest.json").write_text(json.dumps(manifest))
    if profile:
        recs = []
        for i, m in enumerate(methods):
            for size in (*sizes, 64):
                oom = m == "wct" and size == 64
                recs.append(
                    {
                        "method": m,
                        "size": size,
                        "device": "cpu",
                        "status": "oom" if oom else "ok",
                        "median_s": None if oom else 0.01 * (i + 1) * size,
                        "iqr_s": 0.001,
                        "samples_s": [0.01],
                        "stages": {"encode": 0.002 * size, "decode": 0.001 * size},
                        "peak_mem_bytes": None if oom else 2**20 * size,
                        "flops": 1e9,
                        "gflops_per_s": 3.0,
                        "peak_mem_convention": "cpu peak RSS delta in a fresh process",
                        "env": {},
                    }
                )
        (run / "profile").mkdir()
        (run / "profile" / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return run


def test_report_renders_both_formats_offline(tmp_path):
    run = _run_folder(tmp_path)
    index = render(run, tmp_path / "rep")
    out = index.parent
    page, md = index.read_text(), (out / "report.md").read_text()
    # every referenced file exists inside the report folder; nothing outside it is referenced
    refs = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert refs and all(not re.match(r"^[a-z]+:", r) and ".." not in r and (out / r).is_file() for r in refs)
    assert not re.search(r"https?://|<script|<link", page)
    for name in (
        "comparison_48_p1.png",
        "latency.png",
        "latency.svg",
        "memory.png",
        "stages.png",
        "quality_speed.png",
    ):
        assert (out / "figures" / name).is_file(), name
        assert f"figures/{name}" in page or name.endswith(".svg")
    assert "figures/comparison_48_p1.png" in md and "data/results.csv" in md
    # loud labels for non-official weights, sha256 for official
    assert "adain [RANDOM WEIGHTS]" in page and "RANDOM WEIGHTS — untrained" in md
    assert "decoder_iter_500000.pth sha256=" + "d" * 64 in md
    # the failure is listed, conventions are stated
    assert "out of memory at 48 px" in md and "luminance SSIM" in md and "higher is better" in md
    assert pd.read_csv(out / "data" / "results.csv").shape[0] == 24


def test_comparison_figure_is_legible(tmp_path):
    from PIL import Image

    run = _run_folder(tmp_path, profile=False)
    out = render(run, tmp_path / "rep").parent
    w, h = Image.open(out / "figures" / "comparison_48_p1.png").size
    # 4 rows (pairs) x 5 columns (content, style, 3 methods): each image cell >= ~180 px at 100 % zoom
    assert w / 5 >= 180 and h / 4 >= 180
    assert "No profile records" in (out / "report.md").read_text()


def test_large_grids_are_paged(tmp_path):
    from sanet_bench.report import figures

    run = _run_folder(tmp_path, profile=False)
    df = pd.read_json(run / "results.jsonl", lines=True)
    paths = figures.comparison_pages(
        df, {}, run, tmp_path / "f", 48, ["sanet"], lambda m: (m, False), rows_per_page=3
    )
    assert [p.name for p in paths] == ["comparison_48_p1.png", "comparison_48_p2.png"]


def test_pareto_front_lower_is_better_in_both():
    pts = {"a": (2.0, 1.0), "b": (0.6, 3.0), "c": (3.0, 2.0), "tie": (2.0, 1.0), "nan": (float("nan"), 0.1)}
    assert pareto_front(pts) == {"a", "b", "tie"}  # c: a is lower in both; equal points dominate no one
    kinds = {"a": "demo", "b": "demo", "c": "official", "tie": "demo"}
    assert fronts_by_kind(pts, kinds) == {"a", "b", "c", "tie"}  # c is alone among the official ones
    assert fronts_by_kind(pts, kinds, exclude={"b"}) == {"a", "c", "tie"}


def test_summary_bolds_the_front_not_the_best_of_each_column():
    df = pd.DataFrame(
        {
            "method": ["a", "a", "b", "b", "c", "c", "m", "m"],
            "status": ["ok"] * 8,
            "style": ["s1", "s2"] * 4,
            # b barely stylises: lowest content loss, highest SSIM, worst style loss
            "content_loss": [1.0, 3.0, 0.5, 0.7, 2.5, 3.5, 9.0, 9.0],
            "style_loss": [1.0, 1.0, 2.0, 2.2, 1.5, 1.5, 5.0, 5.0],
            "ssim": [0.9, 0.7, 0.95, 0.97, 0.2, 0.4, 0.1, 0.1],
        }
    )
    better = {"content_loss": False, "style_loss": False, "ssim": True}
    kinds = {"a": "demo", "b": "demo", "c": "demo", "m": "official"}
    t = metric_summary(df, ["content_loss", "style_loss", "ssim"], better, {"b": "b [DEMO]"}, kinds=kinds)
    assert t.header[:3] == ["method", "weights", "cells ok/all"]
    assert t.header[3:] == ["content_loss ↓", "style_loss ↓", "ssim ↑"]
    assert [r[:3] for r in t.rows] == [
        ["a", "demo", "2/2"], ["b [DEMO]", "demo", "2/2"], ["c", "demo", "2/2"], ["m", "official", "2/2"]
    ]
    a = results.confidence(df, ["content_loss"]).set_index("method").loc["a"]  # seeded: the same each time
    assert t.rows[0][3] == f"{a['mean']:.4g} [{a['lo']:.4g}, {a['hi']:.4g}]" and a["lo"] < 2 < a["hi"]
    assert "95% bootstrap interval" in t.caption
    # a and b are on the demo front, c is dominated by a; m is alone of its kind; SSIM is never bolded
    assert t.bold == {(i, c) for i in (0, 1, 3) for c in (0, 3, 4)}
    assert "**a**" in t.markdown() and "<b>b [DEMO]</b>" in t.html() and "**c**" not in t.markdown()
    assert "Pareto front" in t.caption and "same kind of weights" in t.caption
    ps = per_style(df, "ssim", True, {})
    assert ps.rows[0] == ["s1", "0.9", "0.95", "0.2", "0.1"] and ps.bold == set()


def test_a_method_that_returned_the_content_is_flagged_and_never_best():
    df = pd.DataFrame(
        {
            "method": ["a", "a", "lazy", "lazy", "b", "b"],
            "status": ["ok"] * 6,
            "style": ["s1", "s2"] * 3,
            "content_loss": [1.0, 3.0, 0.001, 0.003, 0.5, 0.7],
            "style_loss": [1.0, 1.0, 3.0, 3.0, 2.0, 2.0],
            "ssim": [0.9, 0.7, 1.0, 1.0, 0.2, 0.4],
        }
    )
    refs = pd.DataFrame(
        {"method": ["ref:content", "ref:style"], "content_loss": [0.0, 2.5], "ssim": [1.0, 0.1]}
    )
    assert content_copies(df, refs) == {"lazy": (pytest.approx(0.002), 2.5)}
    assert content_copies(df, refs.iloc[:1]) == {} and content_copies(df, None) == {}
    assert content_copies(df.assign(content_loss=df["content_loss"] + 0.05), refs) == {}  # 2% of 2.5: moved

    better = {"content_loss": False, "style_loss": False, "ssim": True}
    metrics = ["content_loss", "style_loss", "ssim"]
    t = metric_summary(df, metrics, better, {"lazy": "lazy [X]"}, refs, {"lazy"})
    assert {r for r, _ in t.bold} == {0, 2}  # without the flag "lazy" would be on the front
    assert metric_summary(df, metrics, better, {}, refs).bold >= {(1, 0)}
    assert "not bolded: lazy [X], which returned the content" in t.caption
    assert [r[0] for r in t.rows[3:]] == ["reference: ref:content", "reference: ref:style"]


def test_report_says_which_method_returned_the_content(tmp_path):
    run = _run_folder(tmp_path, profile=False)
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    for r in [r for r in rows if r["method"] == "sanet"]:  # two references; sanet's outputs are the content
        rows.append({**r, "key": "ref:style" + r["key"][5:], "method": "ref:style", "content_loss": 2.0})
        r["content_loss"] = 0.0001
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["config"]["method_options"] = {"sanet": {"iters": 5}}
    (run / "manifest.json").write_text(json.dumps(manifest))
    md = (render(run, tmp_path / "r").parent / "report.md").read_text()
    said = (r"sanet α=1, iters=5 returned the content: its mean content loss 0.0001 is under 1% of the style "
            r"image's own \(2\), so it did not move the image with its options \(iters=5\)")
    assert re.search(said, md)
    assert "**0.0001" not in md


def test_report_is_honest_about_what_ran_how_and_at_which_alpha(tmp_path):
    run = _run_folder(tmp_path, profile=False)
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    style_loss = {"sanet": 3.0, "adain": 1.0, "wct": 0.5}
    for r in rows:
        r["style_loss"] = None if r["status"] != "ok" else style_loss[r["method"]]
        if r["method"] == "wct":
            r.update(alpha=0.6, key=r["key"][:-1] + "0.6")
        if r["method"] == "sanet":
            r.update(input_policy="centre-cropped square", content_input="48x48", style_input="48x40")
        else:
            r.update(input_policy="any size", content_input="56x40", style_input="56x40")
    for c in ("c1", "c2"):
        for s in ("s1", "s2"):
            base = {"content": c, "style": s, "size": 48, "alpha": 1.0, "style_size": 48, "missing": ""}
            rows.append({**base, "key": f"stytr2|{c}|{s}|48|1", "method": "stytr2", "status": "failed",
                         "error": "stytr2: weights error"})
            for ref, losses in (("ref:content", (0.0, 2.0)), ("ref:style", (4.0, 0.01))):
                rows.append({**base, "key": f"{ref}|{c}|{s}|48|1", "method": ref, "status": "ok",
                             "content_loss": losses[0], "style_loss": losses[1], "ssim": 0.5})
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["metrics"]["style_loss"] = {**CONTRACTS["content_loss"], "convention": "gram"}
    fix = "stytr2: official files missing — run `sanet-bench weights pull stytr2`"
    manifest["weights"]["stytr2"] = {"source": "auto", "error": fix}
    manifest["method_options"] = {"adain": {"preserve_color": True}, "sanet": {}}
    manifest["input_policies"] = {"sanet": {"applied": "centre-cropped square", "note": "tokens on a grid"}}
    (run / "manifest.json").write_text(json.dumps(manifest))

    out = render(run, tmp_path / "rep").parent
    md = (out / "report.md").read_text()
    sections = dict(re.findall(r"^## (.+?)\n(.*?)(?=^## |\Z)", md, flags=re.S | re.M))
    # counts: method cells apart from reference cells
    assert "23 method cells ok, 5 failed; 8 reference cells" in sections["Summary"]
    # the method that could not run: one section with its fix, nowhere else
    assert "| stytr2 | run `sanet-bench weights pull stytr2` | stytr2: official files missing |" in md
    assert all("stytr2" not in text for title, text in sections.items()
               if title not in ("Methods that could not run", "Provenance"))
    assert "1 failed cells" in sections["Provenance"]
    # adapted inputs: which method, how, the sizes that went in, why
    adapted = sections["Adapted inputs"]
    assert "| sanet | centre-cropped square | 48x48 | 48x40 | tokens on a grid |" in adapted
    assert "adain" not in adapted and "wct" not in adapted
    # alpha and options in every label
    assert "wct [RANDOM WEIGHTS] α=0.6" in md and "adain [RANDOM WEIGHTS] α=1, preserve_color=True" in md
    assert "| sanet α=1 | official |" in md
    # bold: the Pareto front within one kind (sanet has more style loss than the unchanged content)
    assert "| **adain [RANDOM WEIGHTS] α=1, preserve_color=True** |" in md and "| **wct" in md
    assert "**sanet" not in md
    assert "Different kinds of model — do not rank them against each other" in sections["Summary"]
    for size in (32, 48):
        fig = f"figures/tradeoff_{size}.png"
        assert fig in sections["Metrics"] and (out / fig).is_file()


def test_cli_report_and_errors(tmp_path):
    from cli import main

    run = _run_folder(tmp_path, profile=False)
    res = CliRunner().invoke(main, ["report", str(run), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0 and (tmp_path / "r" / "index.html").is_file()
    res = CliRunner().invoke(main, ["report", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "no results.jsonl" in res.output and "Traceback" not in res.output


@pytest.mark.slow
def test_report_of_a_real_run(tmp_path):
    from sanet_bench.config import RunConfig
    from sanet_bench.runner import run as run_grid

    cfg = RunConfig(
        methods=["sanet", "adain", "wct"],
        sizes=[64],
        weights="random",
        max_pairs=2,
        out=str(tmp_path / "run"),
        profile=False,
        report=False,
    )
    run_grid(cfg, progress=False)
    index = render(tmp_path / "run", tmp_path / "rep")
    assert (index.parent / "figures" / "comparison_64_p1.png").is_file()
    # the CPU fp32 default, as each method's rows resolved it
    md = (index.parent / "report.md").read_text()
    assert "Winograd F(6x6,3x3) (NNPACK): sanet, adain, wct" in md


def test_performance_table_has_a_device_column_when_a_profile_holds_several():
    import pandas as pd

    from sanet_bench.report import tables

    prof = pd.DataFrame({"method": ["adain"] * 2, "size": [64, 64], "median_s": [0.01, 0.02],
                         "iqr_s": [0.0, 0.0], "peak_mem_bytes": [None, None], "gflops_per_s": [None, None],
                         "status": ["ok", "ok"], "device_id": ["GPU A", "GPU B"]})
    table = tables.performance(prof, {})
    assert table.header[:3] == ["method", "device", "size"]
    assert [r[1] for r in table.rows] == ["GPU A", "GPU B"]
    assert "device" not in tables.performance(prof.iloc[:1], {}).header


def _paired_frame(n_cells: int) -> pd.DataFrame:
    """a clearly below b on every cell; b and c differ by noise only."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=n_cells)
    return pd.DataFrame([
        {"method": m, "content": f"c{i}", "style": "s", "size": 32, "alpha": 1.0, "status": "ok",
         "content_loss": base[i] + shift + 0.01 * rng.normal()}
        for m, shift in (("a", 0.0), ("b", 1.0), ("c", 1.0)) for i in range(n_cells)
    ])


def test_significance_names_the_significant_differences_and_too_small_grids():
    (said,) = significance(_paired_frame(10), ["content_loss"], {"a": "A [RANDOM]"})
    assert said.startswith("content_loss: A [RANDOM] < b (p=")
    assert said.count(" < ") == 2 and "A [RANDOM] < c (p=" in said and "b < c" not in said
    assert said.endswith("; other differences not significant at 0.05 (Wilcoxon signed-rank, Holm over 3 "
                         "pairs)")
    (few,) = significance(_paired_frame(4), ["content_loss"], {})
    assert few.startswith("content_loss: too few shared cells to test (4 at most; a paired test needs 6)")
    # a method at another alpha still pairs with the others on (content, style, size)
    df = _paired_frame(10)
    df.loc[df["method"] == "b", "alpha"] = 0.5
    assert "a < b (p=" in significance(df, ["content_loss"], {})[0]


def test_report_shows_intervals_significance_and_set_metrics_per_size(tmp_path):
    run = _run_folder(tmp_path, profile=False)
    rows = []
    for m in ("sanet", "adain", "wct"):
        for size in (32, 48):
            fix = "pt_inception.pth not found in W; run `sanet-bench weights pull`"
            missing = {} if m != "wct" else {"fid": fix}
            rows.append({"key": f"set|{m}|{size}|1|{size}", "kind": "set", "method": m, "size": size,
                         "alpha": 1.0, "style_size": size, "cells": 4, "status": "ok",
                         "metrics": {"fid": None if missing else 10.0 + size}, "missing": missing})
    with open(run / "results.jsonl", "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["metrics"]["fid"] = {**CONTRACTS["content_loss"], "per_image": False, "convention": "pytorch"}
    (run / "manifest.json").write_text(json.dumps(manifest))
    md = (render(run, tmp_path / "rep").parent / "report.md").read_text()
    sections = dict(re.findall(r"^## (.+?)\n(.*?)(?=^## |\Z)", md, flags=re.S | re.M))
    assert re.search(r"\| 1\.\d+ \[1\.\d+, 1\.\d+\] \|", sections["Metrics"])  # sanet's content loss
    assert "Differences between methods (paired Wilcoxon" in sections["Metrics"]
    assert "- content_loss: sanet α=1 < adain [RANDOM WEIGHTS] α=1 (p=" in sections["Metrics"]
    sets = sections["Set-level metrics"]
    assert "set-level metrics at 32 px" in sets and "set-level metrics at 48 px" in sets
    assert "| sanet | 1 | 4 | 42 |" in sets and "| sanet | 1 | 4 | 58 |" in sets
    assert "| – | fid: pt_inception.pth not found in W; run `sanet-bench weights pull` |" in sets


def test_summary_names_each_method_s_convolution_path():
    from sanet_bench.report.render import _conv_paths

    df = pd.DataFrame({
        "method": ["adain", "adain", "artflow-adain", "mast", "sanet"],
        "winograd": [True, True, False, False, True],
        "channels_last": [False, False, True, False, False],
    })
    assert _conv_paths(df) == (
        "3x3 convolutions (outputs within the parity tolerances on each path): Winograd F(6x6,3x3) (NNPACK): "
        "adain, sanet; direct, channels_last: artflow-adain; direct: mast"
    )
    assert _conv_paths(df.drop(columns="winograd")) is None  # a run from before the field: nothing claimed
