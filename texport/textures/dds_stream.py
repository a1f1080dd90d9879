"""DDS files written a band of rows at a time, for textures too large to hold whole (`texport tile -o
X.dds`, `texport dds` of a large image).

A 16384x16384 texture is 805 MB as 8-bit RGB and 3.2 GB as floats; its mip chain as floats another
third of that. Here level 0 arrives top to bottom in bands and nothing larger than a band is held:

- every level is encoded a whole 4-row band of blocks at a time (texport.dds.encode_level, the same
  blocks: BCn blocks do not depend on their neighbours) as soon as its rows exist, and written at its
  final place in one temporary file of the final size, so no level waits in memory and nothing is
  joined at the end (DDS stores level 0 first, then each smaller level; the offsets are known up front);
- each mip level is made from the level above as its rows come (mips.RowReducer: the tent filter of
  texport.mips with the same arithmetic, wrapping around with tileable, in linear light for sRGB);
  wrapping makes the first rows of each level wait for the last rows of the level above, and only
  those few rows are held until the end;
- the file's whole size is reserved first (posix_fallocate where the file system has it), so a disk
  that cannot hold it fails at once rather than after the work; it is renamed into place only when
  every level is complete, and any error or interrupt removes it (texport.files.atomic_path).

The bytes are those of texport.dds.encode_dds for the whole image (tests/test_dds_stream.py checks
every level), so a streamed tile equals `texport dds` of the same tile's PNG.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Iterable

import numpy as np

import texport.textures.dds as dds
import texport.textures.mips as mips
from texport.errors import TexportError
from texport.files import atomic_path, write_error
from texport.textures.images import png_rows

CHUNK_ROWS = 64  # level-0 rows taken at a time: the floats of the chain stay a few MB per level


class _Level:
    """One level's encoder: takes rows in any order, encodes each band of 4 rows (one row of blocks) once
    it is complete, and writes its bytes at their place in the file."""

    def __init__(self, fmt: dds.Format, width: int, height: int, offset: int, write):
        self.fmt, self.width, self.height, self.offset, self._write = fmt, width, height, offset, write
        self.pending: dict[int, np.ndarray] = {}  # rows of incomplete block rows
        self.rows = 0  # rows encoded

    def put(self, first: int, rows: np.ndarray) -> None:
        last = first + rows.shape[0]
        lo = min(-(-first // 4) * 4, last)  # the whole block rows in [first, last): [lo, hi)
        hi = max(lo, last if last == self.height else last // 4 * 4)
        if hi > lo:
            self._encode(lo, rows[lo - first:hi - first])
        loose = [*range(first, lo), *range(hi, last)]
        for r in loose:
            self.pending[r] = rows[r - first].copy()
        for top in sorted({r // 4 * 4 for r in loose}):
            band = range(top, min(top + 4, self.height))
            if all(r in self.pending for r in band):
                self._encode(top, np.stack([self.pending.pop(r) for r in band]))

    def _encode(self, top: int, rows: np.ndarray) -> None:
        if self.fmt.block_bytes:
            at = top // 4 * max(1, (self.width + 3) // 4) * self.fmt.block_bytes
        else:
            at = top * self.width * 4
        self._write(dds.encode_level(rows, self.fmt), self.offset + at)
        self.rows += rows.shape[0]


class DdsBandWriter:
    """Writes a DDS file (texport.dds's layout and bytes) from level 0's rows given top to bottom as
    uint8 [rows, width, 3] arrays, building the mip chain (options.mips) as they come; atomically."""

    def __init__(self, path: str | os.PathLike, width: int, height: int, options: dds.DdsOptions,
                 tileable: bool = False):
        path = Path(path)
        if not dds.is_dds(path):
            raise TexportError(f"output must be a .dds file, got {path.name}")
        if min(width, height) < 1:
            raise TexportError(f"cannot write an empty {width}x{height} image")
        fmt = dds.check_format(options.format)
        dds.check_encoder(fmt)
        self.path, self.width, self.height, self.srgb = path, width, height, options.srgb
        sizes = mips.level_sizes(width, height) if options.mips else [(width, height)]
        self.levels, offset = [], dds.HEADER_BYTES
        for w, h in sizes:
            self.levels.append(_Level(fmt, w, h, offset, self._pwrite))
            offset += dds.level_bytes(fmt, w, h)
        self.reducers = [mips.RowReducer(a, b, tileable) for a, b in zip(sizes, sizes[1:])]
        self.rows = 0
        self._fd = None
        self._atomic = atomic_path(path)
        self._tmp = self._atomic.__enter__()
        try:
            self._fd = os.open(self._tmp, os.O_WRONLY)
            self._reserve(offset)
            self._pwrite(dds.header(fmt, width, height, len(sizes), options.srgb), 0)
        except BaseException as exc:
            self.abort()
            if isinstance(exc, OSError):
                raise write_error(path, exc) from None
            raise

    def _reserve(self, size: int) -> None:
        try:
            os.posix_fallocate(self._fd, 0, size)
        except OSError as exc:  # a file system without it: the writes find a full disk instead
            if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
        except AttributeError:  # no posix_fallocate on this platform
            pass

    def _pwrite(self, data: bytes, offset: int) -> None:
        view = memoryview(data)
        while view:
            done = os.pwrite(self._fd, view, offset)
            view, offset = view[done:], offset + done

    def write(self, rows: np.ndarray) -> None:
        """The next rows of level 0: uint8 [rows, width, 3]."""
        rows = np.asarray(rows)
        if rows.dtype != np.uint8 or rows.ndim != 3 or rows.shape[1:] != (self.width, 3) \
                or self.rows + rows.shape[0] > self.height:
            raise ValueError(f"rows {rows.dtype} {tuple(rows.shape)} do not fit a {self.width}x{self.height} "
                             f"image at row {self.rows}")
        try:
            for top in range(0, rows.shape[0], CHUNK_ROWS):
                chunk = rows[top:top + CHUNK_ROWS]
                self.levels[0].put(self.rows, chunk)
                if self.reducers:  # as mips.mip_chain of level0 / 255 (dds.encode_dds)
                    work = chunk.astype(np.float32) / 255.0
                    self._feed(1, self.rows, mips.srgb_to_linear(work).astype(np.float32) if self.srgb else work)
                self.rows += chunk.shape[0]
        except OSError as exc:
            self.abort()
            raise write_error(self.path, exc) from None

    def _feed(self, k: int, first: int, work: np.ndarray) -> None:
        """Rows of level k - 1 (float32, linear light for sRGB) to the reducer that makes level k."""
        for top, out in self.reducers[k - 1].push(first, work):
            stored = (mips.linear_to_srgb(out) if self.srgb else np.clip(out, 0.0, 1.0)).astype(np.float32)
            self.levels[k].put(top, np.round(stored * 255.0).astype(np.uint8))
            if k < len(self.reducers):
                self._feed(k + 1, top, out)

    def close(self) -> Path:
        """Finish the file (every row of level 0 must have been written) and move it into place."""
        missing = [f"{lv.width}x{lv.height}" for lv in self.levels if lv.rows != lv.height]
        if self.rows != self.height or missing:
            self.abort()
            raise ValueError(f"only {self.rows} of {self.height} rows were written (incomplete levels: {missing})")
        try:
            os.close(self._fd)
        except OSError as exc:
            self._fd = None
            self.abort()
            raise write_error(self.path, exc) from None
        self._fd = None
        self._atomic.__exit__(None, None, None)
        return self.path

    def abort(self) -> None:
        """Drop the partial file (the target, if it existed, is untouched)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        try:
            self._atomic.__exit__(RuntimeError, RuntimeError("aborted"), None)
        except RuntimeError:
            pass


def level0_rows(band, width: int) -> np.ndarray:
    """A band as uint8 [rows, width, 3]: as it is, from PNG scanlines (images.png_rows, e.g. from a Ray
    worker), or from floats [3, rows, width] in [0, 1] quantized as a PNG stores them."""
    if not isinstance(band, np.ndarray):
        band = png_rows(band[0] if band.dim() == 4 else band)
    if band.ndim == 2 and band.shape[1] == 1 + 3 * width:  # 8-bit scanlines: a filter byte (0), then the samples
        band = band[:, 1:].reshape(band.shape[0], width, 3)
    return band


def write_dds_bands(path: str | os.PathLike, width: int, height: int, options: dds.DdsOptions, tileable: bool,
                    bands: Iterable) -> Path:
    """Write bands top to bottom (see level0_rows) into one DDS file with options' format, sRGB and mips,
    atomically; the mips wrap around if tileable. A failure or an interrupt leaves no file."""
    writer = DdsBandWriter(path, width, height, options, tileable)
    try:
        for band in bands:
            writer.write(level0_rows(band, width))
        return writer.close()
    except BaseException:
        writer.abort()
        raise
