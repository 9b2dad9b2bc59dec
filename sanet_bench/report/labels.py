"""How a report names each method's weights. Non-official weights are labelled loudly everywhere."""

from __future__ import annotations

from typing import Any

LOUD = {
    "random": "RANDOM WEIGHTS — untrained, latency/memory only",
    "demo": "DEMO WEIGHTS — sanet-bench's offline stand-in on a random encoder, not the published model",
    "trained": "TRAINED WEIGHTS — a `sanet-bench train` run, not the published model",
}


KIND = {  # what each kind of weights is, in a few words: methods of different kinds are not ranked together
    "official": "the published pretrained models",
    "demo": "sanet-bench's offline demo stand-ins, not the published models",
    "trained": "`sanet-bench train` runs",
    "random": "untrained",
}


def weights_source(info: dict[str, Any] | None) -> str:
    return str((info or {}).get("source", "unknown"))


def is_official(info: dict[str, Any] | None) -> bool:
    return weights_source(info) == "official"


def short_label(method: str, info: dict[str, Any] | None) -> str:
    """``sanet`` for official weights, ``sanet [RANDOM WEIGHTS]`` / ``[DEMO WEIGHTS]`` / ``[?]`` otherwise."""
    src = weights_source(info)
    if src == "official":
        return method
    fails = ", FAIL CHECKS" if str((info or {}).get("checks", "")).startswith("FAILS") else ""
    return f"{method} [{src.upper()} WEIGHTS{fails}]"


def fast_path_mark(cfg: dict[str, Any] | None) -> str:
    """`` [BF16, not fp32]`` for a run or profile record computed in another dtype; else empty."""
    dtype = str((cfg or {}).get("dtype") or "fp32")
    return "" if dtype == "fp32" else f" [{dtype.upper()}, not fp32]"


def long_label(info: dict[str, Any] | None) -> str:
    """One line: the source and its identity (sha256 of each file, seed, recipe)."""
    info = info or {}
    src = weights_source(info)
    files = info.get("files") or {}
    ident = ", ".join(f"{name} sha256={sha}" for name, sha in sorted(files.items()))
    if src == "official":
        return f"official: {ident or 'files not recorded'}"
    if src == "random":
        return f"{LOUD['random']} (seed={info.get('seed')})"
    if src in LOUD:
        enc = f"; encoder {info['encoder']}" if info.get("encoder") else ""
        checks = f"; {info['checks']}" if info.get("checks") else ""
        return f"{LOUD[src]}{checks}{enc}; {ident}"
    return f"{src.upper()} (not the official weights); {ident}"
