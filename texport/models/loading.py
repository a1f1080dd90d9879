"""Trained models (texture networks, ProPO, style networks): load a handle's weights, synthesize at any size.

Sizes are planned by texport.sizes.plan_size on the model's grid (generate the next size on the
grid, crop its top-left corner), the same plan every backend uses, so backends agree image for image.
Style networks run through texport.backends.stylize_with on every backend, PyTorch's included (`stylize`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .checkpoints import check_state, load_checkpoint
from .devices import resolve_device
from .errors import TexportError
from .handle import PROPO, STYLENET, TEXNET, Model, open_model, resolve_model, shipped_models, trained_folder  # noqa: F401
from .sizes import SizePlan, plan_size, tileable_size  # noqa: F401
from .stylenet import StyleNetwork
from .texnet import TextureNetwork
from . import noise as noise_lib

if TYPE_CHECKING:  # propo imports the descriptor stack; only annotations need it here
    from .propo import ProPO


def _handle(source: "str | os.PathLike | Model", kind: str) -> Model:
    model = open_model(source)
    if model.format != "texport":
        raise TexportError(f"{model.path.name} is an exported {model.format} file: this step needs the texport model "
                           "(a shipped name or .safetensors)")
    if model.kind != kind:
        raise TexportError(f"{model.path} is a {model.kind!r} model, expected {kind!r}")
    return model


@dataclass
class LoadedTexnet:
    network: TextureNetwork
    manifest: dict
    path: Path

    @property
    def name(self) -> str:
        return self.manifest.get("name") or self.path.stem


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


def stylize(source: str | os.PathLike | Model, content: torch.Tensor, size: int | str | tuple[int, int] | None = None,
            seed: int = 0, noise_scale: float = 1.0, device: str | torch.device = "cpu",
            size_limit: int | None = None) -> torch.Tensor:
    """A photograph [1, 3, h, w] in [0, 1] restyled by a style network on PyTorch: [1, 3, H, W] on the CPU.

    The torch backend through texport.backends.stylize_with, so it is the plan and noise every other
    backend gets (see there for size and noise_scale).
    """
    from .backends import open_backend, stylize_with

    return stylize_with(open_backend(source, "torch", str(device)), content, size, seed, noise_scale, size_limit)


@torch.no_grad()
def sample_texnet(
    model: LoadedTexnet | TextureNetwork,
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
    network = model.network if isinstance(model, LoadedTexnet) else model
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
class LoadedPropo:
    model: "ProPO"
    manifest: dict
    path: Path

    @property
    def name(self) -> str:
        return self.manifest.get("name") or self.path.stem


def load_propo(source: str | os.PathLike | Model, device: str | torch.device = "cpu",
               descriptor_weights: str | None = None) -> LoadedPropo:
    """A ProPO model with the descriptor it was trained with (the manifest's identity is enforced)."""
    from .descriptor import build_descriptor
    from .propo import LEVELS, ProPO, pseudo_optimizer_state

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
                      bool(arch.get("histogram_match", False)))
    except (KeyError, TypeError, ValueError) as exc:
        raise TexportError(f"{path} has an invalid architecture in its manifest ({exc})") from None
    check_state(path, model.pseudo_optimizers, pseudo_optimizer_state(state))
    return LoadedPropo(model.to(dev).eval(), manifest, path)


@torch.no_grad()
def sample_propo(
    model: LoadedPropo,
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
    from .propo import MIN_SIDE, SIZE_MULTIPLE

    propo = model.model
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


def model_kind(source: str | os.PathLike | Model) -> str:
    """The kind of a model (TEXNET, PROPO)."""
    return open_model(source).kind


def check_count(count: int) -> None:
    if count < 1:
        raise TexportError(f"the image count must be at least 1, got {count}")


def start_image(source: str | os.PathLike, texture: torch.Tensor, width: int, height: int, seed: int = 0,
                device: str | torch.device = "cpu") -> torch.Tensor:
    """A refinement's start [1, 3, height, width]: an image file if `source` is one, else a sample of
    the model it names (a texture network's, or ProPO's for `texture`), drawn with `seed`."""
    from .images import load_image

    path = Path(source)
    if path.is_file() and path.suffix.lower() != ".safetensors":
        image = load_image(path)
    elif model_kind(source) == PROPO:
        image = sample_propo(load_propo(source, device), texture, (width, height), seed=seed)
    else:
        image = sample_texnet(load_texnet(source, device), (width, height), seed=seed)
    from .gatys import resize_start

    return resize_start(image, width, height)


# ---------------------------------------------------------------------------------------------
# Refinement: a few Gatys evaluations from a model's sample (the quality dial)


def refinement_target(loaded: LoadedTexnet | LoadedPropo, texture: torch.Tensor | None) -> torch.Tensor:
    """The exemplar a refinement matches: `texture` if given (ProPO needs it), else the one a texture
    network's file keeps; a file made before texport kept it is one error naming the fix."""
    from .checkpoints import load_stored_exemplar

    if texture is not None:
        return texture
    if isinstance(loaded, LoadedPropo):
        raise TexportError(f"{loaded.path.name} is a ProPO model: refining its samples needs the target texture")
    stored = load_stored_exemplar(loaded.path)
    if stored is None:
        raise TexportError(f"{loaded.path.name} keeps no exemplar (made before texport stored it): give the image it was "
                           f"trained on as the target texture, or retrain it")
    return stored


def refine(loaded: LoadedTexnet | LoadedPropo, images: torch.Tensor, iters: int, texture: torch.Tensor | None = None,
           tileable: bool = False, device: str | torch.device = "auto", progress=None) -> torch.Tensor:
    """Each image [N, 3, H, W] after `iters` bounded evaluations of the default objective against the model's
    exemplar (texport.gatys with the image as the start), with the model's descriptor; tileable keeps wrapping."""
    from .descriptor import build_descriptor
    from .gatys import synthesize as gatys_synthesize
    from .losses import PO_LAYERS
    from .objective import build_objective

    if iters < 1:
        raise TexportError(f"refinement needs at least 1 evaluation, got {iters}")
    target = refinement_target(loaded, texture)
    dev = resolve_device(device)
    identity = loaded.manifest["descriptor"]
    descriptor = build_descriptor(identity.split(":")[0], PO_LAYERS, device=dev, expect_identity=identity)
    objective = build_objective(target.to(dev), descriptor=descriptor, tileable=tileable, device=dev)
    height, width = images.shape[-2:]
    refined = []
    for n, image in enumerate(images):
        report = None if progress is None else (lambda step, value, n=n: progress(n * iters + step, value))
        result = gatys_synthesize(None, (width, height), iters, objective=objective, device=dev, init=image[None],
                                  progress=report)
        refined.append(result.image)
    return torch.cat(refined)
