"""sanet_bench.nn.winograd: which path each convolution takes; every path computes the convolution."""

from __future__ import annotations

import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sanet_bench.nn import winograd
from sanet_bench.nn.winograd import WinogradConv2d, use_winograd

pytestmark = pytest.mark.skipif(not winograd.available(), reason="this torch build has no NNPACK")


@pytest.fixture
def nnpack_calls(monkeypatch):
    """The (C, H, W) input of each NNPACK call (one image, one band)."""
    calls = []
    real = winograd._inference

    def counted(x, *args, **kwargs):
        calls.append(tuple(x.shape))
        return real(x, *args, **kwargs)

    monkeypatch.setattr(winograd, "_inference", counted)
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


def _input_grads(conv: nn.Conv2d, x: torch.Tensor) -> list[torch.Tensor]:
    """The input's gradient of sum(conv(x)^2) through ``conv`` and through torch's own convolution."""
    ref = nn.Conv2d(conv.in_channels, conv.out_channels, 3, padding=conv.padding)
    ref.load_state_dict(conv.state_dict())
    grads = []
    for m in (conv, ref):
        xi = x.clone().requires_grad_(True)
        (m(xi) ** 2).sum().backward()
        grads.append(xi.grad)
    return grads


def test_gradients_flow_through_the_nnpack_forward(nnpack_calls):
    x = torch.rand(1, 64, 40, 40, generator=torch.Generator().manual_seed(2))
    grads = _input_grads(_conv(64, 128, padding=1), x)
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


@pytest.fixture
def small_bands(monkeypatch):
    """A workspace bound small enough that the test maps run in several bands."""
    monkeypatch.setattr(winograd, "WORKSPACE_BYTES", 1 << 20)
    monkeypatch.setattr(winograd, "MIN_BAND_TILES", 1)


@pytest.mark.parametrize(("padding", "side"), [(0, 41), (1, 40), (1, 49)])
def test_bands_compute_the_whole_convolution(padding, side, small_bands, nnpack_calls):
    conv = _conv(64, 128, padding)
    x = torch.rand(2, 64, side, side, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        out = conv(x)
    expected = F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=padding)
    assert out.shape == expected.shape
    assert ((out.double() - expected).abs().max() / expected.abs().max()).item() < 5e-5
    rows = winograd.band_rows(x.shape, 128, padding, padding)
    assert len(nnpack_calls) == 2 * -(-expected.shape[2] // rows) > 4  # two images, in bands
    assert all(shape[1] <= rows + 2 for shape in nnpack_calls)  # a band and its halo, not the map


def test_the_input_gradient_runs_in_bands_too(small_bands, nnpack_calls):
    x = torch.rand(1, 64, 44, 44, generator=torch.Generator().manual_seed(5))
    # padding 0: its input gradient pads by 2, two zero rows on each edge band
    grads = _input_grads(_conv(64, 128, padding=0), x)
    assert len(nnpack_calls) > 2
    assert ((grads[0] - grads[1]).abs().max() / grads[1].abs().max()).item() < 1e-4


def test_band_rows_bound_the_workspace(monkeypatch):
    monkeypatch.setattr(winograd, "WORKSPACE_BYTES", 16 << 20)
    monkeypatch.setattr(winograd, "MIN_BAND_TILES", 256)

    def workspace(shape, cout, rows):  # NNPACK's float32 8x8 input and output tiles of one band
        return shape[0] * -(-rows // 6) * -(-(shape[3] - 2) // 6) * (shape[1] + cout) * 64 * 4

    big = torch.Size((1, 64, 258, 258))  # 43 tiles a row; 2.8 x 32 MiB unbanded
    rows = winograd.band_rows(big, 128, 0, 0)
    assert rows % 6 == 0 and workspace(big, 128, rows) <= 16 << 20 < workspace(big, 128, rows + 6)
    wide = torch.Size((1, 128, 258, 258))  # 16 MiB would be 5 tile rows, 215 tiles: 256 tiles win
    assert winograd.band_rows(wide, 128, 0, 0) == 36 and workspace(wide, 128, 36) < 17 << 20
    deep = torch.Size((1, 512, 66, 66))  # 11 tiles a row: bands of 256 tiles would be whole maps
    assert winograd.band_rows(deep, 512, 0, 0) == 64
    small = torch.Size((1, 128, 66, 66))
    assert winograd.band_rows(small, 128, 0, 0) == 64 and workspace(small, 128, 64) <= 16 << 20


@pytest.mark.parametrize(("cin", "cout", "channels_last"), [(128, 64, True), (64, 128, False)])
def test_a_narrow_nnpack_output_is_handed_on_in_channels_last(cin, cout, channels_last):
    conv = _conv(cin, cout)
    x = torch.rand(1, cin, 36, 36, generator=torch.Generator().manual_seed(6))
    with torch.inference_mode():
        out = conv(x)
    assert out.is_contiguous(memory_format=torch.channels_last) is channels_last
    assert torch.allclose(out, F.conv2d(x, conv.weight, conv.bias), rtol=0, atol=5e-4)


def test_an_unsupported_call_is_an_error_naming_nnpack_s_status():
    x, weight, bias = torch.rand(128, 8, 8), torch.rand(128, 128, 3, 3), torch.zeros(128)
    out = torch.empty(128, 12, 6)
    with pytest.raises(RuntimeError, match=r"nnp_status 12 .*padding \(3, 0, 3, 0\)"):  # invalid padding
        winograd._inference(x, weight, bias, out, (3, 0, 3, 0))


def test_the_operator_has_a_shape_for_tracing():
    conv = _conv(128, 128, padding=1)
    x = torch.rand(1, 128, 34, 34, generator=torch.Generator().manual_seed(7))
    meta = winograd.nnpack_conv(x.to("meta"), conv.weight.to("meta"), None, 1, 0)
    assert meta.shape == (1, 128, 34, 32)
    compiled = torch.compile(conv, backend="eager", fullgraph=True)  # fullgraph: no break at the NNPACK call
    with torch.inference_mode():
        assert torch.equal(compiled(x), conv(x))


def test_the_workspace_is_kept_per_thread_and_grown_when_needed():
    first = winograd._workspace(1 << 20)
    assert winograd._workspace(1000).data_ptr() == first.data_ptr()  # kept: no new mapping per call
    grown = winograd._workspace(first.numel() + 1)
    assert grown.numel() > first.numel() and winograd._workspace(1000).data_ptr() == grown.data_ptr()
    other = []
    thread = threading.Thread(target=lambda: other.append(winograd._workspace(1000).data_ptr()))
    thread.start()
    thread.join()
    assert other and other[0] != grown.data_ptr()  # NNPACK calls on two threads never share one


def test_the_workspace_is_unmapped_before_a_direct_layer_on_a_map_as_large():
    nnpack, few_pixels, full_resolution = _conv(64, 128, 1), _conv(128, 128), _conv(64, 64, 1)
    x = torch.rand(1, 64, 36, 36, generator=torch.Generator().manual_seed(8))
    with torch.inference_mode():
        nnpack(x)
        kept = winograd._THREAD.workspace
        nnpack(x)
        few_pixels(torch.rand(1, 128, 20, 20))  # direct for its few pixels: between NNPACK layers
        full_resolution(x)  # direct for its channels, but its map is smaller than the workspace in use
        assert kept is not None and winograd._THREAD.workspace is kept
        large = torch.rand(1, 64, 1, winograd._THREAD.touched // 256 + 1)  # 64 float32 channels: 256 B/pixel
        full_resolution(large)
        assert winograd._THREAD.workspace is None
