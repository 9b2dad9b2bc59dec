"""The profiler: records, timing statistics, stage split, FLOPs, CPU/CUDA peak memory, OOM handling."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from sanet_bench import profiling
from sanet_bench.config import RunConfig
from sanet_bench.errors import ConfigError, UnknownNameError
from sanet_bench.nn.winograd import use_winograd
from sanet_bench.profiling import ProfileConfig, load_records, profile, read_records
from sanet_bench.registry import get_method_spec
from sanet_bench.sanet import SANet, attention

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _cfg(**kw) -> ProfileConfig:
    base = dict(methods=["sanet"], sizes=[64], repeats=3, warmup=0, isolate=False, threads=1)
    base.update(kw)
    return ProfileConfig(**base)


def test_in_process_records_have_consistent_statistics_stages_and_flops(tmp_path):
    recs = profile(_cfg(sizes=[128, 64]), tmp_path)
    assert [r["size"] for r in recs] == [64, 128]  # ascending, whatever the order given
    on_disk = read_records(tmp_path)
    assert [r["size"] for r in on_disk] == [64, 128]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["records"] == 2 and manifest["finished"] and manifest["env"]["torch"] == torch.__version__
    for r in on_disk:
        assert r["status"] == "ok" and r["error"] is None
        assert len(r["samples_s"]) == 3
        q25, med, q75 = np.percentile(r["samples_s"], [25, 50, 75])
        assert r["median_s"] == pytest.approx(med) and r["iqr_s"] == pytest.approx(q75 - q25)
        assert set(r["stages"]) == {"encode", "transform", "decode"}
        assert sum(r["stages"].values()) <= max(r["samples_s"]) * 1.05
        assert r["gflops_per_s"] == pytest.approx(r["flops"] / r["median_s"] / 1e9)
        assert r["peak_mem_bytes"] is None and "not measured" in r["peak_mem_convention"]
        assert r["env"]["cpu"] and r["env"]["threads"] == 1 and r["env"]["dtype"] == "fp32"
        # the CPU default, as resolved
        assert r["flags"] == {"channels_last": False, "winograd": True, "compile": False}
    # convolutions dominate at these sizes: 4x the pixels is ~4x the FLOPs
    assert 3.9 < on_disk[1]["flops"] / on_disk[0]["flops"] < 4.5


def test_cpu_attention_flops_are_counted():
    f, g = torch.rand(1, 8, 40), torch.rand(1, 8, 24)
    with profiling._flop_counter() as fc:
        attention(f, g, g)
    assert fc.get_total_flops() == 2 * 2 * 40 * 24 * 8  # two matmuls, 2 FLOPs per multiply-add


def test_winograd_convolutions_count_as_the_convolution_they_compute():
    conv = torch.nn.Conv2d(64, 128, 3, padding=1)
    x = torch.rand(1, 64, 40, 40)
    counts = []
    for switch in (False, True):
        if switch and not use_winograd(conv):
            pytest.skip("this torch build has no NNPACK")
        with torch.inference_mode(), profiling._flop_counter() as fc:
            conv(x)
        counts.append(fc.get_total_flops())
    assert counts[0] == counts[1] == 2 * 64 * 128 * 9 * 40 * 40


def test_rss_peak_delta_sees_a_torch_allocation():
    # in a fresh process, as the profiler measures: in a long-lived one, memory freed by earlier work may
    # still be resident and get reused, so an allocation need not raise the RSS at all
    code = (
        "import json, torch\n"
        "from sanet_bench.profiling import rss_peak_delta\n"
        "with rss_peak_delta() as m:\n"
        "    x = torch.ones(16 * 2**20)  # 64 MiB, every page touched\n"
        "    del x\n"
        "print(json.dumps(m))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         check=True)
    m = json.loads(res.stdout.strip().splitlines()[-1])
    assert m["convention"] == profiling.MEM_CPU_HWM
    assert 60 * 2**20 <= m["bytes"] < 200 * 2**20


def test_isolated_cpu_cell_reports_peak_rss_delta(tmp_path):
    [r] = profile(_cfg(isolate=None, repeats=0, count_flops=False), tmp_path)  # memory only
    assert r["status"] == "ok", r["error"]
    assert r["samples_s"] == [] and r["median_s"] is None and r["flops"] is None
    assert r["isolated"] and r["peak_mem_convention"] == profiling.MEM_CPU_HWM
    # 64 px SANet: feature maps of a few MB; the loaded model (~100 MB of weights) is excluded
    assert 0 < r["peak_mem_bytes"] < 80 * 2**20 < r["mem_baseline_bytes"]


def test_isolated_workers_print_the_demo_notice_once(tmp_path, monkeypatch, capfd):
    from sanet_bench import api

    monkeypatch.setenv("SANET_BENCH_HOME", str(tmp_path / "home"))  # no official files: auto -> demo weights
    monkeypatch.setattr(api, "_DEMO_NOTICED", set())
    cfg = _cfg(methods=["adain"], weights="auto", isolate=True, sizes=[64, 72], repeats=0, count_flops=False)
    recs = profile(cfg, tmp_path / "p")
    assert [r["weights_info"]["source"] for r in recs] == ["demo", "demo"]
    assert capfd.readouterr().err.count("adain: official weights not in the cache") == 1


@pytest.mark.slow
def test_isolated_peak_memory_grows_with_size(tmp_path):
    small, big = profile(_cfg(isolate=True, sizes=[64, 256], repeats=1, count_flops=False), tmp_path)
    assert big["peak_mem_bytes"] > 4 * small["peak_mem_bytes"]


@pytest.mark.parametrize(
    "exc",
    [
        torch.cuda.OutOfMemoryError("CUDA out of memory"),
        RuntimeError("DefaultCPUAllocator: can't allocate memory"),
        MemoryError(),
    ],
)
def test_oom_is_recorded_and_larger_sizes_are_skipped(tmp_path, monkeypatch, exc):
    real = SANet._stylize

    def flaky(self, content, style, alpha):
        if content.shape[-1] >= 96:
            raise exc
        return real(self, content, style, alpha)

    monkeypatch.setattr(SANet, "_stylize", flaky)
    recs = profile(_cfg(sizes=[64, 96, 128]), tmp_path)
    assert [r["status"] for r in recs] == ["ok", "oom", "skipped-after-oom"]
    assert recs[2]["error"] == "sanet ran out of memory at 96px" and recs[2]["samples_s"] == []
    assert len(read_records(tmp_path)) == 3


def test_a_failing_method_is_an_error_record_not_a_crash(tmp_path):
    recs = profile(_cfg(weights="official", sizes=[64, 96]), tmp_path)  # no official files in the test home
    assert [r["status"] for r in recs] == ["error", "error"]
    assert "weights pull sanet" in recs[0]["error"] and "\n" not in recs[0]["error"]


def test_gatys_gets_a_small_recorded_budget():
    gatys, sanet = get_method_spec("gatys"), get_method_spec("sanet")
    assert gatys.options_for(ProfileConfig().budget) == {"iters": 10}
    assert gatys.options_for("profile", {"iters": 3}) == {"iters": 3}
    assert sanet.options_for("profile") == {}


@pytest.mark.parametrize(
    "kw, err",
    [
        (dict(dtype="fp8"), ConfigError),
        (dict(sizes=[0]), ConfigError),
        (dict(repeats=-1), ConfigError),
        (dict(methods=["nope"]), UnknownNameError),
        (dict(method_options={"adain": {"x": 1}}), ConfigError),
        (dict(device="cuda:0") if not torch.cuda.is_available() else dict(threads=0), ConfigError),
    ],
)
def test_bad_config_is_a_one_line_user_error(tmp_path, kw, err):
    with pytest.raises(err) as e:
        profile(_cfg(**kw), tmp_path)
    assert "\n" not in str(e.value)


def test_load_records_flattens_into_a_dataframe(tmp_path):
    profile(_cfg(), tmp_path / "run" / "profile")
    df = load_records(tmp_path / "run")  # a run folder holding profile/
    assert len(df) == 1
    row = df.iloc[0]
    assert row["method"] == "sanet" and row["stage_encode_s"] > 0
    assert row["winograd"] and not row["channels_last"]  # the CPU default, as resolved
    assert row["env_torch"] == torch.__version__ and len(row["samples_s"]) == 3
    assert json.loads(row["options"]) == {}


def test_read_records_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="no records.jsonl"):
        read_records(tmp_path)
    (tmp_path / "records.jsonl").write_text('{"method": "sanet", "status": "ok"}\n{broken\n')
    with pytest.raises(ConfigError, match="line 2 is not valid JSON"):
        read_records(tmp_path)


def test_profile_run_uses_the_run_config(tmp_path, monkeypatch):
    monkeypatch.setattr(profiling, "measure_cell_isolated", profiling.measure_cell)  # keep it in-process
    cfg = RunConfig(methods=["sanet"], sizes=[64], weights="random", seed=3, profile_sizes=[])
    recs = profiling.profile_run(cfg, tmp_path)
    assert (tmp_path / "profile" / "records.jsonl").is_file()
    assert recs[0]["status"] == "ok" and recs[0]["weights_info"] == {"source": "random", "seed": 3}
    assert [r["size"] for r in recs] == [64] and recs[0]["repeats"] == cfg.profile_repeats  # the run's sizes
    cfg = RunConfig(methods=["sanet"], sizes=[64], weights="random", profile_sizes=[32, 48],
                    profile_repeats=1)
    assert [r["size"] for r in profiling.profile_run(cfg, tmp_path / "b")] == [32, 48]


def test_cli_profile_writes_records_and_prints_each_cell(tmp_path):
    from cli import main

    out = tmp_path / "p"
    res = CliRunner().invoke(
        main, ["profile", "--methods", "sanet", "--sizes", "64", "--repeats", "3", "--warmup", "0",
               "--no-isolate", "--threads", "1", "--out", str(out)],
    )
    assert res.exit_code == 0, res.output
    assert "sanet" in res.output and "median" in res.output and "encode" in res.output
    assert len(read_records(out)) == 1
    untimed = CliRunner().invoke(
        main, ["profile", "--methods", "sanet", "--sizes", "64", "--repeats", "0", "--no-isolate",
               "--threads", "1", "--out", str(tmp_path / "u")],
    )
    assert untimed.exit_code == 0, untimed.output
    assert "untimed" in untimed.output and "GFLOP" in untimed.output and "median" not in untimed.output
    bad = CliRunner().invoke(main, ["profile", "--option", "iters=3", "--out", str(out)])
    assert bad.exit_code == 2 and "METHOD.KEY=VALUE" in bad.output


@cuda
def test_cuda_cell_times_with_events_and_reports_allocator_peak(tmp_path):
    [r] = profile(_cfg(device="cuda", isolate=None), tmp_path)
    assert r["status"] == "ok", r["error"]
    assert not r["isolated"] and r["peak_mem_convention"] == profiling.MEM_CUDA
    assert r["peak_mem_bytes"] > 0 and set(r["stages"]) == {"encode", "transform", "decode"}
    assert r["env"]["gpu"] and sum(r["stages"].values()) <= max(r["samples_s"]) * 1.05


@cuda
def test_cuda_real_oom_is_recorded(tmp_path):
    # the smallest multiple of 1024 px whose relu1_1 (64 float32 channels) alone exceeds the card's memory
    # (a size that merely fills it could fit and then run attention for minutes)
    total = torch.cuda.get_device_properties(0).total_memory
    big = 1024 * (int((total / (64 * 4)) ** 0.5) // 1024 + 1)
    recs = profile(_cfg(device="cuda", sizes=[64, big, big + 1024], repeats=1, count_flops=False), tmp_path)
    assert [r["status"] for r in recs] == ["ok", "oom", "skipped-after-oom"]


@cuda
@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_cuda_half_precision_channels_last(tmp_path, dtype):
    [r] = profile(_cfg(device="cuda", dtype=dtype, channels_last=True), tmp_path)
    assert r["status"] == "ok", r["error"]
    assert r["dtype"] == dtype and r["flags"]["channels_last"]


@cuda
def test_cuda_memory_only_cell_still_measures_peak(tmp_path):
    [r] = profile(_cfg(device="cuda", repeats=0, warmup=0), tmp_path)
    assert r["status"] == "ok" and r["peak_mem_bytes"] > 0 and r["flops"] > 0 and r["samples_s"] == []


@cuda
def test_cuda_compile_runs_without_stage_split(tmp_path):
    [r] = profile(_cfg(device="cuda", compile=True, repeats=3, warmup=1), tmp_path)
    assert r["status"] == "ok", r["error"]
    assert r["flags"]["compile"] and r["stages"] == {}


@pytest.fixture
def hog(monkeypatch):
    from sanet_bench import registry
    from sanet_bench.method import Method
    from sanet_bench.registry import MethodSpec, Option

    class Hog(Method):
        """Loading reads a 30 MiB blob and frees it, as reading a checkpoint does (glibc then serves blocks
        up to that size from its heap); a call holds ``mib`` MiB of 8 MiB feature maps at once."""

        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(1))
            torch.ones(30 * 2**18).sum()  # allocate, touch, free

        def load_official(self, paths):
            raise NotImplementedError

        def _stylize(self, content, style, alpha, mib=64):
            maps = [torch.ones(2 * 2**20) for _ in range(mib // 8)]  # 8 MiB each, every page touched
            return content * self.scale + 0 * sum(float(m[0]) for m in maps)

    spec = MethodSpec(name="hog", title="Hog", citation="none", reference="test", factory=Hog,
                      options=(Option("mib", 64, "MiB allocated per call"),), weights_kinds=("random",),
                      min_size=8)
    monkeypatch.setitem(registry._METHODS, "hog", spec)
    return spec


def _mem_cell(method: str, size: int, options: dict) -> dict:
    return {"method": method, "size": size, "device": "cpu", "dtype": "fp32", "channels_last": False,
            "winograd": None, "compile": False, "repeats": 0, "warmup": 0, "weights": "random",
            "weights_dir": None, "seed": 0, "threads": 1, "options": options, "count_flops": False,
            "measure_cpu_mem": True}


@pytest.mark.parametrize("mib", [64, 256])
def test_cpu_peak_memory_reads_what_the_call_allocates(hog, mib):
    # the priming call allocates and frees the same amount first: without returning freed heap to the kernel,
    # the measured call reuses those resident pages and reads ~0
    out = profiling.measure_cell(_mem_cell("hog", 16, {"mib": mib}))
    assert out["status"] == "ok", out["error"]
    assert out["peak_mem_convention"] == profiling.MEM_CPU_HWM
    assert abs(out["peak_mem_bytes"] - mib * 2**20) <= 0.1 * mib * 2**20, out["peak_mem_bytes"] / 2**20


def test_sanet_cpu_peak_memory_grows_with_pixels():
    small, big = (profiling.measure_cell(_mem_cell("sanet", s, {})) for s in (64, 128))
    assert small["status"] == big["status"] == "ok", (small["error"], big["error"])
    relu1_1 = {s: 64 * s * s * 4 for s in (64, 128)}  # one feature map of the content alone
    assert big["peak_mem_bytes"] > relu1_1[128]
    # a fixed part (thread buffers, kernels' scratch) does not scale, the feature maps do
    assert big["peak_mem_bytes"] - small["peak_mem_bytes"] > relu1_1[128] - relu1_1[64]


def test_environment_lists_each_version_once_and_cuda_only_when_used(monkeypatch):
    from sanet_bench.provenance import environment

    monkeypatch.setattr(torch.version, "cuda", "13.0")
    env = environment("cpu")
    assert env["cuda"] == "CUDA build 13.0, not used" and env["cudnn"] is None
    assert not set(env["versions"]) & {"torch", "torchvision", "sanet-bench"}
    assert env["torch"] == torch.__version__


def test_commit_named_by_the_environment_wins_over_git(monkeypatch):
    from sanet_bench import provenance

    monkeypatch.delenv("SANET_BENCH_COMMIT", raising=False)
    monkeypatch.setattr(provenance, "_git", lambda *args: None)  # a copied tree without .git
    assert provenance.git_commit() is None and provenance.git_dirty() is None
    # a tree copied over a stale .git (seen on a remote GPU machine): git names an old commit, dirty
    monkeypatch.setattr(provenance, "_git", lambda *args: "32da85b" if args[0] == "rev-parse" else " M x.py")
    assert provenance.git_commit() == "32da85b" and provenance.git_dirty() is True
    monkeypatch.setenv("SANET_BENCH_COMMIT", "0123abc")
    env = provenance.environment("cpu")
    assert env["commit"] == "0123abc" and env["dirty"] is None
