"""Latency, peak memory and FLOPs of each method's ``stylize`` per size, as JSONL records.

One cell is (method, size, dtype, flags). Inputs are seeded ``torch.rand`` images, content and style both
``size`` x ``size``, batch 1, at the method's default alpha. Each cell runs, in order:

1. CPU memory (fresh process only): a priming call at 64 px (one-time library initialisation, about 40 MB,
   stays out of the number), then one untimed call at ``size`` with the peak-RSS mark reset before it;
2. FLOPs: one untimed call under ``FlopCounterMode`` (its own bookkeeping would distort memory);
3. ``warmup`` untimed calls (every cell is a new shape, so warm-up happens again for each one: cuDNN
   autotuning, allocator growth, ``torch.compile`` recompilation);
4. ``repeats`` timed calls. CPU: ``time.perf_counter``; CUDA: ``torch.cuda.Event`` pairs around the call,
   read after a synchronise. Stages (encode / transform / decode, where a method has them) are timed in the
   same calls through ``Method.stage_hook`` (CUDA events per stage, no extra synchronisation); with
   ``--compile`` no stage hook is attached, so stages are not split.

Records store the raw samples (``samples_s``), their median and IQR (75th - 25th percentile, numpy's
linear interpolation), per-stage medians, FLOPs and achieved GFLOP/s (FLOPs / median time).

Peak memory conventions (``peak_mem_convention`` in every record):

* CUDA: ``torch.cuda.max_memory_allocated`` over the warm-up and timed calls, after
  ``reset_peak_memory_stats``, minus ``memory_allocated`` before them (weights and inputs excluded; cuDNN
  workspaces included). It is in-process: the caching allocator's statistics isolate each cell.
* CPU: peak RSS delta in a fresh process: each cell runs in its own ``spawn`` worker; the heap memory freed
  so far (model loading, the priming call) is handed back to the kernel (glibc ``malloc_trim(0)``), else the
  call would reuse those resident pages and the RSS would not move; then the kernel's peak-RSS mark
  (``VmHWM``) is reset to the current RSS just before the measured call (``/proc/self/clear_refs``) and the
  delta is ``VmHWM`` after it minus ``VmRSS`` before it, so the loaded model and inputs are excluded.
  ``RssAnon`` is also polled (2 ms) and its growth kept if larger: the kernel may evict file-backed pages
  (shared libraries) under memory pressure during the call, which lowers ``VmHWM``. Where ``clear_refs``
  is unavailable it is ``ru_maxrss`` growth over that call (a lower bound).
  ``tracemalloc`` is not used: it does not see torch's allocations. A CPU cell run in-process
  (``isolate=False``) records no peak memory: the high-water mark would carry over from earlier cells.

FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` over one call (2 per multiply-add of convolutions,
matmuls and attention; elementwise ops are not counted; 0 from a method running outside torch, e.g. ONNX,
is stored as ``None``). CPU scaled-dot-product attention and NNPACK's Winograd convolutions, which the
counter does not know, are counted with its formulas for the other SDPA kernels and for a direct
convolution: the work a call stands for, not the multiplications Winograd saves.

Status: ``ok``; ``oom`` (out of memory: CUDA OOM, CPU allocation failure, or the worker killed by
SIGKILL); ``error`` (one-line message in ``error``); ``skipped-after-oom`` (a larger size of a method that ran
out of memory). Sizes run in ascending order.

Backends: ``local`` (this machine, ``cfg.device``) or ``ray``: one task per (node type, method, size), each in
a fresh worker process with its own GPU on CUDA (``cuda`` there is the GPU Ray gives the task), pinned to
one node of each type — node types are the distinct :func:`device_identity` of the alive nodes — and the
sizes of a (node type, method) in ascending order. Every record carries its node's ``env``, so one profile
folder may hold several devices (``manifest.json``: ``devices``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import multiprocessing as mp
import os
import resource
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .backends import WorkerLost, get_backend
from .config import ProfileConfig
from .errors import ConfigError, SanetBenchError, is_out_of_memory, shorten
from .io import JsonlStore, atomic_write_bytes
from .method import check_fast_path, prepare
from .nn import winograd
from .provenance import environment
from .results import read_manifest

PRIME_SIZE = 64  # the priming call before a CPU memory measurement
STATUSES = ("ok", "oom", "error", "skipped-after-oom")
RECORDS = "records.jsonl"
MANIFEST = "manifest.json"
# Small optimisation budgets so iterative methods can be timed at all; recorded in each record's options.

MEM_CUDA = (
    "cuda max_memory_allocated over the warm-up and timed calls minus memory_allocated before them "
    "(weights and inputs excluded)"
)
MEM_CPU_HWM = (
    "cpu peak RSS delta in a fresh process: free heap returned to the kernel (glibc malloc_trim(0)), then "
    "VmHWM after one call minus VmRSS before it (or polled RssAnon growth, if larger)"
)
MEM_CPU_HWM_NO_TRIM = (
    "cpu peak RSS delta in a fresh process: VmHWM after one call minus VmRSS before it (or polled RssAnon "
    "growth, if larger); no malloc_trim here, so heap freed before the call may be reused (a lower bound)"
)
MEM_CPU_MAXRSS = "cpu ru_maxrss growth over one call in a fresh process (lower bound: no clear_refs)"
MEM_NONE = "not measured: CPU cell run in-process (isolate=False)"


# ---------------------------------------------------------------------------------------------- environment
def device_identity(env: dict[str, Any]) -> str:
    """The hardware a record's timings belong to: the GPU name on CUDA, else the CPU model."""
    if str(env.get("device", "cpu")).startswith("cuda"):
        return f"GPU {env.get('gpu')}"
    return f"CPU {env.get('cpu')}"


# ---------------------------------------------------------------------------------------------- measuring
class StageTimer:
    """``Method.stage_hook``: accumulates the time of each named stage within one call.

    CPU: ``perf_counter`` (torch CPU ops are synchronous). CUDA: an event pair per stage, read in
    :meth:`collect` after the caller has synchronised, so the hook adds no synchronisation of its own.
    """

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self._totals: dict[str, float] = defaultdict(float)
        self._events: list[tuple[str, Any, Any]] = []

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            try:
                yield
            finally:
                end.record()
                self._events.append((name, start, end))
        else:
            t0 = time.perf_counter()
            try:
                yield
            finally:
                self._totals[name] += time.perf_counter() - t0

    def collect(self) -> dict[str, float]:
        """Seconds per stage since the last collect (CUDA: call after synchronising)."""
        for name, start, end in self._events:
            self._totals[name] += start.elapsed_time(end) / 1000.0
        out = dict(self._totals)
        self._totals.clear()
        self._events.clear()
        return out


def _sdpa_cpu_flop(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(q_shape, k_shape, v_shape)


def _nnpack_conv_flop(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import conv_flop_count

    return conv_flop_count(x_shape, w_shape, out_shape, transposed=False)


def _flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    mapping = {winograd.nnpack_conv: _nnpack_conv_flop}
    sdpa = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if sdpa is not None:
        mapping[sdpa] = _sdpa_cpu_flop
    return FlopCounterMode(display=False, custom_mapping=mapping)


def _proc_status_kib(*keys: str) -> dict[str, int]:
    """Fields of /proc/self/status in KiB (empty where /proc is unavailable)."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in keys:
                out[key] = int(line.split()[1])
    return out


def release_free_heap() -> bool:
    """Hand the C heap's free pages back to the kernel (glibc ``malloc_trim(0)``); False where unavailable.

    Without it, pages freed before a measured call stay resident and the call reuses them, so its
    allocations do not raise the RSS (a 256 px SANet call read as 1.3 MiB)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl)
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True


def _maxrss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # bytes on macOS, KiB on Linux


@contextlib.contextmanager
def rss_peak_delta(poll_s: float = 0.002) -> Iterator[dict[str, Any]]:
    """Peak RSS growth of the block: ``out["bytes"]``, ``out["convention"]``, ``out["baseline_bytes"]``.

    Free heap is first returned to the kernel (:func:`release_free_heap`), so what the block allocates
    shows as new resident pages instead of reusing freed ones.

    The kernel's mark (``VmHWM``) counts file-backed pages too, which the kernel may evict under memory
    pressure while the block runs, hiding growth; so ``RssAnon`` is also polled every ``poll_s`` seconds by a
    thread (torch releases the GIL) and the larger of the two deltas is kept.
    """
    out: dict[str, Any] = {}
    trimmed = release_free_heap()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS (Linux >= 4.0)
        hwm = "VmHWM" in _proc_status_kib("VmHWM")
    except OSError:
        hwm = False
    before = _proc_status_kib("VmRSS", "RssAnon") if hwm else {"VmRSS": _maxrss_bytes() // 1024}
    anon_peak = [before.get("RssAnon", 0)]
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(poll_s):
            anon_peak[0] = max(anon_peak[0], _proc_status_kib("RssAnon").get("RssAnon", 0))

    poller = threading.Thread(target=poll, daemon=True) if "RssAnon" in before else None
    if poller is not None:
        poller.start()
    out["baseline_bytes"] = before["VmRSS"] * 1024
    try:
        yield out
    finally:
        stop.set()
        if poller is not None:
            poller.join()
            anon_peak[0] = max(anon_peak[0], _proc_status_kib("RssAnon").get("RssAnon", 0))
        peak = _proc_status_kib("VmHWM")["VmHWM"] * 1024 if hwm else _maxrss_bytes()
        anon_delta = (anon_peak[0] - before.get("RssAnon", 0)) * 1024
        out["bytes"] = max(0, peak - out["baseline_bytes"], anon_delta)
        out["convention"] = (MEM_CPU_HWM if trimmed else MEM_CPU_HWM_NO_TRIM) if hwm else MEM_CPU_MAXRSS


def _one_line(e: BaseException) -> str:
    if isinstance(e, SanetBenchError):
        return str(e)
    text = shorten(str(e))
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _classify(e: BaseException) -> str:
    return "oom" if is_out_of_memory(e) else "error"


def measure_cell(cell: dict[str, Any]) -> dict[str, Any]:
    """Run one cell in this process; returns the measured part of its record (failures become a status)."""
    out: dict[str, Any] = {"status": "ok", "error": None}
    try:
        out.update(_measure(cell))
    except (Exception, MemoryError) as e:  # an OOM or a failing method is a recorded result, not a crash
        out.update(status=_classify(e), error=_one_line(e))
    finally:
        if torch.device(cell["device"]).type == "cuda" and torch.cuda.is_available():
            torch.cuda.empty_cache()
    out["threads"] = torch.get_num_threads()
    return out


def _measure(cell: dict[str, Any]) -> dict[str, Any]:
    from .api import load_method

    if cell.get("threads"):
        torch.set_num_threads(int(cell["threads"]))
    dev = torch.device(cell["device"])
    cuda = dev.type == "cuda"
    model = load_method(
        cell["method"], weights=cell["weights"], weights_dir=cell["weights_dir"], seed=cell["seed"],
        device=dev,
    )
    prepare(model, cell["dtype"], cell["channels_last"], cell["compile"], cell["winograd"])
    dtype, fmt = model.compute_dtype, model.memory_format
    g = torch.Generator().manual_seed(cell["seed"])
    size = int(cell["size"])
    content, style = (
        torch.rand(1, 3, size, size, generator=g).to(dev, dtype).contiguous(memory_format=fmt)
        for _ in range(2)
    )
    timer = StageTimer(dev)
    if not cell["compile"]:  # stage hooks would break the compiled graph: stages not split
        model.stage_hook = timer
    options = cell["options"]

    def call() -> None:
        model.stylize(content, style, **options)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(dev)

    result: dict[str, Any] = {}
    if cell["measure_cpu_mem"]:
        p = max(PRIME_SIZE, model.spec.min_size)
        prime = torch.rand(1, 3, p, p, generator=g).to(dev, dtype).contiguous(memory_format=fmt)
        model.stylize(prime, prime, **options)  # one-time library initialisation stays out of the measurement
        with rss_peak_delta() as mem:
            call()
        result.update(
            peak_mem_bytes=mem["bytes"], peak_mem_convention=mem["convention"],
            mem_baseline_bytes=mem["baseline_bytes"],
        )
    else:
        result.update(peak_mem_bytes=None, peak_mem_convention=MEM_NONE, mem_baseline_bytes=None)
    if cell["count_flops"]:
        with _flop_counter() as counter:
            call()
        result["flops"] = counter.get_total_flops() or None
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    for _ in range(cell["warmup"] if cell["warmup"] or cell["repeats"] else 1):  # CUDA peak: >= 1 call
        call()
    sync()
    timer.collect()
    samples: list[float] = []
    stages: dict[str, list[float]] = defaultdict(list)
    for _ in range(cell["repeats"]):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            end.synchronize()  # the stage events precede it on the same stream
            samples.append(start.elapsed_time(end) / 1000.0)
        else:
            t0 = time.perf_counter()
            call()
            samples.append(time.perf_counter() - t0)
        for name, secs in timer.collect().items():
            stages[name].append(secs)
    if cuda:
        result.update(
            peak_mem_bytes=torch.cuda.max_memory_allocated(dev) - base, peak_mem_convention=MEM_CUDA,
            mem_baseline_bytes=base,
        )
    result["samples_s"] = samples
    result["stages"] = {name: float(np.median(v)) for name, v in stages.items()}
    result["weights_info"] = model.weights_info
    result["channels_last"] = bool(model.fast_path["channels_last"])  # as prepare() resolved them
    result["winograd"] = bool(model.fast_path["winograd"])
    return result


def _worker(cell: dict[str, Any], conn, notices_given: list[str]) -> None:
    from .api import demo_notices_given

    demo_notices_given().update(notices_given)
    try:
        conn.send(measure_cell(cell))
    finally:
        conn.close()


def measure_cell_isolated(cell: dict[str, Any]) -> dict[str, Any]:
    """:func:`measure_cell` in a fresh ``spawn`` process; a worker the kernel kills (SIGKILL) is an OOM.

    The worker prints the demo-weights notice only if this process has not (it has once a worker did)."""
    from .api import demo_notices_given

    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_worker, args=(cell, send, sorted(demo_notices_given())), daemon=True)
    proc.start()
    send.close()
    try:
        result = recv.recv()
    except EOFError:
        result = None
    finally:
        recv.close()
        proc.join()
    if result is not None:
        if (result.get("weights_info") or {}).get("source") == "demo":
            demo_notices_given().add(cell["method"])
        return result
    if proc.exitcode == -signal.SIGKILL:
        return {"status": "oom", "error": "the worker was killed by SIGKILL (most likely the OOM killer)"}
    return {"status": "error", "error": f"the worker exited with code {proc.exitcode} before reporting"}


# ---------------------------------------------------------------------------------------------- records
def summarize(samples: list[float]) -> tuple[float | None, float | None]:
    """Median and interquartile range (p75 - p25) of timing samples, in seconds."""
    if not samples:
        return None, None
    q25, med, q75 = np.percentile(np.asarray(samples, dtype=float), [25, 50, 75])
    return float(med), float(q75 - q25)


class RecordWriter:
    """``records.jsonl`` (the append-only store, :class:`sanet_bench.io.JsonlStore`; a new profile into the
    folder starts it afresh) and ``manifest.json`` in one folder."""

    def __init__(self, out_dir: Path, manifest: dict[str, Any]):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / RECORDS).unlink(missing_ok=True)
        self.store = JsonlStore(self.dir / RECORDS, ConfigError)
        self.count = 0
        self.manifest = manifest
        self._write_manifest()

    def add(self, record: dict[str, Any]) -> None:
        self.store.append(record)
        self.count += 1

    def finish(self, **extra: Any) -> None:
        self.manifest.update(extra, records=self.count)
        self.store.close()
        self._write_manifest()

    def _write_manifest(self) -> None:
        blob = json.dumps(self.manifest, indent=2, sort_keys=True, default=str) + "\n"
        atomic_write_bytes(self.dir / MANIFEST, blob.encode())


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def default_out_dir() -> Path:
    return Path("runs") / f"profile-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _validate(cfg: ProfileConfig) -> list[str]:
    from .api import list_methods, resolve_device
    from .registry import get_method_spec

    check_fast_path(cfg.dtype, cfg.device, cfg.winograd, cfg.compile)
    if not cfg.sizes or any(s <= 0 for s in cfg.sizes):
        raise ConfigError(f"sizes must be positive pixel counts, got {cfg.sizes}; e.g. --sizes 256,512")
    if cfg.repeats < 0 or cfg.warmup < 0:
        raise ConfigError(f"repeats and warmup must be >= 0 (got {cfg.repeats}, {cfg.warmup})")
    if cfg.threads is not None and cfg.threads < 1:
        raise ConfigError(f"threads must be >= 1, got {cfg.threads}")
    resolve_device(cfg.device)
    names = [get_method_spec(m).name for m in cfg.methods] if cfg.methods else list_methods()
    unknown = sorted(set(cfg.method_options) - set(names))
    if unknown:
        raise ConfigError(
            f"options given for {', '.join(unknown)}, which is not profiled; profiled: {', '.join(names)}"
        )
    return names


def profile(
    cfg: ProfileConfig, out_dir: str | os.PathLike, echo: Callable[[dict[str, Any]], None] | None = None
) -> list[dict[str, Any]]:
    """Profile every (method, size) of ``cfg`` into ``out_dir`` (records.jsonl + manifest.json)."""
    from .registry import get_method_spec

    methods = _validate(cfg)
    dev = torch.device(cfg.device)
    remote = cfg.backend == "ray"
    isolate = remote or (dev.type == "cpu" if cfg.isolate is None else cfg.isolate)
    env = environment(dev)
    writer = RecordWriter(
        Path(out_dir),
        {"kind": "sanet-bench profile", "config": dataclasses.asdict(cfg), "methods": methods, "env": env,
         "started": _now(), "argv": sys.argv},
    )
    records: list[dict[str, Any]] = []
    chains: dict[str, list[dict[str, Any]]] = {}
    for name in methods:
        spec = get_method_spec(name)
        weights = spec.weights_kind(cfg.weights)
        options = spec.options_for(cfg.budget, cfg.method_options.get(name))
        chains[name] = [{
            "method": name, "size": size, "device": dev.type if remote else str(dev), "dtype": cfg.dtype,
            "channels_last": cfg.channels_last, "winograd": cfg.winograd, "compile": cfg.compile,
            "repeats": cfg.repeats,
            "warmup": cfg.warmup, "weights": weights, "weights_dir": cfg.weights_dir, "seed": cfg.seed,
            "threads": cfg.threads, "options": options, "count_flops": cfg.count_flops,
            "measure_cpu_mem": dev.type == "cpu" and isolate,
        } for size in sorted(set(cfg.sizes))]
    if remote:
        return _profile_ray(cfg, dev, chains, writer, echo)
    for name, cells in chains.items():
        oom_at: int | None = None
        for cell in cells:
            size = cell["size"]
            if oom_at is not None:
                measured = {"status": "skipped-after-oom", "error": f"{name} ran out of memory at {oom_at}px"}
            else:
                measured = measure_cell_isolated(cell) if isolate else measure_cell(cell)
            rec = _record(cell, measured, env, isolate)
            if rec["status"] == "oom":
                oom_at = size
            writer.add(rec)
            records.append(rec)
            if echo is not None:
                echo(rec)
    writer.finish(finished=_now(), devices=[device_identity(env)])
    return records


def _profile_ray(
    cfg: ProfileConfig, dev: torch.device, chains: dict[str, list[dict[str, Any]]], writer: RecordWriter,
    echo: Callable[[dict[str, Any]], None] | None,
) -> list[dict[str, Any]]:
    """:func:`profile`'s cells on Ray: each method's sizes, in order, on one node of each type."""
    import functools

    records: list[dict[str, Any]] = []
    with get_backend("ray", cfg.address, gpus=int(dev.type == "cuda")) as backend:
        types: dict[str, tuple[str, dict[str, Any]]] = {}  # device identity -> (a node of it, its env)
        for node, node_env in backend.node_probe(functools.partial(environment, dev.type)).items():
            types.setdefault(device_identity(node_env), (node, node_env))
        work = {(ident, name): (node, cells) for ident, (node, _) in types.items()
                for name, cells in chains.items()}
        oom_at: dict[tuple[str, str], int] = {}
        for chain, cell, measured in backend.chains(measure_cell, work, stop=_stops_chain):
            if measured is None:
                measured = {"status": "skipped-after-oom",
                            "error": f"{cell['method']} ran out of memory at {oom_at[chain]}px"}
            elif isinstance(measured, WorkerLost):
                msg = str(measured)
                measured = {"status": "oom" if "memory" in msg else "error", "error": msg}
            rec = _record(cell, measured, types[chain[0]][1], True)
            if rec["status"] == "oom":
                oom_at[chain] = cell["size"]
            writer.add(rec)
            records.append(rec)
            if echo is not None:
                echo(rec)
    writer.finish(finished=_now(), devices=sorted(types))
    return records


def _stops_chain(measured: Any) -> bool:
    """A (node type, method) chain stops at an OOM (its larger sizes are skipped) or a dead worker."""
    return isinstance(measured, WorkerLost) or measured.get("status") == "oom"


def _record(cell: dict[str, Any], measured: dict[str, Any], env: dict[str, Any], isolate: bool) -> dict:
    samples = measured.get("samples_s", [])
    median, iqr = summarize(samples)
    flops = measured.get("flops")
    flags = {"channels_last": measured.get("channels_last", cell["channels_last"]),
             "winograd": measured.get("winograd", cell["winograd"]), "compile": cell["compile"]}
    rec_env = dict(env, threads=measured.get("threads", env["threads"]), dtype=cell["dtype"], flags=flags)
    return {
        "method": cell["method"],
        "size": cell["size"],
        "style_size": cell["size"],
        "device": cell["device"],
        "dtype": cell["dtype"],
        "flags": flags,
        "options": cell["options"],
        "weights": cell["weights"],
        "weights_info": measured.get("weights_info"),
        "repeats": cell["repeats"],
        "warmup": cell["warmup"],
        "isolated": isolate,
        "median_s": median,
        "iqr_s": iqr,
        "samples_s": samples,
        "stages": measured.get("stages", {}),
        "peak_mem_bytes": measured.get("peak_mem_bytes"),
        "peak_mem_convention": measured.get("peak_mem_convention"),
        "mem_baseline_bytes": measured.get("mem_baseline_bytes"),
        "flops": flops,
        "gflops_per_s": flops / median / 1e9 if flops and median else None,
        "status": measured["status"],
        "error": measured.get("error"),
        "env": rec_env,
        "time": _now(),
    }


def profile_run(cfg, run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The job's step after the grid: profile a :class:`~sanet_bench.config.RunConfig`'s methods and sizes
    into ``run_dir/"profile"`` with its weights, device, seed and method options (CPU: a process per cell).

    Methods whose weights could not be loaded in the grid (the run's manifest records the error; the report
    lists them with the way to get their files) are not profiled: each would only fail again."""
    manifest = read_manifest(run_dir) or {}
    loaded = [m for m, info in manifest.get("weights", {}).items() if "error" not in info]
    methods = list(cfg.methods)
    if manifest:
        methods = [m for m in manifest.get("methods", cfg.methods) if m in loaded]
        if not methods:
            return []
    pcfg = ProfileConfig(
        methods=methods, sizes=list(cfg.profile_sizes or cfg.sizes), device=cfg.device,
        dtype=cfg.dtype, channels_last=cfg.channels_last, winograd=cfg.winograd, compile=cfg.compile,
        weights=cfg.weights,
        weights_dir=cfg.weights_dir, seed=cfg.seed, repeats=cfg.profile_repeats,
        # a run config may hold options for methods it does not run (the default's gatys iters)
        method_options={m: o for m, o in cfg.method_options.items() if m in methods or not methods},
        budget=cfg.budget, backend=cfg.backend, address=cfg.address,
    )
    return profile(pcfg, Path(run_dir) / "profile")


def records_path(path: str | os.PathLike) -> Path:
    """``records.jsonl`` given it, a profile folder, or a run folder holding ``profile/``."""
    p = Path(path)
    for cand in (p, p / RECORDS, p / "profile" / RECORDS):
        if cand.is_file():
            return cand
    raise ConfigError(f"{p}: no {RECORDS} here or in {p / 'profile'}; run `sanet-bench profile --out {p}`")


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The raw records of a profile run (see :func:`records_path` for what ``path`` may be)."""
    f = records_path(path)
    out = JsonlStore(f, ConfigError).read()
    for i, rec in enumerate(out, 1):
        if not isinstance(rec, dict) or "method" not in rec or "status" not in rec:
            raise ConfigError(
                f"{f}: record {i} is not a profile record (no method/status); pass a profile dir"
            )
    return out


def load_records(path: str | os.PathLike):
    """Profile records as a pandas DataFrame, one row per record.

    Nested fields are flattened: ``stages`` -> ``stage_<name>_s``, ``flags`` ->
    ``channels_last``/``winograd``/``compile``, ``env`` -> ``env_<key>`` and ``device_id``
    (:func:`device_identity`); ``samples_s`` stays a list; ``options`` becomes canonical JSON text.
    """
    import pandas as pd

    rows = []
    for rec in read_records(path):
        row = {k: v for k, v in rec.items() if k not in ("stages", "flags", "env", "options", "weights_info")}
        row.update({f"stage_{k}_s": v for k, v in (rec.get("stages") or {}).items()})
        row.update(rec.get("flags") or {})
        row.update({f"env_{k}": v for k, v in (rec.get("env") or {}).items() if k not in ("flags", "dtype")})
        row["device_id"] = device_identity(rec.get("env") or {})
        row["options"] = json.dumps(rec.get("options") or {}, sort_keys=True)
        rows.append(row)
    return pd.DataFrame(rows)
