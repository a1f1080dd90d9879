"""Refinement: a few Gatys evaluations from a model's sample, the quality dial between a network's
one pass and a full optimization (Gatys et al. 2015 with a trained model's image as the start).

`start_image` turns an image file or a model's sample into a start, `refinement_target` finds the
exemplar a model's samples are refined against, and `refine` runs the bounded evaluations with the
model's own descriptor.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

import texport.defaults as defaults
from texport.devices import resolve_device
from texport.errors import TexportError
from texport.models.checkpoints import load_stored_exemplar
from texport.models.formats import format_of
from texport.models.loading import (
    LoadedPropo,
    LoadedTexnet,
    load_generator,
    sample,
)
from texport.objectives.descriptor import build_descriptor
from texport.objectives.objective import ObjectiveSpec, build_objective
from texport.optimization.gatys import MIN_LEVEL_SIDE, level_budgets, resize_start
from texport.optimization.gatys import synthesize as gatys_synthesize
from texport.progress import StepProgress
from texport.textures.images import load_image


def start_image(source: str | os.PathLike, texture: torch.Tensor, width: int, height: int, seed: int = 0,
                device: str | torch.device = "cpu") -> torch.Tensor:
    """A refinement's start [1, 3, height, width]: an image file if `source` is one, else a sample of
    the model it names (a texture network's, or ProPO's for `texture`), drawn with `seed`."""
    path = Path(source)
    if path.is_file() and format_of(path) is None:
        image = load_image(path)
    else:  # a model: resolved once into its handle, loaded, sampled
        image = sample(load_generator(source, device), (width, height), seed, texture=texture)
    return resize_start(image, width, height)


def refinement_target(loaded: LoadedTexnet | LoadedPropo, texture: torch.Tensor | None) -> torch.Tensor:
    """The exemplar a refinement matches: `texture` if given (ProPO needs it), else the one a texture
    network's file keeps; a file made before texport kept it is one error naming the fix."""

    if texture is not None:
        return texture
    if isinstance(loaded, LoadedPropo):
        raise TexportError(f"{loaded.path.name} is a ProPO model: refining its samples needs the target texture")
    stored = load_stored_exemplar(loaded.path)
    if stored is None:
        raise TexportError(f"{loaded.path.name} keeps no exemplar (made before texport stored it): give the image it was "
                           f"trained on as the target texture, or retrain it")
    return stored


def refinement_scales(loaded: LoadedTexnet | LoadedPropo, width: int, height: int, target: torch.Tensor) -> int:
    """The default number of coarse-to-fine scales for refining this model's samples: ProPO's up to
    defaults.PROPO_REFINE_SCALES (its samples have the target's colours and local detail but a wrong
    layout, which the coarse scales rearrange cheaply), texture networks' defaults.TEXNET_REFINE_SCALES;
    fewer where the output or the target would go below the coarsest side a scale may have."""
    most = defaults.PROPO_REFINE_SCALES if isinstance(loaded, LoadedPropo) else defaults.TEXNET_REFINE_SCALES
    smallest = min(width, height, *target.shape[-2:])
    scales = 1
    while scales < most and smallest // 2 ** scales >= MIN_LEVEL_SIDE:
        scales += 1
    return scales


def refine(loaded: LoadedTexnet | LoadedPropo, images: torch.Tensor, iters: int, texture: torch.Tensor | None = None,
           tileable: bool = False, device: str | torch.device = "auto", progress: StepProgress | None = None,
           objective: ObjectiveSpec | None = None, coarse_to_fine: int | None = None,
           start_detail: bool = defaults.REFINE_DETAIL) -> torch.Tensor:
    """Each image [N, 3, H, W] after `iters` bounded evaluations of `objective` (default: the default
    objective, its loss included) against the model's exemplar (texport.optimization.gatys with the image
    as the start), measured with the model's own descriptor; tileable keeps wrapping. coarse_to_fine K > 1
    starts at 1/2^(K-1) of the size from the image downsampled, at about the same cost
    (texport.optimization.gatys.level_budgets), with the image's own detail added back at each finer
    scale if start_detail; None: `refinement_scales`. progress counts every scale's evaluations."""
    if iters < 1:
        raise TexportError(f"refinement needs at least 1 evaluation, got {iters}")
    spec = objective or ObjectiveSpec()
    target = refinement_target(loaded, texture)
    dev = resolve_device(device)
    identity = loaded.manifest["descriptor"]
    descriptor = build_descriptor(identity.split(":")[0], spec.layers, pooling=spec.pooling, device=dev, precision=spec.precision,
                                  expect_identity=identity)
    built = build_objective(target.to(dev), spec, descriptor=descriptor, tileable=tileable, device=dev)
    height, width = images.shape[-2:]
    if coarse_to_fine is None:
        coarse_to_fine = refinement_scales(loaded, width, height, target)
    refined = []
    per_image = sum(level_budgets(iters, coarse_to_fine))
    for n, image in enumerate(images):
        report = None if progress is None else (lambda step, value, n=n: progress(n * per_image + step, value))
        result = gatys_synthesize(None, (width, height), iters, objective=built, device=dev, init=image[None],
                                  progress=report, coarse_to_fine=coarse_to_fine, start_detail=start_detail)
        refined.append(result.image)
    return torch.cat(refined)
