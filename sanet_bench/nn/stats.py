"""Channel statistics used by AdaIN, SANet and their losses.

Convention (naoto0804/pytorch-AdaIN ``function.calc_mean_std``, reused by GlebSBrykin/SANET): per sample
and channel over H*W, ``std = sqrt(unbiased variance + eps)`` with ``eps = 1e-5``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def calc_mean_std(feat: Tensor, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    n, c = feat.shape[:2]
    flat = feat.reshape(n, c, -1)
    std = (flat.var(dim=2) + eps).sqrt().view(n, c, 1, 1)
    mean = flat.mean(dim=2).view(n, c, 1, 1)
    return mean, std


def mean_variance_norm(feat: Tensor) -> Tensor:
    """Per-channel standardisation (SANet's ``mean_variance_norm``)."""
    mean, std = calc_mean_std(feat)
    return (feat - mean) / std


def adain(content: Tensor, style: Tensor) -> Tensor:
    """AdaIN(x, y) = std(y) * (x - mean(x)) / std(x) + mean(y)  (Huang & Belongie 2017, Eq. 8)."""
    c_mean, c_std = calc_mean_std(content)
    s_mean, s_std = calc_mean_std(style)
    return (content - c_mean) / c_std * s_std + s_mean


def gram(feat: Tensor) -> Tensor:
    """Gram matrix normalised by the number of positions: [N, C, C]."""
    n, c = feat.shape[:2]
    flat = feat.reshape(n, c, -1)
    return torch.bmm(flat, flat.transpose(1, 2)) / flat.shape[2]
