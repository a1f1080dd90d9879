"""Readers of exported model files: ONNX graphs (metadata, input shapes) and TensorRT engines' JSON sidecars.

A model handle (texport.models.handle) reads what an exported file says about itself through these,
without importing the exporters that wrote it: reading a file needs only onnx and json.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import onnx

from texport.errors import TexportError
from texport.files import sha256_file

FLAVOURS = {"tensorrt-rtx": "tensorrt_rtx", "tensorrt": "tensorrt"}  # engine flavour -> its Python module
SIDECAR_FORMAT = "texport-engine/1"


def sidecar_path(engine: Path) -> Path:
    return engine.with_name(engine.name + ".json")


def read_sidecar(engine: str | os.PathLike) -> dict:
    """The sidecar of an engine file, checked (one-line errors)."""
    p = Path(engine)
    if not p.is_file():
        raise TexportError(f"engine file not found: {p}")
    side = sidecar_path(p)
    if not side.is_file():
        raise TexportError(f"{p} has no sidecar {side.name}: texport runs only engines it built (rebuild with texport export)")
    try:
        data = json.loads(side.read_text())
    except (OSError, ValueError) as exc:
        raise TexportError(f"{side} is not valid JSON ({exc})") from None
    if data.get("format") != SIDECAR_FORMAT or data.get("flavour") not in FLAVOURS:
        raise TexportError(f"{side} is not a texport engine sidecar")
    if data.get("engine_sha256") != sha256_file(p):  # checked without a GPU, before any runtime sees it
        raise TexportError(f"{p} is damaged or was replaced (its sha256 differs from {side.name}); rebuild it with texport export")
    return data


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """metadata_props of an ONNX file (a one-line error for anything that is not one)."""
    return read_graph(path)[0]


def read_graph(path: str | os.PathLike) -> tuple[dict[str, str], dict[str, tuple[int, ...]]]:
    """(metadata_props, {input name: shape with -1 for dynamic axes}, in the graph's order) of an ONNX file;
    one-line errors."""

    p = Path(path)
    if not p.is_file():
        raise TexportError(f"ONNX file not found: {p}")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise TexportError(f"{p} is not a readable ONNX file ({type(exc).__name__})") from None
    shapes = {i.name: tuple(d.dim_value if d.HasField("dim_value") else -1 for d in i.type.tensor_type.shape.dim)
              for i in model.graph.input}
    return {prop.key: prop.value for prop in model.metadata_props}, shapes
