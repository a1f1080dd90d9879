import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from texport.errors import TexportError
from texport.textures.images import load_image, resolve_texture, save_image, shipped_textures


@pytest.fixture
def rgb() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)


@pytest.mark.parametrize("ext,fmt", [("png", "PNG"), ("tga", "TGA"), ("webp", "WEBP"), ("bmp", "BMP")])
def test_lossless_formats_read_exactly(tmp_path, rgb, ext, fmt):
    path = tmp_path / f"t.{ext}"
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    Image.fromarray(rgb).save(path, format=fmt, **kwargs)
    img = load_image(path)
    assert img.shape == (1, 3, 20, 30) and img.dtype == torch.float32
    assert torch.equal((img[0].permute(1, 2, 0) * 255).round().byte(), torch.from_numpy(rgb))


def test_jpeg_reads_close(tmp_path, rgb):
    path = tmp_path / "t.jpg"
    Image.fromarray(np.full((16, 16, 3), (200, 40, 10), np.uint8)).save(path, quality=95)
    img = load_image(path)
    assert torch.allclose(img[0, :, 8, 8], torch.tensor([200, 40, 10]) / 255.0, atol=4 / 255)


def test_gray_rgba_palette_and_16bit_become_rgb(tmp_path, rgb):
    gray = tmp_path / "gray.png"
    Image.fromarray(rgb[..., 0]).save(gray)
    g = load_image(gray)
    assert g.shape[1] == 3 and torch.equal(g[0, 0], g[0, 2])

    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([rgb, np.zeros((20, 30), np.uint8)])).save(rgba)  # alpha dropped, colour kept
    assert torch.equal((load_image(rgba)[0, 1] * 255).round().byte(), torch.from_numpy(rgb[..., 1]))

    pal = tmp_path / "pal.png"
    Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=16).save(pal)
    assert load_image(pal).shape == (1, 3, 20, 30)

    g16 = tmp_path / "g16.png"
    Image.fromarray(np.full((8, 8), 65535 // 2, np.uint16)).save(g16)
    assert load_image(g16)[0, :, 0, 0].tolist() == pytest.approx([0.5] * 3, abs=1e-4)


def test_16bit_png_written_exactly(tmp_path):
    img = torch.rand(1, 3, 5, 7)
    path = save_image(img, tmp_path / "o16.png", bits=16)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    assert (width, height, depth, colour) == (7, 5, 16, 2)
    idat = data[data.index(b"IDAT") + 4 : data.index(b"IEND") - 8]
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(5, 1 + 7 * 6)
    assert (rows[:, 0] == 0).all()
    values = rows[:, 1:].copy().view(">u2").reshape(5, 7, 3).astype(np.float64) / 65535
    np.testing.assert_allclose(values, img[0].permute(1, 2, 0).numpy(), atol=1 / 65535)
    with Image.open(path) as check:  # a standard decoder accepts it
        assert check.size == (7, 5)


def test_8bit_round_trip(tmp_path):
    img = torch.randint(0, 256, (1, 3, 9, 4)).float() / 255
    back = load_image(save_image(img, tmp_path / "o.png"))
    assert torch.equal(back, img)


def test_write_is_atomic_and_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "keep.png"
    save_image(torch.zeros(1, 3, 4, 4), target)
    before = target.read_bytes()

    def broken_write(self, data):  # the PNG is encoded in memory; the write to disk is what can fail half-way
        with open(self, "wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_bytes", broken_write)
    with pytest.raises(TexportError, match="cannot write .*keep.png: disk full"):  # one line for the CLI
        save_image(torch.ones(1, 3, 4, 4), target)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["keep.png"]  # no temporary file left behind


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(TexportError, match="no such file"):
        load_image(tmp_path / "missing.png")
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(TexportError, match="not an image"):
        load_image(text)
    whole = tmp_path / "whole.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(whole)
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[: len(whole.read_bytes()) // 2])
    with pytest.raises(TexportError, match="cannot read image"):
        load_image(cut)
    with pytest.raises(TexportError, match=".png"):
        save_image(torch.zeros(1, 3, 4, 4), tmp_path / "out.jpg")


def test_shipped_textures_resolve_by_name():
    names = shipped_textures()
    assert {"pebbles", "red-peppers"} <= set(names)
    assert resolve_texture("pebbles") == names["pebbles"]
    assert load_image(resolve_texture("pebbles")).shape == (1, 3, 128, 128)
