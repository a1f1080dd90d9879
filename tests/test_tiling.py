"""texport tile: exact stitching for texture networks, cross-faded ProPO tiles, streamed PNG output."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from texport.runtime.backends import open_backend
from texport.textures.images import PngRowWriter, load_image, save_image
from texport.textures.noise import noise_field
from texport.scale.tiling import TileRequest, iter_bands, texnet_halo, weight_profile

from conftest import one_error_line, run_cli


def _image(runner, *args, texture=None, **kwargs) -> torch.Tensor:
    bands = iter_bands(runner, TileRequest(*args, **kwargs), texture)
    next(bands)
    return torch.cat(list(bands), dim=1)


def test_texnet_tiles_equal_one_pass_over_the_same_field():
    runner = open_backend("pebbles", "torch")
    net = runner.module.network
    with torch.no_grad():
        # tileable: the noise wraps, as in a single circular pass
        tiled = _image(runner, 256, 192, tile=64, seed=3, tileable=True)
        assert float((tiled - net(noise_field(3, 15, 192, 256))[0]).abs().max()) <= 1e-5
        # plain: the centre of one pass over a field larger by the halo (sizes need not fit the tiles)
        h = texnet_halo(16)
        assert h == 96
        tiled = _image(runner, 240, 200, tile=96, seed=5)
        single = net(noise_field(5, 15, 288 + 2 * h, 288 + 2 * h, -h, -h))[0, :, h:h + 200, h:h + 240]
        assert tiled.shape == (3, 200, 240)
        assert float((tiled - single).abs().max()) <= 1e-5


def test_crossfade_weights_sum_to_one_between_neighbours():
    tile, overlap = 256, 64
    w = weight_profile(tile, overlap)
    assert w.shape == (tile + 2 * overlap,) and float(w.min()) > 0 and float(w.max()) == 1.0
    joined = w[tile:] + w[: 2 * overlap]  # the next window starts `tile` pixels later
    assert torch.allclose(joined, torch.ones(2 * overlap))


def test_propo_tiles_wrap_and_have_no_seams(pebbles):
    runner = open_backend("propo", "torch")
    image = _image(runner, 256, 256, tile=128, seed=1, tileable=True, texture=pebbles)
    assert image.shape == (3, 256, 256) and torch.isfinite(image).all()
    # the jump across a tile border (row 127 -> 128) and across the wrap (row 255 -> 0) is like
    # the jump between any two neighbouring rows inside a tile
    step = (image[:, 1:] - image[:, :-1]).abs().mean(dim=(0, 2))
    typical = float(step.median())
    assert float((image[:, 128] - image[:, 127]).abs().mean()) < 2 * typical
    assert float((image[:, 0] - image[:, 255]).abs().mean()) < 2 * typical
    assert float((image[:, :, 0] - image[:, :, 255]).abs().mean()) < 2 * typical


def test_png_row_writer_matches_save_image_and_leaves_nothing_on_failure(tmp_path):
    x = torch.rand(1, 3, 50, 37)
    for bits in (8, 16):
        w = PngRowWriter(tmp_path / f"rows{bits}.png", 37, 50, bits)
        for y in range(0, 50, 16):
            w.write(x[..., y:y + 16, :])
        w.close()
        save_image(x, tmp_path / f"whole{bits}.png", bits=bits)
        assert (tmp_path / f"rows{bits}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert torch.equal(load_image(tmp_path / f"rows{bits}.png"), load_image(tmp_path / f"whole{bits}.png"))
    w = PngRowWriter(tmp_path / "partial.png", 37, 50)
    w.write(x[..., :10, :])
    try:
        w.close()
    except ValueError:
        pass
    assert not (tmp_path / "partial.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows16.png", "rows8.png", "whole16.png", "whole8.png"]


def test_tile_cli(tmp_path):
    out = tmp_path / "big.png"
    result = run_cli("tile", "bark", "-o", str(out), "--size", "400x240", "--tile", "128", "--seed", "2")
    assert result.returncode == 0, result.stderr
    assert "tiles of 128" in result.stdout and load_image(out).shape == (1, 3, 240, 400)


@pytest.mark.parametrize("args,message", [
    (["bark", "--size", "500x200", "--tileable"], "multiples of 16"),
    (["bark", "--size", "256", "--tile", "100"], "multiple of 16"),
    (["propo", "--size", "256", "--tile", "64", "--texture", "pebbles"], "at least 128"),
    (["propo", "--size", "256"], "needs --texture"),
    (["bark", "--size", "256", "--texture", "pebbles"], "--texture is for ProPO"),
], ids=["tileable off the grid", "tile off the grid", "propo tile too small", "propo without texture", "texnet with texture"])
def test_tile_refusals_are_one_line(args, message, tmp_path, cli_main):
    line = one_error_line(cli_main("tile", *args, "-o", tmp_path / "x.png"))
    assert message in line, line
    assert not (tmp_path / "x.png").exists()


def test_receptive_radius_bounds_how_far_one_noise_pixel_reaches():
    """The halo rests on this bound: change one noise pixel, and no output pixel farther away moves."""
    from texport.models.texnet import TextureNetwork, receptive_radius

    for scales in (4, 5):
        torch.manual_seed(0)
        net = TextureNetwork(scales).eval()
        side = 4 * receptive_radius(scales)
        z = noise_field(1, net.input_channels, side, side)
        moved = z.clone()
        moved[0, :, side // 2, side // 2] += 0.5  # the centre pixel of every scale's channels
        with torch.no_grad():
            diff = (net(moved) - net(z)).abs().amax(dim=(0, 1))
        ys, xs = torch.nonzero(diff > 0, as_tuple=True)
        reach = int(max((ys - side // 2).abs().max(), (xs - side // 2).abs().max()))
        assert 0 < reach <= receptive_radius(scales), (scales, reach, receptive_radius(scales))


def test_a_six_scale_network_runs_on_every_cpu_path_at_an_odd_size(tmp_path):
    """Sizes are planned from the model (multiple 32 for 6 scales), not a hard-coded 16."""
    from texport.runtime.sampling import sample_with
    from texport.textures.images import resolve_texture
    from texport.models.loading import load_texnet, sample_texnet
    from texport.training.texnet import TexnetRun, train_texnet

    six = tmp_path / "six.safetensors"
    train_texnet(TexnetRun.of(resolve_texture("pebbles"), six, iters=2, batch=1, size=64, scales=6, descriptor="random", device="cpu", checkpoint_every=0))
    reference = sample_texnet(load_texnet(six), "100x37", seed=4)
    for backend in ("torch", "onnxruntime"):
        image = sample_with(open_backend(six, backend), "100x37", seed=4)
        assert image.shape == (1, 3, 37, 100)
        assert float((image - reference).abs().max()) <= 1e-4, backend
    runner = open_backend(six, "torch")
    h = texnet_halo(runner.size_multiple)
    assert runner.size_multiple == 32 and h == 192
    with torch.no_grad():
        tiled = _image(runner, 100, 70, tile=64, seed=4)
        single = runner.module.network(noise_field(4, 18, 128 + 2 * h, 128 + 2 * h, -h, -h))[0, :, h:h + 70, h:h + 100]
    assert float((tiled - single).abs().max()) <= 1e-5
    res = run_cli("tile", str(six), "-o", str(tmp_path / "t.png"), "--size", "100x70", "--tile", "64")
    assert res.returncode == 0, res.stderr


@pytest.mark.slow
@pytest.mark.parametrize("signum,code,line", [
    ("SIGINT", 130, "texport: interrupted"),
    ("SIGTERM", 143, "texport: terminated (SIGTERM)"),
], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_tile_run_leaves_nothing(signum, code, line, tmp_path):
    """What a user or a batch scheduler does to a long tile run: one line, its exit code, no partial file."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "t.png"
    proc = subprocess.Popen([sys.executable, "-m", "texport", "tile", "pebbles", "-o", str(out), "--size", "4096",
                             "--tile", "512", "--backend", "torch"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not any(p.name.endswith(".tmp") for p in tmp_path.iterdir()):  # the PNG is being written
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(getattr(signal, signum))
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, (proc.returncode, stderr)
    assert stderr.strip().splitlines()[-1] == line and "Traceback" not in stderr, stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_thread_counts_change_at_most_a_few_pixels_by_one_level(tmp_path):
    """The guarantee is the same bytes at the same thread count (what Ray runs and one process share);
    between 1 and 2 threads PyTorch's kernels sum in another order, so a few pixels may move by one level."""
    images = []
    for threads in (1, 2):
        out = tmp_path / f"t{threads}.png"
        proc = subprocess.run([sys.executable, "-m", "texport", "tile", "pebbles", "-o", str(out), "--size", "1024x768",
                               "--tile", "256", "--seed", "3"], env={**os.environ, "OMP_NUM_THREADS": str(threads)},
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        images.append(np.asarray(Image.open(out), dtype=np.int16))
    difference = np.abs(images[0] - images[1])
    assert difference.max() <= 1
    assert np.count_nonzero(difference) <= 1e-3 * difference.size  # measured: 15 of 786,432 values
