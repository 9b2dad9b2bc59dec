"""The fast paths (``sanet_bench.method.prepare``): channels_last within each method's parity tolerance,
bf16 returns float32 close to fp32, float64 methods keep their precision, runs record the path."""

from __future__ import annotations

import pytest
import torch
from conftest import PARITY, assert_close_rel_max, load_case
from parity_weights import case_call, write_weights
from test_runner import cfg_for, fake_grid, write_grid

from sanet_bench import load_method, runner
from sanet_bench.errors import ConfigError
from sanet_bench.method import check_fast_path, prepare
from sanet_bench.report.labels import fast_path_mark


def _smallest_case(folder: str):
    cases = [load_case(p) for p in sorted((PARITY / folder).glob("case_*.pt"))]
    cases = [c for c in cases if "expected" in c]
    return min(cases, key=lambda c: c["content"].numel() + c["style"].numel())


FOLDERS = [p.name for p in sorted(PARITY.iterdir()) if p.is_dir()]


@pytest.mark.parametrize("folder", FOLDERS)
def test_channels_last_stays_within_the_parity_tolerance(folder, tmp_path):
    case = _smallest_case(folder)
    name, layout, kw = case_call(case)
    wdir = write_weights(PARITY / folder, tmp_path, layout)
    model = load_method(name, weights="official", weights_dir=wdir)
    prepare(model, channels_last=True)
    assert model.fast_path == {"dtype": "fp32", "channels_last": True, "compile": False}
    assert_close_rel_max(model.stylize(case["content"], case["style"], **kw), case["expected"],
                         case.get("tol_rel_max", 1e-5))


@pytest.mark.parametrize(("name", "expected"), [("adain", True), ("mast", False), ("gatys", False)])
def test_cpu_default_memory_format_follows_the_method(name, expected):
    """prepare()'s default: channels_last on CPU unless the method runs in float64 (MAST) or declares
    otherwise (Gatys); an explicit channels_last still runs Gatys (L-BFGS needs a contiguous image)."""
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    opts = {"iters": 2} if name == "gatys" else {}
    for flag, want in ((None, expected), (True, True)):
        model = prepare(load_method(name, weights="random", seed=0), channels_last=flag)
        assert model.fast_path["channels_last"] is want
        if name != "mast":  # float64 at 64 px: seconds per call, and its parity tests run it
            out = model.stylize(x, x, **opts)
            assert out.shape == x.shape and torch.isfinite(out).all()


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


def test_fp16_on_cpu_and_unknown_dtypes_are_one_line_errors():
    with pytest.raises(ConfigError, match="fp16 needs CUDA.*bf16"):
        check_fast_path("fp16", "cpu")
    with pytest.raises(ConfigError, match="unknown dtype 'fp8'"):
        check_fast_path("fp8", "cpu")
    check_fast_path("bf16", "cpu")


def test_run_rows_record_the_fast_path_and_the_report_marks_it(tmp_path):
    grid = fake_grid(write_grid(tmp_path / "grid", 1, 1))
    cfg = cfg_for(tmp_path / "run", methods=["adain"], dtype="bf16", channels_last=True)
    df = runner.run(cfg, grid=grid, progress=False).table
    assert list(df["status"]) == ["ok"]
    assert list(df["dtype"]) == ["bf16"] and list(df["channels_last"]) == [True]
    assert list(df["compile"]) == [False]
    assert fast_path_mark({"dtype": "bf16"}) == " [BF16, not fp32]"
    assert fast_path_mark({"dtype": "fp32"}) == fast_path_mark(None) == ""
    with pytest.raises(ConfigError, match="fp16 needs CUDA"):
        runner.run(cfg_for(tmp_path / "run16", dtype="fp16"), grid=grid, progress=False)
