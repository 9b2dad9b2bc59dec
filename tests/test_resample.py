from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sanet_bench.nn.resample import UpsampleReflectPad, fuse_upsample_pad, upsample2_reflect_pad1
from sanet_bench.nn.vgg import decoder


def _two_maps(x):
    return F.pad(F.interpolate(x, scale_factor=2, mode="nearest"), (1, 1, 1, 1), mode="reflect")


@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (2, 5, 3, 7), (1, 16, 8, 5)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_one_map_equals_upsampling_then_reflection_padding(shape, channels_last):
    x = torch.randn(shape)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    got = upsample2_reflect_pad1(x)
    assert torch.equal(got, _two_maps(x))  # bitwise: copies only
    assert got.is_contiguous(memory_format=torch.channels_last) is (channels_last or shape[1:] == (3, 1, 1))


def test_fusing_a_decoder_keeps_its_keys_and_outputs():
    torch.manual_seed(0)
    plain = decoder()
    fused = decoder()
    fused.load_state_dict(plain.state_dict())
    assert fuse_upsample_pad(fused) == 3  # each upsampling is followed by a conv block's pad
    assert list(fused.state_dict()) == list(plain.state_dict())
    assert [type(m) for m in fused].count(UpsampleReflectPad) == 3
    x = torch.randn(1, 512, 6, 5)
    with torch.inference_mode():
        assert torch.equal(fused(x), plain(x))


def test_under_autograd_the_plain_ops_run():
    x = torch.randn(1, 4, 3, 5, requires_grad=True)
    up = torch.randn(1, 4, 8, 12)
    (got,) = torch.autograd.grad(UpsampleReflectPad()(x), x, up)
    (want,) = torch.autograd.grad(_two_maps(x), x, up)
    assert torch.equal(got, want)


def test_only_nearest_x2_followed_by_a_1px_reflection_pad_is_fused():
    seq = nn.Sequential(
        nn.Upsample(scale_factor=2, mode="bilinear"), nn.ReflectionPad2d(1),
        nn.Upsample(scale_factor=2, mode="nearest"), nn.ReflectionPad2d(2),
        nn.Upsample(scale_factor=3, mode="nearest"), nn.ReflectionPad2d(1),
        nn.Upsample(scale_factor=2.0, mode="nearest"), nn.ReflectionPad2d((1, 1, 1, 1)),
    )
    assert fuse_upsample_pad(seq) == 1
    assert isinstance(seq[6], UpsampleReflectPad) and isinstance(seq[7], nn.Identity)
