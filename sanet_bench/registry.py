"""Method and metric registries, in the style of timm's ``default_cfgs`` and pyiqa's model configs.

Each method registers itself with :func:`register_method`, giving a :class:`MethodSpec` whose metadata is
plain data: citation, reference implementation, official weight files (name, key layout, where they are
published, sha256 when known), default alpha and supported options. Metrics register a
:class:`MetricSpec` through :func:`register_metric`.

Registering a method imports its module, hence torch. Commands that only show metadata (``sanet-bench
methods``, ``weights list``) read :func:`method_cards` instead: the same data without the factory, from the
committed snapshot ``sanet_bench/method_cards.json`` (``python -m sanet_bench.registry --write-cards``
regenerates it; tests/test_registry.py fails when it is stale).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
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


@dataclass(frozen=True)
class Option:
    name: str
    default: Any
    help: str


@dataclass(frozen=True)
class MethodCard:
    """A method's metadata: plain data, importable without torch (see :func:`method_cards`)."""

    name: str
    title: str
    citation: str
    reference: str  # the implementation this one matches, repo@commit
    files: tuple[WeightFile, ...] = ()
    default_alpha: float = 1.0
    options: tuple[Option, ...] = ()
    stages: tuple[str, ...] = ("encode", "transform", "decode")
    input_convention: str = "RGB float [0,1], NCHW"
    min_size: int = 64
    notes: str = ""
    weights_kinds: tuple[str, ...] = ("official", "random")

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


# ------------------------------------------------------------------------------------------- method cards
CARDS_PATH = Path(__file__).with_name("method_cards.json")
CARDS_COMMAND = "python -m sanet_bench.registry --write-cards"


def method_cards() -> dict[str, MethodCard]:
    """Every method's card without importing the method modules (so without torch).

    The committed snapshot :data:`CARDS_PATH`, overlaid with the specs registered so far in this process
    (plugins registered by their own import, tests), which win.
    """
    data = json.loads(CARDS_PATH.read_text(encoding="utf-8"))
    cards = {name: card_from_json(d) for name, d in data["methods"].items()}
    cards.update({name: spec.card() for name, spec in _METHODS.items()})
    return cards


def get_method_card(name: str) -> MethodCard:
    return _lookup(method_cards(), name)


def card_from_json(d: dict) -> MethodCard:
    files = tuple(
        WeightFile(**{**f, "sources": tuple(Source(**s) for s in f["sources"])}) for f in d["files"]
    )
    return MethodCard(**{
        **d, "files": files, "options": tuple(Option(**o) for o in d["options"]),
        "stages": tuple(d["stages"]), "weights_kinds": tuple(d["weights_kinds"]),
    })


def cards_json() -> str:
    """The snapshot of every registered method's card (imports the method modules), as written to disk."""
    methods = {name: asdict(spec.card()) for name, spec in sorted(method_specs().items())}
    text = json.dumps({"generated_by": CARDS_COMMAND, "methods": methods}, indent=1, ensure_ascii=False)
    return text + "\n"


def write_cards(path: Path = CARDS_PATH) -> Path:
    from .images import atomic_write_bytes

    atomic_write_bytes(path, cards_json().encode("utf-8"))
    return path


def metric_specs() -> dict[str, MetricSpec]:
    _import_all(_METRIC_MODULES)
    return dict(_METRICS)


def get_metric_spec(name: str) -> MetricSpec:
    specs = metric_specs()
    if name not in specs:
        raise UnknownNameError(f"unknown metric {name!r}; available: {', '.join(sorted(specs))}")
    return specs[name]


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m sanet_bench.registry")
    parser.add_argument("--write-cards", action="store_true", required=True,
                        help=f"regenerate {CARDS_PATH.name} from the registered methods")
    parser.parse_args()
    from sanet_bench.registry import write_cards as _write  # the package's module, not this __main__ copy

    print(_write())
