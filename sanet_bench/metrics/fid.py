"""Set-level distribution metrics: FID, ArtFID (finite set) and ArtFID-infinity.

Over the set of cells of one method and size, each cell gives a pair (output, its style) and (output, its
content). The style set holds each cell's style (a style repeats once per content), as art-fid pairs one
style image with each stylized image.

* ``fid``: Fréchet distance (Heusel et al. 2017) between the 2048-d Inception pool features of the outputs and
  of the styles, with pytorch-fid's Inception weights and preprocessing (:mod:`.networks`, ``inception-fid``).
* ``artfid``: ArtFID (Wright & Ommer 2022, art-fid package): ``(1 + content distance) * (1 + FID_art)``, where
  FID_art uses the art-trained Inception (``inception-art``, images at their own size) and the content
  distance is the mean LPIPS (v0.1, AlexNet) between each output and its content — the package's
  ``mode="art_fid"`` (finite set).
* ``artfid_inf``: the package's default ``art_fid_inf``: FID_N at 15 subset sizes N from 5000 to the set size,
  fitted linearly in 1/N and extrapolated to N = infinity (Chong & Forsyth 2020). It refuses sets of fewer
  than :data:`FID_INF_START` pairs (say so in a row's ``missing``): with fewer, there is nothing to fit.

FID on a few images is strongly biased upwards (it grows as 1/N) and is only comparable between sets of the
same size. The covariances of fewer than 2049 images are singular; the reference code takes a 2048-d
``sqrtm`` anyway (:func:`frechet_distance` keeps that route, with the same regularisation fallback), while
:func:`fid_of` computes the same trace exactly from the features when the set is no larger than the feature
dimension (:func:`trace_sqrt_product`). At least 2 pairs are needed.

Interval (:meth:`_PairedFeatures.interval`): a delete-one jackknife over the pairs, ``value ± z * SE``. Not a
bootstrap: resamples drawn with replacement repeat images, which inflates FID (on random features, every one
of 1000 resampled FIDs of 24 and of 64 pairs lay above the set's own value), so a percentile interval would
not even contain the value. Sets over :data:`JACKKNIFE_MAX` pairs get none (one sqrtm per left-out pair).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy import linalg
from scipy.stats import norm
from torch import Tensor

from ..registry import register_metric
from .base import SetMetric
from .extractors import ALEXNET, ALEXNET_FILE, LPIPS_HEADS, MetricMissing
from .networks import ART, ART_INCEPTION, FID, FID_INCEPTION

FID_INF_START, FID_INF_POINTS = 5000, 15
JACKKNIFE_MAX = 2048  # pairs: up to the feature dimension, each left-out FID is the exact low-rank one


def statistics(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (``np.cov(rowvar=False)``) of ``[N, D]`` features."""
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def frechet_distance(
    mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray, eps: float = 1e-6
) -> float:
    """``|mu1 - mu2|^2 + Tr(s1 + s2 - 2 sqrt(s1 s2))``; when ``sqrtm`` of the product is not finite,
    ``eps`` is added to both diagonals (pytorch-fid's and art-fid's fallback).
    A large imaginary part is an error."""
    diff = mu1 - mu2
    covmean = linalg.sqrtm(s1.dot(s2))
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise MetricMissing(
                f"FID: sqrtm has an imaginary component {np.max(np.abs(covmean.imag)):.3g} (numerically "
                "unstable covariances); use more images"
            )
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def trace_sqrt_product(a: np.ndarray, b: np.ndarray) -> float:
    """``Tr sqrt(S_a S_b)`` of the unbiased covariances of features ``a`` ``[N, D]`` and ``b`` ``[M, D]``,
    exactly, without a D x D square root: with ``A``, ``B`` the centred features, ``S_a S_b`` has the nonzero
    eigenvalues of ``(A B^T)(A B^T)^T / ((N-1)(M-1))``, so the trace is the nuclear norm of
    ``A B^T / sqrt((N-1)(M-1))``."""
    ca, cb = a - a.mean(axis=0), b - b.mean(axis=0)
    m = ca @ cb.T / np.sqrt((len(a) - 1) * (len(b) - 1))
    return float(np.linalg.svd(m, compute_uv=False).sum())


def fid_of(a: np.ndarray, b: np.ndarray) -> float:
    """FID of features ``a`` and ``b``: for sets no larger than the feature dimension, exactly through
    :func:`trace_sqrt_product` (the covariances are singular there, and a 2048-d ``sqrtm`` takes tens of
    seconds on a CPU); otherwise pytorch-fid's route, :func:`frechet_distance`."""
    if max(len(a), len(b)) > a.shape[1]:
        return frechet_distance(*statistics(a), *statistics(b))
    diff = a.mean(axis=0) - b.mean(axis=0)
    traces = (np.square(a - a.mean(axis=0)).sum() / (len(a) - 1)
              + np.square(b - b.mean(axis=0)).sum() / (len(b) - 1))
    return float(diff.dot(diff) + traces - 2 * trace_sqrt_product(a, b))


def jackknife_interval(stat, n: int, level: float) -> tuple[float, float]:
    """``stat(all) ± z * SE`` with the delete-one jackknife standard error of ``stat(index)`` over ``n`` items
    (Efron & Tibshirani 1993, Ch. 11); ``z`` the normal quantile of ``level``."""
    whole = np.arange(n)
    values = np.array([stat(np.delete(whole, i)) for i in range(n)])
    se = float(np.sqrt((n - 1) / n * np.square(values - values.mean()).sum()))
    centre, z = stat(whole), float(norm.ppf((1 + level) / 2))
    return centre - z * se, centre + z * se


def fid_infinity(
    a: np.ndarray, b: np.ndarray, *, start: int = FID_INF_START, points: int = FID_INF_POINTS, seed: int = 0
) -> float:
    """FID-infinity of paired features ``a``, ``b`` (``[N, D]`` each): FID of ``points`` random pair subsets
    of sizes ``linspace(start, N)``, least-squares line in 1/size, value at 0 (art-fid's
    ``compute_fid_infinity`` with a seeded generator instead of the global numpy one)."""
    n = len(a)
    if n < start:
        raise MetricMissing(
            f"FID-infinity extrapolates FID over subsets of {start} to {start}+ pairs (art-fid's default "
            f"mode); this set has {n}: use artfid (finite set) or a grid of at least {start} pairs"
        )
    rng = np.random.default_rng(seed)
    sizes = np.linspace(start, n, points).astype(np.int32)
    fids = []
    for size in sizes:
        idx = rng.permutation(n)[:size]
        fids.append(fid_of(a[idx], b[idx]))
    slope, intercept = np.polyfit(1.0 / sizes, np.array(fids), 1)
    return float(intercept)


class _PairedFeatures(SetMetric):
    """Accumulates Inception features of outputs and their styles (and, with ``content_distance``, the
    LPIPS between each output and its content)."""

    network: ClassVar[str] = FID
    content_distance: ClassVar[bool] = False
    input_range = "RGB [0,1] NCHW (the saved 8-bit outputs, the grid's content and style images)"

    def reset(self) -> None:
        self.out_feats: list[np.ndarray] = []
        self.style_feats: list[np.ndarray] = []
        self.distances: list[float] = []

    def update(self, output: Tensor, content: Tensor, style: Tensor) -> None:
        net = self.extractor(self.network)
        self.out_feats.append(net.features(output).numpy())
        self.style_feats.append(net.features(style).numpy())
        if self.content_distance:
            if output.shape != content.shape:
                raise MetricMissing(
                    f"{self.name}: output {list(output.shape)} != content {list(content.shape)}"
                )
            self.distances.append(self.extractor(ALEXNET).distance(output, content))

    def _features(self) -> tuple[np.ndarray, np.ndarray]:
        if len(self.out_feats) < 2:
            raise MetricMissing(
                f"{self.name}: needs at least 2 (output, style) pairs, got {len(self.out_feats)}"
            )
        return np.concatenate(self.out_feats), np.concatenate(self.style_feats)

    def _value(self, a: np.ndarray, b: np.ndarray, index: np.ndarray) -> float:
        fid = fid_of(a[index], b[index])
        if not self.content_distance:
            return fid
        return (1 + float(np.mean(np.asarray(self.distances)[index]))) * (1 + fid)

    def compute(self) -> float:
        a, b = self._features()
        return self._value(a, b, np.arange(len(a)))

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """Delete-one jackknife interval over the pairs (module doc: why not a bootstrap)."""
        a, b = self._features()
        n = len(a)
        if not 3 <= n <= JACKKNIFE_MAX:
            raise MetricMissing(
                f"{self.name}: no interval for {n} pairs (the jackknife needs 3 to {JACKKNIFE_MAX})"
            )
        return jackknife_interval(lambda index: self._value(a, b, index), n, level)


@register_metric
class FIDMetric(_PairedFeatures):
    name, compares, higher_is_better = "fid", "outputs-styles", False
    convention = (
        "pytorch-fid: TF Inception-v3 (2015-12-05) pool3 2048-d, bilinear resize to 299, [-1,1]; "
        "Fréchet distance of the outputs' and the styles' (one per cell) Gaussians; biased on few images"
    )
    needs = (FID,)
    weights = (FID_INCEPTION,)


@register_metric
class ArtFID(_PairedFeatures):
    name, compares, higher_is_better = "artfid", "outputs-contents-styles", False
    convention = (
        "art-fid mode art_fid (finite set): (1 + mean LPIPS-alex(output, content)) * (1 + FID), FID on the "
        "art-trained Inception-v3 at the images' own size (>= 75 px), styles one per cell"
    )
    network, content_distance = ART, True
    needs = (ART, ALEXNET)
    weights = (ART_INCEPTION, ALEXNET_FILE, LPIPS_HEADS)


@register_metric
class ArtFIDInfinity(ArtFID):
    name = "artfid_inf"
    convention = (
        "art-fid mode art_fid_inf (the package default): FID_N at 15 subset sizes from 5000 pairs to the set "
        "size, linear fit in 1/N extrapolated to 0 (seeded); refuses sets under 5000 pairs"
    )

    def compute(self) -> float:
        fid = fid_infinity(*self._features())
        return (1 + float(np.mean(self.distances))) * (1 + fid)

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        raise MetricMissing(
            f"{self.name}: no interval (an extrapolation over random subsets, not a set statistic)"
        )
