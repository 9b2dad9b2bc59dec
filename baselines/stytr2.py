"""StyTr^2: Deng, Tang, Dong, Ma, Pan, Wang & Xu, StyTr^2: Image Style Transfer with Transformers, CVPR 2022.

Matches diyiiyiii/StyTR-2@c11ea32 (test.py with its defaults: ``StyTrans`` of models/StyTR.py, ``Transformer``
of models/transformer.py), as specified in tests/fixtures/parity/README.md.

The paper's equations, by the name of their section (sequences of 512-d tokens, one per 8x8 patch):

* Content-aware positional encoding: ``P_CA = bilinear(new_ps(avgpool_18x18(E_c)))``, resized to the style
  token grid (``align_corners=False``), computed once from the content patch embedding ``E_c`` (an 8x8
  stride-8 convolution to 512 channels).
* Transformer encoder: three post-norm layers per stream. Content layers attend with
  ``Q = K = x + P_CA, V = x``; style layers with ``Q = K = V = x`` (no positional term).
  ``x = LN1(x + MHA(Q, K, V)); x = LN2(x + W2 relu(W1 x))``.
* Transformer decoder: three post-norm layers, each with TWO content-to-style attentions
  (``Q = t + P_CA``, ``K = V = style memory``; the first is the module named ``self_attn``), then the FFN,
  and a final LayerNorm. MHA = 8 heads of 64, ``softmax(Q K^T / sqrt(64)) V``.
* The CNN decoder is AdaIN's 29-module decoder (three nearest x2 upsamplings: output = content size).
* Network optimization, ``L = l_c L_c + l_s L_s + l_id1 L_id1 + l_id2 L_id2`` (models/StyTR.py
  ``StyTrans.forward``): :func:`stytr2_losses`, combined as
  ``7 loss_c + 10 loss_s + 70 l_identity1 + 1 l_identity2`` (train.py) by :func:`stytr2_total`.

Deliberate differences from the reference that do not change outputs (beyond float rounding):

* Every attention runs through :func:`sanet_bench.nn.attention.chunked_attention` (heads as a batch dim,
  queries in chunks), so peak memory is linear in the number of tokens instead of the full [L x L] matrix of
  ``nn.MultiheadAttention``. The attention module keeps ``nn.MultiheadAttention``'s parameter names.
* Tokens are kept batch-major ([N, L, 512]) instead of token-major ([L, N, 512]); LayerNorm and the linear
  layers act per token, so this only reorders memory.
* The reference pads inputs into a ``NestedTensor`` whose mask is never used, runs the loss branches on every
  test call, and reshapes the decoded tokens with ``view(B, C, -1, int(sqrt(L)))``; here the stylize path
  runs only the forward that produces ``Ics``, and inputs the reference cannot compute (non-square, style
  size != content size, sides not a multiple of 8) are refused instead of being scrambled or asserting.
* The 53-module ``vgg_normalised.pth`` is loaded strictly as test.py does, but only its first 44 modules
  (relu5_1) are used, by the losses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sanet_bench.errors import ImageError
from sanet_bench.method import Method
from sanet_bench.nn.attention import ATTENTION_CHUNK_ELEMENTS, chunked_attention
from sanet_bench.nn.stats import calc_mean_std, mean_variance_norm
from sanet_bench.nn.vgg import VGG_NORMALISED, VGGEncoder, decoder, vgg_normalised
from sanet_bench.registry import InputPolicy, MethodSpec, Source, WeightFile, register_method
from sanet_bench.weights import load_file_into

D_MODEL = 512
HEADS = 8
FFN = 2048
LAYERS = 3
PATCH = 8
CAPE_GRID = 18  # the adaptive average pooling of the CAPE
# train.py's loss weights: content, style, identity 1, identity 2
LOSS_WEIGHTS = {"loss_c": 7.0, "loss_s": 10.0, "l_identity1": 70.0, "l_identity2": 1.0}


class MultiheadAttention(nn.Module):
    """``nn.MultiheadAttention(512, 8)`` semantics and parameter names (``in_proj_weight`` [1536,512] with
    Q/K/V rows 0:512/512:1024/1024:1536, ``in_proj_bias``, ``out_proj``), on batch-major tokens [N, L, C],
    computed with :func:`chunked_attention` (never the full attention matrix)."""

    def __init__(self, d_model: int = D_MODEL, heads: int = HEADS) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d_model, d_model))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * d_model))
        self.out_proj = nn.Linear(d_model, d_model)
        self.chunk_elements = ATTENTION_CHUNK_ELEMENTS
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def _split(self, x: Tensor) -> Tensor:  # [N, L, C] -> [N, heads, L, C/heads]
        n, length, c = x.shape
        return x.reshape(n, length, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, query: Tensor, key: Tensor, value: Tensor) -> Tensor:
        wq, wk, wv = self.in_proj_weight.chunk(3)
        bq, bk, bv = self.in_proj_bias.chunk(3)
        q = self._split(F.linear(query, wq, bq))
        k = self._split(F.linear(key, wk, bk))
        v = self._split(F.linear(value, wv, bv))
        scale = q.shape[-1] ** -0.5
        out = chunked_attention(q, k, v, scale, self.chunk_elements)  # [N, heads, Lq, C/heads]
        n, _, lq, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(n, lq, -1))


class _FFN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear1 = nn.Linear(D_MODEL, FFN)
        self.linear2 = nn.Linear(FFN, D_MODEL)

    def ffn(self, x: Tensor) -> Tensor:
        return self.linear2(F.relu(self.linear1(x)))


class EncoderLayer(_FFN):
    """Post-norm encoder layer: ``x = LN1(x + MHA(x+pos, x+pos, x)); x = LN2(x + FFN(x))``."""

    def __init__(self) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention()
        self.norm1 = nn.LayerNorm(D_MODEL)
        self.norm2 = nn.LayerNorm(D_MODEL)

    def forward(self, x: Tensor, pos: Tensor | None) -> Tensor:
        qk = x if pos is None else x + pos
        x = self.norm1(x + self.self_attn(qk, qk, x))
        return self.norm2(x + self.ffn(x))


class DecoderLayer(_FFN):
    """``t = LN1(t + A1(t+pos, s, s)); t = LN2(t + A2(t+pos, s, s)); t = LN3(t + FFN(t))``: both attentions
    take the queries from the content and keys/values from the style memory (A1 is named ``self_attn``)."""

    def __init__(self) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention()
        self.multihead_attn = MultiheadAttention()
        self.norm1 = nn.LayerNorm(D_MODEL)
        self.norm2 = nn.LayerNorm(D_MODEL)
        self.norm3 = nn.LayerNorm(D_MODEL)

    def forward(self, t: Tensor, memory: Tensor, pos: Tensor) -> Tensor:
        t = self.norm1(t + self.self_attn(t + pos, memory, memory))
        t = self.norm2(t + self.multihead_attn(t + pos, memory, memory))
        return self.norm3(t + self.ffn(t))


class _Stack(nn.Module):
    def __init__(self, layer: type[nn.Module], norm: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layer() for _ in range(LAYERS))
        self.norm = nn.LayerNorm(D_MODEL) if norm else None


class Transformer(nn.Module):
    """models/transformer.py ``Transformer()`` at its defaults; keys ``encoder_c.layers.*``,
    ``encoder_s.layers.*``, ``decoder.layers.*``, ``decoder.norm``, ``new_ps`` (130 tensors)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder_c = _Stack(EncoderLayer, norm=False)
        self.encoder_s = _Stack(EncoderLayer, norm=False)
        self.decoder = _Stack(DecoderLayer, norm=True)
        self.new_ps = nn.Conv2d(D_MODEL, D_MODEL, 1)
        for p in self.parameters():  # the reference's _reset_parameters (random weights only)
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def cape(self, content: Tensor, size: tuple[int, int]) -> Tensor:
        """Content-aware positional encoding of the content embedding [N,512,h,w], at token grid ``size``."""
        pos = self.new_ps(F.adaptive_avg_pool2d(content, CAPE_GRID))
        return F.interpolate(pos, size=size, mode="bilinear", align_corners=False)

    def forward(self, style: Tensor, content: Tensor) -> Tensor:
        """Embedded style and content [N,512,h,w] (one token grid) -> decoded tokens as [N,512,h,w]."""
        n, c, h, w = content.shape
        pos = _tokens(self.cape(content, style.shape[-2:]))
        s = _tokens(style)
        for layer in self.encoder_s.layers:
            s = layer(s, None)
        x = _tokens(content)
        for layer in self.encoder_c.layers:
            x = layer(x, pos)
        for layer in self.decoder.layers:
            x = layer(x, s, pos)
        x = self.decoder.norm(x)
        return x.transpose(1, 2).reshape(n, c, h, w)


def _tokens(x: Tensor) -> Tensor:
    """[N, C, h, w] -> [N, h*w, C] (row-major token order)."""
    return x.flatten(2).transpose(1, 2)


class PatchEmbed(nn.Module):
    """models/StyTR.py ``PatchEmbed()``: an 8x8 stride-8 conv 3 -> 512 (keys ``proj.{weight,bias}``)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, D_MODEL, PATCH, stride=PATCH)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


def check_sizes(content: Tensor, style: Tensor) -> None:
    """Refuse what ``StyTrans.forward`` cannot compute: square content and style of one size, side a
    multiple of 8."""
    h, w = content.shape[-2:]
    if h != w or h % PATCH:
        side = max(2 * PATCH, min(h, w) // PATCH * PATCH)
        raise ImageError(
            f"content is {w}x{h} px; StyTr2 needs a square content with a side that is a multiple of {PATCH} "
            f"(e.g. {side}x{side}); centre-crop it"
        )
    if tuple(style.shape[-2:]) != (h, w):
        raise ImageError(
            f"style is {style.shape[-1]}x{style.shape[-2]} px but the content is {w}x{h}; StyTr2 needs the "
            f"style at the content's size, resize it to {w}x{h}"
        )


class StyTr2(Method):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = VGGEncoder(vgg_normalised(), upto="relu5_1")  # losses only: modules [:44]
        self.embedding = PatchEmbed()
        self.transformer = Transformer()
        self.decoder = decoder()

    def load_official(self, paths: dict[str, Path]) -> None:
        load_file_into(self.encoder.vgg, paths["vgg_normalised.pth"], self.spec, "vgg_normalised.pth")
        load_file_into(self.embedding, paths[EMBEDDING], self.spec, EMBEDDING)
        load_file_into(self.transformer, paths[TRANSFORMER], self.spec, TRANSFORMER)
        load_file_into(self.decoder, paths[DECODER], self.spec, DECODER)

    def forward_ics(self, content: Tensor, style: Tensor) -> Tensor:
        """``Ics = Dec(T(style=E(s), content=E(c)))`` without the stages (the losses use it too)."""
        return self.decoder(self.transformer(self.embedding(style), self.embedding(content)))

    def _stylize(self, content: Tensor, style: Tensor, alpha: float, **options: Any) -> Tensor:
        check_sizes(content, style)
        with self.stage("encode"):
            c = self.embedding(content)
            s = self.embedding(style)
        with self.stage("transform"):
            hs = self.transformer(s, c)
        with self.stage("decode"):
            return self.decoder(hs)


def _mse(a: Tensor, b: Tensor) -> Tensor:
    return F.mse_loss(a, b)


def stytr2_losses(model: StyTr2, content: Tensor, style: Tensor) -> dict[str, Tensor]:
    """The unweighted StyTr2 training losses (models/StyTR.py ``StyTrans.forward``; the paper's
    content, style and two identity losses).

    ``f_1..f_5`` = relu1_1..relu5_1 of the normalised VGG; MSE is the mean over all elements; statistics are
    per sample and channel with ``std = sqrt(unbiased var + 1e-5)``; ``normal`` standardises with them.

    * ``loss_c = MSE(normal(f5(Ics)), normal(f5(c))) + MSE(normal(f4(Ics)), normal(f4(c)))``
    * ``loss_s = sum_i MSE(mean f_i(Ics), mean f_i(s)) + MSE(std f_i(Ics), std f_i(s))``
    * ``Icc = Dec(T(c, c))``, ``Iss = Dec(T(s, s))`` (each with its own CAPE);
      ``l_identity1 = MSE(Icc, c) + MSE(Iss, s)``;
      ``l_identity2 = sum_i MSE(f_i(Icc), f_i(c)) + MSE(f_i(Iss), f_i(s))``.

    Gradients reach the embedding, transformer and decoder; the VGG is frozen. Content and style must be
    inputs :func:`check_sizes` accepts (``StyTrans.forward`` asserts the identity outputs keep their size).
    """
    check_sizes(content, style)
    enc = model.encoder
    with torch.no_grad():
        cf = enc(content)
        sf = enc(style)
    ics = model.forward_ics(content, style)
    icc = model.forward_ics(content, content)
    iss = model.forward_ics(style, style)
    gf = enc(ics)
    loss_c = _mse(mean_variance_norm(gf[-1]), mean_variance_norm(cf[-1])) + _mse(
        mean_variance_norm(gf[-2]), mean_variance_norm(cf[-2])
    )
    loss_s = content.new_zeros(())
    for g, s in zip(gf, sf, strict=True):
        gm, gs = calc_mean_std(g)
        sm, ss = calc_mean_std(s)
        loss_s = loss_s + _mse(gm, sm) + _mse(gs, ss)
    l_identity1 = _mse(icc, content) + _mse(iss, style)
    l_identity2 = content.new_zeros(())
    for a, c, b, s in zip(enc(icc), cf, enc(iss), sf, strict=True):
        l_identity2 = l_identity2 + _mse(a, c) + _mse(b, s)
    return {"loss_c": loss_c, "loss_s": loss_s, "l_identity1": l_identity1, "l_identity2": l_identity2}


def stytr2_total(losses: dict[str, Tensor], weights: dict[str, float] | None = None) -> Tensor:
    """train.py's objective: ``7 loss_c + 10 loss_s + 70 l_identity1 + 1 l_identity2``."""
    w = LOSS_WEIGHTS if weights is None else weights
    return sum(w[k] * losses[k] for k in LOSS_WEIGHTS)


EMBEDDING = "embedding_iter_160000.pth"
TRANSFORMER = "transformer_iter_160000.pth"
DECODER = "decoder_iter_160000.pth"
_LICENSE = "diyiiyiii/StyTR-2 (no licence stated; research use)"
_HOW = (
    "put it into a folder under this name (test.py reads it from ./experiments/), then "
    "`sanet-bench weights import DIR`"
)


def _drive(file_id: str) -> Source:
    return Source(f"https://drive.google.com/file/d/{file_id}/view?usp=sharing", kind="gdrive", note=_HOW)


SPEC = register_method(
    MethodSpec(
        name="stytr2",
        title="StyTr2",
        citation="Deng, Tang, Dong, Ma, Pan, Wang & Xu, StyTr^2: Image Style Transfer with Transformers, "
        "CVPR 2022",
        reference="diyiiyiii/StyTR-2@c11ea32913d16dbf2f9a1f82ac077dbf90f143c6",
        factory=StyTr2,
        files=(
            VGG_NORMALISED,
            WeightFile(
                EMBEDDING,
                (_drive("1C3xzTOWx8dUXXybxZwmjijZN8SrC3e4B"),),
                layout="PatchEmbed: proj.weight [512,3,8,8], proj.bias [512] (8x8 conv, stride 8)",
                license=_LICENSE,
            ),
            WeightFile(
                TRANSFORMER,
                (_drive("1dnobsaLeE889T_LncCkAA2RkqzwsfHYy"),),
                layout="Transformer(): encoder_c.layers.{0,1,2}, encoder_s.layers.{0,1,2} (self_attn, "
                "linear1/2, norm1/2), decoder.layers.{0,1,2} (self_attn, multihead_attn, linear1/2, "
                "norm1..3), decoder.norm, new_ps (130 tensors)",
                license=_LICENSE,
            ),
            WeightFile(
                DECODER,
                (_drive("1fIIVMTA_tPuaAAFtqizr6sd1XV7CX6F9"),),
                layout="29-module nn.Sequential, keys {1,5,8,11,14,18,21,25,28}.{weight,bias}",
                license=_LICENSE,
            ),
        ),
        default_alpha=1.0,
        has_alpha=False,
        weights_kinds=("official", "random", "auto"),
        min_size=16,
        input_policy=InputPolicy(
            square=True,
            style_like_content=True,
            multiple=PATCH,
            note="StyTrans.forward asserts equal content/style sizes and reshapes tokens to a square grid; "
            "8x8 patches",
        ),
        notes="test.py parses --a (alpha) but never uses it: no content-style trade-off; vgg_normalised.pth "
        "is loaded as test.py does but only feeds the training losses",
    )
)
