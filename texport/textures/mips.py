"""Mip chains: each level half the size of the one above, down to 1x1, filtered so a tileable texture
stays tileable at every level.

The filter is a tent (triangle) whose half-width is the scale factor: for a 2:1 reduction each new
pixel is [1, 3, 3, 1] / 8 of the four nearest pixels on each axis, which is the "linear" (bilinear,
antialiased) reduction of Pillow and of torch's interpolate(antialias=True). It was chosen because

- it is never negative, so it has no ringing: no halos around the pebbles' dark gaps and no values
  outside [0, 1] to clip, which sharper windowed sincs (Lanczos, Kaiser) would produce;
- it suppresses aliasing better than the 2x2 box, whose response falls off more slowly above the new
  Nyquist frequency, at the cost of a slightly softer level;
- the same formula serves any ratio, so odd sides (25 -> 12, 3 -> 1) need no special case.

Each level is made from the float level above it (not from the 8-bit one), the usual cascade
(DirectXTex's GenerateMipMaps builds its box and linear chains the same way). At the borders the filter
needs pixels beyond the image: a tileable texture takes them from the opposite side (a circular
convolution, so every level is exactly periodic and its wrap-around seam is like any inner step);
any other texture mirrors its edge (half-sample symmetric), so no colour from the far side leaks in.

Colour textures stored as sRGB are averaged in linear light (decoded with the sRGB transfer
function of IEC 61966-2-1, filtered, encoded again): averaging the encoded values would darken
every contrasty level, and the GPU samples and filters the *_SRGB DXGI formats in linear light too
(Microsoft's DXGI_FORMAT documentation). With srgb=False the stored values are filtered
as they are (data that is not colour, or a pipeline that wants UNORM).
"""

from __future__ import annotations

import math

import numpy as np


def level_sizes(width: int, height: int) -> list[tuple[int, int]]:
    """(width, height) of every level of a full chain: floor halving, each side at least 1, down to 1x1
    (the rule Direct3D uses: level n is max(1, side >> n))."""
    count = int(math.floor(math.log2(max(width, height)))) + 1
    return [(max(1, width >> n), max(1, height >> n)) for n in range(count)]


def srgb_to_linear(values: np.ndarray) -> np.ndarray:
    """The sRGB decoding function (IEC 61966-2-1) on values in [0, 1]."""
    return np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(values: np.ndarray) -> np.ndarray:
    """The sRGB encoding function (IEC 61966-2-1) on values in [0, 1]."""
    values = np.clip(values, 0.0, 1.0)
    return np.where(values <= 0.0031308, values * 12.92, 1.055 * values ** (1 / 2.4) - 0.055)


def _taps(size_in: int, size_out: int, wrap: bool) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and weights [size_out, taps] of the tent filter that maps size_in samples to size_out."""
    scale = size_in / size_out
    centres = (np.arange(size_out) + 0.5) * scale - 0.5  # output pixel centres in input pixel coordinates
    first = np.floor(centres - scale).astype(np.int64) + 1
    span = int(math.ceil(2 * scale)) + 1
    index = first[:, None] + np.arange(span)[None, :]
    weight = np.clip(1.0 - np.abs(index - centres[:, None]) / scale, 0.0, None)
    weight /= weight.sum(axis=1, keepdims=True)
    if wrap:
        index = np.mod(index, size_in)
    else:  # half-sample symmetric mirror: -1 -> 0, size_in -> size_in - 1
        index = np.mod(index, 2 * size_in)
        index = np.where(index >= size_in, 2 * size_in - 1 - index, index)
    return index, weight.astype(np.float32)


def _reduce_axis(image: np.ndarray, size_out: int, axis: int, wrap: bool) -> np.ndarray:
    size_in = image.shape[axis]
    if size_in == size_out:
        return image
    index, weight = _taps(size_in, size_out, wrap)
    shape = [1] * image.ndim
    shape[axis] = size_out
    out = np.zeros(image.shape[:axis] + (size_out,) + image.shape[axis + 1:], dtype=np.float32)
    for t in range(index.shape[1]):  # one tap at a time: memory stays at two images of the new size
        out += np.take(image, index[:, t], axis=axis) * weight[:, t].reshape(shape)
    return out


def reduce_axis(image: np.ndarray, size_out: int, axis: int, wrap: bool) -> np.ndarray:
    """The tent filter along one axis of a float array (a volume's depth: texport.textures.dds_volume)."""
    return _reduce_axis(image, size_out, axis, wrap)


def reduce(image: np.ndarray, width: int, height: int, wrap: bool) -> np.ndarray:
    """Filter an [H, W, C] float image down to [height, width, C] with the tent filter (separable)."""
    return _reduce_axis(_reduce_axis(image, width, 1, wrap), height, 0, wrap)


def mip_chain(image: np.ndarray, tileable: bool = False, srgb: bool = True, levels: int | None = None) -> list[np.ndarray]:
    """Every level of `image` ([H, W, C] float32 in [0, 1], the level 0 as stored) down to 1x1, as float32
    in the stored encoding (sRGB-encoded values when srgb). levels limits the count (1: level 0 only)."""
    image = np.asarray(image, dtype=np.float32)
    height, width = image.shape[:2]
    sizes = level_sizes(width, height)[:levels]
    chain = [image]
    work = srgb_to_linear(image).astype(np.float32) if srgb else image
    for w, h in sizes[1:]:
        work = reduce(work, w, h, wrap=tileable)
        chain.append((linear_to_srgb(work) if srgb else np.clip(work, 0.0, 1.0)).astype(np.float32))
    return chain


class RowReducer:
    """One level of the chain made from the level above a few rows at a time, for images too large to hold
    (texport.dds_stream): reduce()'s arithmetic, tap by tap in the same order on the same float32 values,
    applied to whichever rows are present, so its rows are the ones reduce() gives for the whole level,
    bit for bit, whatever the bands. Rows may arrive in any order: with wrapping, the first output rows
    need the last input rows, so they come out at the end; an input row is dropped once every output row
    that needs it is made, so only a few rows beyond the band in hand are ever held."""

    def __init__(self, size_in: tuple[int, int], size_out: tuple[int, int], wrap: bool):
        (self.width_in, self.height_in), (self.width, self.height) = size_in, size_out
        self.wrap = wrap
        if self.height_in == self.height:  # reduce() leaves this axis as it is
            self.index, self.weight = np.arange(self.height)[:, None], None
        else:
            self.index, self.weight = _taps(self.height_in, self.height, wrap)
        needs = [sorted(set(row.tolist())) for row in self.index]
        self.missing = np.array([len(n) for n in needs])  # input rows each output row still waits for
        self.users: list[list[int]] = [[] for _ in range(self.height_in)]  # output rows that need each input row
        for i, rows in enumerate(needs):
            for r in rows:
                self.users[r].append(i)
        self.uses = [len(u) for u in self.users]
        self.rows: dict[int, np.ndarray] = {}  # input rows held, already reduced across: [width, C]
        self.made = 0

    def push(self, first: int, band: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """Input rows first, first + 1, ... ([rows, width_in, C] float32); returns the output rows they
        complete as (first row, [rows, width, C]) runs, top to bottom."""
        across = _reduce_axis(np.asarray(band, dtype=np.float32), self.width, 1, self.wrap)
        ready = []
        for k in range(across.shape[0]):
            r = first + k
            if r in self.rows or not 0 <= r < self.height_in:
                raise ValueError(f"row {r} given twice or outside the {self.height_in} rows")
            self.rows[r] = across[k]
            for i in self.users[r]:
                self.missing[i] -= 1
                if self.missing[i] == 0:
                    ready.append(i)
        ready.sort()
        runs, start = [], 0
        for j in range(1, len(ready) + 1):
            if j == len(ready) or ready[j] != ready[j - 1] + 1:
                runs.append((ready[start], self._rows(np.array(ready[start:j]))))
                start = j
        for r in range(first, first + across.shape[0]):  # rows still needed later: copied out of the band
            if r in self.rows:
                self.rows[r] = self.rows[r].copy()
        return runs

    def _rows(self, ids: np.ndarray) -> np.ndarray:
        if self.weight is None:
            out = np.stack([self.rows[i] for i in ids])
        else:  # as _reduce_axis along the rows: zeros, then each tap's rows times its weights, in tap order
            out = np.zeros((len(ids),) + self.rows[int(self.index[ids[0], 0])].shape, dtype=np.float32)
            for t in range(self.index.shape[1]):
                taken = np.stack([self.rows[r] for r in self.index[ids, t].tolist()])
                out += taken * self.weight[ids, t].reshape(-1, 1, 1)
        for i in ids.tolist():
            for r in set(self.index[i].tolist()):
                self.uses[r] -= 1
                if self.uses[r] == 0:
                    del self.rows[r]
        self.made += len(ids)
        return out

    @property
    def done(self) -> bool:
        return self.made == self.height
