"""`texport export OUT`: a shipped or trained model -> a deployable file; the format follows OUT.

`.onnx` writes the model's graph (and, for ProPO, `NAME.encode.onnx` and `NAME.synth.onnx` beside
it); every ONNX file is compared with the fp32 PyTorch model through onnxruntime on the CPU before
export returns (max abs difference on the 0-1 image, reported). `.engine` / `.plan` builds a
TensorRT engine (tensorrt-rtx or standard tensorrt) from the main graph's ONNX with an
optimization profile (a style network's content and noise share the image sides), and writes its
JSON sidecar.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import texport.defaults as defaults
from texport.errors import TexportError
from texport.export.graphs import GraphSpec, propo_specs, solid_specs, stylenet_specs, texnet_specs
from texport.export.onnx import DEFAULT_OPSET, export_onnx
from texport.export.tensorrt import InputProfile, build_engine, import_flavour
from texport.models.formats import export_format
from texport.models.handle import PROPO, SOLID, STYLENET, Model, open_model
from texport.models.loading import load_propo, load_solid, load_stylenet, load_texnet

PARITY = {"fp32": 1e-4, "fp16": 1e-2}  # the largest max abs difference on the 0-1 image an export may show
PARITY_FP32 = PARITY["fp32"]
DEFAULT_SIZES = defaults.ENGINE_SIZES
DEFAULT_TEXTURE_SIZES = defaults.ENGINE_TEXTURE_SIZES


@dataclass
class Exported:
    path: Path
    graph: str
    max_abs_diff: float
    sidecar: dict | None = None


def output_format(path: Path) -> str:
    """The export format OUT's suffix names ("onnx" or "engine", texport.models.formats.FORMATS)."""
    return export_format(path).name


def specs_for(model: Model, precision: str = "fp32", size: int = 64, split: bool = True) -> list[GraphSpec]:
    """The graphs a model exports to (the first is the main one, named like OUT; split: ProPO's pair too)."""
    if model.kind == PROPO:
        return propo_specs(load_propo(model, "cpu"), size=size, texture_size=size, precision=precision, split=split)
    if model.kind == STYLENET:
        return stylenet_specs(load_stylenet(model, "cpu"), size=size, precision=precision)
    if model.kind == SOLID:
        if precision != "fp32":
            raise TexportError("solid networks export in fp32")
        return solid_specs(load_solid(model, "cpu"), size=min(size, 4 * model.size_multiple))
    return texnet_specs(load_texnet(model, "cpu"), size=size, precision=precision)


@dataclass(frozen=True)
class EngineOptions:
    """A TensorRT engine's build: its optimization profile (batch 1..batch; image sides min, opt, max,
    min None: the model's smallest; ProPO's texture sides), the flavour, and the builder's settings."""
    batch: int = 1
    sizes: tuple[int | None, int, int] = DEFAULT_SIZES
    texture_sizes: tuple[int, int, int] = DEFAULT_TEXTURE_SIZES
    flavour: str | None = None  # tensorrt or tensorrt-rtx (default: tensorrt if installed, else tensorrt-rtx)
    workspace_mb: int | None = None
    compute_capabilities: list[str] | None = None  # tensorrt-rtx targets, e.g. ["8.6", "8.9"]
    timing_cache: str | os.PathLike | None = None


def export(output: str | os.PathLike, model: str | os.PathLike | Model | None = None, fp16: bool = False,
           opset: int = DEFAULT_OPSET, check: bool = True, **engine) -> list[Exported]:
    """Export `model` (default: the shipped model named by OUT's stem) to OUT (and its companions), in
    the format OUT's suffix names (texport.models.formats.FORMATS). engine: EngineOptions' fields, for
    .engine / .plan outputs (batch, sizes, texture_sizes, flavour, workspace_mb, compute_capabilities,
    timing_cache)."""
    options = EngineOptions(**engine)
    batch, sizes, texture_sizes, flavour = options.batch, options.sizes, options.texture_sizes, options.flavour
    out = Path(output)
    fmt = output_format(out)
    model = open_model(model if model is not None else out.stem)  # one-line errors before any work
    if model.format != "texport":
        raise TexportError(f"export starts from a texport model (a shipped name or .safetensors), not a {model.format} file")
    if batch < 1:
        raise TexportError(f"the engine's largest batch must be at least 1, got {batch}")
    if model.is_solid and sizes == DEFAULT_SIZES:  # cubes: the image sides would be volumes of gigavoxels
        sizes = defaults.SOLID_ENGINE_SIZES
    lo, opt, hi = sizes
    sizes = (model.min_side if lo is None else lo, opt, hi)  # None: the model's smallest side
    _check_sides("image", sizes, model.size_multiple, model.min_side)  # the user's mistake in any format
    if model.kind == PROPO:
        _check_sides("texture", texture_sizes, 1, model.min_side)
    if fmt == "engine":
        import_flavour(flavour)  # fail before the export when no TensorRT is installed
    precision = "fp16" if fp16 else "fp32"
    specs = specs_for(model, precision, split=fmt == "onnx")  # an engine is built from the main graph only
    if fmt == "onnx":
        done = []
        for i, spec in enumerate(specs):
            path = out if i == 0 else out.with_name(f"{out.stem}.{spec.name.rsplit('.', 1)[1]}{out.suffix}")
            export_onnx(spec, path, opset)
            done.append(Exported(path, spec.name, onnx_parity(spec, path) if check else float("nan")))
        return done
    spec = specs[0]
    profiles = engine_profiles(spec, batch, sizes, texture_sizes)

    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise TexportError(f"output folder does not exist: {folder}")
    with tempfile.TemporaryDirectory(prefix="texport-export-") as tmp:
        onnx_path = export_onnx(spec, Path(tmp) / f"{out.stem}.onnx", opset)
        diff = onnx_parity(spec, onnx_path) if check else float("nan")
        sidecar = build_engine(onnx_path, out, profiles, flavour, precision, options.workspace_mb,
                               options.compute_capabilities, options.timing_cache, metadata={"model": spec.metadata})
    return [Exported(out, spec.name, diff, sidecar)]


def engine_profiles(spec: GraphSpec, batch: int, sizes, texture_sizes) -> list:
    """The optimization profile: batch 1..batch (opt: batch), image and texture sides min/opt/max
    (checked and resolved by export())."""

    lo, opt, hi = sizes
    profiles = []
    for name, tensor in zip(spec.input_names, spec.inputs):
        channels = tensor.shape[1]
        if tensor.dim() == 5:  # a solid network's noise: cubes min^3 .. max^3
            profiles.append(InputProfile(name, (1, channels, lo, lo, lo), (batch, channels, opt, opt, opt),
                                         (batch, channels, hi, hi, hi)))
        elif name == "texture":
            t_lo, t_opt, t_hi = texture_sizes
            profiles.append(InputProfile(name, (1, channels, t_lo, t_lo), (batch, channels, t_opt, t_opt),
                                         (batch, channels, t_hi, t_hi)))
        else:
            profiles.append(InputProfile(name, (1, channels, lo, lo), (batch, channels, opt, opt),
                                         (batch, channels, hi, hi)))
    return profiles


def _check_sides(what: str, sides, multiple: int, smallest: int) -> None:
    lo, opt, hi = sides
    if not smallest <= lo <= opt <= hi:
        raise TexportError(f"{what} sizes must satisfy {smallest} <= min <= opt <= max, got {lo}, {opt}, {hi}")
    bad = [s for s in sides if s % multiple]
    if bad:
        raise TexportError(f"{what} sizes must be multiples of {multiple}, got {', '.join(map(str, bad))}")


def onnx_parity(spec: GraphSpec, path: Path, inputs: tuple[torch.Tensor, ...] | None = None) -> float:
    """Max abs difference between onnxruntime (CPU) and the fp32 PyTorch graph for `inputs`.

    Outputs larger than 1 (the encode graph's Gram matrices) count relative to their largest
    magnitude, so the number reads like an image's 0-1 difference for every graph.
    """

    inputs = inputs if inputs is not None else spec.inputs
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {name: t.detach().cpu().numpy() for name, t in zip(spec.input_names, inputs)}
    got = session.run(None, feed)
    with torch.no_grad():
        want = (spec.reference or spec.module)(*inputs)
    want = want if isinstance(want, tuple) else (want,)
    diffs = []
    for g, w in zip(got, want):
        w = w.detach().cpu().numpy()
        diffs.append(float(np.abs(g - w).max()) / max(1.0, float(np.abs(w).max())))
    return max(diffs)
