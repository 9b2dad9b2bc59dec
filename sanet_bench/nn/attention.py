"""Attention over feature maps with peak memory linear in the number of query positions.

The references (SANet, StyTr2, AdaAttN) build the full [queries x keys] matrix; this computes the same
``softmax(scale * q k^T) v`` without it, so a 4096 px content fits on one GPU: on CUDA with a head dim of at
most 128, one call of the flash or memory-efficient ``scaled_dot_product_attention`` kernel (neither holds the
matrix; small query chunks would leave most of the GPU idle); on CPU, outside autograd, one call of torch's
blocked CPU flash kernel (an online softmax over key blocks: at 4096 x 4096 positions with a head dim of 512,
242 against 383 ms for a 64 MiB chunk, and a 1e-6 relative difference: docs/performance.md); otherwise one
chunk of queries at a time.
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
    and heads. A linear-memory kernel where one takes the inputs (module doc); otherwise queries are
    processed ``chunk_elements // (Lk * heads)`` at a time.
    """
    if q.is_cuda and max(q.shape[-1], v.shape[-1]) <= LINEAR_MEMORY_MAX_HEAD_DIM:
        out = _linear_memory_attention(q, k, v, scale)
        if out is not None:
            return out
    recorded = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    if q.device.type == "cpu" and not recorded:
        out = _cpu_flash_attention(q, k, v, scale)
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


def _cpu_flash_attention(q: Tensor, k: Tensor, v: Tensor, scale: float | None) -> Tensor | None:
    """One call of torch's CPU flash kernel (4-d inputs, unit stride in the last dim); None where it does not
    take these inputs (it needs one head dim for q, k and v, not values wider than the keys)."""
    if not q.shape[-1] == k.shape[-1] == v.shape[-1]:
        return None
    three = q.dim() == 3
    if three:
        q, k, v = q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    out = _sdpa_with(q, k, v, scale, [SDPBackend.FLASH_ATTENTION])
    return out.squeeze(1) if out is not None and three else out


def _linear_memory_attention(q: Tensor, k: Tensor, v: Tensor, scale: float | None) -> Tensor | None:
    """One call of a flash or memory-efficient kernel; None where neither takes these inputs."""
    return _sdpa_with(q, k, v, scale, [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION])


def _sdpa_with(q: Tensor, k: Tensor, v: Tensor, scale: float | None, backends: list) -> Tensor | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # each kernel that declines warns why
        try:
            with sdpa_kernel(backends):
                return F.scaled_dot_product_attention(q, k, v, scale=scale)
        except RuntimeError as e:  # anything else, out of memory included, is raised
            if "No available kernel" not in str(e):
                raise
            return None


def attention(f: Tensor, g: Tensor, h: Tensor, chunk_elements: int = ATTENTION_CHUNK_ELEMENTS) -> Tensor:
    """SANet's ``h softmax(f^T g)^T`` (no scaling) for f [N,C,Lc], g [N,C,Ls], h [N,C',Ls] -> [N,C',Lc]."""
    out = chunked_attention(f.transpose(1, 2), g.transpose(1, 2), h.transpose(1, 2), 1.0, chunk_elements)
    return out.transpose(1, 2)
