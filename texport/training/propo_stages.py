"""ProPO's training objective per stage (Shi & Qiao 2020 eq. 10, with colour and spectrum terms), and
the fixed-pair evaluation a run reports: what training/propo minimizes, apart from how it loops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

import texport.defaults as defaults
import texport.objectives.losses as losses
import texport.objectives.spectrum as spectrum
import texport.textures.noise as noise_lib
from texport.models.propo import ProPO
from texport.objectives.objective import parse_loss

DEFAULT_COLOR_WEIGHT = defaults.PROPO_COLOR_WEIGHT
# The spectrum term per stage (x m, like the colour term). Ten times texport.objectives.objective's weight:
# matched 400-step runs on 64 px crops scored a better held-out objective, Gram loss and judge at 60
# than at 6 (RESULTS.md, `propo_ablation.py --section propo-ablation-spectrum`).
DEFAULT_SPECTRUM_WEIGHT = defaults.PROPO_SPECTRUM_WEIGHT


class _Stages(nn.Module):
    """ProPO.run as a module's forward: DistributedDataParallel averages the gradients of what runs
    through its own forward (which arms its hooks), so the stages run through it."""

    def __init__(self, model: ProPO):
        super().__init__()
        self.model = model

    def forward(self, noise: torch.Tensor, statistics: dict, final_features: bool = False):
        return self.model.run(noise, statistics, final_features=final_features)


def relative_gram_loss(features: dict, target_grams: dict, levels) -> torch.Tensor:
    """sum over levels of ||G(F) - G_target||^2 / ||G_target||^2, per batch item."""
    total = 0
    for lv in levels:
        target = target_grams[lv].float()
        err = (losses.gram(features[lv]) - target).pow(2).sum(dim=(1, 2))
        total = total + err / target.pow(2).sum(dim=(1, 2)).clamp_min(1e-30)
    return total


class SlicedTargets:
    """A batch of targets' sorted feature projections at each level, for the sliced Wasserstein stage loss
    (Heitz et al. 2021): each level's directions are a fixed seeded set, one per channel, as in
    texport.objectives.objective (the same directions every step, so a resumed run and the yardstick
    evaluation see the objective the run started with). Each level is divided by its target's mean
    squared projection, as relative_gram_loss divides by ||G_target||^2, so levels count alike."""

    def __init__(self, model: ProPO, target: torch.Tensor, seed: int = 0):
        feats = model.descriptor(target, padding="reflect", until=model.levels[-1])
        self.directions = {lv: losses.random_directions(feats[lv].shape[1], feats[lv].shape[1], seed + i, target.device)
                           for i, lv in enumerate(model.levels)}
        self.sorted = {lv: losses.sorted_projections(feats[lv], self.directions[lv]) for lv in model.levels}
        self.energy = {lv: self.sorted[lv].pow(2).mean(dim=(1, 2)).clamp_min(1e-30) for lv in model.levels}

    def loss(self, features: dict, levels) -> torch.Tensor:
        """sum over levels of SW_2^2(features, target) / the target's mean squared projection, per batch item."""
        total = 0
        for lv in levels:
            total = total + losses.sliced_wasserstein_loss(features[lv], self.sorted[lv], self.directions[lv]) / self.energy[lv]
        return total


@dataclass
class StageLosses:
    """Per-stage terms of one evaluation, averaged over the batch: lists indexed by stage - 1."""
    gram: list[float]
    color: list[float]
    total: float
    spectrum: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"gram": self.gram, "color": self.color, "spectrum": self.spectrum, "total": self.total}


def stage_objective(model: ProPO, noise: torch.Tensor, target: torch.Tensor, color_weight: float,
                    spectrum_weight: float = DEFAULT_SPECTRUM_WEIGHT, run: Callable | None = None,
                    loss: str = defaults.LOSS) -> tuple[torch.Tensor, StageLosses]:
    """Eq. 10 plus the colour and spectrum terms: mean over stages m of (relative Gram loss on levels
    1..m + m x colour + m x spectrum), the last against each target's own periodic component.
    loss: gram+color (eq. 10) or sw+color (the relative sliced Wasserstein loss of SlicedTargets in
    place of the Gram loss); without +color the colour term is left out. The stages' inputs are Gram
    gradients either way: only what training asks of their output changes, not the exported graph.
    run: what runs the stages (model.run, or its DistributedDataParallel wrapper)."""
    base, with_color = parse_loss(loss)
    color_weight = color_weight if with_color else 0.0
    with torch.no_grad():
        statistics = model.target_statistics(target)
        sliced = SlicedTargets(model, target) if base == "sw" else None
        directions = losses.random_directions(losses.COLOR_DIRECTIONS, 3, losses.COLOR_SEED, target.device)
        colors = losses.sorted_projections(target, directions)
        spectra = spectrum.reference_spectrum(target, *noise.shape[-2:]) if spectrum_weight > 0 else None
    images, feats = (run or model.run)(noise, statistics, final_features=True)
    total, gram_terms, color_terms, spectrum_terms = 0, [], [], []
    for m, (image, f) in enumerate(zip(images, feats), start=1):
        g = (sliced.loss(f, model.levels[:m]) if sliced else relative_gram_loss(f, statistics, model.levels[:m])).mean()
        c = losses.color_loss(image, colors, directions).mean()
        total = total + g + color_weight * m * c
        if spectra is not None:
            sp = spectrum.spectrum_loss(image, spectra).mean()
            total = total + spectrum_weight * m * sp
            spectrum_terms.append(float(sp.detach()))
        gram_terms.append(float(g.detach()))
        color_terms.append(float(c.detach()))
    total = total / len(images)
    return total, StageLosses(gram_terms, color_terms, float(total.detach()), spectrum_terms)


@torch.no_grad()
def evaluate(model: ProPO, targets: list[torch.Tensor], size: int, color_weight: float = DEFAULT_COLOR_WEIGHT,
             seed: int = 0, spectrum_weight: float = DEFAULT_SPECTRUM_WEIGHT) -> StageLosses:
    """Stage losses averaged over fixed (target, noise) pairs: a noise-free yardstick for a training run."""
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    results = [stage_objective(model, noise_lib.noise_field(seed + i, 3, size, size, device=dev), t.to(dev), color_weight,
                               spectrum_weight)[1] for i, t in enumerate(targets)]
    model.train(was_training)
    n = len(results)

    def mean(term: str) -> list[float]:
        return [sum(getattr(r, term)[i] for r in results) / n for i in range(len(getattr(results[0], term)))]

    return StageLosses(mean("gram"), mean("color"), sum(r.total for r in results) / n, mean("spectrum"))
