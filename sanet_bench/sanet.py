"""SANet: Arbitrary Style Transfer with Style-Attentional Networks (Park & Lee, CVPR 2019).

Matches GlebSBrykin/SANET@2dfec14 (the implementation the authors point to; they released none):

* SANet block (paper Eq. 2-3): ``F = f(mvn(c))``, ``G = g(mvn(s))``, ``H = h(s)``,
  ``O = out_conv(H softmax(F^T G)^T) + c`` — softmax over style positions, no 1/sqrt(C) scaling.
* Transform: ``merge_conv(reflect_pad1(SANet4_1(c4, s4) + up2(SANet5_1(c5, s5))))`` (paper Fig. 2).
* Training objective (Eq. 4-8): ``L = lambda_c L_c + lambda_s L_s + lambda_id1 L_id1 + lambda_id2 L_id2``
  with the authors' corrected weights 1, 3, 50, 1 (Train.ipynb ``Net.forward``).

Differences from the reference, none of which change its outputs where it runs:

* Attention is computed in query chunks with ``scaled_dot_product_attention(scale=1)``: the full
  [HWc x HWs] matrix is never materialised, so peak memory grows linearly with the content pixels.
* Odd relu4_1 sizes (e.g. a 72 px input): the reference crashes because ``up2(relu5_1)`` is one row/column
  larger than relu4_1 (ceil-mode pooling). We crop ``up2(relu5_1)`` to relu4_1's size, which keeps the
  ceil-mode alignment (relu5_1 cell j covers relu4_1 cells 2j, 2j+1); even sizes are untouched, so they
  stay bit-identical to the reference.
* ``alpha < 1`` (not in the reference): the transformed relu4_1 features are interpolated with the
  content's relu4_1 features before decoding, ``alpha * T(c, s) + (1 - alpha) * c4``, as AdaIN does.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .demo import DemoJob
from .method import Method
from .nn.attention import attention
from .nn.stats import calc_mean_std, mean_variance_norm
from .nn.vgg import VGG_NORMALISED, VGGEncoder, decoder, vgg_normalised
from .registry import DemoRecipe, MethodSpec, Source, Unit, WeightFile, register_method
from .weights import load_file_into


class SANetBlock(nn.Module):
    def __init__(self, channels: int = 512):
        super().__init__()
        self.f = nn.Conv2d(channels, channels, 1)
        self.g = nn.Conv2d(channels, channels, 1)
        self.h = nn.Conv2d(channels, channels, 1)
        self.out_conv = nn.Conv2d(channels, channels, 1)

    def forward(self, content: Tensor, style: Tensor) -> Tensor:
        n, c, hh, ww = content.shape
        f = self.f(mean_variance_norm(content)).flatten(2)
        g = self.g(mean_variance_norm(style)).flatten(2)
        h = self.h(style).flatten(2)
        o = attention(f, g, h).reshape(n, c, hh, ww)
        return self.out_conv(o) + content


class Transform(nn.Module):
    """Keys ``sanet4_1.*``, ``sanet5_1.*``, ``merge_conv.*`` of ``transformer_iter_500000.pth``."""

    def __init__(self, channels: int = 512):
        super().__init__()
        self.sanet4_1 = SANetBlock(channels)
        self.sanet5_1 = SANetBlock(channels)
        self.merge_conv = nn.Conv2d(channels, channels, 3)

    def forward(self, c4: Tensor, s4: Tensor, c5: Tensor, s5: Tensor) -> Tensor:
        up5 = F.interpolate(self.sanet5_1(c5, s5), scale_factor=2, mode="nearest")
        up5 = up5[..., : c4.shape[-2], : c4.shape[-1]]  # odd relu4_1 sides; no-op for even ones
        return self.merge_conv(F.pad(self.sanet4_1(c4, s4) + up5, (1, 1, 1, 1), mode="reflect"))


class SANet(Method):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = VGGEncoder(vgg_normalised(), upto="relu5_1")
        self.transform = Transform(512)
        self.decoder = decoder()

    def load_official(self, paths: dict[str, Path]) -> None:
        load_file_into(self.encoder.vgg, paths["vgg_normalised.pth"], self.spec, "vgg_normalised.pth")
        load_file_into(self.decoder, paths["decoder_iter_500000.pth"], self.spec, "decoder_iter_500000.pth")
        load_file_into(
            self.transform, paths["transformer_iter_500000.pth"], self.spec, "transformer_iter_500000.pth"
        )

    def _stylize(self, content: Tensor, style: Tensor, alpha: float) -> Tensor:
        with self.stage("encode"):
            c4, c5 = self.encoder(content, first=3)
            s4, s5 = self.encoder(style, first=3)
        with self.stage("transform"):
            t = self.transform(c4, s4, c5, s5)
            if alpha < 1.0:
                t = alpha * t + (1.0 - alpha) * c4
        with self.stage("decode"):
            return self.decoder(t)


def _mse(a: Tensor, b: Tensor) -> Tensor:
    return F.mse_loss(a, b)


def _style_term(a: Tensor, b: Tensor) -> Tensor:
    am, asd = calc_mean_std(a)
    bm, bsd = calc_mean_std(b)
    return _mse(am, bm) + _mse(asd, bsd)


LAMBDAS = {"lambda_c": 1.0, "lambda_s": 3.0, "lambda_id1": 50.0, "lambda_id2": 1.0}


def sanet_losses(
    encoder: VGGEncoder, transform: Transform, dec: nn.Module, content: Tensor, style: Tensor
) -> dict[str, Tensor]:
    """The unweighted SANet training losses (Train.ipynb ``Net.forward``; paper Eq. 5-8).

    * ``loss_c``: MSE of mean-variance-normalised relu4_1 and relu5_1 features, output vs content.
    * ``loss_s``: sum over relu1_1..relu5_1 of MSE(mean) + MSE(std), output vs style.
    * ``l_identity1``: MSE(Icc, c) + MSE(Iss, s) in pixels; ``Icc = dec(T(c, c))``, ``Iss = dec(T(s, s))``.
    * ``l_identity2``: the same pairs compared in all five feature layers.

    Content and style must have the same size (the identity loss compares ``Iss`` with the style).
    """
    with torch.no_grad():
        cf = encoder(content)
        sf = encoder(style)
    g = dec(transform(cf[3], sf[3], cf[4], sf[4]))
    gf = encoder(g)
    loss_c = _mse(mean_variance_norm(gf[3]), mean_variance_norm(cf[3])) + _mse(
        mean_variance_norm(gf[4]), mean_variance_norm(cf[4])
    )
    loss_s = sum(_style_term(gf[i], sf[i]) for i in range(5))
    icc = dec(transform(cf[3], cf[3], cf[4], cf[4]))
    iss = dec(transform(sf[3], sf[3], sf[4], sf[4]))
    l_id1 = _mse(icc, content) + _mse(iss, style)
    fcc, fss = encoder(icc), encoder(iss)
    l_id2 = sum(_mse(fcc[i], cf[i]) + _mse(fss[i], sf[i]) for i in range(5))
    return {"loss_c": loss_c, "loss_s": loss_s, "l_identity1": l_id1, "l_identity2": l_id2}


def weighted_total(losses: dict[str, Tensor], lambdas: dict[str, float] | None = None) -> Tensor:
    lam = {**LAMBDAS, **(lambdas or {})}
    return (
        lam["lambda_c"] * losses["loss_c"]
        + lam["lambda_s"] * losses["loss_s"]
        + lam["lambda_id1"] * losses["l_identity1"]
        + lam["lambda_id2"] * losses["l_identity2"]
    )


# ------------------------------------------------------------------------------------------- demo weights
# The demo model (sanet_bench.demo): decoder started from the WCT demo's d4 decoder, transform from
# :func:`_residual_init`, trained with :func:`weighted_total` with lambdas 1, 3, 600, 1. lambda_id1 is raised
# from the paper's 50 because the identity loss is SANet's own reconstruction term and the random offline
# encoder needs it stronger. The transform trains at 0.1 x the rate: Adam moves every weight by about the
# rate and merge_conv has a fan-in of 4,608 (measurements: docs/demo-weights.md).
DEMO_UNITS = (
    Unit("sanet", "sanet", "SANet weighted_total (lambda_c 1, lambda_s 3, lambda_id1 600 (paper: 50), "
         "lambda_id2 1); transform started as T = merge(c4 + up(c5)) (zero out_convs, merge_conv 0.5 x "
         "identity)", 2000, 1e-4, batch=2, init="wct_d4", decay=800, transform_lr=0.1,
         weights={"lambda_id1": 600.0}),
)


def _residual_init(transform: nn.Module) -> None:
    """Start the transform near the content path (as ReZero-style residual inits do): each block's
    ``out_conv`` is zero, so ``SANet(c, s) = c``, and ``merge_conv`` is half the identity 3x3 kernel, so
    ``T = (c4 + up(c5)) / 2`` keeps relu4_1's scale for a decoder started from WCT d4; the attention then
    learns through ``out_conv``'s gradient. A few hundred steps cannot undo a random merge."""
    with torch.no_grad():
        for block in (transform.sanet4_1, transform.sanet5_1):
            block.out_conv.weight.zero_()
            block.out_conv.bias.zero_()
        w = transform.merge_conv.weight
        w.zero_()
        w[torch.arange(w.shape[0]), torch.arange(w.shape[1]), 1, 1] = 0.5
        transform.merge_conv.bias.zero_()


def _demo_encoder(model: SANet) -> None:
    from .demo import offline_state

    model.encoder.vgg.load_state_dict(offline_state())


def _apply_demo(model: SANet, state: dict[str, Tensor], path: Path) -> None:
    from .demo import substate
    from .weights import load_strict

    _demo_encoder(model)
    load_strict(model.decoder, substate(state, "decoder."), path, "the SANet demo decoder (decoder.*)")
    transform = substate(state, "transform.")
    load_strict(model.transform, transform, path, "the SANet demo transform (transform.*)")


class _DemoJob(DemoJob):
    """Unit ``sanet``: decoder (started from ``init``, a decoder state) and transform (residual init, at
    ``unit.transform_lr`` x the rate) on :func:`weighted_total` with the unit's lambdas."""

    parts = {"decoder": 1.0, "transform": "transform_lr"}

    def prepare(self, model: SANet) -> None:
        _demo_encoder(model)
        _residual_init(model.transform)

    def losses(self, c: Tensor, s: Tensor) -> dict[str, Tensor]:
        m = self.model
        losses = sanet_losses(m.encoder, m.transform, m.decoder, c, s)
        return {**losses, "total": weighted_total(losses, self.unit.weights)}


DEMO = DemoRecipe(
    units=("wct_d4", "sanet"), defines=DEMO_UNITS, apply=_apply_demo, job=_DemoJob,
    reconstruction_alpha=1.0,  # alpha 0 is the content's relu4_1 decoded, which skips the transform
    reconstruction="content as its own style, alpha 1 (D(T(c, c)))",
)


_YANDEX = "https://yadi.sk/d/"  # GlebSBrykin/SANET README: "Links to weights on Yandex.Disk"

SPEC = register_method(
    MethodSpec(
        name="sanet",
        title="SANet",
        citation="Park & Lee, Arbitrary Style Transfer with Style-Attentional Networks, CVPR 2019",
        reference="GlebSBrykin/SANET@2dfec142cf9bb4c7915a28284097fd4ea9dca251",
        factory=SANet,
        files=(
            VGG_NORMALISED,
            WeightFile(
                "decoder_iter_500000.pth",
                (Source(_YANDEX + "xsZ7j6FhK1dmfQ", kind="yandex"),),
                layout="29-module nn.Sequential, keys {1,5,8,11,14,18,21,25,28}.{weight,bias}",
                license="GlebSBrykin/SANET (no licence stated; research use)",
            ),
            WeightFile(
                "transformer_iter_500000.pth",
                (Source(_YANDEX + "GhQe3g_iRzLKMQ", kind="yandex"),),
                layout="Transform(512): sanet4_1.{f,g,h,out_conv}, sanet5_1.{f,g,h,out_conv}, merge_conv",
                license="GlebSBrykin/SANET (no licence stated; research use)",
            ),
        ),
        default_alpha=1.0,
        weights_kinds=("official", "random", "demo", "auto"),
        demo=DEMO,
        notes="alpha<1 interpolates relu4_1 features with the content's (not in the reference)",
    )
)
