"""Graphs -> ONNX files: dynamic batch and sizes, named tensors, texport metadata, checked.

Uses torch's TorchScript-based exporter (`dynamo=False`): it exports the shape arithmetic of
the Gram normalizations (1/(H*W)) symbolically, so one file serves every size, and it needs no
extra packages. Files are written atomically and checked with `onnx.checker` before they land.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from . import defaults
from .atomic import atomic_path
from .errors import TexportError
from .graphs import GraphSpec

DEFAULT_OPSET = defaults.OPSET


def export_onnx(spec: GraphSpec, path: str | os.PathLike, opset: int = DEFAULT_OPSET) -> Path:
    """Write one graph to `path` (.onnx) with its metadata; returns the path."""
    import onnx

    out = Path(path)
    with atomic_path(out) as tmp:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notices
            torch.onnx.export(spec.module, spec.inputs, str(tmp), dynamo=False, opset_version=opset,
                              input_names=spec.input_names, output_names=spec.output_names,
                              dynamic_axes=spec.dynamic_axes, do_constant_folding=True)
        model = onnx.load(str(tmp))
        model.producer_name = "texport"
        del model.metadata_props[:]
        for key, value in sorted(spec.metadata.items()):
            model.metadata_props.add(key=key, value=value)
        try:
            onnx.checker.check_model(model, full_check=True)
        except onnx.checker.ValidationError as exc:  # a bug in texport, not in the user's input
            raise TexportError(f"exported graph {spec.name} failed onnx.checker: {str(exc).splitlines()[0]}") from None
        onnx.save(model, str(tmp))
    return out


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """metadata_props of an ONNX file (a one-line error for anything that is not one)."""
    return read_graph(path)[0]


def read_graph(path: str | os.PathLike) -> tuple[dict[str, str], dict[str, tuple[int, ...]]]:
    """(metadata_props, {input name: shape with -1 for dynamic axes}, in the graph's order) of an ONNX file;
    one-line errors."""
    import onnx

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
