"""Avatar-Net: Multi-scale Zero-shot Style Transfer by Feature Decoration (Sheng et al., CVPR 2018).

Matches the official TensorFlow model, LucasSheng/avatar-net@8ee86d7 ``AvatarNet.transfer_styles`` with
configs/AvatarNet_config.yml (vgg_19, patch_size 5, style_coding ZCA, style_interp normalized, one style):

* Input: RGB*255 minus the ImageNet mean (123.68, 116.78, 103.94); the model takes RGB [0,1] and does this.
* Encoder (models/vgg.py ``vgg_19``): 3x3 convs with zero 'SAME' padding + ReLU, 2x2/2 average pooling
  (VALID, floor); features relu1_1, relu2_1, relu3_1, relu4_1.
* Style decorator on relu4_1 (paper Sec. 3.1; ``style_decorator``), in float64:
  ZCA projection ``z = W_c (f - mu)`` with the eigenvalues of the biased covariance cut at ``s > 1e-5``;
  normalised cross-correlation of 5x5 patches of the projected style (zero 'SAME' padding) against the
  REFLECT-padded projected content, first argmax; the matched raw patches are overlap-added and divided by
  the overlap count; ``r = alpha * swapped + (1 - alpha) * z_c``; reconstruction ``C_s r + mu_s``.
* Decoder (models/vgg_decoder.py ``vgg_multiple_combined_decoder``, paper Sec. 3.2): the mirrored VGG from
  conv4_1 with REFLECT padding, nearest x2 upsampling before conv3_4/conv2_2/conv1_2, and before conv3_1,
  conv2_1, conv1_1 the features replaced by AdaIN with the style's relu3_1/2_1/1_1 statistics (biased
  variance, eps 1e-10); output 7x7 conv, REFLECT pad 3, no activation, ``+ 127.5``; returned ``/ 255``
  (RGB [0,1] scale, un-clamped).

alpha is the official ``inter_weight``. The default 0.8 is the project's choice, taken as the official test
script's value (evaluate_style_transfer.py's own flag default is 1.0; scripts/evaluate_style_transfer.sh
passes it as an argument).

Differences from the reference, none of which change its outputs where it runs:

* ZCA uses ``torch.linalg.eigh`` of the covariance instead of ``svd``: for a symmetric PSD matrix the kept
  (s > 1e-5) singular vectors are its eigenvectors, so the whitening and colouring matrices are the same.
* The patch swap overlap-adds the 25 shifted gathers of the matched patches instead of a one-hot
  ``conv2d_transpose`` over every style patch (the reference materialises a [H*W, #patches] one-hot map).
* The matching scores (the reference's convolution of the content with every normalised 5x5x512 style
  patch) are computed as one channel correlation of every style position with every content position
  (a matmul), then summed over the 25 patch offsets as shifted adds, over chunks of style rows: the same
  sums in another order (float32 rounding aside; the argmax is the same on every parity case), about 20x
  fewer multiplications (the patch overlap is not recomputed), so 5-9x faster at 256-512 px.
* Contents whose sides are not multiples of 8 are reflect-padded (bottom/right) to the next multiple and the
  output is cropped back, so the output keeps the content size; the reference returns floor(side/8)*8.
* Batches: the decorator runs per sample (the reference squeezes the style batch, so it takes one pair).
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sanet_bench.demo import DemoJob
from sanet_bench.errors import WeightsError
from sanet_bench.io import atomic_write_bytes
from sanet_bench.method import Method
from sanet_bench.nn.resample import upsample2_reflect_pad1
from sanet_bench.registry import DemoRecipe, MethodSpec, Source, Unit, WeightFile, register_method

NPZ = "avatar_net.npz"
MEAN_RGB = (123.68, 116.78, 103.94)  # models/preprocessing.py mean_image_subtraction, RGB order
PATCH_SIZE = 5
ZCA_EPS = 1e-5
ADAIN_EPS = 1e-10
NORM_EPS = 1e-7
# Elements of one chunk of the matching correlation (style positions x content positions, padded):
# 2**23 float32 = 32 MiB, and as much again for each of its two partial patch sums.
MATCH_CHUNK_ELEMENTS = 1 << 23

# (layer, in, out) in forward order; None marks a 2x2/2 average pool.
ENCODER = (
    ("conv1_1", 3, 64),
    ("conv1_2", 64, 64),
    None,
    ("conv2_1", 64, 128),
    ("conv2_2", 128, 128),
    None,
    ("conv3_1", 128, 256),
    ("conv3_2", 256, 256),
    ("conv3_3", 256, 256),
    ("conv3_4", 256, 256),
    None,
    ("conv4_1", 256, 512),
)
FEATURES = ("conv1_1", "conv2_1", "conv3_1", "conv4_1")  # relu outputs used (style_loss_layers)
# (layer, in, out, upsample first) from conv4_1 down (vgg_19_decoder_architecture).
DECODER = (
    ("conv4_1", 512, 256, False),
    ("conv3_4", 256, 256, True),
    ("conv3_3", 256, 256, False),
    ("conv3_2", 256, 256, False),
    ("conv3_1", 256, 128, False),
    ("conv2_2", 128, 128, True),
    ("conv2_1", 128, 64, False),
    ("conv1_2", 64, 64, True),
    ("conv1_1", 64, 64, False),
)
FUSED = ("conv3_1", "conv2_1", "conv1_1")  # AdaIN with the style's features of these layers, before the conv


def _tf_scope(scope: str, layer: str) -> str:
    return f"{scope}/output" if layer == "output" else f"{scope}/{layer.split('_')[0]}/{layer}"


def tf_variables() -> dict[str, tuple[int, ...]]:
    """The TF variables inference reads, in graph order: ``{name: HWIO or bias shape}``."""
    out: dict[str, tuple[int, ...]] = {}
    convs = [("vgg_19", layer[0], 3, layer[1], layer[2]) for layer in ENCODER if layer is not None]
    convs += [("combined_decoder", n, 3, i, o) for n, i, o, _ in DECODER]
    convs.append(("combined_decoder", "output", 7, 64, 3))
    for scope, name, k, cin, cout in convs:
        out[f"{_tf_scope(scope, name)}/weights"] = (k, k, cin, cout)
        out[f"{_tf_scope(scope, name)}/biases"] = (cout,)
    return out


def _torch_key(tf_name: str) -> str:
    """``vgg_19/conv1/conv1_1/weights`` -> ``encoder.conv1_1.weight``."""
    *scope, kind = tf_name.split("/")
    module = "encoder" if scope[0] == "vgg_19" else "decoder"
    return f"{module}.{scope[-1]}.{'weight' if kind == 'weights' else 'bias'}"


# ----------------------------------------------------------------------------------------- decorator
def zca(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """ZCA of features [C, L] (``zca_normalization``): ``(whitened [C, L], colouring [C, C], mean [C, 1])``.

    ``gram = (x - mu)(x - mu)^T / L``; eigenvalues ``s <= 1e-5`` are dropped from both the whitening
    ``U diag(s^-1/2) U^T`` and the colouring ``U diag(s^1/2) U^T`` matrices.
    """
    mean = x.mean(dim=1, keepdim=True)
    xc = x - mean
    s, u = torch.linalg.eigh(xc @ xc.T / x.shape[1])
    valid = (s > ZCA_EPS).to(x.dtype)
    s = s.clamp_min(ZCA_EPS)
    whiten = (u * (valid / s.sqrt())) @ u.T
    colour = (u * (valid * s.sqrt())) @ u.T
    return whiten @ xc, colour, mean


def patch_swap(
    content: Tensor, style: Tensor, patch_size: int = PATCH_SIZE, chunk_elements: int = MATCH_CHUNK_ELEMENTS
) -> Tensor:
    """``nearest_patch_swapping`` for content [C, Hc, Wc] and style [C, Hs, Ws] (one sample).

    Each content position takes the style patch (zero 'SAME' padding) of highest normalised
    cross-correlation with its REFLECT-padded neighbourhood (first maximum on ties); the chosen raw
    patches are overlap-added and divided by the number of patches covering each position.
    """
    c, hc, wc = content.shape
    hs, ws = style.shape[1:]
    beg = (patch_size - 1) // 2
    end = patch_size - 1 - beg
    sp = F.pad(style, (beg, end, beg, end))  # [C, Hs+p-1, Ws+p-1], zeros as extract_image_patches 'SAME'
    ones = sp.new_ones(1, 1, patch_size, patch_size)
    norms = F.conv2d((sp * sp).sum(0)[None, None], ones).flatten().sqrt() + NORM_EPS  # [Hs*Ws]
    # Scores in float32, as the TF original computes them: the argmax is what matters, and it is identical
    # in float64 on every parity case (top-2 gaps >= 580x the float32 perturbation, parity README); the
    # swapped patches themselves stay in the input's precision. float64 convolutions are ~10x slower on CPU.
    cp = F.pad(content, (beg, end, beg, end), mode="reflect").float()  # [C, Hp, Wp]
    hp, wp, wsp = hc + patch_size - 1, wc + patch_size - 1, ws + patch_size - 1
    cflat = cp.reshape(c, hp * wp)
    # score[(ky, kx), (y, x)] = sum_{dy, dx} <sp[:, ky+dy, kx+dx], cp[:, y+dy, x+dx]> / norm[ky, kx]: the
    # correlation m of every style position with every content position, then the patch sum as shifted
    # adds (over dx, then dy); chunks of style rows keep m under ``chunk_elements``.
    s_rows = max(1, chunk_elements // (wsp * hp * wp) - (patch_size - 1))
    best_val = cp.new_full((hc, wc), -torch.inf)
    best_idx = torch.zeros(hc, wc, dtype=torch.long, device=content.device)
    for s0 in range(0, hs, s_rows):
        s1 = min(hs, s0 + s_rows)
        rows = s1 - s0
        sflat = sp[:, s0 : s1 + patch_size - 1].reshape(c, -1).float()
        m = (sflat.T @ cflat).view(rows + patch_size - 1, wsp, hp, wp)
        n = m[:, :ws, :, :wc].clone()
        for d in range(1, patch_size):
            n += m[:, d : d + ws, :, d : d + wc]
        del m
        scores = n[:rows, :, :hc].clone()
        for d in range(1, patch_size):
            scores += n[d : d + rows, :, d : d + hc]
        del n
        scores = scores.view(rows * ws, hc, wc).div_(norms[s0 * ws : s1 * ws, None, None].float())
        idx = scores.argmax(dim=0)  # first maximum: extract_image_patches order within the chunk
        val = scores.gather(0, idx[None])[0]
        # strictly greater: an earlier chunk wins ties, as one global first argmax does
        better = val > best_val
        best_val = torch.where(better, val, best_val)
        best_idx = torch.where(better, idx + s0 * ws, best_idx)
    iy, ix = best_idx // ws, best_idx % ws
    out = content.new_zeros(c, hc + patch_size - 1, wc + patch_size - 1)
    count = content.new_zeros(1, hc + patch_size - 1, wc + patch_size - 1)
    for dy in range(patch_size):
        for dx in range(patch_size):
            out[:, dy : dy + hc, dx : dx + wc] += sp[:, iy + dy, ix + dx]
            count[:, dy : dy + hc, dx : dx + wc] += 1
    return (out / count)[:, beg : beg + hc, beg : beg + wc]


def style_decorator(content: Tensor, style: Tensor, alpha: float, patch_size: int = PATCH_SIZE) -> Tensor:
    """Decorate content features [C, Hc, Wc] with style features [C, Hs, Ws] (computed in their dtype)."""
    c, hc, wc = content.shape
    zc, _, _ = zca(content.flatten(1))
    zs, colour, mean = zca(style.flatten(1))
    swapped = patch_swap(zc.view(c, hc, wc), zs.view(style.shape), patch_size).flatten(1)
    r = alpha * swapped + (1.0 - alpha) * zc
    return (colour @ r + mean).view(c, hc, wc)


# ------------------------------------------------------------------------------------------- network
def adain_fuse(x: Tensor, style: Tensor) -> Tensor:
    """``adaptive_instance_normalization``: biased variances, eps 1e-10 on the content side only."""
    xm, xv = x.mean(dim=(2, 3), keepdim=True), x.var(dim=(2, 3), unbiased=False, keepdim=True)
    sm, sv = style.mean(dim=(2, 3), keepdim=True), style.var(dim=(2, 3), unbiased=False, keepdim=True)
    return sv.sqrt() * (x - xm) / (xv + ADAIN_EPS).sqrt() + sm


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        for layer in ENCODER:
            if layer is not None:
                self.add_module(layer[0], nn.Conv2d(layer[1], layer[2], 3, padding=1))  # zero 'SAME'

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        feats = {}
        for layer in ENCODER:
            if layer is None:
                x = F.avg_pool2d(x, 2, 2)
            else:
                x = F.relu(getattr(self, layer[0])(x))
                if layer[0] in FEATURES:
                    feats[layer[0]] = x
        return feats


class Decoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        for name, cin, cout, _ in DECODER:
            self.add_module(name, nn.Conv2d(cin, cout, 3))
        self.output = nn.Conv2d(64, 3, 7)

    def forward(self, x: Tensor, style_feats: dict[str, Tensor]) -> Tensor:
        for name, _, _, up in DECODER:
            if name in FUSED:
                x = adain_fuse(x, style_feats[name])
            x = upsample2_reflect_pad1(x) if up else F.pad(x, (1, 1, 1, 1), mode="reflect")
            x = F.relu(getattr(self, name)(x))
        return self.output(F.pad(x, (3, 3, 3, 3), mode="reflect")) + 127.5


class AvatarNet(Method):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = Encoder()
        self.decoder = Decoder()
        self.register_buffer("mean", torch.tensor(MEAN_RGB).view(1, 3, 1, 1), persistent=False)

    def load_official(self, paths: dict[str, Path]) -> None:
        path = paths[NPZ]
        arrays = read_npz(path)
        expected = tf_variables()
        _check_variables(
            arrays, expected, str(path), f"the Avatar-Net file {NPZ} ({self.spec.file(NPZ).layout})"
        )
        state = {}
        for name in expected:
            t = torch.from_numpy(np.asarray(arrays[name], dtype=np.float32))
            state[_torch_key(name)] = t.permute(3, 2, 0, 1).contiguous() if t.dim() == 4 else t
        self.load_state_dict(state, strict=True)

    def _stylize(self, content: Tensor, style: Tensor, alpha: float) -> Tensor:
        ph, pw = -content.shape[-2] % 8, -content.shape[-1] % 8
        if ph or pw:
            content = F.pad(content, (0, pw, 0, ph), mode="reflect")
        with self.stage("encode"):
            cf = self.encoder(content * 255.0 - self.mean)["conv4_1"]
            sf = self.encoder(style * 255.0 - self.mean)
        with self.stage("transform"):
            pairs = zip(cf.double(), sf["conv4_1"].double(), strict=True)  # float64: see the parity README
            t = torch.stack([style_decorator(c, s, alpha) for c, s in pairs]).to(cf.dtype)
        with self.stage("decode"):
            return self.decoder(t, sf) / 255.0


# -------------------------------------------------------------------------------------- weight files
def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All arrays of a .npz, read with ``allow_pickle=False`` (object arrays are refused)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array, not a .npz archive")
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        msg = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise WeightsError(
            f"{path}: not a readable .npz of arrays ({msg}); create it with "
            f"`sanet-bench weights convert avatar-net CKPT {NPZ}`"
        ) from None


def _few(names: list[str], n: int = 3) -> str:
    return f"[{', '.join(names[:n])}{', ...' if len(names) > n else ''}] ({len(names)})"


def _check_variables(
    arrays: Mapping[str, np.ndarray],
    expected: dict[str, tuple[int, ...]],
    where: str,
    what: str,
    allow_extra: bool = False,
) -> None:
    missing = [k for k in expected if k not in arrays]
    extra = [] if allow_extra else [k for k in arrays if k not in expected]
    if missing or extra:
        parts = [f"missing variables {_few(missing)}"] if missing else []
        parts += [f"unexpected variables {_few(extra)}"] if extra else []
        raise WeightsError(f"{where}: {', '.join(parts)}; expected {what}")
    for k, shape in expected.items():
        a = arrays[k]
        if tuple(a.shape) != shape or a.dtype.kind != "f":
            raise WeightsError(
                f"{where}: variable {k} is {a.dtype} {tuple(a.shape)}, expected float {shape}; "
                f"expected {what}"
            )


def export_variables(variables: Mapping[str, np.ndarray], out_npz: str | os.PathLike, source: str) -> Path:
    """Write exactly the variables inference needs (TF names, HWIO, float32) to ``out_npz`` atomically.

    ``variables`` maps TF variable names to arrays (a checkpoint may hold more, e.g. optimiser slots and
    the unused vgg_19 conv5/fc layers: they are left out).
    """
    expected = tf_variables()
    _check_variables(
        variables,
        expected,
        source,
        "the official Avatar-Net checkpoint (vgg_19 up to conv4_1 and "
        "combined_decoder; LucasSheng/avatar-net README, Google Drive)",
        allow_extra=True,
    )
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(variables[k], dtype=np.float32) for k in expected})
    out = Path(out_npz)
    if out.is_dir():
        out = out / NPZ
    atomic_write_bytes(out, buf.getvalue())
    return out


def convert_tf_checkpoint(ckpt_prefix: str | os.PathLike, out_npz: str | os.PathLike) -> Path:
    """Convert the official TF checkpoint (prefix, ``.index`` file or its folder) to ``avatar_net.npz``."""
    try:
        import tensorflow as tf  # optional extra: the checkpoint format needs TF's reader
    except ImportError:
        raise WeightsError(
            f"{ckpt_prefix}: reading a TensorFlow checkpoint needs tensorflow, which is not installed; "
            "run `pip install 'sanet-bench[tensorflow]'`"
        ) from None
    prefix = str(ckpt_prefix)
    for suffix in (".index", ".meta"):
        prefix = prefix.removesuffix(suffix)
    if ".data-" in Path(prefix).name:
        prefix = prefix[: prefix.rindex(".data-")]
    try:
        reader = tf.train.load_checkpoint(prefix)
        names = reader.get_variable_to_shape_map()
        variables = {k: reader.get_tensor(k) for k in tf_variables() if k in names}
    except Exception as e:  # NotFoundError, DataLossError, ...: one line naming the file
        msg = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise WeightsError(
            f"{ckpt_prefix}: not a readable TensorFlow checkpoint ({msg}); pass the model.ckpt prefix, its "
            ".index file or the folder holding it"
        ) from None
    return export_variables(variables, out_npz, str(ckpt_prefix))


# ------------------------------------------------------------------------------------------- demo weights
# The demo decoder (sanet_bench.demo) is trained for reconstruction (paper Sec. 3.2: pixel + perceptual over
# relu1_1..relu4_1), its AdaIN skip connections fed by the content's own features. The encoder is the
# offline VGG's conv1_1..conv4_1 (:func:`avatar_encoder_state`).
DEMO_UNITS = (
    Unit("avatar-net", "avatar-net", "pixel MSE + 0.01 perceptual MSE, relu1_1..relu4_1 (Sheng et al.)",
         300, 1e-3, weights={"perceptual": 0.01}),
)


def avatar_encoder_state() -> dict[str, Tensor]:
    """Avatar-Net ``encoder.*`` weights from the offline VGG: conv i of the normalised VGG after module 0.

    Module 0 of the normalised VGG maps RGB [0,1] to BGR*255 - mean; Avatar-Net feeds RGB*255 - mean, so
    conv1_1 takes the same values with its input channels reversed.
    """
    from sanet_bench.demo import offline_state
    from sanet_bench.nn.vgg import VGG_CONVS

    vgg = offline_state()
    names = [layer[0] for layer in ENCODER if layer is not None]
    state = {}
    for name, idx in zip(names, VGG_CONVS[1:], strict=False):
        w = vgg[f"{idx}.weight"]
        state[f"encoder.{name}.weight"] = w[:, [2, 1, 0]] if name == "conv1_1" else w
        state[f"encoder.{name}.bias"] = vgg[f"{idx}.bias"]
    return state


def _demo_encoder(model: AvatarNet) -> None:
    from sanet_bench.demo import substate

    model.encoder.load_state_dict(substate(avatar_encoder_state(), "encoder."))


def _apply_demo(model: AvatarNet, state: dict[str, Tensor], path: Path) -> None:
    from sanet_bench.demo import substate
    from sanet_bench.weights import load_strict

    _demo_encoder(model)
    load_strict(model.decoder, substate(state, "decoder."), path, "the Avatar-Net demo decoder (decoder.*)")


class _DemoJob(DemoJob):
    """Unit ``avatar-net``: the decoder reconstructs the content from its relu4_1 with the content's own
    skip features; pixel MSE + ``weights["perceptual"]`` x the mean feature MSE over relu1_1..relu4_1."""

    def prepare(self, model: AvatarNet) -> None:
        _demo_encoder(model)

    def losses(self, c: Tensor, s: Tensor) -> dict[str, Tensor]:
        m = self.model
        x = c * 255.0 - m.mean
        with torch.no_grad():
            feats = m.encoder(x)
        out = m.decoder(feats["conv4_1"], feats) / 255.0
        ofeats = m.encoder(out * 255.0 - m.mean)
        perc = sum(F.mse_loss(ofeats[k], feats[k]) for k in feats) / len(feats)
        pix = F.mse_loss(out, c)
        return {"pixel": pix, "perceptual": perc, "total": pix + self.unit.weights["perceptual"] * perc}


DEMO = DemoRecipe(units=("avatar-net",), defines=DEMO_UNITS, apply=_apply_demo, job=_DemoJob)


SPEC = register_method(
    MethodSpec(
        name="avatar-net",
        title="Avatar-Net",
        citation="Sheng, Lin, Shao & Wang, Avatar-Net: Multi-scale Zero-shot Style Transfer by Feature "
        "Decoration, CVPR 2018",
        reference="LucasSheng/avatar-net@8ee86d758efab378d570134366fe61adbc2d1030",
        factory=AvatarNet,
        files=(
            WeightFile(
                NPZ,
                (
                    Source(
                        "https://drive.google.com/open?id=1_7x93xwZMhCL-kLrz4B2iZ01Y8Q7SlTX",
                        kind="gdrive",
                        note="the official TensorFlow checkpoint (LucasSheng/avatar-net README); make the "
                        f".npz with `sanet-bench weights convert avatar-net CKPT {NPZ}`",
                    ),
                ),
                layout=".npz of TF variable name -> array (HWIO): vgg_19/conv1/conv1_1..conv4/conv4_1 "
                "and combined_decoder/conv4/conv4_1..conv1/conv1_1, output; {weights,biases} (38 arrays)",
                license="LucasSheng/avatar-net (no licence stated; research use); VGG19 weights CC-BY-4.0",
            ),
        ),
        default_alpha=0.8,
        weights_kinds=("official", "random", "demo", "auto"),
        convert=convert_tf_checkpoint,
        demo=DEMO,
        notes="alpha is the official inter_weight (content/style blend in the whitened space)",
    )
)
