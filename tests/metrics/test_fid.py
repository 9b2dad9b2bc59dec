"""FID helpers, FID-infinity's refusal, and the set metrics missing (with the fix) without their weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sanet_bench.metrics import ExtractorCache, MetricMissing, build
from sanet_bench.metrics.fid import (
    fid_infinity,
    fid_of,
    frechet_distance,
    jackknife_interval,
    statistics,
    trace_sqrt_product,
)


def test_frechet_distance_of_gaussians_in_closed_form():
    # diagonal covariances: |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2
    mu1, mu2 = np.array([0.0, 1.0]), np.array([2.0, 1.0])
    a, b = np.array([1.0, 4.0]), np.array([9.0, 1.0])
    got = frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    assert got == pytest.approx(4 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())


@pytest.mark.parametrize(("n", "m"), [(6, 6), (5, 9), (40, 30)])
def test_low_rank_fid_equals_the_sqrtm_route(n, m):
    """Sets no larger than the feature dimension take the exact nuclear-norm route; it gives pytorch-fid's
    sqrtm value (here D = 32, so (40, 30) takes the sqrtm route itself and both agree trivially)."""
    rng = np.random.default_rng(n)
    a, b = rng.normal(size=(n, 32)), rng.normal(1.0, 2.0, size=(m, 32))
    sqrtm_route = frechet_distance(*statistics(a), *statistics(b))
    assert fid_of(a, b) == pytest.approx(sqrtm_route, rel=1e-7)
    s1, s2 = statistics(a)[1], statistics(b)[1]
    eig = np.linalg.eigvals(s1 @ s2).real.clip(min=0)
    assert trace_sqrt_product(a, b) == pytest.approx(np.sqrt(eig).sum(), rel=1e-6)


def test_jackknife_of_the_mean_is_the_textbook_standard_error():
    x = np.random.default_rng(3).normal(size=17)
    lo, hi = jackknife_interval(lambda i: x[i].mean(), len(x), 0.95)
    se = x.std(ddof=1) / np.sqrt(len(x))
    assert (lo, hi) == pytest.approx((x.mean() - 1.959964 * se, x.mean() + 1.959964 * se), rel=1e-6)


def test_fid_interval_brackets_the_value_and_needs_three_pairs():
    (m,) = build(["fid"], extractors=ExtractorCache())
    rng = np.random.default_rng(0)
    m.out_feats = [rng.normal(size=(1, 64)) for _ in range(12)]  # what update() accumulates
    m.style_feats = [rng.normal(0.5, 1.0, size=(1, 64)) for _ in range(12)]
    lo, hi = m.interval(0.95)
    assert lo < m.compute() < hi
    m.out_feats, m.style_feats = m.out_feats[:2], m.style_feats[:2]
    with pytest.raises(MetricMissing, match="needs 3"):
        m.interval(0.95)


def test_fid_infinity_refuses_small_sets_and_extrapolates_the_bias_away():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 4)), rng.normal(size=(40, 4))
    with pytest.raises(MetricMissing, match="at least 5000"):
        fid_infinity(a, b)
    inf = fid_infinity(a, b, start=10, points=5, seed=1)
    assert inf == fid_infinity(a, b, start=10, points=5, seed=1)  # seeded
    assert inf < fid_of(a[:10], b[:10])  # same distribution: FID_N's 1/N bias is extrapolated away


@pytest.mark.parametrize("name", ["fid", "artfid", "artfid_inf", "cfsd"])
def test_missing_weights_name_the_file_and_the_fix(name, tmp_path):
    (m,) = build([name], weights_dir=tmp_path, extractors=ExtractorCache())
    reason = m.missing()
    assert reason and "sanet-bench weights pull" in reason and str(tmp_path) in reason


def test_histogram_loss_is_zero_for_the_same_image_and_grows_with_a_colour_shift():
    (h,) = build(["histogram_loss"])
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    shifted = (x * torch.tensor([1.0, 0.6, 0.3]).view(1, 3, 1, 1)).clamp(0, 1)
    assert h.score(x, x) == pytest.approx(0, abs=1e-6)
    assert h.score(shifted, x) > h.score((x * 0.9).clamp(0, 1), x) > 0
