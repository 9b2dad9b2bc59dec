"""The default backend: every item runs in this process, in order, on one worker."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any


class LocalBackend:
    """One worker in the driver's process; ``map`` yields ``(item, result)`` in the items' order."""

    name = "local"

    def __init__(self) -> None:
        self.retries: dict[str, str] = {}  # nothing is retried in-process

    def __enter__(self) -> LocalBackend:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def map(
        self, make_worker: Callable[[], Callable[..., Any]], items: Iterable[Any],
        args: Callable[[Any], tuple] = lambda item: (item,), group: Callable[[Any], Any] = lambda item: None,
        key: Callable[[Any], str] = str,
    ) -> Iterator[tuple[Any, Any]]:
        worker = make_worker()
        for item in items:
            yield item, worker(*args(item))
