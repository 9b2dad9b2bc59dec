from __future__ import annotations

import copy
import shutil

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_close_rel_max, assert_losses_close, load_case, no_tf32, parity_cases

import baselines.adaattn as ada
from baselines.adaattn import (
    AdaAttNBlock,
    adaattn_losses,
    adaattn_total,
    attention_mean_std,
    shallow_key,
    style_sample_index,
)
from sanet_bench import load_method
from sanet_bench.errors import ConfigError, ImageError, WeightsError
from sanet_bench.nn.stats import mean_variance_norm
from sanet_bench.nn.vgg import VGG_NORMALISED
from sanet_bench.registry import get_method_spec

ZIP_URL = "https://drive.google.com/file/d/1XvpD1eI4JeCBIaW5uwMT6ojF_qlzM_lo/view"


@pytest.fixture(scope="module")
def official(parity_weights):
    return load_method("adaattn", weights="official", weights_dir=parity_weights("adaattn"))


@pytest.fixture(scope="module")
def rand_model():
    return load_method("adaattn", weights="random", seed=2)


@pytest.mark.parametrize("case", parity_cases("adaattn"), ids=lambda p: p.stem)
def test_parity(case, official):
    c = load_case(case)
    assert c["skip_connection_3"] and c["shallow_layer"]
    if c["kind"] == "losses":
        with torch.no_grad():
            losses = adaattn_losses(official, c["content"], c["style"])
        assert set(losses) == set(c["expected_losses"])
        assert_losses_close(losses, c)
        return
    out = official.stylize(c["content"], c["style"])
    assert_close_rel_max(out, c["expected"], c["tol_rel_max"])


def test_parity_cases_present():
    kinds = [load_case(p)["kind"] for p in parity_cases("adaattn")]
    assert kinds.count("stylize") == 3 and kinds.count("losses") == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_parity_cuda(parity_weights):
    model = load_method("adaattn", weights="official", weights_dir=parity_weights("adaattn"), device="cuda")
    with no_tf32():
        for case in parity_cases("adaattn"):
            c = load_case(case)
            if c["kind"] == "losses":
                with torch.no_grad():
                    losses = adaattn_losses(model, c["content"].cuda(), c["style"].cuda())
                assert_losses_close(losses, c)
            else:
                out = model.stylize(c["content"], c["style"]).cpu()
                assert_close_rel_max(out, c["expected"], c["tol_rel_max"])


# ------------------------------------------------------------------------------------------ loading errors
def _copy_weights(src, dst):
    for p in src.iterdir():
        shutil.copy(p, dst / p.name)
    return dst


def test_renamed_key_is_refused(parity_weights, tmp_path):
    d = _copy_weights(parity_weights("adaattn"), tmp_path)
    state = torch.load(d / "latest_net_transformer.pth", weights_only=True)
    state["attn_adain_4_1.q.weight"] = state.pop("attn_adain_4_1.f.weight")
    torch.save(state, d / "latest_net_transformer.pth")
    with pytest.raises(WeightsError, match=r"latest_net_transformer\.pth: missing keys \[attn_adain_4_1\.f"):
        load_method("adaattn", weights="official", weights_dir=d)


def test_wrong_shape_is_refused(parity_weights, tmp_path):
    d = _copy_weights(parity_weights("adaattn"), tmp_path)
    state = torch.load(d / "latest_net_adaattn_3.pth", weights_only=True)
    state["f.weight"] = torch.zeros(256, 256, 1, 1)  # a model without --shallow_layer
    torch.save(state, d / "latest_net_adaattn_3.pth")
    with pytest.raises(WeightsError, match=r"latest_net_adaattn_3\.pth: key f\.weight has shape"):
        load_method("adaattn", weights="official", weights_dir=d)


def test_decoder_without_skip_connection_is_refused(parity_weights, tmp_path):
    d = _copy_weights(parity_weights("adaattn"), tmp_path)
    state = torch.load(d / "latest_net_decoder.pth", weights_only=True)
    state["decoder_layer_2.1.weight"] = state["decoder_layer_2.1.weight"][:, :256].clone()
    torch.save(state, d / "latest_net_decoder.pth")
    with pytest.raises(WeightsError, match=r"latest_net_decoder\.pth: key decoder_layer_2\.1\.weight"):
        load_method("adaattn", weights="official", weights_dir=d)


def test_missing_file_names_where_it_is_published(parity_weights, tmp_path):
    d = _copy_weights(parity_weights("adaattn"), tmp_path)
    (d / "latest_net_decoder.pth").unlink()
    with pytest.raises(WeightsError, match=r"latest_net_decoder\.pth \(published at " + ZIP_URL):
        load_method("adaattn", weights="official", weights_dir=d)


# ------------------------------------------------------------------------------------------- input policy
def test_random_weights_small_run(rand_model):
    g = torch.Generator().manual_seed(1)
    c, s = torch.rand(2, 3, 48, 64, generator=g), torch.rand(1, 3, 40, 17, generator=g)
    out = rand_model.stylize(c, s)
    assert out.shape == (2, 3, 48, 64) and torch.isfinite(out).all()
    torch.testing.assert_close(out[1:], rand_model.stylize(c[1:], s), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size", [(48, 72), (40, 64), (64, 56)])
def test_content_sides_not_multiple_of_16_are_refused(rand_model, size):
    with pytest.raises(ImageError, match=r"multiples of 16.*crop it to"):
        rand_model.stylize(torch.rand(1, 3, *size), torch.rand(1, 3, 32, 32))


def test_tiny_style_and_content_are_refused(rand_model):
    with pytest.raises(ImageError, match="at least 17 px"):
        rand_model.stylize(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 16, 40))
    with pytest.raises(ImageError, match="at least 32 px"):
        rand_model.stylize(torch.rand(1, 3, 16, 32), torch.rand(1, 3, 32, 32))


def test_no_alpha(rand_model):
    with pytest.raises(ConfigError, match="no content-style trade-off"):
        rand_model.stylize(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), alpha=0.5)


def test_size_rule_matches_what_the_network_computes(rand_model):
    """_content_size_ok(side) is exactly where the unchecked network runs (shapes only: on the meta device);
    there its output covers the side. Sides 45..64 hold every residue mod 16."""
    meta = copy.deepcopy(rand_model).to("meta")
    s_feats = meta.encoder(torch.empty(1, 3, 20, 20, device="meta"))
    with torch.no_grad():
        for side in (29, 31, 32, *range(45, 65)):
            try:
                out = meta.transfer(meta.encoder(torch.empty(1, 3, 32, side, device="meta")), s_feats)
            except RuntimeError:
                out = None
            assert ada._content_size_ok(side) == (out is not None), side
            if out is not None:
                assert out.shape[-2] == 32 and side <= out.shape[-1] < side + 4, (side, out.shape)


def test_side_rounded_up_by_the_reference_is_cropped(rand_model):
    c, s = torch.rand(1, 3, 62, 64), torch.rand(1, 3, 24, 24)
    out = rand_model.stylize(c, s)
    with torch.no_grad():
        full = rand_model.transfer(rand_model.encoder(c), rand_model.encoder(s))
    assert full.shape[-2:] == (64, 64) and out.shape == (1, 3, 62, 64)
    torch.testing.assert_close(out, full[..., :62, :])


# ------------------------------------------------------------------------------- keys and the AdaAttN block
def test_shallow_key_uses_legacy_nearest_after_resize_then_mvn():
    g = torch.Generator().manual_seed(5)
    feats = [torch.rand(1, 2, 17, 23, generator=g), torch.rand(1, 3, 9, 12, generator=g)]
    feats.append(torch.rand(1, 4, 5, 6, generator=g))
    key = shallow_key(feats, 2)
    assert key.shape == (1, 2 + 3 + 4, 5, 6)

    def floor_nearest(x, h, w):  # source index floor(dst * in / out): the top-left of each block
        rows = [i * x.shape[-2] // h for i in range(h)]
        cols = [j * x.shape[-1] // w for j in range(w)]
        return x[..., rows, :][..., cols]

    want = torch.cat(
        [mean_variance_norm(floor_nearest(f, 5, 6)) for f in feats[:2]] + [mean_variance_norm(feats[2])], 1
    )
    torch.testing.assert_close(key, want)


def _naive_mean_std(q, k, v):
    attn = torch.softmax(torch.bmm(q, k.transpose(1, 2)), dim=-1)
    mean = torch.bmm(attn, v)
    return mean, torch.sqrt(torch.relu(torch.bmm(attn, v * v) - mean * mean))


def test_attention_mean_std_matches_full_matrix_in_float64(monkeypatch):
    g = torch.Generator().manual_seed(3)
    q = torch.randn(2, 37, 6, generator=g, dtype=torch.float64)
    k = torch.randn(2, 23, 6, generator=g, dtype=torch.float64)
    v = torch.randn(2, 23, 5, generator=g, dtype=torch.float64)
    calls = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **kw: calls.append(1) or sdpa(*a, **kw))
    monkeypatch.setattr(ada, "CHUNK_ELEMENTS", 23 * 8)  # 8 queries per chunk
    mean, std = attention_mean_std(q, k, v)
    assert len(calls) == 5  # ceil(37 / 8) chunks: the [37 x 23] matrix is never built at once
    want_mean, want_std = _naive_mean_std(q, k, v)
    torch.testing.assert_close(mean, want_mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(std, want_std, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("n", [4097, 16384, 70000])
def test_sample_index_is_the_reference_randperm(n):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ada.SEED)
        want = torch.randperm(n)[: ada.MAX_SAMPLE_3]
    got = style_sample_index(n, ada.MAX_SAMPLE_3)
    assert got is not None and torch.equal(got, want)
    assert style_sample_index(n, n) is None


def test_sample_index_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    style_sample_index(10000, 4096)
    assert torch.equal(state, torch.get_rng_state())


def _reference_block(block, content, style, c_key, s_key, seed):
    """networks.AdaAttN.forward as the README specifies it: convs over every position, then the columns."""
    q = block.f(c_key).flatten(2).transpose(1, 2)
    k, v = block.g(s_key).flatten(2), block.h(style).flatten(2)
    ns = k.shape[-1]
    if ns > block.max_sample:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            index = torch.randperm(ns)[: block.max_sample]
        k, v = k[..., index], v[..., index]
    mean, std = _naive_mean_std(q, k.transpose(1, 2), v.transpose(1, 2))
    n, c, h, w = content.shape
    mean, std = (x.transpose(1, 2).reshape(n, c, h, w) for x in (mean, std))
    return std * mean_variance_norm(content) + mean


def test_block_subsamples_style_positions_as_the_reference():
    torch.manual_seed(0)
    block = AdaAttNBlock(8, 12, max_sample=50).double()
    g = torch.Generator().manual_seed(4)
    content = torch.rand(2, 8, 6, 7, generator=g, dtype=torch.float64)
    style = torch.rand(2, 8, 10, 9, generator=g, dtype=torch.float64)  # 90 > 50 positions
    c_key = torch.randn(2, 12, 6, 7, generator=g, dtype=torch.float64)
    s_key = torch.randn(2, 12, 10, 9, generator=g, dtype=torch.float64)
    with torch.no_grad():
        out = block(content, style, c_key, s_key)
        want = _reference_block(block, content, style, c_key, s_key, ada.SEED)
        torch.testing.assert_close(out, want, rtol=1e-10, atol=1e-10)
        # the columns matter: another seed, or all 90 positions, give other outputs
        other = _reference_block(block, content, style, c_key, s_key, ada.SEED + 1)
        assert (out - other).abs().max() > 1e-3
        block.max_sample = 90
        assert (out - block(content, style, c_key, s_key)).abs().max() > 1e-3


def test_large_style_is_deterministic_and_subsampled(rand_model, monkeypatch):
    """A 260 px style has 65*65 = 4225 > 4096 relu3_1 positions: the relu3_1 block keeps 4096 columns."""
    g = torch.Generator().manual_seed(6)
    c, s = torch.rand(1, 3, 32, 32, generator=g), torch.rand(1, 3, 260, 260, generator=g)
    drawn = []
    real = ada.style_sample_index
    monkeypatch.setattr(ada, "style_sample_index", lambda *a: drawn.append(a) or real(*a))
    state = torch.get_rng_state()
    out1 = rand_model.stylize(c, s)
    out2 = rand_model.stylize(c, s)
    assert torch.equal(out1, out2) and torch.isfinite(out1).all()
    assert torch.equal(state, torch.get_rng_state())  # the reference reseeds the global RNG; we do not
    assert (65 * 65, ada.MAX_SAMPLE_3, ada.SEED) in drawn


# ----------------------------------------------------------------------------------------------- losses
def test_losses_train_transform_and_decoder_only():
    model = load_method("adaattn", weights="random", seed=3)
    g = torch.Generator().manual_seed(7)
    c, s = torch.rand(1, 3, 32, 32, generator=g), torch.rand(1, 3, 40, 36, generator=g)
    losses = adaattn_losses(model, c, s)
    assert set(losses) == {"loss_content", "loss_global", "loss_local"}
    total = adaattn_total(losses)
    torch.testing.assert_close(total, 10.0 * losses["loss_global"] + 3.0 * losses["loss_local"])
    torch.testing.assert_close(
        adaattn_total(losses, {"lambda_content": 1.0, "lambda_global": 1.0, "lambda_local": 1.0}),
        sum(losses.values()),
    )
    total.backward()
    for p in (model.decoder.decoder_layer_2[1].weight, model.transformer.attn_adain_5_1.f.weight,
              model.adaattn_3.h.weight, model.transformer.merge_conv.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.encoder.parameters())


# --------------------------------------------------------------------------------------------- metadata
def test_registry_metadata():
    spec = get_method_spec("adaattn")
    assert spec.reference == "Huage001/AdaAttN@524b2b1b363e6a27deedb34db29844f92dbaee62"
    assert not spec.has_alpha and spec.options == () and spec.default_alpha == 1.0
    assert spec.weights_kinds == ("official", "random", "auto")
    assert spec.input_policy.multiple == 16 and spec.min_size == 32
    assert [f.name for f in spec.files] == [
        "vgg_normalised.pth",
        "latest_net_decoder.pth",
        "latest_net_transformer.pth",
        "latest_net_adaattn_3.pth",
    ]
    assert spec.files[0] is VGG_NORMALISED
    for f in spec.files[1:]:
        assert f.archive == "AdaAttN_model.zip" and f.member == f.name and f.sha256 is None
        assert [(s.url, s.kind) for s in f.sources] == [(ZIP_URL, "gdrive")]
    assert all(f.layout and f.license and f.sources for f in spec.files)
