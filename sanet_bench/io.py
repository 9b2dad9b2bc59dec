"""The lowest layer: where sanet-bench keeps its files and how it writes them.

* :func:`home`: ``$SANET_BENCH_HOME``, else ``sanet_bench/`` under ``torch.hub.get_dir()`` (so ``TORCH_HOME``
  is respected) — computed without importing torch.
* :func:`atomic_write_bytes`: every file the suite writes whole (images, manifests, caches) goes through a
  temporary file in the same folder, fsync and an atomic rename: a reader never sees a partial file.
* :class:`JsonlStore`: the one append-only store (run results, profile records): each row is one ``write``
  of a whole line to an ``O_APPEND`` file, then fsync; a trailing partial line left by a killed process is
  cut off before the next append and ignored by readers.
* :func:`format_table`: the one aligned text table of the terminal output.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .errors import SanetBenchError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")


def hub_dir() -> Path:
    """``torch.hub.get_dir()``; without importing torch when it is not imported yet (same rule as torch's
    ``_get_torch_home``: ``$TORCH_HOME``, else ``$XDG_CACHE_HOME/torch``, else ``~/.cache/torch``; + ``hub``).
    Once torch is imported, torch itself answers (it also honours ``torch.hub.set_dir``)."""
    if "torch" in sys.modules:
        return Path(sys.modules["torch"].hub.get_dir())
    cache = os.getenv("XDG_CACHE_HOME", "~/.cache")
    return Path(os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(cache, "torch")))) / "hub"


def home() -> Path:
    env = os.environ.get("SANET_BENCH_HOME")
    if env:
        return Path(env).expanduser()
    return hub_dir() / "sanet_bench"


def is_url(s: str) -> bool:
    return urlparse(s).scheme in ("http", "https")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions of a new file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


class StoreError(SanetBenchError):
    """A JSONL store is unusable (a damaged line)."""


def json_safe(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    return v


class JsonlStore:
    """An append-only JSONL file: :meth:`append` writes one whole line (``O_APPEND``, one ``write``) and
    fsyncs it; :meth:`read` returns every complete row. Non-finite floats are stored as null."""

    def __init__(self, path: str | os.PathLike, error: type[SanetBenchError] = StoreError):
        self.path = Path(path)
        self.error = error
        self.fd = -1

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        lines = self.path.read_bytes().split(b"\n")
        if lines and lines[-1] != b"":
            lines = lines[:-1]  # no newline yet: a write that did not finish
        rows = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise self.error(
                    f"{self.path}: line {n} is not valid JSON; the file was edited or damaged — remove that "
                    "line or rerun with --overwrite"
                ) from None
        return rows

    def repair(self) -> int:
        """Cut a trailing partial line off the file before appending; returns the bytes removed."""
        if not self.path.is_file():
            return 0
        data = self.path.read_bytes()
        if not data or data.endswith(b"\n"):
            return 0
        keep = data.rfind(b"\n") + 1
        with open(self.path, "r+b") as f:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
        return len(data) - keep

    def append(self, row: dict[str, Any]) -> None:
        if self.fd < 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.repair()
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        data = (json.dumps(json_safe(row), sort_keys=True, allow_nan=False, default=str) + "\n").encode()
        view = memoryview(data)
        while view:  # a regular file takes it in one write; loop only for the pathological short write
            view = view[os.write(self.fd, view) :]
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> JsonlStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def format_table(
    header: Sequence[str], rows: Sequence[Sequence[Any]], fmt: Callable[[Any], str] = str,
    left: Sequence[int] = (0,),
) -> str:
    """An aligned text table: the columns in ``left`` are left-aligned, the others right-aligned; a rule
    under the header."""
    cells = [[str(h) for h in header]] + [[fmt(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [
        "  ".join(
            v.ljust(w) if i in left else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True))
        )
        .rstrip()
        for r in cells
    ]
    lines.insert(1, "-" * max(len(x) for x in lines))
    return "\n".join(lines)
