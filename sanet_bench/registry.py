"""Method and metric registries, in the style of timm's ``default_cfgs`` and pyiqa's model configs.

Each method registers itself with :func:`register_method`, giving a :class:`MethodSpec` whose metadata is
plain data: citation, reference implementation, official weight files (name, key layout, where they are
published, sha256 when known), default alpha and supported options. Metrics register a
:class:`MetricSpec` through :func:`register_metric`.

Registering a method imports its module (hence torch); the method modules are imported on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import UnknownNameError


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
    notes: str = ""
    weights_kinds: tuple[str, ...] = ("official", "random")
    demo: DemoRecipe | None = None  # how its demo weights are made and loaded (sanet_bench.demo)

    def file(self, name: str) -> WeightFile:
        for f in self.files:
            if f.name == name:
                return f
        raise KeyError(name)

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


@dataclass(frozen=True)
class MetricSpec:
    name: str
    fn: Callable[..., Any]
    compares: str  # "output-content" or "output-style"
    higher_is_better: bool
    input_range: str
    convention: str  # layers, normalisation, reduction
    needs: tuple[str, ...] = field(default_factory=tuple)  # network weights it needs


_METHODS: dict[str, MethodSpec] = {}
_METRICS: dict[str, MetricSpec] = {}

# Modules whose import registers methods / metrics. Imported lazily so `import sanet_bench` stays cheap.
_METHOD_MODULES = (
    "sanet_bench.sanet",
    "baselines",
)
_METRIC_MODULES = ("sanet_bench.metrics",)


def register_method(spec: MethodSpec) -> MethodSpec:
    if spec.name in _METHODS and _METHODS[spec.name] is not spec:
        raise ValueError(f"method {spec.name!r} registered twice")
    _METHODS[spec.name] = spec
    return spec


def register_metric(spec: MetricSpec) -> MetricSpec:
    if spec.name in _METRICS and _METRICS[spec.name] is not spec:
        raise ValueError(f"metric {spec.name!r} registered twice")
    _METRICS[spec.name] = spec
    return spec


def _import_all(modules: tuple[str, ...]) -> None:
    for mod in modules:
        importlib.import_module(mod)


def method_specs() -> dict[str, MethodSpec]:
    _import_all(_METHOD_MODULES)
    return dict(_METHODS)


def get_method_spec(name: str) -> MethodSpec:
    return _lookup(method_specs(), name)


def _lookup(specs: dict, name: str):
    key = name.lower().replace("_", "-")
    if key not in specs:
        raise UnknownNameError(f"unknown method {name!r}; available: {', '.join(sorted(specs))}")
    return specs[key]


def method_cards() -> dict[str, MethodCard]:
    """Every registered method's card (its metadata without the factory)."""
    return {name: spec.card() for name, spec in method_specs().items()}


def get_method_card(name: str) -> MethodCard:
    return get_method_spec(name).card()


def metric_specs() -> dict[str, MetricSpec]:
    _import_all(_METRIC_MODULES)
    return dict(_METRICS)


def get_metric_spec(name: str) -> MetricSpec:
    specs = metric_specs()
    if name not in specs:
        raise UnknownNameError(f"unknown metric {name!r}; available: {', '.join(sorted(specs))}")
    return specs[name]
