"""The fast paths (``sanet_bench.method.prepare``): channels_last and Winograd within each method's parity
tolerance, bf16 returns float32 close to fp32, float64 methods keep their precision, runs record the path."""

from __future__ import annotations

import pytest
import torch
from conftest import PARITY, assert_close_rel_max, load_case
from parity_weights import case_call, write_weights
from test_runner import cfg_for, fake_grid, write_grid

from sanet_bench import load_method, runner
from sanet_bench.errors import ConfigError
from sanet_bench.method import check_fast_path, prepare
from sanet_bench.nn.precision import tf32, tf32_flags
from sanet_bench.report.labels import fast_path_mark


def _smallest_case(folder: str):
    cases = [load_case(p) for p in sorted((PARITY / folder).glob("case_*.pt"))]
    cases = [c for c in cases if "expected" in c]
    return min(cases, key=lambda c: c["content"].numel() + c["style"].numel())


FOLDERS = [p.name for p in sorted(PARITY.iterdir()) if p.is_dir()]


@pytest.mark.parametrize("path", ["channels_last", "winograd"])
@pytest.mark.parametrize("folder", FOLDERS)
def test_fast_path_stays_within_the_parity_tolerance(folder, path, tmp_path):
    case = _smallest_case(folder)
    name, layout, kw = case_call(case)
    wdir = write_weights(PARITY / folder, tmp_path, layout)
    model = load_method(name, weights="official", weights_dir=wdir)
    prepare(model, channels_last=path == "channels_last", winograd=path == "winograd")
    # MAST computes in float64, which NNPACK does not: its convolutions stay direct (nothing switched)
    want = {"dtype": "fp32", "compile": False, "channels_last": path == "channels_last",
            "winograd": path == "winograd" and name != "mast"}
    assert model.fast_path == want
    assert_close_rel_max(model.stylize(case["content"], case["style"], **kw), case["expected"],
                         case.get("tol_rel_max", 1e-5))


@pytest.mark.parametrize(
    ("name", "winograd", "channels_last"),
    [("adain", True, False), ("gatys", True, False), ("artflow-adain", False, True), ("mast", False, False)],
)
def test_cpu_default_fast_path_follows_the_method(name, winograd, channels_last):
    """prepare()'s default on CPU: Winograd in fp32 (then no channels_last: it picks formats per layer);
    channels_last instead where a method declares Winograd no faster (ArtFlow); neither for MAST (float64).
    An explicit channels_last still runs Gatys (L-BFGS needs a contiguous image), and bf16 turns the
    Winograd default off (NNPACK is float32 only)."""
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    opts = {"iters": 2} if name == "gatys" else {}
    for flag, want in ((None, (winograd, channels_last)), (True, (winograd, True))):
        model = prepare(load_method(name, weights="random", seed=0), channels_last=flag)
        assert (model.fast_path["winograd"], model.fast_path["channels_last"]) == want
        if name in ("adain", "gatys"):  # MAST: float64, seconds per call; both run in their parity tests
            out = model.stylize(x, x, **opts)
            assert out.shape == x.shape and torch.isfinite(out).all()
    assert prepare(load_method(name, weights="random", seed=0), "bf16").fast_path["winograd"] is False
    # torch.compile cannot trace NNPACK's convolution: compiling turns the default off
    assert prepare(load_method(name, weights="random", seed=0), compile=True).fast_path["winograd"] is False


def test_compiled_cpu_default_matches_eager():
    g = torch.Generator().manual_seed(0)
    c, s = torch.rand(1, 3, 64, 64, generator=g), torch.rand(1, 3, 64, 64, generator=g)
    eager = prepare(load_method("adain", weights="random", seed=1)).stylize(c, s)
    compiled = prepare(load_method("adain", weights="random", seed=1), compile=True)
    # without Winograd the CPU default is channels_last
    assert compiled.fast_path == {"dtype": "fp32", "channels_last": True, "compile": True, "winograd": False}
    assert_close_rel_max(compiled.stylize(c, s), eager, 1e-4)


def test_bf16_returns_float32_near_fp32():
    g = torch.Generator().manual_seed(0)
    c, s = torch.rand(1, 3, 64, 64, generator=g), torch.rand(1, 3, 64, 64, generator=g)
    ref = load_method("adain", weights="random", seed=1).stylize(c, s)
    fast = prepare(load_method("adain", weights="random", seed=1), "bf16")
    assert next(fast.parameters()).dtype == torch.bfloat16
    out = fast.stylize(c, s)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert 0 < (out - ref).abs().max() <= 0.05 * ref.abs().max()  # bf16 rounds: close, not equal


def test_full_precision_method_is_left_in_its_precision():
    mast = prepare(load_method("mast", weights="random", seed=3), "bf16")
    assert mast.compute_dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in mast.parameters())


def test_tf32_context_sets_and_restores_the_flags():
    saved = tf32_flags()
    for enabled in (True, False):
        with tf32(enabled):
            assert torch.backends.cuda.matmul.allow_tf32 is torch.backends.cudnn.allow_tf32 is enabled
        assert tf32_flags() == saved
    with pytest.raises(ConfigError, match="dtype tf32 needs CUDA"):
        check_fast_path("tf32", "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", ["fp32", "tf32"])
def test_cuda_stylize_computes_in_the_float32_mode_asked(dtype):
    """torch's default runs cuDNN convolutions in TF32: fp32 must turn that off, tf32 on, both restore it."""
    model = prepare(load_method("adain", weights="random", seed=0, device="cuda"), dtype)
    seen, inner = [], model._stylize
    model._stylize = lambda *a, **k: seen.append(tf32_flags()) or inner(*a, **k)
    before = tf32_flags()
    out = model.stylize(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))
    assert seen == [(dtype == "tf32", dtype == "tf32")] and out.dtype == torch.float32
    assert tf32_flags() == before


def test_fp16_on_cpu_and_unknown_dtypes_are_one_line_errors():
    with pytest.raises(ConfigError, match="fp16 needs CUDA.*bf16"):
        check_fast_path("fp16", "cpu")
    with pytest.raises(ConfigError, match="unknown dtype 'fp8'"):
        check_fast_path("fp8", "cpu")
    check_fast_path("bf16", "cpu")
    for dtype, device in (("bf16", "cpu"), ("fp32", "cuda")):
        with pytest.raises(ConfigError, match="--winograd is a CPU float32 path"):
            check_fast_path(dtype, device, winograd=True)
    check_fast_path("fp32", "cpu", winograd=True)
    with pytest.raises(ConfigError, match="--winograd and --compile do not combine"):
        check_fast_path("fp32", "cpu", winograd=True, compile=True)


def test_run_rows_record_the_fast_path_and_the_report_marks_it(tmp_path):
    grid = fake_grid(write_grid(tmp_path / "grid", 1, 1))
    cfg = cfg_for(tmp_path / "run", methods=["adain"], dtype="bf16", channels_last=True)
    df = runner.run(cfg, grid=grid, progress=False).table
    assert list(df["status"]) == ["ok"]
    assert list(df["dtype"]) == ["bf16"] and list(df["channels_last"]) == [True]
    assert list(df["compile"]) == [False] and list(df["winograd"]) == [False]  # bf16: no NNPACK
    assert fast_path_mark({"dtype": "bf16"}) == " [BF16, not fp32]"
    assert fast_path_mark({"dtype": "fp32"}) == fast_path_mark(None) == ""
    with pytest.raises(ConfigError, match="fp16 needs CUDA"):
        runner.run(cfg_for(tmp_path / "run16", dtype="fp16"), grid=grid, progress=False)
