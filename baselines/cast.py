"""CAST: Zhang, Tang, Dong, Huang, Ma, Lee & Xu, Domain Enhanced Arbitrary Image Style Transfer via
Contrastive Learning, SIGGRAPH 2022 (arXiv:2205.09542).

CAST learns its style representation with contrastive learning (multi-layer style projector, domain
enhancement); all of that is training-only. At test time the paper's generative network is an AdaIN
encoder-decoder whose encoder and decoders were fine-tuned by that training. This module matches the test path
of zyxElsa/CAST_pytorch@67a7d9c (test.py -> models/cast_model.py ``CASTModel.forward``, direction AtoB):

* Inputs are mapped to [-1, 1] (the test dataset's ``Normalize(0.5, 0.5)``): ``c' = 2c - 1``, ``s' = 2s - 1``.
* ``f`` is the normalised-VGG19 architecture up to relu4_1 (1x1 input conv, reflection-padded 3x3 convs,
  2x2/2 ceil-mode max-pools), regrouped as ``enc_1..enc_4`` with the weights of ``latest_net_AE.pth``; it is
  NOT ``vgg_normalised.pth``: the reference re-initialises the VGG-loaded encoder and then overwrites it with
  the trained ``latest_net_AE.pth``.
* AdaIN (Huang & Belongie 2017, Eq. 8): ``t = sigma(f(s')) (f(c') - mu(f(c'))) / sigma(f(c')) + mu(f(s'))``,
  per sample and channel over H*W, ``sigma = sqrt(unbiased variance + 1e-5)`` on both sides.
* ``out = (g_B(t) + 1) / 2``, ``g_B`` the 29-module relu4_1 decoder with the weights of
  ``latest_net_Dec_B.pth`` (content -> style direction); returned un-clamped.

There is no content-style trade-off (``has_alpha=False``) and no inference option.

Deliberate differences from the reference that do not change outputs:

* ``vgg_normalised.pth`` and ``latest_net_Dec_A.pth`` are loaded and validated strictly, as the reference
  loads them, but are not kept: neither affects the stylized image (the VGG is overwritten by
  ``latest_net_AE.pth``; ``Dec_A``, the style -> content decoder, is used only in training).
* The dataset step (resize/crop to 256x256, PIL bicubic) is not part of the method: the image is stylized at
  the size it is given. The reference network's output is ``8*ceil(H/8) x 8*ceil(W/8)``; it is cropped to
  the content size (top-left), as for every method of this suite.
* Batches are stylized per sample (the reference runs batch size 1); the statistics are per sample.
* The training objective (contrastive MSP losses, domain-enhancement GAN, cycle/identity terms) is not
  implemented: no parity fixture covers it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from sanet_bench.errors import ImageError
from sanet_bench.method import Method
from sanet_bench.nn.stats import adain
from sanet_bench.nn.vgg import SLICES, VGG_NORMALISED, decoder, vgg_normalised
from sanet_bench.registry import InputPolicy, MethodSpec, Source, WeightFile, register_method
from sanet_bench.weights import load_file_into

# relu4_1 sits behind three ceil-mode 2x2 pools (side -> ceil(side / 8)) and needs at least 2 px for its
# reflection pad: 9 px is the smallest side the reference can compute (8 px gives a 1 px relu4_1 map).
MIN_SIDE = 9

AE = "latest_net_AE.pth"
DEC_A = "latest_net_Dec_A.pth"
DEC_B = "latest_net_Dec_B.pth"


class CASTEncoder(nn.Module):
    """models/net.py ``ADAIN_Encoder``'s layout: modules [:31] of ``vgg_normalised`` in four slices.

    ``enc_1 = vgg[0:4]``, ``enc_2 = vgg[4:11]``, ``enc_3 = vgg[11:18]``, ``enc_4 = vgg[18:31]``, so the keys
    are ``enc_1.{0,2}``, ``enc_2.{1,5}``, ``enc_3.{1,5}``, ``enc_4.{1,4,7,11}``; the output is relu4_1.
    """

    def __init__(self) -> None:
        super().__init__()
        vgg = vgg_normalised()
        for i, (a, b) in enumerate(SLICES[:4], start=1):
            self.add_module(f"enc_{i}", nn.Sequential(*vgg[a:b]))  # renumbered from 0

    def forward(self, x: Tensor) -> list[Tensor]:
        """relu1_1, relu2_1, relu3_1 and relu4_1 of ``x`` (already in the network's [-1, 1] scale)."""
        feats = []
        for enc in (self.enc_1, self.enc_2, self.enc_3, self.enc_4):
            x = enc(x)
            feats.append(x)
        return feats

    def last(self, x: Tensor) -> Tensor:
        return self.forward(x)[-1]


class CASTDecoder(nn.Module):
    """models/net.py ``Decoder``: the 29-module AdaIN decoder under the attribute ``decoder`` (keys
    ``decoder.{1,5,8,11,14,18,21,25,28}.{weight,bias}``)."""

    def __init__(self) -> None:
        super().__init__()
        self.decoder = decoder()

    def forward(self, t: Tensor) -> Tensor:
        return self.decoder(t)


def _check_side(x: Tensor, what: str) -> None:
    h, w = x.shape[-2:]
    if min(h, w) < MIN_SIDE:
        raise ImageError(
            f"{what} is {w}x{h} px; CAST needs at least {MIN_SIDE} px per side (relu4_1 at 1/8 scale must "
            f"keep 2 px for its reflection pad), resize it"
        )


class CAST(Method):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = CASTEncoder()  # latest_net_AE.pth
        self.decoder = CASTDecoder()  # latest_net_Dec_B.pth

    def load_official(self, paths: dict[str, Path]) -> None:
        load_file_into(self.encoder, paths[AE], self.spec, AE)
        load_file_into(self.decoder, paths[DEC_B], self.spec, DEC_B)
        # Loaded strictly by the reference's test path but without effect on its output: validated, not kept.
        with torch.device("meta"):  # no random init for modules that are only checked and dropped
            vgg, dec_a = vgg_normalised().to_empty(device="cpu"), CASTDecoder().to_empty(device="cpu")
        load_file_into(vgg, paths[VGG_NORMALISED.name], self.spec, VGG_NORMALISED.name)
        load_file_into(dec_a, paths[DEC_A], self.spec, DEC_A)

    def encode(self, image: Tensor) -> Tensor:
        """relu4_1 of an RGB [0,1] image, through the test dataset's [-1,1] mapping."""
        return self.encoder.last(image * 2.0 - 1.0)

    def _stylize(self, content: Tensor, style: Tensor, alpha: float) -> Tensor:
        _check_side(content, "content")
        _check_side(style, "style")
        with self.stage("encode"):
            fc = self.encode(content)
            fs = self.encode(style)
        with self.stage("transform"):
            t = adain(fc, fs)
        with self.stage("decode"):
            return (self.decoder(t) + 1.0) / 2.0


_CAST_DRIVE = "https://drive.google.com/file/d/11dZqu95QfnAgkzgR1NTJfQutz8JlwRY8/view"
_CAST_BAIDU = "https://pan.baidu.com/s/12oPk3195fntMEHdlsHNwkQ"
_UNPACK = (
    "download the 'CAST model' archive (zyxElsa/CAST_pytorch README; test.py reads it from "
    "./checkpoints/CAST_model/), unpack latest_net_AE.pth, latest_net_Dec_A.pth and latest_net_Dec_B.pth "
    "into one folder DIR, then run `sanet-bench weights import DIR`"
)


def _cast_file(name: str, layout: str) -> WeightFile:
    return WeightFile(
        name,
        (
            Source(_CAST_DRIVE, kind="manual", note=_UNPACK),
            Source(_CAST_BAIDU, kind="manual", note="BaiduNetdisk mirror, password 'cast'; " + _UNPACK),
        ),
        layout=layout,
        license="zyxElsa/CAST_pytorch (no licence stated; research use)",
    )


_DECODER_LAYOUT = "models/net.py Decoder: keys decoder.{1,5,8,11,14,18,21,25,28}.{weight,bias} (AdaIN's)"

SPEC = register_method(
    MethodSpec(
        name="cast",
        title="CAST",
        citation="Zhang, Tang, Dong, Huang, Ma, Lee & Xu, Domain Enhanced Arbitrary Image Style Transfer via "
        "Contrastive Learning, SIGGRAPH 2022",
        reference="zyxElsa/CAST_pytorch@67a7d9c1e9c1931db5d535385eca9861875049a8",
        factory=CAST,
        files=(
            VGG_NORMALISED,
            _cast_file(
                AE,
                "models/net.py ADAIN_Encoder: keys enc_1.{0,2}, enc_2.{1,5}, enc_3.{1,5}, "
                "enc_4.{1,4,7,11}.{weight,bias} (vgg_normalised convs up to relu4_1)",
            ),
            _cast_file(DEC_B, _DECODER_LAYOUT + "; produces the output (content -> style)"),
            _cast_file(DEC_A, _DECODER_LAYOUT + "; loaded and validated but UNUSED (training only)"),
        ),
        default_alpha=1.0,
        has_alpha=False,
        weights_kinds=("official", "random", "auto"),
        min_size=MIN_SIDE,
        input_policy=InputPolicy(
            note="any size of at least 9 px per side (relu4_1 after three ceil-mode pools needs 2 px); "
            "the reference's test dataset resizes both images to 256x256 first, which is left to the grid"
        ),
        notes="test path = AdaIN (unbiased variance + 1e-5) on [-1,1] inputs with the CAST-trained encoder "
        "(latest_net_AE.pth) and decoder (latest_net_Dec_B.pth); vgg_normalised.pth and latest_net_Dec_A.pth "
        "are loaded strictly by the reference but do not affect the output",
    )
)
