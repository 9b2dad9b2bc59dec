from __future__ import annotations

import pytest
import torch
from conftest import PARITY, assert_close_rel_max, assert_losses_close, load_case, no_tf32, parity_cases
from parity_weights import read_layout, rebuild_all

from sanet_bench import load_method
from sanet_bench.errors import WeightsError
from sanet_bench.nn.attention import attention
from sanet_bench.sanet import sanet_losses


def test_recipe_reproduces_tensor_sums():
    layout = read_layout(PARITY / "sanet")
    for name, state in rebuild_all(PARITY / "sanet").items():
        for key, t in state.items():
            want = layout["tensor_sums"][name][key]
            assert abs(t.double().sum().item() - want) <= 1e-6 * max(1.0, abs(want)), (name, key)


@pytest.mark.parametrize("case", parity_cases("sanet"), ids=lambda p: p.stem)
def test_parity(case, parity_weights):
    c = load_case(case)
    model = load_method("sanet", weights="official", weights_dir=parity_weights("sanet"))
    if c["kind"] == "stylize":
        out = model.stylize(c["content"], c["style"])
        assert_close_rel_max(out, c["expected"], c["tol_rel_max"])
    else:
        assert c["kind"] == "losses"
        with torch.no_grad():
            losses = sanet_losses(model.encoder, model.transform, model.decoder, c["content"], c["style"])
        assert_losses_close(losses, c)


@pytest.mark.parametrize("cpu_flash", [True, False])
def test_chunked_attention_equals_full_softmax(cpu_flash, monkeypatch):
    """On CPU outside autograd: one call of torch's CPU flash kernel; without it (or under autograd, below):
    query chunks. Both equal the full softmax."""
    from sanet_bench.nn import attention as att

    flash_calls = []
    flash = att._cpu_flash_attention

    def spy(*a):
        out = flash(*a) if cpu_flash else None
        flash_calls.append(out is not None)
        return out

    monkeypatch.setattr(att, "_cpu_flash_attention", spy)
    g = torch.Generator().manual_seed(0)
    f, k, v = (torch.randn(2, 8, n, generator=g) for n in (37, 23, 23))
    full = torch.bmm(v, torch.softmax(torch.bmm(f.transpose(1, 2), k), dim=-1).transpose(1, 2))
    for chunk in (23, 50, 10**6):  # 1, 2 and all 37 queries per chunk
        torch.testing.assert_close(attention(f, k, v, chunk_elements=chunk), full, rtol=1e-5, atol=1e-6)
    assert flash_calls == [cpu_flash] * 3  # the kernel took the inputs


def test_attention_under_autograd_runs_in_chunks_with_the_full_softmax_gradient(monkeypatch):
    from sanet_bench.nn import attention as att

    monkeypatch.setattr(att, "_cpu_flash_attention", lambda *a: pytest.fail("flash kernel under autograd"))
    g = torch.Generator().manual_seed(1)
    f, k, v = (torch.randn(1, 8, n, generator=g, dtype=torch.float64).requires_grad_() for n in (37, 23, 23))
    full = torch.bmm(v, torch.softmax(torch.bmm(f.transpose(1, 2), k), dim=-1).transpose(1, 2))
    got = attention(f, k, v, chunk_elements=50)
    torch.testing.assert_close(got, full)
    upstream = torch.randn_like(full)
    want = torch.autograd.grad(full, (f, k, v), upstream)
    for a, b in zip(torch.autograd.grad(got, (f, k, v), upstream), want, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(("dim", "unchunked"), [(64, True), (512, False)])
def test_cuda_attention_matches_float64(dim, unchunked, monkeypatch):
    """Head dim 64: one flash / memory-efficient call; 512: query chunks; both softmax(q k^T / sqrt(d)) v."""
    from sanet_bench.nn import attention as att

    calls = []
    linear = att._linear_memory_attention
    monkeypatch.setattr(att, "_linear_memory_attention", lambda *a: calls.append(1) or linear(*a))
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 4, n, dim, generator=g) for n in (3000, 2000, 2000))
    want = torch.softmax(q.double() @ k.double().transpose(-1, -2) / dim**0.5, -1) @ v.double()
    with no_tf32():
        got = att.chunked_attention(q.cuda(), k.cuda(), v.cuda(), chunk_elements=1 << 20)
    assert (got.double().cpu() - want).abs().max() / want.abs().max() < 1e-4
    assert bool(calls) is unchunked


def test_odd_relu4_sizes_work_and_even_sizes_unchanged():
    model = load_method("sanet", weights="random", seed=1)
    style = torch.rand(1, 3, 64, 96)
    assert model.stylize(torch.rand(1, 3, 72, 72), style).shape == (1, 3, 72, 72)
    assert model.stylize(torch.rand(1, 3, 100, 84), style).shape == (1, 3, 100, 84)
    # even relu4_1 sizes: the crop is a no-op, so the result equals the reference formula exactly
    c = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        c4, c5 = model.encoder(c)[3:]
        s4, s5 = model.encoder(style)[3:]
        up = torch.nn.functional.interpolate(model.transform.sanet5_1(c5, s5), scale_factor=2, mode="nearest")
        x = model.transform.sanet4_1(c4, s4) + up
        ref = model.decoder(model.transform.merge_conv(torch.nn.functional.pad(x, (1,) * 4, mode="reflect")))
    assert torch.equal(model.stylize(c, style), ref)


def test_alpha_zero_decodes_content_features():
    model = load_method("sanet", weights="random")
    c, s = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ref = model.decoder(model.encoder(c)[3])
    torch.testing.assert_close(model.stylize(c, s, alpha=0.0), ref)
    assert not torch.allclose(model.stylize(c, s, alpha=1.0), ref)


def test_random_weights_are_seeded():
    a = load_method("sanet", weights="random", seed=3).decoder[1].weight
    b = load_method("sanet", weights="random", seed=3).decoder[1].weight
    c = load_method("sanet", weights="random", seed=4).decoder[1].weight
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_missing_official_file_names_source(tmp_path):
    with pytest.raises(
        WeightsError,
        match=r"official files missing in weights dir .*vgg_normalised.pth .*decoder_iter_500000.pth "
        r"\(published at https://yadi.sk/d/xsZ7j6FhK1dmfQ\)",
    ):
        load_method("sanet", weights="official", weights_dir=tmp_path)


def test_wrong_checkpoint_one_line_error(tmp_path, parity_weights):
    import shutil

    for f in parity_weights("sanet").iterdir():
        shutil.copy(f, tmp_path / f.name)
    state = torch.load(tmp_path / "decoder_iter_500000.pth", weights_only=True)
    state["1.weight"] = state["1.weight"][:, :256]
    torch.save(state, tmp_path / "decoder_iter_500000.pth")
    with pytest.raises(WeightsError) as e:
        load_method("sanet", weights="official", weights_dir=tmp_path)
    msg = str(e.value)
    assert (
        "\n" not in msg
        and "1.weight" in msg
        and "(256, 256, 3, 3)" in msg
        and "decoder_iter_500000.pth" in msg
    )
    del state["1.weight"]
    state["extra"] = torch.zeros(1)
    torch.save(state, tmp_path / "decoder_iter_500000.pth")
    with pytest.raises(WeightsError, match=r"missing keys \[1.weight\].*unexpected keys \[extra\]"):
        load_method("sanet", weights="official", weights_dir=tmp_path)


def test_pickled_objects_are_refused(tmp_path, parity_weights):
    import shutil

    for f in parity_weights("sanet").iterdir():
        shutil.copy(f, tmp_path / f.name)
    torch.save({"1.weight": object()}, tmp_path / "decoder_iter_500000.pth")
    with pytest.raises(WeightsError, match="not a readable weights-only checkpoint"):
        load_method("sanet", weights="official", weights_dir=tmp_path)
