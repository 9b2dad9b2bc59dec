"""A decoder's nearest x2 upsampling and the reflection padding of the convolution after it, in one map.

VGG-style decoders (and the reference decoders they transliterate) upsample a map and pad the upsampled map
by 1 px for the next 3x3 convolution: two full-size maps, of which the first lives only to be padded
(``prepare`` fuses such pairs of an ``nn.Sequential``; a decoder written as a loop calls the function). At
a decoder's last stage (64 channels at the output's size) that first map is a call's largest transient:
64 MiB at 512 px. :func:`upsample2_reflect_pad1` writes the padded map directly (the nearest
upsampling as a broadcast copy into its interior, then the 1 px border copied from the rows and columns the
reflection names): the same values, bitwise, in one allocation, in the input's memory format.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def upsample2_reflect_pad1(x: Tensor) -> Tensor:
    """``F.pad(F.interpolate(x, scale_factor=2, mode="nearest"), (1, 1, 1, 1), mode="reflect")`` for a 4-d
    ``x`` of at least 1x1, as one new map (module doc); those two ops where autograd records the call."""
    if torch.is_grad_enabled() and x.requires_grad:
        x = nn.functional.interpolate(x, scale_factor=2, mode="nearest")
        return nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    n, c, h, w = x.shape
    channels_last = x.is_contiguous(memory_format=torch.channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = torch.empty((n, c, 2 * h + 2, 2 * w + 2), dtype=x.dtype, device=x.device, memory_format=fmt)
    inner = out[:, :, 1:-1, 1:-1].unflatten(3, (w, 2)).unflatten(2, (h, 2))  # [n, c, h, 2, w, 2], a view
    inner.copy_(x[:, :, :, None, :, None].expand(n, c, h, 2, w, 2))
    # reflection: padded row 0 is upsampled row 1, i.e. padded row 2; likewise the last; then the columns,
    # over every row, which also fills the corners
    out[:, :, 0].copy_(out[:, :, 2])
    out[:, :, -1].copy_(out[:, :, -3])
    out[..., 0].copy_(out[..., 2])
    out[..., -1].copy_(out[..., -3])
    return out


class UpsampleReflectPad(nn.Module):
    """An ``nn.Upsample(scale_factor=2, mode="nearest")`` followed by ``nn.ReflectionPad2d(1)``:
    :func:`upsample2_reflect_pad1`."""

    def forward(self, x: Tensor) -> Tensor:
        return upsample2_reflect_pad1(x)


def _is_upsample2(m: nn.Module) -> bool:
    return (
        type(m) is nn.Upsample and m.mode == "nearest" and m.size is None
        and m.scale_factor in (2, 2.0, (2, 2), (2.0, 2.0)) and not m.recompute_scale_factor
    )


def fuse_upsample_pad(model: nn.Module) -> int:
    """In every ``nn.Sequential`` of ``model``, an ``nn.Upsample`` (nearest, x2) followed by an
    ``nn.ReflectionPad2d(1)`` becomes :class:`UpsampleReflectPad` followed by ``nn.Identity`` (module indices,
    and so state-dict keys, unchanged; neither has parameters). Returns how many pairs; in place."""
    fused = 0
    for seq in model.modules():
        if type(seq) is not nn.Sequential:
            continue
        for i in range(len(seq) - 1):
            pad = seq[i + 1]
            if _is_upsample2(seq[i]) and type(pad) is nn.ReflectionPad2d and tuple(pad.padding) == (1,) * 4:
                seq[i], seq[i + 1] = UpsampleReflectPad(), nn.Identity()
                fused += 1
    return fused
