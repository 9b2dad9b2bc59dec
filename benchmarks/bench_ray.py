"""Grid throughput on Ray: cells/s with 1 and 2 workers on this machine, against the local backend.

    PYTHONPATH=. python benchmarks/bench_ray.py [--methods adain,sanet] [--size 128] [--pairs 4]

Each run writes a fresh folder (a temporary directory), ``weights="random"``, ``metrics=["ssim"]``, no
references, profile or report. Printed per backend: cells, wall seconds, cells/s, and the driver's CPU
seconds per cell (``time.process_time`` of this process over the run: planning, scheduling, receiving rows
and PNGs, writing them) — the driver's overhead per cell that bounds how many workers it can keep busy.
The Ray cluster is started once, before the timed runs (its start-up is not counted).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import ray
import torch

from sanet_bench import runner
from sanet_bench.config import RunConfig


def timed(cfg: RunConfig) -> tuple[int, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    summary = runner.run(cfg, progress=False)
    assert summary.ok == summary.cells, f"{summary.failed} cells failed"
    return summary.cells, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="adain,sanet")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--pairs", type=int, default=4)
    a = ap.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    base = dict(methods=a.methods.split(","), sizes=[a.size], max_pairs=a.pairs, metrics=["ssim"],
                weights="random", references=False, profile=False, report=False)
    threads = torch.get_num_threads()
    print(f"{'backend':<22}{'cells':>6}{'wall s':>9}{'cells/s':>9}{'driver CPU s/cell':>19}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, kw in (
            (f"local ({threads} threads)", {}),
            ("local (1 thread)", {"_threads": 1}),
            ("ray, 1 worker", {"backend": "ray", "workers": 1}),
            ("ray, 2 workers", {"backend": "ray", "workers": 2}),
        ):
            torch.set_num_threads(kw.pop("_threads", threads))
            cfg = RunConfig(**base, **kw, out=str(Path(tmp) / name.replace(" ", "_")))
            cells, wall, cpu = timed(cfg)
            torch.set_num_threads(threads)
            print(f"{name:<22}{cells:>6}{wall:>9.2f}{cells / wall:>9.2f}{cpu / cells * 1e3:>16.1f} ms")
    ray.shutdown()


if __name__ == "__main__":
    main()
