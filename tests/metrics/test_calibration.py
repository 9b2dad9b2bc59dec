"""Our FID, ArtFID, CFSD and histogram loss against the reference code's outputs on the same inputs and the
same random weights in the official layouts (tests/fixtures/metric_calibration/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sanet_bench.errors import WeightsError
from sanet_bench.metrics import ExtractorCache, build, networks

CAL = Path(__file__).parent.parent / "fixtures" / "metric_calibration"
EXPECTED = json.loads((CAL / "expected.json").read_text())
N = 3


def _load(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"))).permute(2, 0, 1)[None].float() / 255


def _triples() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    img = CAL / "images"
    return [tuple(_load(img / d / f"{i}.png") for d in ("out", "content", "style")) for i in range(N)]


@pytest.fixture
def metrics(metric_weights):
    def make(names):
        return build(names, weights_dir=metric_weights / "w", extractors=ExtractorCache())

    return make


def test_histogram_loss_matches_styleid():
    (hist,) = build(["histogram_loss"])
    got = [hist.update(o, c, s) for o, c, s in _triples()]
    assert got == pytest.approx(EXPECTED["histogram_loss"], rel=1e-4)
    big = hist.score(_triples()[0][0], _load(CAL / "images" / "big_style.png"))  # resized to 256 first
    assert big == pytest.approx(EXPECTED["histogram_loss_big_style"], rel=1e-4)


def test_cfsd_matches_styleid(metrics):
    (cfsd,) = metrics(["cfsd"])
    got = [cfsd.update(o, c, s) for o, c, s in _triples()]
    assert got == pytest.approx(EXPECTED["cfsd"], rel=1e-2)


@pytest.mark.slow
def test_fid_and_artfid_match_the_packages(metrics):
    fid, artfid = metrics(["fid", "artfid"])
    for o, c, s in _triples():
        fid.update(o, c, s)
        artfid.update(o, c, s)
    assert fid.compute() == pytest.approx(EXPECTED["fid"], rel=1e-3, abs=1e-4)
    assert np.mean(artfid.distances) == pytest.approx(EXPECTED["art_fid_content_distance"], rel=1e-4)
    assert artfid.compute() == pytest.approx(EXPECTED["artfid"], rel=1e-3)


def test_random_file_is_not_the_published_one(metric_weight_files):
    with pytest.raises(WeightsError, match="6726825d"):
        networks.resolve(networks.FID_INCEPTION, metric_weight_files / "w")
