"""The Ray backend on a local cluster (``ray.init(num_cpus=2)``, one per test session).

A grid run on Ray gives the rows and PNGs of a local run (bit-identical on CPU with the same torch thread
count), an actor that dies is replaced and its cell retried (recorded) or turned into a failure row, and a
killed driver resumes without duplicated rows.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sanet_bench import results, runner
from sanet_bench.backends import WorkerLost, get_backend
from sanet_bench.config import RunConfig

ray = pytest.importorskip("ray")
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this file

ROOT = Path(__file__).resolve().parents[2]
TIMING = ("seconds", "seconds_total", "finished")


@pytest.fixture(scope="session")
def cluster():
    """The address of one local Ray cluster shared by the session's tests."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _cfg(out: Path, **kw) -> RunConfig:
    base = dict(methods=["adain", "sanet"], sizes=[64], max_pairs=2, metrics=["ssim"], weights="random",
                references=False, profile=False, report=False, out=str(out))
    return RunConfig(**{**base, **kw})


def _rows(run_dir: Path) -> dict[str, dict]:
    return {r["key"]: {k: v for k, v in r.items() if k not in TIMING} for r in results.read_rows(run_dir)}


def test_ray_run_gives_the_rows_and_images_of_a_local_run(cluster, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a Ray worker asks for 1 CPU and runs 1 torch thread
    try:
        runner.run(_cfg(tmp_path / "local"), progress=False)
    finally:
        torch.set_num_threads(threads)
    summary = runner.run(_cfg(tmp_path / "ray", backend="ray", workers=2), progress=False)
    local, remote = _rows(tmp_path / "local"), _rows(tmp_path / "ray")
    assert summary.ok == summary.cells == len(local) == 4
    assert remote == local  # every field but the timings, metric values included
    for row in local.values():
        png = row["output"]
        assert (tmp_path / "ray" / png).read_bytes() == (tmp_path / "local" / png).read_bytes()
    session = results.read_manifest(tmp_path / "ray")["sessions"][-1]
    assert session["backend"] == "ray" and session["retried"] == {}
    # the same config on the same folder: every cell is done, nothing is scheduled again
    again = runner.run(_cfg(tmp_path / "ray", backend="ray", workers=2), progress=False)
    assert (again.skipped, again.ok, len(results.read_rows(tmp_path / "ray"))) == (4, 0, 4)


class _DiesOnce:
    """A worker whose process exits the first time it sees ``"boom"`` (a marker file remembers), or every
    time with ``always``."""

    def __init__(self, marker: str, always: bool = False):
        self.marker, self.always = Path(marker), always

    def __call__(self, item: str) -> str:
        if item == "boom" and (self.always or not self.marker.exists()):
            self.marker.touch()
            os._exit(1)  # the actor's process dies mid-item, as under SIGKILL
        return item.upper()


def test_a_dead_worker_is_replaced_and_its_item_retried_or_lost(cluster, tmp_path):
    from functools import partial

    with get_backend("ray", cluster, workers=2) as backend:
        got = dict(backend.map(partial(_DiesOnce, str(tmp_path / "m1")), ["a", "boom", "b", "c"]))
    assert got == {"a": "A", "boom": "BOOM", "b": "B", "c": "C"}
    # only the item that killed the actor is charged a retry; items queued behind it are simply rescheduled
    assert list(backend.retries) == ["boom"] and "died" in backend.retries["boom"]

    with get_backend("ray", cluster, workers=1, max_retries=1) as backend:
        got = dict(backend.map(partial(_DiesOnce, str(tmp_path / "m2"), always=True), ["boom", "d"]))
    assert isinstance(got["boom"], WorkerLost) and "2 attempts" in str(got["boom"])
    assert got["d"] == "D"  # the replacement actor goes on with the rest


@pytest.mark.slow
def test_a_killed_driver_resumes_without_duplicated_rows(cluster, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "cli.py"), "run", "--methods", "adain,wct,sanet", "--sizes", "64,96",
           "--max-pairs", "2", "--metrics", "ssim", "--weights", "random", "--no-references", "--no-profile",
           "--no-report", "--out", str(out), "--backend", "ray", "--address", cluster, "--workers", "1"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while not (out / results.RESULTS).is_file() or not results.read_rows(out):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = len(results.read_rows(out))
    cfg = _cfg(out, methods=["adain", "wct", "sanet"], sizes=[64, 96], backend="ray", address=cluster,
               workers=1)
    summary = runner.run(cfg, progress=False)
    keys = [r["key"] for r in results.read_rows(out)]
    assert 0 < before < summary.cells == 12
    assert summary.skipped == before and summary.ok == 12 - before
    assert sorted(keys) == sorted(set(keys)) and len(keys) == 12  # every cell once


def test_profile_on_ray_tags_records_with_the_node_device(cluster, tmp_path):
    from sanet_bench.config import ProfileConfig
    from sanet_bench.profiling import device_identity, environment, load_records, profile

    cfg = ProfileConfig(methods=["adain"], sizes=[96, 64], repeats=1, count_flops=False, backend="ray",
                        address=cluster)
    recs = profile(cfg, tmp_path / "p")
    here = device_identity(environment("cpu"))  # the local cluster's one node is this machine
    got = [(r["size"], r["status"], device_identity(r["env"])) for r in recs]
    assert got == [(64, "ok", here), (96, "ok", here)]  # sizes in ascending order
    assert all(r["peak_mem_bytes"] is not None and r["isolated"] for r in recs)  # a fresh process per task
    assert list(load_records(tmp_path / "p")["device_id"]) == [here, here]
