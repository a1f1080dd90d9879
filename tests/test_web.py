"""The browser page (cli/examples/web) reproduces Python's image of an exported texture network, and
its Solid tab Python's volume of an exported solid texture network.

The page's logic lives in JS modules: cli/examples/web/texnet.js (noise contract, size plan,
onnxruntime-web WASM run, 8-bit conversion) and solid.js (the 3D noise contract and the solid
graph's run); node.mjs runs those same modules in Node and browser.mjs drives the page itself in
headless Chromium. References are texport's onnxruntime backend (`sample_with`, the path `texport
synth MODEL.onnx --backend onnxruntime` takes) and the PNG that command writes; for the Solid tab,
the solid graph on Python's onnxruntime and the volume of `texport synth pebbles-solid --size NxNxN
--tileable`, and the carved object (carve.js, WebGL2) against the same scene rendered in numpy.

The `web_example` fixture runs cli/examples/web/setup.sh (npm ci from package-lock.json and the
pebbles and pebbles-solid exports; about 0.1 s once done): a failed setup fails these tests, it never
skips them. Only the Chromium tests skip, and only when /usr/bin/chromium (Debian's `chromium`) is
not installed.
"""

from __future__ import annotations

import functools
import itertools
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
from texport.models.loading import load_solid
from texport.scale.volumes import VolumeRequest, synthesize_volume
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


# carve.js's scene: the object leans TILT degrees towards the viewer, the view is 2 * EXTENT object units wide
TILT, EXTENT, SOLID_CANVAS = 30.0, 1.8, 384  # carve.js, and the #solid canvas in index.html


def _texture_linear_repeat(volume: np.ndarray, stu: np.ndarray) -> np.ndarray:
    """GL_LINEAR sampling of a GL_REPEAT 3D texture: volume [D, H, W, 3] at texture coordinates stu [N, 3] (x, y, z)."""
    d, h, w = volume.shape[:3]
    c = stu * [w, h, d] - 0.5  # texel i's centre is at (i + 0.5) / side
    i0 = np.floor(c).astype(np.int64)
    f = c - i0
    out = np.zeros((len(stu), 3))
    for corner in itertools.product((0, 1), repeat=3):
        i = i0 + corner
        weight = np.prod(np.where(corner, f, 1 - f), axis=-1)
        out += weight[:, None] * volume[i[:, 2] % d, i[:, 1] % h, i[:, 0] % w]
    return out


def render_carved_like_carve_js(volume: np.ndarray, degrees: float, shape: str, side: int = SOLID_CANVAS) -> np.ndarray:
    """The canvas carve.js draws for a uint8 volume [D, H, W, 3], in numpy: uint8 [side, side, 3], white background."""
    tilt, turn = np.radians(TILT), np.radians(degrees - 45)
    ct, st, ca, sa = np.cos(tilt), np.sin(tilt), np.cos(turn), np.sin(turn)
    rotation = np.array([[1, 0, 0], [0, ct, -st], [0, st, ct]]) @ np.array([[ca, 0, sa], [0, 1, 0], [-sa, 0, ca]])
    centres = ((np.arange(side) + 0.5) / side * 2 - 1) * EXTENT
    u, v = np.meshgrid(centres, centres[::-1])  # image rows go down, gl_FragCoord.y up
    o = np.stack([u, v, np.full_like(u, 3.0)], axis=-1) @ rotation  # view -> object (row vectors: rotation^T)
    d = np.array([0.0, 0.0, -1.0]) @ rotation
    d = np.where(np.abs(d) < 1e-7, 1e-7, d)
    best, normal = np.full(u.shape, np.inf), np.zeros(u.shape + (3,))
    for k in range(7):  # the octants but +++, as carve.js
        lo = np.array([k & 1, k >> 1 & 1, k >> 2 & 1]) - 1.0
        t0, t1 = (lo - o) / d, (lo + 1 - o) / d
        tn, tf = np.minimum(t0, t1), np.maximum(t0, t1)
        enter, leave = tn.max(-1), tf.min(-1)
        n = -np.sign(d) * (tn == enter[..., None])
        if shape == "sphere":
            b = o @ d
            q = o - b[..., None] * d
            disc = 1 - (q * q).sum(-1)
            root = np.sqrt(np.maximum(disc, 0))
            n = np.where((-b - root > enter)[..., None], o + (-b - root)[..., None] * d, n)
            enter, leave = np.maximum(enter, -b - root), np.where(disc >= 0, np.minimum(leave, -b + root), -np.inf)
        closer = (enter <= leave) & (enter < best)
        best[closer], normal[closer] = enter[closer], n[closer]
    hit = np.isfinite(best)
    p = o[hit] + best[hit][:, None] * d
    n = normal[hit] @ rotation.T  # object -> view
    light = np.array([0.5, 0.8, 0.9]) / np.linalg.norm([0.5, 0.8, 0.9])
    shade = 0.45 + 0.55 * np.clip(n / np.linalg.norm(n, axis=-1, keepdims=True) @ light, 0, None)
    image = np.ones(u.shape + (3,))
    image[hit] = _texture_linear_repeat(volume / 255.0, p * 0.5 + 0.5) * shade[:, None]
    return np.round(image * 255).astype(np.uint8)


@needs_chromium
def test_web_solid_tab_in_chromium(solid_onnx, web_server, tmp_path):
    """The Solid tab in headless Chromium: still frames (angle=) of the carved cube and sphere equal the same scene
    rendered in numpy from texport's volume; "new sample" changes the texture, not the object; without angle= it
    turns; a model of the other kind, or a side off the grid, is a one-line error on the page."""
    n, seed = SOLID_SIDE, 5
    base = f"{web_server}/?tab=solid&size={n}&seed={seed}"
    steps = [f"{base}&angle=20", f"{base}&angle=30&shape=sphere", "click:#new-sample", base, "wait:1000",
             f"{web_server}/?tab=solid&model=models/pebbles.onnx", f"{web_server}/?model=models/pebbles-solid.onnx",
             f"{web_server}/?tab=solid&size=40"]
    shots = tmp_path / "shots"
    env = dict(os.environ, CHROMIUM=str(CHROMIUM))
    result = subprocess.run(["node", "browser.mjs", shots, *steps], cwd=WEB, capture_output=True, text=True, timeout=600,
                            env=env)
    assert result.returncode == 0, f"browser.mjs failed:\n{result.stderr[-3000:]}"
    report = json.loads(result.stdout)
    pages = report["steps"]

    def shot(i: int) -> np.ndarray:
        assert pages[i]["canvases"] == ["solid"], (pages[i], report["log"])
        return np.asarray(Image.open(shots / f"step{i}-solid.png").convert("RGB")).astype(int)

    for i, want_seed in enumerate((seed, seed, seed + 1, seed)):
        assert pages[i]["state"] == "ready" and pages[i]["seed"] == str(want_seed), (pages[i], report["log"])
        assert f"seed {want_seed}, {n}x{n}x{n}" in pages[i]["status"], pages[i]

    volume = synthesize_volume(load_solid("pebbles-solid").network, VolumeRequest((n, n, n), seed=seed, tileable=True))
    measured = []
    for i, (degrees, shape) in enumerate(((20, "cube"), (30, "sphere"))):
        got, want = shot(i), render_carved_like_carve_js(volume, degrees, shape).astype(int)
        assert got.shape == want.shape, (got.shape, pages[i]["rects"])
        inside = (want != 255).any(-1)
        assert 0.15 < inside.mean() < 0.7 and want[inside].std() > 10  # the reference shows a textured object
        diff = np.abs(got - want).max(-1)
        assert np.median(diff[inside]) <= 1 and (diff > 2).mean() <= 0.001, (shape, np.percentile(diff, [50, 99, 99.9]))
        measured.append(f"web: solid tab, {shape} at {degrees} degrees: {100 * (diff > 2).mean():.2f}% of pixels more "
                        f"than 2 levels off numpy's rendering, max {diff.max()}")

    def silhouette(image: np.ndarray) -> np.ndarray:
        return (image != 255).any(-1)

    sphere, next_seed = shot(1), shot(2)  # the same object at the same angle, carved from seed 6's volume
    assert (silhouette(sphere) == silhouette(next_seed)).mean() > 0.999
    assert (np.abs(sphere - next_seed).max(-1) > 16)[silhouette(sphere)].mean() > 0.3
    turning, later = shot(3), shot(4)  # no angle: a second later the cube has turned
    assert 0.15 < silhouette(turning).mean() < 0.7 and 0.15 < silhouette(later).mean() < 0.7
    assert (np.abs(turning - later).max(-1) > 16).mean() > 0.1, "the object does not turn"  # colours: a quarter turn keeps the outline

    for i, words in ((5, "a texture network (2D): the Texture tab shows it"), (6, "a solid texture network: the Solid tab"),
                     (7, "must be a multiple of 16")):
        assert pages[i]["state"] == "error" and words in pages[i]["status"], pages[i]
        assert "\n" not in pages[i]["status"] and len(pages[i]["status"]) < 200, pages[i]
        assert i == 6 or pages[i]["canvases"] == [], pages[i]  # the Solid tab shows the message, no empty canvas
    print("\n".join(measured))
