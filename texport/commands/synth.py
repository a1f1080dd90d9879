"""`texport synth` and `texport stylize`: a trained model's images in one forward pass, on any backend."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

import texport.defaults as D
from texport.commands.options import (
    BackendSpec,
    Bits16,
    ColorOctaves,
    DdsFormat,
    DdsMips,
    DdsSrgb,
    Device,
    Fp16,
    Loss,
    Precision,
    Seed,
    SizeLimit,
    Target,
    check_output,
    counter,
    open_backend_noted,
    progress_bar,
    save_numbered,
    target_texture,
)
from texport.errors import TexportError
from texport.models.handle import Model, open_model
from texport.models.loading import check_count, load_generator, plan_stylize, require_stages, sample, stage_sheet
from texport.objectives.objective import ObjectiveSpec, parse_loss
from texport.optimization.gatys import level_budgets
from texport.optimization.refinement import refine as refine_images
from texport.optimization.refinement import refinement_scales, refinement_target
from texport.runtime.sampling import sample_with, stylize_with
from texport.runtime.volumes import BlockComputer
from texport.scale.volumes import VolumeRequest, is_volume_size, parse_origin, parse_volume_size, write_volume
from texport.textures.dds import output_options
from texport.textures.volumes import check_volume_output
from texport.textures.images import load_image, resolve_texture, save_image
from texport.textures.sizes import plan_size


def synth(
    model: str = typer.Argument(..., help="Shipped model name (see 'texport models'), .safetensors, exported .onnx or TensorRT engine."),
    output: Path = typer.Option(..., "-o", "--output", help="Output PNG or DDS (GPU texture); with --count N, numbered NAME-0000.png …; "
                                                          "solid models: VOL.npy (uint8 [D, H, W, 3]), VOL.dds (volume texture) or FOLDER/ (PNG slices along z)."),
    size: str = typer.Option("256", "--size", help="Output size: N or WxH, any size >= 16; solid models: WxHxD."),
    origin: Optional[str] = typer.Option(None, "--origin", help="Solid models: X,Y,Z of the volume's first voxel in the infinite volume (any integers)."),
    count: int = typer.Option(1, "--count", help="Number of textures (image n uses seed + n)."),
    seed: Seed = 0,
    tileable: bool = typer.Option(False, "--tileable", help="Require an output that wraps around (sizes on the model's grid)."),
    snap: bool = typer.Option(False, "--snap", help="With --tileable: round the size to the nearest valid one."),
    device: Device = "auto",
    size_limit: SizeLimit = None,
    bits16: Bits16 = False,
    texture: Target = None,
    stages: bool = typer.Option(False, "--stages", help="ProPO models: also write OUT-stages.png (noise, x1..x5, target per row)."),
    backend: BackendSpec = None,
    fp16: Fp16 = False,
    refine: int = typer.Option(0, "--refine", help="Then the cost of N full-size Gatys evaluations of the --loss objective per image (ProPO: against --texture, coarse-to-fine; texture networks: against their exemplar)."),
    refine_scales: Optional[int] = typer.Option(None, "--refine-scales", help="Refine coarse-to-fine over K scales, from the "
                                                "sample downsampled by 2^(K-1), at about the cost of N evaluations at full size "
                                                f"(default: {D.PROPO_REFINE_SCALES} for ProPO, as the size allows; "
                                                f"{D.TEXNET_REFINE_SCALES} for texture networks)."),
    refine_detail: bool = typer.Option(D.REFINE_DETAIL, "--refine-detail/--no-refine-detail", help="With --refine-scales: "
                                       "add the sample's own finer detail back at each finer scale."),
    loss: Loss = D.LOSS,
    color_octaves: ColorOctaves = 1,
    precision: Precision = D.GATYS_PRECISION,
    dds_format: DdsFormat = None,
    srgb: DdsSrgb = None,
    mips: DdsMips = False,
) -> None:
    """Synthesize textures from a trained model in one forward pass (ProPO: like --texture; solid models: volumes, --size WxHxD)."""
    handle = open_model(model)
    if handle.is_solid or is_volume_size(size) or origin is not None:
        if count != 1 or refine or stages or texture is not None or bits16 or fp16:
            raise TexportError("a solid model's volume takes --size, --origin, --seed, --tileable, --backend (torch, "
                               "onnxruntime, openvino) and the DDS options")
        return synth_volume(handle, output, size, origin, seed, tileable, device, backend, dds_format, srgb, mips)
    check_output(output, (".png", ".dds"))
    dds = output_options(output, dds_format, srgb, mips, bits=16 if bits16 else 8)  # None for a PNG
    check_count(count)
    if refine < 0:
        raise TexportError(f"--refine must be at least 0, got {refine}")
    if refine_scales is not None and refine_scales < 1:
        raise TexportError(f"--refine-scales must be at least 1, got {refine_scales}")
    parse_loss(loss)  # a misspelt --loss fails before the model loads, with or without --refine
    refine_objective = ObjectiveSpec(loss=loss, color_octaves=color_octaves, precision=precision)  # so does --color-octaves
    handle = handle.require_generator()  # resolved once; everything below takes the handle
    plan = plan_size(size, handle.size_multiple, handle.min_side, tileable, snap, size_limit)  # the one size plan
    target = target_texture(handle, texture, texnet_may_take_one=bool(refine),
                             texnet_use="ProPO models, or the target of --refine")
    if stages:
        require_stages(handle)
    if handle.format != "texport" or backend not in (None, "torch") or fp16:
        if stages or refine:
            raise TexportError("--stages and --refine need the PyTorch model (a shipped name or .safetensors) on the torch "
                               "backend: exported graphs and engines run as they are")
        runtime = open_backend_noted(handle, backend, device, fp16)
        start = time.perf_counter()
        images = sample_with(runtime, plan, seed, count, target)
        how = f"from {handle.path.name} on {runtime.describe()} in {time.perf_counter() - start:.2f} s"
        return save_numbered(images, output, bits16, how, dds, tileable)
    loaded = load_generator(handle, device)
    if refine:  # a texture network's file without its exemplar fails here, before any work
        target = refinement_target(loaded, target)
    start = time.perf_counter()
    images = sample(loaded, plan, seed, count, target, stages)
    seconds = time.perf_counter() - start
    if stages:
        save_image(stage_sheet(images, target), output.with_name(f"{output.stem}-stages.png"))
        images = images[-1]
    how = f"from {loaded.name} in {seconds:.2f} s"
    if refine:
        scales = refine_scales or refinement_scales(loaded, images.shape[-1], images.shape[-2], target)
        bar, update = progress_bar(sum(level_budgets(refine, scales)) * images.shape[0],
                                   f"refine {images.shape[-1]}x{images.shape[-2]}" + (f", {scales} scales" if scales > 1 else ""))
        start = time.perf_counter()
        with bar:
            images = refine_images(loaded, images, refine, texture=target, tileable=tileable, device=device, progress=update,
                                   objective=refine_objective, coarse_to_fine=scales,
                                   start_detail=refine_detail)
        how += f", refined by {refine} evaluations in {time.perf_counter() - start:.1f} s"
    save_numbered(images, output, bits16, how, dds, tileable)


def synth_volume(handle: Model, output: Path, size: str, origin: Optional[str], seed: int, tileable: bool, device: str,
                 backend: Optional[str], dds_format: Optional[str], srgb: Optional[bool], mips: bool) -> None:
    """A solid model's window (texport.scale.volumes), every request error before any work."""
    if not handle.is_solid:
        raise TexportError(f"{handle.path.name} is a {handle.kind} model: it makes images (--size N or WxH); "
                           "volumes (--size WxHxD, --origin) come from solid models ('texport train solid')")
    if not is_volume_size(size):
        raise TexportError(f"{handle.path.name} is a solid model: give a volume size WxHxD, got {size!r}")
    request = VolumeRequest(parse_volume_size(size), parse_origin(origin), seed, tileable)
    check_volume_output(output)
    dds = output_options(output, dds_format, srgb, mips)  # None for .npy and folders (DDS options refused there)
    blocks = BlockComputer.open(handle, request.block, backend, device)
    bar, update = progress_bar(1, f"synth {'x'.join(map(str, request.size))}", show_loss=False)
    start = time.perf_counter()
    with bar:
        write_volume(blocks, output, request, dds, counter(update))
    what = f", {dds.describe()}" if dds is not None else ""
    typer.echo(f"wrote {output} ({'x'.join(map(str, request.size))} at {','.join(map(str, request.origin))}{what}) "
               f"from {handle.name} on {blocks.describe()} in {time.perf_counter() - start:.2f} s")


def stylize(
    model: str = typer.Argument(..., help="Style network ('texport train style'): .safetensors, exported .onnx or TensorRT engine."),
    content: str = typer.Argument(..., help="The photograph to restyle (PNG, JPEG, TGA, WebP, BMP), or a shipped texture name."),
    output: Path = typer.Option(..., "-o", "--output", help="Output PNG (written atomically)."),
    size: Optional[str] = typer.Option(None, "--size", help="Output size WxH (or N); the photograph is resized to it (default: its own size)."),
    noise_scale: float = typer.Option(1.0, "--noise-scale", help="Noise amplitude, >= 0: 0 is none, "
                                                                 "1 is as trained (the paper's fig. 5 knob; the shipped model barely responds to it)."),
    seed: Seed = 0,
    backend: BackendSpec = None,
    fp16: Fp16 = False,
    device: Device = "auto",
    size_limit: SizeLimit = None,
    bits16: Bits16 = False,
) -> None:
    """Restyle a photograph with a trained style network in one forward pass (Ulyanov et al. 2016 sec. 3.3)."""
    check_output(output)
    handle = open_model(model).require_stylenet()
    photo = load_image(resolve_texture(content))
    plan = plan_stylize(handle, photo, size, noise_scale, size_limit)  # every request error before the model loads
    runtime = open_backend_noted(handle, backend, device, fp16)
    start = time.perf_counter()
    image = stylize_with(runtime, photo, plan, seed, noise_scale)
    seconds = time.perf_counter() - start
    save_image(image, output, bits=16 if bits16 else 8)
    typer.echo(f"wrote {output} ({plan.width}x{plan.height}) from {handle.path.name} on {runtime.describe()} in {seconds:.2f} s")
