"""WCT: Li et al., Universal Style Transfer via Feature Transforms, NeurIPS 2017.

Matches the Torch7 original, Yijunmaverick/UniversalStyleTransfer@55f3717 (test_wct.lua ``styleTransfer`` and
``feature_wct``), with the checkpoints as pietrocarbo/deep-transfer@e87e72f converted them to PyTorch:

* Multi-level stylisation (paper Fig. 3 / Sec. 3.2), coarse to fine: for k = 5..1, ``cF = enc_k(img)``
  (img = the content, then the image decoded at level k+1), ``sF = enc_k(style)`` (the style at its own
  size), ``img = dec_k(alpha * WCT(cF, sF) + (1 - alpha) * cF)`` (Eq. 4); default alpha 0.6 as test_wct.lua.
* WCT (Eq. 2-3), in float64 and cast back: ``fc = cF - mean``, ``cov = fc fc^T / (HW - 1)`` (no identity
  added), eigenvalues below 1e-5 dropped separately for content (k_c) and style (k_s);
  ``whiten = Vc Dc^-1/2 Vc^T fc``, ``out = Vs Ds^1/2 Vs^T whiten + mean_s``.

Differences from the reference, none of which change its outputs where it runs:

* ``torch.linalg.eigh`` of the symmetric covariance instead of the reference's SVD (same spectrum and
  subspaces, several times faster), with the cut as a mask (``e >= 1e-5``), so the N samples of a batch are
  decomposed together and whitening and colouring fold into one C x C matrix.
* Content sizes that are not multiples of 16: a decoder returns up to 15 px more than its input (ceil-mode
  pooling); each level's image is cropped back to the content size, where the reference would grow it.
* Styles of 16-31 px: the conv5_1 input is 1 px wide, where the reference's reflection padding fails; it is
  replicated instead. If relu5_1 then has a single position, ``HW - 1 = 0`` would make the covariance NaN;
  here the denominator is ``max(HW - 1, 1)``, so no eigenvalue survives and the level returns the style mean.
* Level files load from the ``.pth`` conversions or, with the ``torchfile`` package, from the original
  Torch7 ``.t7`` files (Torch7 module i -> keys ``i-1.{weight,bias}``, the deep-transfer layout).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sanet_bench.errors import WeightsError
from sanet_bench.method import Method
from sanet_bench.nn.vgg import SLICES, vgg_normalised
from sanet_bench.registry import DemoRecipe, MethodSpec, Source, Unit, WeightFile, register_method
from sanet_bench.weights import load_file_into, load_strict

EIG_THRESHOLD = 1e-5  # test_wct.lua: eigenvalues < 0.00001 are dropped
LEVELS = (1, 2, 3, 4, 5)
# Decoder k (feature_invertor_conv<k>_1): input channels, then conv output channels or "u" (nearest x2).
DECODER_PLANS: dict[int, tuple[int, tuple[int | str, ...]]] = {
    1: (64, (3,)),
    2: (128, (64, "u", 64, 3)),
    3: (256, (128, "u", 128, 64, "u", 64, 3)),
    4: (512, (256, "u", 256, 256, 256, 128, "u", 128, 64, "u", 64, 3)),
    5: (512, (512, "u", 512, 512, 512, 256, "u", 256, 256, 256, 128, "u", 128, 64, "u", 64, 3)),
}


def decoder(k: int) -> nn.Sequential:
    """``feature_invertor_conv<k>_1``: reflection-pad(1) + 3x3 conv + ReLU blocks, nearest x2 upsampling; the
    last conv has no ReLU. Module indices match the Torch7 files (d5 keys {1,5,8,11,14,18,21,24,27,...})."""
    cin, plan = DECODER_PLANS[k]
    layers: list[nn.Module] = []
    for i, tok in enumerate(plan):
        if tok == "u":
            layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            continue
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(cin, int(tok), 3)]
        if i < len(plan) - 1:
            layers.append(nn.ReLU())
        cin = int(tok)
    return nn.Sequential(*layers)


class ReflectOrReplicatePad2d(nn.ReflectionPad2d):
    """Reflection padding; a side of 1 px (a style of 16-31 px at conv5_1) is replicated, where reflection
    is undefined and the reference fails. Identical to ``nn.ReflectionPad2d`` wherever that runs."""

    def forward(self, x: Tensor) -> Tensor:
        if min(x.shape[-2:]) > max(self.padding):
            return super().forward(x)
        return F.pad(x, self.padding, mode="replicate")


# The whitening-colouring matrix times the content map, in place, in bands of columns: 4 MiB of float64 each
# at least, and at most 64 of them (on a GPU at 4096 px, 2048 small products would cost more than they save).
PRODUCT_BYTES, MAX_PRODUCT_BANDS = 4 << 20, 64


def _centred_cov(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """x [N,C,H,W] -> (x - mean as a float64 [N,C,HW] map of its own, mean, covariance / max(HW - 1, 1)).

    The float64 copy is centred in place. A channels_last map is reshaped in float32 first: converting dtype
    and layout in one strided copy took twice as long (33 against 18 ms for 64 x 256 x 256)."""
    n, c = x.shape[:2]
    xc = x.reshape(n, c, -1).to(torch.float64, copy=True)
    mean = xc.mean(-1, keepdim=True)
    xc.sub_(mean)
    return xc, mean, xc @ xc.transpose(1, 2) / max(xc.shape[-1] - 1, 1)


def wct(content: Tensor, style: Tensor, threshold: float = EIG_THRESHOLD) -> Tensor:
    """Whitening and colouring transform (paper Eq. 2-3, test_wct.lua ``feature_wct``), batched.

    content [N,C,H,W], style [N,C,H',W'] -> [N,C,H,W] in the content's dtype; computed in float64 on the
    content's device. Eigenvalues ``< threshold`` of each covariance are dropped (k_c, k_s separately).
    The float64 maps are a call's largest allocations: one full-size map at a time (the style's is freed
    before the content's is made, and the product overwrites the content's in bands of columns).
    """
    n, c, h, w = content.shape
    mean_s, cov_s = _centred_cov(style)[1:]
    xc, _, cov_c = _centred_cov(content)
    e_c, v_c = torch.linalg.eigh(cov_c)
    e_s, v_s = torch.linalg.eigh(cov_s)
    keep_c, keep_s = e_c >= threshold, e_s >= threshold
    d_c = torch.where(keep_c, e_c.clamp_min(threshold).rsqrt(), torch.zeros_like(e_c))
    d_s = torch.where(keep_s, e_s.clamp_min(threshold).sqrt(), torch.zeros_like(e_s))
    whiten = (v_c * d_c.unsqueeze(1)) @ v_c.transpose(1, 2)
    colour = (v_s * d_s.unsqueeze(1)) @ v_s.transpose(1, 2)
    transform = colour @ whiten
    cols = max(PRODUCT_BYTES // (8 * n * c), -(-xc.shape[-1] // MAX_PRODUCT_BANDS), 1)
    for band in xc.split(cols, dim=2):
        band.copy_(transform @ band)
    return xc.add_(mean_s).to(content.dtype).view(n, c, h, w)


class WCT(Method):
    def __init__(self) -> None:
        super().__init__()
        vgg = vgg_normalised()  # one draw: the encoders are prefixes of one VGG, as in the released files
        for i, m in enumerate(vgg):
            if isinstance(m, nn.ReflectionPad2d):
                vgg[i] = ReflectOrReplicatePad2d(1)
        self.encoders = nn.ModuleList(copy.deepcopy(vgg[: SLICES[k - 1][1]]) for k in LEVELS)
        self.decoders = nn.ModuleList(decoder(k) for k in LEVELS)
        for p in self.encoders.parameters():
            p.requires_grad_(False)

    def load_official(self, paths: dict[str, Path]) -> None:
        for k in LEVELS:
            pairs = ((self.encoders[k - 1], "vgg_normalised"), (self.decoders[k - 1], "feature_invertor"))
            for module, stem in pairs:
                name = f"{stem}_conv{k}_1"
                if f"{name}.pth" in paths:
                    load_file_into(module, paths[f"{name}.pth"], self.spec, f"{name}.pth")
                else:
                    path = paths[f"{name}.t7"]
                    expected = f"the Torch7 WCT file {name}.t7 ({self.spec.file(name + '.t7').layout})"
                    load_strict(module, read_t7_state(path, dict(module.state_dict())), path, expected)

    def _style_features(self, style: Tensor) -> list[Tensor | None]:
        """The style's features at relu2_1..relu5_1 (index 1..4; index 0 is None: relu1_1 is cheap to
        compute when level 1 needs it, and holding the full-size map through every level would raise the
        peak memory). Where each level's encoder holds the same weights as the prefix of the deepest one
        (the released files, random weights), one pass of the deepest encoder gives them all, the same values
        as a pass per level; otherwise each level's encoder runs when its level comes."""
        deepest = self.encoders[-1]
        shared = all(
            all(torch.equal(a, b) for a, b in zip(enc.parameters(), deepest.parameters(), strict=False))
            for enc in self.encoders[:-1]
        )
        out: list[Tensor | None] = [None] * len(LEVELS)
        if shared:
            x = style
            for i, (a, b) in enumerate(SLICES):
                x = deepest[a:b](x)
                out[i] = x if i else None
        return out

    def _stylize(self, content: Tensor, style: Tensor, alpha: float) -> Tensor:
        h, w = content.shape[-2:]
        img, sfs = content, None
        for k in reversed(LEVELS):
            with self.stage("encode"):
                sfs = sfs or self._style_features(style)  # in the first encode stage
                cf = self.encoders[k - 1](img)
                sf, sfs[k - 1] = sfs[k - 1], None  # each level's map is freed once used
                if sf is None:
                    sf = self.encoders[k - 1](style)
            with self.stage("transform"):
                csf = wct(cf, sf)
                if alpha < 1.0:
                    csf = alpha * csf + (1.0 - alpha) * cf
            with self.stage("decode"):
                img = self.decoders[k - 1](csf)[..., :h, :w]
        return img


def t7_module_state(modules: list[Any], like: dict[str, Tensor]) -> dict[str, Tensor]:
    """Keys of a Torch7 ``nn.Sequential``'s module list: module i (1-based in Lua, ``modules[i-1]`` here) with
    a ``weight`` becomes ``{i-1}.weight`` / ``{i-1}.bias``, the deep-transfer layout. Weights stored flat
    ([out, in*kh*kw], old nn.SpatialConvolution) are reshaped to the shape of the same key in ``like``."""
    state: dict[str, Tensor] = {}
    for i, m in enumerate(modules):
        for attr in ("weight", "bias"):
            value = getattr(m, attr, None)
            if value is None:
                continue
            t = torch.from_numpy(value.copy()).float()
            key = f"{i}.{attr}"
            if key in like and t.shape != like[key].shape and t.numel() == like[key].numel():
                t = t.reshape(like[key].shape)
            state[key] = t
    return state


def read_t7_state(path: str | Path, like: dict[str, Tensor]) -> dict[str, Tensor]:
    """The state dict of a Torch7 ``nn.Sequential`` ``.t7`` file, read with ``torchfile`` (a pure-python
    parser of the Torch7 binary format that runs no code from the file; chosen over writing our own)."""
    try:
        import torchfile
    except ImportError:
        raise WeightsError(
            f"{path}: reading Torch7 .t7 files needs the torchfile package; `pip install torchfile` or use "
            f"the .pth conversion"
        ) from None
    try:
        obj = torchfile.load(str(path))
        modules = obj.modules
    except Exception as e:  # truncated or not a Torch7 file
        msg = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        why = f"not a readable Torch7 file ({msg})"
        raise WeightsError(f"{path}: {why}; fetch it again or use the .pth") from None
    if not isinstance(modules, list):
        raise WeightsError(f"{path}: not a Torch7 nn.Sequential (no module list); expected a WCT .t7")
    return t7_module_state(modules, like)


_DEEP_TRANSFER = (
    "https://github.com/pietrocarbo/deep-transfer/raw/e87e72f9f8612062431a82289b758ef570da52c3/"
    "models/autoencoder_vgg19/vgg19_{k}/{name}"
)
_DEC_KEYS = {
    1: "{1}",
    2: "{1,5,8}",
    3: "{1,5,8,12,15}",
    4: "{1,5,8,11,14,18,21,25,28}",
    5: "{1,5,8,11,14,18,21,24,27,31,34,38,41}",
}
_ENC_KEYS = {1: "{0,2}", 2: "{0,2,5,9}", 3: "{0,2,...,16}", 4: "{0,2,...,29}", 5: "{0,2,...,42}"}
_LICENSE_PTH = (
    "Li et al.'s Torch7 models (academic use only, UniversalStyleTransfer README), converted to .pth by "
    "pietrocarbo/deep-transfer (no licence stated)"
)
_LICENSE_T7 = "Li et al., UniversalStyleTransfer models (academic use only)"


def _decoder_len(k: int) -> int:
    plan = DECODER_PLANS[k][1]
    convs = sum(tok != "u" for tok in plan)
    return 3 * convs - 1 + (len(plan) - convs)  # pad+conv+relu per conv, no final relu, one per upsampling


def _files() -> tuple[WeightFile, ...]:
    files = []
    for k in LEVELS:
        enc = f"normalised VGG19 [:{SLICES[k - 1][1]}] up to relu{k}_1, keys {_ENC_KEYS[k]}.{{weight,bias}}"
        dec = f"{_decoder_len(k)}-module decoder relu{k}_1 -> RGB, keys {_DEC_KEYS[k]}.{{weight,bias}}"
        for stem, layout in (("vgg_normalised", enc), ("feature_invertor", dec)):
            name = f"{stem}_conv{k}_1"
            url = _DEEP_TRANSFER.format(k=k, name=f"{name}.pth")
            files.append(WeightFile(f"{name}.pth", (Source(url),), layout=layout, license=_LICENSE_PTH))
            files.append(
                WeightFile(
                    f"{name}.t7",
                    layout=f"Torch7 nn.Sequential; module i -> keys i-1 as the .pth: {layout}",
                    license=_LICENSE_T7 + "; shared by the authors as models.zip, no stable URL recorded",
                    optional=True,
                )
            )
    return tuple(files)


# ------------------------------------------------------------------------------------------- demo weights
# The demo decoders (sanet_bench.demo) are trained for reconstruction (Li et al. 2017, Sec. 3.1): pixel MSE +
# feature MSE. The random offline encoder's features have unit variance, ~100x the pixel MSE's scale, so the
# feature term gets 0.01. d5 = a trained head (its four 512-channel convs, modules 0..13) + a tail that is
# the trained d4 (d5 modules 14..41 have d4's modules 1..28); only the head is trained, with d4 frozen.
D5_TAIL_OFFSET = 13
_FEAT = {"feature": 0.01}
DEMO_UNITS = (
    Unit("wct_d4", "wct", "pixel MSE + 0.01 feature MSE at relu4_1 (Li et al. 2017)", 2400, 1e-3,
         decay=2000, weights={"feature": 0.01}),
    Unit("wct_d1", "wct", "pixel MSE + 0.01 feature MSE at relu1_1", 1000, 5e-3, decay=200, weights=_FEAT),
    Unit("wct_d2", "wct", "pixel MSE + 0.01 feature MSE at relu2_1", 600, 2e-3, decay=150, weights=_FEAT),
    Unit("wct_d3", "wct", "pixel MSE + 0.01 feature MSE at relu3_1", 600, 1e-3, decay=150, weights=_FEAT),
    Unit("wct_d5", "wct", "pixel MSE + 0.01 feature MSE at relu5_1; head only, tail = trained d4 frozen",
         800, 1e-3, init="wct_d4", decay=400, clip=1.0, weights={"feature": 0.01}),
)


def wct_d5_state(head: dict[str, Tensor], d4: dict[str, Tensor]) -> dict[str, Tensor]:
    """The d5 decoder's state from its head (modules 0..13) and a d4 decoder's state (its tail)."""
    tail = {f"{int(k.split('.')[0]) + D5_TAIL_OFFSET}.{k.split('.', 1)[1]}": v for k, v in d4.items()}
    return {**head, **tail}


def _demo_encoders(model: WCT) -> None:
    from sanet_bench.demo import offline_state

    vgg = offline_state()
    for enc in model.encoders:
        enc.load_state_dict({k: vgg[k] for k in enc.state_dict()})


def _apply_demo(model: WCT, state: dict[str, Tensor], path: Path) -> None:
    from sanet_bench.demo import substate

    _demo_encoders(model)
    for i in range(4):
        dec = substate(state, f"decoders.{i}.")
        load_strict(model.decoders[i], dec, path, f"the WCT demo decoder d{i + 1}")
    d5 = wct_d5_state(substate(state, "decoders.4."), substate(state, "decoders.3."))
    load_strict(model.decoders[4], d5, path, "the WCT demo decoder d5 (head decoders.4.* + d4 tail)")


def _level(unit: Unit) -> int:
    return int(unit.name.removeprefix("wct_d"))


def _demo_init_state(unit: Unit, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """What a WCT unit hands to a unit started from it: its decoder's state (d4's: AdaIN's, SANet's, d5's)."""
    from sanet_bench.demo import substate

    return substate(state, f"decoders.{_level(unit) - 1}.")


class _DemoJob:
    """Unit ``wct_dK``: decoder K trained for reconstruction through encoder K; ``wct_d5`` trains d5's head
    on the tail ``init`` (the trained d4 decoder)."""

    def __init__(self, unit: Unit, model: WCT, init: dict[str, Tensor] | None):
        self.unit, self.model, self.level = unit, model, _level(unit)
        _demo_encoders(model)
        dec = model.decoders[self.level - 1]
        if self.level == 5:
            dec.load_state_dict(wct_d5_state(self.head_state(), init))
            self.trained = list(dec[: D5_TAIL_OFFSET + 1].parameters())
        else:
            self.trained = list(dec.parameters())

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": self.trained, "lr_scale": 1.0}]

    def head_state(self) -> dict[str, Tensor]:
        return {k: v for k, v in self.model.decoders[4].state_dict().items()
                if int(k.split(".")[0]) <= D5_TAIL_OFFSET}

    def result(self) -> dict[str, Tensor]:
        if self.level == 5:
            return {f"decoders.4.{k}": v for k, v in self.head_state().items()}
        dec = self.model.decoders[self.level - 1]
        return {f"decoders.{self.level - 1}.{k}": v for k, v in dec.state_dict().items()}

    def load_result(self, state: dict[str, Tensor]) -> None:
        from sanet_bench.demo import substate

        dec = self.model.decoders[self.level - 1]
        if self.level == 5:
            cur = dec.state_dict()
            cur.update(substate(state, "decoders.4."))
            dec.load_state_dict(cur)
        else:
            dec.load_state_dict(substate(state, f"decoders.{self.level - 1}."))

    def losses(self, c: Tensor, s: Tensor) -> dict[str, Tensor]:
        enc, dec = self.model.encoders[self.level - 1], self.model.decoders[self.level - 1]
        with torch.no_grad():
            f = enc(c)
        out = dec(f)[..., : c.shape[-2], : c.shape[-1]]
        pix, feat = F.mse_loss(out, c), F.mse_loss(enc(out), f)
        return {"pixel": pix, "feature": feat, "total": pix + self.unit.weights["feature"] * feat}


DEMO = DemoRecipe(
    units=("wct_d4", "wct_d1", "wct_d2", "wct_d3", "wct_d5"),
    defines=DEMO_UNITS,
    apply=_apply_demo,
    job=_DemoJob,
    init_state=_demo_init_state,
)


SPEC = register_method(
    MethodSpec(
        name="wct",
        title="WCT",
        citation="Li, Fang, Yang, Wang, Lu & Yang, Universal Style Transfer via Feature Transforms, "
        "NeurIPS 2017",
        reference="Yijunmaverick/UniversalStyleTransfer@55f37178fd737d9b4989b1c609ad639afcfbb5c6 (Torch7); "
        "files as pietrocarbo/deep-transfer@e87e72f9f8612062431a82289b758ef570da52c3",
        factory=WCT,
        files=_files(),
        default_alpha=0.6,
        weights_kinds=("official", "random", "demo", "auto"),
        demo=DEMO,
        min_size=64,
        notes="each level's .t7 (with torchfile) can stand in for its .pth; the transform stage is the "
        "float64 eigendecomposition WCT",
    )
)
