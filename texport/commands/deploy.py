"""`texport export` and `texport bench`: a model as ONNX graphs or TensorRT engines, and how fast it runs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

import texport.defaults as D
from texport.commands.options import (
    Device,
    Fp16,
    progress_bar,
)
from texport.errors import TexportError
from texport.export.exporter import export
from texport.files import write_bytes_atomic
from texport.runtime.bench import as_json, bench, table
from texport.textures.images import load_image, resolve_texture


def export_model(
    output: Path = typer.Argument(..., help="File to write; the format follows the extension: .onnx, or .engine / .plan (TensorRT)."),
    model: Optional[str] = typer.Option(None, "--model", help="Shipped model name or .safetensors path (default: OUTPUT's stem, e.g. propo.onnx -> propo)."),
    fp16: Fp16 = False,
    batch: int = typer.Option(1, "--batch", help="Engines: largest batch of the optimization profile (also its opt)."),
    min_size: Optional[int] = typer.Option(None, "--min-size", help="Engines: smallest image side (default: the model's smallest)."),
    opt_size: int = typer.Option(D.ENGINE_SIZES[1], "--opt-size", help="Engines: the image side TensorRT tunes for."),
    max_size: int = typer.Option(D.ENGINE_SIZES[2], "--max-size", help="Engines: largest image side of the profile."),
    texture_sizes: str = typer.Option(",".join(map(str, D.ENGINE_TEXTURE_SIZES)), "--texture-sizes", help="ProPO engines: min,opt,max side of the texture input."),
    opset: int = typer.Option(D.OPSET, "--opset", help="ONNX opset."),
    trt: Optional[str] = typer.Option(None, "--trt", help="Engines: tensorrt or tensorrt-rtx (default: tensorrt if installed, else tensorrt-rtx)."),
    compute_capability: Optional[str] = typer.Option(None, "--compute-capability", help="tensorrt-rtx engines: target GPUs, e.g. 8.6,8.9 (default: 8.0, 8.6, 8.9, 12.x)."),
    workspace: Optional[int] = typer.Option(None, "--workspace", help="Engines: builder workspace limit in MiB (default: none; CPU-only builds fail with one)."),
    timing_cache: Optional[Path] = typer.Option(None, "--timing-cache", help="Engines: timing cache file to read and update."),
    check: bool = typer.Option(True, "--check/--no-check", help="Compare every ONNX graph with PyTorch through onnxruntime."),
) -> None:
    """Export a model for deployment (ProPO .onnx also writes NAME.encode.onnx and NAME.synth.onnx beside OUTPUT)."""
    try:
        textures = tuple(int(v) for v in texture_sizes.split(","))
    except ValueError:
        textures = ()
    if len(textures) != 3:
        raise TexportError(f"--texture-sizes must be three integers MIN,OPT,MAX, got {texture_sizes!r}")
    targets = [c.strip() for c in compute_capability.split(",")] if compute_capability else None
    start = time.perf_counter()
    for item in export(output, model, fp16=fp16, opset=opset, check=check, batch=batch, sizes=(min_size, opt_size, max_size),
                       texture_sizes=textures, flavour=trt, workspace_mb=workspace, compute_capabilities=targets,
                       timing_cache=timing_cache):
        size = item.path.stat().st_size / 1e6
        parity = f", ONNX vs torch max abs diff {item.max_abs_diff:.2g}" if check else ""
        engine = f", {item.sidecar['flavour']} {item.sidecar['flavour_version']} {item.sidecar['precision']}, built in " \
                 f"{item.sidecar['build_seconds']:.1f} s, sidecar {item.path.name}.json" if item.sidecar else ""
        typer.echo(f"wrote {item.path} ({item.graph}, {size:.1f} MB{parity}{engine})")
    typer.echo(f"done in {time.perf_counter() - start:.1f} s")


def bench_command(
    model: str = typer.Argument(..., help="Shipped model name, .safetensors, exported .onnx or TensorRT engine."),
    backend: str = typer.Option("all", "--backend", help="all (every backend here that runs MODEL's format), or a list: torch,torch:channels_last+compile,onnxruntime,openvino,openvino:bf16,tensorrt."),
    sizes: str = typer.Option(",".join(map(str, D.BENCH_SIZES)), "--sizes", help="Square image sides."),
    batch: str = typer.Option(",".join(map(str, D.BENCH_BATCHES)), "--batch", help="Batch sizes."),
    warmup: int = typer.Option(D.BENCH_WARMUP, "--warmup", help="Untimed runs per configuration."),
    runs: int = typer.Option(D.BENCH_RUNS, "--runs", help="Timed runs per configuration."),
    fp16: Fp16 = False,
    device: Device = "auto",
    texture: Optional[str] = typer.Option(None, "--texture", help="ProPO: the target texture (default: the shipped pebbles)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the results as JSON (for pipelines)."),
) -> None:
    """Latency, images/s, megapixels/s, GFLOP/s and peak memory per backend, size and batch."""
    def ints(text: str, what: str) -> list[int]:
        try:
            values = [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            values = []
        if not values or min(values) < 1:
            raise TexportError(f"{what} must be a comma-separated list of positive integers, got {text!r}")
        return values

    side_list, batch_list = ints(sizes, "--sizes"), ints(batch, "--batch")
    if json_out is not None and not (json_out.parent if str(json_out.parent) else Path(".")).is_dir():
        raise TexportError(f"output folder does not exist: {json_out.parent}")
    target = None
    if texture is not None:
        target = load_image(resolve_texture(texture))
    bar, update = progress_bar(1, "bench", show_loss=False)
    done = [0]

    def advance(row) -> None:
        done[0] += 1
        update(done[0], total=len(backend.split(",")) * len(side_list) * len(batch_list) if backend != "all" else None)

    with bar:
        rows = bench(model, backend.split(","), side_list, batch_list, target, advance, warmup=warmup, runs=runs, fp16=fp16,
                     device=device)
    typer.echo(table(rows))
    if json_out is not None:
        write_bytes_atomic(json_out, (json.dumps(as_json(rows, model), indent=1) + "\n").encode())
        typer.echo(f"wrote {json_out}")
