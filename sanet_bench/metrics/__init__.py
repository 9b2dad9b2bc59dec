"""Image-quality metrics for style transfer: registered :class:`Metric` classes with their contract as data.

A metric (:mod:`.base`) declares what it compares, its direction, input range, convention and the weight
files it needs, and implements ``update(output, content, style)`` per cell, ``compute()`` per set and
``reset()``. Its networks come from a cache of feature extractors keyed by the weights' identity
(:mod:`.extractors`), loaded on first use. :func:`build` instantiates metrics by name; :func:`evaluate`
scores one stylized image with the per-image ones: the output is first clamped to [0,1] and quantised to 8
bits, so the numbers describe exactly the PNG that is saved. A metric whose network weights are unavailable is
reported missing with the reason; no substitute network is ever used silently.

Registered: ``content_loss``, ``content_loss_raw``, ``style_loss``, ``style_loss_gram`` (vgg_losses),
``lpips`` (lpips_metric), ``ssim`` (ssim), ``cfsd``, ``histogram_loss`` (structure); set-level: ``fid``,
``artfid``, ``artfid_inf`` (fid), whose networks are in :mod:`.networks`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import SanetBenchError
from ..nn.precision import cuda_tf32
from ..registry import get_metric_spec
from . import fid, lpips_metric, ssim, structure, vgg_losses  # noqa: F401  (registers the metrics)
from .base import Metric, MetricMissing, PerImageMetric, SetMetric
from .extractors import ALEXNET, EXTRACTORS, VGG, ExtractorCache


def quantise(x: Tensor) -> Tensor:
    """What ``images.save_image`` writes: clamp to [0,1], round to 8 bits, back to float."""
    return (x.detach().float().clamp(0, 1) * 255).round() / 255


def needs_of(names: list[str]) -> set[str]:
    return {n for name in names for n in get_metric_spec(name).needs}


def build(
    names: Sequence[str], *, weights_dir: str | os.PathLike | None = None, device: str | torch.device = "cpu",
    extractors: ExtractorCache | None = None,
) -> list[Metric]:
    """One fresh instance of each named metric, sharing ``extractors`` (default: the process-wide cache)."""
    return [
        get_metric_spec(n)(weights_dir=weights_dir, device=device, extractors=extractors) for n in names
    ]


def missing_components(metrics: Sequence[Metric]) -> dict[str, str]:
    """``{component: reason}`` for every needed extractor that cannot be loaded (loads the others now)."""
    out: dict[str, str] = {}
    for m in metrics:
        out.update(m.missing_components())
    return out


def encoder_id(metrics: Sequence[Metric]) -> str:
    """Identity of the VGG that computes the VGG metrics (``"none"`` when none does)."""
    for m in metrics:
        if VGG in m.needs and VGG not in m.missing_components():
            return m.extractor(VGG).id
    return "none"


def evaluate(
    output: Tensor, content: Tensor, style: Tensor, metrics: Sequence[Metric]
) -> tuple[dict[str, float | None], dict[str, str]]:
    """``(values, missing)`` of the per-image ``metrics`` on one cell: each metric's value (None when
    missing) and ``{metric: reason}``. Each metric's ``update`` accumulates the value."""
    out = quantise(output)
    given = (content, style)
    content, style = (x.to(out.device) for x in given)  # once per cell: features are cached by tensor
    values: dict[str, float | None] = {}
    missing: dict[str, str] = {}
    try:
        with cuda_tf32(out.device, False):  # metrics in full float32 on CUDA, never TF32
            for metric in metrics:
                if not metric.per_image:
                    raise ValueError(
                        f"{metric.name} is a set-level metric; evaluate scores per-image metrics"
                    )
                reason = metric.missing()
                if reason is None:
                    try:
                        values[metric.name] = metric.update(out, content, style)
                        continue
                    except SanetBenchError as e:
                        reason = str(e)
                values[metric.name], missing[metric.name] = None, reason
    finally:
        # the grid's images recur in every method's cells; a device copy is new each cell, so never kept
        keep = tuple(x for x, g in zip((content, style), given, strict=True) if x is g)
        for ex in {id(e): e for m in metrics for e in m.loaded_extractors()}.values():
            ex.end_cell(keep)
    return values, missing


__all__ = [
    "ALEXNET", "EXTRACTORS", "VGG", "ExtractorCache", "Metric", "MetricMissing", "PerImageMetric",
    "SetMetric",
    "build", "encoder_id", "evaluate", "missing_components", "needs_of", "quantise",
]
