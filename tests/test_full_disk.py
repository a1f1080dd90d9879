"""A write that fails midway (the disk full, simulated by a file-size limit on the process) leaves one
line, exit code 2, any earlier file intact and no temporary file, for every command that writes."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import one_error_line

PREVIOUS = b"previous result"


def run_with_file_limit(args: list, limit: int, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m texport ARGS` whose files may not grow past `limit` bytes (RLIMIT_FSIZE: a write past it
    fails with EFBIG, as on a full disk; Python ignores the SIGXFSZ that comes with it)."""
    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([sys.executable, "-m", "texport", *map(str, args)], cwd=cwd, preexec_fn=limited,
                          capture_output=True, text=True, timeout=600)


def check_refused(result: subprocess.CompletedProcess, outputs: list[Path]) -> str:
    line = one_error_line(result)
    assert "cannot write" in line and "file too large" in line, line
    for output in outputs:
        assert output.read_bytes() == PREVIOUS, f"{output} was touched"
        assert not list(output.parent.glob(f".{output.name}.*")), "a temporary file was left behind"
    return line


@pytest.mark.parametrize("output", ["out.png", "out.dds"])
def test_synth(tmp_path, output):
    out = tmp_path / output
    out.write_bytes(PREVIOUS)
    result = run_with_file_limit(["synth", "pebbles", "--size", "512", "-o", out], 64 << 10, tmp_path)
    assert out.name in check_refused(result, [out])


@pytest.mark.parametrize("output", ["big.png", "big.dds"])
def test_tile(tmp_path, output):
    out = tmp_path / output
    out.write_bytes(PREVIOUS)
    mips = ["--mips"] if output.endswith(".dds") else []  # the DDS reserves its whole size first: refused at once
    result = run_with_file_limit(["tile", "pebbles", "--size", "1024x768", "--tile", "256", *mips, "-o", out], 256 << 10,
                                 tmp_path)
    check_refused(result, [out])


def test_batch(tmp_path):
    outputs = [tmp_path / "a.png", tmp_path / "b.png"]
    for output in outputs:
        output.write_bytes(PREVIOUS)
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("model,size,seed,output\npebbles,512,0,a.png\npebbles,512,1,b.png\n")
    check_refused(run_with_file_limit(["batch", jobs], 64 << 10, tmp_path), outputs[:1])
    assert outputs[1].read_bytes() == PREVIOUS  # never reached


def test_export(tmp_path):
    out = tmp_path / "pebbles.onnx"
    out.write_bytes(PREVIOUS)
    check_refused(run_with_file_limit(["export", out, "--model", "pebbles"], 32 << 10, tmp_path), [out])


def test_a_training_checkpoint(tmp_path):
    out = tmp_path / "m.safetensors"
    out.write_bytes(PREVIOUS)  # the earlier model a failed run must not replace
    result = run_with_file_limit(["train", "texnet", "pebbles", "-o", out, "--iters", "4", "--size", "32", "--batch", "1",
                                  "--descriptor", "random", "--checkpoint-every", "2", "--no-preview"], 64 << 10, tmp_path)
    check_refused(result, [out])
    assert not (tmp_path / "m.state.safetensors").exists()
