from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from sanet_bench.ablation import VARIANTS, AblationConfig, run_ablation
from sanet_bench.config import load
from sanet_bench.errors import ConfigError
from sanet_bench.train import TrainConfig, read_losses


def _grid_folder(root: Path) -> Path:
    g = np.random.default_rng(0)
    for role, n in (("content", 2), ("style", 2)):
        (root / role).mkdir(parents=True)
        for i in range(n):
            lo = g.random((5, 6, 3))
            img = Image.fromarray((lo * 255).astype(np.uint8)).resize((80, 72), Image.Resampling.BILINEAR)
            img.save(root / role / f"{role[0]}{i}.png")
    return root


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    """Two variants, one update each, evaluated on 2 pairs of a folder grid (kept small for CPU)."""
    root = tmp_path_factory.mktemp("abl")
    grid = _grid_folder(root / "grid")
    tcfg = TrainConfig(iters=1, batch=1, crop=32, load_size=40, vgg="offline", save_every=1, log_every=1,
                       progress=False)
    acfg = AblationConfig(variants=["full", "no-identity"], grid=f"folder:{grid}", size=64, max_pairs=2,
                          out=str(root / "out"))
    return run_ablation(tcfg, acfg), acfg


def test_variants_start_from_the_same_weights_and_data(ablation):
    result, cfg = ablation
    first = {v: read_losses(result.out / "variants" / v / "losses.csv")[0] for v in cfg.variants}
    terms = ("loss_c", "loss_s", "l_identity1", "l_identity2")
    # losses of iteration 1 are computed before the first update: identical unless init or data differed
    assert [first["full"][k] for k in terms] == [first["no-identity"][k] for k in terms]
    assert first["full"]["total"] != first["no-identity"]["total"]  # only the lambdas differ
    a = torch.load(result.out / "variants" / "full" / "decoder_iter_1.pth", weights_only=True)
    b = torch.load(result.out / "variants" / "no-identity" / "decoder_iter_1.pth", weights_only=True)
    assert not torch.equal(a["1.weight"], b["1.weight"])
    meta = json.loads((result.out / "variants" / "no-identity" / "train_meta.json").read_text())
    assert meta["config"]["lambda_id1"] == meta["config"]["lambda_id2"] == 0.0
    assert meta["config"]["content_dir"].endswith("data/content")  # trained on the grid's own images


def test_report_shows_each_variants_metrics_on_the_same_pairs(ablation):
    result, cfg = ablation
    record = json.loads((result.out / "ablation.json").read_text())
    pairs = record["pairs"]
    assert len(pairs) == 2
    for v in cfg.variants:
        assert [[r["content"], r["style"]] for r in record["per_pair"][v]] == pairs
        for c, s in pairs:
            assert (result.out / "images" / v / f"{c}__{s}.png").is_file()
    md = result.report.read_text()
    assert "offline-random-vgg19" in md  # the encoder is named, not passed off as ImageNet VGG
    assert "![loss curves](loss_curves.png)" in md and (result.out / "loss_curves.png").stat().st_size > 0
    assert (result.out / "outputs.png").stat().st_size > 0
    header = next(line for line in md.splitlines() if line.startswith("| variant"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    for m in ("content_loss", "style_loss", "ssim"):
        assert m in cols
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    for row in result.table:
        cells = [c.strip() for c in rows[row["variant"]].strip().strip("|").split("|")]
        for m in ("content_loss", "style_loss", "ssim"):
            mean = np.mean([r[m] for r in record["per_pair"][row["variant"]]])
            assert row[m] == pytest.approx(mean) and cells[cols.index(m)] == f"{mean:.4g}"


@pytest.mark.slow
def test_rerun_resumes_instead_of_retraining(ablation):
    result, cfg = ablation
    tcfg = TrainConfig(**{**json.loads((result.out / "ablation.json").read_text())["train"]})
    again = run_ablation(tcfg, cfg)
    assert again.table == result.table  # same checkpoints, same evaluation


def test_unknown_variant_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown variant 'no-id'"):
        AblationConfig(variants=["no-id"]).validate()


def test_tiny_preset_is_the_documented_smoke_ablation():
    t = load(TrainConfig, "tiny", section="train")
    a = load(AblationConfig, "tiny", section="ablation")
    assert (t.crop, t.batch, t.vgg) == (64, 2, "offline") and t.content_dir == "" and t.iters <= 100
    assert a.variants == list(VARIANTS) and a.grid == "embedded"
    assert {"content_loss", "style_loss", "ssim"} <= set(a.metrics)


def test_cli_ablate_rejects_bad_variant_in_one_line(tmp_path):
    from cli import main

    r = CliRunner().invoke(main, ["ablate", "identity", "--variants", "full,bogus", "--out", str(tmp_path)])
    assert r.exit_code == 2
    assert r.output.strip().count("\n") == 0 and "unknown variant 'bogus'" in r.output
