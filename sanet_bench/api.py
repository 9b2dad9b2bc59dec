"""The public library API: ``list_methods`` and ``load_method``."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from .errors import ConfigError, WeightsError
from .method import Method, build, check_fast_path, prepare
from .registry import MethodSpec, get_method_spec, method_specs
from .weights import META_FILE, resolve_official, sha256_file

log = logging.getLogger(__name__)


def list_methods() -> list[str]:
    """Names of every registered method, sorted."""
    return sorted(method_specs())


def resolve_device(device: str | torch.device) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available here; use --device cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device!r} requested but MPS is not available here; use --device cpu")
    return dev


def load_method(
    name: str,
    weights: str = "official",
    weights_dir: str | os.PathLike | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> Method:
    """Build method ``name`` and load its weights.

    ``weights``: ``"official"`` reads the official files under their official names from ``weights_dir``
    (or the cache filled by ``sanet-bench weights pull/import``); ``"random"`` keeps the exact
    architecture with seeded random weights (for latency and memory work; never for quality numbers);
    ``"demo"`` loads the demo weights trained by this project (:mod:`sanet_bench.demo`, shipped in the
    package; NOT the papers' models); ``"auto"``: ``weights_dir`` if given (strict official), else the cache
    of official files if complete, else the demo weights with a one-line warning, else the cache's error.
    ``model.weights_info["source"]`` says which was used.
    """
    spec = get_method_spec(name)
    if weights not in spec.weights_kinds:
        raise ConfigError(
            f"{spec.name}: unknown weights {weights!r}; choose one of {', '.join(spec.weights_kinds)}"
        )
    dev = resolve_device(device)
    model = build(spec, seed)
    info: dict[str, Any] = {"source": weights}
    paths = None
    auto = weights == "auto"
    if auto:
        paths, weights = _resolve_auto(spec, weights_dir)
        info["source"] = weights
    if weights == "demo":
        from .demo import load_demo

        info = load_demo(model, spec.name)
    elif weights == "official":
        paths = paths if paths is not None else resolve_official(spec, weights_dir)
        model.load_official(paths)
        info["files"] = {p.name: sha256_file(p) for _, p in sorted(paths.items())}
        info["dir"] = str(next(iter(paths.values())).parent) if paths else None
        info.update(_trained_by_us(paths))
    elif weights == "random":
        info["seed"] = seed
    if auto:
        info["requested"] = "auto"
    model.weights_info = info
    return model.to(dev).eval()


def _trained_by_us(paths: dict[str, Any]) -> dict[str, Any]:
    """A folder written by ``sanet-bench train`` has the official layout but not the published weights:
    label it ``trained`` with its encoder (from ``train_meta.json``) so no row calls it official."""
    dirs = {p.parent for p in paths.values()}
    metas = [d / META_FILE for d in dirs if (d / META_FILE).is_file()]
    if not metas:
        return {}
    import json

    meta = json.loads(metas[0].read_text())
    enc = meta.get("encoder", {})
    return {"source": "trained", "train_meta": str(metas[0]), "encoder": enc.get("id") or enc.get("sha256")}


def _resolve_auto(spec: MethodSpec, weights_dir) -> tuple[dict | None, str]:
    """``(official paths, "official")`` from weights_dir or a complete cache, else (downloads allowed) after
    pulling the missing files as torchvision does on first use (:func:`sanet_bench.weights.pull`: verified,
    with a progress bar; manual-only files are never downloaded), else ``(None, "demo")`` with a one-line
    warning giving the reason; without demo weights the reason is raised. ``SANET_BENCH_OFFLINE=1``: no
    download is tried."""
    from . import demo
    from .download import env_offline
    from .weights import pull

    if weights_dir is not None:
        return resolve_official(spec, weights_dir), "official"
    try:
        return resolve_official(spec, None), "official"
    except WeightsError as e:
        err = e
    if not env_offline():
        failed = [r for r in pull([spec.name], lpips=False, retries=1) if not r.ok]
        if not failed:
            return resolve_official(spec, None), "official"
        err = WeightsError(f"{spec.name}: could not download {failed[0].name}: {failed[0].detail}")
    if not demo.available(spec.name):
        raise err
    if spec.name not in _DEMO_NOTICED:  # once per method and process (a run loads it again to profile)
        _DEMO_NOTICED.add(spec.name)
        log.warning("%s: official weights not in the cache; using sanet-bench DEMO weights on a random "
                    "offline encoder (not the paper's model): %s", spec.name, str(err).split(" — ")[0])
    return None, "demo"


_DEMO_NOTICED: set[str] = set()


def demo_notices_given() -> set[str]:
    """The methods whose demo-weights notice this process has printed; a profiler worker is handed it, so a
    notice the user has seen is not printed again by every worker process."""
    return _DEMO_NOTICED


def stylize_files(
    method: str,
    content: str | os.PathLike,
    style: str | os.PathLike,
    out: str | os.PathLike,
    alpha: float | None = None,
    size: int | None = None,
    style_size: int | None = None,
    weights: str = "official",
    weights_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    seed: int = 0,
    options: dict[str, Any] | None = None,
    dtype: str = "fp32",
    channels_last: bool = False,
    compile: bool = False,
):
    """Stylize one image file with another and save the PNG atomically; returns the output path.
    ``dtype``, ``channels_last``, ``compile``: the fast path (:func:`sanet_bench.method.prepare`)."""
    from .images import load_image, save_image

    check_fast_path(dtype, device)
    model = load_method(method, weights=weights, weights_dir=weights_dir, seed=seed, device=device)
    prepare(model, dtype, channels_last, compile)
    c = load_image(content, size)
    s = load_image(style, style_size or size)
    return save_image(model.stylize(c, s, alpha=alpha, **(options or {})).cpu(), out)
