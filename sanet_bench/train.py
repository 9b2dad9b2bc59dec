"""SANet training with the paper's objective (Park & Lee 2019, Eq. 4-8), resumable and reproducible.

Matches GlebSBrykin/SANET Train.ipynb: ``L = l_c L_c + l_s L_s + l_id1 L_id1 + l_id2 L_id2``
(:func:`sanet_bench.sanet.sanet_losses`, :func:`~sanet_bench.sanet.weighted_total`; lambdas 1, 3, 50, 1);
the VGG encoder is frozen; Adam over the decoder and the transformer (two parameter groups, in that order)
with ``lr = lr0 / (1 + lr_decay * i)`` set before step ``i`` (``adjust_learning_rate``; 1e-4, 5e-5). Data:
:mod:`sanet_bench.data` (shorter side 512, random 256 crop; batch 5 as the reference).

Output folder ``out``:

* ``decoder_iter_N.pth``, ``transformer_iter_N.pth``: plain state dicts with the official keys, N = completed
  iterations, written atomically every ``save_every`` iterations and at the end;
* ``vgg_normalised.pth``: the encoder the decoder was trained against (a link or copy of the file used, or the
  offline encoder's weights), so ``load_method("sanet", weights="official", weights_dir=out)`` loads the
  latest iteration as a working model. It is the official VGG only if ``train_meta.json`` says so;
* ``train_state_iter_N.pt``: optimizer state and RNG state (tensors and plain containers, read with
  ``weights_only=True``); written last, so its presence marks checkpoint N complete;
* ``train_meta.json``: config, encoder identity (official file sha256, or :data:`OFFLINE_VGG_ID`),
  checkpoints, skipped unreadable files;
* ``losses.csv``: one row per logged iteration, the unweighted losses before that iteration's update.

Resume: a run started on a folder with checkpoints continues from the latest complete one (weights,
optimizer, RNG, loss log truncated to it). Batches are a pure function of ``(seed, iteration)``, so on CPU a
resumed run ends with exactly the losses of an uninterrupted one; on CUDA, nondeterministic kernels (e.g.
upsampling backward) can make runs differ in the last bits.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from . import __version__
from .api import resolve_device
from .config import config_hash, to_dict
from .data import CropSource, PairBatches
from .errors import ConfigError, WeightsError
from .io import atomic_write_bytes
from .method import build
from .nn.vgg import OFFLINE_VGG_ID, VGG_NORMALISED, offline_vgg_normalised, vgg_normalised
from .registry import get_method_spec
from .sanet import SANet, sanet_losses, weighted_total
from .weights import (
    META_FILE,
    cache_path,
    find_file,
    latest_iteration,
    load_file_into,
    load_strict,
    read_state_dict,
    sha256_file,
)

LOSS_KEYS = ("loss_c", "loss_s", "l_identity1", "l_identity2")
LOG_COLUMNS = ("iteration", "lr", *LOSS_KEYS, "total", "seconds")
# Settings that may change between a run and its resumption (they do not change what is computed).
RESUMABLE_KEYS = ("iters", "out", "device", "num_workers", "save_every", "log_every", "progress")
VGG_FILE = "vgg_normalised.pth"
DECODER_FILE, TRANSFORMER_FILE = "decoder_iter_500000.pth", "transformer_iter_500000.pth"  # official names
LOG_FILE = "losses.csv"


@dataclass
class TrainConfig:
    """``sanet-bench train`` settings (TOML table ``[train]``); defaults follow the paper and Train.ipynb."""

    content_dir: str = ""  # e.g. MS-COCO train2014 (searched recursively)
    style_dir: str = ""  # e.g. WikiArt (searched recursively)
    iters: int = 500000  # the released checkpoints' iteration count
    batch: int = 5
    crop: int = 256
    load_size: int = 512
    resize: str = "shorter"  # shorter (paper) | exact (the reference's Resize((512, 512)))
    lr: float = 1e-4
    lr_decay: float = 5e-5
    transform_lr: float = 1.0  # the transform's rate as a fraction of lr (1: the paper; the demo used 0.1)
    lambda_c: float = 1.0
    lambda_s: float = 3.0
    lambda_id1: float = 50.0
    lambda_id2: float = 1.0
    seed: int = 0  # initial decoder/transformer weights and the data order
    vgg: str = "auto"  # auto (cached official file, else offline) | offline | official | PATH
    # start from: a folder's decoder_iter_N/transformer_iter_N (latest N, or the official names), or "demo":
    # the shipped demo SANet (trained against the offline encoder, so it needs vgg = "offline")
    init_dir: str | None = None
    out: str = "runs/train"
    save_every: int = 10000
    log_every: int = 100
    device: str = "cpu"
    num_workers: int = 0  # DataLoader workers decoding images
    progress: bool = True

    @property
    def lambdas(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in ("lambda_c", "lambda_s", "lambda_id1", "lambda_id2")}

    def validate(self) -> None:
        for key in ("iters", "batch", "save_every", "log_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"train: {key}={getattr(self, key)} must be >= 1")
        if self.lr <= 0 or self.lr_decay < 0 or self.transform_lr < 0 or min(self.lambdas.values()) < 0:
            raise ConfigError("train: lr must be > 0, lr_decay, transform_lr and every lambda >= 0")
        if not self.content_dir or not self.style_dir:
            raise ConfigError("train: set content_dir and style_dir (--content-dir DIR --style-dir DIR)")


# ------------------------------------------------------------------------------------------------ encoder
def resolve_encoder(vgg: str) -> tuple[nn.Sequential, dict[str, Any]]:
    """The encoder weights named by ``vgg`` and how to identify them (recorded in ``train_meta.json``)."""
    net = vgg_normalised()
    cached = find_file(VGG_NORMALISED) or cache_path("sanet", VGG_NORMALISED)
    if vgg == "offline" or (vgg == "auto" and not cached.is_file()):
        return offline_vgg_normalised(), {"kind": "offline", "id": OFFLINE_VGG_ID}
    if vgg in ("auto", "official"):
        if not cached.is_file():
            raise WeightsError(
                f"{cached}: no cached {VGG_FILE}; run `sanet-bench weights pull sanet`, pass --vgg PATH, "
                "or --vgg offline"
            )
        path, kind = cached, "official"
    else:
        path, kind = Path(vgg).expanduser(), "file"
    expected = "the 53-module normalised VGG19 (vgg_normalised.pth)"
    load_strict(net, read_state_dict(path, expected), path, expected)
    return net, {"kind": kind, "path": str(path), "sha256": sha256_file(path)}


# ------------------------------------------------------------------------------------------------ trainer
class Trainer:
    """SANet's trainable modules, the frozen encoder and the optimizer; :meth:`step` is one update."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        spec = get_method_spec("sanet")
        model = build(spec, cfg.seed)  # the decoder/transformer init of load_method(..., "random", seed)
        assert isinstance(model, SANet)
        vgg, self.encoder_info = resolve_encoder(cfg.vgg)
        model.encoder.vgg.load_state_dict(vgg.state_dict())
        self.init_info: dict[str, Any] = {"kind": "random", "seed": cfg.seed}
        if cfg.init_dir == "demo":
            self.init_info = _load_demo(model, self.encoder_info)
        elif cfg.init_dir:
            paths = _iteration_files(Path(cfg.init_dir))
            if paths is None:
                raise WeightsError(
                    f"{cfg.init_dir}: no decoder_iter_N.pth + transformer_iter_N.pth pair to start from; "
                    "point init_dir at a training output or the official files"
                )
            _load_pair(model, paths[DECODER_FILE], paths[TRANSFORMER_FILE])
            self.init_info = {"kind": "dir", "files": {p.name: sha256_file(p) for p in paths.values()}}
        self.model = model.to(self.device).train()
        self.model.encoder.eval()
        groups = [{"params": self.model.decoder.parameters()}, {"params": self.model.transform.parameters()}]
        self.optimizer = torch.optim.Adam(groups, lr=cfg.lr)
        self.iteration = 0  # completed updates

    def lr_at(self, iteration: int) -> float:
        return self.cfg.lr / (1.0 + self.cfg.lr_decay * iteration)

    def losses(self, content: Tensor, style: Tensor) -> dict[str, Tensor]:
        """The unweighted losses and their weighted ``total`` for one batch (graph kept for backward)."""
        m = self.model
        losses = sanet_losses(m.encoder, m.transform, m.decoder, content, style)
        return {**losses, "total": weighted_total(losses, self.cfg.lambdas)}

    def step(self, content: Tensor, style: Tensor) -> dict[str, float]:
        """One Adam update; returns ``{iteration, lr, loss_*, total}`` with the losses before the update."""
        lr = self.lr_at(self.iteration)
        decoder, transform = self.optimizer.param_groups
        decoder["lr"], transform["lr"] = lr, lr * self.cfg.transform_lr
        losses = self.losses(content.to(self.device), style.to(self.device))
        self.optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        self.optimizer.step()
        self.iteration += 1
        return {"iteration": self.iteration, "lr": lr, **{k: v.item() for k, v in losses.items()}}

    # -- checkpoints ----------------------------------------------------------------------------------
    def save(self, out: Path) -> None:
        n = self.iteration
        _save_atomic(_cpu_state(self.model.decoder), out / f"decoder_iter_{n}.pth")
        _save_atomic(_cpu_state(self.model.transform), out / f"transformer_iter_{n}.pth")
        rng: dict[str, Any] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        state = {"iteration": n, "optimizer": self.optimizer.state_dict(), "rng": rng}
        _save_atomic(state, out / f"train_state_iter_{n}.pt")  # last: marks checkpoint n complete

    def restore(self, out: Path, n: int) -> None:
        _load_pair(self.model, out / f"decoder_iter_{n}.pth", out / f"transformer_iter_{n}.pth")
        path = out / f"train_state_iter_{n}.pt"
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["rng"]["torch"])
            if "cuda" in state["rng"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        except Exception as e:  # truncated file, other optimizer layout
            raise WeightsError(
                f"{path}: unreadable training state ({type(e).__name__}: {str(e)[:80]}); delete it to resume "
                "from an earlier checkpoint"
            ) from None
        self.iteration = n


def _load_pair(model: SANet, decoder_path: Path, transformer_path: Path) -> None:
    load_file_into(model.decoder, decoder_path, model.spec, DECODER_FILE)
    load_file_into(model.transform, transformer_path, model.spec, TRANSFORMER_FILE)


def _load_demo(model: SANet, encoder_info: dict[str, Any]) -> dict[str, Any]:
    """Copy the demo SANet's decoder and transform into ``model``; returns its identity for the meta."""
    from .api import load_method

    if encoder_info.get("id") != OFFLINE_VGG_ID:
        raise ConfigError(
            f"train: init_dir=demo was trained against the offline encoder, not {encoder_info.get('path')}; "
            'set vgg = "offline" (--vgg offline) or start from a folder of checkpoints'
        )
    demo = load_method("sanet", weights="demo")
    model.decoder.load_state_dict(demo.decoder.state_dict())
    model.transform.load_state_dict(demo.transform.state_dict())
    info = demo.weights_info
    return {"kind": "demo", **{k: info.get(k) for k in ("files", "recipe", "note")}}


def _cpu_state(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def _save_atomic(obj: Any, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def _iteration_files(folder: Path) -> dict[str, Path] | None:
    """``{official name: path}`` of the official or the latest complete ``*_iter_N`` pair in ``folder``."""
    names = [DECODER_FILE, TRANSFORMER_FILE]
    if all((folder / n).is_file() for n in names):
        return {n: folder / n for n in names}
    return latest_iteration(folder, names) or None


def checkpoints(out: str | os.PathLike) -> list[int]:
    """Complete checkpoint iterations in ``out`` (decoder, transformer and training state all present)."""
    out = Path(out)
    found = []
    for p in out.glob("train_state_iter_*.pt"):
        n = p.stem.rsplit("_", 1)[-1]
        if n.isdigit() and all((out / f"{k}_iter_{n}.pth").is_file() for k in ("decoder", "transformer")):
            found.append(int(n))
    return sorted(found)


def export_iteration(out: str | os.PathLike, iteration: int, dest: str | os.PathLike) -> Path:
    """A folder that ``load_method("sanet", weights="official", weights_dir=...)`` loads at ``iteration``.

    (``weights_dir=out`` itself loads the latest iteration.) Files are hard links where possible.
    """
    out, dest = Path(out), Path(dest)
    if iteration not in (have := checkpoints(out)):
        raise WeightsError(f"{out}: no complete checkpoint {iteration}; available: {have or 'none'}")
    dest.mkdir(parents=True, exist_ok=True)
    for name in (f"decoder_iter_{iteration}.pth", f"transformer_iter_{iteration}.pth", VGG_FILE):
        _link_or_copy(out / name, dest / name)
    return dest


def _link_or_copy(src: Path, dst: Path) -> None:
    if dst.exists() and dst.samefile(src):
        return
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:  # other file system, or links not supported
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


# ------------------------------------------------------------------------------------------------ loss log
class LossLog:
    """``losses.csv``: each row is one ``write`` of a whole line to an O_APPEND file, then fsync."""

    def __init__(self, path: Path):
        self.path = path

    def append(self, row: dict[str, float]) -> None:
        line = ",".join(repr(int(row[k])) if k == "iteration" else repr(float(row[k])) for k in LOG_COLUMNS)
        new = not self.path.exists() or self.path.stat().st_size == 0
        data = (",".join(LOG_COLUMNS) + "\n" if new else "") + line + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def truncate_after(self, iteration: int) -> None:
        """Keep the header and complete rows up to ``iteration`` (a resumed run recomputes the rest)."""
        if not self.path.exists():
            return
        rows = read_losses(self.path)
        keep = [r for r in rows if r["iteration"] <= iteration]
        if len(keep) != len(rows) or not self.path.read_bytes().endswith(b"\n"):
            buf = io.StringIO()
            w = csv.DictWriter(buf, LOG_COLUMNS, lineterminator="\n")
            w.writeheader()
            for r in keep:
                w.writerow({k: repr(int(r[k])) if k == "iteration" else repr(r[k]) for k in LOG_COLUMNS})
            atomic_write_bytes(self.path, buf.getvalue().encode())


def read_losses(path: str | os.PathLike) -> list[dict[str, float]]:
    """Rows of a ``losses.csv`` (an incomplete last line, from a kill mid-write, is ignored)."""
    text = Path(path).read_text()
    lines = text.splitlines(keepends=True)
    rows = []
    for r in csv.DictReader(line for line in lines if line.endswith("\n")):
        if None in r.values() or None in r:
            continue
        rows.append({k: (int(v) if k == "iteration" else float(v)) for k, v in r.items()})
    return rows


# ------------------------------------------------------------------------------------------------ driver
@dataclass
class TrainResult:
    out: Path
    iteration: int
    resumed_from: int
    last: dict[str, float]  # the last step's row (empty when nothing was left to do)
    seconds_per_step: float
    skipped_files: int
    encoder: dict[str, Any]


def _read_meta(out: Path) -> dict[str, Any] | None:
    path = out / META_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e}); delete it or train into a new --out") from None


def _check_resumable(cfg: TrainConfig, meta: dict[str, Any] | None, out: Path) -> None:
    if meta is None:
        raise ConfigError(f"{out}: has checkpoints but no {META_FILE}; train into a new --out")
    old, new = meta.get("config", {}), to_dict(cfg)
    diff = [k for k in new if k not in RESUMABLE_KEYS and old.get(k) != new[k]]
    if diff:
        k = diff[0]
        raise ConfigError(
            f"{out}: holds a run with {k}={old.get(k)!r}, this one has {k}={new[k]!r}; use a new --out to "
            "start a different run (or the same settings to resume)"
        )


def _write_meta(out: Path, cfg: TrainConfig, trainer: Trainer, skipped: set[str]) -> None:
    meta = {
        "method": "sanet",
        "objective": "Park & Lee 2019 Eq. 4-8 (GlebSBrykin/SANET Train.ipynb Net.forward)",
        "config": to_dict(cfg),
        "config_hash": config_hash(cfg),
        "encoder": trainer.encoder_info,
        "init": trainer.init_info,
        "checkpoints": checkpoints(out),
        "skipped_files": sorted(skipped),
        "sanet_bench": __version__,
        "torch": torch.__version__,
        "device": str(trainer.device),
    }
    atomic_write_bytes(out / META_FILE, (json.dumps(meta, indent=1) + "\n").encode())


def _write_encoder(out: Path, cfg: TrainConfig, trainer: Trainer) -> None:
    """Put the encoder used into ``out`` under its official name (see the module doc)."""
    dst = out / VGG_FILE
    if "path" in trainer.encoder_info:
        src = Path(trainer.encoder_info["path"])
        if not (dst.exists() and sha256_file(dst) == trainer.encoder_info["sha256"]):
            _link_or_copy(src, dst)
    elif not dst.exists():
        _save_atomic(_cpu_state(trainer.model.encoder.vgg), dst)


def train(cfg: TrainConfig, on_step: Any = None) -> TrainResult:
    """Train (or resume) into ``cfg.out``; ``on_step(trainer, row)`` is called after every update."""
    cfg.validate()
    out = Path(cfg.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    content = CropSource(cfg.content_dir, cfg.batch, cfg.crop, cfg.load_size, cfg.resize, cfg.seed, stream=0)
    style = CropSource(cfg.style_dir, cfg.batch, cfg.crop, cfg.load_size, cfg.resize, cfg.seed, stream=1)
    trainer = Trainer(cfg)
    meta = _read_meta(out)
    done = checkpoints(out)
    start = 0
    skipped: set[str] = set()
    if done:
        _check_resumable(cfg, meta, out)
        start = done[-1]
        if start > cfg.iters:
            msg = f"already at iteration {start} > iters={cfg.iters}; raise --iters or use a new --out"
            raise ConfigError(f"{out}: {msg}")
        trainer.restore(out, start)
        skipped = set(meta.get("skipped_files", []) if meta else [])
    else:
        torch.manual_seed(cfg.seed)
    log = LossLog(out / LOG_FILE)
    log.truncate_after(start)
    _write_encoder(out, cfg, trainer)
    _write_meta(out, cfg, trainer, skipped)

    loader = DataLoader(
        PairBatches(content, style),
        sampler=range(start, cfg.iters),
        batch_size=None,
        num_workers=cfg.num_workers,
        pin_memory=trainer.device.type == "cuda",
    )
    from tqdm.auto import tqdm  # the progress bar; imported here so importing the module stays cheap

    bar = tqdm(total=cfg.iters, initial=start, disable=not cfg.progress, unit="it", desc="sanet train")
    row: dict[str, float] = {}
    t0, steps = time.perf_counter(), 0
    try:
        for c, s, bad in loader:
            if bad:
                skipped.update(bad)
            ts = time.perf_counter()
            row = trainer.step(c, s)
            row["seconds"] = time.perf_counter() - ts
            steps += 1
            n = trainer.iteration
            if n % cfg.log_every == 0 or n == cfg.iters:
                log.append(row)
            if n % cfg.save_every == 0 or n == cfg.iters:
                trainer.save(out)
                _write_meta(out, cfg, trainer, skipped)
            bar.update(1)
            bar.set_postfix(total=f"{row['total']:.4g}", c=f"{row['loss_c']:.3g}", s=f"{row['loss_s']:.3g}")
            if on_step is not None:
                on_step(trainer, row)
    finally:
        bar.close()
    elapsed = time.perf_counter() - t0
    return TrainResult(
        out=out,
        iteration=trainer.iteration,
        resumed_from=start,
        last=row,
        seconds_per_step=elapsed / steps if steps else 0.0,
        skipped_files=len(skipped),
        encoder=trainer.encoder_info,
    )
