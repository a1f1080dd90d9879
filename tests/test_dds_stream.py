"""DDS files written band by band (texport.dds_stream, `tile -o X.dds`, `texport dds` of large images):
the same bytes as the whole-image writer at every mip level, bounded reading of PNG rows, the size
limit that replaces Pillow's decompression-bomb guard, and nothing left behind by a failure."""

from __future__ import annotations

import errno
import struct
import zlib

import numpy as np
import pytest
import texture2ddecoder
import torch
from PIL import Image

from conftest import one_error_line
import texport.defaults as defaults
import texport.textures.dds as dds
import texport.textures.dds_stream as dds_stream
import texport.textures.image_rows as image_rows
import texport.textures.mips as mips
from texport.errors import TexportError
from texport.textures.images import _png_16bit, load_image, to_uint8

from test_dds import decode_levels, expected_levels, level_size, parse, psnr


def levels_of(data: bytes, fmt: str) -> list[bytes]:
    """The bytes of each level, cut at the offsets the header's size and mip count give."""
    head = parse(data)
    offset, out = dds.HEADER_BYTES, []
    for w, h in expected_levels(head["width"], head["height"], head["mips"] > 1):
        out.append(data[offset:offset + level_size(fmt, w, h)])
        offset += level_size(fmt, w, h)
    assert offset == len(data)
    return out


def assert_same_levels(streamed: bytes, whole: bytes, fmt: str) -> None:
    assert streamed[:dds.HEADER_BYTES] == whole[:dds.HEADER_BYTES]
    a, b = levels_of(streamed, fmt), levels_of(whole, fmt)
    assert len(a) == len(b)
    differ = [k for k, (x, y) in enumerate(zip(a, b)) if x != y]
    assert not differ, f"levels {differ} differ"


@pytest.fixture(scope="module")
def sample() -> np.ndarray:
    from texport.models.loading import load_texnet, sample_texnet

    return dds.stored_rgb(sample_texnet(load_texnet("pebbles"), "100x76", seed=3))


def random_bands(image: np.ndarray, rng) -> list[np.ndarray]:
    bands, y = [], 0
    while y < image.shape[0]:
        n = int(rng.integers(1, 30))
        bands.append(image[y:y + n])
        y += n
    return bands


@pytest.mark.parametrize("size", [(100, 76), (64, 48), (25, 19), (7, 1), (1, 9), (3, 2)], ids=str)
def test_any_bands_give_the_whole_image_bytes(size, sample):
    """Odd sides, one-pixel sides, bands of 1 to 29 rows that split blocks: every format, sRGB and linear,
    wrapping and mirrored, with and without mips, byte for byte encode_dds."""
    width, height = size
    image = np.ascontiguousarray(sample[:height, :width])
    rng = np.random.default_rng(width * 100 + height)
    for fmt in dds.FORMATS:
        for srgb in (True, False):
            for tileable in (True, False):
                for mipmapped in (True, False):
                    whole = dds.encode_dds(image, fmt, srgb, mipmapped, tileable)
                    writer_bytes = _streamed(image, dds.DdsOptions(fmt, srgb, mipmapped), tileable, rng)
                    assert_same_levels(writer_bytes, whole, fmt)


def _streamed(image, options, tileable, rng) -> bytes:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = dds_stream.write_dds_bands(Path(tmp) / "x.dds", image.shape[1], image.shape[0], options, tileable,
                                          random_bands(image, rng))
        return path.read_bytes()


def test_the_row_reducer_takes_rows_in_any_order_and_holds_few():
    """Bands pushed bottom half first still give reduce()'s level exactly; every row is dropped at the end."""
    rng = np.random.default_rng(0)
    image = rng.random((96, 80, 3)).astype(np.float32)
    for wrap in (True, False):
        reducer = mips.RowReducer((80, 96), (40, 48), wrap)
        out = np.full((48, 40, 3), np.nan, np.float32)
        held = 0
        for first in [*range(48, 96, 8), *range(0, 48, 8)]:
            for top, rows in reducer.push(first, image[first:first + 8]):
                out[top:top + rows.shape[0]] = rows
            held = max(held, len(reducer.rows))
        assert reducer.done and not reducer.rows
        assert np.array_equal(out, mips.reduce(image, 40, 48, wrap))
        assert held <= 12, held  # the rows at the two edges of the half that came first


def test_tile_straight_to_dds_equals_dds_of_its_png(tmp_path, cli_main):
    """`tile -o X.dds` against `tile -o X.png` then `texport dds X.png`: the same bytes at every level,
    wrapping (BC7, sRGB) and mirrored (BC1, linear), sides that are not powers of two."""
    cases = (("bc7", ["--tileable"], ["--mips", "--tileable"]), ("bc1", [], ["--mips", "--linear"]))
    for fmt, tiling, options in cases:
        base = ["tile", "pebbles", "--size", "384x256", "--tile", "128", "--seed", "4", *tiling]
        dds_options = [o for o in options if o != "--tileable"]
        assert cli_main(*base, "--format", fmt, *dds_options, "-o", tmp_path / "s.dds").returncode == 0
        assert cli_main(*base, "-o", tmp_path / "t.png").returncode == 0
        result = cli_main("dds", tmp_path / "t.png", "--format", fmt, *options, "-o", tmp_path / "c.dds")
        assert result.returncode == 0, result.stderr
        streamed, converted = (tmp_path / "s.dds").read_bytes(), (tmp_path / "c.dds").read_bytes()
        assert parse(streamed)["mips"] == 9 and parse(streamed)["dxgi"] == (99 if fmt == "bc7" else 71)
        assert_same_levels(streamed, converted, fmt)
        with Image.open(tmp_path / "t.png") as img:
            png = np.asarray(img.convert("RGB"))
        assert psnr(decode_levels(streamed, fmt)[0], png) >= (40.0 if fmt == "bc7" else 28.0)


def test_tile_dds_refusals(tmp_path, cli_main):
    for args, message in ((["--16bit"], "8 bits per channel"), (["--format", "bc9"], "unknown DDS format")):
        line = one_error_line(cli_main("tile", "pebbles", "--size", "64", *args, "-o", tmp_path / "x.dds"))
        assert message in line, line
    line = one_error_line(cli_main("tile", "pebbles", "--size", "64", "--mips", "-o", tmp_path / "x.png"))
    assert "DDS option" in line, line
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_or_failing_tile_dds_leaves_nothing(tmp_path, cli_main, monkeypatch):
    """Ctrl-C while the blocks are encoded, and a disk that fills up midway (ENOSPC from the third write):
    exit 130 or one line, the earlier file untouched, no temporary file."""
    out = tmp_path / "x.dds"
    out.write_bytes(b"previous result")
    args = ["tile", "pebbles", "--size", "256", "--tile", "64", "--mips", "-o", out]
    real_encode, real_pwrite = dds.encode_level, dds_stream.os.pwrite
    calls = []

    def interrupted(rgb, fmt):
        calls.append(1)
        if len(calls) == 20:
            raise KeyboardInterrupt
        return real_encode(rgb, fmt)

    monkeypatch.setattr(dds, "encode_level", interrupted)
    assert cli_main(*args).returncode == 130 and len(calls) == 20
    assert out.read_bytes() == b"previous result" and [p.name for p in tmp_path.iterdir()] == ["x.dds"]
    monkeypatch.setattr(dds, "encode_level", real_encode)
    writes = []

    def full(fd, data, offset):
        writes.append(offset)
        if len(writes) >= 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(dds_stream.os, "pwrite", full)
    line = one_error_line(cli_main(*args))
    assert "cannot write" in line and "x.dds" in line and "no space left" in line, line
    assert out.read_bytes() == b"previous result" and [p.name for p in tmp_path.iterdir()] == ["x.dds"]


# -- reading rows ---------------------------------------------------------------------------------


def png_filtered(rgb: np.ndarray, filters: list[int]) -> bytes:
    """An 8-bit PNG of rgb [H, W, C] whose row y is written with filter filters[y] (PNG spec section 9)."""
    h, w, c = rgb.shape
    x = rgb.reshape(h, w * c).astype(np.int32)
    up = np.vstack([np.zeros((1, w * c), np.int32), x[:-1]])
    left = np.hstack([np.zeros((h, c), np.int32), x[:, :-c]])
    upleft = np.hstack([np.zeros((h, c), np.int32), up[:, :-c]])
    p = left + up - upleft
    pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - upleft)
    paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
    predictors = [np.zeros_like(x), left, up, (left + up) // 2, paeth]
    rows = [bytes([f]) + ((x[y] - predictors[f][y]) % 256).astype(np.uint8).tobytes() for y, f in enumerate(filters)]
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[c]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))


def read_all(path, rows=16, limit=4096) -> np.ndarray:
    width, height, bands = image_rows.image_bands(path, limit, rows)
    image = np.concatenate(list(bands))
    assert image.shape == (height, width, 3) and image.dtype == np.uint8
    return image


def as_loaded(path) -> np.ndarray:
    return to_uint8(load_image(path)[0]).permute(1, 2, 0).numpy()


@pytest.mark.parametrize("channels", [1, 2, 3, 4], ids=["gray", "gray+alpha", "rgb", "rgba"])
def test_png_rows_with_every_filter_read_as_pillow_reads_them(channels, tmp_path, monkeypatch):
    """None, Sub and Up rows decoded here; from the first band with Average or Paeth, Pillow's rows."""
    rng = np.random.default_rng(channels)
    image = rng.integers(0, 256, (70, 33, channels), dtype=np.uint8)
    started = []
    real = image_rows._pillow_bands
    monkeypatch.setattr(image_rows, "_pillow_bands", lambda *a: started.append(a[3]) or real(*a))
    for name, filters, fallback in (("plain", [0, 1, 2] * 23 + [1], None), ("late", [0, 1, 2] * 12 + [4, 3] * 17, 32)):
        path = tmp_path / f"{name}{channels}.png"
        path.write_bytes(png_filtered(image, filters))
        assert np.array_equal(read_all(path), as_loaded(path))
        assert started == ([] if fallback is None else [fallback])  # the band holding row 36 starts at 32


@pytest.mark.parametrize("kind", ["pillow", "palette", "gray16", "rgb16", "jpeg", "bmp"])
def test_other_images_read_as_load_image_reads_them(kind, tmp_path):
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (37, 45, 3), dtype=np.uint8)
    path = tmp_path / ("x.jpg" if kind == "jpeg" else "x.bmp" if kind == "bmp" else "x.png")
    if kind == "rgb16":
        path.write_bytes(_png_16bit(rng.integers(0, 65536, (37, 45, 3)).astype(np.uint16)))
    elif kind == "gray16":
        Image.fromarray(rng.integers(0, 65536, (37, 45)).astype(np.uint16)).save(path)
    elif kind == "palette":
        img = Image.fromarray(rgb).convert("P")
        img.info["transparency"] = 3
        img.save(path, transparency=3)
    else:
        Image.fromarray(rgb).save(path)
    assert np.array_equal(read_all(path, rows=8), as_loaded(path))


def test_damaged_pngs_are_one_line_errors_and_leave_no_file(tmp_path, cli_main):
    image = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    good = png_filtered(image, [0] * 40)
    idat = good.index(b"IDAT")
    data_end = good.index(b"IEND") - 8  # the IDAT chunk's CRC
    flipped, bad_crc = bytearray(good), bytearray(good)
    flipped[idat + 20] ^= 0xFF
    bad_crc[data_end] ^= 0xFF
    taller = good.replace(struct.pack(">II", 40, 40), struct.pack(">II", 40, 41), 1)
    cases = {"data.png": (bytes(flipped), "damaged image data"), "crc.png": (bytes(bad_crc), "CRC mismatch"),
             "cut.png": (good[:idat + 60], "the file ends"), "short.png": (_fix_crc(taller), "ends after 40 of 41 rows")}
    for name, (data, expected) in cases.items():
        (tmp_path / name).write_bytes(data)
        line = one_error_line(cli_main("dds", tmp_path / name, "-o", tmp_path / "out.dds"))
        assert "cannot read image" in line and expected in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(cases)


def _fix_crc(png: bytes) -> bytes:
    """The IHDR chunk's CRC recomputed after its size was changed."""
    data = png[12:12 + 4 + 13]
    return png[:29] + struct.pack(">I", zlib.crc32(data) & 0xFFFFFFFF) + png[33:]


def test_the_size_limit_replaces_pillows_guard(tmp_path, cli_main, monkeypatch):
    """With Pillow's guard set so low that a 64x64 image is a 'bomb' to it, `texport dds` still reads it (PNG
    rows and through Pillow), refuses it with --size-limit 32 from its declared size, and Pillow's own
    guard still refuses what is above our limit."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    rgb = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    (tmp_path / "x.png").write_bytes(png_filtered(rgb, [0] * 64))
    (tmp_path / "p.png").write_bytes(png_filtered(rgb, [4] * 64))  # Paeth: read by Pillow
    Image.fromarray(rgb).save(tmp_path / "x.bmp")
    with pytest.raises(TexportError, match="too large to read safely"):
        load_image(tmp_path / "x.bmp")  # elsewhere Pillow's guard is as it was
    for name in ("x.png", "p.png", "x.bmp"):
        result = cli_main("dds", tmp_path / name, "--format", "rgba8", "-o", tmp_path / "out.dds")
        assert result.returncode == 0, result.stderr
        assert np.array_equal(decode_levels((tmp_path / "out.dds").read_bytes(), "rgba8")[0], rgb)
    assert Image.MAX_IMAGE_PIXELS == 100  # restored
    for name, message in (("x.png", "above the size limit of 32"), ("x.bmp", "too large to read safely")):
        line = one_error_line(cli_main("dds", tmp_path / name, "--size-limit", "32", "-o", tmp_path / "new.dds"))
        assert message in line, line
    assert not (tmp_path / "new.dds").exists()


def test_the_default_limit_admits_16384_squared(tmp_path):
    """A declared 16384x16384 PNG passes the check (its data is then found missing); 16385 does not."""
    for side, message in ((16384, "ends after 0 of 16384 rows"), (16385, "above the size limit of 16384")):
        head = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
        data = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + head + \
            struct.pack(">I", zlib.crc32(b"IHDR" + head) & 0xFFFFFFFF) + struct.pack(">I", 0) + b"IEND" + \
            struct.pack(">I", zlib.crc32(b"IEND") & 0xFFFFFFFF)
        (tmp_path / "big.png").write_bytes(data)
        with pytest.raises(TexportError, match=message):
            read_all(tmp_path / "big.png", limit=defaults.DDS_SIZE_LIMIT)


# -- the size -----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_2048_tile_streams_to_the_dds_of_its_png(tmp_path, cli_main):
    """2048x2048 in 512 px tiles, tileable, BC7 sRGB with all 12 levels: streamed against `texport dds`
    of the PNG, byte for byte per level; read back by texture2ddecoder and Pillow."""
    base = ["tile", "pebbles", "--size", "2048", "--tile", "512", "--tileable", "--seed", "1"]
    assert cli_main(*base, "--mips", "-o", tmp_path / "s.dds").returncode == 0
    assert cli_main(*base, "-o", tmp_path / "t.png").returncode == 0
    assert cli_main("dds", tmp_path / "t.png", "--mips", "--tileable", "-o", tmp_path / "c.dds").returncode == 0
    streamed = (tmp_path / "s.dds").read_bytes()
    assert parse(streamed)["mips"] == 12
    assert_same_levels(streamed, (tmp_path / "c.dds").read_bytes(), "bc7")
    with Image.open(tmp_path / "t.png") as img:
        png = np.asarray(img.convert("RGB"))
    decoded = np.frombuffer(texture2ddecoder.decode_bc7(levels_of(streamed, "bc7")[0], 2048, 2048), np.uint8)
    level0 = decoded.reshape(2048, 2048, 4)[..., [2, 1, 0]]
    assert psnr(level0, png) >= 35.0
    with Image.open(tmp_path / "s.dds") as img:
        assert img.size == (2048, 2048) and np.array_equal(np.asarray(img.convert("RGB")), level0)
