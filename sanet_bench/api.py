"""The public library API: ``list_methods`` and ``load_method``."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from .errors import ConfigError, ImageError, WeightsError, is_out_of_memory, shorten
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
        failed = [r for r in pull([spec.name], retries=1) if not r.ok]
        if not failed:
            return resolve_official(spec, None), "official"
        err = WeightsError(f"{spec.name}: could not download {failed[0].name}: {failed[0].detail}")
    if not demo.available(spec.name):
        raise err
    if spec.name not in _DEMO_NOTICED:  # once per method and process (a run loads it again to profile)
        _DEMO_NOTICED.add(spec.name)
        log.warning("%s: official weights not in the cache (%s); using sanet-bench DEMO weights (not the "
                    "paper's model); `sanet-bench weights pull %s` gets the official files",
                    spec.name, shorten(str(err).split(" — ")[0], 400), spec.name)
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
    channels_last: bool | None = None,
    compile: bool = False,
    winograd: bool | None = None,
):
    """Stylize one image file with another and save it atomically in the format ``out``'s suffix names;
    returns the output path. ``size``/``style_size``: shorter side in px (None: the file's own size).

    Everything checkable without the model is checked first (paths, suffix, sizes, alpha, options, the
    device, and whether the content's relu1_1 features fit in free memory), so a typo costs no model load.
    Running out of memory is an :class:`ImageError` naming the size that failed and a ``--size`` to try.
    ``dtype``, ``channels_last``, ``compile``, ``winograd``: the fast path
    (:func:`sanet_bench.method.prepare`).
    """
    from .images import load_image, probe, require_min_side, save_format, save_image, target_size
    from .method import check_call

    spec = get_method_spec(method)
    save_format(out)
    for flag, value, least in (("--size", size, spec.min_size), ("--style-size", style_size, 16)):
        if value is not None and value < least:
            raise ConfigError(f"{flag} {value} is under {spec.name}'s minimum of {least} px; e.g. {flag} 512")
    alpha, _ = check_call(spec, alpha, dict(options or {}))
    check_fast_path(dtype, device, winograd, compile)
    dev = resolve_device(device)
    c_wh = probe(content)
    require_min_side(content, c_wh, spec.min_size, spec.name)
    require_min_side(style, probe(style), 16, spec.name)
    c_size = target_size(*c_wh, size, "shorter")
    _check_fits(content, c_size, size, dev)
    model = load_method(method, weights=weights, weights_dir=weights_dir, seed=seed, device=dev)
    prepare(model, dtype, channels_last, compile, winograd)
    c = load_image(content, size)
    s = load_image(style, style_size or size)
    try:
        y = model.stylize(c, s, alpha=alpha, **(options or {}))
    except Exception as e:
        if not is_out_of_memory(e):
            raise
        raise ImageError(
            f"{content}: out of memory stylizing at {c_size[0]}x{c_size[1]} px on {dev} "
            f"({'full resolution: no --size given' if size is None else f'--size {size}'}); "
            f"pass a smaller --size, e.g. --size {_smaller(c_size)}"
        ) from None
    return save_image(y.cpu(), out)


# Feature maps of relu1_1's size (64 channels, float32) that are alive at once in the encoders' first block
# (conv1_1 output, relu1_1, conv1_2 input and output): a lower bound on any method's peak, cheap to know.
RELU1_1_COPIES = 4


def available_memory(device: torch.device) -> int | None:
    """Bytes free for new allocations on ``device`` (CPU: MemAvailable, else free pages); None if unknown."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _smaller(wh: tuple[int, int], fraction: float = 0.5) -> int:
    """A shorter side to suggest: ``fraction`` of the pixels, rounded down to a multiple of 64 (>= 64)."""
    return max(64, int(min(wh) * fraction**0.5) // 64 * 64)


def _check_fits(path, wh: tuple[int, int], size: int | None, device: torch.device) -> None:
    """An :class:`ImageError` when ``RELU1_1_COPIES`` relu1_1 maps of a ``wh`` content exceed free memory."""
    need = RELU1_1_COPIES * 64 * wh[0] * wh[1] * 4
    free = available_memory(device)
    if free is None or need <= free:
        return
    at = "full resolution: no --size given" if size is None else f"--size {size}"
    raise ImageError(
        f"{path}: {wh[0]}x{wh[1]} px ({at}) needs at least {need / 2**30:.1f} GiB of feature maps, more than "
        f"the {free / 2**30:.1f} GiB free on {device}; pass --size {_smaller(wh, free / need)} or smaller"
    )
