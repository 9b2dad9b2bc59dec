"""LPIPS, output vs content (Zhang et al., The Unreasonable Effectiveness of Deep Features, CVPR 2018).

The reference ``lpips`` package, v0.1, AlexNet backbone with ImageNet weights and its learned linear heads:
inputs RGB [0,1] are scaled to [-1,1] (``2x - 1``), both images must have the same size; the distance is the
sum over the five AlexNet layers of the spatially averaged, channel-weighted squared difference of unit-
normalised features. Lower is more similar.
"""

from __future__ import annotations

from torch import Tensor

from ..errors import ImageError
from ..registry import register_metric
from .base import PerImageMetric
from .extractors import ALEXNET, ALEXNET_FILE, LPIPS_HEADS


@register_metric
class LPIPS(PerImageMetric):
    name, compares, higher_is_better = "lpips", "output-content", False
    input_range = "RGB [0,1] (the saved 8-bit output) scaled to [-1,1]; output and content the same size"
    convention = (
        "lpips package v0.1, net=alex (ImageNet backbone + learned linear heads), spatial mean, "
        "sum of 5 layers"
    )
    needs = (ALEXNET,)
    weights = (ALEXNET_FILE, LPIPS_HEADS)

    def score(self, output: Tensor, reference: Tensor) -> float:
        if output.shape != reference.shape:
            raise ImageError(f"LPIPS: output {list(output.shape)} != content {list(reference.shape)}")
        return self.extractor(ALEXNET).distance(output, reference)
