"""The Method contract shared by every style-transfer method.

``Method.stylize(content, style, alpha=None, **options)`` takes float tensors [N,3,H,W], RGB in [0,1]
(style [N or 1,3,H',W']) and returns the model's un-clamped output [N,3,H,W] in the same scale. The output
is cropped to the content size where a method's decoder rounds sizes up (sizes not a multiple of 8/16).

Fast paths: :func:`prepare` sets a loaded model up for a dtype (bf16 on CPU or CUDA, fp16 on CUDA), Winograd
3x3 convolutions on CPU (:mod:`sanet_bench.nn.winograd`), the channels_last memory format and
``torch.compile``; ``stylize`` then converts its inputs to match and returns
float32. It is the one place the CLI's ``run``, ``stylize`` and ``profile`` apply them.

Stages: a method wraps its encode / transform / decode work in ``with self.stage(name):`` so the profiler
can time them; with no profiler attached the context manager costs nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager as ContextManager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .config import DTYPES
from .errors import ConfigError, ImageError
from .nn.precision import cuda_tf32
from .nn.resample import fuse_upsample_pad
from .nn.winograd import use_winograd
from .registry import MethodSpec

# tf32: float32 tensors, TF32 arithmetic in cuDNN convolutions and matmuls (sanet_bench.nn.precision)
TORCH_DTYPES = dict(zip(DTYPES, (torch.float32, torch.float16, torch.bfloat16, torch.float32), strict=True))


class Method(nn.Module):
    spec: MethodSpec  # set by load_method
    #: True where the reference computes in float64 end to end (MAST): a lower dtype leaves it unchanged.
    full_precision: bool = False
    #: True where ``_stylize`` takes gradients (Gatys): it runs under ``no_grad``, not ``inference_mode``.
    uses_autograd: bool = False
    #: Whether :func:`prepare`'s default puts the model in channels_last on CPU (where oneDNN's convolutions
    #: are faster in it: docs/performance.md); False where it measured no faster (or nothing is a torch conv).
    channels_last_on_cpu: bool = True
    #: Whether :func:`prepare`'s default runs the 3x3 convolutions through NNPACK's Winograd on CPU in fp32
    #: (:mod:`sanet_bench.nn.winograd`); False where it measured no faster.
    winograd_on_cpu: bool = True

    def __init__(self) -> None:
        super().__init__()
        self.weights_info: dict[str, Any] = {"source": "unloaded"}
        self.stage_hook: Callable[[str], ContextManager[Any]] | None = None
        self.compute_dtype = torch.float32
        self.memory_format = torch.contiguous_format
        self.fast_path: dict[str, Any] = {"dtype": "fp32", "channels_last": False, "compile": False,
                                          "winograd": False}

    # -- to implement ---------------------------------------------------------------------------------
    def load_official(self, paths: dict[str, Path]) -> None:
        """Load the official files (``{official file name: path}``) strictly."""
        raise NotImplementedError

    def _stylize(self, content: Tensor, style: Tensor, alpha: float, **options: Any) -> Tensor:
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.stage_hook is None:
            yield
        else:
            with self.stage_hook(name):
                yield

    def stylize(self, content: Tensor, style: Tensor, alpha: float | None = None, **options: Any) -> Tensor:
        spec = self.spec
        alpha, opts = check_call(spec, alpha, options)
        content = _check_image(content, "content", spec.min_size)
        style = _check_image(style, "style", 16)
        if style.shape[0] not in (1, content.shape[0]):
            raise ImageError(
                f"style batch {style.shape[0]} must be 1 or match the content batch {content.shape[0]}"
            )
        dev, dtype, fmt = self.device, self.compute_dtype, self.memory_format
        content = content.to(dev, dtype).contiguous(memory_format=fmt)
        style = style.to(dev, dtype).contiguous(memory_format=fmt)
        if style.shape[0] != content.shape[0]:
            style = style.expand(content.shape[0], -1, -1, -1)
        grad = torch.no_grad() if self.uses_autograd else torch.inference_mode()
        with grad, cuda_tf32(dev, self.fast_path["dtype"] == "tf32"):
            out = self._stylize(content, style, alpha, **opts)
        return out[..., : content.shape[-2], : content.shape[-1]].float()


def check_call(
    spec: MethodSpec, alpha: float | None, options: dict[str, Any]
) -> tuple[float, dict[str, Any]]:
    """The alpha and full options a call of ``spec``'s method runs with; a :class:`ConfigError` for an alpha
    outside [0, 1] (or not 1 for a method without one) or an unknown option. Cheap: no model needed."""
    alpha = spec.default_alpha if alpha is None else float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha={alpha} is outside [0, 1]; pass a value between 0 and 1")
    if alpha != 1.0 and not spec.has_alpha:
        raise ConfigError(
            f"{spec.name} has no content-style trade-off (its reference has no alpha); use alpha 1"
        )
    known = {o.name for o in spec.options}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(
            f"{spec.name} has no option {', '.join(unknown)}; "
            f"supported: {', '.join(sorted(known)) or 'none'}"
        )
    return alpha, {**{o.name: o.default for o in spec.options}, **options}


def _check_image(x: Tensor, what: str, min_size: int) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != 3:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ImageError(f"{what} must be a float tensor [N,3,H,W] in [0,1]; got {shape}")
    if not x.is_floating_point():
        raise ImageError(
            f"{what} has dtype {x.dtype}; convert it to float in [0,1] (sanet_bench.images.load_image does)"
        )
    if min(x.shape[-2:]) < min_size:
        raise ImageError(
            f"{what} is {x.shape[-1]}x{x.shape[-2]} px; this method needs at least {min_size} px per side, "
            "resize it"
        )
    return x


def check_fast_path(
    dtype: str, device: str | torch.device, winograd: bool | None = None, compile: bool = False
) -> None:
    """Raise :class:`ConfigError` for a dtype that is unknown or not supported on ``device``, or Winograd
    asked for where it does not run (CUDA, a dtype other than fp32, or with ``compile``)."""
    if dtype not in TORCH_DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if dtype == "fp16" and torch.device(device).type != "cuda":
        raise ConfigError(
            f"dtype fp16 needs CUDA (half-precision kernels on {device} are missing or slow); "
            "use --dtype bf16 on CPU or --device cuda"
        )
    if dtype == "tf32" and torch.device(device).type != "cuda":
        raise ConfigError(
            f"dtype tf32 needs CUDA (TF32 is a mode of NVIDIA's tensor cores, not of {device}); "
            "use --dtype fp32 or bf16, or --device cuda"
        )
    if winograd and (torch.device(device).type != "cpu" or dtype != "fp32"):
        raise ConfigError(
            f"--winograd is a CPU float32 path (NNPACK); it does not run on {device} in {dtype}: "
            "drop --winograd or use --device cpu --dtype fp32"
        )
    if winograd and compile:
        raise ConfigError(
            "--winograd and --compile do not combine: torch.compile cannot trace NNPACK's convolution; "
            "drop one of them (--compile alone uses oneDNN's convolutions)"
        )


def prepare(
    model: Method,
    dtype: str = "fp32",
    channels_last: bool | None = None,
    compile: bool = False,
    winograd: bool | None = None,
) -> Method:
    """Set a loaded ``model`` up for a fast path, in place, and return it.

    ``dtype`` (fp32 | bf16 | fp16 or tf32 on CUDA): weights and inputs in that dtype, the output back in
    float32; fp32 is full float32 on CUDA too, tf32 float32 tensors with TF32 convolutions and matmuls
    (:mod:`sanet_bench.nn.precision`); float64 steps a method's reference needs (WCT, Avatar-Net's
    decorator) stay float64, and a ``full_precision`` method (MAST) is left in its own precision.
    ``winograd``: the 3x3 convolutions through NNPACK's Winograd F(6x6,3x3) (:mod:`sanet_bench.nn.winograd`;
    CPU, fp32; never for a ``full_precision`` method; not with ``compile``); None (the default): on for a
    method with ``winograd_on_cpu``, on CPU in fp32 without ``compile`` where torch has NNPACK.
    ``channels_last``: weights and inputs in that memory format; None: on CPU for a method with
    ``channels_last_on_cpu`` that is not ``full_precision`` (oneDNN has no float64 convolutions) and runs
    without Winograd (which keeps its own formats per layer), off elsewhere. The outputs stay within the
    parity tolerances on every path in fp32. ``compile``: ``torch.compile`` of ``_stylize`` (its stages are
    then not split). ``model.fast_path`` records the choice as resolved.
    """
    check_fast_path(dtype, model.device, winograd, compile)
    fuse_upsample_pad(model)  # exact on every path: one map less at a decoder's upsampling
    cpu = model.device.type == "cpu"
    if winograd is None:
        winograd = cpu and dtype == "fp32" and not compile and model.winograd_on_cpu
    # a full_precision (float64) model never reaches NNPACK; use_winograd gives 0 without NNPACK or a
    # 3x3 convolution
    winograd = bool(winograd) and not model.full_precision and use_winograd(model) > 0
    if channels_last is None:
        channels_last = cpu and model.channels_last_on_cpu and not model.full_precision and not winograd
    if not model.full_precision:
        model.compute_dtype = TORCH_DTYPES[dtype]
        model.to(dtype=model.compute_dtype)
    if channels_last:
        model.memory_format = torch.channels_last
        model.to(memory_format=torch.channels_last)
    if compile:
        model._stylize = torch.compile(model._stylize)  # type: ignore[method-assign]
    model.fast_path = {"dtype": dtype, "channels_last": bool(channels_last), "compile": bool(compile),
                       "winograd": bool(winograd)}
    return model


def build(spec: MethodSpec, seed: int = 0) -> Method:
    """The method's exact architecture, with weights from torch's default init under ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = spec.factory()
    model.spec = spec
    return model
