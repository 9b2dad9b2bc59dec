from __future__ import annotations

import pytest
import torch

from sanet_bench.nn.stats import gram


@pytest.mark.parametrize("channels_last", [False, True])
def test_gram_gradient_is_the_exact_one(channels_last):
    """gram's own backward ((g + g^T) F / M, one product) against numerical differences, for any upstream
    gradient (gradcheck probes non-symmetric ones too), in both memory formats."""
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    assert torch.autograd.gradcheck(gram, (x.requires_grad_(True),))


def test_gram_gradient_keeps_a_channels_last_map_channels_last():
    """A channels_last map's gradient comes back channels_last (a mixed-format sum with the other branch's
    gradient would be a slow strided add) and equals autograd's through the plain bmm formula."""
    x = torch.randn(1, 8, 6, 7).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    upstream = torch.randn(1, 8, 8)
    (gx,) = torch.autograd.grad(gram(x), x, upstream)
    flat = x.reshape(1, 8, -1)
    (want,) = torch.autograd.grad(torch.bmm(flat, flat.transpose(1, 2)) / flat.shape[2], x, upstream)
    assert gx.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(gx, want, rtol=1e-5, atol=1e-6)
