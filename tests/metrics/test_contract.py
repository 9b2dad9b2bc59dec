"""The metric contract: metadata as data, update/compute/reset, shared extractors, and set-level metrics
through the runner (one set row per group, resumable, a failing metric recorded not raised)."""

from __future__ import annotations

import json

import pytest
import torch

from sanet_bench import results, runner
from sanet_bench.config import RunConfig
from sanet_bench.images import load_image
from sanet_bench.metrics import ExtractorCache, MetricMissing, SetMetric, build
from sanet_bench.metrics.base import PER_IMAGE_COMPARES, SET_COMPARES, Metric
from sanet_bench.metrics.extractors import ALEXNET, ALEXNET_FILE, ALEXNET_URL, COMPONENTS, VGG
from sanet_bench.metrics.ssim import luminance
from sanet_bench.nn.vgg import VGG_NORMALISED
from sanet_bench.registry import WeightFile, metric_specs, register_metric, unregister_metric


def _img(seed: int, h: int = 32, w: int = 32) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_every_registered_metric_declares_its_contract():
    specs = metric_specs()
    assert len(specs) >= 6
    for name, cls in specs.items():
        assert issubclass(cls, Metric) and cls.name == name
        assert isinstance(cls.higher_is_better, bool)
        assert cls.input_range and cls.convention
        assert cls.compares in (PER_IMAGE_COMPARES if cls.per_image else SET_COMPARES)
        assert isinstance(cls.weights, tuple) and all(isinstance(f, WeightFile) for f in cls.weights)
        assert set(cls.needs) <= {VGG, ALEXNET, *COMPONENTS} and bool(cls.needs) == bool(cls.weights)
        info = cls.info()
        json.dumps(info)  # the manifest entry is plain data
        assert info["per_image"] == cls.per_image and info["needs"] == list(cls.needs)
    for name in ("content_loss", "content_loss_raw", "style_loss", "style_loss_gram"):
        assert specs[name].weights == (VGG_NORMALISED,)
    assert specs["lpips"].weights[0] == ALEXNET_FILE and ALEXNET_FILE.sources[0].url == ALEXNET_URL


def test_alexnet_url_is_torchvisions():
    from torchvision.models import AlexNet_Weights

    assert ALEXNET_URL == AlexNet_Weights.IMAGENET1K_V1.url


def test_update_returns_the_value_compute_is_the_mean_and_reset_clears():
    (ssim,) = build(["ssim"])
    c = _img(0)
    got = [ssim.update(_img(s), c, c) for s in (1, 2, 3)]
    assert all(isinstance(v, float) for v in got)
    assert ssim.compute() == pytest.approx(sum(got) / 3, rel=1e-12)
    ssim.reset()
    with pytest.raises(MetricMissing, match="no images"):
        ssim.compute()
    assert ssim.update(c, c, c) == pytest.approx(1.0) and ssim.compute() == pytest.approx(1.0)


def test_extractors_are_loaded_lazily_and_shared_by_weights_identity():
    cache = ExtractorCache()
    a, b = build(["content_loss", "style_loss_gram"], extractors=cache)
    assert not cache.loaded()  # nothing loaded until a metric needs it
    assert a.missing() is None  # offline encoder: never missing
    assert a.extractor(VGG) is b.extractor(VGG) and len(cache.loaded()) == 1
    (other,) = build(["style_loss"], extractors=cache)
    assert other.extractor(VGG) is a.extractor(VGG)


def test_missing_encoder_names_the_component_and_the_fix(monkeypatch):
    import sanet_bench.nn.vgg as vgg_mod

    monkeypatch.delattr(vgg_mod, "offline_vgg_normalised")
    (m,) = build(["style_loss"], extractors=ExtractorCache())
    reason = m.missing()
    assert reason.startswith("metric encoder: vgg_normalised.pth not found") and "weights pull" in reason
    with pytest.raises(MetricMissing):
        m.update(_img(1), _img(2), _img(3))


# --------------------------------------------------------------------------------------- set-level, run
class MeanBrightness(SetMetric):
    """A real (if simple) set statistic: mean BT.601 luminance of the outputs over the set."""

    name, compares, higher_is_better = "test_mean_brightness", "outputs-styles", True
    convention = "mean over the set's outputs of the mean BT.601 luminance"

    def update(self, output, content, style):
        self.per_output.append(luminance(output).mean().item())

    def compute(self):
        if len(self.per_output) < 2:
            raise MetricMissing(f"{self.name}: needs at least 2 outputs, got {len(self.per_output)}")
        return sum(self.per_output) / len(self.per_output)

    def reset(self):
        self.per_output = []


class Broken(SetMetric):
    name, compares, higher_is_better = "test_broken_set", "outputs-contents-styles", False
    convention = "raises in update"

    def update(self, output, content, style):
        raise RuntimeError("boom")

    def compute(self):
        return 0.0

    def reset(self):
        pass


@pytest.fixture
def set_metrics():
    register_metric(MeanBrightness)
    register_metric(Broken)
    yield
    unregister_metric(MeanBrightness.name)
    unregister_metric(Broken.name)


def test_set_level_metric_gives_one_set_row_per_group_and_resume_adds_none(tmp_path, set_metrics):
    cfg = RunConfig(
        methods=["sanet"], sizes=[64], alphas=[1.0, 0.5], weights="random", out=str(tmp_path / "run"),
        report=False, profile=False, references=False, max_pairs=2, grid="embedded",
        metrics=["ssim", MeanBrightness.name, Broken.name],
    )
    first = runner.run(cfg, progress=False)
    assert (first.ok, first.failed) == (4, 0) and len(first.table) == 4  # set rows are not cells
    rows = results.read_rows(cfg.out)
    sets = [r for r in rows if r.get("kind") == "set"]
    assert sorted(r["key"] for r in sets) == ["set|sanet|64|0.5|64", "set|sanet|64|1|64"]
    for r in sets:
        assert r["status"] == "ok" and r["cells"] == 2
        cells = [x for x in rows if x.get("kind") != "set" and x["alpha"] == r["alpha"]]
        want = [luminance(load_image(tmp_path / "run" / x["output"])).mean().item() for x in cells]
        assert r["metrics"][MeanBrightness.name] == pytest.approx(sum(want) / 2, rel=1e-9)
        assert r["metrics"][Broken.name] is None and "boom" in r["missing"][Broken.name]
        assert MeanBrightness.name not in cells[0]["metrics"]  # per-image rows carry per-image metrics only
    manifest = results.read_manifest(cfg.out)
    assert manifest["metrics"][MeanBrightness.name]["per_image"] is False
    assert len(results.load_sets(cfg.out)) == 2
    second = runner.run(cfg, progress=False)
    assert second.skipped == 4 and len(results.read_rows(cfg.out)) == len(rows)  # no duplicated set row


def test_report_shows_the_set_rows(tmp_path, set_metrics):
    from sanet_bench.report import render

    cfg = RunConfig(
        methods=["sanet"], sizes=[64], weights="random", out=str(tmp_path / "run"), report=False,
        profile=False, references=False, max_pairs=2, grid="embedded", metrics=["ssim", MeanBrightness.name],
    )
    runner.run(cfg, progress=False)
    render(tmp_path / "run", tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    assert "Set-level metrics" in md and MeanBrightness.name in md
