"""The `texport` command: a thin typer layer over the Python API.

User errors (TexportError, bad options) print one line on stderr and exit with 2; Ctrl-C exits 130.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import __version__
from . import defaults as D
from .errors import TexportError

app = typer.Typer(
    name="texport",
    help="Neural texture synthesis that ships: Gatys optimization, texture networks, ProPO; ONNX and TensorRT export.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)


# Options shared by several commands: one name, one meaning, one help text.
Device = Annotated[str, typer.Option("--device", help="cpu, cuda or auto.")]
DescriptorName = Annotated[str, typer.Option("--descriptor", help="auto, vgg19, vgg16-hed or random (tests only).")]
DescriptorWeights = Annotated[Optional[Path], typer.Option("--descriptor-weights", help="Explicit descriptor weights file.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives the same result (image n of a batch uses seed + n).")]
Backend = Annotated[Optional[str], typer.Option(
    "--backend", help="torch, onnxruntime, openvino, tensorrt (an .engine) or auto (the fastest here); default: torch for "
                      "a texport model, onnxruntime for an .onnx, tensorrt for an engine; options as NAME:OPT+OPT, "
                      "e.g. torch:channels_last, openvino:bf16.")]
Fp16 = Annotated[bool, typer.Option("--fp16", help="The fp16 graph (Gram matrices and other sensitive parts stay fp32).")]
SizeLimit = Annotated[Optional[int], typer.Option("--size-limit", help=f"Largest accepted side (default {D.SIZE_LIMIT}, or TEXPORT_MAX_SIZE).")]
Bits16 = Annotated[bool, typer.Option("--16bit", help="Write 16-bit PNGs.")]
Target = Annotated[Optional[str], typer.Option("--texture", help="ProPO models: the target texture (any image, seen in training or not).")]
ColorWeight = Annotated[float, typer.Option("--color-weight", help="Weight of the colour-distribution term.")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue OUTPUT from its last checkpoint (same settings).")]
Finish = Annotated[bool, typer.Option("--finish", help="With --resume: end the stopped run where it is (a finished model).")]
CheckpointEvery = Annotated[int, typer.Option("--checkpoint-every", help="Iterations between checkpoints.")]
Nproc = Annotated[Optional[int], typer.Option(
    "--nproc", help="Train on N processes (DistributedDataParallel; gloo on CPU, NCCL on GPUs, one GPU each); the batch "
                    "is split between them, the result is one process's. Default 1, or torchrun's number.")]
DdsFormat = Annotated[Optional[str], typer.Option("--format", help="DDS outputs: bc7 (the default), bc1, bc3 or rgba8 (uncompressed).")]
DdsSrgb = Annotated[Optional[bool], typer.Option(
    "--srgb/--linear", help="DDS outputs: an sRGB DXGI format, mips averaged in linear light (the default), or a "
                            "linear (UNORM) one, mips averaged on the stored values.")]
DdsMips = Annotated[bool, typer.Option("--mips", help="DDS outputs: the full mip chain down to 1x1 (tent filter; it wraps "
                                                      "around with --tileable).")]


def _descriptor_weights(path: Optional[Path]) -> Optional[str]:
    return str(path) if path else None


def _progress(total: int, label: str, show_loss: bool = True):
    """A rich progress bar on stderr (with the loss, for optimizations); returns (context manager, callback).

    The bar appears at the first step, so an error raised while the work is being set up (a bad
    argument, a missing descriptor file) stays the one line on stderr. update(step, loss, total)
    may also set the total once it is known.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    columns += [TextColumn("loss {task.fields[loss]}")] if show_loss else []
    bar = Progress(*columns, TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True), transient=False)
    task = bar.add_task(label, total=total, loss="-")

    def update(step: int, loss: float | None = None, total: int | None = None) -> None:
        if not bar.live.is_started:
            bar.start()
        if total is not None:
            bar.update(task, total=total)
        bar.update(task, completed=step, loss="-" if loss is None else f"{loss:.4g}")

    @contextlib.contextmanager
    def shown():
        try:
            yield
        except BaseException:  # an error or interrupt: erase the bar so its one line stands alone
            if bar.live.is_started:
                bar.live.transient = True
                bar.stop()
            raise
        if bar.live.is_started:
            bar.stop()

    return shown(), update


def _check_output(path: Path, suffixes: tuple[str, ...] = (".png",)) -> None:
    """Fail before the work starts, not after it, when the output cannot be written."""
    if path.suffix.lower() not in suffixes:
        raise TexportError(f"output must be a {' or '.join(suffixes)} file, got {path.name}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise TexportError(f"output folder does not exist: {parent}")
    if path.is_dir():
        raise TexportError(f"output is a folder: {path}")


def _layers(text: Optional[str]) -> Optional[tuple[str, ...]]:
    if not text:
        return None
    from . import losses

    presets = {"po": losses.PO_LAYERS, "texnet": losses.TEXNET_LAYERS, "pyramid": losses.PYRAMID_LAYERS}
    return presets.get(text.lower()) or tuple(t.strip() for t in text.split(",") if t.strip())


@app.command()
def gatys(
    texture: str = typer.Argument(..., help="Exemplar image (PNG, JPEG, TGA, WebP, BMP) or a shipped texture name."),
    output: Path = typer.Option(..., "-o", "--output", help="Output PNG (written atomically)."),
    size: Optional[str] = typer.Option(None, "--size", help="Output size: N or WxH, independent of the exemplar's "
                                                           "(default 256; with --content, the photograph's)."),
    iters: int = typer.Option(D.GATYS_ITERS, "--iters", help="Loss/gradient evaluations (the optimization budget)."),
    content: Optional[Path] = typer.Option(None, "--content", help="Style transfer: render this photograph in the style "
                                                                  "of TEXTURE (Gatys et al. 2016), starting from it."),
    alpha: float = typer.Option(D.STYLE_ALPHA, "--alpha", help="With --content: the content term's weight (eq. 6 of "
                                                               "Ulyanov et al. 2016, relative to the style term)."),
    optimizer: str = typer.Option(D.GATYS_OPTIMIZER, "--optimizer", help="lbfgs (L-BFGS-B, bounded) or adam (projected)."),
    loss: str = typer.Option(D.LOSS, "--loss", help="gram+color (default), gram, sw+color or sw."),
    layers: Optional[str] = typer.Option(None, "--layers", help="Comma-separated taps, or po / texnet / pyramid."),
    layer_weights: str = typer.Option("normalized", "--layer-weights", help="normalized (1/||G_target||^2) or uniform."),
    color_weight: ColorWeight = D.COLOR_WEIGHT,
    spectrum_weight: float = typer.Option(D.SPECTRUM_WEIGHT, "--spectrum-weight", help="Weight of the spectrum constraint (Liu et al. 2016; 0 = off)."),
    pyramid: int = typer.Option(1, "--pyramid", help="Gaussian-pyramid octaves (Snelgrove 2017); 1 = single scale."),
    tileable: bool = typer.Option(False, "--tileable", help="Circular padding: the output wraps around seamlessly."),
    seed: Seed = 0,
    device: Device = "auto",
    descriptor: DescriptorName = "auto",
    descriptor_weights: DescriptorWeights = None,
    pooling: str = typer.Option("avg", "--pooling", help="Descriptor pooling: avg (default) or max."),
    lr: float = typer.Option(D.GATYS_LR, "--lr", help="Adam learning rate (pixels in [0, 1])."),
    size_limit: SizeLimit = None,
    bits16: Bits16 = False,
    compare: Optional[Path] = typer.Option(None, "--compare", help="Also write exemplar | result side by side."),
    init: Optional[str] = typer.Option(None, "--init", help="Start from this image file, or a sample (--seed) of this model, instead of noise."),
    coarse_to_fine: int = typer.Option(1, "--coarse-to-fine", help="Solve at 1/2^(K-1) of the size first, then each finer scale (same total cost)."),
) -> None:
    """Synthesize a texture by optimization (Gatys et al. 2015), the slow exact fallback; with --content, style transfer."""
    if content is not None:
        clashes = [name for name, given in (("--tileable", tileable), ("--pyramid", pyramid > 1), ("--init", init),
                                            ("--coarse-to-fine", coarse_to_fine > 1), ("--layers", layers),
                                            ("--loss", loss != D.LOSS), ("--optimizer", optimizer != D.GATYS_OPTIMIZER))
                   if given]
        if clashes:
            raise TexportError(f"style transfer (--content) starts from the photograph with the style networks' objective: "
                               f"drop {', '.join(clashes)}")
        return _gatys_style(texture, content, output, size, iters, alpha, color_weight, spectrum_weight, device,
                            descriptor, descriptor_weights, size_limit, bits16, compare)
    size = size or "256"
    from .devices import resolve_device
    from .gatys import check_request, level_budgets, synthesize
    from .images import load_image, resolve_texture, save_image, side_by_side
    from .losses import color_distance
    from .objective import build_objective

    _check_output(output)
    if compare is not None:
        _check_output(compare)
    width, height = check_request(size, iters, optimizer, coarse_to_fine, init is not None, size_limit)
    exemplar = load_image(resolve_texture(texture))
    dev = resolve_device(device)
    objective = build_objective(  # validates loss, layers and descriptor before the progress bar starts
        exemplar.to(dev), loss, _layers(layers), layer_weights, pyramid, color_weight, descriptor,
        _descriptor_weights(descriptor_weights), tileable=tileable, device=dev, pooling=pooling,
        spectrum_weight=spectrum_weight,
    )
    if pyramid > 1:
        objective.check_octaves((height, width), "output")
    start = None
    if init is not None:
        from .models import start_image

        start = start_image(init, exemplar, width, height, seed=seed, device=dev)
    bar, update = _progress(sum(level_budgets(iters, coarse_to_fine)), f"gatys {width}x{height}")
    with bar:
        result = synthesize(exemplar, (width, height), iters, optimizer, seed=seed, device=dev, lr=lr,
                            size_limit=size_limit, objective=objective, progress=update, init=start,
                            coarse_to_fine=coarse_to_fine)
    save_image(result.image, output, bits=16 if bits16 else 8)
    if compare is not None:
        save_image(side_by_side([exemplar, result.image]), compare)
    terms = ", ".join(f"{k} {v:.4g}" for k, v in result.terms.items() if k != "total")
    dist = float(color_distance(result.image, exemplar))
    typer.echo(
        f"wrote {output} ({width}x{height}) in {result.seconds:.1f} s, {result.evaluations} evaluations: "
        f"loss {result.loss:.4g} ({terms}), colour distance {dist:.4f}, descriptor {result.descriptor[:28]}"
    )


def _gatys_style(style: str, content: Path, output: Path, size: Optional[str], iters: int, alpha: float,
                 color_weight: float, spectrum_weight: float, device: str, descriptor: str,
                 descriptor_weights: Optional[Path], size_limit: Optional[int], bits16: bool, compare: Optional[Path]) -> None:
    """`gatys STYLE --content PHOTO`: the optimization reference of the style networks (same objective)."""
    from .devices import resolve_device
    from .gatys import check_request, transfer_style
    from .images import load_image, resolve_texture, save_image, side_by_side
    from .objective import build_style_objective

    _check_output(output)
    if compare is not None:
        _check_output(compare)
    photo = load_image(content)
    width, height = check_request(size or (photo.shape[-1], photo.shape[-2]), iters, size_limit=size_limit, has_start=True)
    style_image = load_image(resolve_texture(style))
    dev = resolve_device(device)
    objective = build_style_objective(style_image.to(dev), alpha, color_weight=color_weight, spectrum_weight=spectrum_weight,
                                      descriptor=descriptor, descriptor_weights=_descriptor_weights(descriptor_weights),
                                      device=dev)
    bar, update = _progress(iters, f"gatys style {width}x{height}")
    with bar:
        result = transfer_style(style_image, photo, (width, height), iters, objective=objective, device=dev,
                                size_limit=size_limit, progress=update)
    save_image(result.image, output, bits=16 if bits16 else 8)
    if compare is not None:
        save_image(side_by_side([photo, style_image, result.image]), compare)
    terms = ", ".join(f"{k} {v:.4g}" for k, v in result.terms.items() if k != "total")
    typer.echo(f"wrote {output} ({width}x{height}) in {result.seconds:.1f} s, {result.evaluations} evaluations: "
               f"loss {result.loss:.4g} ({terms})")


train_app = typer.Typer(help="Train texture models: texture networks (one texture), ProPO (any texture) or style "
                             "networks (one style, any photograph).", no_args_is_help=True)
app.add_typer(train_app, name="train")


def _trained(output: Path, report) -> None:
    """A training command's last line (exit 130 if it was interrupted: the checkpoint is resumable)."""
    terms = ", ".join(f"{k} {v:.4g}" for k, v in report.terms.items() if k != "total")
    state = f"interrupted after {report.iterations} of {report.planned}" if report.interrupted else f"{report.iterations}"
    typer.echo(f"wrote {output}: {state} iterations in {report.seconds:.0f} s, loss {report.loss:.4g} ({terms})")
    if report.interrupted:
        raise typer.Exit(130)


@train_app.command("texnet")
def train_texnet(
    texture: str = typer.Argument(..., help="Exemplar image, or a shipped texture name."),
    output: Path = typer.Option(..., "-o", "--output", help="Model file to write (.safetensors), e.g. trained/NAME.safetensors."),
    iters: int = typer.Option(D.TEXNET_ITERS, "--iters", help="Training iterations (Adam steps)."),
    batch: int = typer.Option(D.TEXNET_BATCH, "--batch", help="Noise samples per iteration."),
    size: int = typer.Option(D.TEXNET_SIZE, "--size", help="Side of the generated training images (a multiple of 16 for 5 scales)."),
    lr: float = typer.Option(D.TEXNET_LR, "--lr", help="Initial Adam learning rate (x0.7 from half the run, every tenth)."),
    loss: str = typer.Option(D.LOSS, "--loss", help="Objective: gram+color (default), gram, sw+color or sw."),
    layers: Optional[str] = typer.Option(None, "--layers", help="Comma-separated taps, or po / texnet."),
    color_weight: ColorWeight = D.COLOR_WEIGHT,
    spectrum_weight: float = typer.Option(D.SPECTRUM_WEIGHT, "--spectrum-weight", help="Weight of the spectrum constraint (Liu et al. 2016; 0 = off)."),
    scales: int = typer.Option(D.TEXNET_SCALES, "--scales", help="Noise scales K (sizes become multiples of 2**(K-1))."),
    width: int = typer.Option(D.TEXNET_WIDTH, "--width", help="Channels per noise scale (Ulyanov et al. 2016: 8)."),
    norm: str = typer.Option("batch", "--norm", help="batch (ships; exact tiling) or instance (experiment)."),
    seed: Seed = 0,
    device: Device = "auto",
    descriptor: DescriptorName = "auto",
    descriptor_weights: DescriptorWeights = None,
    crop: Optional[str] = typer.Option(None, "--crop", help="Train on X,Y,W,H of the exemplar (e.g. to leave out a label)."),
    resume: Resume = False,
    finish: Finish = False,
    checkpoint_every: CheckpointEvery = D.CHECKPOINT_EVERY,
    init: Optional[str] = typer.Option(None, "--init", help="Start from this trained texture network (name or file) instead of random weights."),
    nproc: Nproc = None,
    preview: bool = typer.Option(True, "--preview/--no-preview", help="Also write OUTPUT with .png: exemplar | sample."),
) -> None:
    """Train a texture network (Ulyanov et al. 2016) on one exemplar; Ctrl-C saves, --resume continues."""
    from .images import parse_box, resolve_texture
    from .texnet_training import train_texnet as train

    path = resolve_texture(texture)
    box = parse_box(crop) if crop else None
    bar, update = _progress(iters, f"train texnet {path.stem}")
    with bar:
        report = train(path, output, iters, batch, size, lr, loss, _layers(layers), color_weight, descriptor,
                       _descriptor_weights(descriptor_weights), device, scales, width=width, norm=norm, seed=seed,
                       crop=box, checkpoint_every=checkpoint_every, progress=update, spectrum_weight=spectrum_weight,
                       resume=resume, finish=finish, init=init, nproc=nproc)
    if report.rank:  # another process of a torchrun run: rank 0 writes the preview and reports
        raise typer.Exit(130 if report.interrupted else 0)
    if preview:
        from .texnet_training import write_preview

        write_preview(output, path, box)
    _trained(output, report)


@train_app.command("propo")
def train_propo(
    dataset: Path = typer.Argument(..., help="Folder or zip archive (.zip, .pk3) of texture images."),
    output: Path = typer.Option(..., "-o", "--output", help="Model file to write (.safetensors), e.g. trained/propo.safetensors."),
    iters: int = typer.Option(D.PROPO_ITERS, "--iters", help="Training iterations (the paper: 800K on a GPU)."),
    size: int = typer.Option(D.PROPO_SIZE, "--size", help="Side of the training crops, a multiple of 16 (the paper: 256)."),
    resize: int = typer.Option(D.PROPO_RESIZE, "--resize", help="Images are first scaled so their shortest side is this."),
    lr: float = typer.Option(D.PROPO_LR, "--lr", help="Adam learning rate (betas 0.5, 0.999), linearly to 0 over the second half."),
    batch: int = typer.Option(1, "--batch", help="Targets per iteration (the paper: 1)."),
    color_weight: float = typer.Option(D.PROPO_COLOR_WEIGHT, "--color-weight", help="Weight of the colour-distribution term (x stage number)."),
    spectrum_weight: float = typer.Option(D.PROPO_SPECTRUM_WEIGHT, "--spectrum-weight", help="Weight of the spectrum constraint (x stage number; 0 = off)."),
    color_input: bool = typer.Option(True, "--color-input/--no-color-input", help="Feed the pixels' colour-Gram gradient to the stages."),
    color_match: bool = typer.Option(True, "--color-match/--no-color-match", help="Set each stage image's colour mean and deviation to the target's."),
    histogram_match: bool = typer.Option(True, "--histogram-match/--no-histogram-match", help="Match the final image's colour histogram along the target's principal axes."),
    noise_amplitude: float = typer.Option(D.PROPO_NOISE_AMPLITUDE, "--noise-amplitude", help="Start image: 0.5 + amplitude x (uniform noise - 0.5)."),
    incremental: bool = typer.Option(False, "--incremental/--no-incremental", help="Grow the training set during the run (experimental)."),
    held_out: float = typer.Option(D.HELD_OUT_FRACTION, "--held-out", help="Fraction of folders kept out of training."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Use at most this many training images (quick runs)."),
    seed: Seed = 0,
    device: Device = "auto",
    descriptor: DescriptorName = "auto",
    descriptor_weights: DescriptorWeights = None,
    resume: Resume = False,
    finish: Finish = False,
    checkpoint_every: CheckpointEvery = D.CHECKPOINT_EVERY,
    nproc: Nproc = None,
    preview: bool = typer.Option(True, "--preview/--no-preview", help="Also write OUTPUT with .png: stages on unseen textures."),
) -> None:
    """Train ProPO (Shi & Qiao 2020) on a set of textures; Ctrl-C saves, --resume continues."""
    from .datasets import open_dataset
    from .propo_training import check_propo_run, describe_stage_losses, train_propo as train

    check_propo_run(iters, batch, lr, output, size, resize, held_out, nproc)  # before the dataset is decoded
    data = open_dataset(dataset, "train", resize, min_side=min(64, size), held_out_fraction=held_out, limit=limit)
    bar, update = _progress(iters, "train propo")
    with bar:
        report = train(dataset, output, iters, size, resize, lr, batch, color_weight, color_input=color_input,
                       noise_amplitude=noise_amplitude, color_match=color_match, histogram_match=histogram_match, incremental=incremental, held_out_fraction=held_out, descriptor=descriptor,
                       descriptor_weights=_descriptor_weights(descriptor_weights), device=device,
                       seed=seed, resume=resume, checkpoint_every=checkpoint_every, progress=update, loaded=data,
                       spectrum_weight=spectrum_weight, finish=finish, nproc=nproc)
    if report.rank:  # another process of a torchrun run: rank 0 writes the preview and reports
        raise typer.Exit(130 if report.interrupted else 0)
    if preview:
        from .propo_training import write_preview as write_propo_preview

        write_propo_preview(output, dataset, held_out)
    state = f"interrupted after {report.iterations} of {report.planned}" if report.interrupted else f"{report.iterations}"
    typer.echo(f"wrote {output}: {state} iterations in {report.seconds:.0f} s on {len(data)} training images "
               f"({data.other_split} held out; skipped {data.skipped}), loss {report.loss:.4g}, "
               f"per stage {describe_stage_losses(report.stages)}")
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
    color_weight: ColorWeight = D.COLOR_WEIGHT,
    spectrum_weight: float = typer.Option(D.STYLE_SPECTRUM_WEIGHT, "--spectrum-weight", help="Weight of the spectrum constraint (0 = off)."),
    width: int = typer.Option(D.TEXNET_WIDTH, "--width", help="Channels per noise scale (Ulyanov et al. 2016: 8)."),
    norm: str = typer.Option("instance", "--norm", help="instance (per photograph; ships) or batch (as texture networks)."),
    seed: Seed = 0,
    device: Device = "auto",
    descriptor: DescriptorName = "auto",
    descriptor_weights: DescriptorWeights = None,
    resume: Resume = False,
    finish: Finish = False,
    checkpoint_every: CheckpointEvery = D.CHECKPOINT_EVERY,
    preview: bool = typer.Option(True, "--preview/--no-preview", help="Also write OUTPUT with .png: photograph | style | result."),
) -> None:
    """Train a style network (Ulyanov et al. 2016 sec. 3.3) on one style image; Ctrl-C saves, --resume continues."""
    from .images import resolve_texture
    from .style_training import train_style as train, write_preview

    path = resolve_texture(style)
    bar, update = _progress(iters, f"train style {path.stem}")
    with bar:
        report = train(path, content, output, alpha, iters, batch, size, lr, color_weight=color_weight,
                       spectrum_weight=spectrum_weight, descriptor=descriptor,
                       descriptor_weights=_descriptor_weights(descriptor_weights), device=device, width=width, norm=norm,
                       seed=seed, resize=resize, checkpoint_every=checkpoint_every, progress=update, resume=resume, finish=finish)
    if preview and not report.interrupted:
        write_preview(output, content)
    _trained(output, report)


@app.command()
def synth(
    model: str = typer.Argument(..., help="Shipped model name (see 'texport models'), .safetensors, exported .onnx or TensorRT engine."),
    output: Path = typer.Option(..., "-o", "--output", help="Output PNG or DDS (GPU texture); with --count N, numbered NAME-0000.png …"),
    size: str = typer.Option("256", "--size", help="Output size: N or WxH, any size >= 16."),
    count: int = typer.Option(1, "--count", help="Number of textures (image n uses seed + n)."),
    seed: Seed = 0,
    tileable: bool = typer.Option(False, "--tileable", help="Require an output that wraps around (sizes on the model's grid)."),
    snap: bool = typer.Option(False, "--snap", help="With --tileable: round the size to the nearest valid one."),
    device: Device = "auto",
    size_limit: SizeLimit = None,
    bits16: Bits16 = False,
    texture: Target = None,
    stages: bool = typer.Option(False, "--stages", help="ProPO models: also write OUT-stages.png (noise, x1..x5, target per row)."),
    backend: Backend = None,
    fp16: Fp16 = False,
    refine: int = typer.Option(0, "--refine", help="Then N Gatys evaluations of the default objective per image (texture networks: against their exemplar)."),
    dds_format: DdsFormat = None,
    srgb: DdsSrgb = None,
    mips: DdsMips = False,
) -> None:
    """Synthesize textures from a trained model in one forward pass (ProPO: like --texture)."""
    import time

    from .dds import output_options
    from .handle import open_model
    from .images import save_image
    from .models import check_count, load_propo, load_texnet, sample_propo, sample_texnet
    from .sizes import plan_size

    _check_output(output, (".png", ".dds"))
    dds = output_options(output, dds_format, srgb, mips, bits=16 if bits16 else 8)  # None for a PNG
    check_count(count)
    if refine < 0:
        raise TexportError(f"--refine must be at least 0, got {refine}")
    handle = open_model(model).require_generator()  # resolved once; everything below takes the handle
    plan = plan_size(size, handle.size_multiple, handle.min_side, tileable, snap, size_limit)  # the one size plan
    target = _target_texture(handle, texture, texnet_may_take_one=bool(refine),
                             texnet_use="ProPO models, or the target of --refine")
    if stages and not handle.is_propo:
        raise TexportError("--stages shows ProPO's stages: this is a texture network")
    if handle.format != "texport" or backend not in (None, "torch") or fp16:
        if stages or refine:
            raise TexportError("--stages and --refine need the PyTorch model (a shipped name or .safetensors) on the torch "
                               "backend: exported graphs and engines run as they are")
        from .backends import sample_with

        runner = _open_runner(handle, backend, device, fp16)
        start = time.perf_counter()
        images = sample_with(runner, plan, seed, count, target)
        _save_numbered(images, output, bits16, f"from {handle.path.name} on {runner.describe()} in {time.perf_counter() - start:.2f} s",
                       dds, tileable)
        return
    if handle.is_propo:
        from .images import side_by_side, stack_rows

        loaded = load_propo(handle, device)
        start = time.perf_counter()
        result = sample_propo(loaded, target, plan, seed=seed, count=count, stages=stages)
        seconds = time.perf_counter() - start
        images = result[-1] if stages else result
        if stages:
            sheet = stack_rows([side_by_side([*(s[n:n + 1] for s in result), target], height=128) for n in range(count)])
            save_image(sheet, output.with_name(f"{output.stem}-stages.png"))
    else:
        loaded = load_texnet(handle, device)
        if refine:  # a model file without its exemplar fails here, before any work
            from .models import refinement_target

            target = refinement_target(loaded, target)
        start = time.perf_counter()
        images = sample_texnet(loaded, plan, seed=seed, count=count)
        seconds = time.perf_counter() - start
    how = f"from {loaded.name} in {seconds:.2f} s"
    if refine:
        from .models import refine as refine_images

        bar, update = _progress(refine * images.shape[0], f"refine {images.shape[-1]}x{images.shape[-2]}")
        start = time.perf_counter()
        with bar:
            images = refine_images(loaded, images, refine, texture=target, tileable=tileable, device=device, progress=update)
        how += f", refined by {refine} evaluations in {time.perf_counter() - start:.1f} s"
    _save_numbered(images, output, bits16, how, dds, tileable)


@app.command()
def stylize(
    model: str = typer.Argument(..., help="Style network ('texport train style'): .safetensors, exported .onnx or TensorRT engine."),
    content: str = typer.Argument(..., help="The photograph to restyle (PNG, JPEG, TGA, WebP, BMP), or a shipped texture name."),
    output: Path = typer.Option(..., "-o", "--output", help="Output PNG (written atomically)."),
    size: Optional[str] = typer.Option(None, "--size", help="Output size WxH (or N); the photograph is resized to it (default: its own size)."),
    noise_scale: float = typer.Option(1.0, "--noise-scale", help="Noise amplitude, >= 0: 0 is none, "
                                                                 "1 is as trained (the paper's fig. 5 knob; the shipped model barely responds to it)."),
    seed: Seed = 0,
    backend: Backend = None,
    fp16: Fp16 = False,
    device: Device = "auto",
    size_limit: SizeLimit = None,
    bits16: Bits16 = False,
) -> None:
    """Restyle a photograph with a trained style network in one forward pass (Ulyanov et al. 2016 sec. 3.3)."""
    import time

    from .backends import plan_stylize, stylize_with
    from .handle import open_model
    from .images import load_image, resolve_texture, save_image

    _check_output(output)
    handle = open_model(model).require_stylenet()
    photo = load_image(resolve_texture(content))
    plan = plan_stylize(handle, photo, size, noise_scale, size_limit)  # every request error before the model loads
    runner = _open_runner(handle, backend, device, fp16)
    start = time.perf_counter()
    image = stylize_with(runner, photo, plan, seed, noise_scale)
    seconds = time.perf_counter() - start
    save_image(image, output, bits=16 if bits16 else 8)
    typer.echo(f"wrote {output} ({plan.width}x{plan.height}) from {handle.path.name} on {runner.describe()} in {seconds:.2f} s")


@app.command("export")
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
    import time

    from .export import export, output_format

    output_format(output)
    try:
        textures = tuple(int(v) for v in texture_sizes.split(","))
        assert len(textures) == 3
    except (ValueError, AssertionError):
        raise TexportError(f"--texture-sizes must be three integers MIN,OPT,MAX, got {texture_sizes!r}") from None
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


def _target_texture(handle, texture: Optional[str], texnet_may_take_one: bool = False,
                    texnet_use: str = "ProPO models"):
    """The --texture image, checked against the model's kind (ProPO needs one; a texture network
    takes one only where texnet_may_take_one), or None."""
    from .images import load_image, resolve_texture

    if handle.is_propo and texture is None:
        raise TexportError(f"{handle.path.name} is a ProPO model: it needs --texture IMG, the target texture")
    if not handle.is_propo and texture is not None and not texnet_may_take_one:
        raise TexportError(f"{handle.path.name} is a texture network trained on one texture: --texture is for {texnet_use}")
    return load_image(resolve_texture(texture)) if texture is not None else None


def _open_runner(handle, backend: Optional[str], device: str, fp16: bool, low_memory: bool = False):
    """The backend for synth and tile (None: the model's default, backends.default_backend); its caveat on stderr."""
    from .backends import open_backend

    runner = open_backend(handle, backend, device, fp16, low_memory=low_memory)
    if runner.caveat:
        typer.echo(f"note: {runner.caveat}", err=True)
    return runner


def _save_numbered(images, output: Path, bits16: bool, how: str, dds=None, tileable: bool = False) -> None:
    """OUT.png (or OUT.dds, given dds options) for one image, OUT-0000.png … for several; one line saying
    what was written. A tileable texture's DDS mips wrap around."""
    from .dds import save_dds
    from .images import save_image

    count = images.shape[0]
    suffix = ".dds" if dds is not None else ".png"
    paths = [output] if count == 1 else [output.with_name(f"{output.stem}-{n:04d}{suffix}") for n in range(count)]
    for image, path in zip(images, paths):
        if dds is not None:
            save_dds(image[None], path, dds.format, dds.srgb, dds.mips, tileable)
        else:
            save_image(image[None], path, bits=16 if bits16 else 8)
    h, w = images.shape[-2:]
    where = paths[0] if count == 1 else f"{paths[0]} … {paths[-1].name}"
    what = f", {dds.describe()}" if dds is not None else ""
    typer.echo(f"wrote {where} ({count} x {w}x{h}{what}) {how}")


RayAddress = Annotated[Optional[str], typer.Option(
    "--ray", help="Run on a Ray cluster (pip install 'texport\\[ray]'): auto, ray://HOST:PORT, or local:N for a private "
                  "N-worker cluster on this machine for the run.")]
RayThreads = Annotated[int, typer.Option("--ray-threads", help="With --ray: threads (and CPUs) per Ray worker.")]


def _counter(update):
    """A progress callback (n more done of total) feeding a _progress bar."""
    done = [0]

    def advance(n: int, total: int) -> None:
        done[0] += n
        update(done[0], total=total)

    return advance


@app.command()
def tile(
    model: str = typer.Argument(..., help="Shipped model name, .safetensors, exported .onnx, or TensorRT engine."),
    output: Path = typer.Option(..., "-o", "--output", help="Output PNG, written band by band."),
    size: str = typer.Option(..., "--size", help="Output size WxH (or N), e.g. 16384x16384."),
    tile_size: int = typer.Option(D.TILE, "--tile", help="Tile side, a multiple of the model's grid (ProPO: at least 128)."),
    seed: Seed = 0,
    tileable: bool = typer.Option(False, "--tileable", help="Wrap noise and seams around: the result tiles seamlessly."),
    texture: Target = None,
    backend: Backend = None,
    fp16: Fp16 = False,
    device: Device = "auto",
    size_limit: Optional[int] = typer.Option(D.TILE_SIZE_LIMIT, "--size-limit", help="Largest accepted side."),
    bits16: Bits16 = False,
    ray: RayAddress = None,
    ray_threads: RayThreads = 1,
) -> None:
    """Large textures in tiles with bounded memory (texture networks: tiles join exactly); --ray: bands on a cluster."""
    import time

    from .handle import open_model
    from .sizes import check_size, parse_size
    from .tiling import tile_image

    _check_output(output)
    width, height = check_size(parse_size(size), size_limit)
    if ray is not None:
        from .cluster import import_ray

        import_ray()  # no Ray: its one line before any work
    handle = open_model(model).require_generator()
    target = _target_texture(handle, texture)
    runner = None if ray is not None else _open_runner(handle, backend, device, fp16, low_memory=True)  # bounded memory over speed
    bar, update = _progress(1, f"tile {width}x{height}", show_loss=False)
    bits = 16 if bits16 else 8
    start = time.perf_counter()
    with bar:
        if runner is not None:
            summary = tile_image(runner, output, width, height, tile_size, seed, tileable, target, bits,
                                 progress=_counter(update))
        else:
            from .cluster import tile_on_ray

            summary = tile_on_ray(handle, output, width, height, tile_size, seed, tileable, target, bits, address=ray,
                                  backend=backend, device=device, fp16=fp16, threads=ray_threads, progress=_counter(update))
    seconds = time.perf_counter() - start
    where = runner.describe() if runner is not None else _on_ray(summary)
    typer.echo(f"wrote {output} ({width}x{height}, {summary['tiles']} tiles of {tile_size} + {summary['overlap']} px "
               f"on each side) on {where} in {seconds:.1f} s")


def _on_ray(summary: dict) -> str:
    hosts = f", {summary['hosts']} hosts" if summary["hosts"] > 1 else ""
    threads = f"{summary['threads']} thread{'s' if summary['threads'] != 1 else ''}"
    return f"{summary['workers']} Ray workers x {threads} ({summary['backend']}{hosts})"


@app.command()
def batch(
    jobs: Path = typer.Argument(..., help="Job file, .csv with a header or .json (a list of objects): model, texture "
                                          "(ProPO only), size, seed, output, and optionally tileable; paths relative to it."),
    backend: Backend = None,
    fp16: Fp16 = False,
    device: Device = "auto",
    bits16: Bits16 = False,
    ray: RayAddress = None,
    ray_threads: RayThreads = 1,
) -> None:
    """One PNG per job; a rerun skips outputs already made by the same job (recorded in each PNG)."""
    import time

    from .batch import load_jobs, run_batch

    if ray is not None:
        from .cluster import import_ray

        import_ray()
    loaded = load_jobs(jobs, backend, device, fp16, 16 if bits16 else 8)  # the whole file checked first
    bar, update = _progress(1, f"batch of {len(loaded)}", show_loss=False)
    start = time.perf_counter()
    with bar:
        summary = run_batch(loaded, ray, device=device, threads=ray_threads, progress=_counter(update))
    where = f" on {_on_ray(summary)}" if "workers" in summary else ""
    skipped = f", skipped {summary['skipped']} already made" if summary["skipped"] else ""
    typer.echo(f"wrote {summary['written']} of {summary['jobs']} outputs{skipped}{where} in {time.perf_counter() - start:.1f} s")


@app.command("dds")
def dds_command(
    image: str = typer.Argument(..., help="Image to convert (PNG, JPEG, TGA, WebP, BMP), e.g. a 'texport tile' output, or a shipped texture name."),
    output: Path = typer.Option(..., "-o", "--output", help="Output .dds (written atomically)."),
    dds_format: DdsFormat = None,
    srgb: DdsSrgb = None,
    mips: DdsMips = False,
    tileable: bool = typer.Option(False, "--tileable", help="The image wraps around: so do its mips."),
) -> None:
    """Convert an image into a DDS GPU texture (BC7, BC1, BC3 or RGBA8; with --mips, the mip chain)."""
    from .dds import output_options, save_dds
    from .images import load_image, resolve_texture

    _check_output(output, (".dds",))
    options = output_options(output, dds_format, srgb, mips)
    picture = load_image(resolve_texture(image))
    save_dds(picture, output, options.format, options.srgb, options.mips, tileable)
    h, w = picture.shape[-2:]
    typer.echo(f"wrote {output} ({w}x{h}, {options.describe()})")


@app.command("bench")
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
    import json

    from .atomic import write_bytes_atomic
    from .bench import as_json, bench, table

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
        from .images import load_image, resolve_texture

        target = load_image(resolve_texture(texture))
    bar, update = _progress(1, "bench", show_loss=False)
    done = [0]

    def advance(row) -> None:
        done[0] += 1
        update(done[0], total=len(backend.split(",")) * len(side_list) * len(batch_list) if backend != "all" else None)

    with bar:
        rows = bench(model, backend.split(","), side_list, batch_list, warmup, runs, fp16, device, target, progress=advance)
    typer.echo(table(rows))
    if json_out is not None:
        write_bytes_atomic(json_out, (json.dumps(as_json(rows, model), indent=1) + "\n").encode())
        typer.echo(f"wrote {json_out}")


@app.command()
def models(
    name: Optional[str] = typer.Argument(None, help="Show one model's full manifest (name or path)."),
) -> None:
    """List the shipped models, or print one model's manifest as JSON."""
    import json

    from .checkpoints import read_manifest
    from .models import resolve_model, shipped_models, trained_folder

    if name is not None:
        typer.echo(json.dumps(read_manifest(resolve_model(name)), indent=2, sort_keys=True))
        return
    shipped = shipped_models()
    if not shipped:
        typer.echo(f"no shipped models in {trained_folder()}")
        return
    typer.echo(f"{'name':<16} {'kind':<8} {'trained on':<14} {'iters':>10} {'loss':>8}  descriptor")
    for model_name, path in shipped.items():
        m = read_manifest(path)
        t = m.get("training", {})
        start = (t.get("initialized_from") or {}).get("iterations")
        iters = f"{start}+{t.get('iterations', '?')}" if start else f"{t.get('iterations', '?')}"  # fine-tuned: start + own
        source = (m.get("texture") or m.get("style") or {}).get("name") or (m.get("dataset") or {}).get("source", "?")  # style networks: the style image
        typer.echo(f"{model_name:<16} {m.get('kind', '?'):<8} {source:<14} "
                   f"{iters:>10} {t.get('final_loss', float('nan')):>8.4g}  {m.get('descriptor', '?')[:28]}")


@app.command()
def info() -> None:
    """Versions, devices, shipped textures and which descriptor weights are available."""
    import torch

    from . import descriptor as d
    from .images import shipped_textures

    typer.echo(f"texport {__version__}, torch {torch.__version__}, CUDA {'yes: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no'}")
    typer.echo(f"shipped textures: {', '.join(sorted(shipped_textures()))}")
    for name in ("vgg19", "vgg16-hed"):
        try:
            desc = d.build_descriptor(name, ["pool4"])
            typer.echo(f"descriptor {name}: available ({desc.source}), identity through pool4 {desc.identity}")
        except TexportError as exc:
            typer.echo(f"descriptor {name}: unavailable ({exc})")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"texport {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """texport: neural textures you can ship."""


_signals: list[int] = []  # the interrupting signals received (typer turns KeyboardInterrupt into a silent exit 130)


def _on_signal(signum, frame) -> None:
    """Ctrl-C and SIGTERM both raise KeyboardInterrupt where the process is, so long runs save their
    checkpoint either way; the signal is remembered for the message and the exit code."""
    _signals.append(signum)
    raise KeyboardInterrupt()


def _interrupted() -> int:
    """If a signal interrupted the command: its one line on stderr and exit code (130 Ctrl-C, 143 SIGTERM), else 0."""
    import signal

    if not _signals:
        return 0
    if _signals[0] == signal.SIGTERM:
        print("texport: terminated (SIGTERM)", file=sys.stderr)
        return 143
    print("texport: interrupted", file=sys.stderr)
    return 130


def main(argv: Optional[list[str]] = None) -> int:
    """Console entry point: every user error becomes one line on stderr and exit code 2;
    Ctrl-C exits 130 and SIGTERM 143, after a training run has saved its checkpoint."""
    import signal

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    command = typer.main.get_command(app)
    if not (sys.argv[1:] if argv is None else argv):
        argv = ["--help"]
    try:
        result = command.main(args=argv, prog_name="texport", standalone_mode=False)
        return _interrupted() or (result if isinstance(result, int) else 0)
    except typer.Exit as exc:
        return _interrupted() or exc.exit_code
    except typer.TyperException as exc:  # bad option, missing argument, wrong type
        hint = f" (see 'texport {exc.ctx.info_name} --help')" if getattr(exc, "ctx", None) is not None and exc.ctx.info_name != "texport" else ""
        message = " ".join(exc.format_message().split())
        print(f"texport: error: {message}{hint}", file=sys.stderr)
        return 2
    except TexportError as exc:
        print(f"texport: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, typer.Abort):
        import signal

        if not _signals:
            _signals.append(signal.SIGINT)
        return _interrupted()
