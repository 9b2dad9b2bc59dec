from __future__ import annotations

import shutil

import pytest
import torch
from conftest import assert_close_rel_max, load_case, no_tf32, parity_cases

from baselines.cast import AE, DEC_A, DEC_B, MIN_SIDE, CASTDecoder
from sanet_bench import load_method
from sanet_bench.errors import ConfigError, ImageError, WeightsError
from sanet_bench.nn.stats import adain
from sanet_bench.nn.vgg import VGG_NORMALISED
from sanet_bench.registry import get_method_spec
from sanet_bench.weights import read_state_dict

CASES = parity_cases("cast")


@pytest.fixture(scope="module")
def weights_dir(parity_weights):
    return parity_weights("cast")


@pytest.fixture(scope="module")
def official(weights_dir):
    return load_method("cast", weights="official", weights_dir=weights_dir)


@pytest.fixture(scope="module")
def rand_model():
    return load_method("cast", weights="random", seed=3)


def test_parity_cases_exist():
    assert len(CASES) == 3 and all(load_case(p)["kind"] == "stylize" for p in CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_parity(case, official):
    c = load_case(case)
    assert c["kind"] == "stylize"  # no losses case exists for cast
    out = official.stylize(c["content"], c["style"])
    assert_close_rel_max(out, c["expected"], c["tol_rel_max"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_parity_cuda(weights_dir):
    model = load_method("cast", weights="official", weights_dir=weights_dir, device="cuda")
    with no_tf32():
        for case in CASES:
            c = load_case(case)
            out = model.stylize(c["content"], c["style"])
            assert out.device.type == "cuda"
            assert_close_rel_max(out.cpu(), c["expected"], c["tol_rel_max"])


# ------------------------------------------------------------------------------------ which file does what
def test_weights_come_from_ae_and_dec_b_only(official, weights_dir):
    """The encoder is latest_net_AE.pth (not vgg_normalised.pth); the decoder is Dec_B (not Dec_A); the two
    files without effect on the output are validated but not kept."""
    ae = read_state_dict(weights_dir / AE)
    dec_b = read_state_dict(weights_dir / DEC_B)
    for k, v in ae.items():
        torch.testing.assert_close(official.encoder.state_dict()[k], v, rtol=0, atol=0)
    for k, v in dec_b.items():
        torch.testing.assert_close(official.decoder.state_dict()[k], v, rtol=0, atol=0)
    assert {k.split(".")[0] for k in official.state_dict()} == {"encoder", "decoder"}
    assert len(official.state_dict()) == len(ae) + len(dec_b)
    assert set(official.weights_info["files"]) == {VGG_NORMALISED.name, AE, DEC_A, DEC_B}


def test_dec_a_would_give_another_image(official, weights_dir):
    """Negative control: swapping in Dec_A (the style -> content decoder) fails parity by far."""
    c = load_case(CASES[0])
    dec_a = CASTDecoder()
    dec_a.load_state_dict(read_state_dict(weights_dir / DEC_A))
    with torch.no_grad():
        t = adain(official.encode(c["content"]), official.encode(c["style"]))
        wrong = (dec_a(t) + 1) / 2
        right = (official.decoder(t) + 1) / 2
    assert_close_rel_max(right, c["expected"], c["tol_rel_max"])
    rel = ((wrong - c["expected"]).abs().max() / c["expected"].abs().max()).item()
    assert rel > 0.1


def test_inputs_and_output_use_the_minus_one_one_scale(official):
    """stylize = (Dec_B(AdaIN(enc(2c-1), enc(2s-1))) + 1) / 2, against the encoder/decoder called directly."""
    c = load_case(CASES[0])
    with torch.no_grad():
        fc = official.encoder.last(2 * c["content"] - 1)
        fs = official.encoder.last(2 * c["style"] - 1)
        ref = (official.decoder(adain(fc, fs)) + 1) / 2
        raw = official.decoder(adain(official.encoder.last(c["content"]), official.encoder.last(c["style"])))
    torch.testing.assert_close(official.stylize(c["content"], c["style"]), ref, rtol=1e-5, atol=1e-6)
    assert (raw - c["expected"]).abs().max() > 0.1 * c["expected"].abs().max()  # [0,1] kept: wrong


def test_dead_channels_stay_finite(official):
    """Zero relu4_1 channels are normalised by sqrt(0 + 1e-5): the output takes the style mean, not NaN."""
    c = load_case(CASES[0])
    with torch.no_grad():
        fc = official.encode(c["content"])
    dead = (fc.flatten(2).abs().amax(-1) == 0).sum().item()
    assert dead > 0  # the fixture's random weights leave dead channels (README: 20-30 %)
    assert torch.isfinite(official.stylize(c["content"], c["style"])).all()


# ------------------------------------------------------------------------------------------ loading errors
def _copy_with(weights_dir, tmp_path, name, state):
    for f in weights_dir.iterdir():
        shutil.copy(f, tmp_path / f.name)
    torch.save(state, tmp_path / name)
    return tmp_path


@pytest.mark.parametrize("name", [AE, DEC_B, DEC_A, VGG_NORMALISED.name])
def test_renamed_key_names_the_file(weights_dir, tmp_path, name):
    state = read_state_dict(weights_dir / name)
    first = next(iter(state))
    state["renamed." + first] = state.pop(first)
    d = _copy_with(weights_dir, tmp_path, name, state)
    with pytest.raises(WeightsError, match=rf"{name}: missing keys \[{first}\].*unexpected keys"):
        load_method("cast", weights="official", weights_dir=d)


@pytest.mark.parametrize("name", [AE, DEC_B, DEC_A, VGG_NORMALISED.name])
def test_wrong_shape_names_the_file(weights_dir, tmp_path, name):
    state = read_state_dict(weights_dir / name)
    key = next(k for k in state if k.endswith("weight"))
    state[key] = state[key][:1]
    d = _copy_with(weights_dir, tmp_path, name, state)
    with pytest.raises(WeightsError, match=rf"{name}: key {key} has shape"):
        load_method("cast", weights="official", weights_dir=d)


def test_missing_key_names_the_file(weights_dir, tmp_path):
    state = read_state_dict(weights_dir / AE)
    del state["enc_4.11.bias"]
    d = _copy_with(weights_dir, tmp_path, AE, state)
    with pytest.raises(WeightsError, match=rf"{AE}: missing keys \[enc_4.11.bias\]"):
        load_method("cast", weights="official", weights_dir=d)


def test_missing_files_name_where_published(tmp_path):
    with pytest.raises(WeightsError) as e:
        load_method("cast", weights="official", weights_dir=tmp_path)
    msg = str(e.value)
    assert "\n" not in msg
    drive = "https://drive.google.com/file/d/11dZqu95QfnAgkzgR1NTJfQutz8JlwRY8"
    for name in (AE, DEC_A, DEC_B):
        assert f"{name} (published at {drive}" in msg
    assert "vgg_normalised.pth (published at https://github.com/naoto0804/pytorch-AdaIN/" in msg


def test_missing_unused_file_is_still_required(weights_dir, tmp_path):
    """The reference's test path loads Dec_A strictly, so a folder without it is incomplete."""
    for f in weights_dir.iterdir():
        if f.name != DEC_A:
            shutil.copy(f, tmp_path / f.name)
    with pytest.raises(WeightsError, match=rf"{DEC_A} \(published at"):
        load_method("cast", weights="official", weights_dir=tmp_path)


def test_auto_weights_are_official_or_an_error(weights_dir):
    """No demo weights exist for CAST: ``auto`` is the official files or the missing-files error."""
    model = load_method("cast", weights="auto", weights_dir=weights_dir)
    assert model.weights_info["source"] == "official" and model.weights_info["requested"] == "auto"
    with pytest.raises(WeightsError, match=r"cast: official files missing in the cache"):
        load_method("cast", weights="auto")  # the test's empty SANET_BENCH_HOME
    with pytest.raises(ConfigError, match="unknown weights 'demo'"):
        load_method("cast", weights="demo")


# -------------------------------------------------------------------------------------------- input policy
@pytest.mark.parametrize("size", [(MIN_SIDE, MIN_SIDE), (MIN_SIDE, 40), (20, 33), (33, 17)])
def test_any_size_from_nine_px_is_stylized(rand_model, size):
    g = torch.Generator().manual_seed(sum(size))
    c = torch.rand(1, 3, *size, generator=g)
    s = torch.rand(1, 3, 20, 17, generator=g)
    out = rand_model.stylize(c, s)
    assert out.shape == c.shape and torch.isfinite(out).all()


def test_uncropped_output_is_rounded_up_to_multiples_of_8(rand_model):
    c, s = torch.rand(1, 3, 9, 30), torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        raw = rand_model._stylize(c, s, 1.0)
    assert raw.shape[-2:] == (16, 32)


def test_too_small_inputs_are_refused(rand_model):
    with pytest.raises(ImageError, match="at least 9 px"):
        rand_model.stylize(torch.rand(1, 3, 8, 64), torch.rand(1, 3, 32, 32))
    # the base contract refuses styles under 16 px before _stylize; _stylize itself refuses under 9 px
    with pytest.raises(ImageError, match=r"style is 8x40 px; CAST needs at least 9 px"):
        rand_model._stylize(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 40, 8), 1.0)
    with pytest.raises(ImageError, match=r"content is 40x8 px; CAST needs at least 9 px"):
        rand_model._stylize(torch.rand(1, 3, 8, 40), torch.rand(1, 3, 32, 32), 1.0)


def test_eight_px_really_cannot_be_computed(rand_model):
    """The refusal is the network's own limit: at 8 px relu4_1 is 1 px and its reflection pad fails."""
    with torch.no_grad(), pytest.raises(RuntimeError):
        rand_model.encoder(torch.rand(1, 3, 8, 8))
    with torch.no_grad():
        assert rand_model.encoder.last(torch.rand(1, 3, 9, 9)).shape[-2:] == (2, 2)


def test_batches_are_per_sample(rand_model):
    g = torch.Generator().manual_seed(4)
    c = torch.rand(2, 3, 24, 32, generator=g)
    s = torch.rand(2, 3, 20, 17, generator=g)
    out = rand_model.stylize(c, s)
    torch.testing.assert_close(out[1:], rand_model.stylize(c[1:], s[1:]), rtol=1e-4, atol=1e-5)
    one_style = rand_model.stylize(c, s[:1])
    torch.testing.assert_close(one_style[1:], rand_model.stylize(c[1:], s[:1]), rtol=1e-4, atol=1e-5)


def test_no_alpha_and_no_options(rand_model):
    c, s = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(rand_model.stylize(c, s, alpha=1.0), rand_model.stylize(c, s))
    with pytest.raises(ConfigError, match="no content-style trade-off"):
        rand_model.stylize(c, s, alpha=0.5)
    with pytest.raises(ConfigError, match="has no option preserve_color"):
        rand_model.stylize(c, s, preserve_color=True)


def test_inputs_are_not_modified(rand_model):
    c, s = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    c0, s0 = c.clone(), s.clone()
    with torch.inference_mode():
        rand_model.stylize(c, s)
    assert torch.equal(c, c0) and torch.equal(s, s0)


# ---------------------------------------------------------------------------------------------- metadata
def test_registry_metadata():
    spec = get_method_spec("cast")
    assert spec.reference == "zyxElsa/CAST_pytorch@67a7d9c1e9c1931db5d535385eca9861875049a8"
    assert not spec.has_alpha and spec.default_alpha == 1.0 and spec.options == ()
    assert spec.weights_kinds == ("official", "random", "auto")
    assert spec.min_size == MIN_SIDE == 9
    assert [f.name for f in spec.files] == [VGG_NORMALISED.name, AE, DEC_B, DEC_A]
    assert spec.files[0] is VGG_NORMALISED
    for f in spec.files[1:]:
        assert f.layout and f.license and f.sha256 is None
        assert [s.kind for s in f.sources] == ["manual", "manual"]
        assert all("sanet-bench weights import" in s.note for s in f.sources)
    assert "UNUSED" in spec.file(DEC_A).layout
