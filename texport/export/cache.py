"""The ONNX cache: a texport model's graph exported once per model file, precision and texport source.

onnxruntime and OpenVINO run ONNX files; given a texport model they run its cached export, kept
under $TEXPORT_CACHE/onnx (default ~/.cache/texport/onnx). The key hashes the model file, the
precision, texport's version and source (every module of the package, so a change to how graphs are
built re-exports them) and torch's version.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import torch

from texport import __version__
from texport.errors import TexportError
from texport.export.exporter import specs_for
from texport.export.graphs import solid_block_spec
from texport.export.onnx import export_onnx
from texport.files import cache_folder, sha256_file
from texport.models.handle import Model, open_model
from texport.models.loading import load_solid

PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # texport/


def source_files() -> list[Path]:
    """Every module of the package, its subpackages' included, in a fixed order."""
    return sorted(PACKAGE_ROOT.rglob("*.py"))


@functools.lru_cache(maxsize=1)
def code_hash() -> str:
    """texport's own source: a change to how graphs are built (e.g. their numerics), in any stage,
    re-exports them."""
    digest = hashlib.sha256()
    for file in source_files():
        digest.update(file.relative_to(PACKAGE_ROOT).as_posix().encode() + file.read_bytes())
    return digest.hexdigest()


def cached_onnx(model: str | os.PathLike | Model, fp16: bool, block: int | None = None) -> Path:
    """The model's main ONNX graph, exported once per model file, precision and texport source;
    block: a solid network's block graph for lattice blocks of that side instead (export.graphs.solid_block_spec)."""
    model = open_model(model)
    path = model.path
    variant = f"block{block}" if block is not None else ("fp16" if fp16 else "fp32")
    graph = variant if block is not None else fp16
    key = hashlib.sha256(f"{sha256_file(path)}:{graph}:{__version__}:{code_hash()}:{torch.__version__}".encode()).hexdigest()[:16]
    out = cache_folder("onnx") / f"{path.stem}-{variant}-{key}.onnx"
    if not out.is_file():
        spec = solid_block_spec(load_solid(model, "cpu"), block) if block is not None else \
            specs_for(model, "fp16" if fp16 else "fp32", split=False)[0]
        export_onnx(spec, out)
    return out


def onnx_file(model: Model, fp16: bool) -> Path:
    """The ONNX file to run: the model's own if it is one, else its cached export."""
    if model.format == "onnx":
        return model.path
    if model.format != "texport":
        raise TexportError(f"ONNX runtimes run .onnx files or texport models, not {model.format} files")
    return cached_onnx(model, fp16)
