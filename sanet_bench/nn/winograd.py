"""3x3 convolutions through NNPACK's Winograd transform on CPU, in float32.

Lavin & Gray, *Fast Algorithms for Convolutional Neural Networks* (CVPR 2016): F(6x6, 3x3) computes each 6x6
output tile from an 8x8 input tile with 64 multiplications per (input, output) channel pair instead of 324 —
the same convolution, summed in another order. torch ships NNPACK inside its CPU library,
whose automatic choice for a 3x3 stride-1 kernel is this transform (``wt8x8``, NNPACK's
src/convolution-inference.c ``select_algorithm``). Its error against the direct convolution is measured per
method in docs/performance.md (every parity case stays within its tolerance).

:func:`use_winograd` switches a model's eligible ``nn.Conv2d`` modules (3x3, stride 1, no dilation, one
group, zero padding of 0 or 1) to :class:`WinogradConv2d`: same parameters and state dict; the forward
chooses per call, for float32 CPU inputs, by the per-layer measurements in docs/performance.md:

* NNPACK where both sides have at least ``MIN_CHANNELS`` channels, one side more, and the output has at
  least ``MIN_PIXELS`` pixels. 64 -> 64 layers stay direct: on a VGG they are the full-resolution maps.
  NNPACK is called through its C API (``nnp_convolution_inference``, exported by torch's CPU library) with a
  workspace of this module's: one per thread, in a mapping of its own, kept from call to call but unmapped
  before a layer that runs direct for its channel count on a map at least as large (a VGG's full-resolution
  stages from 512 px on, where a call's peak memory sits). torch's own binding keeps its workspace in the C
  heap, where it pinned the heap freed below it, under every later stage. The workspace holds the
  transformed input and output tiles of the whole map (``(C_in + C_out)`` 8x8 tiles per 6x6 output tile:
  3.75 times a 128 -> 128 layer's output) and a block of the transformed kernel (2-15 MiB for VGG layers), so
  a call whose tiles would exceed ``WORKSPACE_BYTES`` runs in bands of output rows (a halo of 2 input rows
  each), no band under ``MIN_BAND_TILES`` tiles (each call transforms the whole kernel again). An NNPACK
  output of at most ``MIN_CHANNELS`` channels is handed on in channels_last: the direct layers that take it
  (a decoder's last, full-resolution stage) then need no reorder of the map, which in NCHW costs a
  transient copy.
* oneDNN in channels_last for an RGB input layer (several times faster, and cheap to convert);
* oneDNN in the input's own memory format otherwise (converting a large map costs more than it saves).

Autograd works through it (for a method that optimises its image): the input's gradient is NNPACK's too
(the full correlation of the output's gradient with the flipped, transposed kernel: again a 3x3 stride-1
convolution); a weight's or bias's, where one is asked for, is torch's.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import sys
import threading
from pathlib import Path

import torch
from torch import Tensor, nn

MIN_CHANNELS = 64  # below (either side), oneDNN's direct kernel in channels_last is faster
MIN_PIXELS = 32 * 32  # output pixels; below, the transforms cost more than the multiplications saved
WORKSPACE_BYTES = 16 << 20  # transformed tiles per NNPACK call at most, where MIN_BAND_TILES allows
MIN_BAND_TILES = 256  # 6x6 output tiles per band at least (each band transforms the whole kernel again)
WORKSPACE_MAP_BYTES = 64 << 20  # address space of a workspace mapping at least (untouched pages cost nothing)

# nnpack.h: algorithm wt8x8, transform strategy "compute", activation identity
_WT8X8, _COMPUTE, _IDENTITY = 3, 1, 0


class _Size(ctypes.Structure):  # nnpack.h: struct nnp_size
    _fields_ = [("width", ctypes.c_size_t), ("height", ctypes.c_size_t)]


class _Padding(ctypes.Structure):  # nnpack.h: struct nnp_padding
    _fields_ = [(side, ctypes.c_size_t) for side in ("top", "right", "bottom", "left")]


@functools.cache
def _nnpack() -> ctypes.CDLL | None:
    """torch's CPU library with NNPACK's C API declared and initialised; None where it has no NNPACK, does not
    export it, or NNPACK does not support this CPU."""
    name = "libtorch_cpu" + (".dylib" if sys.platform == "darwin" else ".so")
    try:
        lib = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / name))
        conv, init, pool = lib.nnp_convolution_inference, lib.nnp_initialize, lib.pthreadpool_create
    except (OSError, AttributeError):
        return None
    init.restype = conv.restype = ctypes.c_int
    pool.restype, pool.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    size_t, ptr = ctypes.c_size_t, ctypes.c_void_p
    conv.argtypes = [
        ctypes.c_int, ctypes.c_int, size_t, size_t, _Size, _Padding, _Size, _Size,  # algorithm ... subsample
        ptr, ptr, ptr, ptr, ptr, ctypes.POINTER(size_t),  # input, kernel, bias, output, workspace, its size
        ctypes.c_int, ptr, ptr, ptr,  # activation, its parameters, thread pool, profile
    ]
    return lib if init() == 0 else None


_THREAD = threading.local()


def _workspace(nbytes: int) -> Tensor:
    """This thread's NNPACK workspace of at least ``nbytes``: a mapping of its own, outside the C heap (where
    a long-lived block pins the heap freed below it), kept from call to call (a new one per call pays its page
    faults). Mapped at ``WORKSPACE_MAP_BYTES`` at least: only the pages NNPACK touches are resident."""
    buffer = getattr(_THREAD, "workspace", None)
    if buffer is None or buffer.numel() < nbytes:
        _THREAD.workspace = None  # unmapped before the larger one is mapped
        size = max(nbytes, WORKSPACE_MAP_BYTES)
        _THREAD.workspace = buffer = torch.frombuffer(mmap.mmap(-1, size), dtype=torch.uint8)
        _THREAD.touched = 0
    _THREAD.touched = max(_THREAD.touched, nbytes)
    return buffer


def _drop_workspace_before(x: Tensor) -> None:
    """Unmap this thread's workspace before a direct convolution of ``x`` if ``x`` is at least as large as
    the workspace's touched part: a VGG's full-resolution layers at 512 px and more, where a call's peak
    memory sits. There NNPACK's next call faulting the workspace in again costs a few percent of the layer;
    at 256 px it would cost about as much as the layer (docs/performance.md, sixth measurement)."""
    if getattr(_THREAD, "workspace", None) is not None and x.numel() * x.element_size() >= _THREAD.touched:
        _THREAD.workspace = None


@functools.cache
def _thread_pool(threads: int) -> int:
    """NNPACK's thread pool of ``threads`` threads (as torch's binding makes one at torch's thread count)."""
    return _nnpack().pthreadpool_create(threads)


def available() -> bool:
    """Whether NNPACK's C API is usable in this torch build on this CPU (also initialises it)."""
    return _nnpack() is not None


class WinogradConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (3x3, stride 1) whose float32 CPU forward uses NNPACK's Winograd where it pays."""

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        cpu32 = input.device.type == "cpu" and input.dtype == weight.dtype == torch.float32
        if not cpu32 or input.dim() != 4:
            return super()._conv_forward(input, weight, bias)
        channels = (self.in_channels, self.out_channels)
        if min(channels) < MIN_CHANNELS or max(channels) <= MIN_CHANNELS:  # direct for its channel count
            _drop_workspace_before(input)  # a VGG's full-resolution layers, where a call's peak sits
            if self.in_channels < MIN_CHANNELS:  # an RGB input layer: cheap to convert, several times faster
                input = input.contiguous(memory_format=torch.channels_last)
            return super()._conv_forward(input, weight, bias)
        ph, pw = self.padding  # type: ignore[misc]
        oh, ow = output_size(input.shape, ph, pw)
        if oh * ow < MIN_PIXELS:  # oneDNN, in the input's memory format
            return super()._conv_forward(input, weight, bias)
        if torch.is_grad_enabled() and (input.requires_grad or weight.requires_grad):
            out = _NNPACKConv.apply(input, weight, bias, ph, pw)
        else:
            out = nnpack_conv(input, weight, bias, ph, pw)
        if self.out_channels <= MIN_CHANNELS:  # for the direct layers that follow: no reorder there
            out = out.contiguous(memory_format=torch.channels_last)
        return out


def output_size(x_shape: torch.Size, ph: int, pw: int) -> tuple[int, int]:
    """Height and width of a 3x3 stride-1 convolution's output, zero padding ``ph``, ``pw``."""
    return x_shape[-2] + 2 * ph - 2, x_shape[-1] + 2 * pw - 2


def band_rows(x_shape: torch.Size, out_channels: int, ph: int, pw: int) -> int:
    """Output rows per NNPACK call for one image of ``x_shape``: all of them where the transformed input and
    output tiles fit in ``WORKSPACE_BYTES``, else a multiple of 6 (whole tiles) that keeps them there, but
    ``MIN_BAND_TILES`` tiles at least."""
    cin = x_shape[1]
    oh, ow = output_size(x_shape, ph, pw)
    tiles_x = -(-ow // 6)
    per_tile_row = tiles_x * (cin + out_channels) * 64 * 4  # float32 8x8 tiles, input and output
    tile_rows = max(WORKSPACE_BYTES // per_tile_row, -(-MIN_BAND_TILES // tiles_x), 1)
    return min(6 * tile_rows, oh)


def _inference(x: Tensor, weight: Tensor, bias: Tensor, out: Tensor, padding: tuple[int, ...]) -> None:
    """One ``nnp_convolution_inference`` call: ``out`` (C_out, H', W') = ``x`` (C_in, H, W), zero padded by
    ``padding`` (top, right, bottom, left), correlated with the 3x3 ``weight``, plus ``bias``; all contiguous
    float32."""
    lib = _nnpack()
    args = [_WT8X8, _COMPUTE, x.shape[0], weight.shape[0], _Size(x.shape[2], x.shape[1]), _Padding(*padding),
            _Size(3, 3), _Size(1, 1), x.data_ptr(), weight.data_ptr(), bias.data_ptr(), out.data_ptr()]
    tail = [_IDENTITY, None, _thread_pool(torch.get_num_threads()), None]
    size = ctypes.c_size_t(0)
    status = lib.nnp_convolution_inference(*args, None, ctypes.byref(size), *tail)  # the workspace's size
    if status == 0:
        workspace = _workspace(size.value).data_ptr()
        status = lib.nnp_convolution_inference(*args, workspace, ctypes.byref(size), *tail)
    if status != 0:
        raise RuntimeError(f"NNPACK's convolution failed with nnp_status {status} (nnpack.h) for input "
                           f"{tuple(x.shape)}, kernel {tuple(weight.shape)}, padding {padding}")


def _nnpack_conv(x: Tensor, weight: Tensor, bias: Tensor | None, ph: int, pw: int) -> Tensor:
    """NNPACK's 3x3 stride-1 convolution of ``x`` with zero padding ``ph``, ``pw`` (float32, CPU), image by
    image, in bands of :func:`band_rows` output rows."""
    x, weight = x.contiguous(), weight.contiguous()
    bias = x.new_zeros(weight.shape[0]) if bias is None else bias.contiguous()
    cout, h = weight.shape[0], x.shape[2]
    oh, ow = output_size(x.shape, ph, pw)
    rows = band_rows(x.shape, cout, ph, pw)
    out = x.new_empty(x.shape[0], cout, oh, ow)
    band_out = x.new_empty(cout * rows * ow) if rows < oh else None
    for image, target in zip(x, out, strict=True):
        for top in range(0, oh, rows):
            bottom = min(top + rows, oh)
            first, last = top - ph, bottom + 2 - ph  # the band's input rows, in unpadded coordinates
            lo, hi = max(first, 0), min(last, h)  # the rows outside are the map's zero padding
            padding = (lo - first, pw, last - hi, pw)
            if band_out is None:
                _inference(image, weight, bias, target, padding)
                continue
            dst = band_out[: cout * (bottom - top) * ow].view(cout, bottom - top, ow)
            _inference(image[:, lo:hi].contiguous(), weight, bias, dst, padding)
            target[:, top:bottom] = dst
    return out


def _output_like(x: Tensor, weight: Tensor, bias: Tensor | None, ph: int, pw: int) -> Tensor:
    return x.new_empty(x.shape[0], weight.shape[0], *output_size(x.shape, ph, pw))


# A torch operator, so that FLOP counters and torch.compile see one convolution (shapes from the Meta kernel).
# torch.library.custom_op would do the same but loads torch's tracing stack on first call (+150 MiB resident).
_LIBRARY = torch.library.Library("sanet_bench", "DEF")
_LIBRARY.define("winograd_conv3x3(Tensor x, Tensor weight, Tensor? bias, int ph, int pw) -> Tensor")
_LIBRARY.impl("winograd_conv3x3", _nnpack_conv, "CPU")
_LIBRARY.impl("winograd_conv3x3", _output_like, "Meta")
nnpack_conv = torch.ops.sanet_bench.winograd_conv3x3


class _NNPACKConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, ph: int, pw: int) -> Tensor:
        ctx.padding, ctx.has_bias = (ph, pw), bias is not None
        ctx.save_for_backward(x if ctx.needs_input_grad[1] else None, weight)
        return nnpack_conv(x, weight, bias, ph, pw)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        ph, pw = ctx.padding
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:  # padding 2 - p brings the output's size back to the input's
            flipped = weight.flip(2, 3).transpose(0, 1).contiguous()
            gx = nnpack_conv(grad, flipped, None, 2 - ph, 2 - pw)
        if ctx.needs_input_grad[1]:
            gw = torch.nn.grad.conv2d_weight(x, weight.shape, grad, padding=(ph, pw))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = grad.sum((0, 2, 3))
        return gx, gw, gb, None, None


def eligible(module: nn.Module) -> bool:
    return (
        type(module) is nn.Conv2d
        and module.kernel_size == (3, 3)
        and module.stride == (1, 1)
        and module.dilation == (1, 1)
        and module.groups == 1
        and module.padding_mode == "zeros"
        and module.padding in ((0, 0), (0, 1), (1, 0), (1, 1))  # not "same"; the gradient pads 2 - p
    )


def use_winograd(model: nn.Module) -> int:
    """Switch ``model``'s eligible convolutions to :class:`WinogradConv2d`, in place; returns how many (0
    where NNPACK is unavailable: nothing changes)."""
    if not available():
        return 0
    switched = 0
    for module in model.modules():
        if eligible(module):
            module.__class__ = WinogradConv2d
            switched += 1
    return switched
