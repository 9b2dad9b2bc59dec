from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import PARITY, assert_losses_close, load_case
from PIL import Image

from sanet_bench import load_method
from sanet_bench.errors import ConfigError, WeightsError
from sanet_bench.nn.vgg import OFFLINE_VGG_ID
from sanet_bench.train import (
    LOSS_KEYS,
    LossLog,
    TrainConfig,
    Trainer,
    checkpoints,
    export_iteration,
    read_losses,
    train,
)


def _smooth_images(root: Path, n: int, seed: int) -> Path:
    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        lo = torch.rand(1, 3, 6, 7, generator=g)
        x = torch.nn.functional.interpolate(lo, size=(72, 88), mode="bilinear", align_corners=False)[0]
        sub = root / f"group{i % 2}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray((x.permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(sub / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_data")
    return _smooth_images(root / "content", 4, 1), _smooth_images(root / "style", 3, 2)


def _cfg(folders, out: Path, **kw) -> TrainConfig:
    c, s = folders
    base = dict(content_dir=str(c), style_dir=str(s), iters=6, batch=2, crop=64, load_size=72, vgg="offline",
                out=str(out), save_every=3, log_every=1, progress=False)
    return TrainConfig(**{**base, **kw})


def test_one_training_step_reproduces_parity_losses(parity_weights):
    case = load_case(PARITY / "sanet" / "case_3.pt")
    wdir = parity_weights("sanet")
    trainer = Trainer(TrainConfig(vgg=str(wdir / "vgg_normalised.pth"), init_dir=str(wdir)))
    before = {k: v.clone() for k, v in trainer.model.decoder.state_dict().items()}
    row = trainer.step(case["content"], case["style"])
    assert_losses_close(row, case)
    weighted = row["loss_c"] + 3 * row["loss_s"] + 50 * row["l_identity1"] + row["l_identity2"]
    assert math.isclose(row["total"], weighted, rel_tol=1e-5)
    # the step updated the trainable modules, and only them
    assert not torch.equal(before["1.weight"], trainer.model.decoder.state_dict()["1.weight"])
    assert all(not p.requires_grad and p.grad is None for p in trainer.model.encoder.parameters())
    assert trainer.encoder_info["kind"] == "file" and len(trainer.encoder_info["sha256"]) == 64


def test_lambdas_weight_the_total(parity_weights):
    case = load_case(PARITY / "sanet" / "case_3.pt")
    wdir = parity_weights("sanet")
    cfg = TrainConfig(vgg=str(wdir / "vgg_normalised.pth"), init_dir=str(wdir), lambda_id1=0.0, lambda_s=1.0)
    with torch.no_grad():
        losses = Trainer(cfg).losses(case["content"], case["style"])
    want = losses["loss_c"] + losses["loss_s"] + losses["l_identity2"]
    assert torch.allclose(losses["total"], want)


def test_lr_follows_inverse_time_decay():
    trainer = Trainer(TrainConfig(vgg="offline", lr=1e-4, lr_decay=5e-5))
    assert trainer.lr_at(0) == 1e-4
    assert math.isclose(trainer.lr_at(20000), 1e-4 / 2.0)
    trainer.iteration = 1000
    x = torch.rand(1, 3, 32, 32)
    row = trainer.step(x, x)
    assert math.isclose(row["lr"], 1e-4 / 1.05) and row["iteration"] == 1001
    assert all(math.isclose(g["lr"], 1e-4 / 1.05) for g in trainer.optimizer.param_groups)


class _Killed(Exception):
    pass


@pytest.mark.parametrize(
    "size",
    [
        dict(crop=32, batch=1, iters=4, save_every=2),  # the same protocol, small enough for every test run
        pytest.param(dict(crop=64, batch=2, iters=6, save_every=3), marks=pytest.mark.slow, id="64px"),
    ],
    ids=lambda d: f"{d['crop']}px" if isinstance(d, dict) else None,
)
def test_killed_run_resumes_to_the_same_losses(folders, tmp_path, size):
    n, every = size["iters"], size["save_every"]
    full = train(_cfg(folders, tmp_path / "full", **size))
    assert full.iteration == n and full.resumed_from == 0 and full.encoder["id"] == OFFLINE_VGG_ID
    assert checkpoints(tmp_path / "full") == [every, n]

    def kill_before_last(trainer, row):
        if trainer.iteration == n - 1:
            raise _Killed

    with pytest.raises(_Killed):
        train(_cfg(folders, tmp_path / "cut", **size), on_step=kill_before_last)
    assert checkpoints(tmp_path / "cut") == [every]
    assert [r["iteration"] for r in read_losses(tmp_path / "cut" / "losses.csv")] == list(range(1, n))
    resumed = train(_cfg(folders, tmp_path / "cut", **size))
    assert resumed.resumed_from == every and resumed.iteration == n

    a = read_losses(tmp_path / "full" / "losses.csv")
    b = read_losses(tmp_path / "cut" / "losses.csv")
    assert [r["iteration"] for r in b] == list(range(1, n + 1))
    keys = (*LOSS_KEYS, "lr", "total")
    assert [[r[k] for k in keys] for r in a] == [[r[k] for k in keys] for r in b]
    assert a[0]["total"] != a[-1]["total"]  # it trained
    for name in (f"decoder_iter_{n}.pth", f"transformer_iter_{n}.pth"):
        sa = torch.load(tmp_path / "full" / name, weights_only=True)
        sb = torch.load(tmp_path / "cut" / name, weights_only=True)
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_checkpoints_load_as_official_sanet(folders, tmp_path):
    out = tmp_path / "run"
    train(_cfg(folders, out, iters=2, save_every=1, crop=32, batch=1))
    dec = torch.load(out / "decoder_iter_2.pth", weights_only=True)
    assert sorted(dec, key=lambda k: int(k.split(".")[0])) == [
        f"{i}.{w}" for i in (1, 5, 8, 11, 14, 18, 21, 25, 28) for w in ("weight", "bias")
    ]
    meta = json.loads((out / "train_meta.json").read_text())
    assert meta["encoder"] == {"kind": "offline", "id": OFFLINE_VGG_ID} and meta["checkpoints"] == [1, 2]

    latest = load_method("sanet", weights="official", weights_dir=out)  # picks iteration 2
    assert torch.equal(latest.decoder.state_dict()["1.weight"], dec["1.weight"])
    first = load_method("sanet", weights="official", weights_dir=export_iteration(out, 1, tmp_path / "it1"))
    dec1 = torch.load(out / "decoder_iter_1.pth", weights_only=True)
    assert torch.equal(first.decoder.state_dict()["1.weight"], dec1["1.weight"])
    assert not torch.equal(dec1["1.weight"], dec["1.weight"])
    # the encoder in the folder is the one trained against
    trainer = Trainer(TrainConfig(vgg="offline"))
    assert torch.equal(latest.encoder.vgg[2].weight, trainer.model.encoder.vgg[2].weight)
    with pytest.raises(WeightsError, match="no complete checkpoint 7"):
        export_iteration(out, 7, tmp_path / "it7")


def test_resume_refuses_a_different_config(folders, tmp_path):
    out = tmp_path / "run"
    train(_cfg(folders, out, iters=1, save_every=1, crop=32, batch=1))
    with pytest.raises(ConfigError, match="lambda_id1=50.0, this one has lambda_id1=0.0"):
        train(_cfg(folders, out, iters=2, save_every=1, crop=32, batch=1, lambda_id1=0.0))
    with pytest.raises(ConfigError, match="set content_dir and style_dir"):
        train(TrainConfig(out=str(tmp_path / "x")))


def test_loss_log_truncation_drops_later_and_partial_rows(tmp_path):
    log = LossLog(tmp_path / "losses.csv")
    for i in (1, 2, 3):
        row = {"iteration": i, "lr": 1e-4, "loss_c": i, "loss_s": 0.5, "l_identity1": 0.25, "l_identity2": 1}
        log.append({**row, "total": 2.0, "seconds": 0.1})
    with open(tmp_path / "losses.csv", "a") as f:
        f.write("4,0.0001,1.0")  # killed mid-write
    assert [r["iteration"] for r in read_losses(tmp_path / "losses.csv")] == [1, 2, 3]
    log.truncate_after(2)
    assert (tmp_path / "losses.csv").read_text().count("\n") == 3
    assert read_losses(tmp_path / "losses.csv")[-1] == {
        "iteration": 2, "lr": 1e-4, "loss_c": 2.0, "loss_s": 0.5, "l_identity1": 0.25, "l_identity2": 1.0,
        "total": 2.0, "seconds": 0.1,
    }


def test_cli_train_trains_then_resumes(folders, tmp_path):
    from click.testing import CliRunner

    from cli import main

    c, s = folders
    args = ["train", "--content-dir", str(c), "--style-dir", str(s), "--iters", "1", "--batch", "1",
            "--crop", "32", "--load-size", "40", "--vgg", "offline", "--out", str(tmp_path / "o"),
            "--no-progress"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "iteration 1 (resumed from 0)" in r.output and "offline-random-vgg19" in r.output
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0 and "iteration 1 (resumed from 1)" in r.output
    r = CliRunner().invoke(main, [*args[:1], "--content-dir", str(tmp_path / "missing"), *args[3:]])
    assert r.exit_code == 2 and "missing: not a folder" in r.output and r.output.strip().count("\n") == 0


def test_training_output_is_labelled_trained_not_official(tmp_path):
    """A train folder loads through weights='official' (official layout) but never claims to be official."""
    import json

    import torch

    from sanet_bench import load_method
    from sanet_bench.nn.vgg import OFFLINE_VGG_ID, offline_vgg_normalised
    from sanet_bench.weights import META_FILE

    model = load_method("sanet", weights="random", seed=1)
    torch.save(offline_vgg_normalised().state_dict(), tmp_path / "vgg_normalised.pth")
    torch.save(model.decoder.state_dict(), tmp_path / "decoder_iter_4.pth")
    torch.save(model.transform.state_dict(), tmp_path / "transformer_iter_4.pth")
    loaded = load_method("sanet", weights="official", weights_dir=tmp_path)
    assert loaded.weights_info["source"] == "official"  # no train_meta.json: a plain folder of files
    (tmp_path / META_FILE).write_text(json.dumps({"encoder": {"kind": "offline", "id": OFFLINE_VGG_ID}}))
    info = load_method("sanet", weights="official", weights_dir=tmp_path).weights_info
    assert info["source"] == "trained" and info["encoder"] == OFFLINE_VGG_ID
    assert set(info["files"]) == {"vgg_normalised.pth", "decoder_iter_4.pth", "transformer_iter_4.pth"}
