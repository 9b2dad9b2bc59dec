"""Gatys et al., Image Style Transfer Using Convolutional Neural Networks (CVPR 2016).

The output image itself is optimised, starting from the content, on the normalised VGG19 features
(``vgg_normalised.pth``, the network the paper normalised; :mod:`sanet_bench.nn.vgg`):

* content loss (Eq. 1): ``L_c = 1/2 sum (F - P)^2`` at relu4_2 — the paper's "conv4_2", whose Caffe blob is
  rectified in place; as in the paper it is a sum, so its weight grows with the image area;
* style loss (Eq. 3-5): ``L_s = sum_l w_l E_l`` over relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 with
  ``w_l = 1/5`` and ``E_l = 1/(4 N_l^2 M_l^2) sum (G - A)^2``. With Gram matrices divided by their own number
  of positions (:func:`sanet_bench.nn.stats.gram`) this is ``E_l = mean((G/M - A/M')^2) / 4``, which also
  lets the style image have another size than the content;
* total (Eq. 7): ``L = ratio * L_c + alpha * L_s``; option ``ratio`` is the paper's alpha/beta (default 1e-3,
  its Fig. 3 setting), and the method's ``alpha`` in [0, 1] scales the style term (alpha=0 returns the
  content unchanged: its gradient is zero at the start).

Optimiser: L-BFGS as in the paper (torch.optim.LBFGS, step 1, history 100, no line search), run for exactly
``iters`` iterations (tolerances 0, so it stops early only on an exactly zero gradient or step). Each image
of a batch is optimised on its own so its result does not depend on its batch-mates. Deterministic: the start
is the content, nothing is random. Pixels are optimised in RGB [0,1] space, unconstrained; the output is
returned un-clamped. Stages: ``encode`` (the style's Gram matrices), ``transform`` (the optimisation,
whose first evaluation, at the content, gives the content target); there is no decoder.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sanet_bench.errors import ConfigError
from sanet_bench.method import Method
from sanet_bench.nn.stats import gram
from sanet_bench.nn.vgg import VGG_NORMALISED, offline_vgg_normalised, vgg_normalised
from sanet_bench.registry import DemoRecipe, MethodSpec, Option, register_method
from sanet_bench.weights import load_file_into

# Module indices (in the 53-module vgg_normalised Sequential) of the ReLU outputs used.
STYLE_LAYERS = {"relu1_1": 3, "relu2_1": 10, "relu3_1": 17, "relu4_1": 30, "relu5_1": 43}
CONTENT_LAYER = ("relu4_2", 33)
STYLE_LAYER_WEIGHT = 1.0 / len(STYLE_LAYERS)


class GatysFeatures(nn.Module):
    """The normalised VGG19 up to relu5_1, returning (content feature, [style features])."""

    def __init__(self) -> None:
        super().__init__()
        self.vgg = vgg_normalised()[: max(STYLE_LAYERS.values()) + 1]
        for p in self.vgg.parameters():
            p.requires_grad_(False)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        style: list[Tensor] = []
        content = x
        for i, m in enumerate(self.vgg):
            x = m(x)
            if i == CONTENT_LAYER[1]:
                content = x
            if i in STYLE_LAYERS.values():
                style.append(x)
        return content, style


class GatysLoss:
    """``L(x) = ratio * L_c(x) + alpha * L_s(x)`` for one content/style pair (module doc); returns all 3.

    The content target ``P`` (the content's relu4_2) is taken from the first evaluation where that is at the
    content itself, as L-BFGS's is (one VGG pass fewer per image), and computed otherwise."""

    def __init__(self, features: GatysFeatures, content: Tensor, style: Tensor, alpha: float, ratio: float):
        self.features, self.alpha, self.ratio = features, alpha, ratio
        self.content, self.p = content, None
        with torch.no_grad():
            self.a = [gram(f) for f in features(style)[1]]

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        fc, fs = self.features(x)
        if self.p is None:
            if torch.equal(x.detach(), self.content):
                self.p = fc.detach()
            else:
                with torch.no_grad():
                    self.p = self.features(self.content)[0]
        l_c = 0.5 * (fc - self.p).pow(2).sum()
        l_s = sum(
            STYLE_LAYER_WEIGHT * 0.25 * F.mse_loss(gram(f), a, reduction="mean")
            for f, a in zip(fs, self.a, strict=True)
        )
        return self.ratio * l_c + self.alpha * l_s, l_c, l_s


def optimise(loss: GatysLoss, init: Tensor, iters: int) -> tuple[Tensor, list[float]]:
    """Run ``iters`` L-BFGS iterations from ``init``; returns the image and the loss at every evaluation.

    L-BFGS minimises ``L(x) / L(init)``: the same optimum, but its absolute curvature threshold (``y.s >
    1e-10``) then cannot stall on losses that are small in absolute terms (random-weight features).
    """
    # contiguous: L-BFGS flattens the gradient with view(-1), which a channels_last image's gradient refuses
    x = init.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)
    history: list[float] = []
    opt = torch.optim.LBFGS(
        [x],
        lr=1.0,
        max_iter=iters,
        max_eval=iters * 5 // 4 + 1,
        tolerance_grad=0.0,
        tolerance_change=0.0,
        history_size=100,
    )

    def closure() -> Tensor:
        opt.zero_grad()
        total = loss(x)[0]
        history.append(total.item())
        scaled = total / history[0] if history[0] > 0 else total  # first call: the loss at init
        scaled.backward()
        return scaled

    if iters > 0:
        opt.step(closure)
    return x.detach(), history


class Gatys(Method):
    uses_autograd = True  # the image is optimised by L-BFGS
    # the optimised image stays NCHW for L-BFGS; Winograd (the default) measured 2.5 s against 3.7 s at 256 px
    channels_last_on_cpu = False

    def __init__(self) -> None:
        super().__init__()
        self.features = GatysFeatures()

    def load_official(self, paths: dict[str, Path]) -> None:
        full = vgg_normalised()
        load_file_into(full, paths["vgg_normalised.pth"], self.spec, "vgg_normalised.pth")
        self.features.vgg.load_state_dict(full[: len(self.features.vgg)].state_dict())

    def _stylize(self, content: Tensor, style: Tensor, alpha: float, iters: int, ratio: float) -> Tensor:
        if int(iters) != iters or iters < 0 or ratio < 0:
            raise ConfigError(f"gatys: iters={iters}, ratio={ratio}; use integer iters >= 0 and ratio >= 0")
        outs = []
        for c, s in zip(content.split(1), style.split(1), strict=True):
            with self.stage("encode"):
                loss = GatysLoss(self.features, c, s, alpha, ratio)
            with self.stage("transform"), torch.enable_grad():
                outs.append(optimise(loss, c, int(iters))[0])
        return torch.cat(outs)


def _apply_demo(model: Gatys, state: dict[str, Tensor], path: Path | None) -> None:
    """Gatys optimises the image itself, so its demo "weights" are the offline encoder alone: nothing is
    trained or shipped for it (``state`` is empty)."""
    model.features.vgg.load_state_dict(offline_vgg_normalised()[: len(model.features.vgg)].state_dict())


SPEC = register_method(
    MethodSpec(
        name="gatys",
        title="Gatys et al. (optimisation)",
        citation="Gatys, Ecker & Bethge, Image Style Transfer Using Convolutional Neural Networks, CVPR 2016",
        reference="paper Eq. 1-7 (no official code); vgg_normalised.pth as naoto0804/pytorch-AdaIN ships it",
        factory=Gatys,
        files=(VGG_NORMALISED,),
        default_alpha=1.0,
        options=(
            Option("iters", 300, "L-BFGS iterations (fixed budget; each is one VGG forward+backward)"),
            Option("ratio", 1e-3, "content/style weight ratio alpha/beta of paper Eq. 7"),
        ),
        stages=("encode", "transform"),
        # 300 iterations take minutes per image on a CPU: the default job and the profiler run fewer
        budgets={
            "run": {"iters": 5}, "profile": {"iters": 10}, "full": {"iters": 100}, "paper": {"iters": 300},
        },
        weights_kinds=("official", "random", "demo", "auto"),
        demo=DemoRecipe(apply=_apply_demo),  # trains nothing: the offline encoder
        min_size=16,
        notes="optimises the image from the content; alpha scales the style loss (alpha=0: the content)",
    )
)
