"""A model resolved once: `open_model(name or path)` -> `Model`, the handle every later step takes.

A model reaches texport as a shipped name (`pebbles`), a trained `.safetensors` file, an exported
`.onnx` graph or a TensorRT `.engine` / `.plan`. Each carries its own description (the manifest in
the safetensors header, the ONNX metadata, the engine's JSON sidecar); this module reads it once
and keeps what backends, export, bench and tiling need to know about the graph: its kind and the
sizes it takes. Later steps take the handle, so nothing re-resolves a name or re-reads a manifest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .errors import TexportError

TEXNET = "texnet"
PROPO = "propo"
ENGINE_SUFFIXES = (".engine", ".plan")


@dataclass(frozen=True)
class Model:
    path: Path
    format: str  # "texport" (.safetensors weights), "onnx" or "engine"
    kind: str  # TEXNET or PROPO
    size_multiple: int  # every side the graph takes is a multiple of this (texture networks: 2^(scales-1))
    min_side: int  # and at least this (ProPO: pool4 must keep 2x2 pixels)
    noise_channels: int  # channels of the noise input (texture networks: scales x channels per scale)
    manifest: dict = field(repr=False)  # the safetensors manifest, ONNX metadata or engine sidecar, as read

    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or self.path.stem) if self.format == "texport" else self.path.stem

    @property
    def is_propo(self) -> bool:
        return self.kind == PROPO


def trained_folder() -> Path:
    """Where the shipped models live (the top-level trained/ folder, installed as texport.trained)."""
    return Path(str(resources.files("texport.trained")))


def shipped_models() -> dict[str, Path]:
    return {p.stem: p for p in sorted(trained_folder().glob("*.safetensors"))}


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """The file a shipped name or a path means (one-line error if there is none)."""
    path = Path(name_or_path)
    if path.exists() or path.suffix in (".safetensors", ".onnx", *ENGINE_SUFFIXES) or os.sep in str(name_or_path):
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
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return _from_onnx(path)
    if suffix in ENGINE_SUFFIXES:
        return _from_engine(path)
    return _from_weights(path)


def _from_weights(path: Path) -> Model:
    from .checkpoints import read_manifest

    manifest = read_manifest(path)
    kind = manifest.get("kind")
    try:
        if kind == PROPO:
            from .propo import MIN_SIDE, SIZE_MULTIPLE

            return Model(path, "texport", PROPO, SIZE_MULTIPLE, MIN_SIDE, 3, manifest)
        if kind == TEXNET:
            arch = manifest["architecture"]
            scales, channels = int(arch.get("scales", 5)), int(arch.get("noise_channels", 3))
            multiple = 2 ** (scales - 1)
            return Model(path, "texport", TEXNET, multiple, multiple, scales * channels, manifest)
    except (KeyError, TypeError, ValueError) as exc:
        raise TexportError(f"{path} has an invalid architecture in its manifest ({exc})") from None
    raise TexportError(f"{path} holds an unknown kind of model ({kind!r})")


def _grid(meta: dict) -> tuple[int, int]:
    multiple = int(meta.get("texport.size_multiple", 16))
    return multiple, int(meta.get("texport.min_side", multiple))


def _from_onnx(path: Path) -> Model:
    from .onnx_export import read_graph

    meta, input_shapes = read_graph(path)
    if meta.get("texport.kind") not in (TEXNET, PROPO) or meta.get("texport.graph") or not input_shapes:
        raise TexportError(f"{path} is not a texport model graph (export it with texport export)")
    return Model(path, "onnx", meta["texport.kind"], *_grid(meta), int(input_shapes[0][1]), meta)


def _from_engine(path: Path) -> Model:
    from .tensorrt_build import read_sidecar

    side = read_sidecar(path)
    meta = side.get("model", {})
    try:
        return Model(path, "engine", meta["texport.kind"], *_grid(meta), int(side["inputs"][0]["shape"][1]), side)
    except (KeyError, IndexError, TypeError, ValueError):
        raise TexportError(f"{path}'s sidecar does not describe a texport model (rebuild it with texport export)") from None
