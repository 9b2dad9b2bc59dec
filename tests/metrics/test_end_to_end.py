"""`run` with the field's metrics (artfid, fid, cfsd, histogram_loss) on a small folder grid: with the
metrics' weight files in their official layouts (random values) every (method, size) gets a finite set row
and the report shows it; without them the run completes and the report names each missing metric's fix."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from test_runner import write_grid

from sanet_bench import results, runner
from sanet_bench.config import RunConfig
from sanet_bench.report import render

METRICS = ["artfid", "fid", "cfsd", "histogram_loss"]
METHODS = ["adain", "sanet"]


def _run(tmp_path: Path, weights_dir: Path) -> tuple[Path, str]:
    grid = write_grid(tmp_path / "grid")  # contents 96x72 -> 107x80 at size 80 (ArtFID needs >= 75 px)
    cfg = RunConfig(methods=METHODS, grid=f"folder:{grid}", sizes=[80], weights="random",
                    weights_dir=str(weights_dir), max_pairs=3, metrics=METRICS, references=False,
                    profile=False, report=False, out=str(tmp_path / "run"))
    runner.run(cfg, progress=False)
    md = (render(tmp_path / "run", tmp_path / "rep").parent / "report.md").read_text()
    return tmp_path / "run", md


@pytest.mark.slow  # Inception-v3 on CPU
def test_run_with_the_metric_weights_gives_a_set_row_per_method_and_size(tmp_path, metric_weights):
    run, md = _run(tmp_path, metric_weights / "w")
    cells, sets = results.load(run), results.load_sets(run)
    assert (cells["status"] == "ok").all() and len(cells) == 2 * 3
    assert cells[["cfsd", "histogram_loss"]].notna().all().all() and cells["missing"].isna().all()
    assert sorted(zip(sets["method"], sets["size"], strict=True)) == [("adain", 80), ("sanet", 80)]
    assert (sets["cells"] == 3).all() and sets["missing"].isna().all()
    assert all(math.isfinite(v) and v > 0 for v in sets[["artfid", "fid"]].to_numpy().ravel())
    assert (sets["artfid"] > 1).all()  # (1 + content distance) * (1 + FID)
    section = md[md.index("## Set-level metrics"):]
    assert "set-level metrics at 80 px" in section
    assert (sets["fid_lo"] < sets["fid"]).all() and (sets["fid"] < sets["fid_hi"]).all()  # jackknife
    assert sets["artfid_lo"].notna().all() and sets["no_interval"].isna().all()
    for _, r in sets.iterrows():
        artfid, fid = (f"{r[m]:.4g} [{r[m + '_lo']:.4g}, {r[m + '_hi']:.4g}]" for m in ("artfid", "fid"))
        assert f"| {r['method']} [RANDOM WEIGHTS] | 1 | 3 | {artfid} | {fid} |  |" in section
    assert re.search(r"\| adain \[RANDOM WEIGHTS\] α=1 \| random \| 3/3 \| [\d.e+]+ \[", md)  # cfsd interval


def test_run_without_the_metric_weights_completes_and_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no AlexNet for ArtFID's LPIPS either
    empty = tmp_path / "weights"
    empty.mkdir()
    run, md = _run(tmp_path, empty)
    cells, sets = results.load(run), results.load_sets(run)
    assert (cells["status"] == "ok").all() and cells["histogram_loss"].notna().all()
    assert cells["cfsd"].isna().all() and cells["missing"].str.contains("vgg19-dcbb9e9d.pth not found").all()
    assert len(sets) == 2 and (sets["status"] == "ok").all() and sets[["artfid", "fid"]].isna().all().all()
    fix = f"not found in {empty}; run `sanet-bench weights pull metrics`"
    assert all(f"fid: pt_inception-2015-12-05-6726825d.pth {fix}" in m for m in sets["missing"])
    assert all("artfid: art_inception.pth " + fix in m for m in sets["missing"])
    section = md[md.index("## Set-level metrics"):]
    assert section.count("pt_inception-2015-12-05-6726825d.pth " + fix) == 2  # a row per method
    assert "Missing metrics: cfsd: vgg19-dcbb9e9d.pth " + fix in md
