"""Solid textures (Gutierrez et al. 2020): the 3D noise contract, windows of one infinite volume, the
block lattice, volume files, single-slice training, export and the CLI."""

from __future__ import annotations

import importlib.util
import struct
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import texture2ddecoder
from PIL import Image

from conftest import one_error_line, run_until_checkpoint_then_sigterm

import texport.textures.noise as noise
from texport.errors import TexportError
from texport.export.exporter import export
from texport.models.checkpoints import load_stored_exemplar, read_manifest
from texport.models.handle import open_model
from texport.models.loading import load_solid
from texport.models.solid import SolidNetwork, plan_axis, receptive_radius
from texport.runtime.backends import open_backend
from texport.runtime.volumes import BlockComputer
from texport.scale.volumes import VolumeRequest, parse_origin, parse_volume_size, pieces, synthesize_volume, write_volume
from texport.textures.carve import render_carved
from texport.textures.dds import DdsOptions
from texport.textures.dds_volume import volume_level_sizes
from texport.textures.images import resolve_texture, to_uint8
from texport.training.solid import PLACE, SolidRun, as_slice, draw_step, slice_window, train_solid
from texport.training.runs import state_path
from test_texnet import _hash32_reference


def _network(scales: int = 3, seed: int = 0) -> SolidNetwork:
    """A small network with BatchNorm statistics and affine parameters far from the identity."""
    torch.manual_seed(seed)
    net = SolidNetwork(scales=scales, width=3).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2), m.weight.data.uniform_(0.5, 2)
    return net


def test_3d_noise_matches_the_written_contract_and_leaves_the_2d_field_alone():
    seed, c, (d, h, w), (x0, y0, z0) = 9, 3, (4, 5, 6), (-3, 2**31 - 2, -7)
    field = noise.noise_volume(seed, c, d, h, w, x0, y0, z0).numpy()
    with np.errstate(over="ignore"):
        hc = _hash32_reference(np.arange(c, dtype=np.uint32) + _hash32_reference(np.array([seed])))
        zs, ys, xs = ((np.arange(n, dtype=np.int64) + o).astype(np.uint32) for n, o in ((d, z0), (h, y0), (w, x0)))
        hz = _hash32_reference(zs[None, :] + hc[:, None])
        hy = _hash32_reference(ys[None, None, :] + hz[:, :, None])
        hx = _hash32_reference(xs[None, None, None, :] + hy[:, :, :, None])
    assert np.array_equal(field[0], (hx >> np.uint32(8)).astype(np.float32) * np.float32(2.0**-24))
    # the 2D field is its own, one hash less deep (tests/test_texnet.py pins it to its contract)
    assert not torch.equal(noise.noise_volume(1, 1, 1, 4, 4)[0, :, 0], noise.noise_field(1, 1, 4, 4)[0])
    # windows and channel offsets are random access; scales3 subsamples every axis
    big = noise.noise_volume(3, 4, 8, 8, 8, batch=2)
    assert torch.equal(noise.noise_volume(3, 4, 2, 3, 4, x0=4, y0=5, z0=6, batch=2), big[:, :, 6:8, 5:8, 4:8])
    assert torch.equal(noise.noise_at3(3, 2, *(torch.arange(8),) * 3, first_channel=2), big[:1, 2:4])
    assert [tuple(s.shape) for s in noise.scales3(big, 2)] == [(2, 2, 8, 8, 8), (2, 2, 4, 4, 4)]


def test_windows_of_the_infinite_volume_agree_one_voxel_slabs_included():
    net = _network()
    with torch.no_grad():
        big = net.window(3, (-5, 2, 7), (40, 36, 33))
        for origin, size in (((4, 6, 18), (13, 1, 17)), ((-5, 2, 7), (1, 36, 33)), ((26, 20, 39), (9, 9, 1))):
            (x, y, z), (w, h, d) = origin, size
            small = net.window(3, origin, size)
            assert (big[:, :, z - 7:z - 7 + d, y - 2:y - 2 + h, x + 5:x + 5 + w] - small).abs().max() <= 1e-6
    assert big.std() > 0.01  # not a flat volume any wiring would reproduce
    # a slab is the slice the trainer reads, rows and columns as documented
    origin, size = slice_window("y", (1, 2, 3), 16)
    assert size == (16, 1, 16)
    assert as_slice(torch.zeros(1, 3, 16, 1, 16), "y").shape == (1, 3, 16, 16)
    assert draw_step(0, 5, 16) == draw_step(0, 5, 16) and draw_step(0, 5, 16) != draw_step(0, 6, 16)


def test_receptive_radius_bounds_how_far_one_noise_voxel_reaches():
    net = _network(scales=3)
    radius = receptive_radius(3)
    assert plan_axis(0, 8, 3).noise[0] == (-4, 12)  # the finest scale's halo: two blocks of two 3x3x3 convolutions
    with torch.no_grad():
        z, plans = net.window_noise(1, (0, 0, 0), (24, 24, 24))
        base = net.generate(z, plans)
        # the finest noise voxel at the volume's centre, shifted: only voxels within the radius move
        i = 12 - plans[0].noise[0][0]
        z[0][:, :, i, i, i] += 0.5
        moved = (net.generate(z, plans) - base).abs().amax(dim=(0, 1)) > 0
    where = moved.nonzero()
    assert len(where) and int((where - 12).abs().max()) <= radius


def test_periodic_graph_equals_the_tileable_window_and_wraps():
    net = _network()
    n = 16
    with torch.no_grad():
        periodic = net(noise.noise_volume(5, net.input_channels, n, n, n))
        assert torch.equal(periodic, net.window(5, (0, 0, 0), (n, n, n), period=(n, n, n)))
        shifted = net.window(5, (n - 3, 2, 5), (7, 5, 20), period=(n, n, n))

    def idx(o, k):
        return torch.arange(o, o + k) % n

    expected = periodic[:, :, idx(5, 20)][:, :, :, idx(2, 5)][:, :, :, :, idx(n - 3, 7)]
    assert (shifted - expected).abs().max() <= 1e-6
    # the exported graph's recipe for a window of the infinite volume: noise grown by the halo, keep the centre
    m = net.size_multiple
    h = -(-receptive_radius(net.scales) // m) * m
    (x0, y0, z0), (w, hh, d) = (8, -4, 12), (8, 4, 12)
    with torch.no_grad():
        grown = net(noise.noise_volume(7, net.input_channels, d + 2 * h, hh + 2 * h, w + 2 * h, x0 - h, y0 - h, z0 - h))
        window = net.window(7, (x0, y0, z0), (w, hh, d))
    assert (grown[:, :, h:h + d, h:h + hh, h:h + w] - window).abs().max() <= 1e-5


def test_any_block_of_the_lattice_equals_the_crop_of_a_bigger_volume_bit_for_bit():
    net = _network()
    big = synthesize_volume(net, VolumeRequest((40, 36, 50), (-13, 5, 60), seed=2, block=16))
    for (x, y, z), (w, h, d) in (((4, 8, 81), (9, 20, 7)), ((-13, 5, 60), (1, 1, 50)), ((26, 40, 109), (1, 1, 1))):
        small = synthesize_volume(net, VolumeRequest((w, h, d), (x, y, z), seed=2, block=16))
        assert np.array_equal(big[z - 60:z - 60 + d, y - 5:y - 5 + h, x + 13:x + 13 + w], small)
    assert big.std() > 2
    # tileable: any origin gives the same periodic volume, rolled
    base = synthesize_volume(net, VolumeRequest((32, 16, 24), seed=1, tileable=True, block=16))
    rolled = synthesize_volume(net, VolumeRequest((32, 16, 24), (20, -3, 30), seed=1, tileable=True, block=16))
    assert np.array_equal(np.roll(base, (-30, 3, -20), axis=(0, 1, 2)), rolled)
    assert pieces(-3, 10, 4, None) == [(0, -1, 1, 3), (3, 0, 0, 4), (7, 1, 0, 3)]
    with pytest.raises(TexportError):
        synthesize_volume(net, VolumeRequest((30, 16, 24), tileable=True, block=16))


def test_the_slices_benchmark_cuts_slices_of_the_seeds_volume(monkeypatch):
    """benchmarks/solid.py --parts slices measures one-voxel windows (SolidNetwork.window, as training draws
    them): each is, to 8-bit rounding, the same slice of a larger volume of the seed from the block lattice
    (`texport synth`), rows and columns as the .npy layout; its random places are repeatable."""
    bench = Path(__file__).resolve().parent.parent / "benchmarks"
    monkeypatch.syspath_prepend(str(bench))
    loaded = {}
    for name, file in (("gatys", "gatys.py"), ("solid_benchmark_under_test", "solid.py")):
        spec = importlib.util.spec_from_file_location(name, bench / file)
        loaded[name] = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, loaded[name])
        spec.loader.exec_module(loaded[name])
    module = loaded["solid_benchmark_under_test"]
    net, seed, (x0, y0, z0), side = _network(), 4, (-21, 13, 40), 20
    volume = synthesize_volume(net, VolumeRequest((side, side, side), (x0, y0, z0), seed=seed, block=16)).astype(int)
    assert volume.std() > 2
    for direction, k in (("x", 3), ("y", 11), ("z", 19)):
        place = {"x": (x0 + k, y0, z0), "y": (x0, y0 + k, z0), "z": (x0, y0, z0 + k)}[direction]
        got = to_uint8(module.volume_slice(net, seed, direction, place, side))[0].permute(1, 2, 0).numpy().astype(int)
        want = {"x": volume[:, :, k], "y": volume[:, k], "z": volume[k]}[direction]
        assert np.abs(got - want).max() <= 1 and (got != want).mean() < 0.01, direction
    places = module.slice_places(2, "y", 4, side)
    assert places == module.slice_places(2, "y", 4, side) != module.slice_places(2, "z", 4, side)
    assert len(set(places)) == 4 and all(-PLACE <= v < PLACE - side for p in places for v in p)


def test_volume_files_npy_slices_and_dds_volume(tmp_path):
    net = _network()
    request = VolumeRequest((20, 12, 9), (3, -4, 5), seed=2, block=16)
    volume = synthesize_volume(net, request)
    write_volume(net, tmp_path / "v.npy", request)
    assert np.array_equal(np.load(tmp_path / "v.npy"), volume) and volume.shape == (9, 12, 20, 3)
    write_volume(net, f"{tmp_path}/slices/", request)
    names = sorted(p.name for p in (tmp_path / "slices").iterdir())
    assert names == [f"slice-{i:04d}.png" for i in range(9)]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "slices" / names[4]).convert("RGB")), volume[4])
    write_volume(net, tmp_path / "v.dds", request, DdsOptions("rgba8", srgb=False, mips=True))
    data = (tmp_path / "v.dds").read_bytes()
    size, flags, height, width, pitch, depth, levels = struct.unpack_from("<7I", data, 4)
    caps, caps2 = struct.unpack_from("<2I", data, 4 + 104)
    dxgi, dimension = struct.unpack_from("<2I", data, 128)
    assert (size, height, width, depth, levels, pitch) == (124, 12, 20, 9, 5, 80)
    assert flags & 0x800000 and caps2 == 0x200000 and dimension == 4 and dxgi == 28 and caps & 0x400000
    sizes = volume_level_sizes(20, 12, 9)
    assert sizes == [(20, 12, 9), (10, 6, 4), (5, 3, 2), (2, 1, 1), (1, 1, 1)]
    assert len(data) == 148 + sum(4 * w * h * d for w, h, d in sizes)
    level0 = np.frombuffer(data[148:148 + 20 * 12 * 9 * 4], np.uint8).reshape(9, 12, 20, 4)
    assert np.array_equal(level0[..., :3], volume) and (level0[..., 3] == 255).all()
    level1 = np.frombuffer(data[148 + 20 * 12 * 9 * 4:][:10 * 6 * 4 * 4], np.uint8).reshape(4, 6, 10, 4)[..., :3]
    assert abs(float(level1.mean()) - float(volume.mean())) < 3  # the 3D tent keeps the mean (linear UNORM)
    bc7 = tmp_path / "b.dds"
    write_volume(net, bc7, request)  # BC7: each slice in 4x4 blocks, decoded by an independent reader
    data = bc7.read_bytes()
    assert len(data) == 148 + 9 * 5 * 3 * 16
    slice5 = np.frombuffer(texture2ddecoder.decode_bc7(data[148 + 5 * 240:148 + 6 * 240], 20, 12), np.uint8)
    slice5 = slice5.reshape(12, 20, 4)[..., 2::-1]  # BGRA
    assert np.abs(slice5.astype(int) - volume[5]).mean() < 3


def test_carved_object_shows_the_volume_inside_and_out():
    z, y, x = np.meshgrid(*(np.arange(24),) * 3, indexing="ij")
    volume = np.stack([x / 23, y / 23, z / 23], -1).astype(np.float32)
    cube, sphere = render_carved(volume, "cube", 64), render_carved(volume, "sphere", 64)
    assert cube.shape == (64, 64, 3) and (cube[0, 0] == 1).all()  # white background at the corner
    covered = (cube < 1).any(-1).mean()
    assert 0.3 < covered < 0.9 and (sphere < 1).any(-1).mean() < covered
    assert cube[(cube < 1).any(-1)].std(axis=0).min() > 0.05  # the colours vary across the surface


def _train(tmp_path, name: str, **settings):
    settings = {"iters": 4, "batch": 1, "size": 16, "scales": 2, "width": 2, "descriptor": "random",
                "checkpoint_every": 2, **settings}
    return train_solid(SolidRun.of(resolve_texture("pebbles"), tmp_path / name, **settings))


def test_single_slice_training_writes_a_solid_model_and_resumes_as_an_unbroken_run(tmp_path):
    whole = _train(tmp_path, "whole.safetensors")
    assert whole.iterations == 4 and np.isfinite(whole.loss)
    manifest = read_manifest(tmp_path / "whole.safetensors")
    assert manifest["kind"] == "solid" and set(manifest["textures"]) == {"x", "y", "z"}
    assert open_model(tmp_path / "whole.safetensors").is_solid

    def stop_at_two(step, loss):
        if step == 2:
            raise KeyboardInterrupt

    broken = train_solid(SolidRun.of(resolve_texture("pebbles"), tmp_path / "broken.safetensors", iters=4, batch=1,
                                     size=16, scales=2, width=2, descriptor="random", checkpoint_every=0), stop_at_two)
    assert broken.interrupted and broken.iterations == 2 and state_path(tmp_path / "broken.safetensors").is_file()
    resumed = _train(tmp_path, "broken.safetensors", resume=True, checkpoint_every=0)
    assert resumed.iterations == 4 and not state_path(tmp_path / "broken.safetensors").exists()
    a, b = load_solid(tmp_path / "whole.safetensors").network, load_solid(tmp_path / "broken.safetensors").network
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(p.float(), q.float(), atol=1e-5), name
    with pytest.raises(TexportError, match="nothing to resume"):  # a finished model keeps no optimizer state
        _train(tmp_path, "broken.safetensors", resume=True, iters=6)


def test_training_keeps_each_directions_exemplar(tmp_path, cli_main):
    _train(tmp_path, "wood.safetensors", iters=1, texture_z=resolve_texture("red-peppers"))
    path = tmp_path / "wood.safetensors"
    assert load_stored_exemplar(path, "y") is None  # y shares x's exemplar: kept once
    assert load_stored_exemplar(path, "z") is not None
    result = cli_main("models", path, "--exemplar", tmp_path / "ex.png")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "ex.png").is_file() and (tmp_path / "ex-z.png").is_file() and not (tmp_path / "ex-y.png").exists()
    z = np.asarray(Image.open(tmp_path / "ex-z.png"))
    peppers = np.asarray(Image.open(resolve_texture("red-peppers")).convert("RGB"))
    assert z.shape == peppers.shape and np.abs(z.astype(int) - peppers).max() <= 1


def test_export_runs_on_onnxruntime_at_any_cube_size(tmp_path):
    _train(tmp_path, "s.safetensors", iters=1)
    [done] = export(tmp_path / "s.onnx", tmp_path / "s.safetensors")
    assert done.max_abs_diff <= 1e-4
    meta = read_manifest(tmp_path / "s.safetensors")
    net = load_solid(tmp_path / "s.safetensors").network
    session = ort.InferenceSession(str(tmp_path / "s.onnx"), providers=["CPUExecutionProvider"])
    for d, h, w in ((4, 6, 8), (10, 2, 4)):
        z = noise.noise_volume(1, net.input_channels, d, h, w)
        with torch.no_grad():
            want = net(z).numpy()
        got = session.run(None, {"noise": z.numpy()})[0]
        assert got.shape == (1, 3, d, h, w) and np.abs(got - want).max() <= 1e-4
    handle = open_model(tmp_path / "s.onnx")
    assert handle.kind == "solid" and "z + hash32" in handle.manifest["texport.noise_distribution"]
    assert meta["kind"] == "solid"
    if importlib.util.find_spec("openvino") is not None:  # the same file on OpenVINO
        z = noise.noise_volume(2, net.input_channels, 8, 4, 6)
        with torch.no_grad():
            want = net(z)
        assert (open_backend(handle, "openvino")(z) - want).abs().max() <= 1e-4


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("tensorrt_rtx") is None, reason="needs tensorrt-rtx (builds without a GPU)")
def test_the_tensorrt_rtx_builder_accepts_a_solid_graph(tmp_path):
    _train(tmp_path, "s.safetensors", iters=1)
    [done] = export(tmp_path / "s.engine", tmp_path / "s.safetensors", sizes=(None, 16, 32), flavour="tensorrt-rtx")
    assert done.sidecar["profile"]["noise"]["max"] == [1, 6, 32, 32, 32]
    assert open_model(tmp_path / "s.engine").kind == "solid"


def test_cli_volumes_and_one_line_errors_that_write_nothing(tmp_path, cli_main):
    _train(tmp_path, "s.safetensors", iters=1)
    model = str(tmp_path / "s.safetensors")
    result = cli_main("synth", model, "--size", "8x6x4", "--origin", "-3,2,9", "-o", tmp_path / "v.npy")
    assert result.returncode == 0, result.stderr
    net = load_solid(model).network
    assert np.array_equal(np.load(tmp_path / "v.npy"), synthesize_volume(net, VolumeRequest((8, 6, 4), (-3, 2, 9))))
    bad = [
        ["synth", model, "--size", "8x6", "-o", str(tmp_path / "a.npy")],
        ["synth", model, "--size", "8x6x4", "--origin", "1,2", "-o", str(tmp_path / "b.npy")],
        ["synth", model, "--size", "8x6x4", "--origin", "a,b,c", "-o", str(tmp_path / "c.npy")],
        ["synth", model, "--size", "8x6x4", "-o", str(tmp_path / "d.png")],
        ["synth", model, "--size", "7x6x4", "--tileable", "-o", str(tmp_path / "e.npy")],
        ["synth", "pebbles", "--size", "16x16x16", "-o", str(tmp_path / "f.npy")],
        ["synth", "pebbles", "--origin", "0,0,0", "-o", str(tmp_path / "g.png")],
        ["synth", model, "-o", str(tmp_path / "h.png")],
        ["tile", model, "--size", "64", "-o", str(tmp_path / "i.png")],
    ]
    for args in bad:
        one_error_line(cli_main(*args))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.safetensors", "v.npy"]


@pytest.mark.slow
def test_train_solid_command_saves_on_sigterm_and_resumes_with_a_preview(tmp_path):
    out = tmp_path / "s.safetensors"
    args = ["train", "solid", "pebbles", "-o", str(out), "--iters", "400", "--size", "16", "--batch", "1", "--scales", "2",
            "--width", "2", "--descriptor", "random", "--checkpoint-every", "5", "--z", "red-peppers"]
    code, _, err = run_until_checkpoint_then_sigterm(args, out)
    assert code == 143 and "terminated" in err and state_path(out).is_file()
    stopped = read_manifest(out)["training"]
    assert stopped["interrupted"] and 0 < stopped["iterations"] < 400
    from conftest import run_cli

    done = run_cli("train", "solid", "pebbles", "-o", str(out), "--size", "16", "--batch", "1", "--scales", "2",
                   "--width", "2", "--descriptor", "random", "--checkpoint-every", "5", "--z", "red-peppers",
                   "--iters", "400", "--resume", "--finish")
    assert done.returncode == 0, done.stderr
    assert read_manifest(out)["training"]["iterations"] == stopped["iterations"] and out.with_suffix(".png").is_file()


def test_parsers():
    assert parse_volume_size("64x32x16") == (64, 32, 16) and parse_volume_size("8") == (8, 8, 8)
    assert parse_origin("-1,2,-3") == (-1, 2, -3) and parse_origin(None) == (0, 0, 0)
    for text in ("64x32", "0x1x1", "axbxc"):
        with pytest.raises(TexportError):
            parse_volume_size(text)
    for text in ("1,2", "1,2,3,4", "1.5,2,3", f"{2**31},0,0"):
        with pytest.raises(TexportError):
            parse_origin(text)


def test_the_shipped_solid_model_is_listed_and_makes_volumes_by_name(tmp_path, cli_main):
    result = cli_main("models")
    row = next(line for line in result.stdout.splitlines() if line.startswith("pebbles-solid"))
    assert row.split()[1:3] == ["solid", "pebbles"]
    result = cli_main("synth", "pebbles-solid", "--size", "16x16x8", "--origin", "5,-7,3", "-o", tmp_path / "v.npy")
    assert result.returncode == 0, result.stderr
    volume = np.load(tmp_path / "v.npy")
    assert volume.shape == (8, 16, 16, 3) and volume.std() > 5
    result = cli_main("models", "pebbles-solid", "--exemplar", tmp_path / "e.png")
    assert result.returncode == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["e.png", "v.npy"]


def test_lattice_blocks_on_onnxruntime_and_openvino_agree_with_torch_and_with_themselves(tmp_path):
    _train(tmp_path, "s.safetensors", iters=1)
    handle = open_model(tmp_path / "s.safetensors")
    request, inner = VolumeRequest((20, 12, 18), (-5, 3, 7), seed=4, block=8), ((2, 4, 9), (7, 5, 6))
    reference = synthesize_volume(BlockComputer.open(handle, 8, "torch"), request)
    names = ["onnxruntime"] + (["openvino"] if importlib.util.find_spec("openvino") is not None else [])
    for name in names:
        blocks = BlockComputer.open(handle, 8, name)
        big = synthesize_volume(blocks, request)
        assert np.abs(big.astype(int) - reference).max() <= 1, name  # rounding moves a few voxels by one level
        (x, y, z), (w, h, d) = inner
        small = synthesize_volume(blocks, VolumeRequest((w, h, d), (x, y, z), seed=4, block=8))
        assert np.array_equal(big[z - 7:z - 7 + d, y - 3:y - 3 + h, x + 5:x + 5 + w], small), name
    with pytest.raises(TexportError):
        synthesize_volume(BlockComputer.open(handle, 16, "torch"), request)  # blocks of another side
