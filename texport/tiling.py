"""Large textures in tiles with bounded memory (`texport tile`).

The image is produced band by band (a row of tiles) and streamed to a PNG (images.PngRowWriter);
only one band of floats is held. Each tile is computed on a window `overlap` pixels larger on
every side, from the coordinate-seeded noise of texport.noise (never materialized whole), and
accumulated with per-pixel weights:

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
"""

from __future__ import annotations

import os
from typing import Callable

import torch

from .backends import Backend
from .errors import TexportError
from .handle import PROPO
from .images import PngRowWriter
from .noise import noise_at

PROPO_OVERLAP = 64

Progress = Callable[[int, int], None]


def weight_profile(tile: int, overlap: int) -> torch.Tensor:
    """ProPO's 1-D cross-fade weights over a window of tile + 2 overlap pixels: linear ramps over the
    2 x overlap pixels shared with each neighbour, so two neighbours' weights sum to 1 there."""
    n = tile + 2 * overlap
    i = torch.arange(n, dtype=torch.float32)
    ramp = 2 * overlap
    return torch.minimum(torch.ones(n), torch.minimum((i + 0.5) / ramp, (n - i - 0.5) / ramp))


def tile_image(runner: Backend, output: str | os.PathLike, width: int, height: int, tile: int = 1024, seed: int = 0,
               tileable: bool = False, texture: torch.Tensor | None = None, bits: int = 8,
               progress: Progress | None = None) -> dict:
    """Write a width x height texture from `runner` to `output` (PNG) tile by tile; returns a summary."""
    bands = iter_bands(runner, width, height, tile, seed, tileable, texture, progress)
    summary = next(bands)
    writer = PngRowWriter(output, width, height, bits)
    try:
        for band in bands:
            writer.write(band)
        summary["path"] = writer.close()
    except BaseException:
        writer.abort()
        raise
    return summary


def texnet_halo(size_multiple: int) -> int:
    """The halo of a texture network with this size multiple (2^(scales-1)): 96 px for 5 scales."""
    from .texnet import receptive_radius

    radius = receptive_radius(size_multiple.bit_length())  # scales = log2(multiple) + 1
    return -(-(radius + 16) // size_multiple) * size_multiple


def iter_bands(runner: Backend, width: int, height: int, tile: int = 1024, seed: int = 0, tileable: bool = False,
               texture: torch.Tensor | None = None, progress: Progress | None = None):
    """Yields a summary dict, then the image's rows top to bottom as float bands [3, rows, width]."""
    from .sizes import tileable_size

    multiple = runner.size_multiple
    if tile < multiple or tile % multiple:
        raise TexportError(f"the tile side must be a positive multiple of {multiple}, got {tile}")
    if tileable:
        tileable_size(width, height, multiple, snap=False)  # a one-line error off the grid
    propo = runner.kind == PROPO
    if propo and texture is None:
        raise TexportError("a ProPO model needs a target texture")
    overlap = PROPO_OVERLAP if propo else texnet_halo(multiple)
    if propo and tile < 2 * overlap:  # a band's cross-fade must end before the next band's begins
        raise TexportError(f"ProPO tiles must be at least {2 * overlap} pixels, got {tile}")
    channels = runner.noise_channels
    profile = weight_profile(tile, overlap)
    window = tile + 2 * overlap
    bands = list(range(0, height, tile))
    columns = list(range(0, width, tile))
    total = len(bands) * len(columns)

    def band_crop(y0: int) -> torch.Tensor:
        """Texture networks: each tile's centre, placed (rows [y0, y0 + tile), clipped to the image)."""
        rows = min(tile, height - y0)
        band = torch.empty(3, rows, width)
        ys = torch.arange(y0 - overlap, y0 + tile + overlap)
        ys = ys % height if tileable else ys
        for x0 in columns:
            xs = torch.arange(x0 - overlap, x0 + tile + overlap)
            cols = min(tile, width - x0)
            image = runner(noise_at(seed, channels, ys, xs % width if tileable else xs), texture)[0]
            band[:, :, x0:x0 + cols] = image[:, overlap:overlap + rows, overlap:overlap + cols].float().cpu()
            if progress is not None:
                progress(1, total)
        return band

    def band_sum(y0: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Weighted sum and weights of one band's tiles over rows [y0 - overlap, y0 + tile + overlap)."""
        acc = torch.zeros(3, window, width)
        wsum = torch.zeros(1, window, width)
        ys = torch.arange(y0 - overlap, y0 + tile + overlap)
        ys = ys % height if tileable else ys
        for x0 in columns:
            xs = torch.arange(x0 - overlap, x0 + tile + overlap)
            keep = torch.ones(window, dtype=torch.bool) if tileable else (xs >= 0) & (xs < width)
            cols = (xs % width if tileable else xs)[keep]
            z = noise_at(seed, channels, ys, xs % width if tileable else xs)
            image = runner(z, texture)[0].float().cpu()
            w = profile[:, None] * profile[None, :]
            acc.index_add_(2, cols, (image * w)[:, :, keep])
            wsum.index_add_(2, cols, w[None][:, :, keep])
            if progress is not None:
                progress(1, total)
        return acc, wsum

    # Wrap-around cross-fades: the last band's rows from `height` on belong to the top of the image.
    head = None
    if tileable and propo:
        last_acc, last_w = band_sum(bands[-1])
        start = height - bands[-1] + overlap
        head = (last_acc[:, start:], last_w[:, start:])
    yield {"tiles": total, "overlap": overlap, "window": window, "width": width, "height": height}
    carry = tail = None
    for y0 in bands:
        if not propo:  # weights 1 on the tile, 0 on the halo: the tile's rows are done
            yield band_crop(y0)
            continue
        acc, wsum = band_sum(y0)
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

