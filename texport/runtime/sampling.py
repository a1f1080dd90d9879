"""Sampling through any backend: `sample_with` (texture networks, ProPO) and `stylize_with` (style networks).

Each plans the request on the model's grid the way the PyTorch path of texport.models.loading does
(texport.textures.sizes.plan_size; for stylization texport.models.loading.plan_stylize and
fit_content) and draws the portable noise (texport.textures.noise), so every backend gets the same
inputs and backends agree image for image.
"""

from __future__ import annotations

import os

import torch

from texport.errors import TexportError
from texport.models.handle import PROPO, Model
from texport.models.loading import check_count, stylize_planned
from texport.runtime.backends import Backend, open_backend
from texport.textures.noise import noise_field
from texport.textures.sizes import plan_size


@torch.no_grad()
def sample_with(backend: Backend, size, seed: int = 0, count: int = 1, texture: torch.Tensor | None = None,
                    tileable: bool = False, snap: bool = False, size_limit: int | None = None, batch: int = 1) -> torch.Tensor:
    """count images [count, 3, H, W] through a backend: the same noise and size plan as the torch
    path of texport.models (image n uses noise seed + n), so backends agree image for image."""

    backend.model.require_generator()
    plan = plan_size(size, backend.size_multiple, backend.min_side, tileable, snap, size_limit)
    if backend.kind == PROPO and texture is None:
        raise TexportError("a ProPO model needs a target texture")
    check_count(count)
    images = []
    for start in range(0, count, batch):
        n = min(batch, count - start)
        z = noise_field(seed + start, backend.noise_channels, plan.grid_height, plan.grid_width, batch=n)  # item i: seed + start + i
        images.append(backend(z, texture)[:, :, :plan.height, :plan.width].clamp(0, 1))
    return torch.cat(images)


@torch.no_grad()
def stylize_with(backend: Backend, content: torch.Tensor, size=None, seed: int = 0, noise_scale: float = 1.0,
                 size_limit: int | None = None) -> torch.Tensor:
    """A content image [B, 3, h, w] in [0, 1] restyled through a backend: [B, 3, H, W] (H x W: `size`,
    default the content's own) in [0, 1] on the CPU; item b's noise is seed + b.

    The one plan of every backend (texport.models.loading.stylize_planned): the network runs on the
    padded grid, the noise is multiplied by noise_scale before any backend sees it, so every runtime
    gets the same inputs, and the output is cropped to the size.
    """
    return stylize_planned(lambda noise, fitted: backend(noise, content=fitted), backend.model, content, size, seed,
                           noise_scale, size_limit)


def stylize(source: str | os.PathLike | Model, content: torch.Tensor, size: int | str | tuple[int, int] | None = None,
            seed: int = 0, noise_scale: float = 1.0, device: str | torch.device = "cpu",
            size_limit: int | None = None) -> torch.Tensor:
    """A photograph [1, 3, h, w] in [0, 1] restyled by a style network on PyTorch: [1, 3, H, W] on the CPU.

    The torch backend through texport.runtime.sampling.stylize_with, so it is the plan and noise every other
    backend gets (see there for size and noise_scale).
    """

    return stylize_with(open_backend(source, "torch", str(device)), content, size, seed, noise_scale, size_limit)
