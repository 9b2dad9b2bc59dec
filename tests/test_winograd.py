"""sanet_bench.nn.winograd: which path each convolution takes; every path computes the convolution."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sanet_bench.nn import winograd
from sanet_bench.nn.winograd import WinogradConv2d, use_winograd

pytestmark = pytest.mark.skipif(not winograd.available(), reason="this torch build has no NNPACK")


@pytest.fixture
def nnpack_calls(monkeypatch):
    calls = []
    real = torch._nnpack_spatial_convolution

    def counted(*args, **kwargs):
        calls.append(tuple(args[0].shape))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "_nnpack_spatial_convolution", counted)
    return calls


def _conv(cin: int, cout: int, padding: int = 0, seed: int = 0) -> nn.Conv2d:
    torch.manual_seed(seed)
    conv = nn.Conv2d(cin, cout, 3, padding=padding)
    assert use_winograd(conv) == 1 and type(conv) is WinogradConv2d
    return conv


@pytest.mark.parametrize(
    ("cin", "cout", "side", "padding", "nnpack"),
    [
        (128, 128, 34, 0, True),  # both sides >= 64, one above, 32x32 output: NNPACK
        (64, 128, 32, 1, True),  # zero padding passed to NNPACK
        (128, 64, 40, 0, True),
        (64, 64, 34, 0, False),  # 64 -> 64 stays direct (peak memory)
        (128, 128, 20, 0, False),  # 18x18 output: too few pixels
        (3, 64, 34, 0, False),  # RGB input layer: oneDNN in channels_last
        (128, 3, 34, 0, False),  # RGB output layer
    ],
)
def test_each_path_computes_the_convolution(cin, cout, side, padding, nnpack, nnpack_calls):
    conv = _conv(cin, cout, padding)
    x = torch.rand(2, cin, side, side, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        out = conv(x)
    expected = F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=padding)
    assert out.dtype == torch.float32 and out.shape == expected.shape
    rel = ((out.double() - expected).abs().max() / expected.abs().max()).item()
    assert rel < 5e-5  # Winograd F(6x6,3x3) in float32: ~1e-5 here; the direct kernel ~1e-6
    assert bool(nnpack_calls) is nnpack


def test_only_3x3_stride1_zero_padded_convolutions_are_switched():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(64, 128, 3), nn.Conv2d(3, 3, 1), nn.Conv2d(64, 64, 3, stride=2),
        nn.Conv2d(64, 64, 3, padding=1, padding_mode="reflect"), nn.Conv2d(64, 64, 3, dilation=2),
        nn.Conv2d(64, 64, 3, groups=2), nn.Conv2d(64, 64, 3, padding="same"), nn.Conv2d(64, 64, 3, padding=2),
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert use_winograd(model) == 1
    assert [type(m) is WinogradConv2d for m in model] == [True] + [False] * 7
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


def test_gradients_flow_through_the_nnpack_forward(nnpack_calls):
    conv = _conv(64, 128, padding=1)
    ref = nn.Conv2d(64, 128, 3, padding=1)
    ref.load_state_dict(conv.state_dict())
    x = torch.rand(1, 64, 40, 40, generator=torch.Generator().manual_seed(2))
    grads = []
    for m in (conv, ref):
        xi = x.clone().requires_grad_(True)
        (m(xi) ** 2).sum().backward()
        grads.append(xi.grad)
    assert len(nnpack_calls) == 2  # the forward and the input's gradient went through NNPACK
    assert ((grads[0] - grads[1]).abs().max() / grads[1].abs().max()).item() < 1e-4


def test_other_dtypes_take_the_direct_path(nnpack_calls):
    conv = _conv(128, 128).to(torch.bfloat16)
    x = torch.rand(1, 128, 40, 40).to(torch.bfloat16)
    assert torch.equal(conv(x), F.conv2d(x, conv.weight, conv.bias))
    assert not nnpack_calls


def test_without_nnpack_nothing_is_switched(monkeypatch):
    monkeypatch.setattr(winograd, "available", lambda: False)
    model = nn.Sequential(nn.Conv2d(64, 128, 3))
    assert use_winograd(model) == 0 and type(model[0]) is nn.Conv2d


def test_weight_and_bias_gradients_are_torch_s():
    conv = _conv(64, 128, padding=0)
    ref = nn.Conv2d(64, 128, 3)
    ref.load_state_dict(conv.state_dict())
    x = torch.rand(1, 64, 36, 36, generator=torch.Generator().manual_seed(3))
    for m in (conv, ref):
        (m(x) ** 2).sum().backward()
    for p, q in ((conv.weight, ref.weight), (conv.bias, ref.bias)):
        assert ((p.grad - q.grad).abs().max() / q.grad.abs().max()).item() < 1e-4
