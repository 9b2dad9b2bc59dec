from __future__ import annotations

import pytest
import torch
from conftest import assert_close_rel_max, assert_losses_close, load_case, no_tf32, parity_cases

from baselines.stytr2 import (
    LOSS_WEIGHTS,
    MultiheadAttention,
    Transformer,
    stytr2_losses,
    stytr2_total,
)
from sanet_bench import load_method
from sanet_bench.errors import ConfigError, ImageError, WeightsError
from sanet_bench.registry import get_method_spec

TRANSFORMER = "transformer_iter_160000.pth"
EMBEDDING = "embedding_iter_160000.pth"


@pytest.fixture(scope="module")
def official(parity_weights):
    return load_method("stytr2", weights="official", weights_dir=parity_weights("stytr2"))


@pytest.fixture(scope="module")
def rand_model():
    return load_method("stytr2", weights="random", seed=3)


def test_parity_cases_cover_stylize_and_losses():
    kinds = [load_case(p)["kind"] for p in parity_cases("stytr2")]
    assert kinds.count("stylize") >= 3 and kinds.count("losses") == 1


@pytest.mark.parametrize("case", parity_cases("stytr2"), ids=lambda p: p.stem)
def test_parity(case, official):
    c = load_case(case)
    if c["kind"] == "losses":
        with torch.no_grad():
            losses = stytr2_losses(official, c["content"], c["style"])
        assert set(losses) == set(c["expected_losses"])
        assert_losses_close(losses, c)
        return
    out = official.stylize(c["content"], c["style"])
    assert_close_rel_max(out, c["expected"], c["tol_rel_max"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_parity_cuda(parity_weights):
    model = load_method("stytr2", weights="official", weights_dir=parity_weights("stytr2"), device="cuda")
    with no_tf32():
        for case in parity_cases("stytr2"):
            c = load_case(case)
            if c["kind"] == "losses":
                with torch.no_grad():
                    losses = stytr2_losses(model, c["content"].cuda(), c["style"].cuda())
                assert_losses_close(losses, c)
            else:
                out = model.stylize(c["content"], c["style"]).cpu()
                assert_close_rel_max(out, c["expected"], c["tol_rel_max"])


def test_attention_matches_torch_multihead_attention():
    """Same parameters and semantics as nn.MultiheadAttention(512, 8) (token-major there, batch-major
    here), also when the queries are processed in small chunks."""
    g = torch.Generator().manual_seed(0)
    ours = MultiheadAttention()
    ref = torch.nn.MultiheadAttention(512, 8)
    with torch.no_grad():
        for p in ours.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    ref.load_state_dict(ours.state_dict(), strict=True)
    ref.eval()
    q = torch.randn(2, 37, 512, generator=g)
    kv = torch.randn(2, 23, 512, generator=g)
    v = torch.randn(2, 23, 512, generator=g)
    with torch.no_grad():
        want = ref(q.transpose(0, 1), kv.transpose(0, 1), v.transpose(0, 1), need_weights=False)[0]
        want = want.transpose(0, 1)
        torch.testing.assert_close(ours(q, kv, v), want, rtol=1e-4, atol=1e-5)
        ours.chunk_elements = 8 * 23 * 5  # 5 queries per chunk
        torch.testing.assert_close(ours(q, kv, v), want, rtol=1e-4, atol=1e-5)


def test_chunked_attention_does_not_change_stylize(official):
    c = load_case(parity_cases("stytr2")[0])
    want = official.stylize(c["content"], c["style"])
    mods = [m for m in official.modules() if isinstance(m, MultiheadAttention)]
    assert len(mods) == 12
    try:
        for m in mods:
            m.chunk_elements = 8 * 64 * 7  # 7 of 64 queries per chunk
        got = official.stylize(c["content"], c["style"])
    finally:
        for m in mods:
            m.chunk_elements = type(m)().chunk_elements
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert_close_rel_max(got, c["expected"], c["tol_rel_max"])


def test_every_attention_is_chunked(rand_model, monkeypatch):
    """Where no linear-memory kernel runs (CUDA flash, CPU flash: tests/test_sanet.py), no attention call sees
    more than chunk_elements (queries x keys x heads): the full [L x L] matrix of nn.MultiheadAttention is
    never built, so peak memory grows linearly in pixels."""
    import sanet_bench.nn.attention as attn

    monkeypatch.setattr(attn, "_cpu_flash_attention", lambda *a: None)
    calls = []
    sdpa = attn.F.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        calls.append((q.shape[-3], q.shape[-2], k.shape[-2]))
        return sdpa(q, k, v, **kw)

    monkeypatch.setattr(attn.F, "scaled_dot_product_attention", spy)
    mods = [m for m in rand_model.modules() if isinstance(m, MultiheadAttention)]
    limit = 8 * 64 * 8  # 8 of the 64 queries of a 64 px image per chunk
    c = torch.rand(1, 3, 64, 64)
    want = rand_model.stylize(c, c)
    calls.clear()
    try:
        for m in mods:
            m.chunk_elements = limit
        got = rand_model.stylize(c, c)
    finally:
        for m in mods:
            m.chunk_elements = type(m)().chunk_elements
    assert len(calls) == 12 * 8
    assert all(h == 8 and lk == 64 and h * lq * lk <= limit for h, lq, lk in calls)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_cape_round_trip_is_identity_only_on_special_grids():
    """Pool to 18x18 then bilinear (align_corners=False) back: exactly new_ps(c) for grids dividing 18, a
    real resampling otherwise (the parity cases use 8, 16 and 24 tokens per side for that reason)."""
    g = torch.Generator().manual_seed(1)
    t = Transformer().eval()
    with torch.no_grad():
        for n, identity in ((9, True), (6, True), (8, False), (16, False), (24, False)):
            x = torch.randn(1, 512, n, n, generator=g)
            pos = t.cape(x, (n, n))
            assert pos.shape == (1, 512, n, n)
            same = torch.allclose(pos, t.new_ps(x), rtol=1e-4, atol=1e-5)
            assert same == identity, n


def test_style_tokens_carry_no_position(official):
    """The style enters only as keys/values without a positional term: permuting its tokens changes
    nothing. Permuting the content tokens is not equivariant (the CAPE resamples an 8x8 grid)."""
    g = torch.Generator().manual_seed(2)
    t = official.transformer
    c, s = torch.randn(1, 512, 8, 8, generator=g), torch.randn(1, 512, 8, 8, generator=g)
    perm = torch.randperm(64, generator=g)

    def shuffle(x):
        return x.flatten(2)[..., perm].reshape(x.shape)

    with torch.no_grad():
        out = t(s, c)
        torch.testing.assert_close(t(shuffle(s), c), out, rtol=1e-4, atol=1e-5)
        assert (t(s, shuffle(c)) - shuffle(out)).abs().max() > 1e-2


def test_batch_matches_one_at_a_time(rand_model):
    g = torch.Generator().manual_seed(4)
    c, s = torch.rand(2, 3, 24, 24, generator=g), torch.rand(2, 3, 24, 24, generator=g)
    out = rand_model.stylize(c, s)
    assert out.shape == (2, 3, 24, 24) and torch.isfinite(out).all()
    torch.testing.assert_close(out[1:], rand_model.stylize(c[1:], s[1:]), rtol=1e-4, atol=1e-5)
    one_style = rand_model.stylize(c, s[:1])
    torch.testing.assert_close(one_style[1:], rand_model.stylize(c[1:], s[:1]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("side", [16, 24, 64])
def test_computable_inputs_are_stylized(rand_model, side):
    c, s = torch.rand(1, 3, side, side), torch.rand(1, 3, side, side)
    out = rand_model.stylize(c, s)
    assert out.shape == c.shape and torch.isfinite(out).all()


@pytest.mark.parametrize(
    "content_hw, style_hw, match",
    [
        ((64, 96), (64, 96), "square content"),
        ((64, 256), (64, 256), "square content"),  # 256 tokens: the reference scrambles it
        ((60, 60), (60, 60), "multiple of 8"),
        ((64, 64), (32, 32), "resize it to 64x64"),
        ((64, 64), (64, 72), "resize it to 64x64"),
    ],
)
def test_inputs_the_reference_cannot_compute_are_refused(rand_model, content_hw, style_hw, match):
    with pytest.raises(ImageError, match=match):
        rand_model.stylize(torch.rand(1, 3, *content_hw), torch.rand(1, 3, *style_hw))


def test_no_alpha_and_no_options(rand_model):
    c = torch.rand(1, 3, 32, 32)
    with pytest.raises(ConfigError, match="no content-style trade-off"):
        rand_model.stylize(c, c, alpha=0.5)
    with pytest.raises(ConfigError, match="no option a"):
        rand_model.stylize(c, c, a=1.0)
    torch.testing.assert_close(rand_model.stylize(c, c, alpha=1.0), rand_model.stylize(c, c))


def test_losses_train_all_but_the_vgg(rand_model):
    g = torch.Generator().manual_seed(5)
    c, s = torch.rand(1, 3, 24, 24, generator=g), torch.rand(1, 3, 24, 24, generator=g)
    losses = stytr2_losses(rand_model, c, s)
    assert set(losses) == set(LOSS_WEIGHTS) == {"loss_c", "loss_s", "l_identity1", "l_identity2"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    total = stytr2_total(losses)
    want = 7 * losses["loss_c"] + 10 * losses["loss_s"] + 70 * losses["l_identity1"] + losses["l_identity2"]
    torch.testing.assert_close(total, want)
    # one parameter of each trained part (the gradient of all 30M parameters is slow on a small CPU)
    t = rand_model.transformer
    params = [
        rand_model.embedding.proj.weight,
        t.new_ps.weight,
        t.encoder_s.layers[0].self_attn.in_proj_weight,
        t.encoder_c.layers[0].linear1.weight,
        t.decoder.layers[0].multihead_attn.out_proj.weight,
        rand_model.decoder[1].weight,
    ]
    grads = torch.autograd.grad(total, params)
    assert all(gr.abs().sum() > 0 for gr in grads)
    assert not any(p.requires_grad for p in rand_model.encoder.parameters())  # the VGG is frozen
    with pytest.raises(ImageError, match="resize it to 24x24"):
        stytr2_losses(rand_model, c, s[..., :16, :16])


def _copy(src, dst):
    """Links to the rebuilt files (each test replaces the one it breaks)."""
    for p in src.iterdir():
        (dst / p.name).symlink_to(p)
    return dst


def test_renamed_key_names_the_file(parity_weights, tmp_path):
    d = _copy(parity_weights("stytr2"), tmp_path)
    state = torch.load(d / TRANSFORMER, weights_only=True)
    key = "decoder.layers.0.self_attn.in_proj_weight"
    state[key.replace("self_attn", "cross_attn")] = state.pop(key)
    (d / TRANSFORMER).unlink()
    torch.save(state, d / TRANSFORMER)
    with pytest.raises(WeightsError, match=rf"{TRANSFORMER}: missing keys \[decoder.layers.0.self_attn"):
        load_method("stytr2", weights="official", weights_dir=d)


def test_missing_key_names_the_file(parity_weights, tmp_path):
    d = _copy(parity_weights("stytr2"), tmp_path)
    state = torch.load(d / TRANSFORMER, weights_only=True)
    del state["decoder.norm.weight"]
    (d / TRANSFORMER).unlink()
    torch.save(state, d / TRANSFORMER)
    with pytest.raises(WeightsError, match=rf"{TRANSFORMER}: missing keys \[decoder.norm.weight\]"):
        load_method("stytr2", weights="official", weights_dir=d)


def test_wrong_shape_names_the_file(parity_weights, tmp_path):
    d = _copy(parity_weights("stytr2"), tmp_path)
    state = torch.load(d / EMBEDDING, weights_only=True)
    state["proj.weight"] = torch.zeros(512, 3, 16, 16)  # a 16x16 patch embedding
    (d / EMBEDDING).unlink()
    torch.save(state, d / EMBEDDING)
    with pytest.raises(WeightsError, match=rf"{EMBEDDING}: key proj.weight has shape \(512, 3, 16, 16\)"):
        load_method("stytr2", weights="official", weights_dir=d)


def test_missing_file_names_where_it_is_published(parity_weights, tmp_path):
    d = _copy(parity_weights("stytr2"), tmp_path)
    (d / TRANSFORMER).unlink()
    with pytest.raises(
        WeightsError,
        match=rf"{TRANSFORMER} \(published at https://drive.google.com/file/d/1dnobsaLeE889T_LncCkAA2RkqzwsfHYy",
    ):
        load_method("stytr2", weights="official", weights_dir=d)


def test_registry_metadata():
    spec = get_method_spec("stytr2")
    assert spec.reference == "diyiiyiii/StyTR-2@c11ea32913d16dbf2f9a1f82ac077dbf90f143c6"
    assert spec.has_alpha is False and spec.options == ()
    assert spec.weights_kinds == ("official", "random", "auto")
    assert [f.name for f in spec.files] == [
        "vgg_normalised.pth",
        EMBEDDING,
        TRANSFORMER,
        "decoder_iter_160000.pth",
    ]
    assert spec.files[0].shared  # the one shared declaration
    ids = {
        EMBEDDING: "1C3xzTOWx8dUXXybxZwmjijZN8SrC3e4B",
        TRANSFORMER: "1dnobsaLeE889T_LncCkAA2RkqzwsfHYy",
        "decoder_iter_160000.pth": "1fIIVMTA_tPuaAAFtqizr6sd1XV7CX6F9",
    }
    for f in spec.files[1:]:
        assert f.sources[0].kind == "gdrive" and ids[f.name] in f.sources[0].url
        assert f.sha256 is None and f.layout and f.license
    pol = spec.input_policy
    assert (pol.square, pol.style_like_content, pol.multiple) == (True, True, 8) and pol.note
