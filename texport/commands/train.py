"""`texport train texnet|propo|style|solid`: each command builds its run spec and hands it to texport.training."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

import texport.defaults as D
import texport.training.propo as propo_training
import texport.training.solid as solid_training
import texport.training.style as style_training
import texport.training.texnet as texnet_training
from texport.commands.options import (
    CheckpointEvery,
    ColorOctaves,
    ColorWeight,
    DescriptorName,
    DescriptorWeights,
    Device,
    Finish,
    Loss,
    Nproc,
    Precision,
    Resume,
    Seed,
    parse_layers,
    progress_bar,
    report_training,
    weights_path,
)
from texport.textures.images import parse_box, resolve_texture

train_app = typer.Typer(help="Train texture models: texture networks (one texture), ProPO (any texture), style "
                             "networks (one style, any photograph) or solid textures (volumes from 2D slices).",
                        no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@train_app.command("texnet")
def train_texnet(
    texture: str = typer.Argument(..., help="Exemplar image, or a shipped texture name."),
    output: Path = typer.Option(..., "-o", "--output", help="Model file to write (.safetensors), e.g. trained/NAME.safetensors."),
    iters: int = typer.Option(D.TEXNET_ITERS, "--iters", help="Training iterations (Adam steps)."),
    batch: int = typer.Option(D.TEXNET_BATCH, "--batch", help="Noise samples per iteration."),
    size: int = typer.Option(D.TEXNET_SIZE, "--size", help="Side of the generated training images (a multiple of 16 for 5 scales)."),
    lr: float = typer.Option(D.TEXNET_LR, "--lr", help="Initial Adam learning rate (x0.7 from half the run, every tenth)."),
    loss: Loss = D.LOSS,
    layers: Optional[str] = typer.Option(None, "--layers", help="Comma-separated taps, or po / texnet."),
    color_weight: ColorWeight = D.COLOR_WEIGHT,
    color_octaves: ColorOctaves = 1,
    spectrum_weight: float = typer.Option(D.SPECTRUM_WEIGHT, "--spectrum-weight", help="Weight of the spectrum constraint (Liu et al. 2016; 0 = off)."),
    scales: int = typer.Option(D.TEXNET_SCALES, "--scales", help="Noise scales K (sizes become multiples of 2**(K-1))."),
    width: int = typer.Option(D.TEXNET_WIDTH, "--width", help="Channels per noise scale (Ulyanov et al. 2016: 8)."),
    norm: str = typer.Option("batch", "--norm", help="batch (ships; exact tiling) or instance (experiment)."),
    seed: Seed = 0,
    device: Device = "auto",
    descriptor: DescriptorName = "auto",
    descriptor_weights: DescriptorWeights = None,
    precision: Precision = D.TRAIN_PRECISION,
    crop: Optional[str] = typer.Option(None, "--crop", help="Train on X,Y,W,H of the exemplar (e.g. to leave out a label)."),
    resume: Resume = False,
    finish: Finish = False,
    checkpoint_every: CheckpointEvery = D.CHECKPOINT_EVERY,
    init: Optional[str] = typer.Option(None, "--init", help="Start from this trained texture network (name or file) instead of random weights."),
    nproc: Nproc = None,
    preview: bool = typer.Option(True, "--preview/--no-preview", help="Also write OUTPUT with .png: exemplar | sample."),
) -> None:
    """Train a texture network (Ulyanov et al. 2016) on one exemplar; Ctrl-C saves, --resume continues."""
    path = resolve_texture(texture)
    box = parse_box(crop) if crop else None
    run = texnet_training.TexnetRun.of(
        path, output, iters=iters, batch=batch, lr=lr, seed=seed, checkpoint_every=checkpoint_every, device=device,
        nproc=nproc, size=size, crop=box, scales=scales, width=width, norm=norm, init=init, loss=loss,
        layers=parse_layers(layers), color_weight=color_weight, color_octaves=color_octaves, spectrum_weight=spectrum_weight, descriptor=descriptor,
        descriptor_weights=weights_path(descriptor_weights), precision=precision, resume=resume,
        finish=finish)
    bar, update = progress_bar(iters, f"train texnet {path.stem}")
    with bar:
        report = texnet_training.train_texnet(run, progress=update)
    if report.rank:  # another process of a torchrun run: rank 0 writes the preview and reports
        raise typer.Exit(130 if report.interrupted else 0)
    if preview:
        texnet_training.write_preview(output, path, box)
    report_training(output, report)


@train_app.command("propo")
def train_propo(
    dataset: Path = typer.Argument(..., help="Folder or zip archive (.zip, .pk3) of texture images."),
    output: Path = typer.Option(..., "-o", "--output", help="Model file to write (.safetensors), e.g. trained/propo.safetensors."),
    iters: int = typer.Option(D.PROPO_ITERS, "--iters", help="Training iterations (the paper: 800K on a GPU)."),
    size: int = typer.Option(D.PROPO_SIZE, "--size", help="Side of the training crops, a multiple of 16 (the paper: 256)."),
    resize: int = typer.Option(D.PROPO_RESIZE, "--resize", help="Images are first scaled so their shortest side is this."),
    lr: float = typer.Option(D.PROPO_LR, "--lr", help="Adam learning rate (betas 0.5, 0.999), linearly to 0 over the second half."),
    batch: int = typer.Option(1, "--batch", help="Targets per iteration (the paper: 1)."),
    loss: Loss = D.LOSS,
    color_weight: float = typer.Option(D.PROPO_COLOR_WEIGHT, "--color-weight", help="Weight of the colour-distribution term (x stage number)."),
    spectrum_weight: float = typer.Option(D.PROPO_SPECTRUM_WEIGHT, "--spectrum-weight", help="Weight of the spectrum constraint (x stage number; 0 = off)."),
    color_input: bool = typer.Option(True, "--color-input/--no-color-input", help="Feed the pixels' colour-Gram gradient to the stages."),
    color_match: bool = typer.Option(True, "--color-match/--no-color-match", help="Set each stage image's colour mean and deviation to the target's."),
    histogram_match: bool = typer.Option(True, "--histogram-match/--no-histogram-match", help="Match the final image's colour histogram along the target's principal axes."),
    noise_amplitude: float = typer.Option(D.PROPO_NOISE_AMPLITUDE, "--noise-amplitude", help="Start image: 0.5 + amplitude x (uniform noise - 0.5)."),
    upsample: str = typer.Option("nearest", "--upsample", help="How the stages go up a level: nearest (+ conv; the paper's), bilinear (+ conv) or shuffle (pixel shuffle)."),
    incremental: bool = typer.Option(False, "--incremental/--no-incremental", help="Grow the training set during the run (experimental)."),
    held_out: float = typer.Option(D.HELD_OUT_FRACTION, "--held-out", help="Fraction of folders kept out of training."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Use at most this many training images (quick runs)."),
    stationarity: float = typer.Option(D.PROPO_STATIONARITY, "--stationarity", help="Leave out images whose halves differ "
                                       "by more than this spectral distance, or by 0.1 in mean colour (decals, doors); 0 keeps all."),
    seed: Seed = 0,
    device: Device = "auto",
    descriptor: DescriptorName = "auto",
    descriptor_weights: DescriptorWeights = None,
    precision: Precision = D.TRAIN_PRECISION,
    resume: Resume = False,
    finish: Finish = False,
    checkpoint_every: CheckpointEvery = D.CHECKPOINT_EVERY,
    nproc: Nproc = None,
    preview: bool = typer.Option(True, "--preview/--no-preview", help="Also write OUTPUT with .png: stages on unseen textures."),
) -> None:
    """Train ProPO (Shi & Qiao 2020) on a set of textures; Ctrl-C saves, --resume continues."""
    run = propo_training.PropoRun.of(
        dataset, output, iters=iters, batch=batch, lr=lr, seed=seed, checkpoint_every=checkpoint_every, device=device,
        nproc=nproc, size=size, resize=resize, held_out_fraction=held_out, limit=limit, incremental=incremental, stationarity=stationarity,
        color_input=color_input, color_match=color_match, histogram_match=histogram_match,
        noise_amplitude=noise_amplitude, upsample=upsample, loss=loss, color_weight=color_weight, spectrum_weight=spectrum_weight,
        descriptor=descriptor, descriptor_weights=weights_path(descriptor_weights), precision=precision, resume=resume,
        finish=finish)
    propo_training.check_propo_run(run)  # before the dataset is decoded
    data = propo_training.open_training_set(run.data)
    bar, update = progress_bar(iters, "train propo")
    with bar:
        report = propo_training.train_propo(run, progress=update, loaded=data)
    if report.rank:  # another process of a torchrun run: rank 0 writes the preview and reports
        raise typer.Exit(130 if report.interrupted else 0)
    if preview:
        propo_training.write_preview(output, dataset, held_out)
    state = f"interrupted after {report.iterations} of {report.planned}" if report.interrupted else f"{report.iterations}"
    typer.echo(f"wrote {output}: {state} iterations in {report.seconds:.0f} s on {len(data)} training images "
               f"({data.other_split} held out; skipped {data.skipped}), loss {report.loss:.4g}, "
               f"per stage {propo_training.describe_stage_losses(report.terms)}")
    if report.interrupted:
        raise typer.Exit(130)


@train_app.command("style")
def train_style(
    style: str = typer.Argument(..., help="Style image (a painting, a texture), or a shipped texture name."),
    content: Path = typer.Option(..., "--content", help="Folder or zip of photographs (the paper: 16 are enough)."),
    output: Path = typer.Option(..., "-o", "--output", help="Model file to write (.safetensors), e.g. trained/NAME.safetensors."),
    alpha: float = typer.Option(D.STYLE_ALPHA, "--alpha", help="Content weight (eq. 6 of Ulyanov et al. 2016, relative to the style term)."),
    iters: int = typer.Option(D.STYLE_ITERS, "--iters", help="Training iterations (Adam steps)."),
    batch: int = typer.Option(D.TEXNET_BATCH, "--batch", help="Photograph crops per iteration."),
    size: int = typer.Option(D.TEXNET_SIZE, "--size", help="Side of the training crops (a multiple of 16)."),
    resize: int = typer.Option(D.STYLE_CONTENT_RESIZE, "--resize", help="Photographs are first scaled so their shorter side is this."),
    lr: float = typer.Option(D.TEXNET_LR, "--lr", help="Initial Adam learning rate (x0.7 from half the run, every tenth)."),
    loss: Loss = D.LOSS,
    color_weight: ColorWeight = D.COLOR_WEIGHT,
    color_octaves: ColorOctaves = 1,
    spectrum_weight: float = typer.Option(D.STYLE_SPECTRUM_WEIGHT, "--spectrum-weight", help="Weight of the spectrum constraint (0 = off)."),
    width: int = typer.Option(D.TEXNET_WIDTH, "--width", help="Channels per noise scale (Ulyanov et al. 2016: 8)."),
    norm: str = typer.Option("instance", "--norm", help="instance (per photograph; ships) or batch (as texture networks)."),
    seed: Seed = 0,
    device: Device = "auto",
    descriptor: DescriptorName = "auto",
    descriptor_weights: DescriptorWeights = None,
    precision: Precision = D.TRAIN_PRECISION,
    resume: Resume = False,
    finish: Finish = False,
    checkpoint_every: CheckpointEvery = D.CHECKPOINT_EVERY,
    preview: bool = typer.Option(True, "--preview/--no-preview", help="Also write OUTPUT with .png: photograph | style | result."),
) -> None:
    """Train a style network (Ulyanov et al. 2016 sec. 3.3) on one style image; Ctrl-C saves, --resume continues."""
    path = resolve_texture(style)
    run = style_training.StyleRun.of(
        path, content, output, iters=iters, batch=batch, lr=lr, seed=seed, checkpoint_every=checkpoint_every,
        device=device, size=size, resize=resize, width=width, norm=norm, alpha=alpha, loss=loss,
        color_weight=color_weight, color_octaves=color_octaves, spectrum_weight=spectrum_weight, descriptor=descriptor,
        descriptor_weights=weights_path(descriptor_weights), precision=precision, resume=resume,
        finish=finish)
    bar, update = progress_bar(iters, f"train style {path.stem}")
    with bar:
        report = style_training.train_style(run, progress=update)
    if preview and not report.interrupted:
        style_training.write_preview(output, content)
    report_training(output, report)


@train_app.command("solid")
def train_solid(
    texture: str = typer.Argument(..., help="Exemplar for slices normal to x (rows along z, columns along y); also y and z by default."),
    output: Path = typer.Option(..., "-o", "--output", help="Model file to write (.safetensors), e.g. trained/NAME.safetensors."),
    texture_y: Optional[str] = typer.Option(None, "--y", help="Exemplar for slices normal to y (rows along z, columns along x)."),
    texture_z: Optional[str] = typer.Option(None, "--z", help="Exemplar for slices normal to z (rows along y, columns along x)."),
    iters: int = typer.Option(D.SOLID_ITERS, "--iters", help="Training iterations (Adam steps, one random direction each)."),
    batch: int = typer.Option(D.SOLID_BATCH, "--batch", help="Slices per iteration."),
    size: int = typer.Option(D.SOLID_SIZE, "--size", help="Side of the training slices (at least 16)."),
    lr: float = typer.Option(D.SOLID_LR, "--lr", help="Initial Adam learning rate (x0.7 from half the run, every tenth)."),
    loss: Loss = D.LOSS,
    color_weight: ColorWeight = D.COLOR_WEIGHT,
    color_octaves: ColorOctaves = 1,
    spectrum_weight: float = typer.Option(D.SPECTRUM_WEIGHT, "--spectrum-weight", help="Weight of the spectrum constraint (0 = off)."),
    scales: int = typer.Option(D.SOLID_SCALES, "--scales", help="Noise scales K."),
    width: int = typer.Option(D.SOLID_WIDTH, "--width", help="Channels per noise scale (Gutierrez et al. 2020: 4)."),
    seed: Seed = 0,
    device: Device = "auto",
    descriptor: DescriptorName = "auto",
    descriptor_weights: DescriptorWeights = None,
    precision: Precision = D.TRAIN_PRECISION,
    resume: Resume = False,
    finish: Finish = False,
    checkpoint_every: CheckpointEvery = D.CHECKPOINT_EVERY,
    preview: bool = typer.Option(True, "--preview/--no-preview", help="Also write OUTPUT with .png: exemplars | slices | a carved cube."),
) -> None:
    """Train a solid texture network (Gutierrez et al. 2020) on 2D slices; Ctrl-C saves, --resume continues.

    EXEMPLAR is seen on slices normal to x, v[:, :, x] (rows along z, columns along y); --y on slices
    normal to y, v[:, y, :] (rows along z, columns along x); --z on slices normal to z, v\\[z, :, :] (rows along
    y, columns along x), as a folder output's PNG slices. Rows grow downwards, columns rightwards.
    """
    path = resolve_texture(texture)
    run = solid_training.SolidRun.of(
        path, output, texture_y=resolve_texture(texture_y) if texture_y else None,
        texture_z=resolve_texture(texture_z) if texture_z else None, iters=iters, batch=batch, lr=lr, seed=seed,
        checkpoint_every=checkpoint_every, device=device, size=size, scales=scales, width=width, loss=loss,
        color_weight=color_weight, color_octaves=color_octaves, spectrum_weight=spectrum_weight, descriptor=descriptor,
        descriptor_weights=weights_path(descriptor_weights), precision=precision, resume=resume, finish=finish)
    bar, update = progress_bar(iters, f"train solid {path.stem}")
    with bar:
        report = solid_training.train_solid(run, progress=update)
    if preview and report.iterations:
        solid_training.write_preview(output)
    report_training(output, report)
