"""Where checkpoints come from, and loading them safely.

Resolution for ``weights="official"``: an explicit ``weights_dir`` (files under their official names), else
the cache ``$SANET_BENCH_HOME/weights/<method>/`` (default ``SANET_BENCH_HOME`` is
``torch.hub.get_dir()/sanet_bench``, so ``TORCH_HOME`` is respected), else a copy shipped inside an installed
package (Source kind "package"), else a one-line error naming where the file is published and how to get it.

Checkpoints are read with ``torch.load(..., weights_only=True)`` (or safetensors): never unpickled.

torch is imported only by the functions that load or fetch tensors, so listing the cache (``sanet-bench
weights list/path``) reads the method cards (:func:`sanet_bench.registry.method_cards`) and stays fast.
"""

from __future__ import annotations

import glob
import json
import os
import pickle
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import DownloadError, OfflineError, SanetBenchError, WeightsError
from .io import atomic_write_bytes, home, hub_dir, sha256_file  # noqa: F401  (hub_dir: part of this API)
from .registry import MethodCard, WeightFile

if TYPE_CHECKING:
    from torch import Tensor, nn


def cache_dir(method: str) -> Path:
    return home() / "weights" / method


META_FILE = "train_meta.json"  # written by `sanet-bench train` beside checkpoints in the official layout
SHARED = "shared"  # cache_dir(SHARED): files declared ``shared`` (vgg_normalised.pth), one copy for all


def cache_path(method: str, f: WeightFile) -> Path:
    """Where ``f`` of ``method`` lives in the cache: its method's folder, or the shared one."""
    return cache_dir(SHARED if f.shared else method) / f.name


def find_file(f: WeightFile, weights_dir: str | os.PathLike | None = None) -> Path | None:
    """A metric's or a method's file ``f`` by its official name: in ``weights_dir``, else the cache (shared
    folder, then any method's folder holding that name), else ``None``."""
    if weights_dir is not None:
        p = Path(weights_dir).expanduser() / f.name
        return p if p.is_file() else None
    candidates = [cache_dir(SHARED) / f.name]
    weights_root = home() / "weights"
    if weights_root.is_dir():
        candidates += sorted(weights_root.glob(f"*/{f.name}"))
    return next((p for p in candidates if p.is_file()), None)


def where_published(f: WeightFile) -> str:
    if not f.sources:
        return "no public source is known"
    return f"published at {f.sources[0].url}"


def resolve_official(spec: MethodCard, weights_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Paths of the method's official files, from ``weights_dir`` or the cache."""
    base = Path(weights_dir).expanduser() if weights_dir is not None else cache_dir(spec.name)
    paths: dict[str, Path] = {}
    missing: list[WeightFile] = []
    for f in spec.files:
        p = base / f.name
        if weights_dir is None and not p.is_file():
            p = installed_copy(f) or p
        if p.is_file():
            paths[f.name] = p
        elif not f.optional and not any(  # an optional alternative format of it (x.t7 for x.pth) stands in
            a.optional and Path(a.name).stem == Path(f.name).stem and (base / a.name).is_file()
            for a in spec.files
        ):
            missing.append(f)
    if missing and (latest := latest_iteration(base, [f.name for f in spec.files])):
        paths.update(latest)  # training checkpoints (`sanet-bench train`): *_iter_N files of the highest N
        missing = [f for f in missing if f.name not in latest]
    if missing:
        where = f"weights dir {base}" if weights_dir is not None else f"the cache {base}"
        files = "; ".join(f"{f.name} ({where_published(f)})" for f in missing)
        raise WeightsError(
            f"{spec.name}: official files missing in {where}: {files} — run `sanet-bench weights pull "
            f"{spec.name}` or `sanet-bench weights import DIR`, or use weights='random' for latency work"
        )
    return paths


_ITER_NAME = re.compile(r"(?P<stem>.+)_iter_(?P<n>\d+)(?P<ext>\.[A-Za-z0-9]+)")


def latest_iteration(base: Path, names: list[str]) -> dict[str, Path]:
    """``{name: base/<stem>_iter_N<ext>}`` for official names like ``decoder_iter_500000.pth``.

    N is the highest iteration at which every such name has a file in ``base``, so the decoder and transformer
    of one iteration stay paired. Empty when no N is complete. Used only when an official name is missing.
    """
    stems = {n: m for n in names if (m := _ITER_NAME.fullmatch(n))}
    common: set[int] | None = None
    for m in stems.values():
        found = {
            int(x["n"])
            for p in base.glob(f"{glob.escape(m['stem'])}_iter_*{m['ext']}")
            if (x := _ITER_NAME.fullmatch(p.name)) and x["stem"] == m["stem"] and p.is_file()
        }
        common = found if common is None else common & found
    if not common:
        return {}
    n = max(common)
    return {name: base / f"{m['stem']}_iter_{n}{m['ext']}" for name, m in stems.items()}


def installed_copy(f: WeightFile) -> Path | None:
    """The file shipped inside an installed Python package (Source kind "package", url "pkg/rel/path")."""
    import importlib.util

    for src in f.sources:
        if src.kind == "package":
            pkg, _, rel = src.url.partition("/")
            found = importlib.util.find_spec(pkg)
            if found is not None and found.origin is not None and (Path(found.origin).parent / rel).is_file():
                return Path(found.origin).parent / rel
    return None


def read_state_dict(path: str | os.PathLike, expected: str = "") -> dict[str, Tensor]:
    """Read a flat ``{key: tensor}`` checkpoint without unpickling arbitrary objects."""
    import torch
    from torch import Tensor

    path = Path(path)
    what = f" (expected {expected})" if expected else ""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such file{what}") from None
    except Exception as e:  # corrupt file, pickle with objects, truncated zip
        msg = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise WeightsError(f"{path}: not a readable weights-only checkpoint ({msg}){what}") from None
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsError(f"{path}: not a flat state dict of tensors{what}")
    return dict(state)


def load_strict(
    module: nn.Module, state: Mapping[str, Tensor], path: str | os.PathLike, expected: str
) -> None:
    """``load_state_dict(strict=True)`` with a one-line error: missing/unexpected keys or first bad shape."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_few(unexpected)}")
        raise WeightsError(f"{path}: {', '.join(parts)}; expected {expected}")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise WeightsError(
                f"{path}: key {k} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}; "
                f"expected {expected}"
            )
    module.load_state_dict({k: state[k].to(v.dtype) for k, v in own.items()}, strict=True)


def load_file_into(module: nn.Module, path: Path, spec: MethodCard, file_name: str) -> None:
    expected = f"the official {spec.title} file {file_name} ({spec.file(file_name).layout})"
    load_strict(module, read_state_dict(path, expected), path, expected)


def _few(keys: list[str], n: int = 4) -> str:
    shown = ", ".join(keys[:n])
    return f"[{shown}{', ...' if len(keys) > n else ''}] ({len(keys)})"



# ------------------------------------------------------------------------------------------- cache management
# `sanet-bench weights list/pull/import/verify/path`. The registry's sha256 is authoritative; for a file
# whose publisher gave none, the first copy pulled or imported is recorded in RECORDED_NAME and checked
# from then on.

RECORDED_NAME = "recorded_sha256.json"
# torchvision's AlexNet_Weights.IMAGENET1K_V1.url (tests/test_weights.py checks they agree): the network
# that LPIPS (lpips.LPIPS(net="alex")) loads through torch.hub; its name carries the sha256 prefix that
# torch.hub checks.
ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"


@dataclass(frozen=True)
class FileState:
    """One official file of one method, as seen in the cache (and in ``weights_dir`` when given)."""

    method: str
    file: WeightFile
    path: Path  # where it is (cache or installed package) or would be in the cache
    present: bool
    in_weights_dir: bool | None  # None: no weights_dir asked about
    sha256: str | None  # expected: the registry's, else the recorded one
    sha_origin: str  # "registry", "recorded" or ""


@dataclass(frozen=True)
class Outcome:
    """What pull/import/verify did with one file: ``ok`` and a one-line ``detail``."""

    method: str
    name: str
    ok: bool
    detail: str


def recorded_path() -> Path:
    return home() / "weights" / RECORDED_NAME


def recorded_sha256() -> dict[str, str]:
    """``{"<method>/<file>": sha256}`` recorded by pull/import for files without a published sha256."""
    p = recorded_path()
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise WeightsError(f"{p}: unreadable ({e}); delete it and run `sanet-bench weights import`") from None
    if not isinstance(data, dict):
        raise WeightsError(f"{p}: not a JSON object; delete it and re-run `sanet-bench weights import`")
    return {str(k): str(v) for k, v in data.items()}


def _record(updates: dict[str, str]) -> None:
    if updates:

        data = {**recorded_sha256(), **updates}
        atomic_write_bytes(recorded_path(), (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())


def expected_sha256(method: str, f: WeightFile, recorded: dict[str, str]) -> tuple[str | None, str]:
    """The sha256 ``f`` must have and where it comes from: ``("…", "registry")``, ``("…", "recorded")``."""
    if f.sha256:
        return f.sha256.lower(), "registry"
    rec = recorded.get(f"{method}/{f.name}")
    return (rec, "recorded") if rec else (None, "")


def _specs(methods) -> list[MethodCard]:
    """The cards of ``methods`` (default: all): the cache needs only names and files, not the models."""
    from .registry import get_method_card, method_cards

    if methods:
        return [get_method_card(m) for m in methods]
    return [s for _, s in sorted(method_cards().items())]


def cache_paths(methods=None) -> list[Path]:
    """The cache folder of each method (default: every registered method)."""
    return [cache_dir(s.name) for s in _specs(methods)]


def file_table(methods=None, weights_dir: str | os.PathLike | None = None) -> list[FileState]:
    """Every official file of ``methods`` (default: all), with its presence in the cache / ``weights_dir``."""
    rec = recorded_sha256()
    wd = Path(weights_dir).expanduser() if weights_dir is not None else None
    rows = []
    for spec in _specs(methods):
        for f in spec.files:
            p = cache_dir(spec.name) / f.name
            if not p.is_file():
                p = installed_copy(f) or p
            sha, origin = expected_sha256(spec.name, f, rec)
            in_wd = (wd / f.name).is_file() if wd is not None else None
            rows.append(FileState(spec.name, f, p, p.is_file(), in_wd, sha, origin))
    return rows


def pull(
    methods=None, *, offline=None, mirror=None, progress: bool = True, lpips: bool = True
) -> list[Outcome]:
    """Fetch each method's official files into its cache dir with :func:`sanet_bench.download.fetch`.

    Sources are tried in order (with ``mirror`` only the mirror); a file that another method already cached
    under the same name is copied instead when its sha256 is known. Optional files (alternative formats) are
    skipped. ``lpips`` also prefetches LPIPS's AlexNet (:func:`pull_alexnet`). Failures are reported as
    :class:`Outcome` rows, not raised, so one dead link stops nothing else.
    """
    rec = recorded_sha256()
    specs = _specs(methods)
    out = [_pull_one(s, f, rec, offline, mirror, progress) for s in specs for f in s.files if not f.optional]
    if lpips:
        out.append(pull_alexnet(offline=offline, mirror=mirror, progress=progress))
    return out


def _pull_one(spec: MethodCard, f: WeightFile, rec: dict[str, str], offline, mirror, progress) -> Outcome:
    from .download import fetch

    dest = cache_dir(spec.name) / f.name
    key = f"{spec.name}/{f.name}"
    sha, _ = expected_sha256(spec.name, f, rec)
    if not dest.is_file() and (installed := installed_copy(f)) is not None:
        return Outcome(spec.name, f.name, True, f"installed with its package: {installed}")
    sources = [s for s in f.sources if s.kind != "package"]
    first = sources[0] if sources else f.name  # with a mirror only dest.name matters
    tries = [(sib.parent, first) for sib in _cached_siblings(spec.name, f.name, sha)]
    tries += [(mirror, first)] if mirror else [(None, s) for s in sources]
    if not tries and not dest.is_file():
        return Outcome(
            spec.name, f.name, False,
            f"{dest}: missing and {where_published(f)}; get it from the authors and run "
            f"`sanet-bench weights import DIR`",
        )
    errors: list[str] = []
    for mir, src in tries or [(None, f.name)]:  # no source but present: fetch just returns it
        try:
            fetch(src, dest, sha, mirror=str(mir) if mir else None, offline=offline, progress=progress)
        except SanetBenchError as e:
            errors.append(str(e))
            continue
        if sha is None:
            rec[key] = sha256_file(dest)
            _record({key: rec[key]})
        return Outcome(spec.name, f.name, True, f"ok {dest}")
    return Outcome(spec.name, f.name, False, " | ".join(dict.fromkeys(errors)))


def _cached_siblings(method: str, name: str, sha: str | None) -> list[Path]:
    """The same-named file in other methods' cache dirs (only when a sha256 can verify the copy)."""
    if sha is None or (cache_dir(method) / name).is_file():
        return []
    from .registry import method_cards

    return [
        cache_dir(o) / name
        for o, s in sorted(method_cards().items())
        if o != method and any(f.name == name for f in s.files) and (cache_dir(o) / name).is_file()
    ]


def alexnet_path() -> Path:
    """Where torch.hub (hence torchvision and LPIPS) keeps the AlexNet weights; honours ``TORCH_HOME``."""
    return hub_dir() / "checkpoints" / os.path.basename(ALEXNET_URL)


def _hub_prefix(url: str) -> str:
    import torch

    m = torch.hub.HASH_REGEX.search(os.path.basename(url))
    return m.group(1) if m else ""


def pull_alexnet(*, offline=None, mirror=None, progress: bool = True) -> Outcome:
    """Prefetch the AlexNet weights LPIPS needs into torch.hub's cache, through torch.hub itself.

    Without a mirror, ``torch.hub.load_state_dict_from_url(check_hash=True)`` downloads it (and checks the
    sha256 prefix in its name), exactly as torchvision would. With a mirror the file is fetched from it and
    checked against the same prefix before it is moved into place.
    """
    from .download import env_offline, fetch

    path = alexnet_path()
    if path.is_file():
        return Outcome("lpips", path.name, True, f"ok {path}")
    offline = env_offline() if offline is None else offline
    prefix = _hub_prefix(ALEXNET_URL)
    try:
        if mirror:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=path.parent, prefix=".sanet_bench.") as tmp:
                got = fetch(ALEXNET_URL, Path(tmp) / path.name, None, mirror=mirror, offline=offline,
                            progress=progress)
                if not sha256_file(got).startswith(prefix):
                    raise DownloadError(
                        f"{path.name} from mirror {mirror}: sha256 does not start with {prefix}; not kept — "
                        f"replace the mirror's copy with {ALEXNET_URL}"
                    )
                os.replace(got, path)
        elif offline:
            raise OfflineError(
                f"{path}: missing and downloads are off (--offline / SANET_BENCH_OFFLINE=1); get "
                f"{ALEXNET_URL} into {path.parent}, or pass --mirror DIR holding {path.name}"
            )
        else:
            import torch

            torch.hub.load_state_dict_from_url(
                ALEXNET_URL, progress=progress, check_hash=True, map_location="cpu", weights_only=True
            )
    except SanetBenchError as e:
        return Outcome("lpips", path.name, False, str(e))
    except (OSError, RuntimeError, pickle.UnpicklingError) as e:  # URLError/HTTPError, hash mismatch, bad
        msg = " ".join(str(e).split())[:200]
        return Outcome(
            "lpips", path.name, False, f"{ALEXNET_URL}: download failed ({msg}); retry, or --mirror"
        )
    return Outcome("lpips", path.name, True, f"ok {path}")


def import_dir(folder: str | os.PathLike, methods=None) -> list[Outcome]:
    """Copy official files found (recursively, by name) in ``folder`` into each listing method's cache.

    A file's sha256 is checked against the registry or the recorded value; where neither exists it is
    recorded. Copies are atomic (via :func:`sanet_bench.download.fetch` with ``folder`` as a local mirror).
    Returns one :class:`Outcome` per official file found; failures (checksum mismatch, several different
    files under one name) are rows with ``ok=False`` and nothing is copied for them.
    """
    from .download import fetch

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise WeightsError(f"{root}: not a folder; pass the folder holding the downloaded checkpoint files")
    specs = _specs(methods)
    wanted = {f.name for s in specs for f in s.files}
    found: dict[str, list[Path]] = {}
    for p in sorted(root.rglob("*")):
        if p.name in wanted and p.is_file():
            found.setdefault(p.name, []).append(p)
    rec = recorded_sha256()
    hashes: dict[Path, str] = {}
    out: list[Outcome] = []
    updates: dict[str, str] = {}
    for spec in specs:
        for f in spec.files:
            cands = found.get(f.name, [])
            if not cands:
                continue
            for p in cands:
                hashes.setdefault(p, sha256_file(p))
            sha, origin = expected_sha256(spec.name, f, rec)
            good = [p for p in cands if sha is None or hashes[p] == sha]
            if not good:
                shown = ", ".join(f"{p} has {hashes[p]}" for p in cands)
                fix = "get a good copy" if origin == "registry" else f"or drop its entry in {recorded_path()}"
                msg = f"checksum mismatch: {shown}; expected {sha} ({origin}); not imported — {fix}"
                out.append(Outcome(spec.name, f.name, False, msg))
                continue
            if len({hashes[p] for p in good}) > 1:
                out.append(Outcome(spec.name, f.name, False,
                                   f"several different files named {f.name}: {', '.join(map(str, good))}; "
                                   f"keep one in {root} or import from its own folder"))
                continue
            src = good[0]
            dest = cache_dir(spec.name) / f.name
            fetch(f.name, dest, hashes[src], mirror=str(src.parent), offline=True, progress=False)
            if sha is None:
                updates[f"{spec.name}/{f.name}"] = rec[f"{spec.name}/{f.name}"] = hashes[src]
            how = "verified" if sha else "sha256 recorded"
            out.append(Outcome(spec.name, f.name, True, f"{src} -> {dest} ({how})"))
    _record(updates)
    return out


def verify(methods=None) -> list[Outcome]:
    """Recompute the sha256 of every cached official file (and LPIPS's AlexNet) against registry/recorded."""
    out = []
    for row in file_table(methods):
        if not row.present:
            continue
        if row.sha256 is None:
            out.append(Outcome(row.method, row.file.name, True,
                               f"{row.path}: no sha256 known or recorded; `weights import` records one"))
            continue
        actual = sha256_file(row.path)
        if actual == row.sha256:
            out.append(Outcome(row.method, row.file.name, True, f"ok {row.path}"))
        else:
            msg = (
                f"{row.path}: sha256 {actual}, expected {row.sha256} ({row.sha_origin}); delete it and run "
                f"`sanet-bench weights pull {row.method}` or `weights import DIR`"
            )
            out.append(Outcome(row.method, row.file.name, False, msg))
    a = alexnet_path()
    if not methods and a.is_file():
        prefix = _hub_prefix(ALEXNET_URL)
        ok = sha256_file(a).startswith(prefix)
        detail = f"ok {a}" if ok else f"{a}: sha256 does not start with {prefix}; delete it and pull again"
        out.append(Outcome("lpips", a.name, ok, detail))
    return out
