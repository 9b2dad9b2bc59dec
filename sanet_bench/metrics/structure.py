"""Per-image metrics of StyleID's evaluation code (Chung et al., CVPR 2024; jiwoogit/StyleID ``evaluation/``).

* ``cfsd`` (content feature structural distance, output vs content): features F of torchvision's ImageNet
  VGG19 at relu3_1 (input normalised by the ImageNet mean/std, images at their own size); each image's patch
  self-similarity ``softmax_j(<f_i, f_j> / C^2)`` over the H*W positions (the features divided by the channel
  count C before the product, as StyleID does); CFSD = KL(content's || output's), summed over rows
  (``F.kl_div(..., reduction="batchmean")`` with batch 1). Rows are processed in chunks, so memory stays
  bounded (a 512 px image has 16384 positions). Lower is better.
* ``histogram_loss`` (output vs style): the Hellinger distance ``sqrt(sum (sqrt(h_style) - sqrt(h_out))^2)
  / sqrt(2)`` between HistoGAN RGB-uv histograms (Afifi et al. 2021): 64x64 bins over log-chroma u, v in
  [-3, 3] per channel, inverse-quadratic kernel (sigma 0.02), weighted by the pixel intensity, normalised
  to sum 1; images larger than 256 px on a side are first bilinearly resized to 256x256. Lower is better.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..registry import register_metric
from .base import PerImageMetric
from .networks import VGG19, VGG19_FILE

CFSD_ROWS = 2048  # rows of the self-similarity computed at once
HIST_BINS, HIST_SIGMA, HIST_MAX_SIDE, HIST_EPS = 64, 0.02, 256, 1e-6


def _similarity_rows(f: Tensor, rows: slice) -> Tensor:
    return f[rows] @ f.T


def cfsd(f_out: Tensor, f_content: Tensor, chunk: int = CFSD_ROWS) -> float:
    """KL(p_content || p_output) of the patch self-similarities of two ``[1, C, H, W]`` feature maps."""
    if f_out.shape != f_content.shape:
        raise ValueError(f"CFSD: output features {list(f_out.shape)} != content {list(f_content.shape)}")
    c = f_out.shape[1]
    # StyleID flattens (B, W, H, C); the order of positions does not change the sum over all rows
    a, b = (x[0].permute(2, 1, 0).reshape(-1, c).double() / c for x in (f_out, f_content))
    total = 0.0
    for i in range(0, a.shape[0], chunk):
        rows = slice(i, i + chunk)
        log_q = F.log_softmax(_similarity_rows(a, rows), dim=-1)
        log_p = F.log_softmax(_similarity_rows(b, rows), dim=-1)
        total += (log_p.exp() * (log_p - log_q)).sum().item()
    return total


def rgb_uv_histogram(x: Tensor, bins: int = HIST_BINS, sigma: float = HIST_SIGMA) -> Tensor:
    """HistoGAN's RGB-uv histogram ``[3, bins, bins]`` (sum 1) of an RGB [0,1] image ``[1, 3, H, W]``."""
    x = x[:, :3].float().clamp(0, 1)
    if x.shape[2] > HIST_MAX_SIDE or x.shape[3] > HIST_MAX_SIDE:
        x = F.interpolate(x, size=(HIST_MAX_SIDE, HIST_MAX_SIDE), mode="bilinear", align_corners=False)
    px = x[0].reshape(3, -1).T  # [P, 3]
    iy = torch.sqrt((px**2).sum(dim=1, keepdim=True) + HIST_EPS)
    log = torch.log(px + HIST_EPS)
    centres = torch.from_numpy(np.linspace(-3, 3, num=bins)).to(px.device)[None]  # float64, as HistoGAN's

    def kernel(d: Tensor) -> Tensor:
        return (1 / (1 + (d[:, None] - centres).abs() ** 2 / sigma**2)).float()

    hist = torch.stack(
        [
            (iy * kernel(log[:, c] - log[:, u])).T @ kernel(log[:, c] - log[:, v])
            for c, u, v in ((0, 1, 2), (1, 0, 2), (2, 0, 1))
        ]
    )
    return hist / (hist.sum() + HIST_EPS)


def histogram_loss(output: Tensor, style: Tensor) -> float:
    """Hellinger distance of the RGB-uv histograms (StyleID's ``eval_histogan.py``)."""
    ho, hs = rgb_uv_histogram(output), rgb_uv_histogram(style)
    return (torch.sqrt(((hs.sqrt() - ho.sqrt()) ** 2).sum()) / np.sqrt(2.0)).item()


@register_metric
class CFSD(PerImageMetric):
    name, compares, higher_is_better = "cfsd", "output-content", False
    input_range = (
        "RGB [0,1] (the saved 8-bit output), ImageNet mean/std normalised; output and content same size"
    )
    convention = (
        "StyleID eval: torchvision ImageNet VGG19 relu3_1, patch self-similarity softmax over positions "
        "(features / C), KL(content || output) summed over positions"
    )
    needs = (VGG19,)
    weights = (VGG19_FILE,)

    def score(self, output: Tensor, reference: Tensor) -> float:
        net = self.extractor(VGG19)
        return cfsd(net.features(output), net.features(reference))


@register_metric
class HistogramLoss(PerImageMetric):
    name, compares, higher_is_better = "histogram_loss", "output-style", False
    input_range = "RGB [0,1] (the saved 8-bit output and the style image), resized to 256x256 when larger"
    convention = (
        "StyleID eval (HistoGAN RGB-uv): 64x64 bins on log-chroma [-3,3], inverse-quadratic sigma 0.02, "
        "intensity-weighted; Hellinger distance / sqrt(2)"
    )

    def score(self, output: Tensor, reference: Tensor) -> float:
        return histogram_loss(output, reference)
