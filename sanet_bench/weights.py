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
import re
import shutil
import tempfile
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import SanetBenchError, WeightsError
from .io import atomic_write_bytes, home, hub_dir, sha256_file  # noqa: F401  (hub_dir: part of this API)
from .registry import MethodCard, WeightFile

if TYPE_CHECKING:
    from torch import Tensor, nn


def cache_dir(method: str) -> Path:
    return home() / "weights" / method


META_FILE = "train_meta.json"  # written by `sanet-bench train` beside checkpoints in the official layout
SHARED = "shared"  # cache_dir(SHARED): files declared ``shared`` (vgg_normalised.pth), one copy for all
METRICS = "metrics"  # the owner of the metrics' own network files in `weights list/pull/import/verify`


def cache_path(method: str, f: WeightFile) -> Path:
    """Where ``f`` of ``method`` lives in the cache: its method's folder, the shared one, or (``f.hub``)
    torch hub's ``checkpoints`` folder, where torchvision and lpips load it."""
    if f.hub:
        return hub_dir() / "checkpoints" / f.name
    return cache_dir(SHARED if f.shared else method) / f.name


# torch hub's rule for the sha256 prefix in a file name (torch.hub.HASH_REGEX; tests/test_weights.py checks
# they agree), here so that listing files does not import torch
HUB_HASH = re.compile(r"-([a-f0-9]*)\.")


def hub_prefix(name: str) -> str:
    """The sha256 prefix a torch hub file name carries (``alexnet-owt-7be5be79.pth``: ``7be5be79``), or
    ``""``."""
    m = HUB_HASH.search(name)
    return m.group(1) if m else ""


def check_hub_prefix(f: WeightFile, path: str | os.PathLike, fix: str, digest: str | None = None) -> None:
    """A one-line :class:`WeightsError` (ending in ``fix``) when ``f``'s name carries torch hub's sha256
    prefix and the file at ``path`` (``digest``: its sha256, if known) does not start with it."""
    if (prefix := hub_prefix(f.name)) and not (digest := digest or sha256_file(path)).startswith(prefix):
        raise WeightsError(
            f"{path}: sha256 {digest[:12]}... does not start with {prefix}, the prefix its name {f.name} "
            f"states; {fix}"
        )


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
    src = f.sources[0]
    inside = f" inside {f.archive}" if f.archive else ""
    return f"published at {src.url}{inside}{'; download it by hand' if src.kind == 'manual' else ''}"


def resolve_official(spec: MethodCard, weights_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Paths of the method's official files, from ``weights_dir`` or the cache (a shared file from the shared
    folder, else from the method's own folder, where older versions cached it)."""
    base = Path(weights_dir).expanduser() if weights_dir is not None else cache_dir(spec.name)
    paths: dict[str, Path] = {}
    missing: list[WeightFile] = []
    for f in spec.files:
        p = base / f.name if weights_dir is not None else cached_copy(spec.name, f) or base / f.name
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


def cached_copy(method: str, f: WeightFile) -> Path | None:
    """``f`` of ``method`` in the cache (:func:`cache_path`; a shared file also in the method's own folder,
    where it was cached before files were shared), else shipped with a package (:func:`installed_copy`)."""
    for p in (cache_path(method, f), cache_dir(method) / f.name):
        if p.is_file():
            return p
    return installed_copy(f)


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
        got = state[k]
        # float16/64 load as float32; an integer where a float is expected is not a weight; a float where an
        # integer buffer is expected (a flag saved as float) loads only when it holds whole numbers
        if v.is_floating_point() and not got.is_floating_point() or (
            got.is_floating_point() and not v.is_floating_point() and not bool((got == got.round()).all())
        ):
            raise WeightsError(
                f"{path}: key {k} has dtype {state[k].dtype}, expected {v.dtype}; expected {expected}"
            )
    module.load_state_dict({k: state[k].to(v.dtype) for k, v in own.items()}, strict=True)


def load_file_into(module: nn.Module, path: Path, spec: MethodCard, file_name: str) -> None:
    """Load the official file ``file_name`` at ``path`` strictly into ``module`` (for ``load_official``)."""
    if _CHECKING.get() not in (None, file_name):
        return  # check_file: only the file under test is loaded
    expected = f"the official {spec.title} file {file_name} ({spec.file(file_name).layout})"
    load_strict(module, read_state_dict(path, expected), path, expected)


def _few(keys: list[str], n: int = 4) -> str:
    shown = ", ".join(keys[:n])
    return f"[{shown}{', ...' if len(keys) > n else ''}] ({len(keys)})"


# ------------------------------------------------------------------------------------------- structure check
_CHECKING: ContextVar[str | None] = ContextVar("sanet_bench_checking", default=None)


class _OnlyFile(dict):
    """The ``paths`` that :func:`check_file` hands to ``load_official``: iterating yields only the file under
    test, while every other official name (except its own alternative format, x.pth for x.t7) is ``in`` it
    and maps to the same path, so a method's ``load_official`` runs unchanged and
    :func:`load_file_into` skips the other files."""

    def __init__(self, name: str, path: Path, others: set[str]) -> None:
        super().__init__({name: path})
        self._name, self._others = name, others

    def __contains__(self, key) -> bool:
        return dict.__contains__(self, key) or key in self._others

    def __missing__(self, key: str) -> Path:
        if key in self._others:
            return self[self._name]
        raise KeyError(key)


def check_file(method: str, f: WeightFile, path: str | os.PathLike) -> None:
    """Raise a one-line :class:`WeightsError` unless ``path`` loads as ``method``'s official file ``f``.

    The method is built with random weights and its own ``load_official`` is called with just this file, so
    the file is read safely (weights-only pickle, safetensors, ``.npz`` without pickle) and checked exactly
    as a real load checks it: keys, shapes, dtypes (:func:`load_strict`), or, for files that are not state
    dicts, the method's own check (magenta's ONNX files: their published sha256). A metric's file
    (``method`` is :data:`METRICS`) is loaded into its network by the check the metric registered
    (:func:`sanet_bench.registry.register_file_check`). A name with torch hub's sha256 prefix must match it.
    Used before a file is imported or its sha256 recorded, and by :func:`verify`.
    """
    from .method import build
    from .registry import file_check, get_method_spec

    fix = f"get the official file ({where_published(f)})"
    check_hub_prefix(f, path, fix)
    if method == METRICS:
        check = file_check(f.name)
        if check is None:  # no network reads it (LPIPS's heads ship with their package)
            return
        try:
            check(Path(path))
        except SanetBenchError as e:
            raise WeightsError(f"{_first_line(e)} — refused as the metric file {f.name}; {fix}") from None
        except Exception as e:  # e.g. a tensor of another shape copied into the network
            raise WeightsError(
                f"{path}: does not load as the metric file {f.name} ({_first_line(e)}); {fix}"
            ) from None
        return
    spec = get_method_spec(method)
    what = f"{spec.title}'s {f.name}"
    try:
        model = build(spec)
    except Exception as e:  # e.g. a runtime the method needs is not installed
        raise WeightsError(
            f"{path}: cannot be checked as {what} here: the model does not build ({_first_line(e)}); "
            "fix that, then retry"
        ) from None
    stem = Path(f.name).stem
    others = {g.name for g in spec.files if g.name != f.name and Path(g.name).stem != stem}
    token = _CHECKING.set(f.name)
    try:
        model.load_official(_OnlyFile(f.name, Path(path), others))
    except SanetBenchError as e:
        raise WeightsError(f"{_first_line(e)} — refused as {what}; {fix}") from None
    except Exception as e:  # a method's own reader failing in a way it did not foresee
        raise WeightsError(f"{path}: does not load as {what} ({_first_line(e)}); {fix}") from None
    finally:
        _CHECKING.reset(token)


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0][:300] if str(e) else type(e).__name__



# ------------------------------------------------------------------------------------------- cache management
# `sanet-bench weights list/pull/import/verify/path`. The registry's sha256 is authoritative; for a file
# whose publisher gave none, the first copy pulled or imported is recorded in RECORDED_NAME and checked
# from then on.

RECORDED_NAME = "recorded_sha256.json"


@dataclass(frozen=True)
class MetricFiles:
    """The network files of metrics, as one owner (named :data:`METRICS`) beside the methods' cards."""

    name: str
    files: tuple[WeightFile, ...]


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


def sha_key(method: str, f: WeightFile) -> str:
    """The key of ``f``'s recorded sha256: ``"<method>/<name>"``, or ``"shared/<name>"`` for a shared file."""
    return f"{SHARED if f.shared else method}/{f.name}"


def _label(method: str, f: WeightFile) -> str:
    return SHARED if f.shared else method


def expected_sha256(method: str, f: WeightFile, recorded: dict[str, str]) -> tuple[str | None, str]:
    """The sha256 ``f`` must have and where it comes from: ``("…", "registry")`` (published with the
    file), ``("…", "recorded")`` (the first copy pulled or imported here, after :func:`check_file`), or
    ``(None, "")``."""
    if f.sha256:
        return f.sha256.lower(), "registry"
    rec = recorded.get(sha_key(method, f))
    return (rec, "recorded") if rec else (None, "")


def _specs(names=None, metrics: bool = True) -> list[MethodCard | MetricFiles]:
    """The owners of files: the cards of the named methods, and one :class:`MetricFiles` holding the files
    of the named metrics (``"metrics"``: every metric's). No names: every method, and (``metrics``) the
    metrics' files that no method declares. The cache needs only names and files, not the models."""
    from .errors import UnknownNameError
    from .registry import get_method_card, method_cards, metric_files

    by_metric = metric_files() if metrics or names else {}
    if not names:
        cards = [s for _, s in sorted(method_cards().items())]
        declared = {f.name for c in cards for f in c.files}
        own = [f for fs in by_metric.values() for f in fs if f.name not in declared]
        return cards + ([MetricFiles(METRICS, _unique(own))] if own else [])
    cards, own = [], []
    for n in names:
        if n == METRICS or n in by_metric:
            own += [f for m, fs in by_metric.items() if n in (METRICS, m) for f in fs]
            continue
        try:
            cards.append(get_method_card(n))
        except UnknownNameError:
            raise UnknownNameError(
                f"unknown method or metric {n!r}; methods: {', '.join(sorted(method_cards()))}; metrics: "
                f"{', '.join(sorted(by_metric))} (or {METRICS!r} for all of theirs)"
            ) from None
    return cards + ([MetricFiles(METRICS, _unique(own))] if own else [])


def _unique(files: list[WeightFile]) -> tuple[WeightFile, ...]:
    return tuple({f.name: f for f in files}.values())


def cache_paths(methods=None) -> list[Path]:
    """The cache folder of each method (default: every registered method); ``"shared"`` names the folder
    of the shared files (vgg_normalised.pth, the metrics' networks but LPIPS's AlexNet, which torch hub
    keeps)."""
    names = list(methods) if methods else [s.name for s in _specs(None, metrics=False)]
    return [cache_dir(SHARED) if m in (SHARED, METRICS) else cache_dir(_specs([m])[0].name) for m in names]


def file_table(methods=None, weights_dir: str | os.PathLike | None = None) -> list[FileState]:
    """Every official file of ``methods`` (method or metric names; default: all methods and the metrics),
    with its presence in the cache / ``weights_dir``. A shared file has a row under each owner that lists it,
    all with the one path in the shared folder."""
    rec = recorded_sha256()
    wd = Path(weights_dir).expanduser() if weights_dir is not None else None
    rows = []
    for spec in _specs(methods):
        for f in spec.files:
            p = cached_copy(spec.name, f) or cache_path(spec.name, f)
            sha, origin = expected_sha256(spec.name, f, rec)
            in_wd = (wd / f.name).is_file() if wd is not None else None
            rows.append(FileState(spec.name, f, p, p.is_file(), in_wd, sha, origin))
    return rows


def pull(
    methods=None, *, offline=None, mirror=None, progress: bool = True, metrics: bool = True, retries: int = 3
) -> list[Outcome]:
    """Fetch the official files of ``methods`` (method or metric names, ``"metrics"`` for every metric's;
    default: every method and, with ``metrics``, the metrics' networks) into the cache with
    :func:`sanet_bench.download.fetch`.

    Sources are tried in order (with ``mirror`` only the mirror, serving files, or archives, by name); a
    file that another method already cached under the same name is copied instead when its sha256 is known.
    A shared file is pulled once, into the shared folder (from an older per-method copy when there is one).
    Files published inside an archive come from it: the archive is fetched once for all of them, verified,
    and only their members are extracted (:func:`extract_member`). Files whose only sources are ``manual``
    are never downloaded: their row gives the manual step and what to run after. A file without a published
    sha256 is checked (:func:`check_file`) before its sha256 is recorded. Optional files (alternative
    formats) are skipped. A file whose name carries torch hub's sha256 prefix must match it. ``retries``: see
    ``fetch``. Failures are :class:`Outcome` rows, not raised, so one dead link stops nothing else.
    """
    rec = recorded_sha256()
    jobs: dict[Path, tuple[MethodCard, WeightFile]] = {}
    for s in _specs(methods, metrics):
        for f in s.files:
            if not f.optional:
                jobs.setdefault(cache_path(s.name, f), (s, f))
    opts = {"offline": offline, "mirror": mirror, "progress": progress, "retries": retries}
    done: dict[Path, Outcome] = {}
    archives: dict[tuple, list[tuple[MethodCard, WeightFile]]] = {}
    for dest, (s, f) in jobs.items():
        if f.archive and (mirror or _sources(f)) and not _holds(dest, expected_sha256(s.name, f, rec)[0]):
            archives.setdefault((f.archive, f.sources), []).append((s, f))
        else:
            done[dest] = _pull_one(s, f, rec, **opts)
    for members in archives.values():
        done.update(_pull_archive(members, rec, **opts))
    return [done[d] for d in jobs]


def _sources(f: WeightFile) -> list:
    """The sources of ``f`` that can be downloaded (not ``package`` or ``manual``)."""
    return [s for s in f.sources if s.kind not in ("package", "manual")]


def _holds(dest: Path, sha: str | None) -> bool:
    return dest.is_file() and (sha is None or sha256_file(dest) == sha)


def by_hand(dest: Path, f: WeightFile) -> str:
    """The one-line manual step for a missing file that cannot be downloaded."""
    manual = [s for s in f.sources if s.kind == "manual"]
    if not manual:
        return (f"{dest}: missing and {where_published(f)}; get it from the authors and run "
                f"`sanet-bench weights import DIR`")
    steps = "; or ".join(f"{s.url}{' (' + s.note + ')' if s.note else ''}" for s in manual)
    return (f"{dest}: missing; not downloadable (manual step): get {f.name} by hand from {steps}; then run "
            f"`sanet-bench weights import DIR`")


def _pull_one(spec: MethodCard, f: WeightFile, rec: dict[str, str], **opts) -> Outcome:
    from .download import fetch

    dest = cache_path(spec.name, f)
    label = _label(spec.name, f)
    sha, _ = expected_sha256(spec.name, f, rec)
    if not dest.is_file() and (installed := installed_copy(f)) is not None:
        return Outcome(label, f.name, True, f"installed with its package: {installed}")
    sources = _sources(f)
    first = sources[0] if sources else f.name  # with a mirror only dest.name matters
    tries = [(c.parent, first) for c in _cached_siblings(spec.name, f, sha)]
    tries += [(opts["mirror"], first)] if opts["mirror"] else [(None, s) for s in sources]
    if not tries and not dest.is_file():
        return Outcome(label, f.name, False, by_hand(dest, f))
    errors: list[str] = []
    for mir, src in tries or [(None, f.name)]:  # no source but present: fetch just returns it
        kw = {**opts, "mirror": str(mir) if mir else None}
        try:
            if sha is not None:
                fetch(src, dest, sha, **kw)
            else:  # first use: the file must load into the architecture before its sha256 is recorded
                _take_checked(spec, f, dest, lambda tmp, src=src, kw=kw: fetch(src, tmp, None, **kw))
                rec[sha_key(spec.name, f)] = sha256_file(dest)
                _record({sha_key(spec.name, f): rec[sha_key(spec.name, f)]})
        except SanetBenchError as e:
            errors.append(str(e))
            continue
        return Outcome(label, f.name, True, f"ok {dest}")
    return Outcome(label, f.name, False, " | ".join(dict.fromkeys(errors)))


def _take_checked(spec: MethodCard, f: WeightFile, dest: Path, get) -> None:
    """Make ``dest`` hold ``f`` (``get(path)`` writes it at ``path``) only if it passes :func:`check_file`;
    an existing ``dest`` is checked where it is."""
    if dest.is_file():
        check_file(spec.name, f, dest)
        return
    made = not dest.parent.is_dir()
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".sanet_bench.") as tmp:
            got = Path(tmp) / dest.name
            try:
                get(got)
            except SanetBenchError as e:  # name the file where it belongs, not the temporary folder
                raise type(e)(str(e).replace(str(got), str(dest))) from None
            check_file(spec.name, f, got)
            os.replace(got, dest)
    except BaseException:
        if made:  # leave no empty cache folder behind a failed first pull
            shutil.rmtree(dest.parent, ignore_errors=True)
        raise


def _cached_siblings(method: str, f: WeightFile, sha: str | None) -> list[Path]:
    """Other cached copies of ``f``: a shared file's copies in per-method folders (where older versions put
    it); else the same-named file in other methods' folders, only when a sha256 can verify the copy."""
    from .registry import method_cards

    if cache_path(method, f).is_file() or (sha is None and not f.shared):
        return []
    return [
        cache_dir(o) / f.name
        for o, s in sorted(method_cards().items())
        if (o != method or f.shared) and any(g.name == f.name for g in s.files)
        and (cache_dir(o) / f.name).is_file()
    ]


# ------------------------------------------------------------------------------------------------- archives
def _pull_archive(
    members: list[tuple[MethodCard, WeightFile]], rec: dict[str, str], **opts
) -> dict[Path, Outcome]:
    """Fetch the archive holding ``members`` once (verified by ``archive_sha256`` when published), extract
    each member under its official name; ``{dest: Outcome}``. The archive itself is not kept."""
    from .download import fetch

    f0 = members[0][1]
    sources = _sources(f0)
    first = sources[0] if sources else f0.archive
    tries = [(opts["mirror"], first)] if opts["mirror"] else [(None, s) for s in sources]
    root = home() / "weights"
    root.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with tempfile.TemporaryDirectory(dir=root, prefix=".archive.") as tmp:
        archive = Path(tmp) / f0.archive
        for mir, src in tries:
            try:
                fetch(src, archive, f0.archive_sha256, **{**opts, "mirror": str(mir) if mir else None})
                break
            except SanetBenchError as e:
                errors.append(str(e))
        else:
            msg = " | ".join(dict.fromkeys(errors))
            return {cache_path(s.name, f): Outcome(_label(s.name, f), f.name, False, msg) for s, f in members}
        return {cache_path(s.name, f): _extract(archive, s, f, rec) for s, f in members}


def _extract(archive: Path, spec: MethodCard, f: WeightFile, rec: dict[str, str]) -> Outcome:
    dest = cache_path(spec.name, f)
    key = sha_key(spec.name, f)
    sha, _ = expected_sha256(spec.name, f, rec)
    try:
        check = None if sha else lambda p: check_file(spec.name, f, p)
        extract_member(archive, f.member, dest, sha, check=check)
    except SanetBenchError as e:
        return Outcome(_label(spec.name, f), f.name, False, str(e))
    if sha is None:
        rec[key] = sha256_file(dest)
        _record({key: rec[key]})
    return Outcome(_label(spec.name, f), f.name, True, f"ok {dest} (member {f.member} of {f.archive})")


def _leaves_folder(name: str) -> bool:
    """Whether a zip member name would be written outside the folder it is extracted into."""
    n = name.replace("\\", "/")
    return n.startswith("/") or re.match(r"[A-Za-z]:", n) is not None or ".." in n.split("/")


def extract_member(archive: Path, member: str, dest: Path, sha256: str | None = None, check=None) -> Path:
    """Write the zip ``archive``'s ``member`` to ``dest`` atomically, verified against ``sha256`` and/or by
    ``check(path)`` before it is moved into place. An archive with any member whose path would leave the
    target folder (``..``, absolute paths: zip-slip) is refused whole; nothing is written."""
    import hashlib
    import zipfile
    import zlib

    try:
        with zipfile.ZipFile(archive) as z:
            names = z.namelist()
            bad = next((n for n in (member, *names) if _leaves_folder(n)), None)
            if bad is not None:
                raise WeightsError(
                    f"{archive.name}: member {bad!r} would be written outside the cache folder (zip-slip); "
                    "refused, nothing extracted — get the archive from its publisher"
                )
            if member not in names:
                raise WeightsError(
                    f"{archive.name}: no member {member} (it holds {_few(names)}); the published archive "
                    f"changed — get {dest.name} by hand and run `sanet-bench weights import DIR`"
                )
            dest.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".sanet_bench.") as tmp:
                part = Path(tmp) / dest.name
                h = hashlib.sha256()
                with z.open(member) as inp, open(part, "wb") as out:
                    while block := inp.read(1 << 20):
                        h.update(block)
                        out.write(block)
                if sha256 is not None and h.hexdigest() != sha256:
                    raise WeightsError(
                        f"{dest.name} (member {member} of {archive.name}): sha256 {h.hexdigest()}, expected "
                        f"{sha256}; not kept — the archive changed; get a good copy"
                    )
                if check is not None:
                    check(part)
                os.replace(part, dest)
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise WeightsError(
            f"{archive.name}: not a readable zip archive ({_first_line(e)}); it is corrupt or not the "
            "published file — pull again, or get it by hand and import its files"
        ) from None
    return dest


def import_dir(folder: str | os.PathLike, methods=None) -> list[Outcome]:
    """Copy official files found (recursively, by name) in ``folder`` into the cache (:func:`cache_path`).

    A file's sha256 is checked against the registry or the recorded value; where neither exists the file
    must first pass :func:`check_file` (it loads into its method's architecture), and only then is its
    sha256 recorded. Copies are atomic (via :func:`sanet_bench.download.fetch` with ``folder`` as a local
    mirror). Returns one :class:`Outcome` per official file found (a shared file once); failures (checksum
    mismatch, wrong structure, several different files under one name) are rows with ``ok=False`` and
    nothing is copied or recorded for them.
    """
    from .download import fetch

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise WeightsError(f"{root}: not a folder; pass the folder holding the downloaded checkpoint files")
    specs = _specs(methods)
    wanted = {f.name for s in specs for f in s.files}
    found: dict[str, list[Path]] = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(root).as_posix()
        for name in wanted:  # official names may hold sub-folders (mast: Artistic_decoders/dec_r41.pth)
            if rel == name or rel.endswith("/" + name):
                found.setdefault(name, []).append(p)
    rec = recorded_sha256()
    hashes: dict[Path, str] = {}
    out: list[Outcome] = []
    seen: set[Path] = set()
    for spec in specs:
        for f in spec.files:
            cands = found.get(f.name, [])
            dest = cache_path(spec.name, f)
            if not cands or dest in seen:
                continue
            seen.add(dest)
            label = _label(spec.name, f)
            for p in cands:
                hashes.setdefault(p, sha256_file(p))
            sha, origin = expected_sha256(spec.name, f, rec)
            good = [p for p in cands if sha is None or hashes[p] == sha]
            if not good:
                shown = ", ".join(f"{p} has {hashes[p]}" for p in cands)
                fix = "get a good copy" if origin == "registry" else f"or drop its entry in {recorded_path()}"
                msg = f"checksum mismatch: {shown}; expected {sha} ({origin}); not imported — {fix}"
                out.append(Outcome(label, f.name, False, msg))
                continue
            if len({hashes[p] for p in good}) > 1:
                out.append(Outcome(label, f.name, False,
                                   f"several different files named {f.name}: {', '.join(map(str, good))}; "
                                   f"keep one in {root} or import from its own folder"))
                continue
            src = good[0]
            if sha is None:
                try:
                    check_file(spec.name, f, src)
                except WeightsError as e:
                    out.append(Outcome(label, f.name, False, f"{e}; not imported, nothing recorded"))
                    continue
            fetch(f.name, dest, hashes[src], mirror=str(src.parent), offline=True, progress=False)
            if sha is None:
                rec[sha_key(spec.name, f)] = hashes[src]
                _record({sha_key(spec.name, f): hashes[src]})
            how = "verified" if sha else "structure checked, sha256 recorded"
            out.append(Outcome(label, f.name, True, f"{src} -> {dest} ({how})"))
    return out


def verify(methods=None) -> list[Outcome]:
    """Check every cached official file: its sha256 against the registry / recorded value, and that it still
    loads into its method's architecture (:func:`check_file`); LPIPS's AlexNet by its sha256 prefix."""
    out = []
    seen: set[Path] = set()
    for row in file_table(methods):
        if not row.present or row.path in seen:
            continue
        seen.add(row.path)
        label, name = _label(row.method, row.file), row.file.name
        if row.sha256 is not None and (actual := sha256_file(row.path)) != row.sha256:
            msg = (
                f"{row.path}: sha256 {actual}, expected {row.sha256} ({row.sha_origin}); delete it and run "
                f"`sanet-bench weights pull {row.method}` or `weights import DIR`"
            )
            out.append(Outcome(label, name, False, msg))
            continue
        try:
            check_file(row.method, row.file, row.path)
        except WeightsError as e:
            recorded = row.sha_origin == "recorded"
            drop = f"; drop {sha_key(row.method, row.file)} from {recorded_path()}" if recorded else ""
            out.append(Outcome(label, name, False, f"{e}; delete it{drop}"))
            continue
        if row.sha256 is None:
            detail = f"{row.path}: loads; no sha256 known or recorded; `weights import` records one"
        else:
            detail = f"ok {row.path} (sha256 {row.sha_origin}, structure checked)"
        out.append(Outcome(label, name, True, detail))
    return out
