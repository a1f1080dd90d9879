"""Trained texture networks: find (shipped name or path), load, and synthesize at any size.

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

import torch

from .checkpoints import check_state, load_checkpoint
from .devices import resolve_device
from .errors import TexportError
from .sizes import check_size, parse_size
from .texnet import TextureNetwork

TEXNET = "texnet"


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
