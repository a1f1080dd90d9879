"""`texport tile` and `texport batch`: large textures in bounded memory and batches of jobs, here or on Ray."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

import texport.defaults as D
from texport.commands.options import (
    BackendSpec,
    Bits16,
    DdsFormat,
    DdsMips,
    DdsSrgb,
    Device,
    Fp16,
    RayAddress,
    RayThreads,
    Seed,
    Target,
    check_output,
    counter,
    describe_ray,
    open_backend_noted,
    progress_bar,
    target_texture,
)
from texport.models.handle import open_model
from texport.scale.batch import load_jobs, run_batch
from texport.scale.cluster import RayWorkers, batch_on_ray, tile_on_ray
from texport.scale.connection import import_ray
from texport.scale.tiling import TileRequest, tile_image
from texport.textures.dds import check_encoder, output_options
from texport.textures.sizes import check_size, parse_size


def tile(
    model: str = typer.Argument(..., help="Shipped model name, .safetensors, exported .onnx, or TensorRT engine."),
    output: Path = typer.Option(..., "-o", "--output", help="Output PNG or DDS, written band by band."),
    size: str = typer.Option(..., "--size", help="Output size WxH (or N), e.g. 16384x16384."),
    tile_size: int = typer.Option(D.TILE, "--tile", help="Tile side, a multiple of the model's grid (ProPO: at least 128)."),
    seed: Seed = 0,
    tileable: bool = typer.Option(False, "--tileable", help="Wrap noise and seams around: the result tiles seamlessly."),
    texture: Target = None,
    backend: BackendSpec = None,
    fp16: Fp16 = False,
    device: Device = "auto",
    size_limit: Optional[int] = typer.Option(D.TILE_SIZE_LIMIT, "--size-limit", help="Largest accepted side."),
    bits16: Bits16 = False,
    ray: RayAddress = None,
    ray_threads: RayThreads = 1,
    dds_format: DdsFormat = None,
    srgb: DdsSrgb = None,
    mips: DdsMips = False,
) -> None:
    """Large textures in tiles with bounded memory (texture networks: tiles join exactly); --ray: bands on a cluster."""
    check_output(output, (".png", ".dds"))
    dds = output_options(output, dds_format, srgb, mips, 16 if bits16 else 8)
    if dds is not None:
        check_encoder(dds.format)
    width, height = check_size(parse_size(size), size_limit)
    if ray is not None:
        import_ray()  # no Ray: its one line before any work
    handle = open_model(model).require_generator()
    target = target_texture(handle, texture)
    # bounded memory over speed
    local = None if ray is not None else open_backend_noted(handle, backend, device, fp16, low_memory=True)
    request = TileRequest(width, height, tile_size, seed, tileable, 16 if bits16 else 8, dds)
    bar, update = progress_bar(1, f"tile {width}x{height}", show_loss=False)
    start = time.perf_counter()
    with bar:
        if local is not None:
            summary = tile_image(local, output, request, target, progress=counter(update))
        else:
            summary = tile_on_ray(handle, output, request, RayWorkers(ray, ray_threads, device=device), target, backend,
                                  fp16, progress=counter(update))
    seconds = time.perf_counter() - start
    where = local.describe() if local is not None else describe_ray(summary)
    what = f", {dds.describe()}" if dds is not None else ""
    typer.echo(f"wrote {output} ({width}x{height}{what}, {summary['tiles']} tiles of {tile_size} + {summary['overlap']} px "
               f"on each side) on {where} in {seconds:.1f} s")


def batch(
    jobs: Path = typer.Argument(..., help="Job file, .csv with a header or .json (a list of objects): model, texture "
                                          "(ProPO only), size, seed, output, and optionally tileable; paths relative to it."),
    backend: BackendSpec = None,
    fp16: Fp16 = False,
    device: Device = "auto",
    bits16: Bits16 = False,
    ray: RayAddress = None,
    ray_threads: RayThreads = 1,
) -> None:
    """One PNG per job; a rerun skips outputs already made by the same job (recorded in each PNG)."""
    if ray is not None:
        import_ray()
    loaded = load_jobs(jobs, backend, device, fp16, 16 if bits16 else 8)  # the whole file checked first
    bar, update = progress_bar(1, f"batch of {len(loaded)}", show_loss=False)
    start = time.perf_counter()
    with bar:
        if ray is None:
            summary = run_batch(loaded, device=device, progress=counter(update))
        else:
            summary = batch_on_ray(loaded, RayWorkers(ray, ray_threads, device=device), progress=counter(update))
    where = f" on {describe_ray(summary)}" if "workers" in summary else ""
    skipped = f", skipped {summary['skipped']} already made" if summary["skipped"] else ""
    typer.echo(f"wrote {summary['written']} of {summary['jobs']} outputs{skipped}{where} in {time.perf_counter() - start:.1f} s")
