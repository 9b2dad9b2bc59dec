"""The Ray backend: cells on a pool of actors across a Ray cluster; profile tasks on each kind of node.

``RayBackend(address)`` connects to ``address`` (``ray start --head`` prints it; ``"auto"``: the cluster
started on this machine) or, without one, starts a Ray cluster on this machine and stops it on exit.

* :meth:`RayBackend.map` (the grid): ``workers`` actors, each built once with ``make_worker()`` (so a
  method's model loads once per actor and stylizes many cells), each asking for ``cpus`` CPUs (and the same
  number of torch threads) and ``gpus`` GPUs. Items are handed out one at a time, an actor preferring items
  of the group (method) it ran last; large arguments (tensors) go to the object store once. An actor that
  dies (killed, out of memory) is replaced and its items are retried up to ``max_retries`` times (each
  retry recorded in :attr:`retries`); after that the item's result is a :class:`WorkerLost`.
* :meth:`RayBackend.node_probe` and :meth:`RayBackend.chains` (the profile): a probe on every alive node, and
  chains of calls pinned to one node each (a fresh worker process per call, its own GPU on CUDA), chains in
  parallel, the calls of a chain in order.

Only the driver writes files: results come back as values.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

from ..errors import ConfigError
from . import WorkerLost

EXTRA = "pip install 'sanet-bench[ray]'"
# One item per actor at a time: when an actor dies, the item it held is the one that killed it (with two,
# a finished item's reply can die with the process and the wrong item would be charged the retry).
IN_FLIGHT = 1


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--backend ray needs Ray, which is not installed; {EXTRA}") from None
    return ray


class _Actor:
    """Holds one worker (``make_worker()``) for the life of the actor."""

    def __init__(self, make_worker: Callable[[], Callable[..., Any]], threads: int):
        if threads:
            torch.set_num_threads(threads)
        self.worker = make_worker()

    def call(self, *args: Any) -> Any:
        return self.worker(*args)


def _lost_reason(e: BaseException) -> str:
    ray = _ray()
    if isinstance(e, ray.exceptions.OutOfMemoryError) or "out of memory" in str(e).lower():
        return "the Ray worker ran out of memory and was killed"
    if "creation task" in str(e):  # the worker's constructor raised: say what it raised
        last = [ln for ln in str(e).splitlines() if ln.strip()][-1].strip()
        return f"the Ray worker could not start ({last[:200]})"
    return f"the Ray worker died ({type(e).__name__})"


class RayBackend:
    """Ray as the backend of a run or a profile (see the module doc)."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int = 0, gpus: float = 0, cpus: float = 1,
                 max_retries: int = 1):
        self.address, self.workers, self.gpus, self.cpus = address, workers, gpus, cpus
        self.max_retries = max_retries
        self.retries: dict[str, str] = {}  # item key -> why it was retried (the last reason)
        self._owns = False
        self.ray = _ray()

    def __enter__(self) -> RayBackend:
        if not self.ray.is_initialized():
            try:
                self.ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                              logging_level="WARNING")
            except ConnectionError as e:
                raise ConfigError(
                    f"cannot reach the Ray cluster at {self.address!r} ({e}); start one with `ray start "
                    "--head` and pass the address it prints, or leave --address out for a local one"
                ) from None
            self._owns = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._owns:
            self.ray.shutdown()

    def pool_size(self) -> int:
        """``workers``, or as many as the cluster's GPUs (``gpus``) or CPUs (else) hold."""
        if self.workers:
            return self.workers
        res = self.ray.cluster_resources()
        n = int(res.get("GPU", 0) // self.gpus) if self.gpus else int(res.get("CPU", 1) // self.cpus)
        if n < 1:
            kind = "GPU" if self.gpus else "CPU"
            raise ConfigError(f"the Ray cluster has no free {kind} for a worker ({res}); add nodes with one")
        return n

    def map(
        self, make_worker: Callable[[], Callable[..., Any]], items: Iterable[Any],
        args: Callable[[Any], tuple] = lambda item: (item,), group: Callable[[Any], Any] = lambda item: None,
        key: Callable[[Any], str] = str,
    ) -> Iterator[tuple[Any, Any]]:
        """``(item, worker(*args(item)))`` as they finish, over a pool of actors (see the module doc)."""
        ray = self.ray
        queue = collections.deque(items)
        n = min(self.pool_size(), len(queue))
        actor_cls = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_restarts=0)(_Actor)
        threads = int(self.cpus) if self.cpus >= 1 else 1
        actors: dict[Any, Any] = {}  # handle -> last group
        pending: dict[Any, tuple[Any, Any]] = {}  # object ref -> (item, actor)
        attempts: collections.Counter[str] = collections.Counter()
        refs: dict[int, tuple[Any, Any]] = {}  # id(tensor) -> (tensor, ref): each tensor put once

        def put(a: Any) -> Any:
            if not isinstance(a, torch.Tensor):
                return a
            if id(a) not in refs:
                refs[id(a)] = (a, ray.put(a))
            return refs[id(a)][1]

        def feed(actor: Any) -> None:
            while queue and sum(a is actor for _, a in pending.values()) < IN_FLIGHT:
                last = actors[actor]
                pick = next((it for it in queue if group(it) == last), queue[0])
                queue.remove(pick)
                actors[actor] = group(pick)
                pending[actor.call.remote(*(put(a) for a in args(pick)))] = (pick, actor)

        try:
            for _ in range(n):
                actors[actor_cls.remote(make_worker, threads)] = None
            for actor in list(actors):
                feed(actor)
            while pending:
                [ref], _ = ray.wait(list(pending), num_returns=1)
                item, actor = pending.pop(ref)
                try:
                    yield item, ray.get(ref)
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                        ray.exceptions.OutOfMemoryError) as e:
                    reason = _lost_reason(e)
                    del actors[actor]  # replaced; the item it held is charged an attempt
                    ray.kill(actor)
                    actors[actor_cls.remote(make_worker, threads)] = None
                    attempts[key(item)] += 1
                    if attempts[key(item)] <= self.max_retries:
                        self.retries[key(item)] = reason
                        queue.appendleft(item)
                    else:
                        n_tries = attempts[key(item)]
                        yield item, WorkerLost(f"{reason} on each of {n_tries} attempts; {_LOST_HINT}")
                for a in list(actors):
                    feed(a)
        finally:
            for actor in actors:
                ray.kill(actor)

    # ------------------------------------------------------------------------------------- profiling
    def node_probe(self, probe: Callable[[], Any]) -> dict[str, Any]:
        """``probe()`` run once on every alive node (with a GPU on CUDA); node id -> its result."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ray = self.ray
        kind, need = ("GPU", self.gpus) if self.gpus else ("CPU", self.cpus)
        nodes = [nd["NodeID"] for nd in ray.nodes()
                 if nd.get("Alive") and nd.get("Resources", {}).get(kind, 0) >= need]
        if not nodes:
            raise ConfigError(f"no alive Ray node has a {kind} to profile on; add one to the cluster")
        task = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0)(_call)
        refs = {
            node: task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
            .remote(probe) for node in nodes
        }
        return {node: ray.get(ref) for node, ref in refs.items()}

    def chains(
        self, fn: Callable[[Any], Any], chains: dict[Any, tuple[str, list[Any]]],
        stop: Callable[[Any], bool] = lambda result: False,
    ) -> Iterator[tuple[Any, Any, Any]]:
        """``(chain, item, fn(item))``: each chain's items in order on its node (``chains[c] = (node id,
        items)``), each call in a fresh worker process; after a result for which ``stop`` is true, the rest
        of that chain yields ``None`` without running. A call whose worker dies yields (and passes ``stop``)
        a :class:`WorkerLost`."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ray = self.ray
        task = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_calls=1, max_retries=0)(_call)
        left = {c: collections.deque(items) for c, (_, items) in chains.items()}
        pending: dict[Any, tuple[Any, Any]] = {}

        def submit(c: Any) -> None:
            item = left[c].popleft()
            strategy = NodeAffinitySchedulingStrategy(chains[c][0], soft=False)
            pending[task.options(scheduling_strategy=strategy).remote(fn, item)] = (c, item)

        for c in chains:
            if left[c]:
                submit(c)
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            c, item = pending.pop(ref)
            try:
                result = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                    ray.exceptions.OutOfMemoryError) as e:
                result = WorkerLost(_lost_reason(e))
            yield c, item, result
            if stop(result):
                while left[c]:
                    yield c, left[c].popleft(), None
            elif left[c]:
                submit(c)


_LOST_HINT = "lower --sizes or give the Ray workers more memory"


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)
