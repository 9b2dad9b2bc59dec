from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_close_rel_max, load_case, no_tf32, parity_cases

from baselines import mast as M
from sanet_bench import load_method
from sanet_bench.errors import ImageError, WeightsError
from sanet_bench.registry import get_method_spec
from sanet_bench.weights import read_state_dict


@pytest.fixture(scope="module")
def official(parity_weights):
    return load_method("mast", weights="official", weights_dir=parity_weights("mast"))


@pytest.fixture(scope="module")
def rand_model():
    return load_method("mast", weights="random", seed=3)


@pytest.mark.parametrize("case", parity_cases("mast"), ids=lambda p: p.stem)
def test_parity(case, official):
    c = load_case(case)
    assert c["kind"] == "stylize" and c["precision"] == "float64"
    out = official.stylize(c["content"], c["style"], alpha=c["style_weight"])
    assert out.dtype == torch.float32
    assert_close_rel_max(out, c["expected"], c["tol_rel_max"])


def test_parity_intermediate_levels(official):
    """The images decoded after r41 and r31 (the fixtures' debugging aids), on the two smallest cases."""
    for case in parity_cases("mast")[:2]:
        c = load_case(case)
        with torch.no_grad():
            after = official.cascade(c["content"], c["style"], c["style_weight"])
        assert [a.dtype for a in after] == [torch.float64] * 3
        assert_close_rel_max(after[0].float(), c["expected_after_r41"], c["tol_rel_max"])
        assert_close_rel_max(after[1].float(), c["expected_after_r31"], c["tol_rel_max"])
        assert_close_rel_max(after[2].float(), c["expected"], c["tol_rel_max"])


def test_cases_use_the_reference_defaults():
    for case in parity_cases("mast"):
        c = load_case(case)
        assert tuple(c["layers"].split(",")) == M.LEVELS
        assert (c["k_cross"], c["dim_thresh"], c["patch_size"]) == (M.K_CROSS, M.DIM_THRESH, 1)
        assert (c["reduce_dim_type"], c["max_use_num"], c["orthogonal_constraint"]) == ("avg_pool", -1, False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_parity_cuda(parity_weights):
    model = load_method("mast", weights="official", weights_dir=parity_weights("mast"), device="cuda")
    with no_tf32():
        for case in parity_cases("mast"):
            c = load_case(case)
            out = model.stylize(c["content"], c["style"], alpha=c["style_weight"]).cpu()
            assert_close_rel_max(out, c["expected"], c["tol_rel_max"])


# ------------------------------------------------------------------------------------------ the alignment
def _dense_mast(cf: torch.Tensor, sf: torch.Tensor, k: int = 5) -> torch.Tensor:
    """The README's recipe written densely: full S, dense U from both top-ks, explicit normalisation."""
    c, s = cf.unsqueeze(0), sf.unsqueeze(0)
    while c.shape[-2] * c.shape[-1] > 128 * 128:
        c = F.avg_pool2d(c, 2, 2)
    while s.shape[-2] * s.shape[-1] > 128 * 128:
        s = F.avg_pool2d(s, 2, 2)
    c, s = c.flatten(2)[0], s.flatten(2)[0]
    sim = F.normalize(c, dim=0).T @ F.normalize(s, dim=0)
    u = torch.zeros_like(sim)
    u.scatter_(0, sim.topk(k, dim=0).indices, 1.0)
    u.scatter_(1, sim.topk(k, dim=1).indices, 1.0)
    u = u / u.sum()
    a = c @ torch.diag(u.sum(1)) @ c.T + 1e-12 * torch.eye(c.shape[0], dtype=c.dtype)
    p = torch.linalg.solve(a, c @ u @ s.T)
    return (p.T @ cf.flatten(1)).reshape(cf.shape)


def test_alignment_matches_the_dense_recipe_with_pooling():
    g = torch.Generator().manual_seed(0)
    cf = torch.rand(6, 131, 129, generator=g, dtype=torch.float64)  # pooled once (floor) to 65x64
    sf = torch.rand(6, 23, 31, generator=g, dtype=torch.float64)
    torch.testing.assert_close(M.mast_transform(cf, sf), _dense_mast(cf, sf), rtol=1e-9, atol=1e-10)


def test_knn_chunks_agree_with_one_block(monkeypatch):
    g = torch.Generator().manual_seed(1)
    c = torch.randn(8, 300, generator=g, dtype=torch.float64)
    s = torch.randn(8, 70, generator=g, dtype=torch.float64)
    whole = M.knn_pairs(c, s)
    monkeypatch.setattr(M, "SIM_CHUNK_ELEMENTS", 70 * 7)  # chunks of 7 content positions, the last of 6
    chunked = M.knn_pairs(c, s)
    assert all(torch.equal(a, b) for a, b in zip(whole, chunked, strict=True))


def test_knn_is_the_union_of_both_directions():
    g = torch.Generator().manual_seed(3)
    c = torch.randn(4, 50, generator=g, dtype=torch.float64)
    s = torch.randn(4, 30, generator=g, dtype=torch.float64)
    i, j = M.knn_pairs(c, s, k=3)
    got = set(zip(i.tolist(), j.tolist(), strict=True))
    sim = F.normalize(c, dim=0).T @ F.normalize(s, dim=0)
    by_rows = {(r, int(x)) for r in range(50) for x in sim[r].topk(3).indices}
    by_cols = {(int(x), col) for col in range(30) for x in sim[:, col].topk(3).indices}
    assert got == by_rows | by_cols
    assert by_cols - by_rows and by_rows - by_cols  # both directions add pairs here
    assert len(got) == i.numel()  # no duplicates, so U / sum(U) weighs each pair once
    assert torch.equal(i * 30 + j, (i * 30 + j).sort().values)


def test_fewer_positions_than_channels_gives_matched_style_means():
    """A singular (up to 1e-12 I) A: solve returns each content position's mean of its matched styles."""
    g = torch.Generator().manual_seed(2)
    cf = torch.rand(16, 2, 3, generator=g, dtype=torch.float64)
    sf = torch.rand(16, 4, 5, generator=g, dtype=torch.float64)
    c, s = cf.flatten(1), sf.flatten(1)
    i, j = M.knn_pairs(c, s)
    means = torch.zeros(6, 16, dtype=torch.float64).index_add_(0, i, s[:, j].T)
    means /= torch.bincount(i, minlength=6).unsqueeze(1)
    torch.testing.assert_close(M.mast_transform(cf, sf).flatten(1), means.T, rtol=1e-6, atol=1e-8)


# ----------------------------------------------------------------------------------------------- the model
def test_alpha_blends_the_features_and_alpha_zero_is_reconstruction(rand_model):
    g = torch.Generator().manual_seed(4)
    c, s = torch.rand(1, 3, 32, 40, generator=g), torch.rand(1, 3, 34, 33, generator=g)
    img = c.double()
    with torch.no_grad():
        for lv in M.LEVELS:
            img = rand_model.decoders[lv](rand_model.encoder(img, upto=lv)[lv])
    torch.testing.assert_close(rand_model.stylize(c, s, alpha=0.0), img.float(), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(rand_model.stylize(c, s, alpha=0.5), img.float(), rtol=1e-3, atol=1e-4)


def test_random_weights_any_valid_size_and_batch(rand_model):
    g = torch.Generator().manual_seed(5)
    c = torch.rand(2, 3, 32, 56, generator=g)
    s = torch.rand(2, 3, 45, 33, generator=g)
    out = rand_model.stylize(c, s)
    assert out.shape == c.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    torch.testing.assert_close(out[1:], rand_model.stylize(c[1:], s[1:]), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "content, style, match",
    [
        ((60, 64), (40, 40), r"content is 64x60 px.*multiples of 8 \(e.g. to 64x56\)"),
        ((64, 64), (40, 24), r"style is 24x40 px.*at least 32"),
        ((24, 64), (40, 40), r"content is 64x24 px.*at least 32"),
    ],
)
def test_refuses_sizes_the_reference_cannot_compute(rand_model, content, style, match):
    with pytest.raises(ImageError, match=match):
        rand_model.stylize(torch.rand(1, 3, *content), torch.rand(1, 3, *style))


# ------------------------------------------------------------------------------------------------ loading
@pytest.fixture
def weights_copy(parity_weights, tmp_path):
    """The parity files under their official names, copied (symlinked) into a folder a test may change."""
    src = parity_weights("mast")
    for f in src.rglob("*.pth"):
        dest = tmp_path / f.relative_to(src)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.symlink_to(f)
    return tmp_path


def _rewrite(path, change):
    state = read_state_dict(path)
    path.unlink()
    change(state)
    torch.save(state, path)


def test_renamed_key_names_the_file(weights_copy):
    path = weights_copy / "vgg_r51.pth"
    _rewrite(path, lambda st: st.update({"conv3.w": st.pop("conv3.weight")}))
    with pytest.raises(WeightsError, match=r"vgg_r51.pth: missing keys \[conv3.weight\].*unexpected keys"):
        load_method("mast", weights="official", weights_dir=weights_copy)


def test_wrong_shape_names_the_file(weights_copy):
    path = weights_copy / "Artistic_decoders" / "dec_r41.pth"
    _rewrite(path, lambda st: st.update({"conv19.weight": st["conv19.weight"][:128]}))
    with pytest.raises(WeightsError, match=r"dec_r41.pth: key conv19.weight has shape \(128, 512, 3, 3\)"):
        load_method("mast", weights="official", weights_dir=weights_copy)


def test_missing_file_names_where_it_is_published(weights_copy):
    (weights_copy / "Artistic_decoders" / "dec_r31.pth").unlink()
    with pytest.raises(
        WeightsError,
        match=r"Artistic_decoders/dec_r31.pth \(published at "
        r"https://drive.google.com/file/d/16R7monpAEN_hFuQPvaB6sYuBJMyaJiK7/",
    ):
        load_method("mast", weights="official", weights_dir=weights_copy)


def test_optional_decoders_are_not_needed(weights_copy):
    (weights_copy / "Artistic_decoders" / "dec_r11.pth").unlink(missing_ok=True)
    (weights_copy / "Artistic_decoders" / "dec_r51.pth").unlink(missing_ok=True)
    model = load_method("mast", weights="official", weights_dir=weights_copy)
    assert set(model.weights_info["files"]) == {"vgg_r51.pth", "dec_r41.pth", "dec_r31.pth", "dec_r21.pth"}


def test_registry_metadata():
    spec = get_method_spec("mast")
    assert spec.reference == "NJUHuoJing/MAST@6cce6bfeed98e8f2d96b02760d3eaf985e14b984"
    assert spec.default_alpha == 0.6 and spec.has_alpha and spec.options == ()
    assert spec.weights_kinds == ("official", "random", "auto")
    assert spec.input_policy.multiple == 8 and spec.min_size == 32
    assert "float64" in spec.notes
    required = [f.name for f in spec.files if not f.optional]
    optional = [f.name for f in spec.files if f.optional]
    assert required == ["vgg_r51.pth"] + [f"Artistic_decoders/dec_{lv}.pth" for lv in ("r41", "r31", "r21")]
    assert optional == ["Artistic_decoders/dec_r11.pth", "Artistic_decoders/dec_r51.pth"]
    for f in spec.files:
        assert (f.archive, f.member) == ("checkpoints.zip", f"checkpoints/{f.name}")
        assert f.sources[0].kind == "gdrive" and f.layout and f.license and f.sha256 is None
