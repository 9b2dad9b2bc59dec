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
  least ``MIN_PIXELS`` pixels. 64 -> 64 layers stay direct: on a VGG they are the full-resolution maps,
  where NNPACK's workspace (transformed input, kernel and output tiles, 2-3 times the layer's output, which
  torch keeps allocated for reuse) would cost most. The smaller layers' workspace still raises a call's
  peak memory: measured in docs/performance.md.
* oneDNN in channels_last for an RGB input layer (several times faster, and cheap to convert);
* oneDNN in the input's own memory format otherwise (converting a large map costs more than it saves).

Autograd works through it (for a method that optimises its image): the input's gradient is NNPACK's too
(the full correlation of the output's gradient with the flipped, transposed kernel: again a 3x3 stride-1
convolution); a weight's or bias's, where one is asked for, is torch's.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

MIN_CHANNELS = 64  # below (either side), oneDNN's direct kernel in channels_last is faster
MIN_PIXELS = 32 * 32  # output pixels; below, the transforms cost more than the multiplications saved


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
        pixels = (input.shape[-2] + 2 * ph - 2) * (input.shape[-1] + 2 * pw - 2)
        small = self.out_channels < MIN_CHANNELS or max(self.in_channels, self.out_channels) <= MIN_CHANNELS
        if small or pixels < MIN_PIXELS:  # oneDNN, in the input's memory format
            return super()._conv_forward(input, weight, bias)
        if torch.is_grad_enabled() and (input.requires_grad or weight.requires_grad):
            return _NNPACKConv.apply(input, weight, bias, ph, pw)
        return nnpack_conv(input, weight, bias, ph, pw)


def nnpack_conv(x: Tensor, weight: Tensor, bias: Tensor | None, ph: int, pw: int) -> Tensor:
    """NNPACK's 3x3 stride-1 convolution of ``x`` with zero padding ``ph``, ``pw`` (float32, CPU)."""
    return torch._nnpack_spatial_convolution(x.contiguous(), weight.contiguous(), bias, [ph, pw])


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
