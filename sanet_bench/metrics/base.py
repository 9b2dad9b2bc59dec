"""The metric contract: a :class:`Metric` is an object with its metadata as class-level data and
``update`` / ``compute`` / ``reset``, modelled on ``torchmetrics.Metric``.

Metadata (read by the registry, the manifest and the report):

* ``name``; ``compares``: ``"output-content"`` / ``"output-style"`` (per image), or for set-level metrics
  ``"outputs-styles"`` / ``"outputs-contents-styles"`` (e.g. FID, ArtFID);
* ``higher_is_better``; ``input_range`` (what ``update`` receives); ``convention`` (layers, normalisation,
  reduction); ``per_image``; ``needs`` (the extractor components, :mod:`.extractors`) and ``weights`` (the
  files those need, as :class:`~sanet_bench.registry.WeightFile`).

Life cycle: ``update(output, content, style)`` once per cell. A per-image metric returns that cell's value
and accumulates it; ``compute()`` is then the mean of the updates. A set-level metric accumulates what it
needs (features, images) and returns None; ``compute()`` is the set statistic and ``interval(level)`` its
confidence interval from resampling the set (the runner stores both in the set row). ``reset()`` forgets the
updates. ``update`` takes the output *as saved*: RGB [0,1] clamped and quantised to 8 bits
(:func:`sanet_bench.metrics.quantise`; :func:`sanet_bench.metrics.evaluate` does it once per cell, the
runner's set pass reads the saved PNGs). Within a run the same grid image is the same tensor object in every
cell, so a set-level metric can tell distinct references apart by identity.

A metric that cannot be computed here (weights absent, too few images) raises :class:`MetricMissing` with a
reason that says how to fix it; :meth:`Metric.missing` asks without computing. No substitute network is used.

Feature extractors are not attributes of the metric: each is fetched lazily (first ``update`` or
``missing()``) from an :class:`~.extractors.ExtractorCache` keyed by the weights' identity, so metrics that
need the same network share one copy and its feature cache.

Why not subclass ``torchmetrics.Metric`` (evaluated, not added as a dependency): (1) its states are tensors
registered with ``add_state`` for distributed reduction, and a metric is an ``nn.Module`` that owns its
networks as submodules — we need networks shared across metrics by weights identity (one VGG for four
metrics, one feature cache), which the module tree would duplicate or hide from ``state_dict`` handling;
(2) it has no notion of "missing with a reason" — its metrics download their networks (FID's Inception via
torch-fidelity) or fail, while this benchmark must never use a substitute silently and runs offline; (3) our
per-image contract returns the cell's value from ``update`` itself (torchmetrics gives a batch value from
``forward``, which updates a fresh state and merges it, or runs ``update`` twice); (4) its FID/KID/LPIPS
use other backbones and preprocessing than the conventions recorded here, so they would not keep the values.
The method names and semantics (``update``/``compute``/``reset``, ``higher_is_better``) follow it, so a
torchmetrics metric can be wrapped in a :class:`SetMetric` subclass later.
"""

from __future__ import annotations

import os
import statistics
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..registry import WeightFile
from .extractors import EXTRACTORS, Extractor, ExtractorCache, MetricMissing

PER_IMAGE_COMPARES = ("output-content", "output-style")
SET_COMPARES = ("outputs-styles", "outputs-contents-styles", "outputs-contents")
SAVED_8BIT = "RGB [0,1] NCHW, clamped and quantised to 8 bits like the saved PNG"


class Metric:
    """Base class; see the module doc. Subclass :class:`PerImageMetric` or :class:`SetMetric`."""

    name: ClassVar[str] = ""
    compares: ClassVar[str] = ""
    higher_is_better: ClassVar[bool]
    input_range: ClassVar[str] = SAVED_8BIT
    convention: ClassVar[str] = ""
    per_image: ClassVar[bool] = True
    needs: ClassVar[tuple[str, ...]] = ()
    weights: ClassVar[tuple[WeightFile, ...]] = ()

    def __init__(
        self, *, weights_dir: str | os.PathLike | None = None, device: str | torch.device = "cpu",
        extractors: ExtractorCache | None = None,
    ):
        self.weights_dir, self.device = weights_dir, torch.device(device)
        self.extractors = extractors if extractors is not None else EXTRACTORS
        self._ex: dict[str, Extractor] = {}
        self.reset()

    # -- extractors -----------------------------------------------------------------------------------
    def extractor(self, component: str) -> Extractor:
        """The shared extractor of ``component`` (loaded on first use); :class:`MetricMissing` if absent."""
        if component not in self._ex:
            self._ex[component] = self.extractors.get(component, self.weights_dir, self.device)
        return self._ex[component]

    def missing_components(self) -> dict[str, str]:
        """``{component: reason}`` of the needed extractors that cannot be loaded (loads the others)."""
        out = {}
        for c in self.needs:
            try:
                self.extractor(c)
            except MetricMissing as e:
                out[c] = str(e)
        return out

    def missing(self) -> str | None:
        """Why this metric cannot be computed here, or None."""
        return "; ".join(self.missing_components().values()) or None

    def loaded_extractors(self) -> list[Extractor]:
        return list(self._ex.values())

    # -- contract -------------------------------------------------------------------------------------
    def update(self, output: Tensor, content: Tensor, style: Tensor) -> float | None:
        raise NotImplementedError

    def compute(self) -> float:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    @classmethod
    def info(cls) -> dict[str, Any]:
        """The contract as plain data (the run manifest's ``metrics`` entry)."""
        return {
            "compares": cls.compares, "higher_is_better": cls.higher_is_better,
            "input_range": cls.input_range, "convention": cls.convention, "per_image": cls.per_image,
            "needs": list(cls.needs),
            "weights": [
                {"name": f.name, "url": f.sources[0].url if f.sources else None, "sha256": f.sha256}
                for f in cls.weights
            ],
        }


class PerImageMetric(Metric):
    """A value per cell (``score(output, reference)``, the reference being the content or the style by
    ``compares``); ``compute()`` is the mean of the values of the updates since ``reset()``."""

    per_image: ClassVar[bool] = True

    def score(self, output: Tensor, reference: Tensor) -> float:
        raise NotImplementedError

    def update(self, output: Tensor, content: Tensor, style: Tensor) -> float:
        ref = content if self.compares == "output-content" else style
        value = float(self.score(output, ref))
        self.values.append(value)
        return value

    def compute(self) -> float:
        if not self.values:
            raise MetricMissing(f"{self.name}: no images were scored (update was never called)")
        return statistics.fmean(self.values)

    def reset(self) -> None:
        self.values: list[float] = []


class SetMetric(Metric):
    """A statistic of a set of cells: ``update`` accumulates (returns None), ``compute`` gives the value."""

    per_image: ClassVar[bool] = False

    def update(self, output: Tensor, content: Tensor, style: Tensor) -> None:
        raise NotImplementedError

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """A ``level`` confidence interval of ``compute()``'s value from the same updates, by resampling the
        set as the metric sees fit; :class:`MetricMissing` with the reason where it has none."""
        raise MetricMissing(f"{self.name}: no interval for this set-level metric")


__all__ = ["Metric", "MetricMissing", "PerImageMetric", "SetMetric", "SAVED_8BIT"]
