from __future__ import annotations

import contextlib
import shutil
import struct
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import PARITY, assert_close_rel_max, load_case, no_tf32, parity_cases
from parity_weights import read_layout
from torch import nn

import baselines.wct as wct_mod
from baselines.wct import DECODER_PLANS, LEVELS, decoder, t7_module_state, wct
from sanet_bench import load_method
from sanet_bench.errors import WeightsError
from sanet_bench.registry import get_method_spec


@pytest.fixture(scope="module")
def official(parity_weights):
    return load_method("wct", weights="official", weights_dir=parity_weights("wct"))


@pytest.fixture(scope="module")
def rand_model():
    return load_method("wct", weights="random", seed=5)


@pytest.mark.parametrize("case", parity_cases("wct"), ids=lambda p: p.stem)
def test_parity(case, official):
    c = load_case(case)
    out = official.stylize(c["content"], c["style"], alpha=c["alpha"])
    assert_close_rel_max(out, c["expected"], c["tol_rel_max"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_parity_cuda(parity_weights):
    model = load_method("wct", weights="official", weights_dir=parity_weights("wct"), device="cuda")
    with no_tf32():
        for case in parity_cases("wct"):
            c = load_case(case)
            out = model.stylize(c["content"], c["style"], alpha=c["alpha"]).cpu()
            assert_close_rel_max(out, c["expected"], c["tol_rel_max"])


def _feature_wct_reference(cf: torch.Tensor, sf: torch.Tensor) -> torch.Tensor:
    """test_wct.lua@55f3717 feature_wct, literally: one sample [C,H,W], float64, SVD, k by a loop."""

    def decompose(f):
        x = f.reshape(f.shape[0], -1).double()
        mean = x.mean(1, keepdim=True)
        x = x - mean
        u, e, vh = torch.linalg.svd(x @ x.T / (x.shape[1] - 1))
        k = f.shape[0]
        for i in range(f.shape[0]):
            if e[i] < 1e-5:
                k = i
                break
        return x, mean, e[:k], vh.T[:, :k]

    xc, _, e_c, v_c = decompose(cf)
    _, mean_s, e_s, v_s = decompose(sf)
    whiten = v_c @ torch.diag(e_c.pow(-0.5)) @ v_c.T @ xc
    out = v_s @ torch.diag(e_s.sqrt()) @ v_s.T @ whiten + mean_s
    return out.float().reshape(cf.shape)


def _features(g, n, c, h, w, lo, hi):
    """Features whose covariance spectrum spans 10^lo .. 10^hi (so the 1e-5 cut falls inside it)."""
    q, _ = torch.linalg.qr(torch.randn(c, c, generator=g, dtype=torch.float64))
    scale = torch.logspace(hi / 2, lo / 2, c, dtype=torch.float64)
    z = torch.randn(n, c, h * w, generator=g, dtype=torch.float64)
    return ((q * scale) @ z + 3.0).float().reshape(n, c, h, w)


@pytest.mark.parametrize("shape", [(16, 8, 9), (32, 3, 5)], ids=["full-rank", "rank-deficient"])
@pytest.mark.parametrize("layout", ["one-band", "bands+channels_last"])
def test_batched_eigh_wct_equals_literal_reference(shape, layout, monkeypatch):
    g = torch.Generator().manual_seed(7)
    c, h, w = shape
    cf = _features(g, 2, c, h, w, -9, 1)
    sf = _features(g, 2, c, h + 3, w, -8, 0)
    if layout != "one-band":  # 5 columns per product (the last band shorter), maps in channels_last
        monkeypatch.setattr(wct_mod, "PRODUCT_BYTES", 8 * 2 * c * 5)
        cf, sf = (x.contiguous(memory_format=torch.channels_last) for x in (cf, sf))
    out = wct(cf, sf)
    assert out.dtype == torch.float32 and out.shape == cf.shape
    for i in range(2):
        torch.testing.assert_close(out[i], _feature_wct_reference(cf[i], sf[i]), rtol=1e-5, atol=1e-5)
    # the cut matters: another threshold gives another result
    assert not torch.allclose(wct(cf, sf, threshold=1e-3), out, rtol=1e-3, atol=1e-3)


def test_wct_output_has_style_mean_and_covariance():
    g = torch.Generator().manual_seed(8)
    cf = _features(g, 1, 8, 12, 12, -2, 1)
    sf = _features(g, 1, 8, 10, 11, -1, 2)
    out = wct(cf, sf).double().reshape(8, -1)
    s = sf.double().reshape(8, -1)
    torch.testing.assert_close(out.mean(1), s.mean(1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cov(out), torch.cov(s), rtol=1e-4, atol=1e-5)


def test_wct_leaves_float64_inputs_untouched():
    """wct centres its float64 copies in place (a full-size map less at a time); a float64 caller's maps
    are not those copies."""
    g = torch.Generator().manual_seed(9)
    cf, sf = _features(g, 1, 8, 12, 12, -2, 1).double(), _features(g, 1, 8, 10, 11, -1, 2).double()
    before = cf.clone(), sf.clone()
    out = wct(cf, sf)
    assert out.dtype == torch.float64
    assert torch.equal(cf, before[0]) and torch.equal(sf, before[1])
    torch.testing.assert_close(out, wct(cf.float(), sf.float()).double(), rtol=1e-5, atol=1e-5)


def test_single_position_style_gives_style_mean():
    cf = torch.rand(1, 4, 6, 6)
    sf = torch.rand(1, 4, 1, 1)
    torch.testing.assert_close(wct(cf, sf), sf.expand_as(cf))


def test_any_content_size_tiny_style_and_batch(rand_model):
    g = torch.Generator().manual_seed(4)
    c = torch.rand(2, 3, 72, 88, generator=g)
    s = torch.rand(2, 3, 16, 21, generator=g)  # relu5_1 is 1x2
    out = rand_model.stylize(c, s)
    assert out.shape == (2, 3, 72, 88) and torch.isfinite(out).all()
    torch.testing.assert_close(out[1:], rand_model.stylize(c[1:], s[1:]), rtol=1e-4, atol=1e-4)


def test_stages_hold_the_decompositions(rand_model, monkeypatch):
    current: list[str] = []
    seen: list[str] = []
    eigh_stages: list[str] = []

    @contextlib.contextmanager
    def hook(name):
        current.append(name)
        seen.append(name)
        yield
        current.pop()

    real = torch.linalg.eigh

    def spy(x):
        eigh_stages.append(current[-1] if current else "none")
        return real(x)

    monkeypatch.setattr(torch.linalg, "eigh", spy)
    rand_model.stage_hook = hook
    try:
        rand_model.stylize(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))
    finally:
        rand_model.stage_hook = None
    assert seen == ["encode", "transform", "decode"] * 5
    assert eigh_stages == ["transform"] * 10  # content and style, five levels


def test_alpha_blends_features_at_every_level(rand_model):
    c, s = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    img = c
    with torch.no_grad():
        for k in (5, 4, 3, 2, 1):
            cf = rand_model.encoders[k - 1](img)
            img = rand_model.decoders[k - 1](0.25 * wct(cf, rand_model.encoders[k - 1](s)) + 0.75 * cf)
    torch.testing.assert_close(rand_model.stylize(c, s, alpha=0.25), img)


def test_decoders_match_the_layout_keys():
    layout = read_layout(PARITY / "wct")
    for k in LEVELS:
        entry = layout["files"][f"feature_invertor_conv{k}_1.pth"]
        want = {key: tuple(shape) for key, shape, _ in entry["tensors"]}
        assert {key: tuple(v.shape) for key, v in decoder(k).state_dict().items()} == want
        assert decoder(k)[0].__class__ is nn.ReflectionPad2d and DECODER_PLANS[k][1][-1] == 3


# ---------------------------------------------------------------------------------------------- Torch7 files
def _t7_write(path, seq: nn.Sequential, state: dict[str, torch.Tensor], flat: bool = False) -> None:
    """A minimal Torch7 binary serializer (nn.Sequential of modules with weight/bias) for torchfile."""
    out = bytearray()
    counter = iter(range(1, 10**6))

    def w_int(v):
        out.extend(struct.pack("i", v))

    def w_long(v):
        out.extend(struct.pack("l", v))

    def w_str(s):
        w_int(len(s))
        out.extend(s.encode())

    def w_torch(cls, body):
        w_int(4)
        w_int(next(counter))
        w_str("V 1")
        w_str(cls)
        body()

    def w_obj(o):
        if isinstance(o, (int, float)):
            w_int(1)
            out.extend(struct.pack("d", float(o)))
        elif isinstance(o, str):
            w_int(2)
            w_str(o)
        elif isinstance(o, torch.Tensor):
            t = o.contiguous().float()

            def tensor():
                w_int(t.dim())
                for v in list(t.shape) + list(t.stride()):
                    w_long(v)
                w_long(1)
                w_torch("torch.FloatStorage", lambda: (w_long(t.numel()), out.extend(t.numpy().tobytes())))

            w_torch("torch.FloatTensor", tensor)
        elif isinstance(o, dict):
            w_int(3)
            w_int(next(counter))
            w_int(len(o))
            for k, v in o.items():
                w_obj(k)
                w_obj(v)
        else:
            cls, table = o
            w_torch(cls, lambda: w_obj(table))

    names = {nn.Conv2d: "nn.SpatialConvolution", nn.ReLU: "nn.ReLU", nn.MaxPool2d: "nn.SpatialMaxPooling"}
    modules = {}
    for i, m in enumerate(seq):
        table: dict = {"train": 0}
        if isinstance(m, nn.Conv2d):
            w = state[f"{i}.weight"]
            table.update(weight=w.reshape(w.shape[0], -1) if flat else w, bias=state[f"{i}.bias"], kW=3)
        cls = "nn.SpatialReflectionPadding" if isinstance(m, nn.ReflectionPad2d) else names.get(type(m))
        modules[i + 1] = (cls or "nn.SpatialUpSamplingNearest", table)
    w_obj(("nn.Sequential", {"modules": modules, "train": 0}))
    path.write_bytes(bytes(out))


def test_t7_module_index_mapping_without_torchfile():
    w, b = np.ones((4, 3 * 9), np.float32), np.zeros(4, np.float32)
    mods = [SimpleNamespace(), SimpleNamespace(weight=w, bias=b), SimpleNamespace(weight=None, bias=None)]
    state = t7_module_state(mods, {"1.weight": torch.zeros(4, 3, 3, 3)})
    assert set(state) == {"1.weight", "1.bias"} and state["1.weight"].shape == (4, 3, 3, 3)


def test_t7_files_load_like_the_pth(tmp_path, parity_weights, official):
    pytest.importorskip("torchfile")
    src = parity_weights("wct")
    model = load_method("wct", weights="random")
    for k in LEVELS:
        for seq, stem in (
            (model.encoders[k - 1], "vgg_normalised"),
            (model.decoders[k - 1], "feature_invertor"),
        ):
            state = torch.load(src / f"{stem}_conv{k}_1.pth", weights_only=True)
            _t7_write(tmp_path / f"{stem}_conv{k}_1.t7", seq, state, flat=k == 2)
    from_t7 = load_method(
        "wct", weights="official", weights_dir=tmp_path
    )  # .t7 only: they stand in for the .pth
    assert set(from_t7.weights_info["files"]) == {f.name for f in get_method_spec("wct").files if f.optional}
    for a, b in zip(from_t7.state_dict().values(), official.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_t7_errors(tmp_path, parity_weights, monkeypatch):
    src = parity_weights("wct")
    for f in src.iterdir():
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "feature_invertor_conv3_1.pth").unlink()
    (tmp_path / "feature_invertor_conv3_1.t7").write_bytes(b"\x04\x00\x00\x00garbage")
    if "torchfile" in sys.modules or _has_torchfile():
        with pytest.raises(WeightsError, match=r"feature_invertor_conv3_1.t7: not a readable Torch7 file"):
            load_method("wct", weights="official", weights_dir=tmp_path)
    monkeypatch.setitem(sys.modules, "torchfile", None)  # as if not installed
    with pytest.raises(WeightsError, match=r"feature_invertor_conv3_1.t7: .*needs the torchfile package"):
        load_method("wct", weights="official", weights_dir=tmp_path)


def _has_torchfile() -> bool:
    try:
        import torchfile  # noqa: F401
    except ImportError:
        return False
    return True


def test_missing_file_names_deep_transfer_url(tmp_path):
    with pytest.raises(
        WeightsError,
        match=r"feature_invertor_conv5_1.pth \(published at https://github.com/"
        r"pietrocarbo/deep-transfer/raw/e87e72f9f8612062431a82289b758ef570da52c3/models/"
        r"autoencoder_vgg19/vgg19_5/feature_invertor_conv5_1.pth\)",
    ):
        load_method("wct", weights="official", weights_dir=tmp_path)


def test_registry_metadata():
    spec = get_method_spec("wct")
    assert spec.default_alpha == 0.6 and spec.options == ()
    assert spec.reference.startswith("Yijunmaverick/UniversalStyleTransfer@55f3717")
    pth = [f for f in spec.files if f.name.endswith(".pth")]
    t7 = [f for f in spec.files if f.name.endswith(".t7")]
    assert len(pth) == len(t7) == 10 and all(f.optional for f in t7) and not any(f.optional for f in pth)
    assert {f.name for f in pth} == set(read_layout(PARITY / "wct")["files"])
    assert all(f.layout and f.license for f in spec.files) and all(f.sources for f in pth)
    assert wct_mod.EIG_THRESHOLD == 1e-5


def test_style_is_encoded_once_only_where_the_encoders_share_weights(monkeypatch):
    model = load_method("wct", weights="random", seed=4)
    g = torch.Generator().manual_seed(5)
    c, s = torch.rand(1, 3, 64, 64, generator=g), torch.rand(1, 3, 64, 72, generator=g)
    feats = model._style_features(s)
    assert feats[0] is None  # relu1_1 is computed when level 1 comes
    assert all(torch.equal(a, e(s)) for a, e in zip(feats[1:], model.encoders[1:], strict=True))
    calls = []
    for i, enc in enumerate(model.encoders):
        enc.register_forward_hook(lambda m, a, o, i=i: calls.append(i))
    shared = model.stylize(c, s)
    assert sorted(calls) == [0, 0, 1, 2, 3, 4]  # content: each level; style: relu1_1 only (+ one shared pass)
    saved = model.encoders[1][0].weight.clone()
    with torch.no_grad():
        model.encoders[1][0].weight.add_(0.5)  # level 2's encoder no longer a prefix of level 5's
    assert model._style_features(s) == [None] * 5  # each level encodes the style itself
    calls.clear()
    model.stylize(c, s)
    assert sorted(calls) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    with torch.no_grad():
        model.encoders[1][0].weight.copy_(saved)
    assert torch.equal(model.stylize(c, s), shared)  # the shared pass again, the same output
