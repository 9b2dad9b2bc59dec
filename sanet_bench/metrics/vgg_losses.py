"""Content and style losses in the normalised VGG19 (SANet, Park & Lee CVPR 2019, Eq. 5-6; AdaIN Eq. 11-12).

Features are relu{k}_1 of the normalised VGG19 (``vgg_normalised.pth``; input RGB [0,1]), taken from the
shared :class:`~sanet_bench.metrics.extractors.VGGFeatures`, whose ``id`` names the encoder. Every MSE is the
mean over batch, channels and positions (``F.mse_loss``); layer terms are summed. Lower is better.

* ``content_loss``: sum over relu4_1, relu5_1 of MSE(mvn(phi(out)), mvn(phi(content))), ``mvn`` the
  per-channel mean-variance normalisation — SANet's training content loss (Eq. 5).
* ``content_loss_raw``: the same layers without normalisation (what several later papers report).
* ``style_loss``: sum over relu1_1..relu5_1 of MSE(mu(out), mu(style)) + MSE(sigma(out), sigma(style)),
  per-channel mean/std over positions with ``sigma = sqrt(unbiased var + 1e-5)`` — SANet Eq. 6 / AdaIN Eq. 12.
* ``style_loss_gram``: sum over relu1_1..relu5_1 of MSE(G(out), G(style)), with the Gram matrix divided by
  the number of positions (Gatys et al. 2016, up to that normalisation).
"""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from ..nn.stats import calc_mean_std, gram
from ..nn.stats import mean_variance_norm as mvn
from ..nn.vgg import VGG_NORMALISED
from ..registry import register_metric
from .base import PerImageMetric
from .extractors import VGG

CONTENT_LAYERS = (3, 4)  # relu4_1, relu5_1
STYLE_LAYERS = (0, 1, 2, 3, 4)  # relu1_1 .. relu5_1


def content_loss(fo: list[Tensor], fc: list[Tensor]) -> float:
    return sum(F.mse_loss(mvn(fo[i]), mvn(fc[i])).item() for i in CONTENT_LAYERS)


def content_loss_raw(fo: list[Tensor], fc: list[Tensor]) -> float:
    return sum(F.mse_loss(fo[i], fc[i]).item() for i in CONTENT_LAYERS)


def style_loss(fo: list[Tensor], fs: list[Tensor]) -> float:
    total = 0.0
    for i in STYLE_LAYERS:
        (om, osd), (sm, ssd) = calc_mean_std(fo[i]), calc_mean_std(fs[i])
        total += F.mse_loss(om, sm).item() + F.mse_loss(osd, ssd).item()
    return total


def style_loss_gram(fo: list[Tensor], fs: list[Tensor]) -> float:
    return sum(F.mse_loss(gram(fo[i]), gram(fs[i])).item() for i in STYLE_LAYERS)


class _VGGLoss(PerImageMetric):
    """A loss between the relu{k}_1 features of the output and of its reference (see the module doc)."""

    higher_is_better: ClassVar[bool] = False
    input_range: ClassVar[str] = (
        "RGB [0,1] (the saved 8-bit output), any size; style may differ in size"
    )
    needs: ClassVar[tuple[str, ...]] = (VGG,)
    weights: ClassVar = (VGG_NORMALISED,)
    loss: ClassVar = staticmethod(content_loss)

    def score(self, output: Tensor, reference: Tensor) -> float:
        vgg = self.extractor(VGG)
        return type(self).loss(vgg.features(output), vgg.features(reference))


@register_metric
class ContentLoss(_VGGLoss):
    name, compares = "content_loss", "output-content"
    convention = "sum over relu4_1, relu5_1 of MSE of mean-variance-normalised features (SANet Eq. 5)"
    loss = staticmethod(content_loss)


@register_metric
class ContentLossRaw(_VGGLoss):
    name, compares = "content_loss_raw", "output-content"
    convention = "sum over relu4_1, relu5_1 of MSE of raw features"
    loss = staticmethod(content_loss_raw)


@register_metric
class StyleLoss(_VGGLoss):
    name, compares = "style_loss", "output-style"
    convention = (
        "sum over relu1_1..relu5_1 of MSE(mean) + MSE(std), std = sqrt(unbiased var + 1e-5) (SANet Eq. 6)"
    )
    loss = staticmethod(style_loss)


@register_metric
class StyleLossGram(_VGGLoss):
    name, compares = "style_loss_gram", "output-style"
    convention = "sum over relu1_1..relu5_1 of MSE of Gram matrices divided by H*W"
    loss = staticmethod(style_loss_gram)
