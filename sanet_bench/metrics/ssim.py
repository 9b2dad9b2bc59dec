"""SSIM on luminance, output vs content (Wang et al., IEEE TIP 2004).

Convention: luminance Y = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601) of RGB in [0,1]; ``data_range=1``;
Gaussian window 11 with sigma 1.5; K1=0.01, K2=0.03; valid (unpadded) filtering; mean of the SSIM map.
Computed with ``pytorch_msssim.ssim`` (a small, well-tested pure-torch implementation). Needs no network
weights, so it is always available. Higher is more similar (1 = identical luminance).
"""

from __future__ import annotations

import torch
from pytorch_msssim import ssim
from torch import Tensor

from ..errors import ImageError
from ..registry import register_metric
from .base import PerImageMetric

BT601 = (0.299, 0.587, 0.114)


def luminance(x: Tensor) -> Tensor:
    """[N,3,H,W] RGB -> [N,1,H,W] BT.601 luma."""
    w = torch.tensor(BT601, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def ssim_luminance(output: Tensor, content: Tensor) -> float:
    if output.shape != content.shape:
        raise ImageError(f"SSIM: output {list(output.shape)} != content {list(content.shape)}")
    if min(output.shape[-2:]) < 11:
        raise ImageError(f"SSIM needs images of at least 11 px per side; got {tuple(output.shape[-2:])}")
    x, y = luminance(output.double()), luminance(content.double().to(output.device))
    return ssim(x, y, data_range=1.0, win_size=11, win_sigma=1.5, size_average=True).item()


@register_metric
class SSIM(PerImageMetric):
    name, compares, higher_is_better = "ssim", "output-content", True
    input_range = "RGB [0,1] (the saved 8-bit output); output and content the same size (>= 11 px per side)"
    convention = (
        "SSIM of BT.601 luminance, data_range=1, gaussian window 11, sigma 1.5, K=(0.01, 0.03), mean of map"
    )

    def score(self, output: Tensor, reference: Tensor) -> float:
        return ssim_luminance(output, reference)
