"""Trained models (texture networks, ProPO): find (shipped name or path), load, synthesize at any size.

The network itself needs sides that are multiples of 2**(K-1); any size >= 16 is served by
generating the next valid size and cropping its top-left corner, so a window of the noise field
keeps its meaning whatever the requested size. A cropped output no longer wraps around, so a
tileable request at another size is refused in one line, or snapped to the nearest multiple.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .checkpoints import check_state, load_checkpoint
from .devices import resolve_device
from .errors import TexportError
from .sizes import check_size, parse_size
from .texnet import TextureNetwork
from . import noise as noise_lib

if TYPE_CHECKING:  # propo imports the descriptor stack; only annotations need it here
    from .propo import ProPO

TEXNET = "texnet"
PROPO = "propo"


def trained_folder() -> Path:
    """Where the shipped models live (the top-level trained/ folder, installed as texport.trained)."""
    return Path(str(resources.files("texport.trained")))


def shipped_models() -> dict[str, Path]:
    return {p.stem: p for p in sorted(trained_folder().glob("*.safetensors"))}


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    path = Path(name_or_path)
    if path.exists() or path.suffix == ".safetensors" or os.sep in str(name_or_path):
        if not path.is_file():
            raise TexportError(f"model file not found: {path}")
        return path
    shipped = shipped_models()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    raise TexportError(f"no such model: {name_or_path!r} (shipped: {', '.join(shipped) or 'none'}; or give a .safetensors path)")


@dataclass
class LoadedTexnet:
    network: TextureNetwork
    manifest: dict
    path: Path

    @property
    def name(self) -> str:
        return self.manifest.get("name") or self.path.stem


def load_texnet(name_or_path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedTexnet:
    """A texture network in eval mode (frozen BatchNorm statistics) on the device."""
    path = resolve_model(name_or_path)
    state, manifest = load_checkpoint(path, kind=TEXNET)
    try:
        network = TextureNetwork(**manifest["architecture"])
    except (KeyError, TypeError, ValueError) as exc:
        raise TexportError(f"{path} has an invalid architecture in its manifest ({exc})") from None
    check_state(path, network, state)
    return LoadedTexnet(network.to(resolve_device(device)).eval(), manifest, path)


def valid_size(width: int, height: int, multiple: int) -> tuple[int, int]:
    """The smallest (W, H) >= the request with both sides multiples of `multiple`."""
    return -(-width // multiple) * multiple, -(-height // multiple) * multiple


def tileable_size(width: int, height: int, multiple: int, snap: bool) -> tuple[int, int]:
    """The request if it wraps exactly, the nearest multiples if snap, else a one-line error."""
    if width % multiple == 0 and height % multiple == 0:
        return width, height
    near = tuple(max(multiple, round(s / multiple) * multiple) for s in (width, height))
    if snap:
        return near
    raise TexportError(
        f"a tileable output needs sides that are multiples of {multiple}; {width}x{height} would be a crop "
        f"that does not wrap (use --size {near[0]}x{near[1]}, or --snap to pick it)"
    )


@torch.no_grad()
def synthesize(
    model: LoadedTexnet | TextureNetwork,
    size: int | str | tuple[int, int] = 256,
    seed: int = 0,
    count: int = 1,
    tileable: bool = False,
    snap: bool = False,
    device: str | torch.device | None = None,
    max_size: int | None = None,
    batch: int = 1,
) -> torch.Tensor:
    """count textures [count, 3, H, W] in [0, 1] on the CPU; image n uses noise seed seed + n."""
    network = model.network if isinstance(model, LoadedTexnet) else model
    width, height = check_size(parse_size(size), max_size)
    multiple = network.size_multiple
    if tileable:
        width, height = tileable_size(width, height, multiple, snap)
    if count < 1:
        raise TexportError(f"count must be at least 1, got {count}")
    dev = resolve_device(device) if device is not None else next(network.parameters()).device
    network = network.to(dev).eval()
    gw, gh = valid_size(width, height, multiple)
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


def load_propo(name_or_path: str | os.PathLike, device: str | torch.device = "cpu",
               descriptor_weights: str | None = None) -> LoadedPropo:
    """A ProPO model with the descriptor it was trained with (the manifest's identity is enforced)."""
    from .descriptor import build_descriptor
    from .propo import LEVELS, ProPO

    path = resolve_model(name_or_path)
    state, manifest = load_checkpoint(path, kind=PROPO)
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
    check_state(path, model.optimizers, {k.removeprefix("optimizers."): v for k, v in state.items()})
    return LoadedPropo(model.to(dev).eval(), manifest, path)


@torch.no_grad()
def synthesize_propo(
    model: LoadedPropo,
    texture: torch.Tensor,
    size: int | str | tuple[int, int] = 256,
    seed: int = 0,
    count: int = 1,
    tileable: bool = False,
    snap: bool = False,
    stages: bool = False,
    max_size: int | None = None,
) -> torch.Tensor | list[torch.Tensor]:
    """count textures like `texture` [1, 3, h, w] as [count, 3, H, W] in [0, 1] on the CPU.

    The target statistics are encoded once; image n uses noise seed seed + n. With stages=True the
    result is the list of stage images [noise, x^1, ..., x^5], each [count, 3, H, W].
    """
    from .propo import MIN_SIDE, SIZE_MULTIPLE

    propo = model.model
    width, height = check_size(parse_size(size), max_size)
    if tileable:
        width, height = tileable_size(width, height, SIZE_MULTIPLE, snap)
        if min(width, height) < MIN_SIDE:
            raise TexportError(f"a tileable ProPO output needs sides of at least {MIN_SIDE}, got {width}x{height}")
    if count < 1:
        raise TexportError(f"count must be at least 1, got {count}")
    dev = next(propo.parameters()).device
    grams = propo.encode(texture.to(dev))
    gw, gh = (max(MIN_SIDE, s) for s in valid_size(width, height, SIZE_MULTIPLE))
    rows = []
    for n in range(count):
        z = noise_lib.noise_field(seed + n, 3, gh, gw, device=dev)
        images = [propo.start_image(z), *propo.synthesize(z, grams, stages=True)] if stages else [propo.synthesize(z, grams)]
        rows.append([im[:, :, :height, :width].clamp(0, 1).float().cpu() for im in images])
    columns = [torch.cat(col) for col in zip(*rows)]
    return columns if stages else columns[0]


def model_kind(name_or_path: str | os.PathLike) -> str:
    """The kind recorded in a model's manifest (texnet, propo)."""
    from .checkpoints import read_manifest

    return str(read_manifest(resolve_model(name_or_path)).get("kind"))


def start_image(source: str | os.PathLike, texture: torch.Tensor, width: int, height: int, seed: int = 0,
                device: str | torch.device = "cpu") -> torch.Tensor:
    """A refinement's start [1, 3, height, width]: an image file if `source` is one, else a sample of
    the model it names (a texture network's, or ProPO's for `texture`), drawn with `seed`."""
    from .images import load_image

    path = Path(source)
    if path.is_file() and path.suffix.lower() != ".safetensors":
        image = load_image(path)
    elif model_kind(source) == PROPO:
        image = synthesize_propo(load_propo(source, device), texture, (width, height), seed=seed)
    else:
        image = synthesize(load_texnet(source, device), (width, height), seed=seed)
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
        raise TexportError(f"{loaded.path.name} is a ProPO model: give the texture to refine towards with --texture IMG")
    stored = load_stored_exemplar(loaded.path)
    if stored is None:
        raise TexportError(f"{loaded.path.name} keeps no exemplar (made before texport stored it): give the image it was "
                           f"trained on with --texture IMG, or retrain it")
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
        raise TexportError(f"--refine needs at least 1 evaluation, got {iters}")
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
