"""Images read a band of rows at a time, for images too large to hold as floats (`texport dds` of a
16384x16384 tile).

A PNG is decoded as it is read: its image data inflated piece by piece and each row's filter undone
(the PNG specification, W3C 2003, sections 7 to 9), so only a band of rows is held. Rows filtered
with None, Sub or Up are undone with numpy; all of a `texport tile` PNG's rows are None. Average and
Paeth need the finished pixel to their left, a loop numpy cannot run along a row, so at the first
band holding such a row (most other writers choose them for some rows) Pillow decodes the whole image
and the rows go on from it. Pillow also reads what this reader does not take (other formats;
interlaced, palette or 16-bit PNGs), whole, and hands it out a band at a time. Either way the values
are the 8-bit ones images.load_image gives, quantized as a PNG stores them.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from texport.errors import TexportError
from texport.textures.images import _to_float_rgb, check_side_limit, integer_white, open_image

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # 8-bit colour types read here: gray, RGB, gray + alpha, RGBA
PIECE = 1 << 20  # compressed bytes read at a time, and the most inflated at once (a bomb stays small)
BAND = 256  # rows handed out at a time


class _Pillow(Exception):
    """This PNG, from this row on, is for Pillow."""


def image_bands(path: str | os.PathLike, size_limit: int, rows: int = BAND) -> tuple[int, int, Iterator[np.ndarray]]:
    """(width, height, bands): the image's rows top to bottom as uint8 [rows, width, 3] arrays. Sides
    above size_limit are refused from the declared size, before any decoding; bad files are one-line
    TexportErrors (also while the bands are read)."""
    path = Path(path)
    header = _png_header(path)
    if header is None:
        with open_image(path, size_limit) as img:
            width, height = img.size
        return width, height, _pillow_bands(path, size_limit, rows, 0)
    width, height, _ = header
    check_side_limit(path, width, height, size_limit)
    return width, height, _png_bands(path, size_limit, rows)


def _png_header(path: Path) -> tuple[int, int, int] | None:
    """(width, height, channels) of a PNG this reader decodes itself, None for any other file."""
    try:
        with open(path, "rb") as f:
            head = f.read(8 + 8 + 13)
    except OSError:
        return None  # open_image says why
    if len(head) < 29 or head[:8] != SIGNATURE or head[12:16] != b"IHDR":
        return None
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", head[16:29])
    if depth != 8 or colour not in CHANNELS or (compression, filtering, interlace) != (0, 0, 0) or not width or not height:
        return None
    return width, height, CHANNELS[colour]


def _idat(f: BinaryIO, path: Path) -> Iterator[bytes]:
    """The concatenated IDAT data in pieces, each chunk's CRC checked."""
    f.seek(8)
    while True:
        head = f.read(8)
        if len(head) < 8:
            raise TexportError(f"cannot read image {path}: the file ends before its last chunk")
        length, kind = struct.unpack(">I4s", head)
        if kind == b"IEND":
            return
        if kind != b"IDAT":
            f.seek(length + 4, os.SEEK_CUR)
            continue
        crc, left = zlib.crc32(kind), length
        while left:
            piece = f.read(min(left, PIECE))
            if not piece:
                raise TexportError(f"cannot read image {path}: the file ends inside its image data")
            crc, left = zlib.crc32(piece, crc), left - len(piece)
            yield piece
        if f.read(4) != struct.pack(">I", crc & 0xFFFFFFFF):
            raise TexportError(f"cannot read image {path}: a damaged image data chunk (CRC mismatch)")


def _png_bands(path: Path, size_limit: int, rows: int) -> Iterator[np.ndarray]:
    width, height, channels = _png_header(path)
    stride = 1 + width * channels
    inflate, pending = zlib.decompressobj(), bytearray()
    previous = np.zeros(width * channels, dtype=np.uint8)
    y = 0
    try:
        with open(path, "rb") as f:
            for data in _idat(f, path):
                while data and y < height:
                    pending += inflate.decompress(data, PIECE)
                    data = inflate.unconsumed_tail
                    while y < height and len(pending) >= stride * min(rows, height - y):
                        n = min(rows, height - y)
                        raw = np.frombuffer(bytes(pending[:n * stride]), dtype=np.uint8).reshape(n, stride)
                        samples = _unfilter(raw, previous, channels)
                        del pending[:n * stride]
                        previous = samples[-1]
                        yield _rgb(samples.reshape(n, width, channels))
                        y += n
            if y == height:  # every chunk's CRC checked, up to IEND
                return
    except zlib.error as exc:
        raise TexportError(f"cannot read image {path}: damaged image data ({exc})") from None
    except OSError as exc:
        raise TexportError(f"cannot read image {path}: {exc}") from None
    except _Pillow:
        yield from _pillow_bands(path, size_limit, rows, y)
        return
    raise TexportError(f"cannot read image {path}: its image data ends after {y + len(pending) // stride} of {height} rows")


def _unfilter(raw: np.ndarray, previous: np.ndarray, channels: int) -> np.ndarray:
    """The rows' samples [n, width x channels] with their filters undone: None, Sub or Up."""
    if not raw[:, 0].any():
        return raw[:, 1:].copy()
    out = np.empty((raw.shape[0], raw.shape[1] - 1), dtype=np.uint8)
    for i, row in enumerate(raw):
        kind, x = int(row[0]), row[1:]
        if kind == 0:
            out[i] = x
        elif kind == 1:  # Sub: plus the same channel of the pixel to the left (sums wrap at 256)
            out[i] = np.cumsum(x.reshape(-1, channels), axis=0, dtype=np.uint8).ravel()
        elif kind == 2:  # Up: plus the pixel above
            out[i] = x + previous
        elif kind in (3, 4):
            raise _Pillow
        else:
            raise TexportError(f"damaged image data: unknown PNG row filter {kind}")
        previous = out[i]
    return out


def _rgb(samples: np.ndarray) -> np.ndarray:
    """[rows, width, 3] from gray, gray + alpha, RGB or RGBA samples (alpha dropped, gray repeated)."""
    if samples.shape[2] in (1, 2):
        return np.repeat(samples[..., :1], 3, axis=2)
    return np.ascontiguousarray(samples[..., :3])


def _pillow_bands(path: Path, size_limit: int, rows: int, start: int) -> Iterator[np.ndarray]:
    """Rows from `start` on, Pillow decoding the whole image first (converted as load_image converts)."""
    with open_image(path, size_limit) as img:
        img.load()
        white = integer_white(img) if img.mode.startswith("I") else None
        for top in range(start, img.height, rows):
            strip = img.crop((0, top, img.width, min(top + rows, img.height)))
            if white is None and strip.mode not in ("F", "P", "PA"):
                yield np.asarray(strip.convert("RGB"))
            else:  # as images.to_uint8 quantizes load_image's floats
                yield np.round(np.clip(_to_float_rgb(strip, white), 0.0, 1.0) * 255.0).astype(np.uint8)
