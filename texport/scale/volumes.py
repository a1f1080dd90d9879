"""Solid textures on demand: any window of a solid network's infinite volume, bit for bit the same
wherever it is cut from (`texport synth SOLID --size WxHxD --origin X,Y,Z`).

A solid network computes any window exactly (texport.models.solid: the noise carries the halo), but
convolutions over tensors of different shapes sum in different orders, so two windows would agree
only to rounding. Every volume is therefore computed on one fixed lattice of aligned blocks, the
cubes [kB, (k+1)B) of side B on every axis (`block`, a multiple of the network's grid), each from the
same noise at the same shape, and cropped: a block of a volume equals the same region of any larger
volume of the same seed, to the last bit, at the same thread count and block side.

Blocks are computed on PyTorch, onnxruntime or OpenVINO (texport.runtime.volumes: one fixed-shape
graph for every block); each backend's windows agree with its own larger volumes bit for bit, and
with the other backends' to rounding. The volume is produced in slabs along z, one block row at a
time, and handed to a writer
(texport.textures.volumes): memory holds one slab of uint8 voxels and one block's features, whatever
the volume's size. With `tileable` the volume wraps in all three directions: its sides must be
multiples of the grid, the lattice covers [0, side) on each axis (its last block cut at the side)
and every noise coordinate is taken modulo the side.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np

import texport.defaults as defaults
from texport.errors import TexportError
from texport.models.solid import SolidNetwork
from texport.progress import CountProgress
from texport.runtime.volumes import BlockComputer
from texport.textures.dds import DdsOptions
from texport.textures.volumes import volume_writer

BLOCK = defaults.SOLID_BLOCK


def parse_volume_size(text: str) -> tuple[int, int, int]:
    """'WxHxD' (or 'N' for a cube) -> (W, H, D); one-line errors for anything else."""
    parts = str(text).lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or min(values) < 1:
        raise TexportError(f"a volume size is WxHxD (or N for a cube), three positive integers, got {text!r}")
    return values[0], values[1], values[2]


def is_volume_size(text: str) -> bool:
    return str(text).lower().count("x") == 2


def parse_origin(text: str | None) -> tuple[int, int, int]:
    """'X,Y,Z' (any integers) -> (x, y, z); None -> (0, 0, 0)."""
    if text is None:
        return 0, 0, 0
    try:
        values = tuple(int(v) for v in str(text).split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or any(abs(v) >= 2**31 for v in values):
        raise TexportError(f"--origin is X,Y,Z, three integers (signed 32-bit), got {text!r}")
    return values  # type: ignore[return-value]


@dataclass(frozen=True)
class VolumeRequest:
    """A window of a solid network's volume: size (W, H, D), origin (x, y, z), seed, and whether it wraps."""
    size: tuple[int, int, int]
    origin: tuple[int, int, int] = (0, 0, 0)
    seed: int = 0
    tileable: bool = False
    block: int = BLOCK


def check_request(source: SolidNetwork | BlockComputer, request: VolumeRequest, limit: int = defaults.TILE_SIZE_LIMIT) -> None:
    m = source.size_multiple
    if request.block < m or request.block % m:
        raise TexportError(f"the block side must be a positive multiple of {m}, got {request.block}")
    if max(request.size) > limit:
        raise TexportError(f"volume sides are at most {limit}, got {'x'.join(map(str, request.size))}")
    if request.tileable and any(s % m for s in request.size):
        raise TexportError(f"a tileable volume's sides must be multiples of {m}, got {'x'.join(map(str, request.size))}")


def pieces(start: int, length: int, block: int, period: int | None) -> list[tuple[int, int, int, int]]:
    """One axis of a request cut along the lattice: (output offset, block index, offset in the block, length)."""
    out, p, end = [], start, start + length
    while p < end:
        c = p % period if period is not None else p
        k, offset = c // block, c % block
        n = min(block - offset, end - p)
        if period is not None:
            n = min(n, period - c)
        out.append((p - start, k, offset, n))
        p += n
    return out


def iter_slabs(source: SolidNetwork | BlockComputer, request: VolumeRequest, progress: CountProgress | None = None
               ) -> Iterator[np.ndarray]:
    """The volume as uint8 slabs [n, H, W, 3] along z (rows y, columns x), each block row computed block by
    block by `source` (a network runs on PyTorch; texport.runtime.volumes.BlockComputer on any CPU backend)."""
    compute = blocks(source, request.block)
    width, height, depth = request.size
    x0, y0, z0 = request.origin
    b = request.block
    period = request.size if request.tileable else None
    axes = [pieces(o, n, b, period[i] if period else None) for i, (o, n) in enumerate(((x0, width), (y0, height), (z0, depth)))]
    total = len(axes[0]) * len(axes[1]) * len(axes[2])
    for zo, kz, zoff, zn in axes[2]:
        slab = np.empty((zn, height, width, 3), dtype=np.uint8)
        cache: dict[tuple[int, int], np.ndarray] = {}
        for yo, ky, yoff, yn in axes[1]:
            for xo, kx, xoff, xn in axes[0]:
                if (ky, kx) not in cache:
                    cache[(ky, kx)] = compute(request.seed, (kx * b, ky * b, kz * b), period)  # [D, H, W, 3]
                slab[:, yo:yo + yn, xo:xo + xn] = cache[(ky, kx)][zoff:zoff + zn, yoff:yoff + yn, xoff:xoff + xn]
                if progress is not None:
                    progress(1, total)
        yield slab


def blocks(source: SolidNetwork | BlockComputer, side: int) -> BlockComputer:
    """The block computer of a source: a network's on PyTorch, or the given one (of the same block side)."""
    if isinstance(source, BlockComputer):
        if source.side != side:
            raise TexportError(f"the block computer makes blocks of {source.side}, the request {side}")
        return source
    return BlockComputer(source, side)


def synthesize_volume(source: SolidNetwork | BlockComputer, request: VolumeRequest) -> np.ndarray:
    """The whole window in memory: uint8 [D, H, W, 3]."""
    check_request(source, request)
    return np.concatenate(list(iter_slabs(source, request)), axis=0)


def write_volume(source: SolidNetwork | BlockComputer, output: str | os.PathLike, request: VolumeRequest,
                 dds: DdsOptions | None = None, progress: CountProgress | None = None) -> dict:
    """Write the window to `output` (.npy, .dds or a folder of PNG slices, texport.textures.volumes), slab by slab."""
    check_request(source, request)
    with volume_writer(output, request.size, dds, request.tileable) as writer:
        for slab in iter_slabs(source, request, progress):
            writer.write(slab)
    return {"size": request.size, "origin": request.origin, "block": request.block}
