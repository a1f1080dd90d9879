"""The model file formats in one table (FORMATS), and the readers of exported ones: ONNX graphs
(metadata, input shapes) and TensorRT engines' JSON sidecars.

Every question about a format is answered from the table, as Ultralytics' `export_formats()` does:
which suffixes name it, whether `texport export` writes it, and which runtime backends run it with
which options (the first backend is the one used when none is named). A model handle
(texport.models.handle) reads what an exported file says about itself through the readers, without
importing the exporters that wrote it: reading a file needs only onnx and json.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import onnx

from texport.errors import TexportError
from texport.files import sha256_file

TORCH_OPTIONS = ("channels_last", "compile", "cuda_graphs")
OPENVINO_OPTIONS = ("bf16",)


@dataclass(frozen=True)
class Format:
    name: str  # what a handle's `format` says
    suffixes: tuple[str, ...]  # the file suffixes that name it
    exported: bool  # `texport export OUT` writes it
    backends: dict[str, tuple[str, ...]]  # the backends that run it (default first) -> their "NAME:OPT+OPT" options
    what: str


FORMATS = (
    Format("texport", (".safetensors",), False, {"torch": TORCH_OPTIONS, "onnxruntime": (), "openvino": OPENVINO_OPTIONS},
           "PyTorch weights with their JSON manifest (trained or shipped; onnxruntime and OpenVINO run its cached ONNX export)"),
    Format("onnx", (".onnx",), True, {"onnxruntime": (), "openvino": OPENVINO_OPTIONS},
           "ONNX graph with texport metadata, checked against PyTorch when exported"),
    Format("engine", (".engine", ".plan"), True, {"tensorrt": ()},
           "TensorRT engine with its JSON sidecar (tensorrt-rtx builds without a GPU)"),
)
BACKENDS = tuple(dict.fromkeys(name for row in FORMATS for name in row.backends))  # torch, onnxruntime, openvino, tensorrt
MODEL_SUFFIXES = tuple(suffix for row in FORMATS for suffix in row.suffixes)
FLAVOURS = {"tensorrt-rtx": "tensorrt_rtx", "tensorrt": "tensorrt"}  # engine flavour -> its Python module


def format_of(path: str | os.PathLike) -> Format | None:
    """The table's row a file's suffix names, or None."""
    suffix = Path(path).suffix.lower()
    return next((row for row in FORMATS if suffix in row.suffixes), None)


def export_format(path: str | os.PathLike) -> Format:
    """The format `texport export` writes for this output path (one-line error if none)."""
    row = format_of(path)
    if row is None or not row.exported:
        suffixes = [s for r in FORMATS if r.exported for s in r.suffixes]
        raise TexportError(f"cannot tell the format of {Path(path).name}: use one of {', '.join(suffixes)}")
    return row


def backend_options(backend: str) -> tuple[str, ...]:
    """The options a backend takes, whatever format it runs."""
    return tuple(dict.fromkeys(o for row in FORMATS for o in row.backends.get(backend, ())))
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
