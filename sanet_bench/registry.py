"""Method and metric registries, in the style of timm's ``default_cfgs`` and pyiqa's model configs.

Each method registers itself with :func:`register_method`, giving a :class:`MethodSpec` whose metadata is
plain data: citation, reference implementation, official weight files (name, key layout, where they are
published, sha256 when known), default alpha and supported options. Metrics register their class (a
:class:`sanet_bench.metrics.base.Metric` subclass, whose class attributes are the contract) with
:func:`register_metric`.

Registering a method imports its module (hence torch); the method modules are imported on first use.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import pkgutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from .errors import UnknownNameError
from .io import atomic_write_json, home


@dataclass(frozen=True)
class Source:
    """Where a file is published. ``kind`` selects the download protocol."""

    url: str
    kind: str = "http"  # "http" (plain/GitHub release asset), "gdrive", "yandex", "package" (pip package)
    note: str = ""


@dataclass(frozen=True)
class WeightFile:
    """One official checkpoint file, under its official name."""

    name: str
    sources: tuple[Source, ...] = ()
    sha256: str | None = None  # None: not published; `weights import` records what it sees
    size: int | None = None
    layout: str = ""  # short human description of the key layout
    license: str = ""
    optional: bool = False  # e.g. alternative formats (.t7) that are not needed when the .pth exists
    # Published inside an archive: ``sources`` then serve the archive ``archive`` (e.g. "models.zip") and
    # this file is its member ``member`` (e.g. "models/r41.pth"); the archive is fetched once, verified
    # (``archive_sha256`` when the publisher states one), and only the needed members are extracted.
    archive: str = ""
    member: str = ""
    archive_sha256: str | None = None
    # One file that several methods load (vgg_normalised.pth): cached once, under weights/shared/.
    shared: bool = False
    # Kept in torch hub's ``checkpoints`` folder, where torchvision and lpips load it (LPIPS's AlexNet).
    hub: bool = False


@dataclass(frozen=True)
class InputPolicy:
    """What a method's reference can compute, declared by the method and applied by the runner before
    ``stylize`` (the row records :meth:`describe`). The default accepts any size of at least ``min_size``.

    ``square``: content and style are centre-cropped to squares; ``style_like_content``: the style is
    resized to the content's size; ``multiple``: both sides are cropped down to a multiple of it.
    """

    square: bool = False
    style_like_content: bool = False
    multiple: int = 1
    note: str = ""  # why, in the reference's words (e.g. "StyTrans.forward asserts equal sizes")

    def describe(self) -> str:
        parts = []
        if self.square:
            parts.append("centre-cropped square")
        if self.style_like_content:
            parts.append("style resized to the content's size")
        if self.multiple > 1:
            parts.append(f"sides a multiple of {self.multiple}")
        return ", ".join(parts) or "any size"


@dataclass(frozen=True)
class Option:
    name: str
    default: Any
    help: str


@dataclass(frozen=True)
class Unit:
    """One trained module of a demo recipe (:mod:`sanet_bench.demo` trains it): ``steps`` Adam updates on
    ``batch`` random ``crop`` px crops, at a constant ``lr`` except for the last ``decay`` steps, where it
    falls to 0 along a half cosine; ``clip`` bounds the gradient norm (a spike at a constant rate can kill
    the decoder's ReLUs: the output becomes one flat colour). ``transform_lr`` is a transform's rate as a
    fraction of ``lr`` (SANet's). ``init`` names the unit (of any method) whose result starts this one;
    ``weights`` are the loss weights, read by the owning method's training job. Every field but ``name``
    is recorded in the demo manifest."""

    name: str
    method: str  # the method whose module defines it (and whose training job runs it)
    objective: str  # what the loss is, in words (the manifest repeats it)
    steps: int
    lr: float
    crop: int = 64
    batch: int = 4
    load_size: int = 160  # shorter side before cropping
    init: str = ""  # unit whose result initialises this one
    decay: int = 0
    clip: float = 0.0  # max gradient norm (0: no clipping)
    transform_lr: float = 1.0  # the transform's rate as a fraction of ``lr``
    weights: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class DemoRecipe:
    """How a method's demo weights (:mod:`sanet_bench.demo`) are trained and loaded; declared by the method.

    ``units``: the unit names trained for this method, in order (any method's: AdaIN starts from WCT's
    ``wct_d4``); the shipped file holds the results of those whose ``Unit.method`` is this method.
    ``defines``: the :class:`Unit` recipes this method's module owns. ``apply(model, state, path)`` loads
    a dequantised shipped state (and the offline encoder) into a built model; a recipe with no ``units``
    trains nothing and ships no file: its ``apply`` gets an empty state (Gatys: the offline encoder alone).
    ``job(unit, model, init)`` returns the training job of one of ``defines`` on a freshly built, frozen
    ``model``: an object with ``model``, ``trained`` (the parameters it trains), ``param_groups()``
    (Adam groups, each with an ``lr_scale``), ``result()`` (the trained tensors, keyed as in the shipped
    file), ``load_result(state)`` and ``losses(c, s)`` (a dict with ``"total"``). ``init`` is the result
    of ``unit.init`` passed through its own recipe's ``init_state(unit, state)``. ``reconstruction_alpha``
    is the alpha of the content-as-its-own-style reconstruction check (``reconstruction`` says it in words).
    """

    units: tuple[str, ...] = ()
    defines: tuple[Unit, ...] = ()
    apply: Callable[..., None] | None = None
    job: Callable[..., Any] | None = None
    init_state: Callable[..., Any] | None = None  # None: a unit's result initialises others as it is
    reconstruction_alpha: float = 0.0
    reconstruction: str = "alpha 0, content as its own style"


@dataclass(frozen=True)
class MethodCard:
    """A method's metadata: plain data."""

    name: str
    title: str
    citation: str
    reference: str  # the implementation this one matches, repo@commit
    files: tuple[WeightFile, ...] = ()
    default_alpha: float = 1.0
    has_alpha: bool = True  # False: the reference has no content-style trade-off; only alpha 1 runs
    options: tuple[Option, ...] = ()
    stages: tuple[str, ...] = ("encode", "transform", "decode")
    input_convention: str = "RGB float [0,1], NCHW"
    min_size: int = 64
    input_policy: InputPolicy = InputPolicy()
    # Option values per budget, where a method's own defaults would not fit one: "run" (the default job),
    # "profile" (`sanet-bench profile`), and the presets' budgets ("full", "paper"). Config wins over these.
    budgets: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: str = ""
    weights_kinds: tuple[str, ...] = ("official", "random")
    demo: DemoRecipe | None = None  # how its demo weights are made and loaded (sanet_bench.demo)
    # convert(source, out) -> Path: turns a checkpoint published in another framework into the official file
    # (`sanet-bench weights convert METHOD SOURCE OUT`); None where the published files load as they are
    convert: Callable[..., Any] | None = None

    def file(self, name: str) -> WeightFile:
        for f in self.files:
            if f.name == name:
                return f
        raise KeyError(name)

    def options_for(self, budget: str, configured: dict[str, Any] | None = None) -> dict[str, Any]:
        """The options a cell runs with: this method's ``budget`` values, overridden by ``configured``."""
        return {**self.budgets.get(budget, {}), **(configured or {})}

    def weights_kind(self, requested: str) -> str:
        """``requested`` where this method supports it, else its first kind: a method whose only weights ship
        with it (magenta: ``official``) runs with those, and its rows say so, instead of failing a run."""
        return requested if requested in self.weights_kinds else self.weights_kinds[0]

    def sources_line(self) -> str:
        return "; ".join(
            f"{f.name}: {f.sources[0].url if f.sources else 'no public source'}" for f in self.files
        )


@dataclass(frozen=True)
class MethodSpec(MethodCard):
    """A registered method: its card plus the factory that builds it (keyword-only)."""

    factory: Callable[..., Any] = field(kw_only=True)  # factory() -> Method, architecture built (untrained)

    def card(self) -> MethodCard:
        return MethodCard(**{f.name: getattr(self, f.name) for f in fields(MethodCard)})


# A registered metric is its class: a sanet_bench.metrics.base.Metric subclass with the contract as class
# attributes (name, compares, higher_is_better, input_range, convention, per_image, needs, weights).
MetricSpec = type

_METHODS: dict[str, MethodSpec] = {}
_METRICS: dict[str, MetricSpec] = {}

# Built-in method modules: sanet_bench.sanet and every module of the `baselines` package (found without
# importing them); other installed packages add theirs under the entry-point group ENTRY_POINT_GROUP.
ENTRY_POINT_GROUP = "sanet_bench.methods"
_METRIC_MODULES = ("sanet_bench.metrics",)
_PLUGINS_SEEN: set[tuple[str, str]] = set()
log = logging.getLogger(__name__)


def register_method(spec: MethodSpec) -> MethodSpec:
    if spec.name in _METHODS and _METHODS[spec.name] is not spec:
        raise ValueError(f"method {spec.name!r} registered twice")
    _METHODS[spec.name] = spec
    return spec


def register_metric(cls: MetricSpec) -> MetricSpec:
    """Class decorator: register a Metric subclass under ``cls.name``."""
    missing = [a for a in ("name", "compares", "higher_is_better", "input_range", "convention")
               if getattr(cls, a, "") in ("", None)]
    if missing:
        raise ValueError(f"metric {cls.__name__} does not declare {', '.join(missing)}")
    if cls.name in _METRICS and _METRICS[cls.name] is not cls:
        raise ValueError(f"metric {cls.name!r} registered twice")
    _METRICS[cls.name] = cls
    return cls


def unregister_metric(name: str) -> None:
    """Remove a metric (tests that register their own)."""
    _METRICS.pop(name, None)


_FILE_CHECKS: dict[str, Callable[[Any], None]] = {}


def register_file_check(name: str, check: Callable[[Any], None]) -> None:
    """How a metric network's file ``name`` is checked: ``check(path)`` loads it into the network and raises
    a one-line ``WeightsError`` when it does not fit (``weights pull/import/verify`` call it)."""
    _FILE_CHECKS[name] = check


def file_check(name: str) -> Callable[[Any], None] | None:
    """The check registered for the metric file ``name`` (importing the metric modules), or None."""
    _import_all(_METRIC_MODULES)
    return _FILE_CHECKS.get(name)


def _import_all(modules: tuple[str, ...]) -> None:
    for mod in modules:
        importlib.import_module(mod)


def builtin_method_modules() -> list[str]:
    """``sanet_bench.sanet`` and each module of the ``baselines`` package, listed without importing them."""
    found = importlib.util.find_spec("baselines")
    paths = list(found.submodule_search_locations or []) if found else []
    return ["sanet_bench.sanet"] + [f"baselines.{m.name}" for m in pkgutil.iter_modules(paths)]


def plugin_entry_points() -> list[importlib.metadata.EntryPoint]:
    """Methods from other installed packages: ``[project.entry-points."sanet_bench.methods"]``, each a module
    (whose import registers its method) or a :class:`MethodSpec` object."""
    eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    return sorted(eps, key=lambda ep: (ep.name, ep.value))


def _load_plugin(ep: importlib.metadata.EntryPoint) -> None:
    key = (ep.name, ep.value)
    if key in _PLUGINS_SEEN:
        return
    _PLUGINS_SEEN.add(key)
    dist = getattr(ep.dist, "name", "?")
    try:
        obj = ep.load()
    except Exception as e:  # a broken plugin must not take every other method down with it
        log.warning("method plugin %s = %s (package %s) failed to load and is skipped: %s: %s",
                    ep.name, ep.value, dist, type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        return
    if isinstance(obj, MethodSpec) and _METHODS.get(obj.name) is not obj:
        register_method(obj)


def method_specs() -> dict[str, MethodSpec]:
    """Every registered method: the built-in modules and the plugins' entry points, imported on first use."""
    _import_all(tuple(builtin_method_modules()))
    for ep in plugin_entry_points():
        _load_plugin(ep)
    return dict(_METHODS)


def get_method_spec(name: str) -> MethodSpec:
    return _lookup(method_specs(), name)


def _lookup(specs: dict, name: str):
    key = name.lower().replace("_", "-")
    if key not in specs:
        raise UnknownNameError(f"unknown method {name!r}; available: {', '.join(sorted(specs))}")
    return specs[key]


def method_cards() -> dict[str, MethodCard]:
    """Every registered method's card (its metadata without the factory), and those registered at run time.

    Importing the method modules imports torch (about 3 s here), so metadata commands (``sanet-bench
    methods``, ``weights list``) read the cards from a cache in ``$SANET_BENCH_HOME/cache/``, keyed by the
    path, size and mtime of every method and metric module and by the plugins' entry points: any change to
    one of those files gives a new key. No snapshot is committed; the first call (or the first after a
    change) imports the modules and writes the cache. Cached cards hold data fields only (a ``demo``
    recipe's code is not data).
    """
    cards = dict(_cached_cards()[0])
    cards.update({name: spec.card() for name, spec in _METHODS.items()})
    return cards


def metric_files() -> dict[str, tuple[WeightFile, ...]]:
    """``{metric: the weight files it needs}`` for every registered metric, from the same card cache as
    :func:`method_cards` (so listing the metrics' files does not import torch)."""
    files = dict(_cached_cards()[1])
    files.update({name: cls.weights for name, cls in _METRICS.items()})
    return files


def _cached_cards() -> tuple[dict[str, MethodCard], dict[str, tuple[WeightFile, ...]]]:
    try:
        key = _cards_key()
    except (OSError, ImportError, ValueError):
        key = None
    path = home() / "cache" / f"method_cards-{key}.json" if key else None
    if path is not None and path.is_file():
        try:
            data = json.loads(path.read_text())
            cards = {n: _card_from_json(d) for n, d in data["methods"].items()}
            metrics = {n: tuple(_file_from_json(f) for f in fs) for n, fs in data["metric_files"].items()}
            return cards, metrics
        except (OSError, ValueError, KeyError, TypeError):
            pass
    cards = {name: spec.card() for name, spec in method_specs().items()}
    metrics = {name: cls.weights for name, cls in metric_specs().items()}
    if path is not None:
        atomic_write_json(path, {
            "methods": {n: _card_to_json(c) for n, c in sorted(cards.items())},
            "metric_files": {n: [asdict(f) for f in fs] for n, fs in sorted(metrics.items())},
        })
    return cards, metrics


def _cards_key() -> str:
    h = hashlib.sha256()
    origins = [importlib.util.find_spec(m).origin for m in builtin_method_modules()]
    for pkg in _METRIC_MODULES:
        found = importlib.util.find_spec(pkg)
        for folder in found.submodule_search_locations or [] if found else []:
            origins += sorted(str(p) for p in Path(folder).glob("*.py"))
    for ep in plugin_entry_points():
        h.update(f"{ep.name}={ep.value}@{getattr(ep.dist, 'version', '')}".encode())
        spec = importlib.util.find_spec(ep.module)
        origins.append(spec.origin if spec else None)
    for origin in [__file__, *origins]:
        st = os.stat(origin) if origin else None
        h.update(f"{origin}:{st.st_size if st else 0}:{st.st_mtime_ns if st else 0};".encode())
    return h.hexdigest()[:16]


def _card_to_json(card: MethodCard) -> dict[str, Any]:
    out = {}
    for f in fields(MethodCard):
        value = getattr(card, f.name)
        try:
            value = asdict(value) if is_dataclass(value) else value
            if f.name in ("files", "options"):
                value = [asdict(x) for x in value]
            json.dumps(value)
        except (TypeError, ValueError):
            continue  # code, not data (a demo recipe): metadata commands do not need it
        out[f.name] = value
    return out


def _file_from_json(f: dict[str, Any]) -> WeightFile:
    return WeightFile(**{**f, "sources": tuple(Source(**x) for x in f["sources"])})


def _card_from_json(d: dict[str, Any]) -> MethodCard:
    d = dict(d)
    d["files"] = tuple(_file_from_json(f) for f in d.get("files", ()))
    d["options"] = tuple(Option(**o) for o in d.get("options", ()))
    d["input_policy"] = InputPolicy(**d.get("input_policy", {}))
    d.pop("demo", None)
    for k in ("stages", "weights_kinds"):
        if k in d:
            d[k] = tuple(d[k])
    return MethodCard(**d)


def get_method_card(name: str) -> MethodCard:
    return _lookup(method_cards(), name)


def metric_specs() -> dict[str, MetricSpec]:
    _import_all(_METRIC_MODULES)
    return dict(_METRICS)


def get_metric_spec(name: str) -> MetricSpec:
    specs = metric_specs()
    if name not in specs:
        raise UnknownNameError(f"unknown metric {name!r}; available: {', '.join(sorted(specs))}")
    return specs[name]
