"""The portable noise contract: network input noise as a pure function of (seed, channel, y, x), and of
(seed, channel, z, y, x) for solid textures.

Any window of the infinite noise field can be produced alone (tiles, random access), and a C++ or
shader host reproduces it bit for bit from this definition, all arithmetic on unsigned 32-bit
integers, wrapping modulo 2**32:

    hash32(v):                      # "lowbias32", Chris Wellons, hash-prospector (public domain)
        v ^= v >> 16;  v *= 0x7feb352d
        v ^= v >> 15;  v *= 0x846ca68b
        v ^= v >> 16;  return v

    h     = hash32(x + hash32(y + hash32(channel + hash32(seed))))
    noise = (h >> 8) * 2**-24       # uniform on [0, 1) in steps of 2**-24, exact in float32

x and y are pixel coordinates of the full-resolution field, signed 32-bit integers taken as their
two's-complement unsigned bits (so the field extends to negative coordinates); seed is any integer
taken modulo 2**32; channel counts from 0. Seed 001 (Ulyanov et al.) samples its noise uniform
i.i.d., which this is up to the hash's quality.

The texture network reads K noise scales from one [B, K*C, H, W] tensor (see `scales`): scale i
takes channel group i subsampled by 2**i, so the scales are independent of each other while a
window at an offset that is a multiple of 2**(K-1) sees exactly the samples of the bigger field.
Batch item b uses seed + b.

Solid textures (texport.models.solid) read a 3D field, one more hash deep; the 2D field above is
unchanged by it, bit for bit:

    h     = hash32(x + hash32(y + hash32(z + hash32(channel + hash32(seed)))))
    noise = (h >> 8) * 2**-24

z, y, x are voxel coordinates (signed 32-bit, as above). A solid network reads K scales from one
[B, K*C, D, H, W] tensor the same way (`scales3`): scale i is channel group i subsampled by 2**i
along all three axes.
"""

from __future__ import annotations

import torch

MASK = 0xFFFFFFFF
M1, M2 = 0x7FEB352D, 0x846CA68B


def _mul32(v: torch.Tensor, constant: int) -> torch.Tensor:
    """(v * constant) mod 2**32 on int64 tensors without signed overflow: split the constant in 16-bit halves."""
    lo, hi = constant & 0xFFFF, constant >> 16
    return (v * lo + (((v * hi) & 0xFFFF) << 16)) & MASK


def hash32(v: torch.Tensor) -> torch.Tensor:
    """lowbias32 on uint32 values held in an int64 tensor."""
    v = v & MASK
    v = v ^ (v >> 16)
    v = _mul32(v, M1)
    v = v ^ (v >> 15)
    v = _mul32(v, M2)
    return v ^ (v >> 16)


def noise_field(
    seed: int,
    channels: int,
    height: int,
    width: int,
    x0: int = 0,
    y0: int = 0,
    batch: int = 1,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """The window [y0, y0+height) x [x0, x0+width) of the field: [batch, channels, height, width] float32.

    Batch item b uses seed + b.
    """
    dev = torch.device(device)
    ys = torch.arange(height, dtype=torch.int64, device=dev) + y0
    xs = torch.arange(width, dtype=torch.int64, device=dev) + x0
    return noise_at(seed, channels, ys, xs, batch)


def noise_at(seed: int, channels: int, ys: torch.Tensor, xs: torch.Tensor, batch: int = 1) -> torch.Tensor:
    """The field at the rows ys x columns xs (int64 coordinates, any order, e.g. wrapped): [batch, channels, len(ys), len(xs)]."""
    dev = ys.device
    seeds = (torch.arange(batch, dtype=torch.int64, device=dev) + seed) & MASK
    chans = torch.arange(channels, dtype=torch.int64, device=dev)
    ys, xs = ys & MASK, xs & MASK
    h = hash32(seeds).view(batch, 1, 1, 1)
    h = hash32(chans.view(1, channels, 1, 1) + h)
    h = hash32(ys.view(1, 1, -1, 1) + h)
    h = hash32(xs.view(1, 1, 1, -1) + h)
    return (h >> 8).to(torch.float32) * (2.0 ** -24)


def scales(noise: torch.Tensor, k: int) -> list[torch.Tensor]:
    """Split [B, K*C, H, W] noise into K scales: scale i is channel group i subsampled by 2**i (finest first)."""
    c = noise.shape[1] // k
    return [noise[:, i * c:(i + 1) * c, :: 2 ** i, :: 2 ** i] for i in range(k)]


def noise_at3(seed: int, channels: int, zs: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor,
              batch: int = 1, first_channel: int = 0) -> torch.Tensor:
    """The 3D field at slices zs x rows ys x columns xs (int64 coordinates, any order, e.g. wrapped) and
    channels first_channel .. first_channel + channels - 1: [batch, channels, len(zs), len(ys), len(xs)]."""
    dev = zs.device
    seeds = (torch.arange(batch, dtype=torch.int64, device=dev) + seed) & MASK
    chans = torch.arange(channels, dtype=torch.int64, device=dev) + first_channel
    zs, ys, xs = zs & MASK, ys & MASK, xs & MASK
    h = hash32(seeds).view(batch, 1, 1, 1, 1)
    h = hash32(chans.view(1, channels, 1, 1, 1) + h)
    h = hash32(zs.view(1, 1, -1, 1, 1) + h)
    h = hash32(ys.view(1, 1, 1, -1, 1) + h)
    h = hash32(xs.view(1, 1, 1, 1, -1) + h)
    return (h >> 8).to(torch.float32) * (2.0 ** -24)


def noise_volume(seed: int, channels: int, depth: int, height: int, width: int, x0: int = 0, y0: int = 0, z0: int = 0,
                 batch: int = 1, device: torch.device | str = "cpu") -> torch.Tensor:
    """The window [z0, z0+depth) x [y0, y0+height) x [x0, x0+width) of the 3D field:
    [batch, channels, depth, height, width] float32; batch item b uses seed + b."""
    dev = torch.device(device)

    def axis(n: int, start: int) -> torch.Tensor:
        return torch.arange(n, dtype=torch.int64, device=dev) + start

    return noise_at3(seed, channels, axis(depth, z0), axis(height, y0), axis(width, x0), batch)


def scales3(noise: torch.Tensor, k: int) -> list[torch.Tensor]:
    """Split [B, K*C, D, H, W] noise into K scales: scale i is channel group i subsampled by 2**i on every axis."""
    c = noise.shape[1] // k
    return [noise[:, i * c:(i + 1) * c, :: 2 ** i, :: 2 ** i, :: 2 ** i] for i in range(k)]
