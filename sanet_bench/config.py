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

# The vocabularies of the options, here in the lowest layer so the CLI's help lists them without torch.
WEIGHT_KINDS = ("auto", "official", "demo", "random")
RESIZE_POLICIES = ("shorter", "longer", "exact", "multiple16", "none")
DTYPES = ("fp32", "fp16", "bf16", "tf32")
BUDGETS = ("run", "profile", "full", "paper")
BACKENDS = ("local", "ray")
# The fast-path switches' help, one text for run, profile and stylize.
DTYPE_HELP = ("Computation dtype: fp32 (full float32, also on CUDA), bf16 (CPU or CUDA), fp16 or tf32 "
              "(float32 with TF32 convolutions and matmuls; CUDA); the output is float32.")
WINOGRAD_HELP = ("3x3 convolutions through NNPACK's Winograd F(6x6,3x3) (CPU, fp32; outputs within the "
                 "parity tolerances); unset: on for CPU in fp32 without --compile where the method measured "
                 "faster.")
CHANNELS_LAST_HELP = ("Model and inputs in channels_last memory format; unset: on for CPU without Winograd "
                      "(faster convolutions, outputs within the parity tolerances), off on CUDA.")


def opt(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = dataclasses.MISSING,
        choices: tuple[str, ...] = (), cli: str = "") -> Any:
    """A config field with its command-line help (``choices`` listed in it; ``cli``: the option's name when
    it is not the field's, e.g. ``--alpha`` for ``alphas``). The CLI's options are generated from these."""
    meta = {"help": help, "choices": choices, "cli": cli}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class RunConfig:
    """What `sanet-bench run` does: methods x grid pairs x sizes x alphas."""

    methods: list[str] = opt(factory=list, help="Comma-separated method names; empty: every registered one.")
    grid: str = opt("embedded", "embedded | paper | folder:DIR (DIR/content, DIR/style).")
    sizes: list[int] = opt(factory=lambda: [256, 512], help="Comma-separated content sizes in px (--resize).")
    alphas: list[float] = opt(factory=list, cli="--alpha",
                              help="Comma-separated alphas in [0,1]; empty: each method's default alpha.")
    style_size: int | None = opt(None, "Style size in px; default: the content size.")
    resize: str = opt("shorter", "How images are scaled to the size.", choices=RESIZE_POLICIES)
    weights: str = opt("auto", "auto: weights_dir > official cache (downloaded if missing) > demo; random: "
                       "latency work only, never quality.", choices=WEIGHT_KINDS)
    weights_dir: str | None = opt(None, "Folder with the official weight files under their official names.")
    device: str = opt("cpu", "cpu | cuda | cuda:N")
    dtype: str = opt("fp32", DTYPE_HELP, choices=DTYPES)
    winograd: bool | None = opt(None, WINOGRAD_HELP)
    channels_last: bool | None = opt(None, CHANNELS_LAST_HELP)
    compile: bool = opt(False, "torch.compile each method (slow first call per size).")
    seed: int = opt(0, "Seed for random weights and per-cell seeds.")
    metrics: list[str] = opt(factory=list, help="Comma-separated metrics; empty: every registered metric.")
    max_pairs: int = opt(2, "Use at most N (content, style) pairs spread over the grid; 0: every pair.")
    out: str = opt("runs/latest", "Run folder; the same command again resumes there.")
    report: bool = opt(True, "Render the report after the grid.")
    profile: bool = opt(True, "Profile speed and memory after the grid.")
    profile_repeats: int = opt(3, "Timed calls per (method, size) after one warm-up.")
    profile_sizes: list[int] = opt(factory=lambda: [128, 256], help="Profiled sizes; empty: the run's.")
    references: bool = opt(True, "Also score the content and the resized style as if they were outputs.")
    budget: str = opt("run", "Which of each method's option budgets to use (e.g. Gatys iterations).",
                      choices=BUDGETS)
    method_options: dict[str, dict[str, Any]] = opt(
        factory=dict, cli="--option",
        help="METHOD.KEY=VALUE, repeatable, over the budget's (gatys.iters=20, adain.preserve_color=true).",
    )
    backend: str = opt("local", "Where cells run: local (this process) or ray (a Ray cluster; "
                        "pip install sanet-bench[ray]).", choices=BACKENDS)
    address: str | None = opt(None, "Ray cluster address (ray start --head prints it); default: a Ray "
                              "cluster on this machine.")
    workers: int = opt(0, "Ray workers; 0: one per GPU of the cluster on cuda, one per CPU on cpu.")


@dataclass
class ProfileConfig:
    """What ``sanet-bench profile`` measures (see :mod:`sanet_bench.profiling`)."""

    methods: list[str] = opt(factory=list, help="Comma-separated method names; empty: every registered one.")
    sizes: list[int] = opt(factory=lambda: [256, 512], help="Comma-separated sizes in px (content = style).")
    device: str = opt("cpu", "cpu | cuda | cuda:N")
    dtype: str = opt("fp32", DTYPE_HELP, choices=DTYPES)
    winograd: bool | None = opt(None, WINOGRAD_HELP)
    channels_last: bool | None = opt(None, CHANNELS_LAST_HELP)
    compile: bool = opt(False, "torch.compile the method (its stages are then not split).")
    repeats: int = opt(5, "Timed calls per cell (at least 4 to compare runs); 0: memory and FLOPs only.")
    warmup: int = opt(1, "Untimed calls before timing.")
    weights: str = opt("random", "Weights (timings do not depend on the values); a method without random "
                       "weights (magenta) uses its own.", choices=WEIGHT_KINDS)
    weights_dir: str | None = opt(None, "Folder with the official weight files.")
    seed: int = opt(0, "Seed for random weights.")
    threads: int | None = opt(None, "torch threads per cell; default: torch's.")
    isolate: bool | None = opt(None, "Fresh process per cell (default: on CPU only: peak memory is its own).")
    count_flops: bool = opt(True, "Count FLOPs with torch's FlopCounterMode.")
    budget: str = opt("profile", "Which of each method's option budgets to use.", choices=BUDGETS)
    method_options: dict[str, dict[str, Any]] = opt(
        factory=dict, cli="--option", help="METHOD.KEY=VALUE, repeatable, e.g. gatys.iters=20.",
    )
    backend: str = opt("local", "Where cells run: local (this machine) or ray (one task per node type, "
                        "method and size; pip install sanet-bench[ray]).", choices=BACKENDS)
    address: str | None = opt(None, "Ray cluster address; default: a Ray cluster on this machine.")


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
