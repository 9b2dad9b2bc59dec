"""3x3 convolutions through NNPACK's Winograd transform on CPU, in float32.

Lavin & Gray, *Fast Algorithms for Convolutional Neural Networks* (CVPR 2016): F(6x6, 3x3) computes each 6x6
output tile from an 8x8 input tile with 64 multiplications per (input, output) channel pair instead of 324 —
the same convolution, summed in another order. torch ships NNPACK (``torch._nnpack_spatial_convolution``),
whose automatic choice for a 3x3 stride-1 kernel is this transform (``wt8x8``, NNPACK's
src/convolution-inference.c ``select_algorithm``). Its error against the direct convolution is measured per
method in docs/performance.md (every parity case stays within its tolerance).

:func:`use_winograd` switches a model's eligible ``nn.Conv2d`` modules (3x3, stride 1, no dilation, one
group, zero padding of 0 or 1) to :class:`WinogradConv2d`: same parameters and state dict; the forward
chooses per call, for float32 CPU inputs, by the per-layer measurements in docs/performance.md:

* NNPACK where both sides have at least ``MIN_CHANNELS`` channels, one side more, and the output has at
  least ``MIN_PIXELS`` pixels. 64 -> 64 layers stay direct: on a VGG they are the full-resolution maps.
  NNPACK's workspace holds the transformed input and output tiles of the whole map (``(C_in + C_out)`` 8x8
  tiles per 6x6 output tile: 3.75 times a 128 -> 128 layer's output) and torch keeps it allocated, per
  thread, for reuse: it would stay in a call's memory from its first large layer on. So a call whose
  workspace would exceed ``WORKSPACE_BYTES`` runs in bands of output rows (a halo of 2 input rows each), no
  band under ``MIN_BAND_TILES`` tiles (each call transforms the whole kernel again). An NNPACK output of at
  most ``MIN_CHANNELS`` channels is handed on in channels_last: the direct layers that take it (a decoder's
  last, full-resolution stage) then need no reorder of the map, which in NCHW costs a transient copy.
* oneDNN in channels_last for an RGB input layer (several times faster, and cheap to convert);
* oneDNN in the input's own memory format otherwise (converting a large map costs more than it saves).

Autograd works through it (for a method that optimises its image): the input's gradient is NNPACK's too
(the full correlation of the output's gradient with the flipped, transposed kernel: again a 3x3 stride-1
convolution); a weight's or bias's, where one is asked for, is torch's.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MIN_CHANNELS = 64  # below (either side), oneDNN's direct kernel in channels_last is faster
MIN_PIXELS = 32 * 32  # output pixels; below, the transforms cost more than the multiplications saved
WORKSPACE_BYTES = 16 << 20  # NNPACK workspace per call at most, where MIN_BAND_TILES allows
MIN_BAND_TILES = 256  # 6x6 output tiles per band at least (each band transforms the whole kernel again)


@functools.cache
def available() -> bool:
    """Whether this torch build has NNPACK and it initialises on this CPU (also initialises it)."""
    try:
        return bool(torch._nnpack_available())
    except (AttributeError, RuntimeError):
        return False


class WinogradConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (3x3, stride 1) whose float32 CPU forward uses NNPACK's Winograd where it pays."""

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        cpu32 = input.device.type == "cpu" and input.dtype == weight.dtype == torch.float32
        if not cpu32 or input.dim() != 4:
            return super()._conv_forward(input, weight, bias)
        if self.in_channels < MIN_CHANNELS:  # an RGB input layer: cheap to convert, several times faster
            return super()._conv_forward(input.contiguous(memory_format=torch.channels_last), weight, bias)
        ph, pw = self.padding  # type: ignore[misc]
        oh, ow = output_size(input.shape, ph, pw)
        pixels = oh * ow
        small = self.out_channels < MIN_CHANNELS or max(self.in_channels, self.out_channels) <= MIN_CHANNELS
        if small or pixels < MIN_PIXELS:  # oneDNN, in the input's memory format
            return super()._conv_forward(input, weight, bias)
        if torch.is_grad_enabled() and (input.requires_grad or weight.requires_grad):
            out = _NNPACKConv.apply(input, weight, bias, ph, pw)
        else:
            out = nnpack_conv(input, weight, bias, ph, pw)
        if self.out_channels <= MIN_CHANNELS:  # for the direct layers that follow: no reorder there
            out = out.contiguous(memory_format=torch.channels_last)
        return out


def output_size(x_shape: torch.Size, ph: int, pw: int) -> tuple[int, int]:
    """Height and width of a 3x3 stride-1 convolution's output, zero padding ``ph``, ``pw``."""
    return x_shape[-2] + 2 * ph - 2, x_shape[-1] + 2 * pw - 2


def band_rows(x_shape: torch.Size, out_channels: int, ph: int, pw: int) -> int:
    """Output rows per NNPACK call for an input of ``x_shape``: all of them where the workspace fits in
    ``WORKSPACE_BYTES``, else a multiple of 6 (whole tiles) that keeps it there, but ``MIN_BAND_TILES``
    tiles at least."""
    n, cin = x_shape[:2]
    oh, ow = output_size(x_shape, ph, pw)
    tiles_x = -(-ow // 6)
    per_tile_row = n * tiles_x * (cin + out_channels) * 64 * 4  # float32 8x8 tiles, input and output
    tile_rows = max(WORKSPACE_BYTES // per_tile_row, -(-MIN_BAND_TILES // tiles_x), 1)
    return min(6 * tile_rows, oh)


def nnpack_conv(x: Tensor, weight: Tensor, bias: Tensor | None, ph: int, pw: int) -> Tensor:
    """NNPACK's 3x3 stride-1 convolution of ``x`` with zero padding ``ph``, ``pw`` (float32, CPU), in bands
    of :func:`band_rows` output rows."""
    x, weight = x.contiguous(), weight.contiguous()
    h = x.shape[2]
    oh, ow = output_size(x.shape, ph, pw)
    rows = band_rows(x.shape, weight.shape[0], ph, pw)
    if rows >= oh:
        return torch._nnpack_spatial_convolution(x, weight, bias, [ph, pw])
    out = x.new_empty(x.shape[0], weight.shape[0], oh, ow)
    for top in range(0, oh, rows):
        bottom = min(top + rows, oh)
        first, last = top - ph, bottom + 2 - ph  # the band's input rows, in unpadded coordinates
        band = x[:, :, max(first, 0) : min(last, h)]
        if first < 0 or last > h:  # the zero padding rows of the map's top or bottom edge
            band = F.pad(band, (0, 0, max(-first, 0), max(last - h, 0)))
        out[:, :, top:bottom] = torch._nnpack_spatial_convolution(band.contiguous(), weight, bias, [0, pw])
    return out


class _NNPACKConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, ph: int, pw: int) -> Tensor:
        ctx.padding, ctx.has_bias = (ph, pw), bias is not None
        ctx.save_for_backward(x if ctx.needs_input_grad[1] else None, weight)
        return nnpack_conv(x, weight, bias, ph, pw)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        ph, pw = ctx.padding
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:  # padding 2 - p brings the output's size back to the input's
            flipped = weight.flip(2, 3).transpose(0, 1).contiguous()
            gx = nnpack_conv(grad, flipped, None, 2 - ph, 2 - pw)
        if ctx.needs_input_grad[1]:
            gw = torch.nn.grad.conv2d_weight(x, weight.shape, grad, padding=(ph, pw))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = grad.sum((0, 2, 3))
        return gx, gw, gb, None, None


def eligible(module: nn.Module) -> bool:
    return (
        type(module) is nn.Conv2d
        and module.kernel_size == (3, 3)
        and module.stride == (1, 1)
        and module.dilation == (1, 1)
        and module.groups == 1
        and module.padding_mode == "zeros"
        and module.padding in ((0, 0), (0, 1), (1, 0), (1, 1))  # not "same"; the gradient pads 2 - p
    )


def use_winograd(model: nn.Module) -> int:
    """Switch ``model``'s eligible convolutions to :class:`WinogradConv2d`, in place; returns how many (0
    where NNPACK is unavailable: nothing changes)."""
    if not available():
        return 0
    switched = 0
    for module in model.modules():
        if eligible(module):
            module.__class__ = WinogradConv2d
            switched += 1
    return switched
