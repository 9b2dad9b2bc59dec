"""AdaIN: Huang & Belongie, Arbitrary Style Transfer in Real-time with Adaptive Instance Normalization,
ICCV 2017.

Matches naoto0804/pytorch-AdaIN@47950d0 (test.py ``style_transfer``, function.py, net.py):

* Eq. 8: ``AdaIN(x, y) = sigma(y) (x - mu(x)) / sigma(x) + mu(y)`` per sample and channel over H*W, with
  ``sigma = sqrt(unbiased variance + 1e-5)`` on both sides (function.calc_mean_std, not the Torch7 original's
  biased statistics).
* Eq. 14 (content-style trade-off): ``g(alpha * AdaIN(f(c), f(s)) + (1 - alpha) * f(c))``, f = the normalised
  VGG19 up to relu4_1 (modules [:31]), g = the 29-module decoder.
* Eq. 15 (style interpolation, option ``style_weights``): ``g(alpha * sum_k w_k AdaIN(f(c), f(s_k))
  + (1 - alpha) * f(c))``, as test.py with ``--style_interpolation_weights``.
* ``preserve_color``: the style is first recoloured to the content's colour statistics with function.coral
  (test.py ``--preserve_color``).
* Eq. 11-13 (training objective, net.py ``Net.forward``): :func:`adain_losses`, total ``loss_c + 10 loss_s``
  (train.py's default ``style_weight``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sanet_bench.demo import DemoJob
from sanet_bench.errors import ConfigError, ImageError
from sanet_bench.method import Method
from sanet_bench.nn.stats import adain, calc_mean_std
from sanet_bench.nn.vgg import VGG_NORMALISED, VGGEncoder, decoder, vgg_normalised
from sanet_bench.registry import DemoRecipe, MethodSpec, Option, Source, Unit, WeightFile, register_method
from sanet_bench.weights import load_file_into

STYLE_WEIGHT = 10.0  # train.py --style_weight default (content weight 1.0)


def _flat_mean_std(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    flat = x.reshape(x.shape[0], 3, -1)
    return flat, flat.mean(-1, keepdim=True), flat.std(-1, keepdim=True)  # unbiased std, as function.py


def _mat_sqrt(x: Tensor) -> Tensor:
    u, d, vh = torch.linalg.svd(x)
    return u @ torch.diag_embed(d.sqrt()) @ vh


def coral(source: Tensor, target: Tensor) -> Tensor:
    """function.coral, batched: recolour ``source`` [N,3,H,W] to the colours of ``target`` [N,3,H',W'].

    Each channel is standardised with its mean and unbiased std; with ``cov = x_norm x_norm^T + I`` (a sum,
    not an average, as the reference), ``out = sqrt(cov_t) sqrt(cov_s)^-1 s_norm * std_t + mean_t``, the
    matrix square roots from an SVD and the inverse from ``torch.inverse``, in float32 at least (no bf16 or
    fp16 kernels for them); the result is in the source's dtype.
    """
    dtype = source.dtype
    work = torch.promote_types(dtype, torch.float32)
    source, target = source.to(work), target.to(work)
    s, s_mean, s_std = _flat_mean_std(source)
    t, t_mean, t_std = _flat_mean_std(target)
    s_norm = (s - s_mean) / s_std
    t_norm = (t - t_mean) / t_std
    eye = torch.eye(3, dtype=source.dtype, device=source.device)
    s_cov = s_norm @ s_norm.transpose(1, 2) + eye
    t_cov = t_norm @ t_norm.transpose(1, 2) + eye
    transfer = _mat_sqrt(t_cov) @ (torch.inverse(_mat_sqrt(s_cov)) @ s_norm)
    return (transfer * t_std + t_mean).reshape(source.shape).to(dtype)


def _style_weights(weights: Any, k: int) -> Tensor:
    try:
        w = torch.as_tensor(weights, dtype=torch.float64).flatten()
    except (TypeError, ValueError):
        raise ConfigError(f"style_weights={weights!r} is not a number list; pass e.g. [0.5,0.5]") from None
    if w.numel() != k:
        raise ConfigError(
            f"style_weights has {w.numel()} weights but the style batch holds {k} styles; pass one per style"
        )
    finite_nonneg = bool(torch.isfinite(w).all()) and bool((w >= 0).all())
    if not (finite_nonneg and math.isclose(w.sum().item(), 1.0, abs_tol=1e-6)):
        raise ConfigError(f"style_weights={w.tolist()} must be >= 0 and sum to 1; divide them by their sum")
    return w


class AdaIN(Method):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = VGGEncoder(vgg_normalised(), upto="relu4_1")  # runs modules [:31]
        self.decoder = decoder()

    def load_official(self, paths: dict[str, Path]) -> None:
        load_file_into(self.encoder.vgg, paths["vgg_normalised.pth"], self.spec, "vgg_normalised.pth")
        load_file_into(self.decoder, paths["decoder.pth"], self.spec, "decoder.pth")

    def stylize(self, content: Tensor, style: Tensor, alpha: float | None = None, **options: Any) -> Tensor:
        """:meth:`Method.stylize`, plus style interpolation.

        ``style_weights=[w_1, ..., w_K]`` (non-negative, summing to 1 within 1e-6): ``content`` is ONE image
        [1,3,H,W], ``style`` holds the K styles [K,3,H',W'] (one size), and the output is one image [1,3,H,W],
        ``g(alpha * sum_k w_k AdaIN(f(c), f(s_k)) + (1 - alpha) f(c))``. With ``preserve_color`` each style is
        recoloured to the content first (test.py ignores ``--preserve_color`` when interpolating).
        """
        weights = options.get("style_weights")
        if weights is not None and isinstance(content, Tensor) and isinstance(style, Tensor) and style.dim():
            if content.dim() == 4 and content.shape[0] != 1:
                raise ImageError(
                    f"style_weights interpolates styles for ONE content image, got a content batch of "
                    f"{content.shape[0]}; stylize the contents one at a time"
                )
            options = {**options, "style_weights": _style_weights(weights, style.shape[0])}
            if content.dim() == 4:  # the base contract wants equal batches; _stylize encodes content[:1] once
                content = content.expand(style.shape[0], -1, -1, -1)
        return super().stylize(content, style, alpha, **options)

    def _stylize(
        self,
        content: Tensor,
        style: Tensor,
        alpha: float,
        preserve_color: bool = False,
        style_weights: Tensor | None = None,
    ) -> Tensor:
        if preserve_color:
            style = coral(style, content)
        if style_weights is not None:
            content = content[:1]
        with self.stage("encode"):
            cf = self.encoder.last(content)
            sf = self.encoder.last(style)
        with self.stage("transform"):
            if style_weights is None:
                t = adain(cf, sf)
            else:
                w = style_weights.to(device=cf.device, dtype=cf.dtype).view(-1, 1, 1, 1)
                t = (w * adain(cf.expand(sf.shape[0], -1, -1, -1), sf)).sum(0, keepdim=True)
            if alpha < 1.0:
                t = alpha * t + (1.0 - alpha) * cf
        with self.stage("decode"):
            return self.decoder(t)


def _style_term(a: Tensor, b: Tensor) -> Tensor:
    am, asd = calc_mean_std(a)
    bm, bsd = calc_mean_std(b)
    return F.mse_loss(am, bm) + F.mse_loss(asd, bsd)


def adain_losses(
    encoder: VGGEncoder, dec: nn.Module, content: Tensor, style: Tensor, alpha: float = 1.0
) -> dict[str, Tensor]:
    """The unweighted AdaIN training losses (net.py ``Net.forward``; paper Eq. 12-13), mean-reduced MSE.

    ``t = alpha * AdaIN(relu4_1(c), relu4_1(s)) + (1 - alpha) * relu4_1(c)`` (no gradient), ``g = dec(t)``;
    ``loss_c = MSE(relu4_1(g), t)``; ``loss_s = sum over relu1_1..relu4_1 of MSE(mean(g_i), mean(s_i)) +
    MSE(std(g_i), std(s_i))`` with the AdaIN statistics. Gradients reach ``dec`` only. Content and style
    must have the same shape (net.py asserts it).
    """
    if content.shape != style.shape:
        raise ImageError(
            f"adain_losses needs content and style of one shape, got {tuple(content.shape)} and "
            f"{tuple(style.shape)}; resize or crop them alike"
        )
    with torch.no_grad():
        sf = encoder(style, depth=4)
        cf = encoder.last(content, depth=4)
        t = adain(cf, sf[-1])
        t = alpha * t + (1.0 - alpha) * cf
    gf = encoder(dec(t), depth=4)
    loss_c = F.mse_loss(gf[-1], t)
    loss_s = sum(_style_term(g, s) for g, s in zip(gf, sf, strict=True))
    return {"loss_c": loss_c, "loss_s": loss_s}


def adain_total(losses: dict[str, Tensor], style_weight: float = STYLE_WEIGHT) -> Tensor:
    """Eq. 11: ``loss_c + style_weight * loss_s`` (train.py defaults: content 1.0, style 10.0)."""
    return losses["loss_c"] + style_weight * losses["loss_s"]


# ------------------------------------------------------------------------------------------- demo weights
# The demo decoder (sanet_bench.demo) starts from the WCT demo's d4 decoder (same architecture) and trains
# with Eq. 11-13 plus a reconstruction term ``w_rec |D(E(c)) - c|^2`` (the alpha = 0 output), which the
# random offline encoder needs to keep the content.
DEMO_UNITS = (
    Unit("adain", "adain", "AdaIN loss_c + 10 loss_s + w_rec * pixel MSE of D(E(c)) to c", 1500, 5e-4,
         init="wct_d4", decay=500, clip=1.0, weights={"style": 10.0, "rec": 1000.0}),
)


def _demo_encoder(model: AdaIN) -> None:
    from sanet_bench.demo import offline_state

    model.encoder.vgg.load_state_dict(offline_state())


def _apply_demo(model: AdaIN, state: dict[str, Tensor], path: Path) -> None:
    from sanet_bench.demo import substate
    from sanet_bench.weights import load_strict

    _demo_encoder(model)
    load_strict(model.decoder, substate(state, "decoder."), path, "the AdaIN demo decoder (decoder.*)")


class _DemoJob(DemoJob):
    """Unit ``adain``: the decoder (started from ``init``, a decoder state) on :func:`adain_total` with the
    unit's style weight, plus ``weights["rec"]`` x the alpha-0 reconstruction MSE."""

    def prepare(self, model: AdaIN) -> None:
        _demo_encoder(model)

    def losses(self, c: Tensor, s: Tensor) -> dict[str, Tensor]:
        m, w = self.model, self.unit.weights
        losses = adain_losses(m.encoder, m.decoder, c, s)
        with torch.no_grad():
            fc = m.encoder.last(c, depth=4)
        rec = F.mse_loss(m.decoder(fc), c)
        return {**losses, "rec": rec, "total": adain_total(losses, w["style"]) + w["rec"] * rec}


DEMO = DemoRecipe(units=("wct_d4", "adain"), defines=DEMO_UNITS, apply=_apply_demo, job=_DemoJob)


_RELEASE = "https://github.com/naoto0804/pytorch-AdaIN/releases/download/v0.0.0/"
_LICENSE = "naoto0804/pytorch-AdaIN release v0.0.0 (MIT), converted from xunhuang1995/AdaIN-style (Torch7)"

SPEC = register_method(
    MethodSpec(
        name="adain",
        title="AdaIN",
        citation="Huang & Belongie, Arbitrary Style Transfer in Real-time with Adaptive Instance "
        "Normalization, ICCV 2017",
        reference="naoto0804/pytorch-AdaIN@47950d0e6656a95a80a4b105c4c0f58d38ef785c",
        factory=AdaIN,
        files=(
            VGG_NORMALISED,
            WeightFile(
                "decoder.pth",
                (Source(_RELEASE + "decoder.pth"),),
                layout="29-module nn.Sequential, keys {1,5,8,11,14,18,21,25,28}.{weight,bias}",
                license=_LICENSE,
            ),
        ),
        default_alpha=1.0,
        weights_kinds=("official", "random", "demo", "auto"),
        demo=DEMO,
        options=(
            Option("preserve_color", False, "recolour the style to the content's colours (function.coral)"),
            Option(
                "style_weights",
                None,
                "interpolate K styles (style batch K, content batch 1) with these weights (>= 0, sum 1)",
            ),
        ),
        min_size=64,
        notes="statistics: unbiased variance + 1e-5 (the PyTorch port), not the Torch7 original's",
    )
)
