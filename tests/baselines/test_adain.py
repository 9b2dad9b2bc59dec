from __future__ import annotations

import pytest
import torch
from conftest import assert_close_rel_max, assert_losses_close, load_case, no_tf32, parity_cases

from baselines.adain import adain_losses, adain_total, coral
from sanet_bench import load_method
from sanet_bench.errors import ConfigError, ImageError, WeightsError
from sanet_bench.nn.stats import adain
from sanet_bench.registry import get_method_spec


@pytest.fixture(scope="module")
def official(parity_weights):
    return load_method("adain", weights="official", weights_dir=parity_weights("adain"))


@pytest.fixture(scope="module")
def rand_model():
    return load_method("adain", weights="random", seed=2)


@pytest.mark.parametrize("case", parity_cases("adain"), ids=lambda p: p.stem)
def test_parity(case, official):
    c = load_case(case)
    if c["kind"] == "losses":
        with torch.no_grad():
            losses = adain_losses(
                official.encoder, official.decoder, c["content"], c["style"], alpha=c["alpha"]
            )
        assert set(losses) == set(c["expected_losses"])
        assert_losses_close(losses, c)
        return
    if c["preserve_color"]:
        assert_close_rel_max(coral(c["style"], c["content"]), c["style_after_coral"], 1e-5)
    out = official.stylize(c["content"], c["style"], alpha=c["alpha"], preserve_color=c["preserve_color"])
    assert_close_rel_max(out, c["expected"], c["tol_rel_max"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_parity_cuda(parity_weights):
    model = load_method("adain", weights="official", weights_dir=parity_weights("adain"), device="cuda")
    with no_tf32():
        for case in parity_cases("adain"):
            c = load_case(case)
            if c["kind"] != "losses":
                opts = {"alpha": c["alpha"], "preserve_color": c["preserve_color"]}
                assert_close_rel_max(
                    model.stylize(c["content"], c["style"], **opts).cpu(), c["expected"], c["tol_rel_max"]
                )


def test_coral_matches_target_means_and_is_per_sample():
    g = torch.Generator().manual_seed(0)
    src = torch.rand(2, 3, 20, 24, generator=g)
    tgt = torch.rand(2, 3, 16, 16, generator=g) * torch.tensor([0.2, 0.5, 1.0]).view(1, 3, 1, 1)
    out = coral(src, tgt)
    assert out.shape == src.shape
    torch.testing.assert_close(out.mean((2, 3)), tgt.mean((2, 3)), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1:], coral(src[1:], tgt[1:]))  # batched = one at a time


def test_any_content_size_and_batch(rand_model):
    g = torch.Generator().manual_seed(1)
    c = torch.rand(2, 3, 70, 90, generator=g)
    s = torch.rand(2, 3, 40, 17, generator=g)
    out = rand_model.stylize(c, s)
    assert out.shape == (2, 3, 70, 90) and torch.isfinite(out).all()
    torch.testing.assert_close(out[1:], rand_model.stylize(c[1:], s[1:]), rtol=1e-4, atol=1e-5)
    assert rand_model.stylize(c[:1], s[:1], preserve_color=True).shape == (1, 3, 70, 90)


def test_alpha_interpolates_relu4_features(rand_model):
    c, s = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        cf, sf = rand_model.encoder.last(c), rand_model.encoder.last(s)
        ref = rand_model.decoder(0.3 * adain(cf, sf) + 0.7 * cf)
        ref0 = rand_model.decoder(cf)
    torch.testing.assert_close(rand_model.stylize(c, s, alpha=0.3), ref)
    torch.testing.assert_close(rand_model.stylize(c, s, alpha=0.0), ref0)


def test_style_interpolation_contract(rand_model):
    g = torch.Generator().manual_seed(3)
    c = torch.rand(1, 3, 64, 72, generator=g)
    styles = torch.rand(3, 3, 48, 40, generator=g)
    out = rand_model.stylize(c, styles, alpha=0.8, style_weights=[0.5, 0.3, 0.2])
    assert out.shape == (1, 3, 64, 72)
    with torch.no_grad():
        cf = rand_model.encoder.last(c)
        mix = sum(
            w * adain(cf, rand_model.encoder.last(styles[i : i + 1])) for i, w in enumerate((0.5, 0.3, 0.2))
        )
        ref = rand_model.decoder(0.8 * mix + 0.2 * cf)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    # a one-hot weight is the plain transfer with that style
    one_hot = rand_model.stylize(c, styles, style_weights=[0, 1, 0])
    torch.testing.assert_close(one_hot, rand_model.stylize(c, styles[1:2]), rtol=1e-4, atol=1e-5)
    # with preserve_color every style is recoloured to the content first
    pc = rand_model.stylize(c, styles, style_weights=(0.0, 0.0, 1.0), preserve_color=True)
    torch.testing.assert_close(
        pc, rand_model.stylize(c, styles[2:], preserve_color=True), rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize(
    "weights, match",
    [
        ([0.5, 0.5], "has 2 weights but the style batch holds 3"),
        ([0.5, 0.3, 0.3], "sum to 1"),
        ([1.2, -0.1, -0.1], ">= 0"),
        (["a", "b", "c"], "not a number list"),
    ],
)
def test_style_weights_errors(rand_model, weights, match):
    c, styles = torch.rand(1, 3, 64, 64), torch.rand(3, 3, 32, 32)
    with pytest.raises(ConfigError, match=match):
        rand_model.stylize(c, styles, style_weights=weights)


def test_style_weights_need_one_content(rand_model):
    with pytest.raises(ImageError, match="ONE content image"):
        rand_model.stylize(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 32, 32), style_weights=[0.5, 0.5])


def test_losses_train_only_the_decoder(rand_model):
    c, s = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    losses = adain_losses(rand_model.encoder, rand_model.decoder, c, s)
    total = adain_total(losses)
    torch.testing.assert_close(total, losses["loss_c"] + 10.0 * losses["loss_s"])
    total.backward()
    assert rand_model.decoder[1].weight.grad is not None and rand_model.decoder[1].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in rand_model.encoder.parameters())
    rand_model.decoder.zero_grad(set_to_none=True)
    with pytest.raises(ImageError, match="one shape"):
        adain_losses(rand_model.encoder, rand_model.decoder, c, s[..., :32])


def test_missing_file_names_release_url(tmp_path):
    with pytest.raises(
        WeightsError,
        match=r"decoder.pth \(published at https://github.com/naoto0804/pytorch-AdaIN/"
        r"releases/download/v0.0.0/decoder.pth\)",
    ):
        load_method("adain", weights="official", weights_dir=tmp_path)


def test_registry_metadata():
    spec = get_method_spec("adain")
    assert spec.default_alpha == 1.0
    assert {o.name: o.default for o in spec.options} == {"preserve_color": False, "style_weights": None}
    assert spec.reference.startswith("naoto0804/pytorch-AdaIN@47950d0")
    assert [f.name for f in spec.files] == ["vgg_normalised.pth", "decoder.pth"]
    assert all(f.layout and f.license and f.sources for f in spec.files)
