"""The `texport` command: the typer app, its command groups (one module each), and the entry point.

User errors (TexportError, bad options) print one line on stderr and exit with 2; Ctrl-C exits 130
and SIGTERM 143, after a training run has saved its checkpoint.

Commands are loaded when they run (COMMANDS, as click's lazily loaded subcommands): a command
module imports its stage's code, torch included, at its top, and `texport --help`, `--version` and
shell completion should not wait for that. Nothing imports this module but the entry point, so
loading by name here cannot hide an import cycle.
"""

from __future__ import annotations

import importlib
import signal
import sys
from typing import Optional

import click
import typer
from typer.core import TyperGroup

from texport import __version__
from texport.errors import TexportError

# name: (module in texport.commands, its function or typer app, the line `texport --help` shows: the docstring's)
COMMANDS = {
    "gatys": ("gatys", "gatys", "Synthesize a texture by optimization (Gatys et al. 2015), the slow exact fallback; "
                                "with --content, style transfer."),
    "train": ("train", "train_app", "Train texture models: texture networks (one texture), ProPO (any texture), "
                                    "style networks (one style, any photograph) or solid textures (volumes from 2D slices)."),
    "synth": ("synth", "synth", "Synthesize textures from a trained model in one forward pass (ProPO: like --texture; "
                                "solid models: volumes, --size WxHxD)."),
    "stylize": ("synth", "stylize", "Restyle a photograph with a trained style network in one forward pass (Ulyanov et "
                                    "al. 2016 sec. 3.3)."),
    "export": ("deploy", "export_model", "Export a model for deployment (ProPO .onnx also writes NAME.encode.onnx and "
                                         "NAME.synth.onnx beside OUTPUT)."),
    "bench": ("deploy", "bench_command", "Latency, images/s, megapixels/s, GFLOP/s and peak memory per backend, size and "
                                         "batch."),
    "tile": ("scale", "tile", "Large textures in tiles with bounded memory (texture networks: tiles join exactly); "
                              "--ray: bands on a cluster."),
    "batch": ("scale", "batch", "One PNG per job; a rerun skips outputs already made by the same job (recorded in each "
                                "PNG)."),
    "dds": ("tools", "dds_command", "Convert an image into a DDS GPU texture (BC7, BC1, BC3 or RGBA8; with --mips, the "
                                    "mip chain)."),
    "models": ("tools", "models", "List the shipped models, or print one model's manifest as JSON."),
    "info": ("tools", "info", "Versions, devices, shipped textures and which descriptor weights are available."),
}


def load_command(name: str) -> click.Command:
    """The click command (or group) of COMMANDS[name], its module imported now."""
    module, attribute, _ = COMMANDS[name]
    target = getattr(importlib.import_module(f"texport.commands.{module}"), attribute)
    if not isinstance(target, typer.Typer):  # a function: the one command of an app of its own
        function, target = target, typer.Typer(pretty_exceptions_enable=False, add_completion=False)
        target.command(name)(function)
    return typer.main.get_command(target)


class LazyCommand(click.Command):
    """A command known by its name and help line until it runs (or its own help or completion is asked)."""

    def __init__(self, name: str):
        super().__init__(name, help=COMMANDS[name][2], short_help=COMMANDS[name][2], add_help_option=False)

    def make_context(self, info_name, args, parent=None, **extra):
        return load_command(self.name).make_context(info_name, args, parent=parent, **extra)


class LazyGroup(TyperGroup):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return LazyCommand(name) if name in COMMANDS else None


app = typer.Typer(
    name="texport",
    cls=LazyGroup,
    help="Neural texture synthesis that ships: Gatys optimization, texture networks, ProPO; ONNX and TensorRT export.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)


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
        if not _signals:
            _signals.append(signal.SIGINT)
        return _interrupted()
