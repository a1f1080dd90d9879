"""Large textures in tiles with bounded memory (`texport tile`).

The image is produced band by band (a row of tiles) and streamed to a PNG (images.PngRowWriter) or
a DDS with its mips (texport.dds_stream); only one band of floats is held. Each tile is computed on
a window `overlap` pixels larger on every side, from the coordinate-seeded noise of texport.noise
(never materialized whole), and accumulated with per-pixel weights:

- texture networks: the weight is 1 on the tile and 0 on its border, and the border (the halo)
  covers the generator's receptive field, so every output pixel sees exactly the noise a single
  pass would give it: the stitched image equals one pass over the same field (tests/test_tiling.py
  checks it, max abs difference <= 1e-5). The halo (`texnet_halo`): the generator's receptive
  radius (`texnet.receptive_radius`, 80 px for 5 scales; a change of one noise pixel moved output
  pixels up to 77 px away in the shipped generators) plus 16, rounded up to the size multiple.
- ProPO: its stages use image-wide statistics (Gram matrices of the image being made, the final
  colour histogram), so tiles cannot join exactly. Every tile is synthesized against the same
  target statistics (the texture's Gram matrices) on a window `PROPO_OVERLAP` larger on each side,
  and neighbouring windows are cross-faded with linear ramps over their 2 x overlap shared pixels:
  seams become soft transitions between two valid samples of the texture rather than cuts.

With --tileable the noise coordinates (and the cross-fades) wrap around the image, so the result
tiles seamlessly; its sides must then be multiples of the model's size multiple (16 for the
shipped models).

The work is split so that one process and a cluster (texport.cluster) run the same code:
`plan_tiles` fixes the geometry, `compute_band` makes one band's pixels (texture networks: its
finished rows; ProPO: its weighted sums), and `assemble` joins ProPO's sums in order. Whoever runs
the bands, the arithmetic is the same, so at the same number of threads per process the outputs are
byte for byte the same. Between thread counts, PyTorch's CPU kernels split their sums differently: a
few pixels of a tile may differ by one level (tests/test_tiling.py bounds it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch

import texport.defaults as defaults
from texport.errors import TexportError
from texport.models.handle import PROPO
from texport.models.texnet import receptive_radius
from texport.progress import CountProgress
from texport.runtime.backends import Backend
from texport.textures.dds import DdsOptions
from texport.textures.dds_stream import write_dds_bands
from texport.textures.images import write_png_bands
from texport.textures.noise import noise_at
from texport.textures.sizes import tileable_size

PROPO_OVERLAP = 64



def weight_profile(tile: int, overlap: int) -> torch.Tensor:
    """ProPO's 1-D cross-fade weights over a window of tile + 2 overlap pixels: linear ramps over the
    2 x overlap pixels shared with each neighbour, so two neighbours' weights sum to 1 there."""
    n = tile + 2 * overlap
    i = torch.arange(n, dtype=torch.float32)
    ramp = 2 * overlap
    return torch.minimum(torch.ones(n), torch.minimum((i + 0.5) / ramp, (n - i - 0.5) / ramp))


@dataclass(frozen=True)
class TileRequest:
    """What a tiled output is asked for, on any machine or cluster: its size, the tile side, the noise
    seed, whether it wraps around, and the PNG's bits per channel or, for a DDS, its options."""
    width: int
    height: int
    tile: int = defaults.TILE  # a multiple of the model's grid (ProPO: at least 2 x PROPO_OVERLAP)
    seed: int = 0
    tileable: bool = False
    bits: int = 8
    dds: DdsOptions | None = None  # a DDS output (texport.dds_stream), its mips wrapping when tileable


def tile_image(backend: Backend, output: str | os.PathLike, request: TileRequest, texture: torch.Tensor | None = None,
               progress: CountProgress | None = None) -> dict:
    """Write the requested texture from `backend` to `output` (PNG or DDS) tile by tile; returns a summary.
    texture: ProPO's target."""
    bands = iter_bands(backend, request, texture, progress)
    summary = next(bands)
    summary["path"] = write_bands(output, request, bands)
    return summary


def write_bands(output: str | os.PathLike, request: TileRequest, bands: Iterable):
    """The output from its bands top to bottom (floats or PNG scanlines): a PNG, or a DDS given request.dds."""
    if request.dds is not None:
        return write_dds_bands(output, request.width, request.height, request.dds, request.tileable, bands)
    return write_png_bands(output, request.width, request.height, request.bits, bands)


def texnet_halo(size_multiple: int) -> int:
    """The halo of a texture network with this size multiple (2^(scales-1)): 96 px for 5 scales."""
    radius = receptive_radius(size_multiple.bit_length())  # scales = log2(multiple) + 1
    return -(-(radius + 16) // size_multiple) * size_multiple


@dataclass(frozen=True)
class TilePlan:
    """The geometry of a tiled output, fixed once and shared by every process that computes a band."""
    width: int
    height: int
    tile: int
    seed: int
    tileable: bool
    propo: bool
    channels: int  # the noise input's channels
    overlap: int  # the halo (texture networks) or cross-fade margin (ProPO) on each side of a tile

    @property
    def window(self) -> int:
        return self.tile + 2 * self.overlap

    @property
    def bands(self) -> tuple[int, ...]:
        """Each band's first row."""
        return tuple(range(0, self.height, self.tile))

    @property
    def columns(self) -> tuple[int, ...]:
        """Each tile's first column."""
        return tuple(range(0, self.width, self.tile))

    @property
    def tiles(self) -> int:
        return len(self.bands) * len(self.columns)

    @property
    def wraps_rows(self) -> bool:
        """Tileable ProPO: the top band's cross-fade needs the last band's sums first (`crossfade_head`)."""
        return self.tileable and self.propo

    def summary(self) -> dict:
        return {"tiles": self.tiles, "overlap": self.overlap, "window": self.window, "width": self.width,
                "height": self.height}


def plan_tiles(model, request: TileRequest, has_texture: bool = False) -> TilePlan:
    """Check a tiling request against a model (a Backend or a texport.models.handle.Model: its kind, grid and
    noise channels) and fix its geometry; one-line errors."""
    width, height, tile, seed, tileable = request.width, request.height, request.tile, request.seed, request.tileable

    if request.dds is not None and request.bits != 8:
        raise TexportError(f"a DDS file holds 8 bits per channel; {request.bits}-bit output is for PNG files")
    multiple = model.size_multiple
    if tile < multiple or tile % multiple:
        raise TexportError(f"the tile side must be a positive multiple of {multiple}, got {tile}")
    if tileable:
        tileable_size(width, height, multiple, snap=False)  # a one-line error off the grid
    propo = model.kind == PROPO
    if propo and not has_texture:
        raise TexportError("a ProPO model needs a target texture")
    overlap = PROPO_OVERLAP if propo else texnet_halo(multiple)
    if propo and tile < 2 * overlap:  # a band's cross-fade must end before the next band's begins
        raise TexportError(f"ProPO tiles must be at least {2 * overlap} pixels, got {tile}")
    return TilePlan(width, height, tile, seed, tileable, propo, model.noise_channels, overlap)


Sums = tuple[torch.Tensor, torch.Tensor]  # ProPO: a band's weighted sum [3, window, width] and weights [1, window, width]


def compute_band(backend: Backend, plan: TilePlan, y0: int, texture: torch.Tensor | None = None,
                 progress: CountProgress | None = None) -> torch.Tensor | Sums:
    """The band starting at row y0: texture networks its finished rows [3, rows, width]; ProPO the
    weighted sums of its tiles over rows [y0 - overlap, y0 + tile + overlap), for `assemble`."""
    tile, overlap, height, width, seed = plan.tile, plan.overlap, plan.height, plan.width, plan.seed
    tileable, total = plan.tileable, plan.tiles
    ys = torch.arange(y0 - overlap, y0 + tile + overlap)
    ys = ys % height if tileable else ys
    if not plan.propo:
        # each tile's centre, placed (rows [y0, y0 + tile), clipped to the image)
        rows = min(tile, height - y0)
        band = torch.empty(3, rows, width)
        for x0 in plan.columns:
            xs = torch.arange(x0 - overlap, x0 + tile + overlap)
            cols = min(tile, width - x0)
            image = backend(noise_at(seed, plan.channels, ys, xs % width if tileable else xs), texture)[0]
            band[:, :, x0:x0 + cols] = image[:, overlap:overlap + rows, overlap:overlap + cols].float().cpu()
            if progress is not None:
                progress(1, total)
        return band
    window = plan.window
    profile = weight_profile(tile, overlap)
    acc = torch.zeros(3, window, width)
    wsum = torch.zeros(1, window, width)
    for x0 in plan.columns:
        xs = torch.arange(x0 - overlap, x0 + tile + overlap)
        keep = torch.ones(window, dtype=torch.bool) if tileable else (xs >= 0) & (xs < width)
        cols = (xs % width if tileable else xs)[keep]
        z = noise_at(seed, plan.channels, ys, xs % width if tileable else xs)
        image = backend(z, texture)[0].float().cpu()
        w = profile[:, None] * profile[None, :]
        acc.index_add_(2, cols, (image * w)[:, :, keep])
        wsum.index_add_(2, cols, w[None][:, :, keep])
        if progress is not None:
            progress(1, total)
    return acc, wsum


def crossfade_head(plan: TilePlan, last: Sums) -> Sums:
    """Tileable ProPO: the last band's rows from `height` on, which belong to the top of the image."""
    start = plan.height - plan.bands[-1] + plan.overlap
    return last[0][:, start:], last[1][:, start:]


def assemble(plan: TilePlan, bands: Iterable[torch.Tensor | Sums], head: Sums | None = None) -> Iterator[torch.Tensor]:
    """The image's rows top to bottom as float bands [3, rows, width], from `compute_band`'s results in
    band order (ProPO: cross-faded with their neighbours; `head` from `crossfade_head` when the plan wraps)."""
    tile, overlap, height, tileable = plan.tile, plan.overlap, plan.height, plan.tileable
    carry = tail = None
    for y0, result in zip(plan.bands, bands):
        if not plan.propo:  # weights 1 on the tile, 0 on the halo: the tile's rows are done
            yield result
            continue
        acc, wsum = result
        if carry is not None:
            acc[:, : 2 * overlap] += carry[0]
            wsum[:, : 2 * overlap] += carry[1]
        if y0 == 0:
            if head is not None:
                n = head[0].shape[1]
                acc[:, overlap:overlap + n] += head[0]
                wsum[:, overlap:overlap + n] += head[1]
            if tileable:  # rows [-overlap, 0) are the image's last rows
                tail = (acc[:, :overlap].clone(), wsum[:, :overlap].clone())
        final = y0 + tile >= height
        lo = max(0, y0 - overlap)
        hi = height if final else y0 + tile - overlap
        rows = slice(lo - (y0 - overlap), hi - (y0 - overlap))
        out_acc, out_w = acc[:, rows], wsum[:, rows]
        if final and tail is not None:
            out_acc[:, -overlap:] += tail[0]
            out_w[:, -overlap:] += tail[1]
        yield out_acc / out_w.clamp_min(1e-12)
        carry = (acc[:, tile:tile + 2 * overlap].clone(), wsum[:, tile:tile + 2 * overlap].clone())


def iter_bands(backend: Backend, request: TileRequest, texture: torch.Tensor | None = None,
               progress: CountProgress | None = None):
    """Yields a summary dict, then the image's rows top to bottom as float bands [3, rows, width]."""
    plan = plan_tiles(backend, request, texture is not None)

    def band(y0: int) -> torch.Tensor | Sums:
        return compute_band(backend, plan, y0, texture, progress)

    # Wrap-around cross-fades: computed first (and the last band again at the end, rather than held).
    head = crossfade_head(plan, band(plan.bands[-1])) if plan.wraps_rows else None
    yield plan.summary()
    yield from assemble(plan, map(band, plan.bands), head)
