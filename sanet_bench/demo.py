"""Demo weights trained by this project, for running methods with no download (``weights="demo"``).

The official checkpoints cannot be fetched everywhere, so methods that declare a demo recipe
(:class:`sanet_bench.registry.DemoRecipe`, the ``demo`` field of their ``MethodSpec``) ship small models
trained here with the project's own code, against the offline encoder
:func:`sanet_bench.nn.vgg.offline_vgg_normalised` (a seeded random normalised VGG19 with unit-variance
layers, id :data:`~sanet_bench.nn.vgg.OFFLINE_VGG_ID`). They are NOT the papers' models: numbers made with
them describe the demo models only, and every result carries ``weights_info["source"] == "demo"``.
How the shipped weights were trained, and what was measured along the way: ``docs/demo-weights.md``.

This module is the generic machinery; it names no method. :func:`recipes` finds the recipes in the
registry, :func:`demo_methods` lists the methods that ship trained weights, :func:`units` maps every unit
name (one unit = one trained module, declared by a method's recipe and usable by others: AdaIN and SANet
start from WCT's ``wct_d4``) to its :class:`~sanet_bench.registry.Unit`.

* Load: :func:`load_demo` (what ``load_method(name, weights="demo")`` calls), :func:`available`.
* Train: :func:`train_unit` (resumable, reproducible), :func:`train_demo` (a method's units, then the
  ``.safetensors`` and its manifest entry): ``sanet-bench weights train-demo METHOD``.
* Check: :func:`check_demo` (the acceptance checks on the embedded grid; :func:`acceptance` is the line
  every weights label carries): ``sanet-bench weights check-demo METHOD [--record]``.

Data: crops of images that ship inside installed packages and are NOT in the embedded evaluation grid
(:func:`training_folders`), drawn by :class:`sanet_bench.data.CropSource`, a pure function of (seed,
iteration), so a run is reproducible and resumes exactly.

Storage (safetensors in ``sanet_bench/data/demo``, listed with their sha256 in ``manifest.json``): every
weight with two or more dimensions is int8, symmetric per output channel (``w ~ q * scale[o]``, ``scale =
max|w[o]| / 127``, key ``K`` int8 + ``K::scale`` float32); biases stay float32. A square conv weight's
centre diagonal ``w[j, j, k//2, k//2]`` is kept exactly (``K::diag`` float32, v2), so a residual-style
weight (0.5 x identity plus a small learned part) keeps its learned part.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import ConfigError, WeightsError
from .io import atomic_write_bytes
from .nn.vgg import OFFLINE_VGG_ID, offline_vgg_normalised
from .registry import DemoRecipe, Unit
from .weights import home, sha256_file

log = logging.getLogger(__name__)

DEMO_DIR = Path(__file__).parent / "data" / "demo"
MANIFEST = "manifest.json"
SCALE_SUFFIX = "::scale"
DIAG_SUFFIX = "::diag"
FORMAT = "int8-per-output-channel-v2"  # v2: + exact centre diagonals (v1 files read the same)
CONTENT_IMAGES = ("motorcycle_left", "motorcycle_right", "retina", "ihc", "color", "coins", "moon",
                  "clock_motion", "cell", "page")
STYLE_TEXTURES = ("grass", "gravel")
STYLE_GENERATED = {"mosaic": 111, "waves": 112, "strokes": 113, "marble": 114}  # the grid uses seeds 11-14
GRID_NOTE = (
    "trained on images NOT in the embedded grid (scikit-image samples and textures, generated styles with "
    "other seeds); the embedded grid is only the evaluation set"
)


# ------------------------------------------------------------------------------------------------ recipes
def recipes() -> dict[str, DemoRecipe]:
    """Every registered method's demo recipe (``MethodSpec.demo``), in registry order."""
    from .registry import method_specs

    return {name: spec.demo for name, spec in method_specs().items() if spec.demo is not None}


def recipe(method: str) -> DemoRecipe:
    """Method ``method``'s demo recipe (:class:`ConfigError` if it declares none)."""
    found = recipes()
    if method not in found:
        raise ConfigError(f"no demo recipe for {method!r}; choose one of {', '.join(demo_methods())}")
    return found[method]


def demo_methods() -> tuple[str, ...]:
    """The methods whose recipe trains units, i.e. that ship demo weights (a recipe without units trains
    nothing and ships nothing: Gatys's demo is the offline encoder alone)."""
    return tuple(name for name, r in recipes().items() if r.units)


_UNITS: dict[str, Unit] = {}


def units() -> dict[str, Unit]:
    """Every unit declared by a registered recipe, by name. The same dict for the whole process, so a unit
    replaced in it (``monkeypatch.setitem(demo.units(), name, ...)``) is the one :func:`train_unit` trains."""
    if not _UNITS:
        for method, r in recipes().items():
            for u in r.defines:
                if u.name in _UNITS or u.method != method:
                    raise ValueError(f"demo unit {u.name!r} declared twice, or by a method ({method}) other "
                                     f"than its own ({u.method})")
                _UNITS[u.name] = u
    return _UNITS


# ------------------------------------------------------------------------------------------- quantisation
def _centre_diagonal(w: Tensor) -> tuple[Tensor, Tensor, int, int] | None:
    """The index of ``w[j, j, kh // 2, kw // 2]`` for a square conv weight (same in/out channels, odd
    kernel), else None. Residual-style weights (SANet's merge_conv: 0.5 x identity plus a learned part of
    ~1e-3) keep it exactly, so the int8 scale fits the learned part instead of the 0.5."""
    if w.dim() != 4 or w.shape[0] != w.shape[1] or w.shape[2] % 2 == 0 or w.shape[3] % 2 == 0:
        return None
    ch = torch.arange(w.shape[0])
    return ch, ch, w.shape[2] // 2, w.shape[3] // 2


def quantise(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """int8 symmetric per-output-channel copy of ``state`` (>= 2-D tensors); 0/1-D tensors stay float32.

    A square conv weight's centre diagonal is stored exactly (``K::diag``, float32) and quantised as zero.
    """
    out: dict[str, Tensor] = {}
    for k, v in state.items():
        v = v.detach().float().cpu()
        if v.dim() < 2:
            out[k] = v.contiguous()
            continue
        diag = _centre_diagonal(v)
        if diag is not None:
            out[k + DIAG_SUFFIX] = v[diag].contiguous()
            v = v.clone()  # not the caller's tensor
            v[diag] = 0.0
        amax = v.reshape(v.shape[0], -1).abs().amax(1)
        scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
        q = (v / scale.view(-1, *[1] * (v.dim() - 1))).round().clamp(-127, 127).to(torch.int8)
        out[k], out[k + SCALE_SUFFIX] = q.contiguous(), scale.contiguous()
    return out


def dequantise(stored: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The float32 state dict of :func:`quantise`'s output."""
    out: dict[str, Tensor] = {}
    for k, v in stored.items():
        if k.endswith((SCALE_SUFFIX, DIAG_SUFFIX)):
            continue
        if v.dtype == torch.int8:
            s = stored[k + SCALE_SUFFIX]
            w = v.float() * s.view(-1, *[1] * (v.dim() - 1))
            if k + DIAG_SUFFIX in stored:
                w[_centre_diagonal(w)] = stored[k + DIAG_SUFFIX]
            out[k] = w
        else:
            out[k] = v.float()
    return out


# ---------------------------------------------------------------------------------------------- encoders
def offline_state() -> dict[str, Tensor]:
    """The offline encoder's state dict (the normalised VGG19's keys), which the recipes load."""
    return offline_vgg_normalised().state_dict()


def substate(state: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The entries of ``state`` under ``prefix``, without it (``decoder.1.weight`` -> ``1.weight``)."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


class DemoJob:
    """A demo unit's training job that trains whole submodules of ``model``: ``parts`` maps each trained
    attribute (``"decoder"``) to its learning-rate scale (an attribute name of the unit, e.g.
    ``"transform_lr"``, or 1.0); the result is saved under each part's prefix. ``init`` (a decoder state)
    starts the decoder. A method subclasses it with :meth:`prepare` (its frozen encoder) and ``losses``."""

    parts: dict[str, float | str] = {"decoder": 1.0}

    def __init__(self, unit: Unit, model: nn.Module, init: dict[str, Tensor] | None):
        self.unit, self.model = unit, model
        self.prepare(model)
        if init is not None:
            model.decoder.load_state_dict(init)
        self.trained = [p for name in self.parts for p in getattr(model, name).parameters()]

    def prepare(self, model: nn.Module) -> None:
        """Load the frozen parts (the offline encoder) and any initialisation of the trained ones."""

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(getattr(self.model, name).parameters()),
                 "lr_scale": getattr(self.unit, scale) if isinstance(scale, str) else scale}
                for name, scale in self.parts.items()]

    def result(self) -> dict[str, Tensor]:
        return {f"{name}.{k}": v for name in self.parts
                for k, v in getattr(self.model, name).state_dict().items()}

    def load_result(self, state: dict[str, Tensor]) -> None:
        for name in self.parts:
            getattr(self.model, name).load_state_dict(substate(state, f"{name}."))


# ------------------------------------------------------------------------------------------------ loading
def read_manifest(folder: Path | None = None) -> dict[str, Any]:
    p = (folder or DEMO_DIR) / MANIFEST
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise WeightsError(f"{p}: unreadable demo manifest ({e}); reinstall sanet-bench") from None
    return data if isinstance(data, dict) else {}


def acceptance(entry: Mapping[str, Any]) -> str:
    """One line: whether the demo model passed its checks (a) and (b), with the numbers."""
    c = entry.get("checks")
    if not c:
        return "not checked (run `sanet-bench weights check-demo METHOD --record`)"
    m, ref_c, ref_s = c["mean"]["method"], c["mean"]["content_as_output"], c["mean"]["style_as_output"]
    a = (f"style loss {m['style_loss']:.3g} vs the content's own {ref_c['style_loss']:.3g}, "
         f"content loss {m['content_loss']:.3g} vs the style's own {ref_s['content_loss']:.3g}")
    b = f"reconstruction {c['reconstruction_psnr_db']:.1f} dB (target >= 18)"
    if c["a_pass"] and c["b_pass"]:
        return f"passes its checks: {a}; {b}"
    failed = "; ".join(x for ok, x in ((c["a_pass"], f"(a) {a}"), (c["b_pass"], f"(b) {b}")) if not ok)
    return f"FAILS its checks: {failed}"


def available(name: str, folder: Path | None = None) -> bool:
    """Whether shipped demo weights exist for method ``name``."""
    r = recipes().get(name)
    if r is not None and not r.units:  # trains nothing: always there
        return True
    folder = folder or DEMO_DIR
    entry = read_manifest(folder).get(name)
    return bool(entry) and (folder / entry["file"]).is_file()


def load_demo(model: nn.Module, name: str, folder: Path | None = None) -> dict[str, Any]:
    """Load the demo weights of method ``name`` into ``model``; returns its ``weights_info``.

    The file's sha256 must equal the manifest's (else :class:`WeightsError`).
    """
    from safetensors.torch import load_file

    r = recipes().get(name)
    if r is not None and not r.units:
        r.apply(model, {}, None)
        return {"source": "demo", "encoder": OFFLINE_VGG_ID,
                "note": f"{name} trains nothing: its demo is the offline random encoder alone (not ImageNet)",
                "checks": "nothing trained, nothing to check"}
    folder = folder or DEMO_DIR
    entry = read_manifest(folder).get(name)
    if not entry:
        raise WeightsError(
            f"{folder / MANIFEST}: no demo weights for {name} (demo weights exist for "
            f"{', '.join(sorted(read_manifest(folder))) or 'no method'}); use weights='official'"
        )
    path = folder / entry["file"]
    if not path.is_file():
        raise WeightsError(f"{path}: demo weights file missing; reinstall sanet-bench or run "
                           f"`sanet-bench weights train-demo {name}`")
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise WeightsError(
            f"{path}: sha256 {digest[:12]}... does not match the demo manifest ({entry['sha256'][:12]}...); "
            f"reinstall sanet-bench or retrain with `sanet-bench weights train-demo {name}`"
        )
    try:
        stored = load_file(str(path))
    except Exception as e:  # truncated or not safetensors
        raise WeightsError(f"{path}: not a readable safetensors file ({str(e)[:100]}); reinstall") from None
    if r is None:
        raise WeightsError(f"{path}: {name} declares no demo recipe, so nothing knows how to load it")
    r.apply(model, dequantise(stored), path)
    return {
        "source": "demo",
        "files": {entry["file"]: digest},
        "dir": str(folder),
        "encoder": entry["encoder"],
        "recipe": entry["recipe_id"],
        "checks": acceptance(entry),
        "note": "demo weights trained by sanet-bench on a random offline encoder; NOT the papers' models",
    }


# ----------------------------------------------------------------------------------------------- training
def train_root() -> Path:
    return home() / "demo_train"


def training_folders(root: Path | None = None) -> tuple[Path, Path]:
    """Write (once) the offline training images to ``root/content`` and ``root/style``; returns both."""
    import importlib.util
    import io

    from PIL import Image

    from . import grids

    root = root or train_root() / "images"
    skdata = Path(next(iter(importlib.util.find_spec("skimage.data").submodule_search_locations)))
    folders = (root / "content", root / "style")
    for name in CONTENT_IMAGES + STYLE_TEXTURES:
        dest = folders[name in STYLE_TEXTURES] / f"{name}.png"
        if not dest.is_file():
            src = next(skdata.glob(f"{name}.*"))
            buf = io.BytesIO()
            Image.open(src).convert("RGB").save(buf, format="PNG")
            atomic_write_bytes(dest, buf.getvalue())
    for name, seed in STYLE_GENERATED.items():
        dest = folders[1] / f"{name}_{seed}.png"
        if not dest.is_file():
            buf = io.BytesIO()
            grids._GENERATED[name][1](np.random.default_rng(seed)).save(buf, format="PNG")
            atomic_write_bytes(dest, buf.getvalue())
    return folders


def job(unit: Unit, init: dict[str, Tensor] | None = None) -> Any:
    """The training job of ``unit`` (its method's ``DemoRecipe.job``) on a freshly built model (seed 0) whose
    parameters are frozen except the job's ``trained``."""
    from .method import build
    from .registry import get_method_spec

    model = build(get_method_spec(unit.method), seed=0)
    for p in model.parameters():
        p.requires_grad_(False)
    j = recipe(unit.method).job(unit, model, init)
    for p in j.trained:
        p.requires_grad_(True)
    return j


def _unit_dir(name: str, root: Path | None) -> Path:
    return (root or train_root()) / name


def train_unit(name: str, steps: int | None = None, root: Path | None = None, seed: int = 0,
               progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train (or resume) unit ``name``; returns ``{"state", "losses", "steps", "decay", "seconds"}``.

    Checkpoints ``<root>/<name>/ckpt.pt`` (weights-only readable) every 25 steps; a finished unit is reused
    and a shorter run of the same unit (same seed, init and learning rate) is extended from any checkpoint
    still in the constant-rate part: batches are a pure function of (seed, iteration), so that gives exactly
    the weights of an uninterrupted run of ``steps``.
    """
    from .data import CropSource

    unit = units()[name]
    override, steps = steps, unit.steps if steps is None else steps
    decay = min(unit.decay, steps // 2)
    folder = _unit_dir(name, root)
    folder.mkdir(parents=True, exist_ok=True)
    init, init_id = None, ""
    if unit.init:
        init_run = train_unit(unit.init, override, root, seed, progress)
        init_unit = units()[unit.init]
        to_init = recipe(init_unit.method).init_state
        init = to_init(init_unit, init_run["state"]) if to_init else init_run["state"]
        init_id = f"{unit.init}@{init_run['steps']}"
    run = job(unit, init)
    opt = torch.optim.Adam(run.param_groups(), lr=unit.lr)
    ckpt = folder / "ckpt.pt"
    start, history, seconds = 0, [], 0.0
    if ckpt.is_file():
        saved = torch.load(ckpt, map_location="cpu", weights_only=True)
        # Before its decay the rate is constant, and batches are a pure function of (seed, iteration): a
        # checkpoint there is exactly where a longer run of the same unit passes, so it is extended.
        same = (saved["seed"] == seed and saved.get("init", "") == init_id
                and saved.get("lr", saved["optimizer"]["param_groups"][0]["lr"]) == unit.lr
                and saved.get("weights", unit.weights) == unit.weights)
        saved_plan = (saved["steps_planned"], saved.get("decay", 0))
        constant_part = saved["iteration"] <= min(steps - decay, saved_plan[0] - saved_plan[1])
        if same and (constant_part or saved_plan == (steps, decay)):
            run.load_result(saved["state"])
            opt.load_state_dict(saved["optimizer"])
            start, history, seconds = saved["iteration"], saved["losses"], saved["seconds"]
    csrc, ssrc = training_folders(None if root is None else root / "images")
    content = CropSource(csrc, unit.batch, unit.crop, unit.load_size, seed=seed, stream=0)
    style = CropSource(ssrc, unit.batch, unit.crop, unit.load_size, seed=seed, stream=1)
    run.model.train()
    for it in range(start, steps):
        t0 = time.perf_counter()
        c, s = content.batch_at(it)[0], style.batch_at(it)[0]
        for group in opt.param_groups:
            group["lr"] = _lr_at(unit.lr, it, steps, decay) * group["lr_scale"]
        losses = run.losses(c, s)
        opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        if unit.clip:
            torch.nn.utils.clip_grad_norm_(run.trained, unit.clip)
        opt.step()
        seconds += time.perf_counter() - t0
        history.append({k: round(float(v.detach()), 6) for k, v in losses.items()})
        done = it + 1
        if done % 25 == 0 or done == steps:
            _save(ckpt, {"iteration": done, "steps_planned": steps, "decay": decay, "lr": unit.lr,
                         "seed": seed, "init": init_id, "weights": unit.weights, "state": run.result(),
                         "optimizer": opt.state_dict(), "losses": history, "seconds": seconds})
            if progress:
                row = ", ".join(f"{k} {v:.4g}" for k, v in history[-1].items())
                progress(f"{name} {done}/{steps} ({seconds / done:.2f} s/step): {row}")
    return {"state": {k: v.detach().clone() for k, v in run.result().items()}, "losses": history,
            "steps": steps, "decay": decay, "seconds": seconds}


def _lr_at(lr: float, it: int, steps: int, decay: int) -> float:
    """``lr`` until the last ``decay`` of ``steps`` iterations, then a half cosine down to 0."""
    k = it - (steps - decay)
    return lr if k < 0 else lr * 0.5 * (1.0 + float(np.cos(np.pi * k / decay)))


def _save(path: Path, obj: Any) -> None:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def _loss_summary(history: list[dict[str, float]]) -> dict[str, Any]:
    k = max(1, min(10, len(history)))
    first = {n: round(float(np.mean([h[n] for h in history[:k]])), 6) for n in history[0]}
    last = {n: round(float(np.mean([h[n] for h in history[-k:]])), 6) for n in history[0]}
    return {"first_10_mean": first, "last_10_mean": last}


def train_demo(method: str, steps: int | None = None, out: str | os.PathLike | None = None,
               root: Path | None = None, progress: Callable[[str], None] | None = None) -> Path:
    """Train every unit of ``method`` and write ``<out>/<method>.safetensors`` + its manifest entry.

    ``steps`` overrides every unit's step count (for smoke tests; the shipped files use the recipes').
    """
    from safetensors.torch import save_file

    if method not in demo_methods():
        raise ConfigError(f"no demo recipe for {method!r}; choose one of {', '.join(demo_methods())}")
    unit_names = recipe(method).units
    out_dir = Path(out) if out is not None else DEMO_DIR
    results = {u: train_unit(u, steps, root, progress=progress) for u in unit_names}
    state: dict[str, Tensor] = {}
    for u in unit_names:
        if units()[u].method == method:
            state.update(results[u]["state"])
    stored = quantise(state)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tmp_file = Path(tmp) / "w.safetensors"
        save_file(stored, str(tmp_file), metadata={"format": FORMAT, "encoder": OFFLINE_VGG_ID})
        dest = out_dir / f"{method}.safetensors"
        atomic_write_bytes(dest, tmp_file.read_bytes())
    cmd = f"sanet-bench weights train-demo {method}" + (f" --steps {steps}" if steps is not None else "")
    unit_entries = {
        u: {**{k: v for k, v in asdict(units()[u]).items() if k != "name"},
            "steps": results[u]["steps"], "decay": results[u]["decay"],
            "seconds": round(results[u]["seconds"], 1),
            "losses": _loss_summary(results[u]["losses"])}
        for u in unit_names
    }
    entry = {
        "file": dest.name,
        "sha256": sha256_file(dest),
        "bytes": dest.stat().st_size,
        "format": FORMAT,
        "encoder": OFFLINE_VGG_ID,
        "recipe_id": f"{method}-demo-v1",
        "command": cmd,
        "units": unit_entries,
        "training_data": {"content": list(CONTENT_IMAGES), "style": list(STYLE_TEXTURES) + [
            f"{n} (seed {s})" for n, s in STYLE_GENERATED.items()], "note": GRID_NOTE},
        "quantisation": quantisation_error(method, state),
        "trained_with": {"torch": torch.__version__, "device": "cpu"},
    }
    update_manifest(out_dir, method, entry)
    return dest


def update_manifest(folder: Path, method: str, entry: dict[str, Any] | None, key: str | None = None) -> None:
    """Set ``manifest[method] = entry`` (or ``manifest[method][key] = entry``), atomically."""
    data = read_manifest(folder)
    if key is None:
        data[method] = entry
    else:
        data.setdefault(method, {})[key] = entry
    atomic_write_bytes(folder / MANIFEST, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())


# ------------------------------------------------------------------------------------------------ checks
def _psnr(a: Tensor, b: Tensor) -> float:
    mse = F.mse_loss(a.clamp(0, 1), b.clamp(0, 1)).item()
    return 10 * float(np.log10(1.0 / max(mse, 1e-12)))


def reconstruct(model: nn.Module, method: str, content: Tensor) -> Tensor:
    """The output with the content as its own style, at the recipe's ``reconstruction_alpha`` (0: the
    content's features decoded; a method whose alpha 0 skips what it trains uses 1, e.g. ``D(T(c, c))``)."""
    return model.stylize(content, content, alpha=recipe(method).reconstruction_alpha)


def quantisation_error(method: str, state: dict[str, Tensor], size: int = 128) -> dict[str, float]:
    """Reconstruction PSNR (dB) on the embedded grid's contents with float32 vs int8-quantised weights."""
    from .grids import get_grid
    from .method import build
    from .registry import get_method_spec

    contents = [im.load(size) for im in get_grid("embedded").contents]
    out = {}
    for label, st in (("float32", state), ("int8", dequantise(quantise(state)))):
        model = build(get_method_spec(method))
        recipe(method).apply(model, dict(st), Path("<memory>"))
        model.eval()
        with torch.no_grad():
            out[f"psnr_{label}_db"] = round(float(np.mean([_psnr(reconstruct(model, method, c), c)
                                                           for c in contents])), 3)
    out["size_px"] = size
    return out


def check_demo(method: str, size: int = 256, pairs: int | None = None, save_dir: Path | None = None
               ) -> dict[str, Any]:
    """The demo weights' acceptance checks on the embedded grid at ``size`` px: (a) style/content losses vs
    the reference rows, (b) mean reconstruction PSNR. Metrics use :func:`sanet_bench.metrics.evaluate`."""
    from .grids import get_grid
    from .images import save_image
    from .method import build
    from .metrics import build as build_metrics
    from .metrics import encoder_id, evaluate
    from .registry import get_method_spec

    grid = get_grid("embedded")
    model = build(get_method_spec(method))
    model.weights_info = load_demo(model, method)
    model.eval()
    names = ["content_loss", "style_loss"]
    nets = build_metrics(names)
    rows: dict[str, list[dict[str, float]]] = {"method": [], "content_as_output": [], "style_as_output": []}
    cache: dict[str, Tensor] = {}

    def img(g) -> Tensor:
        if g.name not in cache:
            cache[g.name] = g.load(size)
        return cache[g.name]

    for ci, si in grid.pairs(pairs):
        c, s = img(ci), img(si)
        with torch.no_grad():
            y = model.stylize(c, s)
        s_as_out = F.interpolate(s, size=c.shape[-2:], mode="bilinear", align_corners=False)
        for key, out in (("method", y), ("content_as_output", c), ("style_as_output", s_as_out)):
            rows[key].append(evaluate(out, c, s, nets)[0])
        if save_dir is not None:
            save_image(y, Path(save_dir) / method / f"{ci.name}__{si.name}.png")
    psnrs = []
    for ci in grid.contents:
        c = img(ci)
        with torch.no_grad():
            r = reconstruct(model, method, c)
        psnrs.append(_psnr(r, c))
        if save_dir is not None:
            save_image(r, Path(save_dir) / method / f"{ci.name}__reconstruction.png")
    mean = {k: {n: round(float(np.mean([r[n] for r in v])), 5) for n in names} for k, v in rows.items()}
    a = (mean["method"]["style_loss"] < mean["content_as_output"]["style_loss"]
         and mean["method"]["content_loss"] < mean["style_as_output"]["content_loss"])
    b_psnr = round(float(np.mean(psnrs)), 3)
    return {
        "size_px": size, "pairs": len(rows["method"]), "metric_encoder": encoder_id(nets),
        "mean": mean, "a_pass": bool(a), "reconstruction_psnr_db": b_psnr, "b_pass": b_psnr >= 18.0,
        "reconstruction": recipe(method).reconstruction,
        "note": GRID_NOTE,
    }

