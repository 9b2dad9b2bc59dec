"""The normalised VGG19 encoder and the matching relu4_1 decoder.

``vgg_normalised.pth`` (Gatys et al.'s normalised VGG19, Torch7 -> PyTorch by naoto0804/pytorch-AdaIN) is a
53-module ``nn.Sequential``. Module 0 is a 1x1 conv that maps RGB in [0,1] to BGR*255 minus the ImageNet
mean, so the encoder takes RGB in [0,1]. Convolutions are reflection-padded; max-pooling is 2x2/2 with
``ceil_mode=True`` as in Torch7 (floor mode changes outputs by 30-45 % on odd feature sizes).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import Source, WeightFile

# The one declaration of vgg_normalised.pth, shared by every method that loads it (one cache entry, one hash).
VGG_NORMALISED = WeightFile(
    "vgg_normalised.pth",
    (
        Source("https://github.com/naoto0804/pytorch-AdaIN/releases/download/v0.0.0/vgg_normalised.pth"),
        Source("https://yadi.sk/d/7IrysY8q8dtneQ", kind="yandex"),
    ),
    layout="53-module nn.Sequential, keys {0,2,5,...,51}.{weight,bias}",
    license="normalised VGG19 (Gatys et al.), redistributed by naoto0804/pytorch-AdaIN (MIT)",
    shared=True,
)

LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
# Slices of the 53-module Sequential ending at each relu{k}_1 (GlebSBrykin/SANET Eval.py enc_1..enc_5).
SLICES = ((0, 4), (4, 11), (11, 18), (18, 31), (31, 44))
# Conv module indices, in order, and their channel plan.
VGG_CONVS = (0, 2, 5, 9, 12, 16, 19, 22, 25, 29, 32, 35, 38, 42, 45, 48, 51)


def _conv_block(cin: int, cout: int) -> list[nn.Module]:
    # in-place ReLU: the same values without a copy of every feature map (the convolution's output is not
    # kept anywhere else; the encoder's returned features are ReLU outputs that no later module modifies)
    return [nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3), nn.ReLU(inplace=True)]


def vgg_normalised() -> nn.Sequential:
    """The 53-module layout of ``vgg_normalised.pth`` (keys ``{0,2,5,...,51}.{weight,bias}``)."""

    def pool() -> nn.Module:
        return nn.MaxPool2d(2, 2, 0, ceil_mode=True)

    layers: list[nn.Module] = [nn.Conv2d(3, 3, 1)]
    layers += _conv_block(3, 64) + _conv_block(64, 64) + [pool()]
    layers += _conv_block(64, 128) + _conv_block(128, 128) + [pool()]
    layers += _conv_block(128, 256) + _conv_block(256, 256) + _conv_block(256, 256) + _conv_block(256, 256)
    layers += [pool()]
    layers += _conv_block(256, 512) + _conv_block(512, 512) + _conv_block(512, 512) + _conv_block(512, 512)
    layers += [pool()]
    layers += _conv_block(512, 512) + _conv_block(512, 512) + _conv_block(512, 512) + _conv_block(512, 512)
    seq = nn.Sequential(*layers)
    assert len(seq) == 53
    return seq


def decoder() -> nn.Sequential:
    """The 29-module relu4_1 -> RGB decoder of AdaIN and SANet (keys ``{1,5,8,11,14,18,21,25,28}``).

    The last conv has no ReLU; three nearest x2 upsamplings mirror the encoder's pools.
    """
    up = nn.Upsample(scale_factor=2, mode="nearest")
    layers: list[nn.Module] = _conv_block(512, 256) + [up]
    layers += _conv_block(256, 256) + _conv_block(256, 256) + _conv_block(256, 256) + _conv_block(256, 128)
    layers += [nn.Upsample(scale_factor=2, mode="nearest")]
    layers += _conv_block(128, 128) + _conv_block(128, 64) + [nn.Upsample(scale_factor=2, mode="nearest")]
    layers += _conv_block(64, 64) + [nn.ReflectionPad2d(1), nn.Conv2d(64, 3, 3)]
    seq = nn.Sequential(*layers)
    assert len(seq) == 29
    return seq


class VGGEncoder(nn.Module):
    """Slices of a normalised VGG19 returning the features at relu1_1 .. ``upto``.

    ``vgg`` keeps its official module indices, so ``encoder.vgg.load_state_dict(official_state)`` works.
    """

    def __init__(self, vgg: nn.Sequential | None = None, upto: str = "relu5_1"):
        super().__init__()
        self.depth = LAYERS.index(upto) + 1
        self.vgg = vgg if vgg is not None else vgg_normalised()
        for p in self.vgg.parameters():
            p.requires_grad_(False)

    def forward(self, x: Tensor, depth: int | None = None, first: int = 0) -> list[Tensor]:
        """The features at relu1_1 .. relu{depth}_1, from index ``first`` on: earlier ones are not kept (a
        full-resolution relu1_1 held through the rest of the pass would raise its peak memory)."""
        feats = []
        h = x
        for k, (a, b) in enumerate(SLICES[: depth or self.depth]):
            for i in range(a, b):
                h = self.vgg[i](h)
            if k >= first:
                feats.append(h)
        return feats

    def last(self, x: Tensor, depth: int | None = None) -> Tensor:
        depth = depth or self.depth
        return self.forward(x, depth, first=depth - 1)[0]


# ------------------------------------------------------------------------------------ offline encoder
OFFLINE_SEED = 0
# ImageNet mean in BGR*255, as baked into module 0 of the released vgg_normalised.pth.
_BGR_MEAN = (103.939, 116.779, 123.68)


def offline_vgg_id(seed: int = OFFLINE_SEED) -> str:
    return (
        f"offline-random-vgg19(seed={seed},unit-variance) — NOT the ImageNet VGG19; "
        "values not comparable to papers"
    )


OFFLINE_VGG_ID = offline_vgg_id()


def _calibration_images(g: torch.Generator, n: int = 4, size: int = 64) -> Tensor:
    """Smooth random RGB images in [0,1] (as the parity fixtures': low-res noise, upsampled, + grain)."""
    lo = torch.rand(n, 3, size // 8 + 1, size // 8 + 1, generator=g)
    x = F.interpolate(lo, size=(size, size), mode="bilinear", align_corners=False)
    return (x + 0.03 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 1)


@functools.lru_cache(maxsize=4)
def _offline_state(seed: int) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    vgg = vgg_normalised()
    with torch.no_grad():
        first = vgg[0]
        first.weight.zero_()
        for out_c, in_c in enumerate((2, 1, 0)):  # RGB [0,1] -> BGR * 255 - mean, as the released file
            first.weight[out_c, in_c, 0, 0] = 255.0
        first.bias.copy_(-torch.tensor(_BGR_MEAN))
        h = _calibration_images(g)
        for i, m in enumerate(vgg):
            if isinstance(m, nn.Conv2d) and i > 0:
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                m.bias.zero_()
                # LSUV-style: unit variance of each conv's output on the calibration set
                m.weight.div_(m(h).std())
            h = m(h)
    return {k: v.clone() for k, v in vgg.state_dict().items()}


def offline_vgg_normalised(seed: int = OFFLINE_SEED) -> nn.Sequential:
    """A deterministic stand-in for ``vgg_normalised.pth`` that needs no download.

    The 53-module architecture with module 0 set to the released file's fixed RGB->BGR*255-mean map and every
    3x3 conv drawn from N(0, 2/fan_in) with ``torch.Generator().manual_seed(seed)``, then rescaled so its
    output has unit variance on a fixed set of generated calibration images. Random features are not
    ImageNet features: metrics computed with it are labelled with :func:`offline_vgg_id`.
    """
    vgg = vgg_normalised()
    vgg.load_state_dict(_offline_state(seed))
    return vgg
