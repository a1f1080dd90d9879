"""The `texport` command: the typer app, its command groups (one module each), and the entry point.

User errors (TexportError, bad options) print one line on stderr and exit with 2; Ctrl-C exits 130
and SIGTERM 143, after a training run has saved its checkpoint.
"""

from __future__ import annotations

import signal
import sys
from typing import Optional

import typer

from texport import __version__
from texport.commands import deploy, gatys, scale, synth, tools, train
from texport.errors import TexportError

app = typer.Typer(
    name="texport",
    help="Neural texture synthesis that ships: Gatys optimization, texture networks, ProPO; ONNX and TensorRT export.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)

app.command()(gatys.gatys)
app.add_typer(train.train_app, name="train")
app.command()(synth.synth)
app.command()(synth.stylize)
app.command("export")(deploy.export_model)
app.command("bench")(deploy.bench_command)
app.command()(scale.tile)
app.command()(scale.batch)
app.command("dds")(tools.dds_command)
app.command()(tools.models)
app.command()(tools.info)


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
