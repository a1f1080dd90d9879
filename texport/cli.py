"""The `texport` command: a thin typer layer over the Python API.

User errors (TexportError, bad options) print one line on stderr and exit with 2; Ctrl-C exits 130.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from . import __version__
from .errors import TexportError

app = typer.Typer(
    name="texport",
    help="Neural texture synthesis that ships: Gatys optimization, texture networks, ProPO; ONNX and TensorRT export.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)


def _progress(total: int, label: str):
    """A rich progress bar on stderr showing the loss; returns (context manager, callback)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    task = bar.add_task(label, total=total, loss="-")

    def update(step: int, loss: float) -> None:
        bar.update(task, completed=step, loss=f"{loss:.4g}")

    return bar, update


def _check_output(path: Path) -> None:
    """Fail before the work starts, not after it, when the output cannot be written."""
    if path.suffix.lower() != ".png":
        raise TexportError(f"output must be a .png file, got {path.name}")
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
    size: str = typer.Option("256", "--size", help="Output size: N or WxH, independent of the exemplar's."),
    iters: int = typer.Option(400, "--iters", help="Loss/gradient evaluations (the optimization budget)."),
    optimizer: str = typer.Option("lbfgs", "--optimizer", help="lbfgs (L-BFGS-B, bounded) or adam (projected)."),
    loss: str = typer.Option("gram+color", "--loss", help="gram+color (default), gram, sw+color or sw."),
    layers: Optional[str] = typer.Option(None, "--layers", help="Comma-separated taps, or po / texnet / pyramid."),
    layer_weights: str = typer.Option("normalized", "--layer-weights", help="normalized (1/||G_target||^2) or uniform."),
    color_weight: float = typer.Option(10.0, "--color-weight", help="Weight of the colour-distribution term."),
    pyramid: int = typer.Option(1, "--pyramid", help="Gaussian-pyramid octaves (Snelgrove); 1 = single scale."),
    tileable: bool = typer.Option(False, "--tileable", help="Circular padding: the output wraps around seamlessly."),
    seed: int = typer.Option(0, "--seed", help="Seed of the initial noise."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda or auto."),
    descriptor: str = typer.Option("auto", "--descriptor", help="auto, vgg19, vgg16-hed or random (tests only)."),
    descriptor_weights: Optional[Path] = typer.Option(None, "--descriptor-weights", help="Explicit weights file."),
    pooling: str = typer.Option("avg", "--pooling", help="Descriptor pooling: avg (default) or max."),
    lr: float = typer.Option(0.02, "--lr", help="Adam learning rate (pixels in [0, 1])."),
    max_size: Optional[int] = typer.Option(None, "--max-size", help="Largest accepted side (default 8192)."),
    bits16: bool = typer.Option(False, "--16bit", help="Write a 16-bit PNG."),
    compare: Optional[Path] = typer.Option(None, "--compare", help="Also write exemplar | result side by side."),
) -> None:
    """Synthesize a texture by optimization (Gatys et al.), the slow exact fallback."""
    from .devices import resolve_device
    from .gatys import OPTIMIZERS, synthesize
    from .images import load_image, resolve_texture, save_image, side_by_side
    from .losses import color_distance
    from .objective import build_objective
    from .sizes import check_size, parse_size

    _check_output(output)
    if compare is not None:
        _check_output(compare)
    if iters <= 0:
        raise TexportError(f"--iters must be positive, got {iters}")
    if optimizer not in OPTIMIZERS:
        raise TexportError(f"unknown optimizer {optimizer!r}: choose {' or '.join(OPTIMIZERS)}")
    width, height = check_size(parse_size(size), max_size)
    exemplar = load_image(resolve_texture(texture))
    dev = resolve_device(device)
    objective = build_objective(  # validates loss, layers and descriptor before the progress bar starts
        exemplar.to(dev), loss, _layers(layers), layer_weights, pyramid, color_weight, descriptor,
        str(descriptor_weights) if descriptor_weights else None, tileable=tileable, device=dev, pooling=pooling,
    )
    if pyramid > 1:
        objective.check_octaves((height, width), "output")
    bar, update = _progress(iters, f"gatys {width}x{height}")
    with bar:
        result = synthesize(exemplar, (width, height), iters, optimizer, seed=seed, device=dev, lr=lr,
                            max_size=max_size, objective=objective, progress=update)
    save_image(result.image, output, bits=16 if bits16 else 8)
    if compare is not None:
        save_image(side_by_side([exemplar, result.image]), compare)
    terms = ", ".join(f"{k} {v:.4g}" for k, v in result.terms.items() if k != "total")
    dist = float(color_distance(result.image, exemplar))
    typer.echo(
        f"wrote {output} ({width}x{height}) in {result.seconds:.1f} s, {result.evaluations} evaluations: "
        f"loss {result.loss:.4g} ({terms}), colour distance {dist:.4f}, descriptor {result.descriptor[:28]}"
    )


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


def main(argv: Optional[list[str]] = None) -> int:
    """Console entry point: every user error becomes one line on stderr and exit code 2."""
    command = typer.main.get_command(app)
    if not (sys.argv[1:] if argv is None else argv):
        argv = ["--help"]
    try:
        result = command.main(args=argv, prog_name="texport", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except typer.Exit as exc:
        return exc.exit_code
    except typer.TyperException as exc:  # bad option, missing argument, wrong type
        hint = f" (see 'texport {exc.ctx.info_name} --help')" if getattr(exc, "ctx", None) is not None and exc.ctx.info_name != "texport" else ""
        message = " ".join(exc.format_message().split())
        print(f"texport: error: {message}{hint}", file=sys.stderr)
        return 2
    except TexportError as exc:
        print(f"texport: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, typer.Abort):
        print("texport: interrupted", file=sys.stderr)
        return 130
