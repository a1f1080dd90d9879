"""The typer options and helpers every command group shares: one name, one meaning, one help text;
the progress bar on stderr; the checks of an output path before any work starts."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

import texport.defaults as D
import texport.objectives.losses as losses
from texport.errors import TexportError
from texport.runtime.backends import open_backend
from texport.textures.dds import save_dds
from texport.textures.images import load_image, resolve_texture, save_image

# Options shared by several commands: one name, one meaning, one help text.
Device = Annotated[str, typer.Option("--device", help="cpu, cuda or auto.")]
DescriptorName = Annotated[str, typer.Option("--descriptor", help="auto, vgg19, vgg16-hed or random (tests only).")]
DescriptorWeights = Annotated[Optional[Path], typer.Option("--descriptor-weights", help="Explicit descriptor weights file.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives the same result (image n of a batch uses seed + n).")]
BackendSpec = Annotated[Optional[str], typer.Option(
    "--backend", help="torch, onnxruntime, openvino, tensorrt (an .engine) or auto (the fastest here); default: torch for "
                      "a texport model, onnxruntime for an .onnx, tensorrt for an engine; options as NAME:OPT+OPT, "
                      "e.g. torch:channels_last, openvino:bf16.")]
Precision = Annotated[str, typer.Option(
    "--precision", help="Descriptor passes: auto (bf16 where the CPU has AVX512-BF16 or AMX, or on a CUDA GPU; fp32 "
                        "elsewhere), fp32 or bf16. Images, Gram matrices, losses and optimizer state stay fp32.")]
Fp16 = Annotated[bool, typer.Option("--fp16", help="The fp16 graph (Gram matrices and other sensitive parts stay fp32).")]
SizeLimit = Annotated[Optional[int], typer.Option("--size-limit", help=f"Largest accepted side (default {D.SIZE_LIMIT}, or TEXPORT_MAX_SIZE).")]
Bits16 = Annotated[bool, typer.Option("--16bit", help="Write 16-bit PNGs.")]
Target = Annotated[Optional[str], typer.Option("--texture", help="ProPO models: the target texture (any image, seen in training or not).")]
Loss = Annotated[str, typer.Option(
    "--loss", help="Objective: gram+color (default; Gram matrices, Shi & Qiao 2020), sw+color (sliced Wasserstein: whole "
                   "feature distributions, Heitz et al. 2021), gram or sw (without the RGB colour term).")]
ColorWeight = Annotated[float, typer.Option("--color-weight", help="Weight of the colour-distribution term.")]
ColorOctaves = Annotated[int, typer.Option(
    "--color-octaves", help="Match the colour distribution on this many Gaussian-pyramid levels (regional colours "
                            "as well as pixels, against a collapsed palette); 1 = pixels only.")]
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
RayAddress = Annotated[Optional[str], typer.Option(
    "--ray", help="Run on a Ray cluster (pip install 'texport\\[ray]'): auto, ray://HOST:PORT, or local:N for a private "
                  "N-worker cluster on this machine for the run.")]
RayThreads = Annotated[int, typer.Option("--ray-threads", help="With --ray: threads (and CPUs) per Ray worker.")]


def weights_path(path: Optional[Path]) -> Optional[str]:
    return str(path) if path else None


def progress_bar(total: int, label: str, show_loss: bool = True):
    """A rich progress bar on stderr (with the loss, for optimizations); returns (context manager, callback).

    The bar appears at the first step, so an error raised while the work is being set up (a bad
    argument, a missing descriptor file) stays the one line on stderr. update(step, loss, total)
    may also set the total once it is known.
    """

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


def check_output(path: Path, suffixes: tuple[str, ...] = (".png",)) -> None:
    """Fail before the work starts, not after it, when the output cannot be written."""
    if path.suffix.lower() not in suffixes:
        raise TexportError(f"output must be a {' or '.join(suffixes)} file, got {path.name}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise TexportError(f"output folder does not exist: {parent}")
    if path.is_dir():
        raise TexportError(f"output is a folder: {path}")


def parse_layers(text: Optional[str]) -> Optional[tuple[str, ...]]:
    if not text:
        return None

    presets = {"po": losses.PO_LAYERS, "texnet": losses.TEXNET_LAYERS, "pyramid": losses.PYRAMID_LAYERS}
    return presets.get(text.lower()) or tuple(t.strip() for t in text.split(",") if t.strip())


def target_texture(handle, texture: Optional[str], texnet_may_take_one: bool = False,
                    texnet_use: str = "ProPO models"):
    """The --texture image, checked against the model's kind (ProPO needs one; a texture network
    takes one only where texnet_may_take_one), or None."""

    if handle.is_propo and texture is None:
        raise TexportError(f"{handle.path.name} is a ProPO model: it needs --texture IMG, the target texture")
    if not handle.is_propo and texture is not None and not texnet_may_take_one:
        raise TexportError(f"{handle.path.name} is a texture network trained on one texture: --texture is for {texnet_use}")
    return load_image(resolve_texture(texture)) if texture is not None else None


def open_backend_noted(handle, backend: Optional[str], device: str, fp16: bool, low_memory: bool = False):
    """The backend for synth and tile (None: the model's default, backends.default_backend); its caveat on stderr."""
    backend = open_backend(handle, backend, device, fp16, low_memory=low_memory)
    if backend.caveat:
        typer.echo(f"note: {backend.caveat}", err=True)
    return backend


def save_numbered(images, output: Path, bits16: bool, how: str, dds=None, tileable: bool = False) -> None:
    """OUT.png (or OUT.dds, given dds options) for one image, OUT-0000.png … for several; one line saying
    what was written. A tileable texture's DDS mips wrap around."""

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


def counter(update):
    """A progress callback (n more done of total) feeding a progress_bar bar."""
    done = [0]

    def advance(n: int, total: int) -> None:
        done[0] += n
        update(done[0], total=total)

    return advance


def report_training(output: Path, report) -> None:
    """A training command's last line (exit 130 if it was interrupted: the checkpoint is resumable)."""
    terms = ", ".join(f"{k} {v:.4g}" for k, v in report.terms.items() if k != "total")
    state = f"interrupted after {report.iterations} of {report.planned}" if report.interrupted else f"{report.iterations}"
    typer.echo(f"wrote {output}: {state} iterations in {report.seconds:.0f} s, loss {report.loss:.4g} ({terms})")
    if report.interrupted:
        raise typer.Exit(130)


def describe_ray(summary: dict) -> str:
    hosts = f", {summary['hosts']} hosts" if summary["hosts"] > 1 else ""
    threads = f"{summary['threads']} thread{'s' if summary['threads'] != 1 else ''}"
    return f"{summary['workers']} Ray workers x {threads} ({summary['backend']}{hosts})"
