"""The identity-loss ablation of SANet (Park & Lee 2019, Sec. 4.2 and Fig. 5): does L_identity matter?

Variants of the objective ``L = l_c L_c + l_s L_s + l_id1 L_id1 + l_id2 L_id2`` (Eq. 4):

* ``full``: the configured lambdas (1, 3, 50, 1);
* ``no-identity``: ``l_id1 = l_id2 = 0``;
* ``pixel-only``: ``l_id2 = 0`` (Eq. 7's pixel term only);
* ``feature-only``: ``l_id1 = 0`` (Eq. 7's feature term only).

Every variant trains with :func:`sanet_bench.train.train` from the same seed, data and initial weights
(only the lambdas differ), into ``out/variants/<variant>/``; an interrupted ablation resumes there. Each
variant is then loaded like any checkpoint folder (``load_method("sanet", "official", weights_dir=...)``)
and evaluated on the same (content, style) pairs of a grid with the metric registry's ``evaluate`` (the
function the runner scores cells with), with the metrics' own VGG (the official file when cached, else
the labelled offline encoder). ``out/ablation.md`` shows the settings, the metric table, the loss curves
and the outputs side by side. Empty ``content_dir``/``style_dir`` in the train settings mean: train on
the grid's own content and style images (linked into ``out/data``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .api import load_method, resolve_device
from .config import to_dict
from .errors import ConfigError
from .images import save_image
from .io import atomic_write_bytes
from .train import LOG_FILE, TrainConfig, TrainResult, read_losses, train
from .weights import META_FILE

VARIANTS: dict[str, dict[str, float]] = {
    "full": {},
    "no-identity": {"lambda_id1": 0.0, "lambda_id2": 0.0},
    "pixel-only": {"lambda_id2": 0.0},
    "feature-only": {"lambda_id1": 0.0},
}
LOSS_TERMS = ("loss_c", "loss_s", "l_identity1", "l_identity2")


@dataclass
class AblationConfig:
    """``sanet-bench ablate identity`` settings (TOML table ``[ablation]``; training in ``[train]``)."""

    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    grid: str = "embedded"
    size: int = 256  # evaluation content and style size (shorter side)
    max_pairs: int | None = 6
    metrics: list[str] = field(default_factory=lambda: ["content_loss", "style_loss", "ssim"])
    out: str = "runs/ablation-identity"
    device: str = "cpu"

    def validate(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or not self.variants:
            got = unknown[0] if unknown else "(none)"
            raise ConfigError(f"ablation: unknown variant {got!r}; choose from {', '.join(VARIANTS)}")
        from .registry import get_metric_spec

        for m in self.metrics:
            get_metric_spec(m)


@dataclass
class AblationResult:
    out: Path
    report: Path
    table: list[dict[str, Any]]  # one row per variant: lambdas, final losses, metric means
    seconds: dict[str, float]  # train / eval / report wall time


def _grid_folders(grid: Any, out: Path) -> tuple[Path, Path]:
    """Link (or copy) the grid's content and style files into ``out/data/{content,style}``."""
    import shutil

    dirs = []
    for role, images in (("content", grid.contents), ("style", grid.styles)):
        d = out / "data" / role
        d.mkdir(parents=True, exist_ok=True)
        for img in images:
            dst = d / f"{img.name}{Path(img.path).suffix}"
            if not dst.exists():
                try:
                    os.symlink(Path(img.path).resolve(), dst)
                except OSError:
                    shutil.copyfile(img.path, dst)
        dirs.append(d)
    return dirs[0], dirs[1]


def _metric_networks(metrics: list[str], device: torch.device) -> Any:
    from .metrics import build

    # weights_dir=None: a variant folder holds the encoder it was trained with (possibly the offline one)
    # under the official name, which must not be mistaken for the metric's official VGG.
    return build(metrics, weights_dir=None, device=device)


def evaluate_variant(
    weights_dir: Path, pairs: list[tuple[Any, Any]], size: int, metrics: list[str], nets: Any,
    images_dir: Path, device: torch.device,
) -> list[dict[str, Any]]:
    """Stylize every pair with the checkpoint in ``weights_dir``; one row per pair with metric values."""
    from .metrics import evaluate

    model = load_method("sanet", weights="official", weights_dir=weights_dir, device=device)
    rows = []
    for content_img, style_img in pairs:
        content, style = content_img.load(size), style_img.load(size)
        out = model.stylize(content, style).cpu()
        values, missing = evaluate(out, content, style, nets)
        rel = f"{content_img.name}__{style_img.name}.png"
        save_image(out, images_dir / rel)
        rows.append({"content": content_img.name, "style": style_img.name, "image": rel, **values,
                     "missing": missing})
    return rows


def run_ablation(train_cfg: TrainConfig, cfg: AblationConfig) -> AblationResult:
    """Train every variant, evaluate each on the same pairs, write ``ablation.md`` (see the module doc)."""
    from .grids import get_grid

    cfg.validate()
    out = Path(cfg.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    grid = get_grid(cfg.grid)
    pairs = grid.pairs(cfg.max_pairs)
    if not pairs:
        raise ConfigError(f"ablation: grid {cfg.grid!r} gives no pairs; check the grid and max_pairs")
    if not train_cfg.content_dir or not train_cfg.style_dir:
        c, s = _grid_folders(grid, out)
        train_cfg = dataclasses.replace(train_cfg, content_dir=train_cfg.content_dir or str(c),
                                        style_dir=train_cfg.style_dir or str(s))
    device = resolve_device(cfg.device)

    t0 = time.perf_counter()
    trained: dict[str, TrainResult] = {}
    for v in cfg.variants:
        vcfg = dataclasses.replace(train_cfg, out=str(out / "variants" / v), device=cfg.device, **VARIANTS[v])
        trained[v] = train(vcfg)
    t1 = time.perf_counter()
    nets = _metric_networks(cfg.metrics, device)
    per_pair = {
        v: evaluate_variant(trained[v].out, pairs, cfg.size, cfg.metrics, nets, out / "images" / v, device)
        for v in cfg.variants
    }
    t2 = time.perf_counter()
    table = []
    for v in cfg.variants:
        vcfg = json.loads((trained[v].out / META_FILE).read_text())["config"]
        last = read_losses(trained[v].out / LOG_FILE)[-1]
        row: dict[str, Any] = {"variant": v, **{k: vcfg[k] for k in ("lambda_c", "lambda_s", "lambda_id1",
                                                                      "lambda_id2")}}
        row.update({f"train_{k}": last[k] for k in LOSS_TERMS})
        for m in cfg.metrics:
            vals = [r[m] for r in per_pair[v] if r[m] is not None]
            row[m] = sum(vals) / len(vals) if vals else None
        table.append(row)
    from .metrics import encoder_id, missing_components

    record = {
        "train": to_dict(train_cfg), "ablation": to_dict(cfg), "encoder": trained[cfg.variants[0]].encoder,
        "metrics_encoder": encoder_id(nets), "missing_networks": missing_components(nets), "table": table,
        "pairs": [[c.name, s.name] for c, s in pairs], "per_pair": per_pair,
        "seconds_per_step": {v: trained[v].seconds_per_step for v in cfg.variants},
    }
    atomic_write_bytes(out / "ablation.json", (json.dumps(record, indent=1, default=str) + "\n").encode())
    report = render(out, record, pairs)
    t3 = time.perf_counter()
    return AblationResult(out, report, table, {"train": t1 - t0, "eval": t2 - t1, "report": t3 - t2})


# ------------------------------------------------------------------------------------------------ report
def _fmt(x: Any) -> str:
    return "—" if x is None else f"{x:.4g}" if isinstance(x, float) else str(x)


def _loss_figure(out: Path, variants: list[str]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(LOSS_TERMS), figsize=(4 * len(LOSS_TERMS), 3.2))
    for v in variants:
        rows = read_losses(out / "variants" / v / LOG_FILE)
        for ax, term in zip(axes, LOSS_TERMS, strict=True):
            ax.plot([r["iteration"] for r in rows], [r[term] for r in rows], label=v)
    for ax, term in zip(axes, LOSS_TERMS, strict=True):
        ax.set_title(f"{term} (unweighted)")
        ax.set_xlabel("iteration")
        ax.set_yscale("log")
    axes[0].legend()
    fig.tight_layout()
    path = out / "loss_curves.png"
    _save_fig(fig, path)
    plt.close(fig)
    return path


def _outputs_figure(out: Path, variants: list[str], pairs: list[tuple[Any, Any]], size: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .images import load_image, to_uint8

    cols = ["content", "style", *variants]
    size_in = (2.2 * len(cols), 2.2 * len(pairs))
    fig, axes = plt.subplots(len(pairs), len(cols), figsize=size_in, squeeze=False)
    for i, (c, s) in enumerate(pairs):
        tiles = [c.load(size), s.load(size)]
        tiles += [load_image(out / "images" / v / f"{c.name}__{s.name}.png") for v in variants]
        for j, tile in enumerate(tiles):
            ax = axes[i][j]
            ax.imshow(to_uint8(tile))
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(cols[j], fontsize=9)
    fig.tight_layout()
    path = out / "outputs.png"
    _save_fig(fig, path)
    plt.close(fig)
    return path


def _save_fig(fig: Any, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(path, buf.getvalue())


def render(out: Path, record: dict[str, Any], pairs: list[tuple[Any, Any]]) -> Path:
    """``out/ablation.md`` with the settings, the metric table, the loss curves and the outputs."""
    t, a = record["train"], record["ablation"]
    variants = a["variants"]
    _loss_figure(out, variants)
    _outputs_figure(out, variants, pairs, a["size"])
    enc = record["encoder"]
    enc_line = enc.get("id") or f"{enc['kind']} {enc.get('path')} sha256={enc.get('sha256')}"
    lines = [
        "# SANet identity-loss ablation",
        "",
        "Park & Lee 2019, Eq. 4-8: the variants differ only in the identity-loss weights (same seed, data, "
        "initial weights).",
        "",
        "## Settings",
        "",
        f"- training: {t['iters']} iterations, batch {t['batch']}, {t['crop']} px crops of images resized to "
        f"{t['load_size']} px ({t['resize']}), Adam lr {t['lr']}, decay {t['lr_decay']}, seed {t['seed']}",
        f"- training images: content `{t['content_dir']}`, style `{t['style_dir']}`",
        f"- training encoder: {enc_line}",
        f"- evaluation: grid `{a['grid']}`, {len(pairs)} pairs at {a['size']} px, metrics "
        f"{', '.join(a['metrics'])} on the saved 8-bit outputs",
        f"- metrics encoder: {record['metrics_encoder']}",
        "- seconds per training step: "
        + ", ".join(f"{v} {s:.2f}" for v, s in record["seconds_per_step"].items()),
    ]
    if record["missing_networks"]:
        lines.append(f"- missing metric networks: {record['missing_networks']}")
    cols = ["variant", "lambda_id1", "lambda_id2", *[f"train_{k}" for k in LOSS_TERMS], *a["metrics"]]
    lines += ["", "## Metrics (mean over the pairs; training losses at the last iteration)", "",
              "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(row[c]) for c in cols) + " |" for row in record["table"]]
    lines += ["", "## Loss curves", "", "![loss curves](loss_curves.png)", "",
              "## Outputs (same pairs across variants)", "", "![outputs](outputs.png)", ""]
    path = out / "ablation.md"
    atomic_write_bytes(path, "\n".join(lines).encode())
    return path
