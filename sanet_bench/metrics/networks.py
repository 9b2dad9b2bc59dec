"""The networks the metrics need, found once per run, with their identity or the reason they are missing.

* ``vgg19-normalised``: the official ``vgg_normalised.pth`` (identified by sha256) from ``weights_dir`` or the
  caches of sanet / adain / gatys; else the deterministic offline encoder
  (:func:`sanet_bench.nn.vgg.offline_vgg_normalised`), labelled with its loud id ``OFFLINE_VGG_ID``. Values
  from the offline encoder are NOT comparable with published numbers.
* ``alexnet-imagenet``: torchvision's ImageNet AlexNet file in the torch hub cache, the LPIPS v0.1 backbone.
  It is never downloaded here; when absent, LPIPS is missing with the reason. The LPIPS linear heads ship
  inside the ``lpips`` package (``lpips/weights/v0.1/alex.pth``).

Both files are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import WeightsError
from ..nn import vgg as vgg_mod
from ..nn.vgg import VGGEncoder
from ..weights import alexnet_path, cache_dir, load_strict, read_state_dict, sha256_file

VGG = "vgg19-normalised"
ALEXNET = "alexnet-imagenet"
VGG_FILE = "vgg_normalised.pth"
VGG_CACHES = ("sanet", "adain", "gatys")


def find_official_vgg(weights_dir: str | os.PathLike | None = None) -> Path | None:
    dirs = ([Path(weights_dir).expanduser()] if weights_dir else []) + [cache_dir(m) for m in VGG_CACHES]
    for d in dirs:
        if (d / VGG_FILE).is_file() and not _trained_with_other_encoder(d):
            return d / VGG_FILE
    return None


def _trained_with_other_encoder(folder: Path) -> bool:
    """A `sanet-bench train` folder whose vgg_normalised.pth is not the official file (e.g. offline)."""
    import json

    from ..train import META_FILE

    meta = folder / META_FILE
    return meta.is_file() and json.loads(meta.read_text()).get("encoder", {}).get("kind") != "official"


def _known_vgg_sha256() -> set[str]:
    from ..registry import method_specs

    return {f.sha256 for s in method_specs().values() for f in s.files if f.name == VGG_FILE and f.sha256}


def load_metric_encoder(
    weights_dir: str | os.PathLike | None = None,
) -> tuple[VGGEncoder | None, str, str | None]:
    """``(encoder, encoder_id, missing_reason)``; a found but unreadable official file is a user error."""
    path = find_official_vgg(weights_dir)
    if path is not None:
        digest = sha256_file(path)
        known = _known_vgg_sha256()
        if known and digest not in known:
            raise WeightsError(
                f"{path}: sha256 {digest[:12]}... is not the published vgg_normalised.pth; replace it with "
                "the official file (`sanet-bench weights pull sanet`)"
            )
        vgg = vgg_mod.vgg_normalised()
        expected = "the normalised VGG19 vgg_normalised.pth (53-module nn.Sequential)"
        load_strict(vgg, read_state_dict(path, expected), path, expected)
        return VGGEncoder(vgg).eval(), f"official {VGG_FILE} sha256={digest}", None
    offline = getattr(vgg_mod, "offline_vgg_normalised", None)
    if offline is not None:
        return VGGEncoder(offline()).eval(), vgg_mod.OFFLINE_VGG_ID, None
    where = ", ".join(str(cache_dir(m)) for m in VGG_CACHES)
    reason = f"{VGG_FILE} not found in the weights dir or {where}; run `sanet-bench weights pull sanet`"
    return None, "none", reason


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


def load_lpips() -> tuple[nn.Module | None, str | None]:
    path = alexnet_path()
    if not path.is_file():
        return None, f"AlexNet ImageNet weights not in {path}; run `sanet-bench weights pull`"
    state = read_state_dict(path, "torchvision's ImageNet AlexNet (alexnet-owt-7be5be79.pth)")
    return build_lpips(state), None


KEEP_BYTES = 1 << 30  # Networks.keep_bytes: 1 GiB holds a default run's grid images at 256 and 512 px


@dataclass
class Networks:
    """Networks shared by the metrics of one run, plus caches of VGG features.

    Features are computed once per tensor: the output's until :meth:`clear`, and those of the tensors
    :meth:`clear` is asked to ``keep`` (the grid's content and style images, which every method's cells
    share) in a least-recently-used store of at most ``keep_bytes``. A tensor modified in place is
    recomputed (its ``_version`` changes).
    """

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    encoder: VGGEncoder | None = None
    encoder_id: str = "none"
    missing: dict[str, str] = field(default_factory=dict)  # need -> reason
    lpips: nn.Module | None = None
    keep_bytes: int = KEEP_BYTES
    _feats: dict[int, tuple[Tensor, int, list[Tensor]]] = field(default_factory=dict, repr=False)
    _kept: OrderedDict[int, tuple[Tensor, int, list[Tensor]]] = field(default_factory=OrderedDict, repr=False)

    @classmethod
    def load(
        cls, needs: set[str], weights_dir: str | os.PathLike | None = None, device: str | torch.device = "cpu"
    ) -> Networks:
        nets = cls(device=torch.device(device))
        if VGG in needs:
            enc, nets.encoder_id, reason = load_metric_encoder(weights_dir)
            nets.encoder = enc.to(nets.device) if enc is not None else None
            if reason:
                nets.missing[VGG] = reason
        if ALEXNET in needs:
            model, reason = load_lpips()
            nets.lpips = model.to(nets.device) if model is not None else None
            if reason:
                nets.missing[ALEXNET] = reason
        return nets

    def reason_missing(self, needs: tuple[str, ...]) -> str | None:
        reasons = [self.missing[n] for n in needs if n in self.missing]
        return "; ".join(reasons) if reasons else None

    def vgg_features(self, x: Tensor) -> list[Tensor]:
        """relu1_1..relu5_1 of ``x``, computed once per tensor until :meth:`clear`."""
        if self.encoder is None:
            raise WeightsError(self.missing.get(VGG, "no VGG encoder loaded for the metrics"))
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

    def clear(self, keep: tuple[Tensor, ...] = ()) -> None:
        """Forget the features of this cell's tensors, except those of ``keep`` (see the class doc)."""
        for x in keep:
            entry = self._feats.get(id(x))
            if entry is not None and entry[0] is x:
                self._kept[id(x)] = entry
                self._kept.move_to_end(id(x))
        self._feats.clear()
        while self._kept and sum(_nbytes(e[2]) for e in self._kept.values()) > self.keep_bytes:
            self._kept.popitem(last=False)


def _nbytes(feats: list[Tensor]) -> int:
    return sum(f.numel() * f.element_size() for f in feats)
