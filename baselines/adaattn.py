"""AdaAttN: Liu, Lin, He, Li, Wang, Li, Sun, Li & Ding, AdaAttN: Revisit Attention Mechanism in Arbitrary
Neural Style Transfer, ICCV 2021 (arXiv:2108.03647).

Matches Huage001/AdaAttN@524b2b1 (the authors' "officially unofficial" re-implementation) as run by
test_adaattn.sh: ``--skip_connection_3 --shallow_layer``, i.e. an AdaAttN block at relu3_1 whose output is
concatenated into the decoder, and keys built from all shallower layers.

* Encoder: the normalised VGG19 (``vgg_normalised.pth``), ``r1..r5`` = relu1_1..relu5_1, ceil-mode pools.
* Keys (paper Sec. 3, "Adaptive Attention Normalization", shallow and deep features):
  ``key_k(x) = cat(mvn(nearest(r_1)), ..., mvn(nearest(r_{k-1})), mvn(r_k))``, every shallower map resized
  to ``r_k``'s size with PyTorch's legacy ``nearest`` (source index ``floor(dst * in / out)``) and normalised
  AFTER the resize; ``mvn`` standardises each channel with ``sqrt(unbiased variance + 1e-5)``.
* AdaAttN block (same section: query/key/value, attention map, attention-weighted mean and standard
  deviation, adaptive normalisation): ``Q = f(key(c))``, ``K = g(key(s))``, ``V = h(r_k(s))`` (1x1 convs);
  ``A = softmax(Q^T K)`` over the style positions (no 1/sqrt(d) scaling); attention-weighted mean
  ``M = A V`` and standard deviation ``S = sqrt(relu(A (V*V) - M*M))`` (one-pass variance, no eps);
  ``AdaAttN(c) = S * mvn(r_k(c)) + M``.
* Transform: ``t = merge_conv(reflect_pad1(A_4(...) + up2(A_5(...))))``; decoder (skip connection at relu3_1):
  ``layer_2(cat(up2(relu(conv(t))), A_3(...)))``. The output is not clamped.
* Style subsampling: when a block's style positions exceed ``max_sample`` (64*64 at relu3_1, 256*256 at
  relu4_1/relu5_1, 64*64 at every level of the local loss) the reference calls ``torch.manual_seed(6666)``
  and keeps ``torch.randperm(Ns)[:max_sample]`` (CPU generator), seeding again before every block. Here
  :func:`style_sample_index` draws the same permutation from a private ``torch.Generator`` seeded with 6666
  (the same Mersenne-Twister stream as the default CPU generator after ``manual_seed``), so styles above
  256x256 px keep exactly the reference's columns, and the global RNG is left alone.
* Training objective (paper Sec. 3, "Loss Function": the global style loss and the local feature loss, plus
  the repository's content loss; ``AdaAttNModel.compute_losses``): :func:`adaattn_losses`, weighted
  0 / 10 / 3 by train_adaattn.sh (:func:`adaattn_total`).

Differences from the reference that do not change its outputs:

* Attention is computed in query chunks with :func:`sanet_bench.nn.attention.chunked_attention`
  (``scale=1``), on the values ``[V, V*V]`` concatenated along channels, so one pass gives both ``A V`` and
  ``A (V*V)``; the [HWc x HWs] matrix is never materialised and peak memory is linear in the content pixels.
* The subsampled style columns are selected from the normalised style key and the style features BEFORE
  the 1x1 convs ``g`` and ``h`` (the reference convolves every position, then selects): 1x1 convs act per
  position, so the result is the same, without convolving up to 64x more positions.
* No global state: the reference's ``torch.manual_seed(6666)`` reseeds the process-wide RNG on every large
  style; here a private generator is used (same indices, see above).
* In :func:`adaattn_losses` the local-loss target (which depends on no trainable weight) is computed under
  ``torch.no_grad``; the values and the gradients of the trainable parts are unchanged.
* Content sides 1-3 px short of a multiple of 16 (e.g. 62 px) run as in the reference, whose ceil-mode pools
  round them up (62 -> 64 px output); the output is then cropped to the content size (``Method.stylize``).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sanet_bench.errors import ImageError
from sanet_bench.method import Method
from sanet_bench.nn.attention import ATTENTION_CHUNK_ELEMENTS, chunked_attention
from sanet_bench.nn.stats import calc_mean_std, mean_variance_norm
from sanet_bench.nn.vgg import VGG_NORMALISED, VGGEncoder, vgg_normalised
from sanet_bench.registry import InputPolicy, MethodSpec, Source, WeightFile, register_method
from sanet_bench.weights import load_file_into

SEED = 6666  # AdaAttNModel.seed at test time (train.py draws a new one per iteration)
MAX_SAMPLE_3 = 64 * 64  # AdaAttNModel.max_sample: the relu3_1 block and every level of the local loss
MAX_SAMPLE_45 = 256 * 256  # networks.AdaAttN default: the relu4_1 and relu5_1 blocks
LAMBDAS = {"lambda_content": 0.0, "lambda_global": 10.0, "lambda_local": 3.0}  # train_adaattn.sh
# Elements (queries x style positions) of one attention chunk; read at call time so tests can shrink it.
CHUNK_ELEMENTS = ATTENTION_CHUNK_ELEMENTS
MIN_STYLE = 17  # relu5_1's reflection pad needs 2 px: ceil(side / 8) >= 3


def style_sample_index(positions: int, max_sample: int, seed: int = SEED) -> Tensor | None:
    """The style columns the reference keeps: ``None`` (all) when ``positions <= max_sample``, else the first
    ``max_sample`` entries of ``torch.randperm(positions)`` right after ``torch.manual_seed(seed)``, drawn
    from a private CPU generator (int64, on the CPU; the reference moves it to the input's device)."""
    if positions <= max_sample:
        return None
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randperm(positions, generator=gen)[:max_sample]


def shallow_key(feats: list[Tensor] | tuple[Tensor, ...], level: int) -> Tensor:
    """``cat(mvn(nearest(r_1..r_{level-1}) to r_level's size), mvn(r_level))``; ``level`` indexes feats."""
    size = feats[level].shape[-2:]
    parts = [mean_variance_norm(F.interpolate(f, size=size, mode="nearest")) for f in feats[:level]]
    parts.append(mean_variance_norm(feats[level]))
    return torch.cat(parts, dim=1)


def _select(flat: Tensor, index: Tensor | None) -> Tensor:
    return flat if index is None else flat.index_select(-1, index.to(flat.device))


def attention_mean_std(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """``A = softmax(q k^T)`` (no scaling) over the style positions, for q [N,Lc,D], k [N,Ls,D], v [N,Ls,C]:
    ``M = A v`` and ``S = sqrt(relu(A (v*v) - M*M))``, both [N,Lc,C], computed in query chunks."""
    c = v.shape[-1]
    out = chunked_attention(q, k, torch.cat([v, v * v], dim=-1), 1.0, CHUNK_ELEMENTS)
    mean, mean_sq = out[..., :c], out[..., c:]
    return mean, torch.sqrt(torch.relu(mean_sq - mean * mean))


def _to_map(x: Tensor, like: Tensor) -> Tensor:
    """[N, H*W, C] -> [N, C, H, W] of ``like``'s size."""
    n, _, h, w = like.shape
    return x.transpose(1, 2).reshape(n, -1, h, w)


def _conv1x1(conv: nn.Conv2d, flat: Tensor) -> Tensor:
    """A 1x1 conv applied to [N, C, L] columns."""
    return conv(flat.unsqueeze(-1)).squeeze(-1)


class AdaAttNBlock(nn.Module):
    """networks.AdaAttN: keys ``f``, ``g`` (key channels) and ``h`` (feature channels), with biases."""

    def __init__(self, channels: int, key_channels: int, max_sample: int = MAX_SAMPLE_45):
        super().__init__()
        self.f = nn.Conv2d(key_channels, key_channels, 1)
        self.g = nn.Conv2d(key_channels, key_channels, 1)
        self.h = nn.Conv2d(channels, channels, 1)
        self.max_sample = max_sample

    def forward(
        self, content: Tensor, style: Tensor, content_key: Tensor, style_key: Tensor, seed: int = SEED
    ) -> Tensor:
        index = style_sample_index(style_key.shape[-2] * style_key.shape[-1], self.max_sample, seed)
        q = self.f(content_key).flatten(2).transpose(1, 2)  # [N, Lc, Ck]
        k = _conv1x1(self.g, _select(style_key.flatten(2), index)).transpose(1, 2)  # [N, Ls, Ck]
        v = _conv1x1(self.h, _select(style.flatten(2), index)).transpose(1, 2)  # [N, Ls, C]
        mean, std = attention_mean_std(q, k, v)
        return _to_map(std, content) * mean_variance_norm(content) + _to_map(mean, content)

    def at_level(self, c_feats: list[Tensor], s_feats: list[Tensor], level: int, seed: int = SEED) -> Tensor:
        """The block on relu{level+1}_1 features with their shallow keys (``AdaAttNModel.forward``)."""
        c, s = c_feats[level], s_feats[level]
        return self(c, s, shallow_key(c_feats, level), shallow_key(s_feats, level), seed)


class Transformer(nn.Module):
    """networks.Transformer with shallow keys: ``attn_adain_4_1``, ``attn_adain_5_1``, ``merge_conv``."""

    def __init__(self) -> None:
        super().__init__()
        self.attn_adain_4_1 = AdaAttNBlock(512, 512 + 256 + 128 + 64)
        self.attn_adain_5_1 = AdaAttNBlock(512, 512 + 512 + 256 + 128 + 64)
        self.merge_conv = nn.Conv2d(512, 512, 3)

    def forward(self, c_feats: list[Tensor], s_feats: list[Tensor], seed: int = SEED) -> Tensor:
        o4 = self.attn_adain_4_1.at_level(c_feats, s_feats, 3, seed)
        o5 = self.attn_adain_5_1.at_level(c_feats, s_feats, 4, seed)
        merged = o4 + F.interpolate(o5, scale_factor=2.0, mode="nearest")
        return self.merge_conv(F.pad(merged, (1, 1, 1, 1), mode="reflect"))


def _conv(cin: int, cout: int, relu: bool = True) -> list[nn.Module]:
    return [nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3)] + ([nn.ReLU()] if relu else [])


def _up() -> nn.Module:
    return nn.Upsample(scale_factor=2, mode="nearest")


class Decoder(nn.Module):
    """networks.Decoder(skip_connection_3=True): ``decoder_layer_1.1``, ``decoder_layer_2.{1,4,...,24}``."""

    def __init__(self) -> None:
        super().__init__()
        self.decoder_layer_1 = nn.Sequential(*_conv(512, 256), _up())
        self.decoder_layer_2 = nn.Sequential(
            *_conv(256 + 256, 256), *_conv(256, 256), *_conv(256, 256), *_conv(256, 128), _up(),
            *_conv(128, 128), *_conv(128, 64), _up(),
            *_conv(64, 64), *_conv(64, 3, relu=False),
        )

    def forward(self, t: Tensor, skip3: Tensor) -> Tensor:
        # upsampled relu4_1-level features first, then the relu3_1 AdaAttN output
        return self.decoder_layer_2(torch.cat([self.decoder_layer_1(t), skip3], dim=1))


def _content_size_ok(side: int) -> bool:
    # ceil-mode pools: relu3_1 has ceil(side/4) rows; up2(relu5_1) must equal relu4_1 and up2(relu4_1)
    # relu3_1, i.e. ceil(side/4) must be a multiple of 4 (sides 16k-3 .. 16k)
    return -(-side // 4) % 4 == 0


class AdaAttN(Method):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = VGGEncoder(vgg_normalised(), upto="relu5_1")
        self.adaattn_3 = AdaAttNBlock(256, 256 + 128 + 64, max_sample=MAX_SAMPLE_3)
        self.transformer = Transformer()
        self.decoder = Decoder()

    def load_official(self, paths: dict[str, Path]) -> None:
        load_file_into(self.encoder.vgg, paths["vgg_normalised.pth"], self.spec, "vgg_normalised.pth")
        load_file_into(self.decoder, paths["latest_net_decoder.pth"], self.spec, "latest_net_decoder.pth")
        load_file_into(
            self.transformer, paths["latest_net_transformer.pth"], self.spec, "latest_net_transformer.pth"
        )
        load_file_into(
            self.adaattn_3, paths["latest_net_adaattn_3.pth"], self.spec, "latest_net_adaattn_3.pth"
        )

    def transfer(self, c_feats: list[Tensor], s_feats: list[Tensor], seed: int = SEED) -> Tensor:
        """``AdaAttNModel.forward`` after the encoder: the decoded image from relu1_1..relu5_1 features."""
        with self.stage("transform"):
            o3 = self.adaattn_3.at_level(c_feats, s_feats, 2, seed)
            t = self.transformer(c_feats, s_feats, seed)
        with self.stage("decode"):
            return self.decoder(t, o3)

    def _stylize(self, content: Tensor, style: Tensor, alpha: float) -> Tensor:
        h, w = content.shape[-2:]
        if not (_content_size_ok(h) and _content_size_ok(w)):
            fit = "x".join(str(max(32, s // 16 * 16)) for s in (w, h))
            raise ImageError(
                f"content is {w}x{h} px; AdaAttN needs content sides that are multiples of 16 (the reference "
                f"crashes on {w}x{h}: relu4_1/relu5_1 or the relu3_1 skip do not align); crop it to {fit}"
            )
        if min(style.shape[-2:]) < MIN_STYLE:
            raise ImageError(
                f"style is {style.shape[-1]}x{style.shape[-2]} px; AdaAttN needs at least {MIN_STYLE} px per "
                "side (relu5_1's reflection padding needs 2 px); resize it"
            )
        with self.stage("encode"):
            c_feats = self.encoder(content)
            s_feats = self.encoder(style)
        return self.transfer(c_feats, s_feats)


def adaattn_losses(model: AdaAttN, content: Tensor, style: Tensor, seed: int = SEED) -> dict[str, Tensor]:
    """The unweighted AdaAttN training losses (``AdaAttNModel.forward`` + ``compute_losses``).

    ``cs = model.transfer(enc(c), enc(s))``, then with ``g_i, c_i, s_i`` = relu2_1..relu5_1 of ``cs``
    (unclamped), content and style (mean-reduced MSE over all elements, batch included):

    * ``loss_content = sum_i MSE(mvn(g_i), mvn(c_i))`` (weight 0 in train_adaattn.sh);
    * ``loss_global = sum_i MSE(mean(g_i), mean(s_i)) + MSE(std(g_i), std(s_i))`` (calc_mean_std statistics);
    * ``loss_local = sum_i MSE(g_i, S_i * mvn(c_i) + M_i)``, ``M_i, S_i`` the attention-weighted mean and std
      of ``s_i`` under ``softmax(key_i(c)^T key_i(s))`` on the raw shallow keys (no f/g/h), style positions
      subsampled above 64*64 with ``seed`` as the blocks.

    Gradients reach the transform blocks and the decoder, not the encoder.
    """
    with torch.no_grad():
        c_feats = model.encoder(content)
        s_feats = model.encoder(style)
    cs = model.transfer(c_feats, s_feats, seed)
    g_feats = model.encoder(cs)
    loss_content = cs.new_zeros(())
    loss_global = cs.new_zeros(())
    loss_local = cs.new_zeros(())
    for i in range(1, 5):
        g, c, s = g_feats[i], c_feats[i], s_feats[i]
        loss_content = loss_content + F.mse_loss(mean_variance_norm(g), mean_variance_norm(c))
        (gm, gs), (sm, ss) = calc_mean_std(g), calc_mean_std(s)
        loss_global = loss_global + F.mse_loss(gm, sm) + F.mse_loss(gs, ss)
        with torch.no_grad():
            c_key, s_key = shallow_key(c_feats, i), shallow_key(s_feats, i)
            index = style_sample_index(s_key.shape[-2] * s_key.shape[-1], MAX_SAMPLE_3, seed)
            mean, std = attention_mean_std(
                c_key.flatten(2).transpose(1, 2),
                _select(s_key.flatten(2), index).transpose(1, 2),
                _select(s.flatten(2), index).transpose(1, 2),
            )
            target = _to_map(std, c) * mean_variance_norm(c) + _to_map(mean, c)
        loss_local = loss_local + F.mse_loss(g, target)
    return {"loss_content": loss_content, "loss_global": loss_global, "loss_local": loss_local}


def adaattn_total(losses: dict[str, Tensor], lambdas: dict[str, float] | None = None) -> Tensor:
    """``lambda_content * loss_content + lambda_global * loss_global + lambda_local * loss_local``, by default
    with train_adaattn.sh's weights 0 / 10 / 3."""
    lam = {**LAMBDAS, **(lambdas or {})}
    return (
        lam["lambda_content"] * losses["loss_content"]
        + lam["lambda_global"] * losses["loss_global"]
        + lam["lambda_local"] * losses["loss_local"]
    )


_ZIP_URL = "https://drive.google.com/file/d/1XvpD1eI4JeCBIaW5uwMT6ojF_qlzM_lo/view"
_ZIP_NOTE = (
    "AdaAttN_model.zip (Huage001/AdaAttN README, 'Inference'); its member paths were not read (the zip was "
    "not downloaded), so the official names are used as members; test_adaattn.sh reads them as "
    "checkpoints/AdaAttN/<name> after `unzip checkpoints/AdaAttN_model.zip` from the repository root"
)
_LICENSE = "Huage001/AdaAttN pretrained model (no licence stated; research use)"


def _zip_file(name: str, layout: str) -> WeightFile:
    return WeightFile(
        name,
        (Source(_ZIP_URL, kind="gdrive", note=_ZIP_NOTE),),
        layout=layout,
        license=_LICENSE,
        archive="AdaAttN_model.zip",
        member=name,
    )


SPEC = register_method(
    MethodSpec(
        name="adaattn",
        title="AdaAttN",
        citation="Liu et al., AdaAttN: Revisit Attention Mechanism in Arbitrary Neural Style Transfer, "
        "ICCV 2021",
        reference="Huage001/AdaAttN@524b2b1b363e6a27deedb34db29844f92dbaee62",
        factory=AdaAttN,
        files=(
            VGG_NORMALISED,
            _zip_file(
                "latest_net_decoder.pth",
                "Decoder(skip_connection_3=True): decoder_layer_1.1, decoder_layer_2.{1,4,7,10,14,17,21,24}"
                ".{weight,bias} (decoder_layer_2.1 takes 256+256 channels)",
            ),
            _zip_file(
                "latest_net_transformer.pth",
                "Transformer(shallow_layer): attn_adain_4_1.{f,g} 960 ch, attn_adain_5_1.{f,g} 1472 ch, "
                "{4_1,5_1}.h 512 ch, merge_conv 3x3 512; .{weight,bias}",
            ),
            _zip_file(
                "latest_net_adaattn_3.pth",
                "AdaAttN(256, key_planes=448): f, g [448,448,1,1], h [256,256,1,1]; .{weight,bias}",
            ),
        ),
        default_alpha=1.0,
        has_alpha=False,
        weights_kinds=("official", "random", "auto"),
        min_size=32,
        input_policy=InputPolicy(
            multiple=16,
            note="relu4_1 must equal up2(relu5_1) and up2(relu4_1) the relu3_1 skip: networks.Transformer / "
            "Decoder crash on other sizes",
        ),
        notes="styles above 256x256 px: relu3_1 style positions subsampled to 64*64 with the reference's "
        "torch.randperm under seed 6666 (relu4_1/relu5_1 above 256*256 positions); no alpha",
    )
)
