"""DDS output (texport.dds, texport.mips, `synth -o X.dds`, `texport dds`), read back by readers that
are not texport's: texture2ddecoder for every level, Pillow's DDS reader for level 0 where it knows
the format. Header fields are checked against the layout Microsoft documents (DDS_HEADER,
DDS_PIXELFORMAT, DDS_HEADER_DXT10, DXGI_FORMAT), with the numbers written out here."""

from __future__ import annotations

import io
import math
import struct

import numpy as np
import pytest
import texture2ddecoder
import torch
from PIL import Image

from conftest import one_error_line
import texport.textures.dds as dds
import texport.textures.mips as mips
from texport.errors import TexportError
from texport.models.loading import load_texnet, sample_texnet

# DXGI_FORMAT values (UNORM, UNORM_SRGB) and bytes per 4x4 block (0: 4 bytes per pixel), from Microsoft's docs
DXGI = {"bc7": (98, 99), "bc1": (71, 72), "bc3": (77, 78), "rgba8": (28, 29)}
BLOCK = {"bc7": 16, "bc1": 8, "bc3": 16, "rgba8": 0}
DECODE = {"bc7": texture2ddecoder.decode_bc7, "bc1": texture2ddecoder.decode_bc1, "bc3": texture2ddecoder.decode_bc3}
PILLOW_READS = {("bc7", True), ("bc7", False), ("rgba8", True), ("rgba8", False), ("bc1", False), ("bc3", False)}


def parse(data: bytes) -> dict:
    """The header fields at their documented offsets (little-endian DWORDs)."""
    f = struct.unpack_from("<31I", data, 4)  # DDS_HEADER: 31 DWORDs after the magic
    dx10 = struct.unpack_from("<5I", data, 128)
    return {"magic": data[:4], "size": f[0], "flags": f[1], "height": f[2], "width": f[3], "pitch": f[4], "depth": f[5],
            "mips": f[6], "pf_size": f[18], "pf_flags": f[19], "fourcc": data[84:88], "caps": f[26], "caps2": f[27],
            "dxgi": dx10[0], "dimension": dx10[1], "misc": dx10[2], "array": dx10[3], "alpha_mode": dx10[4] & 7}


def expected_levels(width: int, height: int, mipmapped: bool) -> list[tuple[int, int]]:
    count = int(math.log2(max(width, height))) + 1 if mipmapped else 1
    return [(max(1, width >> n), max(1, height >> n)) for n in range(count)]


def level_size(fmt: str, w: int, h: int) -> int:
    return w * h * 4 if BLOCK[fmt] == 0 else math.ceil(w / 4) * math.ceil(h / 4) * BLOCK[fmt]


def decode_levels(data: bytes, fmt: str) -> list[np.ndarray]:
    """Every level as [H, W, 3] uint8, read with texture2ddecoder (BGRA out) or as raw RGBA8 rows."""
    head = parse(data)
    offset, levels = 148, []
    for w, h in expected_levels(head["width"], head["height"], head["mips"] > 1):
        n = level_size(fmt, w, h)
        raw = data[offset:offset + n]
        assert len(raw) == n, f"level {w}x{h} is cut short"
        offset += n
        if fmt == "rgba8":
            rgba = np.frombuffer(raw, np.uint8).reshape(h, w, 4)
        else:
            rgba = np.frombuffer(DECODE[fmt](raw, w, h), np.uint8).reshape(h, w, 4)[..., [2, 1, 0, 3]]
        assert rgba[..., 3].min() >= 254  # opaque (bc7enc may store 254 in blocks it codes in mode 6)
        levels.append(rgba[..., :3])
    assert offset == len(data), "bytes after the last level"
    return levels


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def pillow_rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "DDS"
        return np.asarray(img.convert("RGB"))


def seam_and_inner(level: np.ndarray) -> tuple[float, float]:
    """Mean absolute step across the wrap-around (last column to first, last row to first) and inside."""
    x = level.astype(np.float64)
    seam = np.concatenate([np.abs(x[:, 0] - x[:, -1]).ravel(), np.abs(x[0] - x[-1]).ravel()]).mean()
    inner = np.concatenate([np.abs(np.diff(x, axis=1)).ravel(), np.abs(np.diff(x, axis=0)).ravel()]).mean()
    return float(seam), float(inner)


@pytest.fixture(scope="module")
def odd_sample() -> np.ndarray:
    """A 100x76 pebbles sample, 8-bit: sides that are not multiples of 4, and a chain with 25x19, 3x2 and 1x1."""
    return dds.stored_rgb(sample_texnet(load_texnet("pebbles"), "100x76", seed=3))


@pytest.mark.parametrize("fmt", list(DXGI))
@pytest.mark.parametrize("srgb", [True, False], ids=["srgb", "linear"])
@pytest.mark.parametrize("mipmapped", [True, False], ids=["mips", "one-level"])
def test_header_fields_follow_the_documented_layout(fmt, srgb, mipmapped, odd_sample):
    data = dds.encode_dds(odd_sample, fmt, srgb=srgb, mips=mipmapped)
    h = parse(data)
    levels = expected_levels(100, 76, mipmapped)
    assert h["magic"] == b"DDS " and h["size"] == 124 and h["pf_size"] == 32
    assert (h["width"], h["height"], h["depth"]) == (100, 76, 0)
    required = 0x1 | 0x2 | 0x4 | 0x1000  # CAPS, HEIGHT, WIDTH, PIXELFORMAT
    pitch_flag = 0x8 if fmt == "rgba8" else 0x80000  # PITCH (uncompressed) or LINEARSIZE (compressed)
    assert h["flags"] == required | 0x20000 | pitch_flag  # MIPMAPCOUNT, as DirectXTex writes it, also for 1 level
    assert h["pitch"] == (100 * 4 if fmt == "rgba8" else 25 * 19 * BLOCK[fmt])  # one row, or the top level's bytes
    assert h["mips"] == len(levels) == (7 if mipmapped else 1)  # 100x76 ... 3x2, 1x1
    assert h["pf_flags"] == 0x4 and h["fourcc"] == b"DX10"  # DDPF_FOURCC: the format is in DDS_HEADER_DXT10
    assert h["caps"] == (0x1000 | 0x8 | 0x400000 if mipmapped else 0x1000) and h["caps2"] == 0
    assert h["dxgi"] == DXGI[fmt][1 if srgb else 0]
    assert (h["dimension"], h["misc"], h["array"], h["alpha_mode"]) == (3, 0, 1, 3)  # TEXTURE2D, one, opaque
    assert len(data) == 148 + sum(level_size(fmt, w, hh) for w, hh in levels)


@pytest.mark.parametrize("fmt, floor", [("bc7", 36.0), ("bc1", 25.0), ("bc3", 25.0), ("rgba8", None)])
def test_every_level_decodes_close_to_the_float_chain(fmt, floor, odd_sample):
    for srgb in (True, False):
        data = dds.encode_dds(odd_sample, fmt, srgb=srgb, mips=True)
        decoded = decode_levels(data, fmt)
        chain = mips.mip_chain(odd_sample / 255.0, tileable=False, srgb=srgb)
        assert [lv.shape[:2] for lv in decoded] == [c.shape[:2] for c in chain] == [(h, w) for w, h in expected_levels(100, 76, True)]
        if floor is None:  # uncompressed: level 0 is the 8-bit image, every level the float one rounded
            assert np.array_equal(decoded[0], odd_sample)
            assert all(np.abs(d - c * 255.0).max() <= 0.5 + 1e-4 for d, c in zip(decoded, chain))
        else:
            scores = [psnr(d, c * 255.0) for d, c in zip(decoded, chain)]
            assert min(scores) >= floor, (srgb, [round(s, 1) for s in scores])
        if (fmt, srgb) in PILLOW_READS:  # the second reader agrees on level 0
            assert psnr(pillow_rgb(data), decoded[0]) >= 45.0


@pytest.mark.parametrize("fmt, floor", [("bc7", 38.0), ("bc1", 30.0), ("bc3", 30.0), ("rgba8", math.inf)])
def test_colours_and_orientation_survive(fmt, floor):
    """A smooth image whose channels differ (red grows to the right, green downwards, blue falls): red and
    blue swapped, or the rows upside down, score about 8 dB, far below any codec's floor."""
    y, x = np.mgrid[0:64, 0:48]
    image = np.stack([x / 47, y / 63, 1 - (x / 47 + y / 63) / 2], axis=2)
    rgb = np.round(image * 255).astype(np.uint8)
    decoded = decode_levels(dds.encode_dds(rgb, fmt), fmt)[0]
    assert psnr(decoded, rgb) >= floor
    assert max(psnr(decoded[..., ::-1], rgb), psnr(decoded[::-1], rgb)) < 15.0


def test_tileable_mips_wrap_around_and_other_mips_mirror():
    """Wrap filtering is a circular convolution: shifting the image by 2^k pixels shifts level k by one.
    Mirrored edges break that at the border, so the same check fails without tileable."""
    image = np.random.default_rng(0).random((64, 48, 3)).astype(np.float32)
    shifted = np.roll(image, (16, 8), axis=(0, 1))
    for tileable in (True, False):
        a, b = mips.mip_chain(image, tileable=tileable), mips.mip_chain(shifted, tileable=tileable)
        same = [np.allclose(np.roll(a[k], (16 >> k, 8 >> k), axis=(0, 1)), b[k], atol=1e-5) for k in range(1, 4)]
        assert all(same) if tileable else not any(same)


def test_srgb_mips_average_in_linear_light():
    """A black and white checkerboard averages to half the light: 0.735 in sRGB, 0.5 as stored values."""
    board = np.zeros((4, 4, 3), np.float32)
    board[::2, ::2] = board[1::2, 1::2] = 1.0
    for srgb, grey in ((True, 1.055 * 0.5 ** (1 / 2.4) - 0.055), (False, 0.5)):
        chain = mips.mip_chain(board, tileable=True, srgb=srgb)
        assert [c.shape for c in chain] == [(4, 4, 3), (2, 2, 3), (1, 1, 3)]
        assert np.allclose(chain[1], grey, atol=1e-5) and np.allclose(chain[2], grey, atol=1e-5)


def test_synth_pebbles_bc7_with_mips_decodes_tiles_and_matches_the_png(tmp_path, cli_main):
    """The issue's done-when: `texport synth pebbles --size 512 --tileable --mips -o x.dds`."""
    args = ["synth", "pebbles", "--size", "512", "--tileable", "--seed", "0"]
    assert cli_main(*args, "--mips", "-o", tmp_path / "x.dds").returncode == 0
    assert cli_main(*args, "-o", tmp_path / "x.png").returncode == 0
    data = (tmp_path / "x.dds").read_bytes()
    with Image.open(tmp_path / "x.png") as img:
        png = np.asarray(img.convert("RGB"))
    head = parse(data)
    assert (head["width"], head["height"], head["mips"], head["dxgi"]) == (512, 512, 10, 99)  # BC7 sRGB by default
    levels = decode_levels(data, "bc7")  # reader 1: every level
    assert psnr(levels[0], png) >= 35.0
    assert np.array_equal(pillow_rgb(data), levels[0])  # reader 2: level 0
    chain = mips.mip_chain(png / 255.0, tileable=True, srgb=True)
    assert min(psnr(d, c * 255.0) for d, c in zip(levels, chain)) >= 35.0
    mirrored = mips.mip_chain(png / 255.0, tileable=False, srgb=True)
    checked = 0
    for level, control in zip(levels, mirrored):
        if min(level.shape[:2]) >= 16:
            seam, inner = seam_and_inner(level)
            assert seam <= inner, (level.shape, seam, inner)
            checked += 1
    assert checked == 6  # 512 ... 16
    # the check can fail: mirrored edges (the chain without --tileable) put a seam at some level
    assert any(np.greater(*seam_and_inner(np.round(c * 255))) for c in mirrored if min(c.shape[:2]) >= 16)
    # the same file from the PNG: `texport dds` builds the chain from the stored 8-bit values too
    assert cli_main("dds", tmp_path / "x.png", "--tileable", "--mips", "-o", tmp_path / "y.dds").returncode == 0
    assert (tmp_path / "y.dds").read_bytes() == data


def test_count_numbers_dds_files_like_pngs_and_rgba8_holds_the_png(tmp_path, cli_main):
    args = ["synth", "pebbles", "--size", "40x24", "--count", "2", "--seed", "5"]
    assert cli_main(*args, "--format", "rgba8", "-o", tmp_path / "n.dds").returncode == 0
    assert cli_main(*args, "-o", tmp_path / "n.png").returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n-0000.dds", "n-0000.png", "n-0001.dds", "n-0001.png"]
    for n in range(2):
        with Image.open(tmp_path / f"n-{n:04d}.png") as img:
            png = np.asarray(img.convert("RGB"))
        data = (tmp_path / f"n-{n:04d}.dds").read_bytes()
        assert parse(data)["dxgi"] == 29 and np.array_equal(decode_levels(data, "rgba8")[0], png)


BAD = {
    "unknown format": (["synth", "pebbles", "--format", "bc9", "-o", "{out}.dds"], "unknown DDS format 'bc9'"),
    "format for a png": (["synth", "pebbles", "--format", "bc1", "-o", "{out}.png"], "is a DDS option"),
    "mips for a png": (["synth", "pebbles", "--mips", "--linear", "-o", "{out}.png"], "are DDS options"),
    "16 bits for a dds": (["synth", "pebbles", "--16bit", "-o", "{out}.dds"], "8 bits per channel"),
    "dds command to a png": (["dds", "pebbles", "-o", "{out}.png"], "must be a .dds file"),
    "dds command, unknown format": (["dds", "pebbles", "--format", "dxt1", "-o", "{out}.dds"], "unknown DDS format"),
    "dds command, missing image": (["dds", "{tmp}/nope.png", "-o", "{out}.dds"], "no such file"),
    "other extension": (["synth", "pebbles", "-o", "{out}.ktx"], "must be a .png or .dds file"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_dds_requests_are_one_line_exit_2_and_write_nothing(name, tmp_path, cli_main):
    args, expected = BAD[name]
    out = tmp_path / "out"
    for previous in (".png", ".dds"):
        (tmp_path / f"out{previous}").write_bytes(b"previous result")
    line = one_error_line(cli_main(*[a.replace("{out}", str(out)).replace("{tmp}", str(tmp_path)) for a in args]))
    assert expected in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.dds", "out.png"]  # no new file, no temporary one
    assert all((tmp_path / f"out{s}").read_bytes() == b"previous result" for s in (".png", ".dds"))


def test_an_interrupted_write_leaves_no_file(tmp_path, cli_main, monkeypatch):
    """Ctrl-C while the mips are encoded: exit 130, the earlier file untouched, no temporary file."""
    calls = []

    def interrupted(rgb, fmt):
        calls.append(rgb.shape)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(rgb, fmt)

    real = dds.encode_level
    monkeypatch.setattr(dds, "encode_level", interrupted)
    out = tmp_path / "x.dds"
    out.write_bytes(b"previous result")
    result = cli_main("synth", "pebbles", "--size", "64", "--mips", "-o", out)
    assert result.returncode == 130 and len(calls) == 3
    assert out.read_bytes() == b"previous result" and [p.name for p in tmp_path.iterdir()] == ["x.dds"]


def test_api_refuses_what_it_cannot_write(tmp_path, odd_sample):
    with pytest.raises(TexportError, match="must be a .dds file"):
        dds.save_dds(odd_sample, tmp_path / "x.png")
    with pytest.raises(TexportError, match="unknown DDS format"):
        dds.encode_dds(odd_sample, "astc")
    with pytest.raises(TexportError, match="one image"):
        dds.encode_dds(torch.zeros(2, 3, 8, 8))
    assert dds.output_options(tmp_path / "x.png") is None
    assert dds.output_options(tmp_path / "x.DDS") == dds.DdsOptions("bc7", True, False)
    path = dds.save_dds(odd_sample, tmp_path / "x.dds", format="bc1", srgb=False, mips=True, tileable=True)
    assert parse(path.read_bytes())["dxgi"] == 71 and not list(tmp_path.glob(".x.dds.*"))
