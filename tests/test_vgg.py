from __future__ import annotations

import torch

from sanet_bench.nn.vgg import (
    LAYERS,
    VGGEncoder,
    decoder,
    offline_vgg_id,
    offline_vgg_normalised,
    vgg_normalised,
)


def test_official_layouts():
    keys = {k.split(".")[0] for k in vgg_normalised().state_dict()}
    assert keys == {str(i) for i in (0, 2, 5, 9, 12, 16, 19, 22, 25, 29, 32, 35, 38, 42, 45, 48, 51)}
    assert {k.split(".")[0] for k in decoder().state_dict()} == {
        "1",
        "5",
        "8",
        "11",
        "14",
        "18",
        "21",
        "25",
        "28",
    }


def test_encoder_shapes_ceil_mode():
    feats = VGGEncoder(vgg_normalised())(torch.rand(1, 3, 72, 40))
    assert len(feats) == len(LAYERS)
    # ceil-mode pooling: 72 -> 36 -> 18 -> 9 -> 5 ; 40 -> 20 -> 10 -> 5 -> 3
    assert [tuple(f.shape[-2:]) for f in feats] == [(72, 40), (36, 20), (18, 10), (9, 5), (5, 3)]


def test_encoder_keeps_only_the_features_asked_for():
    """``first`` drops the earlier features (their maps are freed during the pass), same values."""
    enc = VGGEncoder(vgg_normalised())
    x = torch.rand(1, 3, 40, 40)
    feats = enc(x)
    late = enc(x, first=3)
    assert len(late) == 2 and all(torch.equal(a, b) for a, b in zip(late, feats[3:], strict=True))
    assert torch.equal(enc.last(x), feats[-1]) and torch.equal(enc.last(x, depth=2), feats[1])


def test_offline_encoder_is_deterministic_and_calibrated():
    a, b = offline_vgg_normalised(0), offline_vgg_normalised(0)
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    assert all(torch.equal(x, y) for x, y in pairs)
    c = offline_vgg_normalised(1)
    assert not torch.equal(a[2].weight, c[2].weight)
    # module 0 is the released file's fixed preprocessing: RGB [0,1] -> BGR*255 - mean
    out = a[0](torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)).flatten()
    torch.testing.assert_close(out, torch.tensor([-103.939, -116.779, 255 - 123.68]))
    with torch.no_grad():
        feats = VGGEncoder(a)(torch.rand(2, 3, 64, 64))
    for f in feats:  # unit-variance calibration keeps every level in a sane range
        assert 0.2 < f.std().item() < 5.0
    assert "seed=0" in offline_vgg_id(0) and "NOT the ImageNet" in offline_vgg_id(0)
