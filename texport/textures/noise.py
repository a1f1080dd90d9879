"""The portable noise contract: texture-network input noise as a pure function of (seed, channel, y, x).

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
