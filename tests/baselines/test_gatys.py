from __future__ import annotations

from itertools import pairwise

import pytest
import torch
from matplotlib import cbook

from baselines.gatys import CONTENT_LAYER, STYLE_LAYERS, GatysLoss, optimise
from sanet_bench import load_method
from sanet_bench.errors import ConfigError, WeightsError
from sanet_bench.images import load_image
from sanet_bench.nn.vgg import offline_vgg_normalised, vgg_normalised

SIZE = 32  # VGG19 forward+backward per iteration: keep it tiny on CPU


def _photos(size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    c = load_image(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), size, policy="exact")
    s = cbook.get_sample_data("Minduka_Present_Blue_Pack.png", asfileobj=False)
    s = load_image(s, size, policy="exact")
    return c, s


@pytest.fixture(scope="module")
def calibrated():
    """Gatys on the offline unit-variance VGG stand-in (features of realistic scale, unlike torch's init)."""
    m = load_method("gatys", weights="random")
    m.features.vgg.load_state_dict(offline_vgg_normalised()[: len(m.features.vgg)].state_dict())
    return m


def test_layers_are_the_named_relus():
    vgg = vgg_normalised()
    relus = [i for i, m in enumerate(vgg) if isinstance(m, torch.nn.ReLU)]
    names = [f"relu{b}_{k}" for b, n in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4)) for k in range(1, n + 1)]
    index = dict(zip(names, relus, strict=True))
    assert STYLE_LAYERS == {k: index[k] for k in STYLE_LAYERS}
    assert CONTENT_LAYER == ("relu4_2", index["relu4_2"])


def test_loss_is_the_papers(calibrated):
    """E_l = 1/(4 N^2 M^2) sum (G - A)^2, raw Gram matrices (Eq. 4), w_l = 1/5; L_c = 1/2 sum (F - P)^2."""
    c, s = _photos()
    x = c + 0.05 * torch.randn_like(c)
    loss = GatysLoss(calibrated.features, c, s, alpha=0.7, ratio=1e-2)
    total, l_c, l_s = loss(x)
    fx, fc, fs = calibrated.features(x), calibrated.features(c), calibrated.features(s)
    want_s = 0.0
    for a, b in zip(fx[1], fs[1], strict=True):
        n, m = a.shape[1], a.shape[2] * a.shape[3]
        ga, gb = (f.reshape(n, m) @ f.reshape(n, m).T for f in (a[0], b[0]))
        want_s += 0.2 * ((ga - gb) ** 2).sum() / (4 * n**2 * m**2)
    want_c = 0.5 * ((fx[0] - fc[0]) ** 2).sum()
    torch.testing.assert_close(l_s, want_s, rtol=1e-4, atol=0)
    torch.testing.assert_close(l_c, want_c, rtol=1e-4, atol=0)
    torch.testing.assert_close(total, 1e-2 * want_c + 0.7 * want_s, rtol=1e-4, atol=0)


def test_the_content_target_comes_from_the_first_evaluation_at_the_content(calibrated):
    c, s = _photos()
    passes = []
    hook = calibrated.features.register_forward_hook(lambda *args: passes.append(1))
    try:
        loss = GatysLoss(calibrated.features, c, s, alpha=1.0, ratio=1e-3)
        assert loss.p is None and len(passes) == 1  # the style's pass only
        optimise(loss, c, 3)
        assert len(passes) == 1 + 3  # and one evaluation per iteration; none for the content target
    finally:
        hook.remove()
    with torch.no_grad():
        want = calibrated.features(c)[0]
    assert torch.equal(loss.p, want)  # the same pixels, the same features as a pass of their own


def test_loss_decreases_over_iterations(calibrated):
    c, s = _photos()
    loss = GatysLoss(calibrated.features, c, s, alpha=1.0, ratio=1e-3)
    x, history = optimise(loss, c, 8)
    assert len(history) == 8  # no line search: the start, then one evaluation after every step but the last
    assert all(b < a for a, b in pairwise(history)), history
    with torch.no_grad():
        assert loss(x)[0] < 0.95 * history[0]
        assert loss(x)[2] < loss(c)[2]  # the style term, which is what moves the image away from the content


def test_alpha_zero_returns_the_content_alpha_one_moves_it(calibrated):
    c, s = _photos()
    assert torch.equal(calibrated.stylize(c, s, alpha=0.0, iters=3), c)
    out = calibrated.stylize(c, s, iters=3)
    assert out.shape == c.shape and (out - c).abs().mean() > 1e-3


def test_deterministic_and_batch_independent():
    m = load_method("gatys", weights="random", seed=2)
    c, s = _photos()
    c2 = torch.cat([c, c.flip(-1)])
    out = m.stylize(c2, s, iters=2)
    assert out.shape == (2, 3, SIZE, SIZE)
    assert torch.equal(out, m.stylize(c2, s, iters=2))
    assert torch.equal(out[1:], m.stylize(c2[1:], s, iters=2))  # each image is optimised on its own


def test_stages_are_reported(calibrated):
    seen = []

    def hook(name):
        seen.append(name)
        return torch.autograd.profiler.record_function(name)

    calibrated.stage_hook = hook
    try:
        calibrated.stylize(*_photos(), iters=1)
    finally:
        calibrated.stage_hook = None
    assert seen == ["encode", "transform"]


def test_official_vgg_file_loads(tmp_path):
    vgg = vgg_normalised()
    torch.save(vgg.state_dict(), tmp_path / "vgg_normalised.pth")
    m = load_method("gatys", weights="official", weights_dir=tmp_path)
    for k, v in m.features.vgg.state_dict().items():
        assert torch.equal(v, vgg.state_dict()[k]), k
    assert set(m.weights_info["files"]) == {"vgg_normalised.pth"}


def test_wrong_or_missing_vgg_file(tmp_path):
    with pytest.raises(WeightsError, match=r"gatys: official files missing .*vgg_normalised.pth"):
        load_method("gatys", weights="official", weights_dir=tmp_path)
    torch.save({"0.weight": torch.zeros(3, 3, 1, 1)}, tmp_path / "vgg_normalised.pth")
    with pytest.raises(WeightsError, match=r"vgg_normalised.pth: missing keys .*expected the official"):
        load_method("gatys", weights="official", weights_dir=tmp_path)


@pytest.mark.parametrize("options", [{"iters": -1}, {"iters": 2.5}, {"ratio": -1e-3}, {"steps": 3}])
def test_bad_options_are_config_errors(options):
    m = load_method("gatys", weights="random")
    with pytest.raises(ConfigError, match="gatys"):
        m.stylize(*_photos(), **options)


def test_demo_weights_are_the_offline_encoder_and_say_so():
    from sanet_bench import load_method
    from sanet_bench.nn.vgg import OFFLINE_VGG_ID, offline_vgg_normalised

    model = load_method("gatys", weights="demo")
    n = len(model.features.vgg)
    want = offline_vgg_normalised()[:n].state_dict().values()
    assert all(torch.equal(a, b) for a, b in zip(model.features.vgg.state_dict().values(), want, strict=True))
    info = model.weights_info
    assert info["source"] == "demo" and info["encoder"] == OFFLINE_VGG_ID and "trains nothing" in info["note"]
    assert load_method("gatys", weights="auto").weights_info["source"] == "demo"  # no official file cached
