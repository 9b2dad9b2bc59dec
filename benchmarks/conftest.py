"""pytest-benchmark suite: each registered method's ``stylize`` at several sizes.

Not part of the default test run (``testpaths`` is ``tests/``), and pyproject's ``addopts`` has
``--benchmark-disable`` (each benchmark then runs once, untimed, as a smoke test), so enable timing::

    pytest benchmarks --benchmark-enable                                   # every method, 256 and 512 px, CPU
    pytest benchmarks --benchmark-enable --bench-device cuda --bench-sizes 512,1024 --bench-methods sanet
    pytest benchmarks --benchmark-enable --benchmark-autosave              # save to .benchmarks/
    pytest benchmarks --benchmark-enable --benchmark-compare --benchmark-compare-fail=median:5%

Machine info (GPU name, driver, CUDA, cuDNN, torch, CPU model, threads, commit) is added to every saved
run through ``pytest_benchmark_update_machine_info``. For latency/memory records with per-stage times,
FLOPs, peak memory and a statistical comparison use ``sanet-bench profile`` / ``sanet-bench compare``.
"""

from __future__ import annotations

import pytest
import torch

from sanet_bench import list_methods


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def pytest_addoption(parser):
    group = parser.getgroup("sanet-bench", "sanet-bench benchmark suite")
    group.addoption("--bench-methods", default="", help="Comma-separated methods (default: all registered).")
    group.addoption("--bench-sizes", default="256,512", help="Content = style sizes in px (default 256,512).")
    group.addoption("--bench-device", default="cpu", help="cpu | cuda | cuda:N (default cpu).")
    group.addoption("--bench-rounds", type=int, default=5, help="Timed rounds per benchmark (default 5).")
    group.addoption("--gatys-iters", type=int, default=10, help="Gatys L-BFGS budget (default 10).")


def pytest_benchmark_update_machine_info(config, machine_info):
    from sanet_bench.provenance import environment

    machine_info["sanet_bench"] = environment(config.getoption("--bench-device"))


def pytest_generate_tests(metafunc):
    if "method" in metafunc.fixturenames:
        methods = _csv(metafunc.config.getoption("--bench-methods")) or list_methods()
        metafunc.parametrize("method", methods)
    if "size" in metafunc.fixturenames:
        metafunc.parametrize("size", [int(s) for s in _csv(metafunc.config.getoption("--bench-sizes"))])


@pytest.fixture(scope="session")
def device(pytestconfig) -> torch.device:
    dev = torch.device(pytestconfig.getoption("--bench-device"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        pytest.skip("--bench-device cuda but CUDA is not available here")
    return dev
