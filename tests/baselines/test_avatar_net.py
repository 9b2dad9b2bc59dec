from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from conftest import PARITY, assert_close_rel_max, load_case, parity_cases
from parity_weights import read_layout, rebuild_state

from baselines.avatar_net import (
    NPZ,
    convert_tf_checkpoint,
    export_variables,
    patch_swap,
    tf_variables,
    zca,
)
from sanet_bench import load_method
from sanet_bench.errors import WeightsError

LAYOUT = read_layout(PARITY / "avatar_net")
ENTRY = LAYOUT["files"]["model.ckpt"]


@pytest.fixture(scope="module")
def tf_state() -> dict[str, np.ndarray]:
    """The parity layout's variables (TF names, HWIO), as a checkpoint reader would return them."""
    return {k: v.numpy() for k, v in rebuild_state(ENTRY).items()}


@pytest.fixture()
def npz_dir(tmp_path, tf_state):
    np.savez(tmp_path / NPZ, **tf_state)
    return tmp_path


def test_variables_are_the_layout_names_and_hwio_shapes():
    assert list(tf_variables().items()) == [(k, tuple(shape)) for k, shape, _ in ENTRY["tensors"]]


def test_recipe_reproduces_tensor_sums(tf_state):
    for key, a in tf_state.items():
        want = LAYOUT["tensor_sums"]["model.ckpt"][key]
        assert abs(a.astype(np.float64).sum() - want) <= 1e-6 * max(1.0, abs(want)), key


@pytest.mark.parametrize("case", parity_cases("avatar_net"), ids=lambda p: p.stem)
def test_parity(case, npz_dir):
    c = load_case(case)
    model = load_method("avatar-net", weights="official", weights_dir=npz_dir)
    out = model.stylize(c["content"], c["style"], alpha=c["inter_weight"])
    assert_close_rel_max(out, c["expected"], c["tol_rel_max"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_parity_cuda(npz_dir, monkeypatch):
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    model = load_method("avatar-net", weights="official", weights_dir=npz_dir, device="cuda")
    for case in parity_cases("avatar_net"):
        c = load_case(case)
        out = model.stylize(c["content"].cuda(), c["style"].cuda(), alpha=c["inter_weight"]).cpu()
        assert_close_rel_max(out, c["expected"], c["tol_rel_max"])


def _reference_patch_swap(content: torch.Tensor, style: torch.Tensor, p: int) -> torch.Tensor:
    """A transliteration of ``nearest_patch_swapping``: all patches as kernels, one-hot conv_transpose."""
    c, hc, wc = content.shape
    beg, end = (p - 1) // 2, p - 1 - (p - 1) // 2
    patches = F.unfold(F.pad(style, (beg, end, beg, end))[None], p)[0].T.reshape(-1, c, p, p)
    norm = patches.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    scores = F.conv2d(F.pad(content[None], (beg, end, beg, end), mode="reflect"), patches / (norm + 1e-7))
    one_hot = F.one_hot(scores.argmax(dim=1), patches.shape[0]).permute(0, 3, 1, 2).to(content.dtype)
    out = F.conv_transpose2d(one_hot, patches)[0, :, beg : beg + hc, beg : beg + wc]
    count = F.conv_transpose2d(
        torch.ones(1, 1, hc, wc, dtype=content.dtype), torch.ones(1, 1, p, p, dtype=content.dtype)
    )
    return out / count[0, :, beg : beg + hc, beg : beg + wc]


@pytest.mark.parametrize("p", [5, 3])
def test_patch_swap_equals_one_hot_reference_for_any_chunking(p):
    g = torch.Generator().manual_seed(0)
    content = torch.randn(6, 9, 7, generator=g, dtype=torch.float64)
    style = torch.randn(6, 8, 11, generator=g, dtype=torch.float64)
    ref = _reference_patch_swap(content, style, p)
    per_row = (11 + p - 1) * (9 + p - 1) * (7 + p - 1)  # correlation elements per padded style row
    for chunk in (1, (3 + p - 1) * per_row, 1 << 30):  # one style row per chunk, 3 rows, all at once
        torch.testing.assert_close(
            patch_swap(content, style, p, chunk_elements=chunk), ref, rtol=1e-12, atol=1e-12
        )


def test_patch_swap_of_self_is_identity_in_the_interior():
    # each patch's best match is itself (normalised cross-correlation is maximal at equality) except at the
    # border, where reflect padding of the content and zero padding of the style disagree
    x = torch.randn(4, 10, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(patch_swap(x, x)[:, 4:-4, 4:-4], x[:, 4:-4, 4:-4])


def test_zca_matches_the_svd_formulation():
    g = torch.Generator().manual_seed(2)
    x = (
        torch.randn(16, 9, generator=g, dtype=torch.float64)
        * torch.linspace(0.01, 3, 16, dtype=torch.float64)[:, None]
    )
    z, colour, mean = zca(x)
    xc = (x - x.mean(1, keepdim=True)).T  # [L, C] as in zca_normalization
    u, s, v = torch.svd(xc.T @ xc / xc.shape[0])  # TF returns (s, u, v); torch (u, s, v)
    valid = (s > 1e-5).double()
    s_eff = s.clamp_min(1e-5)
    ref_z = (xc @ u * (s_eff.rsqrt() * valid)) @ v.T
    ref_colour = (u * (s_eff.sqrt() * valid)) @ v.T
    assert int(valid.sum()) == 8  # rank-deficient: 9 positions, 16 channels
    torch.testing.assert_close(z, ref_z.T)
    torch.testing.assert_close(colour, ref_colour.T)
    torch.testing.assert_close(colour @ z + mean, x)  # colouring undoes whitening on the kept subspace


def test_content_not_multiple_of_8_keeps_its_size():
    model = load_method("avatar-net", weights="random", seed=1)
    style = torch.rand(1, 3, 40, 52)
    for h, w in ((100, 84), (67, 64)):
        out = model.stylize(torch.rand(1, 3, h, w), style)
        assert out.shape == (1, 3, h, w) and torch.isfinite(out).all()


def test_batch_runs_the_decorator_per_sample():
    model = load_method("avatar-net", weights="random")
    g = torch.Generator().manual_seed(3)
    c, s = torch.rand(2, 3, 64, 72, generator=g), torch.rand(2, 3, 48, 64, generator=g)
    both = model.stylize(c, s)
    for i in range(2):
        torch.testing.assert_close(
            both[i : i + 1], model.stylize(c[i : i + 1], s[i : i + 1]), rtol=1e-4, atol=1e-4
        )
    shared = model.stylize(c, s[:1])  # one style for the whole batch
    torch.testing.assert_close(shared[1:], model.stylize(c[1:], s[:1]), rtol=1e-4, atol=1e-4)


def test_alpha_is_the_inter_weight_default_0_8_and_stages_are_reported():
    model = load_method("avatar-net", weights="random")
    c, s = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    seen: list[str] = []

    def hook(name):
        seen.append(name)
        return torch.autograd.profiler.record_function(name)

    model.stage_hook = hook
    default = model.stylize(c, s)
    assert seen == ["encode", "transform", "decode"]
    assert torch.equal(default, model.stylize(c, s, alpha=0.8))
    assert not torch.allclose(default, model.stylize(c, s, alpha=1.0))


def test_missing_npz_names_the_drive_source_and_convert(tmp_path):
    with pytest.raises(
        WeightsError, match=r"avatar_net.npz \(published at https://drive.google.com/open\?id=1_7x93"
    ):
        load_method("avatar-net", weights="official", weights_dir=tmp_path)


def test_wrong_npz_one_line_errors(tmp_path, tf_state):
    bad = dict(tf_state)
    bad["vgg_19/conv1/conv1_1/weights"] = bad["vgg_19/conv1/conv1_1/weights"].transpose(3, 2, 0, 1)  # OIHW
    np.savez(tmp_path / NPZ, **bad)
    with pytest.raises(WeightsError) as e:
        load_method("avatar-net", weights="official", weights_dir=tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "vgg_19/conv1/conv1_1/weights" in msg and "(64, 3, 3, 3)" in msg and NPZ in msg

    del bad["vgg_19/conv1/conv1_1/weights"]
    bad["combined_decoder/conv5/conv5_1/weights"] = np.zeros(1, np.float32)
    np.savez(tmp_path / NPZ, **bad)
    with pytest.raises(WeightsError, match=r"missing variables \[vgg_19/conv1/conv1_1/weights\].*unexpected"):
        load_method("avatar-net", weights="official", weights_dir=tmp_path)


@pytest.mark.parametrize("content", [b"not a zip at all", b"PK\x03\x04 truncated"])
def test_corrupt_npz_is_a_weights_error(tmp_path, content):
    (tmp_path / NPZ).write_bytes(content)
    with pytest.raises(WeightsError, match="not a readable .npz"):
        load_method("avatar-net", weights="official", weights_dir=tmp_path)


def test_pickled_arrays_are_refused(tmp_path, tf_state):
    np.savez(tmp_path / NPZ, **{**tf_state, "vgg_19/conv1/conv1_1/biases": np.array([object()])})
    with pytest.raises(WeightsError, match="not a readable .npz"):
        load_method("avatar-net", weights="official", weights_dir=tmp_path)


def test_export_keeps_exactly_the_inference_variables(tmp_path, tf_state):
    extra = {
        "vgg_19/conv5/conv5_1/weights": np.zeros((3, 3, 512, 512), np.float32),
        "combined_decoder/conv4/conv4_1/weights/Adam": np.zeros((3, 3, 512, 256), np.float32),
        "global_step": np.array(7),
    }
    as_f64 = {k: v.astype(np.float64) for k, v in tf_state.items()}
    out = export_variables({**as_f64, **extra}, tmp_path, "ckpt")
    assert out == tmp_path / NPZ
    with np.load(out, allow_pickle=False) as z:
        assert sorted(z.files) == sorted(tf_variables())
        assert all(z[k].dtype == np.float32 and np.array_equal(z[k], tf_state[k]) for k in z.files)
    missing = dict(tf_state)
    del missing["combined_decoder/output/biases"]
    with pytest.raises(WeightsError, match=r"ckpt: missing variables \[combined_decoder/output/biases\]"):
        export_variables(missing, tmp_path / "x.npz", "ckpt")
    assert not (tmp_path / "x.npz").exists()


def test_convert_without_tensorflow_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # import tensorflow -> ImportError
    with pytest.raises(WeightsError, match=r"pip install 'sanet-bench\[tensorflow\]'"):
        convert_tf_checkpoint(tmp_path / "model.ckpt", tmp_path / NPZ)


def _fake_tensorflow(variables: dict[str, np.ndarray], opened: list[str]) -> types.ModuleType:
    """Just the part of the TF API the converter uses: tf.train.load_checkpoint -> CheckpointReader."""

    class Reader:
        def get_variable_to_shape_map(self):
            return {k: list(v.shape) for k, v in variables.items()}

        def get_tensor(self, name):
            return variables[name]

    def load_checkpoint(prefix):
        opened.append(prefix)
        if not prefix.endswith("model.ckpt-1000"):
            raise ValueError(
                f"Unsuccessful TensorSliceReader constructor: Failed to find any matching files for {prefix}"
                "\nmore"
            )
        return Reader()

    tf = types.ModuleType("tensorflow")
    tf.train = types.SimpleNamespace(load_checkpoint=load_checkpoint)
    return tf


def test_convert_reads_the_checkpoint_and_the_result_loads(tmp_path, monkeypatch, tf_state):
    opened: list[str] = []
    variables = {**tf_state, "vgg_19/fc8/biases": np.zeros(1000, np.float32)}
    monkeypatch.setitem(sys.modules, "tensorflow", _fake_tensorflow(variables, opened))
    out = convert_tf_checkpoint(tmp_path / "model.ckpt-1000.index", tmp_path / NPZ)
    assert opened == [str(tmp_path / "model.ckpt-1000")]
    c = load_case(parity_cases("avatar_net")[0])
    model = load_method("avatar-net", weights="official", weights_dir=out.parent)
    assert_close_rel_max(
        model.stylize(c["content"], c["style"], alpha=c["inter_weight"]), c["expected"], c["tol_rel_max"]
    )
    with pytest.raises(
        WeightsError, match=r"model.ckpt-9: not a readable TensorFlow checkpoint \(Unsuccessful"
    ):
        convert_tf_checkpoint(tmp_path / "model.ckpt-9", tmp_path / "y.npz")


def test_cli_convert(tmp_path, monkeypatch, tf_state):
    from cli import main

    monkeypatch.setitem(sys.modules, "tensorflow", None)
    r = CliRunner().invoke(
        main, ["weights", "convert", "avatar-net", str(tmp_path / "m.ckpt"), str(tmp_path)]
    )
    assert r.exit_code == 2 and "sanet-bench[tensorflow]" in r.output and r.output.count("\n") == 1

    monkeypatch.setitem(sys.modules, "tensorflow", _fake_tensorflow(tf_state, []))
    r = CliRunner().invoke(
        main, ["weights", "convert", "avatar-net", str(tmp_path / "model.ckpt-1000"), str(tmp_path)]
    )
    assert r.exit_code == 0, r.output
    assert r.output.strip() == str(tmp_path / NPZ) and (tmp_path / NPZ).is_file()

    r = CliRunner().invoke(main, ["weights", "convert", "sanet", "a", "b"])
    assert r.exit_code == 2 and "avatar-net" in r.output
