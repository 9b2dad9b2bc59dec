"""User-facing errors.

Every error a user can cause (bad input file, wrong checkpoint, bad config, missing weights, checksum
mismatch, out of memory) is a :class:`SanetBenchError`. Its message is one line naming the file, the
problem and the fix; the CLI prints it and exits with status 2. Inside a grid run it becomes a failure row.
"""

from __future__ import annotations

import re


class SanetBenchError(Exception):
    """Base class of errors caused by input, configuration or environment (not bugs)."""

    exit_code = 2

    def __str__(self) -> str:  # always one line
        return " ".join(str(self.args[0] if self.args else "").split())


class ConfigError(SanetBenchError):
    """A config file, preset or option is invalid."""


class ImageError(SanetBenchError):
    """An image cannot be read or has an unusable size."""


class GridError(SanetBenchError):
    """A test grid is unusable: a folder without images, an image not fetched yet, a missing package."""


class WeightsError(SanetBenchError):
    """A checkpoint is missing, corrupt or does not match the expected layout."""


class DownloadError(SanetBenchError):
    """A download failed (HTTP status, unreachable host, checksum mismatch, disk full)."""


class OfflineError(DownloadError):
    """A download was needed but the network is disabled (--offline / SANET_BENCH_OFFLINE=1)."""


class UnknownNameError(SanetBenchError):
    """An unknown method, metric, grid or preset name."""


_CLAUSE_END = re.compile(r"[.;:,!?)](?=\s)")


def shorten(text: str, limit: int = 300) -> str:
    """``text`` on one line, at most ``limit`` characters: a longer text is cut at the last sentence or clause
    end (``.``, ``;``, ``:``, ``,``) that fits and marked with an ellipsis, never inside a sentence.

    Use it wherever a foreign message (torch, PIL, requests) is embedded in a one-line error."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    ends = [m.end() for m in _CLAUSE_END.finditer(text, 0, limit - 2)]
    cut = ends[-1] if ends else text.rfind(" ", 0, limit - 2)
    return text[: cut if cut > 0 else limit - 2].rstrip(" ,;:") + " …"


_OOM = re.compile(r"can't allocate memory|not enough memory|out of memory", re.IGNORECASE)


def is_out_of_memory(e: BaseException) -> bool:
    """Whether ``e`` is an allocation failure: ``MemoryError``, torch's (CUDA) ``OutOfMemoryError`` or the CPU
    allocator's ``RuntimeError`` ("DefaultCPUAllocator: can't allocate memory")."""
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":
        return True
    return isinstance(e, RuntimeError) and bool(_OOM.search(str(e)))
