"""The Metric objects give the previous implementation's values (fixture made at bc87850; see its README)."""

from __future__ import annotations

import json
from pathlib import Path

import lpips
import pytest
import torch
import torch.nn.functional as F

from sanet_bench.grids import get_grid
from sanet_bench.metrics import ExtractorCache, build, evaluate
from sanet_bench.metrics.extractors import LPIPSNet, VGGFeatures, build_lpips
from sanet_bench.nn.vgg import OFFLINE_VGG_ID, VGGEncoder, offline_vgg_normalised

FIXTURE = json.loads((Path(__file__).parents[1] / "fixtures" / "metrics" / "values.json").read_text())


def test_six_metrics_keep_their_values_on_the_embedded_grid():
    meta = FIXTURE["meta"]
    assert meta["encoder"] == OFFLINE_VGG_ID
    torch.manual_seed(meta["lpips_seed"])  # LPIPS's ImageNet AlexNet cannot be downloaded here: seeded random
    ref = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False).eval()
    backbone = {f"features.{k.split('.', 1)[1]}": v for k, v in ref.net.state_dict().items()}
    cache = ExtractorCache((
        VGGFeatures(VGGEncoder(offline_vgg_normalised()).eval(), OFFLINE_VGG_ID),
        LPIPSNet(build_lpips(backbone), "seeded random alexnet"),
    ))
    names = sorted(FIXTURE["cells"][0]["values"])
    metrics = build(names, extractors=cache)
    pairs = get_grid("embedded").pairs(meta["pairs"])
    assert [(c.name, s.name) for c, s in pairs] == [(x["content"], x["style"]) for x in FIXTURE["cells"]]
    for (c, s), want in zip(pairs, FIXTURE["cells"], strict=True):
        content, style = c.load(meta["size"], meta["policy"]), s.load(meta["size"], meta["policy"])
        out = 0.6 * content + 0.4 * F.interpolate(
            style, size=content.shape[-2:], mode="bilinear", align_corners=False
        )
        values, missing = evaluate(out, content, style, metrics)
        assert not missing
        for name in names:
            assert values[name] == pytest.approx(want["values"][name], rel=1e-6, abs=1e-12), name
    for m in metrics:  # compute(): the mean over the cells
        assert m.compute() == pytest.approx(
            sum(x["values"][m.name] for x in FIXTURE["cells"]) / len(FIXTURE["cells"]), rel=1e-6
        )
