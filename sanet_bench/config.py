"""Plain configuration: dataclasses loaded from TOML, validated strictly.

An unknown key or a value of the wrong type is a :class:`ConfigError` naming the key and the file. Built-in
presets live in ``sanet_bench/presets/<name>.toml`` inside the package. Precedence: dataclass defaults <
preset < ``--config FILE`` < command-line overrides.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

T = TypeVar("T")

@dataclass
class RunConfig:
    """What `sanet-bench run` does: methods x grid pairs x sizes x alphas."""

    methods: list[str] = field(default_factory=list)  # empty: every registered method
    grid: str = "embedded"  # embedded | paper | folder:DIR (DIR/content, DIR/style)
    sizes: list[int] = field(default_factory=lambda: [256, 512])  # content size, per `resize` policy
    alphas: list[float] = field(default_factory=list)  # empty: each method's default alpha
    style_size: int | None = None  # None: same as the content size
    resize: str = "shorter"  # see sanet_bench.images
    weights: str = "auto"  # auto (weights_dir > official cache > demo) | official | demo | random
    weights_dir: str | None = None
    device: str = "cpu"
    seed: int = 0
    metrics: list[str] = field(default_factory=list)  # empty: every registered metric
    max_pairs: int = 2  # 0: every content x style pair (preset "full"); 2 pairs spread over the grid
    out: str = "runs/latest"
    report: bool = True
    profile: bool = True
    profile_repeats: int = 3  # timed calls per (method, size) after one warm-up
    profile_sizes: list[int] = field(default_factory=lambda: [128, 256])  # empty: the run's sizes
    references: bool = True  # also score the content and the (resized) style as if they were outputs
    # which of each method's budgets (MethodCard.budgets) its options come from: run | full | paper
    budget: str = "run"
    # per-method options, over the budget's, e.g. {adain = {preserve_color = true}, gatys = {iters = 20}}
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check(value: Any, tp: Any, key: str, source: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check(value, inner[0], key, source)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{source}: key '{key}' must be a list of {_type_name(args[0])}, got {value!r}")
        return [_check(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: key '{key}' must be a table, got {value!r}")
        return {str(k): _check(v, args[1], f"{key}.{k}", source) for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float) and isinstance(value, bool) or not isinstance(value, tp):
        got = f"{type(value).__name__} {value!r}"
        raise ConfigError(f"{source}: key '{key}' must be {_type_name(tp)}, got {got}")
    return value


def from_dict(cls: type[T], data: dict[str, Any], source: str, base: T | None = None) -> T:
    """Build ``cls`` from ``data`` over ``base`` (or the defaults); strict on keys and types."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{source}: unknown key '{unknown[0]}'; valid keys: {', '.join(sorted(names))}")
    values = {k: _check(v, hints[k], k, source) for k, v in data.items()}
    start = base if base is not None else cls()
    return dataclasses.replace(start, **values)  # type: ignore[type-var]


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as e:  # a folder, no permission, not UTF-8 text
        raise ConfigError(f"{path}: cannot read it ({type(e).__name__}); pass a UTF-8 TOML file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML ({e})") from None


def presets() -> list[str]:
    files = resources.files("sanet_bench.presets").iterdir()
    return sorted(p.name[:-5] for p in files if p.name.endswith(".toml"))


def read_preset(name: str) -> tuple[dict[str, Any], str]:
    res = resources.files("sanet_bench.presets") / f"{name}.toml"
    if not res.is_file():
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(presets())}")
    try:
        return tomllib.loads(res.read_text()), f"preset:{name}"
    except tomllib.TOMLDecodeError as e:  # a broken built-in preset is a bug, but say where
        raise ConfigError(f"preset {name}: invalid TOML ({e})") from None


def load(
    cls: type[T],
    preset: str | None = None,
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    section: str | None = None,
) -> T:
    """Defaults < preset < file < overrides. ``section`` picks a table (e.g. ``[train]``) when given."""
    cfg = cls()
    layers: list[tuple[dict[str, Any], str]] = []
    if preset:
        layers.append(read_preset(preset))
    if path:
        layers.append((read_toml(path), str(path)))
    for data, source in layers:
        if section is not None:
            data = data.get(section, {})
            if not isinstance(data, dict):
                raise ConfigError(f"{source}: key '{section}' must be a table [{section}], got {data!r}")
        cfg = from_dict(cls, data, source, cfg)
    if overrides:
        cfg = from_dict(cls, {k: v for k, v in overrides.items() if v is not None}, "command line", cfg)
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def config_hash(cfg: Any) -> str:
    """sha256 of the canonical JSON of a config: the identity of a run's settings."""
    blob = json.dumps(to_dict(cfg), sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()
