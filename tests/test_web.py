"""The browser page (cli/examples/web) reproduces Python's image of an exported texture network, and
its Solid tab Python's volume of an exported solid texture network.

The page's logic lives in JS modules: cli/examples/web/texnet.js (noise contract, size plan,
onnxruntime-web WASM run, 8-bit conversion) and solid.js (the 3D noise contract and the solid
graph's run); node.mjs runs those same modules in Node and browser.mjs drives the page itself in
headless Chromium. References are texport's onnxruntime backend (`sample_with`, the path `texport
synth MODEL.onnx --backend onnxruntime` takes) and the PNG that command writes; for the Solid tab,
the solid graph on Python's onnxruntime and the volume of `texport synth pebbles-solid --size NxNxN
--tileable`.

The `web_example` fixture runs cli/examples/web/setup.sh (npm ci from package-lock.json and the
pebbles and pebbles-solid exports; about 0.1 s once done): a failed setup fails these tests, it never
skips them. Only the Chromium tests skip, and only when /usr/bin/chromium (Debian's `chromium`) is
not installed.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from texport.runtime.backends import open_backend
from texport.runtime.sampling import sample_with
from texport.errors import TexportError
from texport.textures.images import to_uint8
from texport.textures.noise import noise_field, noise_volume
from texport.textures.sizes import plan_size

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "cli" / "examples" / "web"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
SIZE = (77, 45)  # width x height, neither a multiple of 16: generated at 80x48, cropped
SEEDS = (7, 3_000_000_019)  # the second above 2^31: the seed is taken as unsigned 32 bits
SOLID_SIDE = 32  # the Solid tab's cube in these tests: twice the model's grid (16), quick in WASM
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: install Debian's chromium "
                                    "(apt-get install --no-install-recommends chromium) to run the page in a browser")


@pytest.fixture(scope="session")
def web_example() -> Path:
    """setup.sh against this interpreter's texport; the exported model the page loads by default."""
    if shutil.which("node") is None:
        pytest.fail("node is not installed (the web example needs Node 18 or newer and npm: apt-get install nodejs npm)")
    env = dict(os.environ, TEXPORT_VENV=sys.prefix)
    result = subprocess.run(["bash", str(WEB / "setup.sh")], capture_output=True, text=True, env=env, timeout=900)
    if result.returncode != 0:
        pytest.fail(f"cli/examples/web/setup.sh failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    model = WEB / "models" / "pebbles.onnx"
    assert model.is_file(), result.stdout + result.stderr
    assert (WEB / "models" / "pebbles-solid.onnx").is_file(), result.stdout + result.stderr
    return model


@pytest.fixture(scope="session")
def solid_onnx(web_example) -> Path:
    """The exported solid network the Solid tab loads by default (setup.sh exports it beside pebbles)."""
    return WEB / "models" / "pebbles-solid.onnx"


def node(*args, timeout: int = 300) -> str:
    result = subprocess.run(["node", *map(str, args)], cwd=WEB, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"node {' '.join(map(str, args))} failed:\n{result.stderr[-3000:]}"
    return result.stdout


@functools.lru_cache(maxsize=None)
def python_image(model: Path, seed: int, size: tuple[int, int]) -> np.ndarray:
    """The onnxruntime backend's float image, [3, H, W]."""
    return sample_with(open_backend(model, "onnxruntime"), size, seed=seed)[0].numpy()


def test_web_noise_and_size_plan_match_python(web_example, tmp_path):
    # the noise fed to the graph, bit for bit, for a seed above 2^31
    seed = SEEDS[1]
    info = json.loads(node("node.mjs", "sample", web_example, seed, "77x45", tmp_path / "js"))
    assert (info["gridWidth"], info["gridHeight"], info["channels"], info["multiple"]) == (80, 48, 15, 16), info
    js_noise = np.fromfile(tmp_path / "js.noise.f32", dtype="<f4").reshape(15, 48, 80)
    assert np.array_equal(js_noise, noise_field(seed, 15, 48, 80)[0].numpy())

    # plan_size, including Python's round-half-to-even when snapping (24 / 16 = 1.5) and its refusals
    cases = [(s, 16, 16, t, snap) for s in ("77x45", "16", "24", "40", "17x300", "1024x768", "15x40", "8193x16", "2x3x4", "big")
             for t in (False, True) for snap in (False, True)] + [("50x33", 32, 64, False, False), ("24", 8, 8, True, True)]
    js_plans = json.loads(node("node.mjs", "plan", json.dumps(cases)))
    for (size, multiple, min_side, tileable, snap), js in zip(cases, js_plans, strict=True):
        try:
            p = plan_size(size, multiple, min_side, tileable, snap)
            want = {"width": p.width, "height": p.height, "gridWidth": p.grid_width, "gridHeight": p.grid_height}
        except TexportError:
            want = "error"
        assert (js if "error" not in js else "error") == want, (size, multiple, min_side, tileable, snap, js)


@pytest.mark.parametrize("seed", SEEDS)
def test_web_node_wasm_matches_python(seed, web_example, tmp_path, cli_main):
    """onnxruntime-web's WASM backend in Node, through the page's module, against Python's float and PNG."""
    w, h = SIZE
    info = json.loads(node("node.mjs", "sample", web_example, seed, f"{w}x{h}", tmp_path / "js"))
    assert (info["width"], info["height"], info["gridWidth"], info["gridHeight"]) == (w, h, 80, 48), info
    got = np.fromfile(tmp_path / "js.f32", dtype="<f4").reshape(3, h, w)
    want = python_image(web_example, seed, SIZE)
    diff = float(np.abs(got - want).max())
    assert diff <= 1e-4, diff

    png = tmp_path / "python.png"
    result = cli_main("synth", web_example, "--backend", "onnxruntime", "--seed", seed, "--size", f"{w}x{h}", "-o", png)
    assert result.returncode == 0, result.stderr
    python8 = np.asarray(Image.open(png).convert("RGB")).astype(int)
    js8 = np.fromfile(tmp_path / "js.u8", dtype=np.uint8).reshape(3, h, w).transpose(1, 2, 0).astype(int)
    assert np.abs(js8 - python8).max() <= 1
    # and the JS conversion is texport's: its own floats quantize to exactly its bytes
    assert np.array_equal(js8, to_uint8(torch.from_numpy(got)).permute(1, 2, 0).numpy())
    print(f"web: seed {seed}: Node WASM vs Python float max abs diff {diff:.3g}, 8-bit max diff "
          f"{np.abs(js8 - python8).max()} levels")  # after cli_main, whose capture would swallow it


def test_web_3d_noise_matches_python(web_example, tmp_path):
    """solid.js's noiseVolume is noise.noise_volume bit for bit: a seed above 2^31, negative origins,
    coordinates past 2^31 (taken as their 32 bits, as Python masks them)."""
    cases = [(0, 15, (5, 4, 3), (0, 0, 0)), (SEEDS[1], 6, (4, 3, 5), (-5, 7, -2**31)), (7, 3, (6, 2, 3), (2**31 - 3, -1, 123_456))]
    for i, (seed, channels, (w, h, d), (x, y, z)) in enumerate(cases):
        out = tmp_path / f"noise{i}.f32"
        node("node.mjs", "noise3", seed, channels, f"{w}x{h}x{d}", f"{x},{y},{z}", out)
        got = np.fromfile(out, dtype="<f4").reshape(channels, d, h, w)
        assert np.array_equal(got, noise_volume(seed, channels, d, h, w, x, y, z)[0].numpy()), (seed, x, y, z)


@pytest.mark.parametrize("seed", (5, SEEDS[1]))
def test_web_node_solid_volume_matches_python(seed, solid_onnx, tmp_path, cli_main):
    """The Solid tab's volume (solid.js, onnxruntime-web's WASM backend in Node) against the same graph on
    Python's onnxruntime, and its bytes against `texport synth pebbles-solid --size NxNxN --tileable`."""
    n = SOLID_SIDE
    info = json.loads(node("node.mjs", "volume", solid_onnx, seed, n, tmp_path / "js"))
    assert (info["side"], info["multiple"]) == (n, 16), info
    got = np.fromfile(tmp_path / "js.f32", dtype="<f4").reshape(3, n, n, n)
    want = open_backend(solid_onnx, "onnxruntime")(noise_volume(seed, info["channels"], n, n, n))[0].numpy()
    diff = float(np.abs(got - want).max())
    assert diff <= 1e-4, diff

    npy = tmp_path / "python.npy"
    result = cli_main("synth", "pebbles-solid", "--size", f"{n}x{n}x{n}", "--tileable", "--seed", seed, "-o", npy)
    assert result.returncode == 0, result.stderr
    python8 = np.load(npy).astype(int)  # [D, H, W, 3]
    js8 = np.fromfile(tmp_path / "js.u8", dtype=np.uint8).reshape(3, n, n, n).transpose(1, 2, 3, 0).astype(int)
    assert python8.shape == js8.shape and python8.std() > 10  # a textured volume, not a flat one
    assert np.abs(js8 - python8).max() <= 1
    assert np.array_equal(js8, to_uint8(torch.from_numpy(got)).permute(1, 2, 3, 0).numpy())
    print(f"web: solid seed {seed}, {n}^3: Node WASM vs Python onnxruntime max abs diff {diff:.3g}, vs texport synth "
          f"--tileable {np.abs(js8 - python8).max()} levels; {info['seconds']:.2f} s in Node")


class _Quiet(SimpleHTTPRequestHandler):
    """A static server with the MIME types module scripts and WASM need, whatever /etc/mime.types says."""

    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript", ".mjs": "text/javascript",
                      ".wasm": "application/wasm", ".onnx": "application/octet-stream", ".html": "text/html"}

    def log_message(self, format, *args):
        pass


@pytest.fixture
def web_server(web_example):
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(WEB)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@needs_chromium
def test_web_page_in_chromium(web_example, web_server, tmp_path, cli_main):
    """The page in headless Chromium: a tileable sample, "new sample" (the next seed), then an odd-size crop;
    each canvas screenshot (device scale factor 1) equals texport's PNG within two levels."""
    steps = [  # (what browser.mjs does, the seed and size the page must then show, tileable)
        (f"{web_server}/?size=112x80&seed=3", 3, (112, 80), True),
        ("click:#new-sample", 4, (112, 80), True),
        (f"{web_server}/?size={SIZE[0]}x{SIZE[1]}&seed={SEEDS[1]}&tileable=0", SEEDS[1], SIZE, False),
    ]
    shots = tmp_path / "shots"
    env = dict(os.environ, CHROMIUM=str(CHROMIUM))
    result = subprocess.run(["node", "browser.mjs", shots, *(s[0] for s in steps)], cwd=WEB, capture_output=True,
                            text=True, timeout=600, env=env)
    assert result.returncode == 0, f"browser.mjs failed:\n{result.stderr[-3000:]}"
    report = json.loads(result.stdout)
    measured = []
    for i, (step, seed, (w, h), tileable) in enumerate(steps):
        page = report["steps"][i]
        assert page["state"] == "ready" and page["seed"] == str(seed), (page, report["log"])
        assert f"seed {seed}, {w}x{h}" in page["status"], page
        png = tmp_path / f"python{i}.png"
        args = ["synth", WEB / "models" / "pebbles.onnx", "--backend", "onnxruntime", "--seed", seed,
                "--size", f"{w}x{h}", "-o", png] + (["--tileable"] if tileable else [])
        assert cli_main(*args).returncode == 0
        python8 = np.asarray(Image.open(png).convert("RGB")).astype(int)
        shot = np.asarray(Image.open(shots / f"step{i}-texture.png").convert("RGB")).astype(int)
        assert shot.shape == python8.shape, (shot.shape, python8.shape, page["rects"])
        diff = int(np.abs(shot - python8).max())
        assert diff <= 2, diff
        # the repeated view (WebGL quad, or a 2D pattern without WebGL) shows the same pixels 3x3
        tiled = np.asarray(Image.open(shots / f"step{i}-tiled.png").convert("RGB")).astype(int)
        assert tiled.shape == (3 * h, 3 * w, 3), (tiled.shape, page["rects"])
        tiled_diff = int(np.abs(tiled - np.tile(python8, (3, 3, 1))).max())
        assert tiled_diff <= 2, page["tiled"]
        measured.append(f"web: step {i}, seed {seed}, {w}x{h}: canvas screenshot vs texport PNG max diff {diff} "
                        f"levels; repeated view ({page['tiled']}) {tiled_diff}")
    print("\n".join(measured))

