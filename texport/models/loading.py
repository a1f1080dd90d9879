"""Trained models (texture networks, ProPO, style networks): load a handle's weights, synthesize at any size.

Sizes are planned by texport.textures.sizes.plan_size on the model's grid (generate the next size on the
grid, crop its top-left corner), the same plan every backend uses, so backends agree image for image.
Style networks run through texport.runtime.sampling.stylize_with on every backend, PyTorch's included (`stylize`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

import texport.textures.noise as noise_lib
from texport.devices import resolve_device
from texport.errors import TexportError
from texport.models.checkpoints import check_state, load_checkpoint
from texport.models.handle import PROPO, SOLID, STYLENET, TEXNET, Model, open_model
from texport.models.propo import LEVELS, MIN_SIDE, SIZE_MULTIPLE, ProPO, pseudo_optimizer_state
from texport.models.solid import SolidNetwork
from texport.models.stylenet import StyleNetwork
from texport.models.texnet import TextureNetwork
from texport.objectives.descriptor import build_descriptor
from texport.textures.images import side_by_side, stack_rows
from texport.textures.sizes import MIN_SIZE, SizePlan, plan_size


def _handle(source: "str | os.PathLike | Model", kind: str) -> Model:
    model = open_model(source)
    if model.format != "texport":
        raise TexportError(f"{model.path.name} is an exported {model.format} file: this step needs the texport model "
                           "(a shipped name or .safetensors)")
    if model.kind != kind:
        raise TexportError(f"{model.path} is a {model.kind!r} model, expected {kind!r}")
    return model


@dataclass
class Loaded:
    """A model loaded for PyTorch: its network (a plain nn.Module), the manifest it came with, its file."""
    network: torch.nn.Module
    manifest: dict
    path: Path

    @property
    def name(self) -> str:
        return self.manifest.get("name") or self.path.stem


@dataclass
class LoadedTexnet(Loaded):
    network: TextureNetwork


@dataclass
class LoadedStylenet(LoadedTexnet):
    """A texture network's record whose network also takes a content image."""
    network: StyleNetwork


def load_texnet(source: str | os.PathLike | Model, device: str | torch.device = "cpu") -> LoadedTexnet:
    """A texture network in eval mode (frozen BatchNorm statistics) on the device."""
    return _load_multiscale(source, TEXNET, TextureNetwork, LoadedTexnet, device)


def load_stylenet(source: str | os.PathLike | Model, device: str | torch.device = "cpu") -> LoadedStylenet:
    """A style network in eval mode on the device."""
    return _load_multiscale(source, STYLENET, StyleNetwork, LoadedStylenet, device)


@dataclass
class LoadedSolid(Loaded):
    network: SolidNetwork


def load_solid(source: str | os.PathLike | Model, device: str | torch.device = "cpu") -> LoadedSolid:
    """A solid network in eval mode (frozen BatchNorm statistics) on the device."""
    return _load_multiscale(source, SOLID, SolidNetwork, LoadedSolid, device)


def _load_multiscale(source, kind: str, network_class: type, loaded_class: type, device):
    """Texture and style networks: the manifest's architecture, the file's weights checked against it."""
    model = _handle(source, kind)
    path, manifest = model.path, model.manifest
    state = load_checkpoint(path, kind=kind, manifest=manifest)[0]
    try:
        network = network_class(**manifest["architecture"])
    except (KeyError, TypeError, ValueError) as exc:
        raise TexportError(f"{path} has an invalid architecture in its manifest ({exc})") from None
    check_state(path, network, state)
    return loaded_class(network.to(resolve_device(device)).eval(), manifest, path)


@torch.no_grad()
def sample_texnet(
    loaded: LoadedTexnet | TextureNetwork,
    size: int | str | tuple[int, int] | SizePlan = 256,
    seed: int = 0,
    count: int = 1,
    tileable: bool = False,
    snap: bool = False,
    device: str | torch.device | None = None,
    size_limit: int | None = None,
    batch: int = 1,
) -> torch.Tensor:
    """count textures [count, 3, H, W] in [0, 1] on the CPU; image n uses noise seed seed + n."""
    network = loaded.network if isinstance(loaded, LoadedTexnet) else loaded
    plan = plan_size(size, network.size_multiple, network.size_multiple, tileable, snap, size_limit)
    width, height, gw, gh = plan.width, plan.height, plan.grid_width, plan.grid_height
    check_count(count)
    dev = resolve_device(device) if device is not None else next(network.parameters()).device
    network = network.to(dev).eval()
    images = []
    for start in range(0, count, batch):
        n = min(batch, count - start)
        z = network.noise(gh, gw, seed=seed + start, batch=n, device=dev)
        images.append(network(z)[:, :, :height, :width].float().cpu())
    return torch.cat(images)


# ---------------------------------------------------------------------------------------------
# ProPO: one model, any target texture


@dataclass
class LoadedPropo(Loaded):
    network: ProPO


def load_propo(source: str | os.PathLike | Model, device: str | torch.device = "cpu",
               descriptor_weights: str | None = None) -> LoadedPropo:
    """A ProPO model with the descriptor it was trained with (the manifest's identity is enforced)."""
    handle = _handle(source, PROPO)
    path, manifest = handle.path, handle.manifest
    state = load_checkpoint(path, kind=PROPO, manifest=manifest)[0]
    identity = manifest.get("descriptor")
    if not isinstance(identity, str) or ":" not in identity:
        raise TexportError(f"{path} has no descriptor identity in its manifest")
    dev = resolve_device(device)
    descriptor = build_descriptor("auto", LEVELS, weights_file=descriptor_weights, device=dev, expect_identity=identity)
    try:
        arch = manifest["architecture"]
        model = ProPO(descriptor, int(arch["stages"]), tuple(int(w) for w in arch["widths"]), bool(arch["color_input"]),
                      float(arch.get("noise_amplitude", 1.0)), bool(arch.get("color_match", False)),
                      bool(arch.get("histogram_match", False)), str(arch.get("upsample", "nearest")))
    except (KeyError, TypeError, ValueError) as exc:
        raise TexportError(f"{path} has an invalid architecture in its manifest ({exc})") from None
    check_state(path, model.pseudo_optimizers, pseudo_optimizer_state(state))
    return LoadedPropo(model.to(dev).eval(), manifest, path)


@torch.no_grad()
def sample_propo(
    loaded: LoadedPropo,
    texture: torch.Tensor,
    size: int | str | tuple[int, int] | SizePlan = 256,
    seed: int = 0,
    count: int = 1,
    tileable: bool = False,
    snap: bool = False,
    stages: bool = False,
    size_limit: int | None = None,
) -> torch.Tensor | list[torch.Tensor]:
    """count textures like `texture` [1, 3, h, w] as [count, 3, H, W] in [0, 1] on the CPU.

    The target statistics are encoded once; image n uses noise seed seed + n. With stages=True the
    result is the list of stage images [noise, x^1, ..., x^5], each [count, 3, H, W].
    """

    propo = loaded.network
    plan = plan_size(size, SIZE_MULTIPLE, MIN_SIDE, tileable, snap, size_limit)
    width, height, gw, gh = plan.width, plan.height, plan.grid_width, plan.grid_height
    check_count(count)
    dev = next(propo.parameters()).device
    statistics = propo.encode(texture.to(dev))
    rows = []
    for n in range(count):
        z = noise_lib.noise_field(seed + n, 3, gh, gw, device=dev)
        images = [propo.start_image(z), *propo.synthesize(z, statistics, stages=True)] if stages else [propo.synthesize(z, statistics)]
        rows.append([im[:, :, :height, :width].clamp(0, 1).float().cpu() for im in images])
    columns = [torch.cat(col) for col in zip(*rows)]
    return columns if stages else columns[0]


def load_generator(source: str | os.PathLike | Model, device: str | torch.device = "cpu") -> LoadedTexnet | LoadedPropo:
    """A model that synthesizes from noise (a texture network or ProPO), loaded as its kind says."""
    model = open_model(source).require_generator()
    return load_propo(model, device) if model.is_propo else load_texnet(model, device)


def sample(loaded: LoadedTexnet | LoadedPropo, size: int | str | tuple[int, int] | SizePlan = 256, seed: int = 0,
           count: int = 1, texture: torch.Tensor | None = None, stages: bool = False) -> torch.Tensor | list[torch.Tensor]:
    """count images [count, 3, H, W] from either kind on PyTorch (sample_texnet, or sample_propo like
    `texture`); stages=True (ProPO): the list of stage images, the last one the result."""
    if isinstance(loaded, LoadedPropo):
        if texture is None:
            raise TexportError(f"{loaded.path.name} is a ProPO model: it needs a target texture")
        return sample_propo(loaded, texture, size, seed=seed, count=count, stages=stages)
    if stages:
        require_stages(loaded)
    return sample_texnet(loaded, size, seed=seed, count=count)


def require_stages(model: Model | LoadedTexnet | LoadedPropo) -> None:
    """Stage images exist for ProPO only (its pseudo-optimizer steps, Shi & Qiao 2020 fig. 6)."""
    if not (model.is_propo if isinstance(model, Model) else isinstance(model, LoadedPropo)):
        raise TexportError("--stages shows ProPO's stages: this is a texture network")


def stage_sheet(stages: list[torch.Tensor], texture: torch.Tensor) -> torch.Tensor:
    """ProPO's stages as one picture: per image a row noise, x^1 ... x^5, target, 128 px high (Shi & Qiao 2020 fig. 6)."""
    count = stages[0].shape[0]
    return stack_rows([side_by_side([*(s[n:n + 1] for s in stages), texture], height=128) for n in range(count)])


def model_kind(source: str | os.PathLike | Model) -> str:
    """The kind of a model (TEXNET, PROPO)."""
    return open_model(source).kind


def check_count(count: int) -> None:
    if count < 1:
        raise TexportError(f"the image count must be at least 1, got {count}")


# ---------------------------------------------------------------------------------------------
# Refinement: a few Gatys evaluations from a model's sample (the quality dial)


def plan_stylize(model: Model, content: torch.Tensor, size=None, noise_scale: float = 1.0,
                 size_limit: int | None = None) -> SizePlan:
    """Check a stylization request (one-line errors) and plan it: the output is `size` (default: the
    content's own), computed on the model's grid above it (texport.textures.sizes.plan_size; a plan is returned
    as is). A photograph does not wrap, so there is no tileable request."""

    model.require_stylenet()
    if not math.isfinite(noise_scale) or noise_scale < 0:
        raise TexportError(f"the noise scale must be a number >= 0 (0: no noise, 1: as trained), got {noise_scale}")
    if content.dim() != 4 or content.shape[1] != 3:
        raise TexportError(f"the content must be an RGB image [B, 3, H, W], got {list(content.shape)}")
    h, w = content.shape[-2:]
    if min(w, h) < MIN_SIZE:
        raise TexportError(f"the content image is {w}x{h}: each side must be at least {MIN_SIZE} pixels")
    if size is not None:
        return plan_size(size, model.size_multiple, model.min_side, limit=size_limit)
    try:
        return plan_size((w, h), model.size_multiple, model.min_side, limit=size_limit)
    except TexportError as exc:
        raise TexportError(f"the content image is {w}x{h}: {exc}; or ask for a smaller size to resize it to") from None


def fit_content(content: torch.Tensor, plan: SizePlan) -> torch.Tensor:
    """The content at the plan's size (antialiased bilinear, if it is not that size already), padded at the
    bottom and right to the grid: by reflection, which keeps edges' statistics, or by repeating the last
    row and column where the image is too small to reflect that far."""

    content = content.float().cpu()
    if tuple(content.shape[-2:]) != (plan.height, plan.width):
        content = F.interpolate(content, size=(plan.height, plan.width), mode="bilinear", align_corners=False,
                                antialias=True).clamp(0, 1)
    pad_w, pad_h = plan.grid_width - plan.width, plan.grid_height - plan.height
    if not pad_w and not pad_h:
        return content
    mode = "reflect" if pad_w < plan.width and pad_h < plan.height else "replicate"
    return F.pad(content, (0, pad_w, 0, pad_h), mode=mode)



@torch.no_grad()
def stylize_planned(run: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], model: Model, content: torch.Tensor,
                    size=None, seed: int = 0, noise_scale: float = 1.0, size_limit: int | None = None) -> torch.Tensor:
    """The one plan of a stylization, for any runtime: `run(noise, content)` is the network on the grid
    (a backend, or a loaded StyleNetwork). The content [B, 3, h, w] is resized and padded to the plan
    (plan_stylize, fit_content), the noise (texport.textures.noise contract, item b's seed is seed + b)
    is multiplied by noise_scale before `run` sees it, and the result is cropped to the size:
    [B, 3, H, W] in [0, 1] on the CPU."""
    plan = plan_stylize(model, content, size, noise_scale, size_limit)
    fitted = fit_content(content, plan)
    noise = noise_lib.noise_field(seed, model.noise_channels, plan.grid_height, plan.grid_width, batch=fitted.shape[0])
    return run(noise * noise_scale, fitted)[:, :, :plan.height, :plan.width].float().cpu().clamp(0, 1)