"""The networks of FID, ArtFID and CFSD, loaded from their official files in the official key layouts.

Components (registered with :func:`.extractors.register_component`; metrics share them by weights identity):

* ``inception-fid`` (:data:`FID_INCEPTION`): pytorch-fid's port of the TF Inception-v3 of 2015-12-05
  (``pt_inception-2015-12-05-6726825d.pth``: torchvision's ``Inception3`` layout, 1008 classes, no aux head).
  Its FID variant pools differently from torchvision's blocks (average pools exclude the padding; the last
  block max-pools), built here on torchvision's modules. Input: RGB [0,1], bilinearly resized to 299x299
  (``align_corners=False``), scaled to [-1,1]; feature: the 2048-d average pool after ``Mixed_7c``.
* ``inception-art`` (:data:`ART_INCEPTION`): ArtFID's Inception-v3 trained on art (``art_inception.pth``,
  art-fid package: torchvision's ``Inception3`` blocks with two classifier heads ``fc1``/``fc2`` and two aux
  heads). Input: RGB [0,1] at its own size, unnormalised (as the package feeds ``ToTensor()`` images), so the
  sides must be at least :data:`ART_MIN_SIDE` px; feature: the 2048-d average pool after ``Mixed_7c``.
* ``vgg19-imagenet`` (:data:`VGG19_FILE`): torchvision's ImageNet VGG19 (``vgg19-dcbb9e9d.pth``), used by CFSD
  as StyleID's evaluation does (``features`` up to relu3_1, ImageNet mean/std input normalisation).

Files are found with :func:`sanet_bench.weights.find_file` (the weights dir, else the shared cache folder),
and for the torch-hub-named files also in torch hub's ``checkpoints`` folder. Absent: the metric is missing
with the fix. Present but not the published file (the sha256 prefix in the official name differs), or in
another layout: a :class:`~sanet_bench.errors.WeightsError`. Never a substitute.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import inception as tv_inception
from torchvision.models import vgg19

from .. import weights
from ..errors import WeightsError
from ..registry import Source, WeightFile, register_file_check
from ..weights import SHARED, cache_dir, find_file, hub_dir, load_strict, read_state_dict
from .extractors import Extractor, MetricMissing, _sha256, register_component

FID = "inception-fid"
ART = "inception-art"
VGG19 = "vgg19-imagenet"
FID_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
ART_URL = "https://huggingface.co/matthias-wright/art_inception/resolve/main/art_inception.pth"
VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
FID_INCEPTION = WeightFile(
    "pt_inception-2015-12-05-6726825d.pth",
    (Source(FID_URL),),
    layout="torchvision Inception3 state dict, 1008 classes, no AuxLogits (pytorch-fid FID_WEIGHTS_URL)",
    license="pytorch-fid (Apache-2.0); TF Inception-v3 2015-12-05 port",
    shared=True,
)
ART_INCEPTION = WeightFile(
    "art_inception.pth",
    (Source(ART_URL),),
    layout="art-fid Inception3: torchvision blocks + fc1, fc2, AuxLogits1, AuxLogits2",
    license="art-fid (MIT); Inception-v3 trained on art (Wright & Ommer 2022)",
    shared=True,
)
VGG19_FILE = WeightFile(
    "vgg19-dcbb9e9d.pth",
    (Source(VGG19_URL),),
    layout="torchvision VGG19 state dict (features.*, classifier.*)",
    license="torchvision (BSD-3-Clause); ImageNet-trained",
    shared=True,
)
ART_MIN_SIDE = 75  # Inception-v3 without padding: Mixed_7a needs a 3x3 map, i.e. inputs of at least 75 px
ART_HEADS = ("fc1.", "fc2.", "AuxLogits1.", "AuxLogits2.")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TRUNK = (
    "Conv2d_1a_3x3",
    "Conv2d_2a_3x3",
    "Conv2d_2b_3x3",
    "maxpool1",
    "Conv2d_3b_1x1",
    "Conv2d_4a_3x3",
    "maxpool2",
    "Mixed_5b",
    "Mixed_5c",
    "Mixed_5d",
    "Mixed_6a",
    "Mixed_6b",
    "Mixed_6c",
    "Mixed_6d",
    "Mixed_6e",
    "Mixed_7a",
    "Mixed_7b",
    "Mixed_7c",
    "avgpool",
)


# ------------------------------------------------------------------------------------------------ files
def locate(f: WeightFile, weights_dir: str | os.PathLike | None = None) -> Path | None:
    """``f`` by its official name: :func:`~sanet_bench.weights.find_file`'s places, then (for hub-named
    files, unless a weights dir is given) torch hub's ``checkpoints`` folder."""
    path = find_file(f, weights_dir)
    if path is None and weights_dir is None and weights.hub_prefix(f.name):
        hub = hub_dir() / "checkpoints" / f.name
        path = hub if hub.is_file() else None
    return path


def resolve(f: WeightFile, weights_dir: str | os.PathLike | None = None) -> tuple[Path, str]:
    """``(path, identity)`` of ``f``; :class:`MetricMissing` with the fix when absent, :class:`WeightsError`
    when its sha256 is not the published one."""
    path = locate(f, weights_dir)
    if path is None:
        where = Path(weights_dir).expanduser() if weights_dir is not None else cache_dir(SHARED)
        raise MetricMissing(
            f"{f.name} not found in {where}; run `sanet-bench weights pull metrics` or download "
            f"{f.sources[0].url} into {where}"
        )
    digest = _sha256(path)
    weights.check_hub_prefix(f, path, f"replace it with {f.sources[0].url}", digest)
    return path, f"{f.name} sha256={digest}"


# ------------------------------------------------------------------------------------------------ Inception
class _FIDInceptionA(tv_inception.InceptionA):
    def _forward(self, x: Tensor) -> list[Tensor]:
        pool = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        return [
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(pool),
        ]


class _FIDInceptionC(tv_inception.InceptionC):
    def _forward(self, x: Tensor) -> list[Tensor]:
        pool = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for m in (
            self.branch7x7dbl_1,
            self.branch7x7dbl_2,
            self.branch7x7dbl_3,
            self.branch7x7dbl_4,
            self.branch7x7dbl_5,
        ):
            d = m(d)
        return [self.branch1x1(x), b7, d, self.branch_pool(pool)]


class _FIDInceptionE(tv_inception.InceptionE):
    """``max_pool``: the last block (``Mixed_7c``) max-pools its pool branch, the one before averages."""

    def __init__(self, in_channels: int, max_pool: bool):
        super().__init__(in_channels)
        self.max_pool = max_pool

    def _forward(self, x: Tensor) -> list[Tensor]:
        if self.max_pool:
            pool = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pool = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        return [self.branch1x1(x), b3, d, self.branch_pool(pool)]


def fid_inception() -> nn.Module:
    """The FID Inception-v3 (random init; load ``pt_inception-2015-12-05-6726825d.pth`` into it)."""
    net = tv_inception.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    for name, pf in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
        setattr(net, name, _FIDInceptionA({"Mixed_5b": 192, "Mixed_5c": 256, "Mixed_5d": 288}[name], pf))
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        setattr(net, name, _FIDInceptionC(768, c7))
    net.Mixed_7b, net.Mixed_7c = _FIDInceptionE(1280, False), _FIDInceptionE(2048, True)
    return net.eval()


def art_inception_trunk() -> nn.Module:
    """ArtFID's Inception-v3 without its classifier heads (they do not enter the features)."""
    net = tv_inception.Inception3(aux_logits=False, init_weights=False)
    net.fc = nn.Identity()
    return net.eval()


def _bn_counters(net: nn.Module, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """``state`` with BatchNorm ``num_batches_tracked`` counters added where a ported file has none (they do
    not enter an eval-mode forward)."""
    own = net.state_dict()
    return {**{k: own[k] for k in own if k.endswith("num_batches_tracked") and k not in state}, **state}


def load_fid_inception(path: Path) -> nn.Module:
    net = fid_inception()
    expected = "pytorch-fid's pt_inception-2015-12-05-6726825d.pth (torchvision Inception3, 1008 classes)"
    load_strict(net, _bn_counters(net, read_state_dict(path, expected)), path, expected)
    return net


def load_art_inception(path: Path) -> nn.Module:
    expected = "art-fid's art_inception.pth (Inception3 with fc1, fc2, AuxLogits1, AuxLogits2)"
    state = read_state_dict(path, expected)
    if not any(k.startswith("fc1.") for k in state) or not any(k.startswith("fc2.") for k in state):
        raise WeightsError(f"{path}: no fc1/fc2 heads, so not {expected}; get it from {ART_URL}")
    net = art_inception_trunk()
    trunk = {k: v for k, v in state.items() if not k.startswith(ART_HEADS)}
    load_strict(net, _bn_counters(net, trunk), path, expected)
    return net


class InceptionFeatures(Extractor):
    """2048-d pool features of an Inception-v3, one image at a time, remembered per tensor (the grid's style
    images recur in every method's set). ``resize``: to 299x299 and [-1,1] (FID) or as is (ArtFID)."""

    def __init__(self, net: nn.Module, id: str, component: str, device: str | torch.device = "cpu"):
        super().__init__(id, device)
        self.component = component
        self.net = net.to(self.device).eval()
        self.resize = component == FID
        self._seen: dict[int, tuple[Tensor, int, Tensor]] = {}

    def features(self, x: Tensor) -> Tensor:
        """``[N, 2048]`` float64 features of RGB [0,1] images ``x`` (NCHW)."""
        hit = self._seen.get(id(x))
        if hit is not None and hit[0] is x and hit[1] == x._version:
            return hit[2]
        h = x.to(self.device, torch.float32)
        if self.resize:
            h = F.interpolate(h, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
        elif min(h.shape[-2:]) < ART_MIN_SIDE:
            raise MetricMissing(
                f"ArtFID feeds images to Inception at their own size, which must be at least {ART_MIN_SIDE} "
                f"px; got {list(h.shape[-2:])}: run at a larger size"
            )
        with torch.no_grad():
            for name in TRUNK:
                h = getattr(self.net, name)(h)
        feats = h.flatten(1).double().cpu()
        self._seen[id(x)] = (x, x._version, feats)
        return feats


# ------------------------------------------------------------------------------------------------ VGG19
class VGG19Relu31(Extractor):
    """torchvision's ImageNet VGG19 ``features[:12]`` (relu3_1) on ImageNet-normalised RGB [0,1] input."""

    component = VGG19

    def __init__(self, net: nn.Module, id: str, device: str | torch.device = "cpu"):
        super().__init__(id, device)
        self.net = net.to(self.device).eval()
        self.mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    def features(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.net((x.to(self.device, torch.float32) - self.mean) / self.std)


def load_vgg19(path: Path) -> nn.Module:
    """``features[:12]`` of torchvision's VGG19 from its state dict (the ``classifier.*`` keys, which do not
    enter relu3_1, are not needed); all 16 convolutions must be there with VGG19's shapes."""
    expected = "torchvision's ImageNet VGG19 (vgg19-dcbb9e9d.pth)"
    state = read_state_dict(path, expected)
    features = vgg19(weights=None).features
    load_strict(features, {k[9:]: v for k, v in state.items() if k.startswith("features.")}, path, expected)
    return features[:12].eval()


register_component(
    FID,
    lambda d: resolve(FID_INCEPTION, d),
    lambda p, i, dev: InceptionFeatures(load_fid_inception(p), i, FID, dev),
)
register_component(
    ART,
    lambda d: resolve(ART_INCEPTION, d),
    lambda p, i, dev: InceptionFeatures(load_art_inception(p), i, ART, dev),
)
register_component(
    VGG19, lambda d: resolve(VGG19_FILE, d), lambda p, i, dev: VGG19Relu31(load_vgg19(p), i, dev)
)
for _file, _load in ((FID_INCEPTION, load_fid_inception), (ART_INCEPTION, load_art_inception),
                     (VGG19_FILE, load_vgg19)):
    register_file_check(_file.name, _load)
