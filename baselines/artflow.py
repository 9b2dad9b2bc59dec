"""ArtFlow: An, Huang, Song, Dou, Liu & Luo, ArtFlow: Unbiased Image Style Transfer via Reversible Neural
Flows, CVPR 2021.

Matches pkuanjie/ArtFlow@bbc33ec (test.py with ``--n_flow 8 --n_block 2``, additive coupling, LU 1x1 convs;
glow_adain.py for ``artflow-adain``, glow_wct.py for ``artflow-wct``). The paper's projection-transfer-
reversion scheme: ``z_c = G(c)``, ``z_s = G(s)``, ``out = G^-1(T(z_c, z_s))`` with one
invertible Glow-style network G (Kingma & Dhariwal 2018) in both directions, so no decoder is learned
separately and nothing of the content is lost on the way (the "content leak" the paper removes).

* G, the paper's projection flow network (PFN): two blocks; a block is a 2x2 squeeze
  (``pixel_unshuffle``: channel ``c*4 + dy*2 + dx``) then 8 flows, the width n = 12 then 48; no split and
  no prior, so ``z`` is [N,48,H/4,W/4]. A flow is (the three Glow layers, Kingma & Dhariwal 2018, Table 1):

  - ActNorm ``y = scale * (x + loc)``; reverse ``x = y / scale - loc``.
  - Invertible 1x1 conv with the LU parameterisation ``W = P (L * l_mask + I) (U * u_mask +
    diag(s_sign * exp(w_s)))``; reverse with ``W^-1`` (matrix inverse).
  - Additive coupling: ``a, b = split(y)``; ``y = [a, b + NN(a)]``, reverse ``b = y_b - NN(a)``, with
    ``NN(a) = ZeroConv(relu(conv1x1_512(relu(conv3x3_512(a)))))`` and ``ZeroConv(u) = conv3x3(pad(u, 1,
    value 1)) * exp(3 * scale)``.

  The reverse runs the flows backwards, then ``pixel_shuffle``.
* T, the paper's unbiased transfer module, on the 48-channel latent:

  - ``artflow-adain``: AdaIN (Huang & Belongie 2017, Eq. 8), ``sigma(z_s) (z_c - mu(z_c)) / sigma(z_c) +
    mu(z_s)``, ``sigma = sqrt(unbiased variance + 1e-5)`` on both sides.
  - ``artflow-wct``: WCT (Li et al. 2017, Eq. 2-3): ``cov = f f^T / (HW - 1)`` of the centred latent (no
    identity added), an SVD of each covariance, eigenvalues below 1e-5 dropped (content and style apart),
    ``whiten = V_c E_c^-1/2 V_c^T f_c``, ``out = V_s E_s^1/2 V_s^T whiten + mu_s``; float32, as the reference.

  There is no content-style trade-off (test.py has no alpha): ``has_alpha=False``.

Differences from the reference, none of which change its outputs where it runs:

* Only the released configuration is built (additive coupling, LU 1x1 convs, 8 flows, 2 blocks); the
  reference's ``affine=True`` and ``--no_lu`` variants have other keys and no released files.
* ActNorm never initialises itself from data: ``actnorm.initialized`` is loaded (1 in trained files) but not
  read, where the reference would re-initialise ``loc``/``scale`` from the first input if it were 0.
* Squeeze and unsqueeze are ``pixel_unshuffle``/``pixel_shuffle`` (the same channel order as the reference's
  ``view``/``permute``); the matrix inverse is ``torch.linalg.inv`` (``torch.inverse`` is its alias).
* Batches: AdaIN is per sample as in the reference. The reference's WCT views the whole batch as one
  [48, -1] matrix (correct for batch 1 only, which test.py uses); here each sample gets its own WCT, i.e.
  what batch-1 calls give. The dropped eigenvalues are masked (weight 0) instead of sliced off, which is
  the same product without a host round trip; where no eigenvalue reaches 1e-5 all are kept, as the
  reference's loop does. ``torch.linalg.svd`` replaces the deprecated ``torch.svd`` (``V = Vh^T``).
* Sizes: both sides of content and style must be multiples of 4 (declared in the input policy and refused
  with an :class:`ImageError`, as the reference's ``view`` fails); test.py's resize to 256 px is the
  runner's job, not this module's.
* Random weights (``weights="random"``) follow the reference's initialisation (LU of a random orthogonal
  matrix, zero ZeroConv so each coupling starts as the identity, identity ActNorm), drawn with torch
  instead of numpy/scipy; for latency work only.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sanet_bench.errors import ImageError
from sanet_bench.method import Method
from sanet_bench.nn.stats import adain
from sanet_bench.registry import InputPolicy, MethodSpec, Source, WeightFile, register_method
from sanet_bench.weights import load_file_into

N_FLOW = 8
N_BLOCK = 2
HIDDEN = 512  # AffineCoupling filter_size
EIG_THRESHOLD = 1e-5  # glow_wct.wct: eigenvalues below it are dropped
MULTIPLE = 2**N_BLOCK  # one 2x2 squeeze per block


class ActNorm(nn.Module):
    """Per-channel affine ``scale * (x + loc)`` (Glow's actnorm), keys ``loc``, ``scale``, ``initialized``."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(1, n, 1, 1))
        self.scale = nn.Parameter(torch.ones(1, n, 1, 1))
        # Loaded for a strict key match; never read (no data-dependent initialisation at inference).
        self.register_buffer("initialized", torch.tensor(1, dtype=torch.uint8))

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * (x + self.loc)

    def reverse(self, y: Tensor) -> Tensor:
        return y / self.scale - self.loc


class InvConv1x1LU(nn.Module):
    """Invertible 1x1 convolution with ``W = P L U`` (Glow Sec. 3.2, LU-decomposed).

    Parameters ``w_l``, ``w_s`` (log|diag U|), ``w_u``; buffers ``w_p``, ``u_mask``, ``l_mask``, ``s_sign``,
    ``l_eye``. The masks are applied here, so the entries of ``w_l``/``w_u`` outside them never count.
    """

    def __init__(self, n: int) -> None:
        super().__init__()
        q = torch.linalg.qr(torch.randn(n, n)).Q
        p, lower, upper = torch.linalg.lu(q)
        diag = torch.diagonal(upper)
        u_mask = torch.triu(torch.ones(n, n), 1)
        self.w_l = nn.Parameter(lower.clone())
        self.w_s = nn.Parameter(diag.abs().log())
        self.w_u = nn.Parameter(torch.triu(upper, 1))
        self.register_buffer("w_p", p.clone())
        self.register_buffer("u_mask", u_mask)
        self.register_buffer("l_mask", u_mask.t().clone())
        self.register_buffer("s_sign", torch.sign(diag))
        self.register_buffer("l_eye", torch.eye(n))

    def weight(self) -> Tensor:
        lower = self.w_l * self.l_mask + self.l_eye
        upper = self.w_u * self.u_mask + torch.diag(self.s_sign * torch.exp(self.w_s))
        return self.w_p @ lower @ upper

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight()[:, :, None, None])

    def reverse(self, y: Tensor) -> Tensor:
        w = self.weight()
        work = torch.promote_types(w.dtype, torch.float32)  # CUDA has no half-precision inverse
        return F.conv2d(y, torch.linalg.inv(w.to(work)).to(w.dtype)[:, :, None, None])


class ZeroConv(nn.Module):
    """3x3 conv on the input padded with ONES, times ``exp(3 * scale)``; zero-initialised (Glow)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.scale = nn.Parameter(torch.zeros(1, cout, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (1, 1, 1, 1), value=1.0)) * torch.exp(3.0 * self.scale)


class AdditiveCoupling(nn.Module):
    """``[a, b] -> [a, b + NN(a)]``; keys ``net.0`` (3x3), ``net.2`` (1x1), ``net.4`` (:class:`ZeroConv`)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        h = n // 2
        self.net = nn.Sequential(
            nn.Conv2d(h, HIDDEN, 3, padding=1), nn.ReLU(), nn.Conv2d(HIDDEN, HIDDEN, 1), nn.ReLU(),
            ZeroConv(HIDDEN, h),
        )
        for i in (0, 2):
            nn.init.normal_(self.net[i].weight, 0.0, 0.05)
            nn.init.zeros_(self.net[i].bias)

    def forward(self, x: Tensor) -> Tensor:
        a, b = x.chunk(2, 1)
        return torch.cat([a, b + self.net(a)], 1)

    def reverse(self, y: Tensor) -> Tensor:
        a, b = y.chunk(2, 1)
        return torch.cat([a, b - self.net(a)], 1)


class Flow(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.actnorm = ActNorm(n)
        self.invconv = InvConv1x1LU(n)
        self.coupling = AdditiveCoupling(n)

    def forward(self, x: Tensor) -> Tensor:
        return self.coupling(self.invconv(self.actnorm(x)))

    def reverse(self, y: Tensor) -> Tensor:
        return self.actnorm.reverse(self.invconv.reverse(self.coupling.reverse(y)))


class Block(nn.Module):
    """2x2 squeeze (channel ``c*4 + dy*2 + dx``), then ``n_flow`` flows on 4x the input channels."""

    def __init__(self, cin: int, n_flow: int = N_FLOW) -> None:
        super().__init__()
        self.flows = nn.ModuleList(Flow(cin * 4) for _ in range(n_flow))

    def forward(self, x: Tensor) -> Tensor:
        x = F.pixel_unshuffle(x, 2)
        for flow in self.flows:
            x = flow(x)
        return x

    def reverse(self, y: Tensor) -> Tensor:
        for flow in reversed(self.flows):
            y = flow.reverse(y)
        return F.pixel_shuffle(y, 2)


class Glow(nn.Module):
    """The invertible network G (keys ``blocks.{b}.flows.{f}.*``): RGB [N,3,H,W] <-> z [N,48,H/4,W/4]."""

    def __init__(self, in_channel: int = 3, n_flow: int = N_FLOW, n_block: int = N_BLOCK) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(in_channel * 4**b, n_flow) for b in range(n_block))

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x

    def reverse(self, z: Tensor) -> Tensor:
        for block in reversed(self.blocks):
            z = block.reverse(z)
        return z


def _kept_power(e: Tensor, power: float, threshold: float) -> Tensor:
    """``e ** power`` where the reference keeps the eigenvalue, 0 where it drops it ([N, C], e descending).

    The reference keeps ``e[:k]``, k = (last index with ``e >= threshold``) + 1, or all C when none is.
    """
    keep = e >= threshold
    keep = keep | ~keep.any(-1, keepdim=True)
    return torch.where(keep, e.pow(power), torch.zeros_like(e))


def wct(content: Tensor, style: Tensor, threshold: float = EIG_THRESHOLD) -> Tensor:
    """glow_wct.wct per sample: whiten ``content`` [N,C,H,W] and colour it with ``style`` [N,C,H',W'].

    ``cov = f f^T / (HW - 1)`` of the centred features, no identity added; eigenvalues below ``threshold``
    dropped for content and style apart; SVD in the input's dtype (float32 as the reference), in float32 at
    least (CUDA has no half-precision SVD); the result is in the input's dtype.
    """
    work = torch.promote_types(content.dtype, torch.float32)
    n, c = content.shape[:2]
    fc = content.reshape(n, c, -1).to(work)
    fs = style.reshape(n, c, -1).to(work)
    fc = fc - fc.mean(-1, keepdim=True)
    s_mean = fs.mean(-1, keepdim=True)
    fs = fs - s_mean
    cov_c = fc @ fc.transpose(1, 2) / (fc.shape[-1] - 1)
    cov_s = fs @ fs.transpose(1, 2) / (fs.shape[-1] - 1)
    _, e_c, vh_c = torch.linalg.svd(cov_c)
    _, e_s, vh_s = torch.linalg.svd(cov_s)
    v_c, v_s = vh_c.transpose(1, 2), vh_s.transpose(1, 2)
    d_c = _kept_power(e_c, -0.5, threshold)
    d_s = _kept_power(e_s, 0.5, threshold)
    whiten = ((v_c * d_c.unsqueeze(1)) @ vh_c) @ fc
    out = ((v_s * d_s.unsqueeze(1)) @ vh_s) @ whiten + s_mean
    return out.reshape(content.shape).to(content.dtype)


class ArtFlow(Method):
    """``G^-1(T(G(content), G(style)))``; subclasses pick T (:attr:`operator`)."""

    # measured no faster with Winograd (5.2-6.1 s against 5.3 s at 256 px) but 1.5x with channels_last,
    # which prepare() turns on by default only where Winograd is off
    winograd_on_cpu = False

    operator = "adain"

    def __init__(self) -> None:
        super().__init__()
        self.glow = Glow()

    def load_official(self, paths: dict[str, Path]) -> None:
        load_file_into(self.glow, paths["glow.pth"], self.spec, "glow.pth")

    def transfer(self, z_c: Tensor, z_s: Tensor) -> Tensor:
        return adain(z_c, z_s) if self.operator == "adain" else wct(z_c, z_s)

    def _stylize(self, content: Tensor, style: Tensor, alpha: float) -> Tensor:
        for what, x in (("content", content), ("style", style)):
            h, w = x.shape[-2:]
            if h % MULTIPLE or w % MULTIPLE:
                raise ImageError(
                    f"{what} is {w}x{h} px; {self.spec.name} needs both sides a multiple of {MULTIPLE} (two "
                    f"2x2 squeezes): crop it to {w // MULTIPLE * MULTIPLE}x{h // MULTIPLE * MULTIPLE}"
                )
        with self.stage("encode"):
            z_c = self.glow(content)
            z_s = self.glow(style)
        with self.stage("transform"):
            z = self.transfer(z_c, z_s)
        with self.stage("decode"):
            return self.glow.reverse(z)


class ArtFlowAdaIN(ArtFlow):
    operator = "adain"


class ArtFlowWCT(ArtFlow):
    operator = "wct"


REFERENCE = "pkuanjie/ArtFlow@bbc33ecb745989efc9ef937118c60cbcee4153b2"
_DRIVE = "https://drive.google.com/drive/folders/1w2fHgSBYwjplfeCXI8eOGYpi69CpJBTE"
_CITATION = (
    "An, Huang, Song, Dou, Liu & Luo, ArtFlow: Unbiased Image Style Transfer via Reversible Neural Flows, "
    "CVPR 2021"
)
_LAYOUT = (
    "{'iter', 'state_dict'} container (train.py; 'optimizer' too); state_dict: Glow(3, n_flow=8, n_block=2, "
    "affine=False, conv_lu=True), 288 keys blocks.{0,1}.flows.{0-7}.{actnorm.{loc,scale,initialized}, "
    "invconv.{w_l,w_s,w_u,w_p,u_mask,l_mask,s_sign,l_eye}, coupling.net.{0,2}.{weight,bias}, "
    "coupling.net.4.{scale,conv.weight,conv.bias}}, width 12 then 48"
)
_LICENSE = "pkuanjie/ArtFlow (no licence stated; research use)"
_POLICY = InputPolicy(
    multiple=MULTIPLE,
    note="Block.forward views H/2 x W/2 twice (two 2x2 squeezes); test.py floors both sides to "
    "multiples of 4",
)


def _glow_file(variant: str, method: str) -> WeightFile:
    note = (
        f"the Google Drive folder (Readme.md 'Usage') has no direct file links: download its "
        f"experiments/{variant}/glow.pth, then run `sanet-bench weights import <download>/experiments/"
        f"{variant} {method}` (import only that sub-folder: the other variants' files are also named "
        "glow.pth)"
    )
    return WeightFile(
        "glow.pth",
        (Source(_DRIVE, kind="manual", note=note),),
        layout=f"experiments/{variant}/glow.pth: {_LAYOUT}",
        license=_LICENSE,
    )


def _spec(name: str, title: str, factory: type[ArtFlow], variant: str, operator_note: str) -> MethodSpec:
    return MethodSpec(
        name=name,
        title=title,
        citation=_CITATION,
        reference=REFERENCE,
        factory=factory,
        files=(_glow_file(variant, name),),
        default_alpha=1.0,
        has_alpha=False,
        weights_kinds=("official", "random", "auto"),
        min_size=64,
        input_policy=_POLICY,
        notes=f"projection-transfer-reversion with one invertible flow (no decoder); {operator_note}",
    )


SPEC_ADAIN = register_method(
    _spec(
        "artflow-adain", "ArtFlow-AdaIN", ArtFlowAdaIN, "ArtFlow-AdaIN",
        "AdaIN on the 48-channel latent (unbiased variance + 1e-5)",
    )
)
SPEC_WCT = register_method(
    _spec(
        "artflow-wct", "ArtFlow-WCT", ArtFlowWCT, "ArtFlow-WCT",
        "WCT on the 48-channel latent (float32 SVD, eigenvalues < 1e-5 dropped)",
    )
)
SPEC = SPEC_ADAIN
