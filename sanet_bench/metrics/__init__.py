"""Image-quality metrics for style transfer, each a registered pure function with its contract as data.

A metric is ``fn(output, reference, nets) -> float`` where ``reference`` is the content or the style image
(``MetricSpec.compares``) and ``nets`` (:class:`Networks`) holds the networks it needs (``MetricSpec.needs``).
:func:`evaluate` runs a set of metrics on one stylized image: the output is first clamped to [0,1] and
quantised to 8 bits, so the numbers describe exactly the PNG that is saved. A metric whose network weights
are unavailable is reported missing with the reason; no substitute network is ever used silently.

Registered: ``content_loss``, ``content_loss_raw``, ``style_loss``, ``style_loss_gram`` (vgg_losses),
``lpips`` (lpips_metric), ``ssim`` (ssim).
"""

from __future__ import annotations

from torch import Tensor

from ..errors import SanetBenchError
from ..registry import get_metric_spec
from . import lpips_metric, ssim, vgg_losses  # noqa: F401  (registers the metrics)
from .networks import Networks


def quantise(x: Tensor) -> Tensor:
    """What ``images.save_image`` writes: clamp to [0,1], round to 8 bits, back to float."""
    return (x.detach().float().clamp(0, 1) * 255).round() / 255


def needs_of(names: list[str]) -> set[str]:
    return {n for name in names for n in get_metric_spec(name).needs}


def evaluate(
    output: Tensor, content: Tensor, style: Tensor, nets: Networks, names: list[str]
) -> tuple[dict[str, float | None], dict[str, str]]:
    """``(values, missing)``: each metric's value (None when missing) and ``{metric: reason}``."""
    out = quantise(output)
    given = (content, style)
    content, style = (x.to(out.device) for x in given)  # once per cell: features are cached by tensor
    values: dict[str, float | None] = {}
    missing: dict[str, str] = {}
    try:
        for name in names:
            spec = get_metric_spec(name)
            reason = nets.reason_missing(spec.needs)
            if reason is None:
                ref = content if spec.compares == "output-content" else style
                try:
                    values[name] = float(spec.fn(out, ref, nets))
                    continue
                except SanetBenchError as e:
                    reason = str(e)
            values[name], missing[name] = None, reason
    finally:
        # the grid's images recur in every method's cells; a device copy is new each cell, so never kept
        nets.clear(keep=tuple(x for x, g in zip((content, style), given, strict=True) if x is g))
    return values, missing


__all__ = ["Networks", "evaluate", "needs_of", "quantise"]
