from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sanet_bench.nn.precision import tf32

FIXTURES = Path(__file__).parent / "fixtures"
PARITY = FIXTURES / "parity"
METRIC_CALIBRATION = FIXTURES / "metric_calibration"
LPIPS_ALEXNET = "alexnet-owt-7be5be79.pth"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Never read or write the user's cache; never touch the network by accident."""
    monkeypatch.setenv("SANET_BENCH_HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.setenv("SANET_BENCH_OFFLINE", "1")
    torch.manual_seed(0)


def parity_cases(method: str) -> list[Path]:
    return sorted((PARITY / method).glob("case_*.pt"))


def load_case(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def no_tf32():
    """TF32 off for CUDA parity checks: its ~1e-3 error exceeds most fixture tolerances."""
    return tf32(False)


def assert_losses_close(losses, case: dict) -> None:
    """Every expected loss of a parity ``case`` within ``tol_loss_rel`` (``losses``: tensors or floats)."""
    for k, want in case["expected_losses"].items():
        got = float(losses[k])
        assert abs(got - want) <= case["tol_loss_rel"] * abs(want), (k, got, want)


def assert_close_rel_max(out: torch.Tensor, expected: torch.Tensor, tol: float) -> None:
    assert out.shape == expected.shape, (out.shape, expected.shape)
    err = (out - expected).abs().max().item()
    scale = expected.abs().max().item()
    assert err <= tol * scale, f"max|out-expected|={err:.3g} > {tol} * {scale:.3g} (rel {err / scale:.3g})"


@pytest.fixture(scope="session")
def parity_weights(tmp_path_factory):
    """Official-named files rebuilt from a parity layout: ``parity_weights(folder, layout) -> dir``."""
    from parity_weights import write_official

    made: dict[tuple[str, str], Path] = {}

    def get(folder: str, layout: str = "layout.json") -> Path:
        if (folder, layout) not in made:
            made[folder, layout] = tmp_path_factory.mktemp(f"parity_{folder}")
            write_official(PARITY / folder, made[folder, layout], layout)
        return made[folder, layout]

    return get


@pytest.fixture
def srv(monkeypatch):
    """A real HTTP server on 127.0.0.1 (tests/http_server.py), with the network allowed and fast retries."""
    from http_server import LocalServer

    from sanet_bench import download

    monkeypatch.delenv("SANET_BENCH_OFFLINE", raising=False)
    monkeypatch.delenv("SANET_BENCH_MIRROR", raising=False)
    monkeypatch.setattr(download, "BACKOFF_BASE", 0.01)
    with LocalServer() as s:
        yield s


# --------------------------------------------------------------------- the metrics' weight files (random)
@pytest.fixture(scope="session")
def metric_weight_files(tmp_path_factory) -> Path:
    """ROOT with the calibration recipe's random files under their official names: the metrics' in ``ROOT/w``,
    AlexNet (LPIPS) in torch hub's cache ``ROOT/torch/hub/checkpoints``. BatchNorm ``num_batches_tracked``
    counters are saved as int64, as torch saves them (the recipe draws every tensor as float)."""
    from parity_weights import write_official

    root = tmp_path_factory.mktemp("metric_weights")
    for path in write_official(METRIC_CALIBRATION, root / "w"):
        state = torch.load(path, weights_only=True)
        counters = {k: v.long() for k, v in state.items() if k.endswith("num_batches_tracked")}
        if counters:
            torch.save({**state, **counters}, path)
    hub = root / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (root / "w" / LPIPS_ALEXNET).rename(hub / LPIPS_ALEXNET)
    return root


@pytest.fixture
def metric_weights(metric_weight_files, monkeypatch) -> Path:
    """:func:`metric_weight_files` in use: ``TORCH_HOME`` points at its hub cache, and the sha256-prefix check
    of hub-named files is off (a random file cannot carry the published prefix;
    ``test_random_file_is_not_the_published_one`` checks the refusal). Pass ``ROOT/w`` as the weights dir."""
    from sanet_bench import weights

    monkeypatch.setenv("TORCH_HOME", str(metric_weight_files / "torch"))
    monkeypatch.setattr(weights, "hub_prefix", lambda name: "")
    return metric_weight_files
