"""Feature extractors the metrics own: loaded lazily, shared through a cache keyed by the weights' identity.

A metric names the components it needs (``Metric.needs``); on first use it asks an :class:`ExtractorCache`
(by default the process-wide :data:`EXTRACTORS`) for each. The cache resolves the component to a weights
identity — a file's sha256, or the offline encoder's loud id — and returns the one extractor loaded for that
identity (and device), loading it the first time. So the four VGG metrics share one encoder and one feature
cache, and a second run in the same process (the ablation's variants, the demo) loads nothing again.

* ``vgg19-normalised`` (:class:`VGGFeatures`): the official ``vgg_normalised.pth``
  (:data:`sanet_bench.nn.vgg.VGG_NORMALISED`, identified by sha256 and checked against the published one)
  from ``weights_dir``, the shared weights folder or a method's cache folder (never a `sanet-bench train`
  folder whose encoder is not the official one); else the deterministic offline encoder
  (:func:`sanet_bench.nn.vgg.offline_vgg_normalised`), labelled with its loud id ``OFFLINE_VGG_ID``. Values
  from the offline encoder are NOT comparable with published numbers.
* ``alexnet-imagenet`` (:class:`LPIPSNet`): torchvision's ImageNet AlexNet file (:data:`ALEXNET_FILE`) in the
  torch hub cache, the LPIPS v0.1 backbone. It is never downloaded here; when absent, LPIPS is missing with
  the reason. The LPIPS linear heads ship inside the ``lpips`` package (``lpips/weights/v0.1/alex.pth``).

Both files are read with ``torch.load(weights_only=True)``. A file that is absent makes the metrics that
need it *missing* (:class:`MetricMissing`, with the fix in the reason); a file that is present but wrong
(not the published sha256, unreadable) is a :class:`~sanet_bench.errors.WeightsError`: never a substitute.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import SanetBenchError, WeightsError
from ..nn import vgg as vgg_mod
from ..nn.vgg import VGG_NORMALISED, VGGEncoder
from ..registry import Source, WeightFile, register_file_check
from ..weights import (
    METRICS,
    SHARED,
    cache_dir,
    cache_path,
    check_hub_prefix,
    home,
    load_strict,
    read_state_dict,
    sha256_file,
)

VGG = "vgg19-normalised"
ALEXNET = "alexnet-imagenet"
VGG_FILE = VGG_NORMALISED.name
# torchvision's AlexNet_Weights.IMAGENET1K_V1.url (tests/metrics/test_contract.py checks they agree): the
# network that LPIPS (lpips.LPIPS(net="alex")) loads through torch hub, kept in torch hub's cache; its name
# carries the sha256 prefix that torch hub checks (and `weights pull/import` too).
ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
ALEXNET_FILE = WeightFile(
    os.path.basename(ALEXNET_URL),
    (Source(ALEXNET_URL),),
    layout="torchvision AlexNet state dict; LPIPS uses features.{0,3,6,8,10}.{weight,bias}",
    license="torchvision (BSD-3-Clause); ImageNet-trained",
    hub=True,
)
LPIPS_HEADS = WeightFile(
    "alex.pth",
    (Source("lpips/weights/v0.1/alex.pth", kind="package", note="ships with the lpips package"),),
    layout="LPIPS v0.1 linear heads lin0..lin4.model.1.weight",
    license="lpips (BSD-2-Clause)",
)
KEEP_BYTES = 1 << 30  # VGGFeatures.keep_bytes: 1 GiB holds a default run's grid images at 256 and 512 px


class MetricMissing(SanetBenchError):
    """A metric cannot be computed here; the message says why and how to fix it (no substitute is used)."""


# ------------------------------------------------------------------------------------------------ VGG
def _vgg_candidates(weights_dir: str | os.PathLike | None) -> list[Path]:
    dirs = [Path(weights_dir).expanduser()] if weights_dir else []
    dirs += [cache_dir(SHARED)]  # then any method folder holding it (caches filled before it was shared)
    root = home() / "weights"
    if root.is_dir():
        dirs += sorted(p.parent for p in root.glob(f"*/{VGG_FILE}"))
    return [d / VGG_FILE for d in dict.fromkeys(dirs)]


def find_official_vgg(weights_dir: str | os.PathLike | None = None) -> Path | None:
    """``vgg_normalised.pth`` from ``weights_dir``, else the shared folder, else a method's cache folder
    (:func:`sanet_bench.weights.find_file`'s places), skipping training folders with another encoder."""
    for p in _vgg_candidates(weights_dir):
        if p.is_file() and not _trained_with_other_encoder(p.parent):
            return p
    return None


def _trained_with_other_encoder(folder: Path) -> bool:
    """A `sanet-bench train` folder whose vgg_normalised.pth is not the official file (e.g. offline)."""
    from ..weights import META_FILE

    meta = folder / META_FILE
    return meta.is_file() and json.loads(meta.read_text()).get("encoder", {}).get("kind") != "official"


def _known_vgg_sha256() -> set[str]:
    from ..registry import method_specs

    known = {f.sha256 for s in method_specs().values() for f in s.files if f.name == VGG_FILE and f.sha256}
    return known | ({VGG_NORMALISED.sha256} if VGG_NORMALISED.sha256 else set())


_SHA: dict[tuple[str, int, int], str] = {}


def _sha256(path: Path) -> str:
    """sha256 of ``path``, computed once per (path, size, mtime) in this process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA:
        _SHA[key] = sha256_file(path)
    return _SHA[key]


def _vgg_missing_reason() -> str:
    return (
        f"metric encoder: {VGG_FILE} not found in the weights dir or {cache_dir(SHARED)}; "
        "run `sanet-bench weights pull sanet`"
    )


def resolve_vgg(weights_dir: str | os.PathLike | None = None) -> tuple[Path | None, str]:
    """``(path or None for the offline encoder, identity)``; raises :class:`MetricMissing` when neither
    exists and :class:`WeightsError` for a file that is not the published one."""
    path = find_official_vgg(weights_dir)
    if path is not None:
        digest = _sha256(path)
        known = _known_vgg_sha256()
        if known and digest not in known:
            raise WeightsError(
                f"metric encoder: {path}: sha256 {digest[:12]}... is not the published {VGG_FILE}; replace "
                "it with the official file (`sanet-bench weights pull sanet`)"
            )
        return path, f"official {VGG_FILE} sha256={digest}"
    if getattr(vgg_mod, "offline_vgg_normalised", None) is not None:
        return None, vgg_mod.OFFLINE_VGG_ID
    raise MetricMissing(_vgg_missing_reason())


def load_metric_encoder(
    weights_dir: str | os.PathLike | None = None,
) -> tuple[VGGEncoder | None, str, str | None]:
    """``(encoder, encoder_id, missing_reason)``; a found but unreadable official file is a user error."""
    try:
        path, ident = resolve_vgg(weights_dir)
    except MetricMissing as e:
        return None, "none", str(e)
    return _load_vgg(path), ident, None


def _load_vgg(path: Path | None) -> VGGEncoder:
    if path is None:
        return VGGEncoder(vgg_mod.offline_vgg_normalised()).eval()
    vgg = vgg_mod.vgg_normalised()
    expected = "the normalised VGG19 vgg_normalised.pth (53-module nn.Sequential)"
    try:
        load_strict(vgg, read_state_dict(path, expected), path, expected)
    except WeightsError as e:
        raise WeightsError(f"metric encoder: {e}") from None
    return VGGEncoder(vgg).eval()


class Extractor:
    """A loaded network shared by the metrics that need ``component`` with the weights ``id``."""

    component = ""

    def __init__(self, id: str, device: str | torch.device = "cpu"):
        self.id, self.device = id, torch.device(device)

    def end_cell(self, keep: tuple[Tensor, ...] = ()) -> None:
        """Called after each cell's metrics (caches forget that cell's tensors)."""


class VGGFeatures(Extractor):
    """relu1_1..relu5_1 of the normalised VGG19, computed once per tensor.

    The output's features are kept until :meth:`end_cell`; those of the tensors :meth:`end_cell` is asked to
    ``keep`` (the grid's content and style images, which every method's cells share) go to a least-recently-
    used store of at most ``keep_bytes``. A tensor modified in place is recomputed (its ``_version`` changes).
    """

    component = VGG

    def __init__(self, encoder: VGGEncoder, id: str, device: str | torch.device = "cpu",
                 keep_bytes: int = KEEP_BYTES):
        super().__init__(id, device)
        self.encoder = encoder.to(self.device).eval()
        self.keep_bytes = keep_bytes
        self._feats: dict[int, tuple[Tensor, int, list[Tensor]]] = {}
        self._kept: OrderedDict[int, tuple[Tensor, int, list[Tensor]]] = OrderedDict()

    def features(self, x: Tensor) -> list[Tensor]:
        for store in (self._feats, self._kept):
            hit = store.get(id(x))
            if hit is not None and hit[0] is x and hit[1] == x._version:
                if store is self._kept:
                    store.move_to_end(id(x))
                return hit[2]
        with torch.no_grad():
            feats = self.encoder(x.to(self.device, torch.float32))
        self._feats[id(x)] = (x, x._version, feats)  # holding x keeps id(x) unique while cached
        return feats

    def end_cell(self, keep: tuple[Tensor, ...] = ()) -> None:
        for x in keep:
            entry = self._feats.get(id(x))
            if entry is not None and entry[0] is x:
                self._kept[id(x)] = entry
                self._kept.move_to_end(id(x))
        self._feats.clear()
        while self._kept and sum(_nbytes(e[2]) for e in self._kept.values()) > self.keep_bytes:
            self._kept.popitem(last=False)

    clear = end_cell


def _nbytes(feats: list[Tensor]) -> int:
    return sum(f.numel() * f.element_size() for f in feats)


# ------------------------------------------------------------------------------------------------ LPIPS
def build_lpips(backbone: Mapping[str, Tensor]) -> nn.Module:
    """LPIPS v0.1 / AlexNet (Zhang et al. 2018) with the given AlexNet ``features.*`` state and the package's
    linear heads, built without the package touching the network or unpickling anything."""
    import lpips

    model = lpips.LPIPS(net="alex", version="0.1", pretrained=False, pnet_rand=True, verbose=False)
    # Backbone: lpips keeps torchvision's features.<i> modules under net.slice<k>.<i>.
    source = {name: "features." + name.split(".", 1)[1] for name, _ in model.net.named_parameters()}
    missing = [k for k in source.values() if k not in backbone]
    if missing:
        raise WeightsError(f"AlexNet state lacks {', '.join(missing[:3])}; expected torchvision's layout")
    with torch.no_grad():
        for name, p in model.net.named_parameters():
            p.copy_(backbone[source[name]])
    heads_path = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
    heads = torch.load(heads_path, map_location="cpu", weights_only=True)
    lin_keys = {k for k in model.state_dict() if k[:3] == "lin" and k[3].isdigit()}  # `lins.*` aliases them
    if set(heads) != lin_keys:
        raise WeightsError(f"{heads_path}: keys {sorted(heads)} are not LPIPS v0.1 heads {sorted(lin_keys)}")
    model.load_state_dict(heads, strict=False)
    return model.eval()


def resolve_alexnet() -> tuple[Path, str]:
    """The cached AlexNet file and its identity; :class:`MetricMissing` when it is absent or its sha256 does
    not start with the prefix its torch hub name states (the published file's; checked at every load, as at
    pull and import, since anything can be saved under that name)."""
    path = cache_path(METRICS, ALEXNET_FILE)
    if not path.is_file():
        raise MetricMissing(f"AlexNet ImageNet weights not in {path}; run `sanet-bench weights pull lpips`")
    digest = _sha256(path)
    try:
        check_hub_prefix(ALEXNET_FILE, path, "delete it and run `sanet-bench weights pull lpips`", digest)
    except WeightsError as e:
        raise MetricMissing(str(e)) from None
    return path, f"lpips v0.1 alex, {ALEXNET_FILE.name} sha256={digest}"


def _check_alexnet(path: Path) -> None:
    build_lpips(read_state_dict(path, "torchvision's ImageNet AlexNet (alexnet-owt-7be5be79.pth)"))


register_file_check(ALEXNET_FILE.name, _check_alexnet)
register_file_check(VGG_FILE, _load_vgg)


def load_lpips() -> tuple[nn.Module | None, str | None]:
    try:
        path, _ = resolve_alexnet()
    except MetricMissing as e:
        return None, str(e)
    state = read_state_dict(path, "torchvision's ImageNet AlexNet (alexnet-owt-7be5be79.pth)")
    return build_lpips(state), None


class LPIPSNet(Extractor):
    """LPIPS v0.1 / AlexNet: ``distance(x, y)`` of RGB [0,1] images, spatial mean (the package's forward)."""

    component = ALEXNET

    def __init__(self, model: nn.Module, id: str, device: str | torch.device = "cpu"):
        super().__init__(id, device)
        self.model = model.to(self.device).eval()

    def distance(self, x: Tensor, y: Tensor) -> float:
        with torch.no_grad():
            a, b = (t.to(self.device, torch.float32) * 2 - 1 for t in (x, y))
            return self.model(a, b).mean().item()


# ------------------------------------------------------------------------------------------------ cache
Resolver = Callable[[str | os.PathLike | None], tuple[Path | None, str]]
Loader = Callable[[Path | None, str, torch.device], Extractor]
COMPONENTS: dict[str, tuple[Resolver, Loader]] = {}


def register_component(component: str, resolve: Resolver, load: Loader) -> None:
    """Teach every :class:`ExtractorCache` another component: ``resolve(weights_dir) -> (path, identity)``
    (raising :class:`MetricMissing` when absent) and ``load(path, identity, device) -> Extractor``."""
    COMPONENTS[component] = (resolve, load)


class ExtractorCache:
    """Extractors keyed by ``(component, weights identity, device)``, each loaded on first request.

    ``pinned`` extractors answer for their component whatever the weights folders hold (tests, or a caller
    that built its own network); they are never replaced.
    """

    def __init__(self, pinned: tuple[Extractor, ...] = ()):
        self._loaded: dict[tuple[str, str, str], Extractor] = {}
        self.pinned = {e.component: e for e in pinned}

    def get(self, component: str, weights_dir: str | os.PathLike | None = None,
            device: str | torch.device = "cpu") -> Extractor:
        """The extractor of ``component``; :class:`MetricMissing` when its weights are absent"""
        if component in self.pinned:
            return self.pinned[component]
        dev = torch.device(device)
        if component == VGG:
            path, ident = resolve_vgg(weights_dir)
        elif component == ALEXNET:
            path, ident = resolve_alexnet()
        elif component in COMPONENTS:
            path, ident = COMPONENTS[component][0](weights_dir)
        else:
            known = ", ".join([VGG, ALEXNET, *COMPONENTS])
            raise ValueError(f"unknown metric component {component!r}; known: {known}")
        key = (component, ident, str(dev))
        if key not in self._loaded:
            self._loaded[key] = self._load(component, path, ident, dev)
        return self._loaded[key]

    @staticmethod
    def _load(component: str, path: Path | None, ident: str, dev: torch.device) -> Extractor:
        if component == VGG:
            return VGGFeatures(_load_vgg(path), ident, dev)
        if component in COMPONENTS:
            return COMPONENTS[component][1](path, ident, dev)
        assert path is not None
        state = read_state_dict(path, "torchvision's ImageNet AlexNet (alexnet-owt-7be5be79.pth)")
        return LPIPSNet(build_lpips(state), ident, dev)

    def loaded(self) -> list[Extractor]:
        return [*self.pinned.values(), *self._loaded.values()]


EXTRACTORS = ExtractorCache()  # the process-wide cache that metrics use unless given another
