from __future__ import annotations

import hashlib

import lpips
import pytest
import torch
import torch.nn.functional as F

from sanet_bench import load_method
from sanet_bench.errors import WeightsError
from sanet_bench.metrics import ExtractorCache, build, evaluate, extractors, needs_of, quantise
from sanet_bench.metrics.extractors import (
    ALEXNET,
    ALEXNET_FILE,
    VGG,
    LPIPSNet,
    VGGFeatures,
    build_lpips,
    load_metric_encoder,
)
from sanet_bench.metrics.lpips_metric import LPIPS
from sanet_bench.metrics.ssim import ssim_luminance
from sanet_bench.metrics.vgg_losses import ContentLoss, ContentLossRaw, StyleLoss, StyleLossGram
from sanet_bench.nn.precision import tf32_flags
from sanet_bench.nn.stats import mean_variance_norm
from sanet_bench.nn.vgg import OFFLINE_VGG_ID, VGGEncoder, vgg_normalised
from sanet_bench.registry import metric_specs
from sanet_bench.sanet import sanet_losses
from sanet_bench.weights import METRICS, cache_path

ALL = ["content_loss", "content_loss_raw", "lpips", "ssim", "style_loss", "style_loss_gram"]


def _img(seed: int, h: int = 64, w: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lo = torch.rand(1, 3, h // 8, w // 8, generator=g)
    return F.interpolate(lo, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)


class Nets:
    """The old ``Networks`` test handle: an extractor cache with the given networks pinned, and the VGG
    feature store (``_feats``/``_kept``/``keep_bytes``) of :class:`VGGFeatures`."""

    def __init__(self, encoder: VGGEncoder | None = None, lpips_model=None, cache=None):
        pinned = [VGGFeatures(encoder.eval(), "test")] if encoder is not None else []
        pinned += [LPIPSNet(lpips_model, "test")] if lpips_model is not None else []
        self.cache = cache or ExtractorCache(tuple(pinned))
        self.vgg = self.cache.pinned.get(VGG)

    def __getattr__(self, name):  # _feats, _kept, keep_bytes, encoder
        return getattr(self.vgg, name)

    def __setattr__(self, name, value):
        if name == "keep_bytes":
            self.vgg.keep_bytes = value
        else:
            object.__setattr__(self, name, value)

    def metrics(self, names):
        return build(names, extractors=self.cache)


def _nets_with(encoder: VGGEncoder) -> Nets:
    return Nets(encoder)


def content_loss(o, c, nets):
    return ContentLoss(extractors=nets.cache).score(o, c)


def content_loss_raw(o, c, nets):
    return ContentLossRaw(extractors=nets.cache).score(o, c)


def style_loss(o, s, nets):
    return StyleLoss(extractors=nets.cache).score(o, s)


def style_loss_gram(o, s, nets):
    return StyleLossGram(extractors=nets.cache).score(o, s)


def lpips_distance(x, y, nets):
    return LPIPS(extractors=nets.cache).score(x, y)


def evaluate_names(o, c, s, nets, names):
    return evaluate(o, c, s, nets.metrics(names))


def test_registry_contracts_are_complete():
    specs = metric_specs()
    assert sorted(specs) == sorted([*ALL, "artfid", "artfid_inf", "cfsd", "fid", "histogram_loss"])
    assert specs["ssim"].needs == () and specs["ssim"].higher_is_better
    assert specs["lpips"].needs == (ALEXNET,) and not specs["lpips"].higher_is_better
    for name in ALL:
        assert specs[name].compares in ("output-content", "output-style")
        assert specs[name].convention and specs[name].input_range
    assert needs_of(["style_loss", "ssim"]) == {VGG}


def test_vgg_losses_equal_sanet_training_losses():
    """content_loss / style_loss are SANet's loss_c / loss_s (independent code in sanet.sanet_losses)."""
    model = load_method("sanet", weights="random", seed=3)
    c, s = _img(1), _img(2)
    with torch.no_grad():
        losses = sanet_losses(model.encoder, model.transform, model.decoder, c, s)
        cf, sf = model.encoder(c), model.encoder(s)
        g = model.decoder(model.transform(cf[3], sf[3], cf[4], sf[4]))
    nets = _nets_with(model.encoder)
    assert content_loss(g, c, nets) == pytest.approx(losses["loss_c"].item(), rel=1e-5)
    assert style_loss(g, s, nets) == pytest.approx(losses["loss_s"].item(), rel=1e-5)


def test_raw_and_gram_variants_follow_their_formulas():
    enc = VGGEncoder(vgg_normalised()).eval()
    nets = _nets_with(enc)
    o, c, s = _img(3), _img(4), _img(5, 48, 80)  # style of another size: gram/mean-std are size-free
    with torch.no_grad():
        fo, fc, fs = enc(o), enc(c), enc(s)
    raw = sum(((fo[i] - fc[i]) ** 2).mean().item() for i in (3, 4))
    assert content_loss_raw(o, c, nets) == pytest.approx(raw, rel=1e-5)
    gram = 0.0
    for a, b in zip(fo, fs, strict=True):
        ga = torch.einsum("nchw,ndhw->ncd", a, a) / (a.shape[2] * a.shape[3])
        gb = torch.einsum("nchw,ndhw->ncd", b, b) / (b.shape[2] * b.shape[3])
        gram += ((ga - gb) ** 2).mean().item()
    assert style_loss_gram(o, s, nets) == pytest.approx(gram, rel=1e-4)
    # the normalised content loss ignores a per-channel affine change of the features; the raw one does not
    mvn = sum(((mean_variance_norm(fo[i]) - mean_variance_norm(fc[i])) ** 2).mean().item() for i in (3, 4))
    assert content_loss(o, c, nets) == pytest.approx(mvn, rel=1e-5)
    assert content_loss(c, c, nets) == 0.0 and content_loss_raw(c, c, nets) == 0.0


def _counting_nets() -> tuple[Nets, list[int]]:
    """Networks whose encoder appends to the returned list at every forward."""
    enc = VGGEncoder(vgg_normalised()).eval()
    calls: list[int] = []
    enc.register_forward_hook(lambda *a: calls.append(1))
    return _nets_with(enc), calls


def test_features_are_computed_once_per_tensor_per_cell():
    nets, calls = _counting_nets()
    o, c, s = _img(6), _img(7), _img(8)
    vgg_metrics = ["content_loss", "content_loss_raw", "style_loss", "style_loss_gram"]
    values, missing = evaluate_names(o, c, s, nets, vgg_metrics)
    assert len(calls) == 3 and not missing and all(v is not None for v in values.values())
    assert nets._feats == {}  # the output's are forgotten after the cell...
    again, _ = evaluate_names(o, c, s, nets, vgg_metrics)
    assert len(calls) == 4 and again == values  # ...the content's and style's are kept for the next cells


def test_kept_features_are_bounded_and_never_stale():
    nets, calls = _counting_nets()
    c1, c2, s = _img(7), _img(8), _img(9)
    evaluate_names(_img(6), c1, s, nets, ["content_loss"])  # computes out, c1 (s is not needed)
    per_image = sum(f.numel() * f.element_size() for f in nets.vgg.features(c1))
    assert len(calls) == 2
    c1.mul_(0.5)  # modified in place: its kept features no longer describe it
    fresh, _ = evaluate_names(_img(6), c1, s, nets, ["content_loss"])
    assert len(calls) == 4 and fresh == evaluate_names(_img(6), c1.clone(), s, nets, ["content_loss"])[0]
    nets.keep_bytes = per_image  # room for one image: c2 evicts c1
    n = len(calls)
    evaluate_names(_img(6), c2, s, nets, ["content_loss"])
    evaluate_names(_img(6), c1, s, nets, ["content_loss"])
    assert len(calls) == n + 4 and len(nets._kept) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_copies_of_the_images_are_not_kept():
    nets, calls = _counting_nets()
    nets.encoder.cuda()
    nets.vgg.device = torch.device("cuda")
    c, s = _img(7), _img(8)  # on the CPU: evaluate moves them to the output's device, a new tensor each cell
    evaluate_names(_img(6).cuda(), c, s, nets, ["content_loss"])
    assert len(calls) == 2 and not nets._kept


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_metrics_compute_in_full_float32(monkeypatch):
    """torch's default runs cuDNN convolutions in TF32; metrics on CUDA turn it off for their computation."""
    [metric] = Nets().metrics(["ssim"])
    seen, score = [], metric.score
    monkeypatch.setattr(metric, "score", lambda o, r: seen.append(tf32_flags()) or score(o, r))
    evaluate(_img(1).cuda(), _img(1), _img(2), [metric])
    assert seen == [(False, False)]


def test_ssim_uses_bt601_luminance():
    c = _img(9)
    assert ssim_luminance(c, c) == pytest.approx(1.0, abs=1e-12)
    # change the colour but keep Y: shift R and compensate with B so 0.299 dR + 0.114 dB = 0
    dr = 0.05 * torch.ones_like(c[:, :1])
    shifted = c.clone()
    shifted[:, 0:1] += dr * 0.114
    shifted[:, 2:3] -= dr * 0.299
    assert ssim_luminance(shifted, c) == pytest.approx(1.0, abs=1e-9)
    noisy = (c + 0.1 * torch.randn_like(c)).clamp(0, 1)
    assert ssim_luminance(noisy, c) < 0.9


def test_lpips_equals_reference_package():
    """Same random AlexNet backbone in both (pnet_rand=True, fixed seed); linear heads from the package."""
    torch.manual_seed(123)
    ref = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False).eval()
    backbone = {f"features.{k.split('.', 1)[1]}": v for k, v in ref.net.state_dict().items()}
    nets = Nets(lpips_model=build_lpips(backbone))
    for seed in (10, 11):
        x, y = _img(seed, 64, 96), _img(seed + 100, 64, 96)
        with torch.no_grad():
            want = ref(x * 2 - 1, y * 2 - 1).item()
        got = lpips_distance(x, y, nets)
        assert abs(got - want) <= 1e-6, (got, want)
        assert want > 0
    assert lpips_distance(x, x, nets) == pytest.approx(0.0, abs=1e-7)


def test_lpips_missing_without_alexnet_weights(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    nets = Nets(cache=ExtractorCache())
    values, missing = evaluate_names(_img(1), _img(1), _img(2), nets, ["lpips", "ssim"])
    assert values["lpips"] is None and values["ssim"] > 0.99  # SSIM still runs (8-bit output vs float)
    where = tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    fix = "run `sanet-bench weights pull lpips`"
    assert missing == {"lpips": f"AlexNet ImageNet weights not in {where}; {fix}"}


def test_lpips_built_from_hub_cache_file(monkeypatch, tmp_path):
    torch.manual_seed(5)
    ref = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False).eval()
    backbone = {f"features.{k.split('.', 1)[1]}": v for k, v in ref.net.state_dict().items()}
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    path = cache_path(METRICS, ALEXNET_FILE)
    path.parent.mkdir(parents=True)
    torch.save(backbone, path)  # the features part of torchvision's layout suffices
    # random weights cannot carry the published file's sha256 prefix (7be5be79): refused at load
    reason = LPIPS(extractors=ExtractorCache()).missing()
    assert reason and f"{path}: sha256" in reason and "does not start with 7be5be79" in reason
    monkeypatch.setattr(extractors, "check_hub_prefix", lambda *a: None)  # as if it were the published file
    nets = Nets(cache=ExtractorCache())
    assert ALEXNET not in LPIPS(extractors=nets.cache).missing_components()
    x, y = _img(1), _img(2)
    with torch.no_grad():
        assert lpips_distance(x, y, nets) == pytest.approx(ref(2 * x - 1, 2 * y - 1).item(), abs=1e-6)


def test_metric_encoder_official_file_identified_by_sha256(tmp_path):
    enc, enc_id, reason = load_metric_encoder(None)
    assert enc_id == OFFLINE_VGG_ID and reason is None and "NOT" in enc_id
    torch.manual_seed(0)
    vgg = vgg_normalised()
    path = tmp_path / "vgg_normalised.pth"
    torch.save(vgg.state_dict(), path)
    enc, enc_id, reason = load_metric_encoder(tmp_path)
    assert enc_id == f"official vgg_normalised.pth sha256={hashlib.sha256(path.read_bytes()).hexdigest()}"
    torch.testing.assert_close(enc.vgg[2].weight, vgg[2].weight)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="vgg_normalised.pth"):
        load_metric_encoder(tmp_path)


def test_vgg_metrics_missing_when_no_encoder_at_all(monkeypatch):
    import sanet_bench.nn.vgg as vgg_mod

    monkeypatch.delattr(vgg_mod, "offline_vgg_normalised")
    nets = Nets(cache=ExtractorCache())
    assert VGG in ContentLoss(extractors=nets.cache).missing_components()
    values, missing = evaluate_names(_img(1), _img(2), _img(3), nets, ["content_loss", "ssim"])
    assert values["content_loss"] is None and "sanet-bench weights pull" in missing["content_loss"]
    assert values["ssim"] is not None


def test_evaluate_sees_the_saved_8bit_image():
    c = _img(1)
    out = c * 1.3 - 0.1  # un-clamped model output
    q = quantise(out)
    assert q.min() >= 0 and q.max() <= 1 and torch.equal((q * 255).round() / 255, q)
    values, _ = evaluate_names(out, c, c, Nets(), ["ssim"])
    assert values["ssim"] == pytest.approx(ssim_luminance(q, c), abs=1e-12)


def test_training_folder_encoder_is_not_taken_for_the_official_one(tmp_path):
    import json

    import torch

    from sanet_bench.metrics.extractors import find_official_vgg
    from sanet_bench.nn.vgg import OFFLINE_VGG_ID, offline_vgg_normalised

    torch.save(offline_vgg_normalised().state_dict(), tmp_path / "vgg_normalised.pth")
    assert find_official_vgg(tmp_path) == tmp_path / "vgg_normalised.pth"
    meta = {"encoder": {"kind": "offline", "id": OFFLINE_VGG_ID}}
    (tmp_path / "train_meta.json").write_text(json.dumps(meta))
    assert find_official_vgg(tmp_path) is None
