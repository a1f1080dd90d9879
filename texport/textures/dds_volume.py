"""DDS volume textures (DX10): the header of texport.textures.dds with a depth, then every level's
slices back to back.

A volume's layout (Microsoft, "DDS File Layout", volume textures): for each mip level, largest first,
its depth slices in order, each stored as a 2D level of that size (a BC format compresses every slice
on its own, in 4x4 blocks, as Direct3D's 3D BC textures are laid out). The header adds DDSD_DEPTH
and the depth, caps2 DDSCAPS2_VOLUME, and resource dimension TEXTURE3D in the DX10 extension.

Mips halve the depth too (level n is max(1, side >> n) on all three axes) with the tent filter of
texport.textures.mips along each axis, in linear light for sRGB formats, wrapping with --tileable.
Level 0 streams: each slice is encoded as it comes and only its copy filtered to half size in x and y
is kept for level 1 (float32, a quarter of the pixels: 3 bytes per voxel of level 0, as the uint8
volume), so a volume with mips holds about its level 0's size in memory, and one without holds a slab.
"""

from __future__ import annotations

import math

import numpy as np

from texport.errors import TexportError
from texport.textures.dds import check_format, encode_level, header
from texport.textures.mips import linear_to_srgb, reduce, reduce_axis, srgb_to_linear


def volume_level_sizes(width: int, height: int, depth: int) -> list[tuple[int, int, int]]:
    """(width, height, depth) of every level of a full 3D chain, down to 1x1x1."""
    count = int(math.floor(math.log2(max(width, height, depth)))) + 1
    return [(max(1, width >> n), max(1, height >> n), max(1, depth >> n)) for n in range(count)]


class DdsVolumeWriter:
    """Writes a volume of size (W, H, D) to an open binary file: header, then slabs [n, H, W, 3] uint8 in z order."""

    def __init__(self, file, size: tuple[int, int, int], format: str = "bc7", srgb: bool = True, mips: bool = False,
                 tileable: bool = False):
        self.file, self.fmt, self.srgb, self.tileable = file, check_format(format), srgb, tileable
        width, height, depth = size
        self.sizes = volume_level_sizes(width, height, depth) if mips else [(width, height, depth)]
        self.depth, self.written = depth, 0
        self.halves: list[np.ndarray] = []  # level 1's slices reduced in x and y, in the filter's space
        file.write(header(self.fmt, width, height, len(self.sizes), srgb, depth=depth))

    def _filter_space(self, stored: np.ndarray) -> np.ndarray:
        values = stored.astype(np.float32) / 255.0
        return srgb_to_linear(values).astype(np.float32) if self.srgb else values

    def _stored(self, level: np.ndarray) -> np.ndarray:
        values = linear_to_srgb(level) if self.srgb else np.clip(level, 0.0, 1.0)
        return np.round(values * 255.0).astype(np.uint8)

    def write(self, slab: np.ndarray) -> None:
        for image in slab:
            self.file.write(encode_level(np.ascontiguousarray(image), self.fmt))
            if len(self.sizes) > 1:
                w1, h1, _ = self.sizes[1]
                self.halves.append(reduce(self._filter_space(image), w1, h1, wrap=self.tileable))
        self.written += len(slab)

    def finish(self) -> None:
        if self.written != self.depth:
            raise TexportError(f"internal: a volume of depth {self.depth} got {self.written} slices")
        if len(self.sizes) == 1:
            return
        level = reduce_axis(np.stack(self.halves), self.sizes[1][2], 0, self.tileable)
        self.halves = []
        for n in range(1, len(self.sizes)):
            if n > 1:
                w, h, d = self.sizes[n]
                level = reduce_axis(np.stack([reduce(s, w, h, wrap=self.tileable) for s in level]), d, 0, self.tileable)
            for image in self._stored(level):
                self.file.write(encode_level(image, self.fmt))
