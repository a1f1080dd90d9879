"""A model resolved once: `open_model(name or path)` -> `Model`, the handle every later step takes.

A model reaches texport as a shipped name (`pebbles`), a trained `.safetensors` file, an exported
`.onnx` graph or a TensorRT `.engine` / `.plan`. Each carries its own description (the manifest in
the safetensors header, the ONNX metadata, the engine's JSON sidecar); this module reads it once
and keeps what backends, export, bench and tiling need to know about the graph: its kind and the
sizes it takes. Later steps take the handle, so nothing re-resolves a name or re-reads a manifest.

Four kinds: texture networks and ProPO generate images from noise (ProPO also reads a target texture);
a solid network (texport.models.solid) generates volumes from 3D noise; a style network
(texport.stylenet) restyles a content image, so only `texport stylize` runs it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import texport.models.checkpoints as checkpoints
from texport.errors import TexportError
from texport.models.formats import format_of, read_graph, read_sidecar
from texport.models.propo import MIN_SIDE, SIZE_MULTIPLE

TEXNET = "texnet"
PROPO = "propo"
STYLENET = "stylenet"
SOLID = "solid"
KINDS = (TEXNET, PROPO, STYLENET, SOLID)


@dataclass(frozen=True)
class Model:
    path: Path
    format: str  # a name of texport.models.formats.FORMATS: "texport" (.safetensors weights), "onnx" or "engine"
    kind: str  # TEXNET, PROPO or STYLENET
    size_multiple: int  # every side the graph takes is a multiple of this (texture and style networks: 2^(scales-1))
    min_side: int  # and at least this (ProPO: pool4 must keep 2x2 pixels; style networks: see _from_weights)
    noise_channels: int  # channels of the noise input (texture networks: scales x channels per scale)
    manifest: dict = field(repr=False)  # the safetensors manifest, ONNX metadata or engine sidecar, as read

    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or self.path.stem) if self.format == "texport" else self.path.stem

    @property
    def is_propo(self) -> bool:
        return self.kind == PROPO

    @property
    def is_stylenet(self) -> bool:
        """Takes a content image besides the noise (texport.stylize)."""
        return self.kind == STYLENET

    @property
    def is_solid(self) -> bool:
        """Generates volumes [B, 3, D, H, W] from 3D noise [B, K*C, D, H, W]."""
        return self.kind == SOLID

    def require_generator(self, volumes: bool = False) -> "Model":
        """Self, if it generates from noise alone (synth, tile, bench, batch); a style network is one line naming
        stylize, a solid network one naming a volume size, unless the caller takes volumes."""
        if self.is_solid and not volumes:
            raise TexportError(f"{self.path.name} is a solid texture network: it makes volumes "
                               "(texport synth MODEL --size WxHxD -o VOL.npy|VOL.dds|FOLDER/)")
        if self.is_stylenet:
            raise TexportError(f"{self.path.name} is a style network: it restyles a photograph, it does not synthesize "
                               "from noise (texport stylize MODEL CONTENT -o OUT.png)")
        return self

    def require_stylenet(self) -> "Model":
        """Self, if it is a style network; a generator is one line naming synth."""
        if not self.is_stylenet:
            what = "a ProPO model" if self.is_propo else "a texture network"
            raise TexportError(f"{self.path.name} is {what}, not a style network: it synthesizes from noise "
                               f"(texport synth MODEL -o OUT.png)")
        return self


def trained_folder() -> Path:
    """Where the shipped models live (the top-level trained/ folder, installed as texport.trained)."""
    return Path(str(resources.files("texport.trained")))


def shipped_models() -> dict[str, Path]:
    return {p.stem: p for p in sorted(trained_folder().glob("*.safetensors"))}


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """The file a shipped name or a path means (one-line error if there is none)."""
    path = Path(name_or_path)
    if path.exists() or format_of(path) is not None or os.sep in str(name_or_path):
        if not path.is_file():
            raise TexportError(f"model file not found: {path}")
        return path
    shipped = shipped_models()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    raise TexportError(f"no such model: {name_or_path!r} (shipped: {', '.join(shipped) or 'none'}; or give a .safetensors path)")


def open_model(source: str | os.PathLike | Model) -> Model:
    """The handle of a shipped name, .safetensors, .onnx or engine file (a handle is returned as is)."""
    if isinstance(source, Model):
        return source
    path = resolve_model(source)
    readers = {"onnx": _from_onnx, "engine": _from_engine}
    row = format_of(path)
    return readers.get(row.name if row is not None else "texport", _from_weights)(path)


def _from_weights(path: Path) -> Model:
    manifest = checkpoints.read_manifest(path)
    kind = manifest.get("kind")
    try:
        if kind == PROPO:
            return Model(path, "texport", PROPO, SIZE_MULTIPLE, MIN_SIDE, 3, manifest)
        if kind in (TEXNET, STYLENET, SOLID):
            arch = manifest["architecture"]
            scales, channels = int(arch.get("scales", 5)), int(arch.get("noise_channels", 3))
            multiple = 2 ** (scales - 1)
            # reflect padding needs 2 pixels at the coarsest scale (circular padding wraps even 1)
            smallest = 2 * multiple if kind == STYLENET else multiple
            return Model(path, "texport", kind, multiple, smallest, scales * channels, manifest)
    except (KeyError, TypeError, ValueError) as exc:
        raise TexportError(f"{path} has an invalid architecture in its manifest ({exc})") from None
    raise TexportError(f"{path} holds an unknown kind of model ({kind!r})")


def _grid(meta: dict) -> tuple[int, int]:
    multiple = int(meta.get("texport.size_multiple", 16))
    return multiple, int(meta.get("texport.min_side", multiple))


def _from_onnx(path: Path) -> Model:
    meta, input_shapes = read_graph(path)
    if meta.get("texport.kind") not in KINDS or meta.get("texport.graph") or "noise" not in input_shapes:
        raise TexportError(f"{path} is not a texport model graph (export it with texport export)")
    return Model(path, "onnx", meta["texport.kind"], *_grid(meta), int(input_shapes["noise"][1]), meta)


def _from_engine(path: Path) -> Model:
    side = read_sidecar(path)
    meta = side.get("model", {})
    try:
        noise = next(t for t in side["inputs"] if t["name"] == "noise")
        return Model(path, "engine", meta["texport.kind"], *_grid(meta), int(noise["shape"][1]), side)
    except (KeyError, IndexError, TypeError, ValueError, StopIteration):
        raise TexportError(f"{path}'s sidecar does not describe a texport model (rebuild it with texport export)") from None
