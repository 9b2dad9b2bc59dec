"""The metrics' weight files in their official layouts (random values), for calibration and end-to-end."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from parity_weights import write_official

CAL = Path(__file__).parent.parent / "fixtures" / "metric_calibration"
ALEXNET = "alexnet-owt-7be5be79.pth"


@pytest.fixture(scope="session")
def metric_weight_files(tmp_path_factory) -> Path:
    """ROOT with the calibration recipe's random files under their official names: the metrics' in ``ROOT/w``,
    AlexNet (LPIPS) in torch hub's cache ``ROOT/torch/hub/checkpoints``. BatchNorm ``num_batches_tracked``
    counters are saved as int64, as torch saves them (the recipe draws every tensor as float)."""
    root = tmp_path_factory.mktemp("metric_weights")
    for path in write_official(CAL, root / "w"):
        state = torch.load(path, weights_only=True)
        counters = {k: v.long() for k, v in state.items() if k.endswith("num_batches_tracked")}
        if counters:
            torch.save({**state, **counters}, path)
    hub = root / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (root / "w" / ALEXNET).rename(hub / ALEXNET)
    return root


@pytest.fixture
def metric_weights(metric_weight_files, monkeypatch) -> Path:
    """:func:`metric_weight_files` in use: ``TORCH_HOME`` points at its hub cache, and the sha256-prefix check
    of hub-named files is off (a random file cannot carry the published prefix;
    ``test_random_file_is_not_the_published_one`` checks the refusal). Pass ``ROOT/w`` as the weights dir."""
    from sanet_bench.metrics import networks

    monkeypatch.setenv("TORCH_HOME", str(metric_weight_files / "torch"))
    monkeypatch.setattr(networks, "hub_prefix", lambda f: "")
    return metric_weight_files
