"""Attention over feature maps with peak memory linear in the number of query positions.

The references (SANet, StyTr2, AdaAttN) build the full [queries x keys] matrix; this computes the same
``softmax(scale * q k^T) v`` without it, so a 4096 px content fits on one GPU: on CUDA with a head dim of at
most 128, one call of the flash or memory-efficient ``scaled_dot_product_attention`` kernel (neither holds the
matrix; small query chunks would leave most of the GPU idle); otherwise one chunk of queries at a time.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

# Elements of one attention chunk (queries x keys): 2**24 floats = 64 MiB in float32.
ATTENTION_CHUNK_ELEMENTS = 1 << 24
# Head dims up to which the CUDA flash / memory-efficient kernels run unchunked (where they are tuned).
LINEAR_MEMORY_MAX_HEAD_DIM = 128


def chunked_attention(
    q: Tensor, k: Tensor, v: Tensor, scale: float | None = None,
    chunk_elements: int = ATTENTION_CHUNK_ELEMENTS,
) -> Tensor:
    """``softmax(scale * q k^T) v`` over the last two dims, q [..., Lq, D], k [..., Lk, D], v [..., Lk, Dv].

    ``scale`` defaults to ``1/sqrt(D)`` (as ``scaled_dot_product_attention``); the leading dims are batch
    and heads. Queries are processed ``chunk_elements // (Lk * heads)`` at a time.
    """
    if q.is_cuda and max(q.shape[-1], v.shape[-1]) <= LINEAR_MEMORY_MAX_HEAD_DIM:
        out = _linear_memory_attention(q, k, v, scale)
        if out is not None:
            return out
    heads = q[..., 0, 0].numel() // max(1, q.shape[0])
    step = max(1, chunk_elements // max(1, k.shape[-2] * max(1, heads)))
    if step >= q.shape[-2]:
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    return torch.cat(
        [F.scaled_dot_product_attention(q[..., i : i + step, :], k, v, scale=scale)
         for i in range(0, q.shape[-2], step)],
        dim=-2,
    )


def _linear_memory_attention(q: Tensor, k: Tensor, v: Tensor, scale: float | None) -> Tensor | None:
    """One call of a flash or memory-efficient kernel; None where neither takes these inputs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # each kernel that declines warns why
        try:
            with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]):
                return F.scaled_dot_product_attention(q, k, v, scale=scale)
        except RuntimeError as e:  # anything else, out of memory included, is raised
            if "No available kernel" not in str(e):
                raise
            return None


def attention(f: Tensor, g: Tensor, h: Tensor, chunk_elements: int = ATTENTION_CHUNK_ELEMENTS) -> Tensor:
    """SANet's ``h softmax(f^T g)^T`` (no scaling) for f [N,C,Lc], g [N,C,Ls], h [N,C',Ls] -> [N,C',Lc]."""
    out = chunked_attention(f.transpose(1, 2), g.transpose(1, 2), h.transpose(1, 2), 1.0, chunk_elements)
    return out.transpose(1, 2)
