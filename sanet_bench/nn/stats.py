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
    """Gram matrix normalised by the number of positions, ``G = F F^T / M``: [N, C, C]."""
    return _Gram.apply(feat)


class _Gram(torch.autograd.Function):
    """:func:`gram` with its gradient ``(g + g^T) F / M`` as one product, in the feature's memory format.

    Autograd through ``bmm`` takes two products and their sum, and for a channels_last map keeps a
    channel-major copy for the backward; here the map itself is kept (positions x channels: a view of it)."""

    @staticmethod
    def forward(ctx, feat: Tensor) -> Tensor:
        ctx.save_for_backward(feat)
        n, c = feat.shape[:2]
        flat = feat.reshape(n, c, -1)
        return torch.bmm(flat, flat.transpose(1, 2)) / flat.shape[2]

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (feat,) = ctx.saved_tensors
        n, c = feat.shape[:2]
        sym = (grad + grad.transpose(1, 2)) / feat[0, 0].numel()
        channels_last = feat.dim() == 4 and feat.is_contiguous(memory_format=torch.channels_last)
        if channels_last and not feat.is_contiguous():
            positions = feat.permute(0, 2, 3, 1).reshape(n, -1, c)  # a view: [N, H*W, C]
            return torch.bmm(positions, sym).view(n, *feat.shape[2:], c).permute(0, 3, 1, 2)
        return torch.bmm(sym, feat.reshape(n, c, -1)).view(feat.shape)
