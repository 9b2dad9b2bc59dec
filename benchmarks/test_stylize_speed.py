"""``stylize`` wall time per method and size (see conftest.py for how to run and compare)."""

from __future__ import annotations

import functools

import pytest
import torch

from sanet_bench import load_method
from sanet_bench.errors import SanetBenchError
from sanet_bench.registry import get_method_spec


@functools.cache
def _model(method: str, device: str):
    spec = get_method_spec(method)
    weights = spec.weights_kind("random")  # magenta: its shipped official weights
    try:
        return load_method(method, weights=weights, device=device)
    except SanetBenchError as e:
        pytest.skip(str(e))


def test_stylize(benchmark, pytestconfig, method, size, device):
    model = _model(method, str(device))
    spec = model.spec
    has_iters = "iters" in {o.name for o in spec.options}
    options = {"iters": pytestconfig.getoption("--gatys-iters")} if has_iters else {}
    g = torch.Generator().manual_seed(0)
    content, style = (torch.rand(1, 3, size, size, generator=g).to(device) for _ in range(2))

    def run():
        out = model.stylize(content, style, **options)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # time finished work
        return out

    benchmark.extra_info.update(
        method=method, size=size, device=str(device), weights=model.weights_info.get("source"),
        options=options,
    )
    rounds = pytestconfig.getoption("--bench-rounds")
    out = benchmark.pedantic(run, rounds=rounds, warmup_rounds=1, iterations=1)
    assert out.shape == content.shape and torch.isfinite(out).all()
