"""Summary table and plot of a GPU sweep (``benchmarks/gpu_sweep.sh``): every profile run under a folder.

    PYTHONPATH=. python benchmarks/sweep_summary.py benchmarks/results/NVIDIA-H200

Writes ``summary.txt`` (median time / peak memory per method, size and configuration) and ``sweep.png``
(latency and peak memory against size, fp32 and bf16, eager) into the folder. A configuration is read from
each record (dtype, ``--compile``), not from the folder's name, so runs split by size merge into one column;
a cell measured twice keeps the record of the run that started last. Peak memory is CUDA's
``max_memory_allocated`` during the timed calls, above what was allocated before them (the profiler's
convention).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sanet_bench.io import format_table  # noqa: E402
from sanet_bench.profiling import read_records  # noqa: E402


def config_label(rec: dict) -> str:
    return rec["dtype"] + ("+compile" if (rec.get("flags") or {}).get("compile") else "")


def _started(rec_file: Path) -> str:
    """When the run began (its manifest's ISO time; file times do not survive a git checkout)."""
    manifest = rec_file.with_name("manifest.json")
    return json.loads(manifest.read_text()).get("started", "") if manifest.is_file() else ""


def collect(folder: Path) -> dict[tuple[str, int, str], dict]:
    """The last record of each (method, size, configuration) over every run folder below ``folder``."""
    cells: dict[tuple[str, int, str], dict] = {}
    for rec_file in sorted(folder.glob("*/records.jsonl"), key=_started):
        for rec in read_records(rec_file):
            cells[(rec["method"], int(rec["size"]), config_label(rec))] = rec
    return cells


def shown(rec: dict) -> str:
    if rec["status"] != "ok":
        return rec["status"]
    if rec.get("median_s") is None:
        return "untimed"
    text = f"{rec['median_s'] * 1000:.1f} ms"
    if rec.get("peak_mem_bytes") is not None:
        text += f" / {rec['peak_mem_bytes'] / 2**30:.2f} GiB"
    return text


def table(cells: dict[tuple[str, int, str], dict]) -> str:
    order = {"fp32": 0, "bf16": 1, "tf32": 2, "fp16": 3}
    configs = sorted({c for _, _, c in cells},
                     key=lambda c: ("compile" in c, order.get(c.split("+")[0], 4), c))
    keys = sorted({(m, s) for m, s, _ in cells})
    rows = [[m, s, *[shown(cells[(m, s, c)]) if (m, s, c) in cells else "-" for c in configs]]
            for m, s in keys]
    gpus = sorted({(r.get("env") or {}).get("gpu") or "?" for r in cells.values()})
    head = f"GPU: {', '.join(gpus)}; median of the timed calls / peak allocated memory; '-': not run\n"
    return head + format_table(["method", "size", *configs], rows, left=(0,))


def plot(cells: dict[tuple[str, int, str], dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = [c for c in ("fp32", "bf16") if any(k[2] == c for k in cells)]
    methods = sorted({m for m, _, _ in cells})
    fig, axes = plt.subplots(2, len(configs), figsize=(6 * len(configs), 8), squeeze=False)
    markers = "osD^v<>pP*Xh"
    for j, cfg in enumerate(configs):
        for i, m in enumerate(methods):
            ok = sorted((s, r) for (mm, s, c), r in cells.items()
                        if mm == m and c == cfg and r["status"] == "ok" and r.get("median_s") is not None)
            if not ok:
                continue
            sizes = [s for s, _ in ok]
            style = dict(marker=markers[i % len(markers)], linestyle="-" if i < 10 else "--", label=m)
            axes[0][j].plot(sizes, [r["median_s"] for _, r in ok], **style)
            axes[1][j].plot(sizes, [r["peak_mem_bytes"] / 2**30 for _, r in ok], **style)
        axes[0][j].set_title(f"{cfg}, eager: median time per stylize call")
        axes[1][j].set_title(f"{cfg}, eager: peak allocated memory")
        axes[0][j].set_ylabel("seconds")
        axes[1][j].set_ylabel("GiB")
        for ax in (axes[0][j], axes[1][j]):
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("content = style size (px per side)")
            ax.grid(True, which="both", alpha=0.3)
    axes[0][-1].legend(fontsize=8, ncol=2)
    gpus = sorted({(r.get("env") or {}).get("gpu") or "?" for r in cells.values()})
    fig.suptitle(f"sanet-bench profile on {', '.join(gpus)} (random weights; timings do not depend on them)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="folder holding one profile run per subfolder")
    args = ap.parse_args(argv)
    cells = collect(args.folder)
    if not cells:
        print(f"error: {args.folder}: no */records.jsonl; run benchmarks/gpu_sweep.sh first", file=sys.stderr)
        return 2
    text = table(cells)
    (args.folder / "summary.txt").write_text(text + "\n")
    plot(cells, args.folder / "sweep.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
