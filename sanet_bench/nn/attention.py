"""Attention over feature maps in query chunks: peak memory linear in the number of query positions.

The references (SANet, StyTr2, AdaAttN) build the full [queries x keys] matrix; this computes the same
``softmax(scale * q k^T) v`` one chunk of queries at a time with ``scaled_dot_product_attention``, so a
2048 px content never materialises it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# Elements of one attention chunk (queries x keys): 2**24 floats = 64 MiB in float32.
ATTENTION_CHUNK_ELEMENTS = 1 << 24


def chunked_attention(
    q: Tensor, k: Tensor, v: Tensor, scale: float | None = None,
    chunk_elements: int = ATTENTION_CHUNK_ELEMENTS,
) -> Tensor:
    """``softmax(scale * q k^T) v`` over the last two dims, q [..., Lq, D], k [..., Lk, D], v [..., Lk, Dv].

    ``scale`` defaults to ``1/sqrt(D)`` (as ``scaled_dot_product_attention``); the leading dims are batch
    and heads. Queries are processed ``chunk_elements // (Lk * heads)`` at a time.
    """
    heads = q[..., 0, 0].numel() // max(1, q.shape[0])
    step = max(1, chunk_elements // max(1, k.shape[-2] * max(1, heads)))
    if step >= q.shape[-2]:
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    return torch.cat(
        [F.scaled_dot_product_attention(q[..., i : i + step, :], k, v, scale=scale)
         for i in range(0, q.shape[-2], step)],
        dim=-2,
    )


def attention(f: Tensor, g: Tensor, h: Tensor, chunk_elements: int = ATTENTION_CHUNK_ELEMENTS) -> Tensor:
    """SANet's ``h softmax(f^T g)^T`` (no scaling) for f [N,C,Lc], g [N,C,Ls], h [N,C',Ls] -> [N,C',Lc]."""
    out = chunked_attention(f.transpose(1, 2), g.transpose(1, 2), h.transpose(1, 2), 1.0, chunk_elements)
    return out.transpose(1, 2)
