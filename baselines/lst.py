"""LST: Li, Liu, Kautz & Yang, Learning Linear Transformations for Fast Image and Video Style Transfer,
CVPR 2019 (arXiv:1808.04537).

Two methods from one module: ``lst`` transforms relu4_1 features (files ``vgg_r41.pth``, ``dec_r41.pth``,
``r41.pth``), ``lst-r31`` relu3_1 features (``vgg_r31.pth``, ``dec_r31.pth``, ``r31.pth``), as the reference's
``TestArtistic.py --layer r41 / r31``. Matches sunshineatnoon/LinearStyleTransfer@188e8e5
(TestArtistic.py's forward, libs/models.py ``encoder4/decoder4/encoder3/decoder3``, libs/Matrix.py
``MulLayer``), written from the parity specification (tests/fixtures/parity/README.md) and the paper:

* The paper's linear transform: the centred content feature ``F̄_c = F_c - mean(F_c)`` is mapped by one matrix,
  ``F_d = T F̄_c + mean(F_s)`` (the style mean is added back; the content mean is dropped).
* Its learned matrix (the transformation module in the paper's model figure), ``T = φ_s(F̄_s) φ_c(F̄_c)``:
  each φ is three 3x3 convs (zero padding, ReLU between) down to 32 channels ``y``, the biased Gram
  ``y y^T / (h w)`` (32x32), and a fully connected layer on its row-major flattening, reshaped to 32x32.
  ``T`` acts on a 32-channel compression of the content: ``F_d = unzip(T compress(F̄_c)) + mean(F_s)``,
  ``compress``/``unzip`` 1x1 convs.
* The encoder is WCT's normalised VGG19 truncated at relu4_1 (relu3_1): a 1x1 input conv (the released
  files' RGB[0,1] -> BGR*255 - mean map; applied from the checkpoint, not hard-coded), reflection-padded 3x3
  convs with ReLU, 2x2/2 max-pooling in FLOOR mode. The decoder mirrors it with nearest x2 upsampling; its
  output is returned un-clamped (TestArtistic's clamp and min-max ``save_image`` normalisation are not
  applied).

Sizes: floor pooling makes the reference's output ``8 floor(H/8) x 8 floor(W/8)`` (r41; 4 for r31), so the
content's sides must be a multiple of 8 (4) for an output of the content's size; other contents are refused
(``input_policy.multiple`` lets a runner crop them first). Sides under 16 (8) px fail in the reference (the
reflection pad of a 1-pixel map). The style may have any size. The reference has no alpha
(``has_alpha=False``) and no options besides ``--layer``, which is the method name here.

Deliberate differences from the reference that do not change outputs:

* Batches are transformed per sample (the reference runs batch size 1); ``T`` is not kept as module state
  (the reference's ``MulLayer.transmatrix`` attribute).
* One encoder/decoder class for both depths, built from a layer plan; the encoder stops at the transformed
  layer and computes no other outputs, and does not compute pooling indices (``encoder3``'s discarded
  ``return_indices``). Reflection padding is ``F.pad(mode="reflect")`` (``nn.ReflectionPad2d``'s operation).
* No resize of the inputs (TestArtistic's ``Resize(256)`` is the script's preprocessing, not the model).
"""

from __future__ import annotations

from pathlib import Path

import torch.nn.functional as F
from torch import Tensor, nn

from sanet_bench.errors import ImageError
from sanet_bench.method import Method
from sanet_bench.registry import InputPolicy, MethodSpec, Source, WeightFile, register_method
from sanet_bench.weights import load_file_into

MATRIX_SIZE = 32  # MulLayer(matrixSize=32)

# Layer plans: ("conv", name, in, out, relu) for reflection-padded 3x3 convs, "pool" (2x2/2 floor), "up"
# (nearest x2). conv1 of the encoder is the 1x1 input conv (no padding, no ReLU) and is built separately.
_ENC_R31 = (
    ("conv", "conv2", 3, 64, True),
    ("conv", "conv3", 64, 64, True),
    "pool",
    ("conv", "conv4", 64, 128, True),
    ("conv", "conv5", 128, 128, True),
    "pool",
    ("conv", "conv6", 128, 256, True),  # relu3_1
)
_ENC_R41 = _ENC_R31 + (
    ("conv", "conv7", 256, 256, True),
    ("conv", "conv8", 256, 256, True),
    ("conv", "conv9", 256, 256, True),
    "pool",
    ("conv", "conv10", 256, 512, True),  # relu4_1
)
_DEC_R41 = (
    ("conv", "conv11", 512, 256, True),
    "up",
    ("conv", "conv12", 256, 256, True),
    ("conv", "conv13", 256, 256, True),
    ("conv", "conv14", 256, 256, True),
    ("conv", "conv15", 256, 128, True),
    "up",
    ("conv", "conv16", 128, 128, True),
    ("conv", "conv17", 128, 64, True),
    "up",
    ("conv", "conv18", 64, 64, True),
    ("conv", "conv19", 64, 3, False),
)
_DEC_R31 = (
    ("conv", "conv7", 256, 128, True),
    "up",
    ("conv", "conv8", 128, 128, True),
    ("conv", "conv9", 128, 64, True),
    "up",
    ("conv", "conv10", 64, 64, True),
    ("conv", "conv11", 64, 3, False),
)
# layer -> (encoder plan, decoder plan, feature channels, pooling factor)
LAYERS = {"r41": (_ENC_R41, _DEC_R41, 512, 8), "r31": (_ENC_R31, _DEC_R31, 256, 4)}


class _Plan(nn.Module):
    """Reflection-padded 3x3 convs (named as the official keys), floor max-pools and nearest upsamplings."""

    def __init__(self, plan: tuple) -> None:
        super().__init__()
        self.plan = plan
        for step in plan:
            if step not in ("pool", "up"):
                _, name, cin, cout, _relu = step
                self.add_module(name, nn.Conv2d(cin, cout, 3))

    def forward(self, x: Tensor) -> Tensor:
        for step in self.plan:
            if step == "pool":
                x = F.max_pool2d(x, 2, 2)  # floor mode, as nn.MaxPool2d's default
            elif step == "up":
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            else:
                x = getattr(self, step[1])(F.pad(x, (1, 1, 1, 1), mode="reflect"))
                if step[4]:
                    x = F.relu(x)
        return x


class Encoder(_Plan):
    """``encoder4`` / ``encoder3``: keys ``conv1 .. conv10`` (r41) or ``conv1 .. conv6`` (r31)."""

    def __init__(self, layer: str) -> None:
        super().__init__(LAYERS[layer][0])
        self.conv1 = nn.Conv2d(3, 3, 1)  # RGB [0,1] -> BGR*255 - mean in the released files

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(self.conv1(x))


class Decoder(_Plan):
    """``decoder4`` (keys ``conv11 .. conv19``) / ``decoder3`` (keys ``conv7 .. conv11``)."""

    def __init__(self, layer: str) -> None:
        super().__init__(LAYERS[layer][1])


class CovNet(nn.Module):
    """φ_s / φ_c of the transformation module (``snet``/``cnet``): ``convs`` (3x3, zero padding) to 32
    channels, the biased Gram matrix ``y y^T / (h w)`` and ``fc`` on its row-major flattening, returned as
    [B, 32, 32]."""

    def __init__(self, channels: int, size: int = MATRIX_SIZE) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(channels, channels // 2, 3, 1, 1),
            nn.ReLU(),
            nn.Conv2d(channels // 2, channels // 4, 3, 1, 1),
            nn.ReLU(),
            nn.Conv2d(channels // 4, size, 3, 1, 1),
        )
        self.fc = nn.Linear(size * size, size * size)

    def forward(self, x: Tensor) -> Tensor:
        y = self.convs(x).flatten(2)  # [B, 32, h*w]
        gram = y @ y.transpose(1, 2) / y.shape[2]
        return self.fc(gram.flatten(1)).view(x.shape[0], y.shape[1], y.shape[1])


class LinearTransform(nn.Module):
    """``MulLayer`` (matrixSize 32): keys ``snet.*``, ``cnet.*``, ``compress.*``, ``unzip.*``."""

    def __init__(self, channels: int, size: int = MATRIX_SIZE) -> None:
        super().__init__()
        self.snet = CovNet(channels, size)
        self.cnet = CovNet(channels, size)
        self.compress = nn.Conv2d(channels, size, 1)
        self.unzip = nn.Conv2d(size, channels, 1)

    def matrix(self, content_centred: Tensor, style_centred: Tensor) -> Tensor:
        """``T = φ_s(F̄_s) φ_c(F̄_c)``: [B, 32, 32]."""
        return self.snet(style_centred) @ self.cnet(content_centred)

    def forward(self, cf: Tensor, sf: Tensor) -> Tensor:
        c_mean = cf.mean((2, 3), keepdim=True)
        s_mean = sf.mean((2, 3), keepdim=True)
        c = cf - c_mean
        t = self.matrix(c, sf - s_mean)
        z = self.compress(c)
        moved = (t @ z.flatten(2)).view(z.shape)
        return self.unzip(moved) + s_mean  # the content mean is dropped


class LST(Method):
    """One LST model: ``layer`` is "r41" (method ``lst``) or "r31" (method ``lst-r31``)."""

    layer = "r41"

    def __init__(self) -> None:
        super().__init__()
        channels = LAYERS[self.layer][2]
        self.encoder = Encoder(self.layer)
        self.decoder = Decoder(self.layer)
        self.transform = LinearTransform(channels)
        for p in self.encoder.parameters():
            p.requires_grad_(False)

    @property
    def files(self) -> tuple[str, str, str]:
        n = self.layer[1:]
        return f"vgg_r{n}.pth", f"dec_r{n}.pth", f"r{n}.pth"

    def load_official(self, paths: dict[str, Path]) -> None:
        for module, name in zip((self.encoder, self.decoder, self.transform), self.files, strict=True):
            load_file_into(module, paths[name], self.spec, name)

    def _stylize(self, content: Tensor, style: Tensor, alpha: float) -> Tensor:
        k = LAYERS[self.layer][3]
        h, w = content.shape[-2:]
        if h % k or w % k:
            raise ImageError(
                f"content is {w}x{h} px; {self.spec.name} needs both sides a multiple of {k} (its floor-mode "
                f"pooling returns {k * (w // k)}x{k * (h // k)} px); crop it to {k * (w // k)}x{k * (h // k)}"
            )
        for what, x in (("content", content), ("style", style)):
            if min(x.shape[-2:]) < 2 * k:
                raise ImageError(
                    f"{what} is {x.shape[-1]}x{x.shape[-2]} px; {self.spec.name} needs at least {2 * k} px "
                    "per side (the reference's reflection padding fails below it); resize it"
                )
        with self.stage("encode"):
            cf = self.encoder(content)
            sf = self.encoder(style)
        with self.stage("transform"):
            feature = self.transform(cf, sf)
        with self.stage("decode"):
            return self.decoder(feature)


class LSTr31(LST):
    layer = "r31"


_DRIVE = "https://drive.google.com/file/d/1H9T5rfXGlGCUh04DGkpkMFbVnmscJAbs/view?usp=sharing"
_LICENSE = "sunshineatnoon/LinearStyleTransfer models.zip (repository licence BSD-2-Clause)"
_CITATION = (
    "Li, Liu, Kautz & Yang, Learning Linear Transformations for Fast Image and Video Style Transfer, "
    "CVPR 2019"
)
_REFERENCE = "sunshineatnoon/LinearStyleTransfer@188e8e5b2ad9dbb00bed6317eb1280ecde48c657"


def _zip_file(name: str, layout: str) -> WeightFile:
    return WeightFile(
        name,
        (Source(_DRIVE, kind="gdrive"),),
        layout=layout,
        license=_LICENSE,
        archive="models.zip",
        member=f"models/{name}",
    )


def _spec(name: str, title: str, factory: type[LST], layer: str) -> MethodSpec:
    n, k = layer[1:], LAYERS[layer][3]
    enc_keys = "conv1 .. conv10" if layer == "r41" else "conv1 .. conv6"
    dec_keys = "conv11 .. conv19" if layer == "r41" else "conv7 .. conv11"
    c = LAYERS[layer][2]
    return MethodSpec(
        name=name,
        title=title,
        citation=_CITATION,
        reference=_REFERENCE,
        factory=factory,
        files=(
            _zip_file(
                f"vgg_r{n}.pth",
                f"encoder{n[0]} (WCT's normalised VGG19 to relu{n[0]}_1): keys {enc_keys}.{{weight,bias}}",
            ),
            _zip_file(f"dec_r{n}.pth", f"decoder{n[0]}: keys {dec_keys}.{{weight,bias}}"),
            _zip_file(
                f"r{n}.pth",
                f"MulLayer('{layer}'), matrixSize 32: keys snet.convs.{{0,2,4}}.*, snet.fc.*, cnet.(same), "
                f"compress.* ({c}->32 1x1), unzip.* (32->{c} 1x1)",
            ),
        ),
        default_alpha=1.0,
        has_alpha=False,
        options=(),
        min_size=2 * k,
        input_policy=InputPolicy(
            multiple=k,
            note=f"floor-mode max-pooling: the reference's output is {k}*floor(H/{k}) x {k}*floor(W/{k}), "
            f"so the content needs sides a multiple of {k} for an output of its size; the style may have "
            f"any size >= {2 * k}",
        ),
        weights_kinds=("official", "random", "auto"),
        notes=f"relu{n[0]}_1 features (TestArtistic.py --layer {layer}); no alpha; output un-clamped",
    )


SPEC = register_method(_spec("lst", "LST", LST, "r41"))
SPEC_R31 = register_method(_spec("lst-r31", "LST (relu3_1)", LSTr31, "r31"))
