from __future__ import annotations

import contextlib
import copy

import pytest
import torch
from conftest import assert_close_rel_max, load_case, no_tf32, parity_cases

from baselines.artflow import MULTIPLE, Block, InvConv1x1LU, wct
from sanet_bench import load_method
from sanet_bench.errors import ConfigError, ImageError, WeightsError
from sanet_bench.registry import get_method_spec

NAMES = {"adain": "artflow-adain", "wct": "artflow-wct"}
LAYOUTS = {"adain": "layout.json", "wct": "layout_wct.json"}


@pytest.fixture(scope="module")
def official(parity_weights):
    return {
        op: load_method(NAMES[op], weights="official", weights_dir=parity_weights("artflow", LAYOUTS[op]))
        for op in NAMES
    }


@pytest.fixture(scope="module")
def rand_models():
    return {op: load_method(name, weights="random", seed=3) for op, name in NAMES.items()}


def _rel(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out - ref).abs().max() / ref.abs().max()).item()


@pytest.mark.parametrize("case", parity_cases("artflow"), ids=lambda p: p.stem)
def test_parity(case, official):
    c = load_case(case)
    assert c["kind"] == "stylize" and c["layout"] == LAYOUTS[c["operator"]]
    model = official[c["operator"]]
    assert_close_rel_max(model.stylize(c["content"], c["style"]), c["expected"], c["tol_rel_max"])


@pytest.mark.parametrize(
    "case", [p for p in parity_cases("artflow") if p.stem in ("case_1", "case_wct_1")], ids=lambda p: p.stem
)
def test_forward_latents(case, official):
    """The debug latents z_c, z_s: image -> z matches the reference to ~1e-6 (float32 noise)."""
    c = load_case(case)
    glow = official[c["operator"]].glow
    with torch.no_grad():
        assert_close_rel_max(glow(c["content"]), c["z_content"], 2e-5)
        assert_close_rel_max(glow(c["style"]), c["z_style"], 2e-5)


def test_parity_cases_cover_both_variants():
    ops = sorted(load_case(p)["operator"] for p in parity_cases("artflow"))
    assert ops == ["adain", "adain", "wct", "wct"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_parity_cuda(parity_weights):
    models = {
        op: load_method(
            NAMES[op], weights="official", weights_dir=parity_weights("artflow", LAYOUTS[op]), device="cuda"
        )
        for op in NAMES
    }
    with no_tf32():
        for case in parity_cases("artflow"):
            c = load_case(case)
            out = models[c["operator"]].stylize(c["content"], c["style"]).cpu()
            assert_close_rel_max(out, c["expected"], c["tol_rel_max"])


# ------------------------------------------------------------------------------------------ the flow itself
def test_round_trip_is_the_identity(official):
    """reverse(forward(x)) == x: float32 noise only (README: 8e-6 .. 1.4e-5), and ~1e-14 in float64."""
    glow = official["adain"].glow
    g = torch.Generator().manual_seed(11)
    x = torch.rand(2, 3, 32, 40, generator=g)
    with torch.no_grad():
        z = glow(x)
        assert z.shape == (2, 48, 8, 10)
        assert _rel(glow.reverse(z), x) < 5e-5
        x, z = x[:1, :, :16, :24].double(), z[:1, :, :4, :6].double()
        g64 = copy.deepcopy(glow).double()
        assert _rel(g64.reverse(g64(x)), x) < 1e-10
        # and the other way round: forward(reverse(z)) == z
        assert _rel(g64(g64.reverse(z)), z) < 1e-10


def test_every_flow_is_inverted_by_its_reverse(official):
    flow = official["wct"].glow.blocks[1].flows[3]
    x = torch.randn(1, 48, 6, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    f64 = copy.deepcopy(flow).double()
    with torch.no_grad():
        y = f64(x)
        assert _rel(y, x) > 1e-2  # not the identity
        for part in (f64.actnorm, f64.invconv, f64.coupling):
            assert _rel(part.reverse(part(x)), x) < 1e-12
        assert _rel(f64.reverse(y), x) < 1e-12


def test_squeeze_channel_order():
    """y[c*4 + dy*2 + dx, i, j] = x[c, 2i+dy, 2j+dx] (the reference's view/permute), and back."""
    block = Block(3, n_flow=0)
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    y = block(x)
    assert y.shape == (2, 12, 2, 3)
    for c in range(3):
        for dy in range(2):
            for dx in range(2):
                torch.testing.assert_close(y[:, c * 4 + dy * 2 + dx], x[:, c, dy::2, dx::2], rtol=0, atol=0)
    torch.testing.assert_close(block.reverse(y), x, rtol=0, atol=0)


def test_lu_weight_uses_masks_permutation_and_sign():
    torch.manual_seed(0)
    conv = InvConv1x1LU(6).double()
    with torch.no_grad():
        conv.w_l.normal_()
        conv.w_u.normal_()  # entries outside the masks are random too (as in the parity files)
        conv.w_s.normal_(0, 0.1)
        conv.s_sign.copy_(torch.tensor([1.0, -1, 1, 1, -1, -1]))
        conv.w_p.copy_(torch.eye(6)[torch.tensor([2, 0, 5, 1, 4, 3])])
        w = conv.weight()
        det = torch.linalg.det(conv.w_p) * conv.s_sign.prod() * conv.w_s.sum().exp()
        torch.testing.assert_close(torch.linalg.det(w), det)
        before = w.clone()
        conv.w_l.add_(torch.triu(torch.ones(6, 6)))  # on and above the diagonal: masked out
        conv.w_u.add_(torch.tril(torch.ones(6, 6)))  # on and below the diagonal: masked out
        torch.testing.assert_close(conv.weight(), before, rtol=0, atol=0)
        # W = P L U with P applied on the left (not its transpose)
        lower = torch.tril(conv.w_l, -1) + torch.eye(6, dtype=w.dtype)
        upper = torch.triu(conv.w_u, 1) + torch.diag(conv.s_sign * conv.w_s.exp())
        torch.testing.assert_close(conv.weight(), conv.w_p @ lower @ upper)


def test_actnorm_flag_is_not_read(parity_weights, tmp_path, official):
    """initialized = 0 would make the reference re-initialise loc/scale from the content; never here."""
    src = parity_weights("artflow") / "glow.pth"
    ckpt = torch.load(src, weights_only=True)
    for k in ckpt["state_dict"]:
        if k.endswith("actnorm.initialized"):
            ckpt["state_dict"][k] = torch.tensor(0, dtype=torch.uint8)
    torch.save(ckpt, tmp_path / "glow.pth")
    glow = load_method("artflow-adain", weights="official", weights_dir=tmp_path).glow
    assert all(m.initialized.item() == 0 for m in glow.modules() if hasattr(m, "initialized"))
    x = torch.rand(1, 3, 16, 20, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        z = glow(x)
        torch.testing.assert_close(z, official["adain"].glow(x), rtol=0, atol=0)
        torch.testing.assert_close(glow(x * 0.5), official["adain"].glow(x * 0.5), rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------- WCT
def _wct_literal(cf: torch.Tensor, sf: torch.Tensor) -> torch.Tensor:
    """glow_wct.wct as written, for one sample [C, P] in float64: SVD, k by the reference's loop, slices."""

    def decompose(f):
        mean = f.mean(1, keepdim=True)
        x = f - mean
        u, e, vh = torch.linalg.svd(x @ x.T / (x.shape[1] - 1))
        k = f.shape[0]
        for i in range(f.shape[0] - 1, -1, -1):
            if e[i] >= 1e-5:
                k = i + 1
                break
        return x, mean, e[:k], vh.T[:, :k]

    xc, _, e_c, v_c = decompose(cf)
    _, mean_s, e_s, v_s = decompose(sf)
    whiten = v_c @ torch.diag(e_c.pow(-0.5)) @ v_c.T @ xc
    return v_s @ torch.diag(e_s.sqrt()) @ v_s.T @ whiten + mean_s


@pytest.mark.parametrize(
    "style_hw, style_scale",
    [((9, 11), 1.0), ((3, 4), 1.0), ((9, 11), 1e-4)],
    ids=["full-rank", "style-rank-11-of-12", "style-below-cut-keeps-all"],
)
def test_wct_matches_the_reference_loop(style_hw, style_scale):
    g = torch.Generator().manual_seed(7)
    spread = torch.linspace(0.2, 2, 12, dtype=torch.float64).view(1, 12, 1, 1)
    c = torch.randn(2, 12, 8, 10, generator=g, dtype=torch.float64) * spread
    s = torch.randn(2, 12, *style_hw, generator=g, dtype=torch.float64) * style_scale + 0.5
    out = wct(c, s)
    assert out.shape == c.shape
    for i in range(2):
        ref = _wct_literal(c[i].reshape(12, -1), s[i].reshape(12, -1)).reshape(c[i].shape)
        torch.testing.assert_close(out[i], ref, rtol=1e-9, atol=1e-9)


def test_wct_colours_with_the_style_covariance():
    g = torch.Generator().manual_seed(8)
    c = torch.randn(1, 48, 16, 20, generator=g)
    s = torch.randn(1, 48, 18, 22, generator=g) * 0.5 + 0.2
    s = s + 0.5 * s.roll(1, 1)  # correlated channels
    out = wct(c, s).reshape(48, -1).double()
    fs = s.reshape(48, -1).double()
    torch.testing.assert_close(out.mean(1), fs.mean(1), rtol=0, atol=1e-5)
    torch.testing.assert_close(torch.cov(out), torch.cov(fs), rtol=0, atol=2e-4)


# ---------------------------------------------------------------------------------------- input policy
@pytest.mark.parametrize("op", list(NAMES))
def test_random_weights_any_multiple_of_4(rand_models, op):
    model = rand_models[op]
    g = torch.Generator().manual_seed(1)
    c = torch.rand(2, 3, 64, 68, generator=g)
    s = torch.rand(2, 3, 36, 28, generator=g)  # another size; 63 latent positions
    out = model.stylize(c, s)
    assert out.shape == c.shape and torch.isfinite(out).all()
    # each sample is its own transfer (the reference runs batch 1)
    torch.testing.assert_close(out[1:], model.stylize(c[1:], s[1:]), rtol=1e-4, atol=1e-5)
    # a small style (16 latent positions, a rank-deficient covariance for WCT) still runs
    assert torch.isfinite(model.stylize(c[:1], torch.rand(1, 3, 16, 16, generator=g))).all()


@pytest.mark.parametrize("op", list(NAMES))
@pytest.mark.parametrize(
    "content_hw, style_hw, what",
    [((66, 64), (64, 64), "content is 64x66 px"), ((64, 64), (64, 70), "style is 70x64 px")],
)
def test_sides_not_multiple_of_4_are_refused(rand_models, op, content_hw, style_hw, what):
    spec = get_method_spec(NAMES[op])
    assert spec.input_policy.multiple == MULTIPLE == 4
    msg = rf"{what}; {NAMES[op]} needs both sides a multiple of 4.*crop it to"
    with pytest.raises(ImageError, match=msg):
        rand_models[op].stylize(torch.rand(1, 3, *content_hw), torch.rand(1, 3, *style_hw))


def test_no_alpha(rand_models):
    c = torch.rand(1, 3, 64, 64)
    with pytest.raises(ConfigError, match="no content-style trade-off"):
        rand_models["adain"].stylize(c, c, alpha=0.5)
    with pytest.raises(ConfigError, match="has no option"):
        rand_models["wct"].stylize(c, c, preserve_color=True)


def test_stages(rand_models):
    model = rand_models["wct"]
    seen: list[str] = []

    @contextlib.contextmanager
    def hook(name):
        seen.append(name)
        yield

    model.stage_hook = hook
    try:
        model.stylize(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))
    finally:
        model.stage_hook = None
    assert seen == ["encode", "transform", "decode"]


# -------------------------------------------------------------------------------------------- loading
def test_either_checkpoint_loads_into_either_variant(parity_weights):
    wct_dir = parity_weights("artflow", "layout_wct.json")
    a = load_method("artflow-adain", weights="official", weights_dir=wct_dir)
    w = load_method("artflow-wct", weights="official", weights_dir=wct_dir)
    for p, q in zip(a.glow.state_dict().values(), w.glow.state_dict().values(), strict=True):
        assert torch.equal(p, q)


def _broken(parity_weights, tmp_path, edit):
    ckpt = torch.load(parity_weights("artflow") / "glow.pth", weights_only=True)
    edit(ckpt["state_dict"])
    torch.save(ckpt, tmp_path / "glow.pth")
    return tmp_path


def test_renamed_key_is_refused(parity_weights, tmp_path):
    def rename(sd):
        sd["blocks.1.flows.7.invconv.weight"] = sd.pop("blocks.1.flows.7.invconv.w_l")

    d = _broken(parity_weights, tmp_path, rename)
    with pytest.raises(WeightsError, match=r"glow\.pth: missing keys \[blocks\.1\.flows\.7\.invconv\.w_l\]"):
        load_method("artflow-wct", weights="official", weights_dir=d)


def test_wrong_shape_is_refused(parity_weights, tmp_path):
    def reshape(sd):
        sd["blocks.0.flows.2.coupling.net.4.conv.weight"] = torch.zeros(12, 512, 3, 3)

    d = _broken(parity_weights, tmp_path, reshape)
    msg = (
        r"glow\.pth: key blocks\.0\.flows\.2\.coupling\.net\.4\.conv\.weight "
        r"has shape \(12, 512, 3, 3\), expected \(6, 512, 3, 3\)"
    )
    with pytest.raises(WeightsError, match=msg):
        load_method("artflow-adain", weights="official", weights_dir=d)


@pytest.mark.parametrize("name", list(NAMES.values()))
def test_missing_file_names_where_it_is_published(tmp_path, name):
    with pytest.raises(
        WeightsError,
        match=r"glow\.pth \(published at https://drive\.google\.com/drive/folders/1w2fHgSBYwjplfeCXI8eOGYpi69CpJBTE[;)]",
    ):
        load_method(name, weights="official", weights_dir=tmp_path)


def test_registry_metadata():
    for op, name in NAMES.items():
        spec = get_method_spec(name)
        assert spec.reference == "pkuanjie/ArtFlow@bbc33ecb745989efc9ef937118c60cbcee4153b2"
        assert not spec.has_alpha and spec.default_alpha == 1.0 and spec.options == ()
        assert spec.weights_kinds == ("official", "random", "auto")
        assert spec.stages == ("encode", "transform", "decode")
        (f,) = spec.files
        assert f.name == "glow.pth" and f.sha256 is None and f.layout and f.license
        (src,) = f.sources
        assert src.kind == "manual" and "1w2fHgSBYwjplfeCXI8eOGYpi69CpJBTE" in src.url
        variant = "ArtFlow-AdaIN" if op == "adain" else "ArtFlow-WCT"
        assert f"experiments/{variant}/glow.pth" in src.note
        assert f"sanet-bench weights import <download>/experiments/{variant} {name}" in src.note


@pytest.mark.parametrize("name", ["artflow-adain", "artflow-wct"])
def test_half_precision_keeps_the_linear_algebra_in_float32(name, monkeypatch):
    """CUDA has no bf16/fp16 inverse or SVD (measured on an H200: both raised): they must see float32."""
    from sanet_bench.method import prepare

    for fn in ("inv", "svd"):
        real = getattr(torch.linalg, fn)

        def strict(a, *args, _real=real, _fn=fn, **kw):
            assert a.dtype in (torch.float32, torch.float64), f"linalg.{_fn} got {a.dtype}"
            return _real(a, *args, **kw)

        monkeypatch.setattr(torch.linalg, fn, strict)
    model = prepare(load_method(name, weights="random", seed=0), "bf16")
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    out = model.stylize(x, x.flip(-1))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
