"""TF32 on CUDA: ``fp32`` means float32 arithmetic, not torch's default.

torch runs cuDNN convolutions in TF32 (a 10-bit mantissa) by default and float32 matmuls in full float32. On
the parity fixtures TF32 moves outputs by up to 86 % of their range (per method: docs/performance.md), so
methods and metrics compute ``fp32`` in full float32 on CUDA, and TF32 is a fast path of its own
(``--dtype tf32``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def tf32_flags() -> tuple[bool, bool]:
    """torch's two TF32 settings now: (float32 matmuls, cuDNN convolutions)."""
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """cuDNN convolutions and float32 matmuls in TF32 (``enabled``) or in full float32 inside the block; the
    previous settings are restored after it. The settings are process-wide and act on CUDA only."""
    saved = tf32_flags()
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def cuda_tf32(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """:func:`tf32` on a CUDA ``device``; nothing to set elsewhere."""
    return tf32(enabled) if device.type == "cuda" else contextlib.nullcontext()
