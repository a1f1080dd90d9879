"""Graphs -> ONNX files: dynamic batch and sizes, named tensors, texport metadata, checked.

Uses torch's TorchScript-based exporter (`dynamo=False`): it exports the shape arithmetic of
the Gram normalizations (1/(H*W)) symbolically, so one file serves every size, and it needs no
extra packages. Files are written atomically and checked with `onnx.checker` before they land.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import onnx
import torch

import texport.defaults as defaults
from texport.errors import TexportError
from texport.export.graphs import GraphSpec
from texport.files import atomic_path

DEFAULT_OPSET = defaults.OPSET


def export_onnx(spec: GraphSpec, path: str | os.PathLike, opset: int = DEFAULT_OPSET) -> Path:
    """Write one graph to `path` (.onnx) with its metadata; returns the path."""
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


