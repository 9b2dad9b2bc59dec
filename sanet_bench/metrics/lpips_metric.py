"""LPIPS, output vs content (Zhang et al., The Unreasonable Effectiveness of Deep Features, CVPR 2018).

The reference ``lpips`` package, v0.1, AlexNet backbone with ImageNet weights and its learned linear heads:
inputs RGB [0,1] are scaled to [-1,1] (``2x - 1``), both images must have the same size; the distance is the
sum over the five AlexNet layers of the spatially averaged, channel-weighted squared difference of unit-
normalised features. Lower is more similar.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ImageError, WeightsError
from ..registry import MetricSpec, register_metric
from .networks import ALEXNET, Networks


def lpips_distance(output: Tensor, content: Tensor, nets: Networks) -> float:
    if output.shape != content.shape:
        raise ImageError(f"LPIPS: output {list(output.shape)} != content {list(content.shape)}")
    if nets.lpips is None:
        raise WeightsError(nets.reason_missing((ALEXNET,)) or "LPIPS network not loaded (use Networks.load)")
    with torch.no_grad():
        x, y = (t.to(nets.device, torch.float32) * 2 - 1 for t in (output, content))
        return nets.lpips(x, y).mean().item()


register_metric(MetricSpec(
    "lpips", lpips_distance, "output-content", False,
    "RGB [0,1] scaled to [-1,1]; output and content the same size",
    "lpips package v0.1, net=alex (ImageNet backbone + learned linear heads), spatial mean, sum of 5 layers",
    (ALEXNET,),
))
