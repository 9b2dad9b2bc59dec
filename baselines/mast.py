"""MAST: Huo, Jin, Li, Wu, Lai, Shi & Gao, Manifold Alignment for Semantically Aligned Style Transfer,
ICCV 2021 (arXiv:2005.10777).

Matches NJUHuoJing/MAST@6cce6bf ``test_artistic.py`` ``multi_level_test`` with the default
configs/config.yaml (no segmentation maps, ``--resize -1``; layers r41, r31, r21; K_CROSS 5, PATCH_SIZE 1,
DIM_THRESH 128, avg-pool reduction, MAX_USE_NUM -1, no orthogonal constraint):

* Cascade: ``img = content``; for l in r41, r31, r21: ``cf = E(img)_l``, ``sf = E(style)_l`` (the style at
  its own size), ``img = D_l(alpha * MAST(cf, sf) + (1 - alpha) * cf)``. alpha is the reference's
  ``TEST.ARTISTIC.STYLE_WEIGHT`` (default 0.6). E: 1x1 conv1 (no ReLU), then reflection-padded 3x3 convs +
  ReLU with floor-mode 2x2 max-pools after conv3, conv5, conv9 (and conv13); taps r21 = conv4, r31 = conv6,
  r41 = conv10. D_l: the mirrored reflection-padded convs with nearest x2 upsamplings, no ReLU on conv27.
* Manifold alignment (the paper's method section; ``MAST.transform``/``cal_p``): c, s = the content / style
  features, each average-pooled 2x2 (floor) until it has at most 128*128 positions; F = the full-resolution
  content features. S = cos(c_i, s_j) (columns L2-normalised, ``x / max(||x||, 1e-12)``). The inter-domain
  affinity U[i,j] = 1 where s_j is among the 5 nearest style positions of c_i OR c_i among the 5 nearest
  content positions of s_j, then ``U /= sum(U)``. The closed-form projection (the alignment objective
  without the orthogonality constraint) ``p = solve(c diag(rowsum U) c^T + 1e-12 I, c U s^T)`` (LU), and
  ``MAST(cf, sf) = p^T F``.
* Precision: the WHOLE pipeline (encoder, alignment, blend and decoders) runs in float64 and the output is
  cast back to the input's dtype. The kNN selections have near-ties (5th/6th cosine gaps down to ~1e-7)
  below float32 noise at r31/r21, and A is singular apart from the 1e-12 regulariser when a map has fewer
  positions than live channels: on the parity cases the all-float32 reference moves by 0.8-17 % and float32
  networks with a float64 alignment by up to 0.6 % (parity README, MAST quirks), against a 5e-7 tolerance.
  The weights stay float32 parameters and are cast per call.

Deliberate differences from the reference that do not change its outputs:

* The similarity matrix is never held whole: it is computed once, in chunks of content rows (32 MiB), each
  chunk giving its rows' top-k and a column top-k merged across chunks; U is kept as its list of (content,
  style) pairs (at most 5 (Nc + Ns)), so memory is linear in positions.
  ``c U s^T`` is evaluated as ``c (U s^T)`` with an index-add over the pairs.
* The style is encoded once (up to r41) and its r41/r31/r21 taps reused; the reference re-encodes it at
  every level with the same encoder, which gives the same features. The encoder stops at the tap it needs
  (the reference always runs it to r51, which no output uses); inputs smaller than 32 px, which make the
  reference's r51 reflection pad fail, are still refused.
* Batches: the alignment runs per sample (the reference takes one pair).
* Content sides must be multiples of 8 (``input_policy``): the floor-mode pools make the reference return
  ``8*floor(H/8) x 8*floor(W/8)``, which is not the content's size.
* Only dec_r41/r31/r21 are loaded; dec_r11.pth and dec_r51.pth (other LAYERS settings) are listed as
  optional files and not read.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sanet_bench.errors import ImageError
from sanet_bench.method import Method
from sanet_bench.registry import InputPolicy, MethodSpec, Source, WeightFile, register_method
from sanet_bench.weights import load_file_into

LEVELS = ("r41", "r31", "r21")  # TEST.ARTISTIC.LAYERS
K_CROSS = 5  # MAST_CORE.K_CROSS
DIM_THRESH = 128  # MAST_CORE.DIM_THRESH: pool while H*W > DIM_THRESH**2
REG = 1e-12  # the regulariser added to A in cal_p
NORM_EPS = 1e-12  # F.normalize's eps
MIN_SIZE = 32  # the encoder always reaches r51 (1/16): reflection padding needs >= 2 px there
MULTIPLE = 8  # the r41 decoder returns 8*floor(side/8)
# Elements of one chunk of the similarity matrix: 2**22 float64 = 32 MiB.
SIM_CHUNK_ELEMENTS = 1 << 22

# Encoder: (conv name, in, out, kernel); "pool" = 2x2/2 floor max-pool. Taps after the conv named.
_ENC_PLAN = (
    ("conv1", 3, 3, 1), ("conv2", 3, 64, 3), ("conv3", 64, 64, 3), "pool",
    ("conv4", 64, 128, 3), ("conv5", 128, 128, 3), "pool",
    ("conv6", 128, 256, 3), ("conv7", 256, 256, 3), ("conv8", 256, 256, 3), ("conv9", 256, 256, 3), "pool",
    ("conv10", 256, 512, 3), ("conv11", 512, 512, 3), ("conv12", 512, 512, 3), ("conv13", 512, 512, 3),
    "pool",
    ("conv14", 512, 512, 3),
)  # fmt: skip
_TAPS = {"conv2": "r11", "conv4": "r21", "conv6": "r31", "conv10": "r41", "conv14": "r51"}
# Decoder blocks from each level down; "up" = nearest x2.
_DEC_BLOCKS = {
    "r51": (("conv15", 512, 512), "up", ("conv16", 512, 512), ("conv17", 512, 512), ("conv18", 512, 512)),
    "r41": (("conv19", 512, 256), "up", ("conv20", 256, 256), ("conv21", 256, 256), ("conv22", 256, 256)),
    "r31": (("conv23", 256, 128), "up", ("conv24", 128, 128)),
    "r21": (("conv25", 128, 64), "up", ("conv26", 64, 64)),
    "r11": (("conv27", 64, 3),),
}
_ORDER = ("r51", "r41", "r31", "r21", "r11")


def _conv(x: Tensor, conv: nn.Conv2d, relu: bool = True) -> Tensor:
    """Reflection-padded conv in the input's dtype (float32 parameters are cast: the float64 path)."""
    if conv.kernel_size[0] > 1:
        x = F.pad(x, (1, 1, 1, 1), mode="reflect")
    y = F.conv2d(x, conv.weight.to(x.dtype), conv.bias.to(x.dtype))
    return F.relu(y) if relu else y


class Encoder(nn.Module):
    """``vgg_r51.pth``: keys conv1..conv14.{weight,bias}."""

    def __init__(self) -> None:
        super().__init__()
        for step in _ENC_PLAN:
            if step != "pool":
                name, cin, cout, k = step
                self.add_module(name, nn.Conv2d(cin, cout, k))
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: Tensor, upto: str = "r41") -> dict[str, Tensor]:
        """The taps r11 .. ``upto`` of ``x`` (RGB [0,1], fed as-is), in ``x``'s dtype."""
        taps: dict[str, Tensor] = {}
        for step in _ENC_PLAN:
            if step == "pool":
                x = F.max_pool2d(x, 2, 2)  # floor mode
                continue
            name = step[0]
            x = _conv(x, getattr(self, name), relu=name != "conv1")
            if name in _TAPS:
                taps[_TAPS[name]] = x
                if _TAPS[name] == upto:
                    break
        return taps


class Decoder(nn.Module):
    """``Artistic_decoders/dec_<level>.pth``: the convs from ``level``'s block down to conv27."""

    def __init__(self, level: str) -> None:
        super().__init__()
        self.level = level
        self.plan = tuple(s for lv in _ORDER[_ORDER.index(level) :] for s in _DEC_BLOCKS[lv])
        for step in self.plan:
            if step != "up":
                name, cin, cout = step
                self.add_module(name, nn.Conv2d(cin, cout, 3))
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        for step in self.plan:
            if step == "up":
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            else:
                x = _conv(x, getattr(self, step[0]), relu=step[0] != "conv27")
        return x


def _reduce(x: Tensor) -> Tensor:
    """[C,H,W] -> [C, positions]: 2x2 average pools (floor) while H*W > DIM_THRESH**2, then flattened."""
    x = x.unsqueeze(0)
    while x.shape[-2] * x.shape[-1] > DIM_THRESH * DIM_THRESH:
        x = F.avg_pool2d(x, 2, 2)
    return x.flatten(2)[0]


def knn_pairs(c: Tensor, s: Tensor, k: int = K_CROSS) -> tuple[Tensor, Tensor]:
    """The nonzero entries (i, j) of MAST's inter-domain affinity U, sorted by ``i * Ns + j``.

    ``c`` [C,Nc], ``s`` [C,Ns]; with the cosine similarity S = norm(c)^T norm(s): j is among the k largest
    entries of row i, or i among the k largest of column j. S is computed once, in chunks of content rows,
    and the column top-k is merged across the chunks.
    """
    cn = c / c.norm(dim=0, keepdim=True).clamp_min(NORM_EPS)
    sn = s / s.norm(dim=0, keepdim=True).clamp_min(NORM_EPS)
    nc, ns = cn.shape[1], sn.shape[1]
    step = max(1, SIM_CHUNK_ELEMENTS // max(1, ns))
    rows: list[Tensor] = []  # per chunk [m, k]: the best style positions of each content position
    col_v: Tensor | None = None  # [Ns, <=k]: the best similarities of each style position so far
    col_i: Tensor | None = None  # ... and their content positions
    for a in range(0, nc, step):
        sim = cn[:, a : a + step].T @ sn  # S[a:a+m], [m, Ns]
        rows.append(sim.topk(min(k, ns), dim=1).indices)
        v, i = sim.T.contiguous().topk(min(k, sim.shape[0]), dim=1)  # contiguous: topk along rows is fast
        i = i + a
        if col_v is not None and col_i is not None:
            v, sel = torch.cat([col_v, v], 1).topk(min(k, a + sim.shape[0]), dim=1)
            i = torch.cat([col_i, i], 1).gather(1, sel)
        col_v, col_i = v, i
    assert col_i is not None
    ci = torch.arange(nc, device=c.device).unsqueeze(1) * ns
    cj = torch.arange(ns, device=c.device).unsqueeze(1)
    flat = torch.cat([(ci + torch.cat(rows)).flatten(), (col_i * ns + cj).flatten()]).unique()
    return flat // ns, flat % ns


def mast_transform(cf: Tensor, sf: Tensor, k: int = K_CROSS) -> Tensor:
    """MAST(cf, sf) for one pair, cf [C,H,W], sf [C,H',W'] -> [C,H,W] (no orthogonality constraint).

    Run it in float64: the kNN selections and the nearly singular solve are not reproducible in float32.
    """
    ch = cf.shape[0]
    c, s = _reduce(cf), _reduce(sf)
    i, j = knn_pairs(c, s, k)
    n = i.numel()  # sum(U) before the normalisation U /= sum(U)
    d = torch.bincount(i, minlength=c.shape[1]).to(c.dtype) / n  # rowsum(U)
    a = (c * d) @ c.T + REG * torch.eye(ch, dtype=c.dtype, device=c.device)
    us = torch.zeros(c.shape[1], ch, dtype=c.dtype, device=c.device).index_add_(0, i, s[:, j].T) / n
    p = torch.linalg.solve(a, c @ us)  # LU: backward stable where A is singular up to the regulariser
    return (p.T @ cf.reshape(ch, -1)).reshape(cf.shape)


class MAST(Method):
    full_precision = True  # the whole pipeline runs in float64 (module docstring): no lower dtype

    def __init__(self) -> None:
        super().__init__()
        self.encoder = Encoder()
        self.decoders = nn.ModuleDict({lv: Decoder(lv) for lv in LEVELS})

    def load_official(self, paths: dict[str, Path]) -> None:
        load_file_into(self.encoder, paths[VGG], self.spec, VGG)
        for lv in LEVELS:
            load_file_into(self.decoders[lv], paths[_dec(lv)], self.spec, _dec(lv))

    def _stylize(self, content: Tensor, style: Tensor, alpha: float) -> Tensor:
        h, w = content.shape[-2:]
        if h % MULTIPLE or w % MULTIPLE:
            fit = f"{w // MULTIPLE * MULTIPLE}x{h // MULTIPLE * MULTIPLE}"
            raise ImageError(
                f"content is {w}x{h} px; MAST's floor-mode pools make the reference return {fit} px, so crop "
                f"the content to sides that are multiples of {MULTIPLE} (e.g. to {fit})"
            )
        if min(style.shape[-2:]) < MIN_SIZE:
            raise ImageError(
                f"style is {style.shape[-1]}x{style.shape[-2]} px; MAST's encoder needs at least {MIN_SIZE} "
                "px per side (its r51 map must be 2 px for the reflection pad), resize it"
            )
        return self.cascade(content, style, alpha)[-1].to(content.dtype)

    def cascade(self, content: Tensor, style: Tensor, alpha: float) -> list[Tensor]:
        """The float64 images decoded after each level (r41, r31, r21); the last is the output."""
        img = content.double()
        with self.stage("encode"):
            sfeats = self.encoder(style.double(), upto=LEVELS[0])
        out = []
        for lv in LEVELS:
            with self.stage("encode"):
                cf = self.encoder(img, upto=lv)[lv]
            with self.stage("transform"):
                t = torch.stack([mast_transform(c, s) for c, s in zip(cf, sfeats[lv], strict=True)])
                if alpha != 1.0:
                    t = alpha * t + (1.0 - alpha) * cf
            with self.stage("decode"):
                img = self.decoders[lv](t)
            out.append(img)
        return out


VGG = "vgg_r51.pth"


def _dec(level: str) -> str:
    return f"Artistic_decoders/dec_{level}.pth"


_ZIP = "checkpoints.zip"
_SOURCES = (
    Source(
        "https://drive.google.com/file/d/16R7monpAEN_hFuQPvaB6sYuBJMyaJiK7/view?usp=sharing",
        kind="gdrive",
        note="checkpoints.zip from the NJUHuoJing/MAST README (unzipped into the repo root: checkpoints/...)",
    ),
    Source(
        "https://drive.google.com/file/d/1vkSwdq_Q94yCMuzgoBgwdxs526JPv-SL/view",
        kind="gdrive",
        note="the older checkpoints.zip link of NJUHuoJing/MAST scripts/prepare_data.sh",
    ),
)
_LICENSE = "NJUHuoJing/MAST checkpoints.zip (no licence stated for the checkpoints; research use)"
_DEC_CONVS = {"r51": "conv15..conv27", "r41": "conv19..conv27", "r31": "conv23..conv27",
              "r21": "conv25..conv27", "r11": "conv27"}  # fmt: skip


def _weight_file(name: str, layout: str, optional: bool = False) -> WeightFile:
    return WeightFile(
        name, _SOURCES, layout=layout, license=_LICENSE, optional=optional, archive=_ZIP,
        member=f"checkpoints/{name}",
    )  # fmt: skip


SPEC = register_method(
    MethodSpec(
        name="mast",
        title="MAST",
        citation="Huo, Jin, Li, Wu, Lai, Shi & Gao, Manifold Alignment for Semantically Aligned Style "
        "Transfer, ICCV 2021",
        reference="NJUHuoJing/MAST@6cce6bfeed98e8f2d96b02760d3eaf985e14b984",
        factory=MAST,
        files=(
            _weight_file(
                VGG,
                "Encoder keys conv1..conv14.{weight,bias}: conv1 1x1 3->3, 3x3 convs "
                "3->64->64->128->128->256 (x4)->512 (x5)",
            ),
            *(
                _weight_file(
                    _dec(lv),
                    f"Decoder('{lv}') keys {_DEC_CONVS[lv]}.{{weight,bias}}, 3x3 convs down to conv27 64->3",
                    optional=lv in ("r51", "r11"),
                )
                for lv in _ORDER[1:4] + ("r11", "r51")
            ),
        ),
        default_alpha=0.6,
        has_alpha=True,
        weights_kinds=("official", "random", "auto"),
        min_size=MIN_SIZE,
        input_policy=InputPolicy(
            multiple=MULTIPLE,
            note="floor-mode pools: the reference returns 8*floor(H/8) x 8*floor(W/8) px",
        ),
        notes="alpha is the reference's TEST.ARTISTIC.STYLE_WEIGHT; encoder, kNN manifold alignment, blend "
        "and decoders all run in float64 (kNN near-ties flip under float32 noise), the output is cast back; "
        "dec_r11/dec_r51 are unused with the default layers r41,r31,r21",
    )
)
