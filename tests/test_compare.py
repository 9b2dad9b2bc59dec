"""`compare`: cell alignment, the one-sided Mann-Whitney test, the threshold, device refusal, exit codes."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cli import main
from sanet_bench.compare import compare_runs, format_table, parse_threshold
from sanet_bench.errors import ConfigError
from sanet_bench.profiling import ProfileConfig, RecordWriter, profile, summarize
from sanet_bench.sanet import SANet

CPU = {"device": "cpu", "cpu": "Test CPU 9000", "gpu": None, "threads": 1}


def record(method="sanet", size=64, samples=(0.10, 0.11, 0.10, 0.12, 0.10), status="ok", env=CPU, **kw):
    med, iqr = summarize(list(samples)) if status == "ok" else (None, None)
    rec = {
        "method": method, "size": size, "device": "cpu", "dtype": "fp32",
        "flags": {"channels_last": False, "compile": False}, "options": {}, "status": status,
        "samples_s": list(samples) if status == "ok" else [], "median_s": med, "iqr_s": iqr, "env": env,
    }
    rec.update(kw)
    return rec


def write_run(path, records):
    w = RecordWriter(path, {"kind": "test"})
    for r in records:
        w.add(r)
    return path


def run_cli(*args):
    return CliRunner().invoke(main, ["compare", *map(str, args)])


def test_equal_runs_pass(tmp_path):
    base = write_run(tmp_path / "a", [record(), record("adain")])
    new = write_run(tmp_path / "b", [record(samples=(0.11, 0.10, 0.10, 0.10, 0.12)), record("adain")])
    res = run_cli(base, new)
    assert res.exit_code == 0, res.output
    assert "sanet 64px cpu fp32" in res.output and "adain 64px cpu fp32" in res.output


def test_significant_slowdown_fails_naming_the_cell(tmp_path):
    base = write_run(tmp_path / "a", [record(), record("adain")])
    new = write_run(tmp_path / "b", [record(samples=(0.15, 0.16, 0.15, 0.17, 0.16)), record("adain")])
    res = run_cli(base, new)
    assert res.exit_code == 1
    assert "REGRESSION in 1 cell(s): sanet 64px cpu fp32 (regression)" in res.stderr
    comp = compare_runs(base, new)
    [reg] = comp.regressions
    assert reg.ratio == pytest.approx(0.16 / 0.10) and reg.p_value < 0.05


def test_three_vs_three_repeats_cannot_be_significant(tmp_path):
    base = write_run(tmp_path / "a", [record(samples=(0.10, 0.10, 0.11))])
    new = write_run(tmp_path / "b", [record(samples=(0.20, 0.21, 0.22))])
    [cell] = compare_runs(base, new).cells
    assert cell.p_value == pytest.approx(0.05)  # exact U test, 1/C(6,3)
    assert cell.verdict == "slower-ns" and run_cli(base, new).exit_code == 0


def test_fewer_than_three_repeats_are_not_tested(tmp_path):
    base = write_run(tmp_path / "a", [record(samples=(0.10, 0.10))])
    new = write_run(tmp_path / "b", [record(samples=(0.50, 0.50))])
    [cell] = compare_runs(base, new).cells
    assert cell.verdict == "too-few-repeats" and cell.p_value is None


def test_threshold_decides_what_counts(tmp_path):
    base = write_run(tmp_path / "a", [record(samples=(1.00, 1.001, 1.002, 1.003, 1.004))])
    new = write_run(tmp_path / "b", [record(samples=(1.03, 1.031, 1.032, 1.033, 1.034))])  # 3 % slower
    assert run_cli(base, new).exit_code == 0  # default 5 %
    res = run_cli(base, new, "--threshold", "2%")
    assert res.exit_code == 1 and "sanet 64px" in res.stderr


def test_new_failure_is_a_regression_and_unmatched_cells_are_listed(tmp_path):
    base = write_run(tmp_path / "a", [record(size=64), record(size=128), record("wct")])
    new = write_run(tmp_path / "b", [record(size=64), record(size=128, status="oom"), record("gatys")])
    verdicts = {c.name: c.verdict for c in compare_runs(base, new).cells}
    assert verdicts["sanet 128px cpu fp32"] == "new-failure"
    assert verdicts["wct 64px cpu fp32"] == "only-base" and verdicts["gatys 64px cpu fp32"] == "only-new"
    res = run_cli(base, new)
    assert res.exit_code == 1 and "sanet 128px cpu fp32 (new-failure)" in res.stderr


def test_cells_differ_by_dtype_compile_and_options_not_by_memory_format(tmp_path):
    base = write_run(tmp_path / "a", [record(), record(dtype="bf16"), record("gatys", options={"iters": 10}),
                                      record("wct")])
    new = write_run(tmp_path / "b", [record(flags={"channels_last": True, "compile": False}),
                                     record("gatys", options={"iters": 20}),
                                     record("wct", flags={"channels_last": False, "compile": True})])
    names = {c.name: c.verdict for c in compare_runs(base, new).cells}
    assert names['gatys 64px cpu fp32 {"iters": 10}'] == "only-base"
    assert names["sanet 64px cpu fp32"] not in ("only-base", "only-new")  # channels_last: the same cell
    assert names["sanet 64px cpu bf16"] == "only-base"
    assert names["wct 64px cpu fp32 compile"] == "only-new" and names["wct 64px cpu fp32"] == "only-base"


def test_different_hardware_is_refused_unless_asked(tmp_path):
    base = write_run(tmp_path / "a", [record()])
    new = write_run(tmp_path / "b", [record(env={**CPU, "cpu": "Other CPU 1"})])
    res = run_cli(base, new)
    assert res.exit_code == 2
    assert res.stderr.count("\n") == 1 and "--cross-device" in res.stderr and "Other CPU 1" in res.stderr
    res = run_cli(base, new, "--cross-device")
    assert res.exit_code == 0 and "CROSS-DEVICE" in res.output


def test_missing_run_is_a_user_error(tmp_path):
    base = write_run(tmp_path / "a", [record()])
    res = run_cli(base, tmp_path / "nothing")
    assert res.exit_code == 2 and "no records.jsonl" in res.stderr


@pytest.mark.parametrize("text, value", [("5%", 0.05), ("0.1", 0.1), ("12.5%", 0.125), (0.02, 0.02)])
def test_parse_threshold(text, value):
    assert parse_threshold(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["5", "abc", "-1%"])
def test_parse_threshold_rejects(text):
    with pytest.raises(ConfigError):
        parse_threshold(text)


def test_table_is_aligned(tmp_path):
    base = write_run(tmp_path / "a", [record(), record("avatar-net", size=512)])
    comp = compare_runs(base, base)
    lines = format_table(comp).splitlines()
    assert lines[0].startswith("cell") and set(lines[1]) == {"-"}
    assert lines[2].index("same") == lines[3].index("same")


def test_profiled_method_slowed_on_purpose_is_caught(tmp_path, monkeypatch):
    cfg = ProfileConfig(
        methods=["sanet", "adain"], sizes=[64], repeats=4, warmup=0, isolate=False, threads=1,
        count_flops=False,
    )
    profile(cfg, tmp_path / "base")
    real = SANet._stylize

    def slow(self, *args, **kw):  # three times the work: ~3x, whatever the machine's load
        for _ in range(2):
            real(self, *args, **kw)
        return real(self, *args, **kw)

    monkeypatch.setattr(SANet, "_stylize", slow)
    profile(cfg, tmp_path / "slow")
    res = run_cli(tmp_path / "base", tmp_path / "slow", "--threshold", "50%")
    assert res.exit_code == 1
    # adain is not asserted either way: other jobs on a shared test machine can slow any cell
    assert "sanet 64px cpu fp32 (regression)" in res.stderr


GPU_A = {"device": "cuda", "cpu": "Test CPU 9000", "gpu": "Test GPU A", "threads": 1}
GPU_B = {"device": "cuda", "cpu": "Test CPU 9000", "gpu": "Test GPU B", "threads": 1}


def test_runs_with_several_devices_compare_per_device(tmp_path):
    slow = (0.15, 0.16, 0.15, 0.17, 0.16)
    base = write_run(tmp_path / "a", [record(env=GPU_A, device="cuda"), record(env=GPU_B, device="cuda")])
    new = write_run(tmp_path / "b", [record(env=GPU_A, device="cuda"),
                                     record(env=GPU_B, device="cuda", samples=slow)])
    comp = compare_runs(base, new)
    assert [c.name for c in comp.regressions] == ["sanet 64px cuda fp32 on GPU Test GPU B"]
    assert len(comp.cells) == 2  # one per device, not one record hiding the other
    # across runs: a one-device run against a two-device one matches the device they share
    single = write_run(tmp_path / "c", [record(env=GPU_A, device="cuda", samples=slow)])
    verdicts = {c.name: c.verdict for c in compare_runs(base, single, cross_device=True).cells}
    assert verdicts == {"sanet 64px cuda fp32 on GPU Test GPU A": "regression",
                        "sanet 64px cuda fp32 on GPU Test GPU B": "only-base"}


def test_peak_memory_is_shown_with_its_ratio_and_convention_mismatch_marked(tmp_path):
    mib = 2**20
    conv = {"peak_mem_convention": "cpu peak RSS delta, trim"}
    base = write_run(tmp_path / "a", [
        record(peak_mem_bytes=200 * mib, **conv),
        record("adain", peak_mem_bytes=100 * mib, peak_mem_convention="cpu peak RSS delta, no trim"),
        record("wct", peak_mem_bytes=None),
    ])
    new = write_run(tmp_path / "b", [
        record(peak_mem_bytes=150 * mib, **conv), record("adain", peak_mem_bytes=120 * mib, **conv),
        record("wct", peak_mem_bytes=50 * mib),
    ])
    comp = compare_runs(base, new)
    cells = {c.key[0]: c for c in comp.cells}
    assert cells["sanet"].peak_ratio == pytest.approx(0.75) and cells["sanet"].same_peak_convention
    assert cells["adain"].peak_ratio == pytest.approx(1.2) and not cells["adain"].same_peak_convention
    assert cells["wct"].peak_ratio is None  # not measured in base: no ratio
    text = format_table(comp)
    rows = {line.split()[0]: line for line in text.splitlines()[2:5]}
    assert "200 MiB" in rows["sanet"] and "150 MiB" in rows["sanet"] and "0.75 " in rows["sanet"]
    assert "1.20*" in rows["adain"] and "0.75*" not in rows["sanet"]
    note = "* peak measured differently: base 'cpu peak RSS delta, no trim'; new 'cpu peak RSS delta, trim'"
    assert note in text
    assert run_cli(base, new).exit_code == 0  # memory is shown, not tested


def test_runs_of_one_side_are_pooled(tmp_path):
    mib = 2**20
    trim, no_trim = {"peak_mem_convention": "trim"}, {"peak_mem_convention": "no trim"}
    b1 = write_run(tmp_path / "b1", [record(samples=(0.10, 0.10, 0.10), peak_mem_bytes=90 * mib, **trim),
                                     record("adain", peak_mem_bytes=10 * mib, **trim)])
    b2 = write_run(tmp_path / "b2", [record(samples=(0.20, 0.20, 0.20), peak_mem_bytes=100 * mib, **trim),
                                     record("adain", peak_mem_bytes=12 * mib, **no_trim)])
    b3 = write_run(tmp_path / "b3", [record(samples=(0.30, 0.30, 0.30), peak_mem_bytes=110 * mib, **trim),
                                     record("adain", peak_mem_bytes=14 * mib, **trim)])
    n1 = write_run(tmp_path / "n1", [record(samples=(0.12, 0.12, 0.12), peak_mem_bytes=50 * mib, **trim),
                                     record("adain", peak_mem_bytes=10 * mib, **trim)])
    n2 = write_run(tmp_path / "n2", [record(samples=(0.13, 0.13, 0.13), peak_mem_bytes=70 * mib, **trim),
                                     record("adain", status="oom")])
    comp = compare_runs([b1, b2, b3], [n1, n2])
    cells = {c.key[0]: c for c in comp.cells}
    sanet = cells["sanet"]
    assert (sanet.n_base, sanet.n_new) == (9, 6)
    assert sanet.base_median_s == pytest.approx(0.20) and sanet.new_median_s == pytest.approx(0.125)
    assert sanet.verdict == "faster"  # against b1 alone it is 1.2x slower
    assert {c.key[0]: c for c in compare_runs(b1, n1).cells}["sanet"].ratio == pytest.approx(1.2)
    assert (sanet.base_peak_bytes, sanet.new_peak_bytes) == (100 * mib, 60 * mib)
    assert sanet.same_peak_convention
    assert cells["adain"].verdict == "new-failure"  # failed in one of the pooled new runs
    assert "pooled: 3 base run(s), 2 new run(s)" in format_table(comp)
    assert "pooled" not in format_table(compare_runs(b1, n1))


def test_pooled_peak_conventions_that_differ_are_marked(tmp_path):
    mib = 2**20
    b1 = write_run(tmp_path / "b1", [record(peak_mem_bytes=10 * mib, peak_mem_convention="trim")])
    b2 = write_run(tmp_path / "b2", [record(peak_mem_bytes=12 * mib, peak_mem_convention="no trim")])
    n1 = write_run(tmp_path / "n1", [record(peak_mem_bytes=9 * mib, peak_mem_convention="trim")])
    [cell] = compare_runs([b1, b2], n1).cells
    assert not cell.same_peak_convention and cell.peak_conventions[0] == "no trim | trim"
    assert "0.82*" in format_table(compare_runs([b1, b2], n1))  # 9 / median(10, 12) = 9 / 11
    unnamed = [write_run(tmp_path / f"u{i}", [record(peak_mem_bytes=10 * mib)]) for i in range(3)]
    [cell] = compare_runs(unnamed[:2], unnamed[2]).cells  # runs that name no convention agree with each other
    assert cell.same_peak_convention and "*" not in format_table(compare_runs(unnamed[:2], unnamed[2]))


def test_cli_pools_base_run_and_new_run(tmp_path):
    b1 = write_run(tmp_path / "b1", [record(samples=(0.10, 0.10, 0.10, 0.10))])
    b2 = write_run(tmp_path / "b2", [record(samples=(0.30, 0.30, 0.30, 0.30))])
    n1 = write_run(tmp_path / "n1", [record(samples=(0.15, 0.15, 0.15, 0.15))])
    n2 = write_run(tmp_path / "n2", [record(samples=(0.16, 0.16, 0.16, 0.16))])
    assert run_cli(b1, n1).exit_code == 1  # 1.5x slower than b1 alone
    res = run_cli(b1, n1, "--base-run", b2, "--new-run", n2)
    assert res.exit_code == 0, res.output
    assert "pooled: 2 base run(s), 2 new run(s)" in res.output and "8/8" in res.output
    bad = run_cli(b1, n1, "--base-run", tmp_path / "missing")
    assert bad.exit_code == 2 and "missing" in bad.output
