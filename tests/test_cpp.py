"""The C++ host (cli/examples/cpp) reproduces Python's image of an exported texture network.

The host makes the noise from texport's written contract and plans the size itself; its float
output must equal the onnxruntime backend's (`sample_with`, the path `texport synth MODEL.onnx
--backend onnxruntime` takes) and its 8-bit PPM the PNG that command writes. The fixture runs
cli/examples/cpp/build.sh (fast once built; the first run fetches Debian's onnxruntime headers):
a failed build fails these tests, it never skips them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from texport.runtime.backends import open_backend
from texport.runtime.sampling import sample_with
from texport.export.exporter import export
from texport.textures.images import to_uint8

ROOT = Path(__file__).resolve().parents[1]
CPP = ROOT / "cli" / "examples" / "cpp"
SIZE = (77, 45)  # width x height, neither a multiple of 16: generated at 80x48, cropped
SEEDS = (7, 3_000_000_019)  # the second above 2^31: the seed is taken as unsigned 32 bits


@pytest.fixture(scope="session")
def cpp_host() -> Path:
    """build.sh against this interpreter's onnxruntime wheel; the built program."""
    env = dict(os.environ, TEXPORT_VENV=sys.prefix)
    result = subprocess.run(["bash", str(CPP / "build.sh")], capture_output=True, text=True, env=env, timeout=900)
    if result.returncode != 0:
        pytest.fail(f"cli/examples/cpp/build.sh failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    host = CPP / "build" / "texport_host"
    assert host.is_file(), result.stderr
    return host


@pytest.fixture(scope="session")
def pebbles_onnx(tmp_path_factory) -> Path:
    return export(tmp_path_factory.mktemp("cpp") / "pebbles.onnx")[0].path


def run_host(host: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(host), *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("seed", SEEDS)
def test_cpp_host_reproduces_python(seed, cpp_host, pebbles_onnx, tmp_path, cli_main):
    w, h = SIZE
    result = run_host(cpp_host, pebbles_onnx, f"{w}x{h}", seed, tmp_path / "cpp", 1)
    assert result.returncode == 0, result.stderr
    assert "80x48 grid" in result.stdout, result.stdout
    got = np.fromfile(tmp_path / "cpp.f32", dtype="<f4")
    assert got.size == 3 * h * w
    got = got.reshape(3, h, w)
    ppm = np.asarray(Image.open(tmp_path / "cpp.ppm"))
    assert ppm.shape == (h, w, 3) and ppm.dtype == np.uint8

    # floats: the onnxruntime backend on the same file and seed
    want = sample_with(open_backend(pebbles_onnx, "onnxruntime", device="cpu"), SIZE, seed=seed)[0]
    float_diff = float(np.abs(got - want.numpy()).max())
    # 8 bits: what `texport synth MODEL.onnx --backend onnxruntime` writes, and to_uint8 of the floats
    png = tmp_path / "python.png"
    cli = cli_main("synth", pebbles_onnx, "--backend", "onnxruntime", "--device", "cpu", "--size", f"{w}x{h}",
                   "--seed", seed, "-o", png)
    assert cli.returncode == 0, cli.stderr
    written = np.asarray(Image.open(png).convert("RGB")).astype(int)
    quantized = to_uint8(want).permute(1, 2, 0).numpy().astype(int)
    png_diff = int(np.abs(ppm.astype(int) - written).max())
    u8_diff = int(np.abs(ppm.astype(int) - quantized).max())
    print(f"seed {seed}: float max abs diff {float_diff:.3g}, 8-bit max diff {png_diff} (PNG), {u8_diff} (to_uint8)")
    assert float_diff <= 1e-5
    assert png_diff <= 1 and u8_diff <= 1
    assert float(torch.from_numpy(got).std()) > 0.02  # an image, not a constant


def test_cpp_host_refuses_bad_input_in_one_line(cpp_host, pebbles_onnx, tmp_path):
    for args in ([pebbles_onnx, "8x8", 0], [pebbles_onnx, "77y45", 0], [tmp_path / "missing.onnx", 64, 0]):
        result = run_host(cpp_host, *args, tmp_path / "out")
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
    assert not list(tmp_path.glob("out*"))
