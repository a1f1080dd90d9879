"""Solid texture generator (Gutierrez, Rabin, Galerne & Hurtut 2020): multi-scale 3D noise -> a volume of colours.

The texture network's multi-scale body (texport.models.texnet, Ulyanov et al. 2016) in three
dimensions: K noise scales, finest (full resolution) to coarsest (1/2**(K-1) on every axis); each
scale passes a block of 3x3x3, 3x3x3, 1x1x1 convolutions; from the coarsest up the running result
is upsampled x2 (nearest), normalized, concatenated with the next finer scale's block output and
passed through a block as wide as the join; a 1x1x1 convolution and a sigmoid give RGB in [0, 1].
Gutierrez et al. use few channels per scale (their `ch_step` 4), which is the default width here:
in 3D every channel costs a cube of voxels.

No convolution pads. A volume is the window [x0, x0+W) x [y0, y0+H) x [z0, z0+D) of one infinite,
non-periodic volume per seed: the noise of each scale is drawn over the window plus the halo its
convolutions eat, at absolute coordinates (texport.textures.noise, 3D contract), and each
upsampling is cropped to what the next join needs. `plan_axis` works this out per axis for any
window, of any origin and any size, one voxel thick included: single-slice training generates only
the slab one slice needs ("generate batches of width one voxel only", Gutierrez et al. 2020).
With frozen BatchNorm statistics every output voxel is a function of nearby noise only, so windows
of the same seed agree wherever they overlap (up to the rounding of different tensor shapes:
texport.scale.volumes computes on a fixed lattice of blocks for bit-exact agreement).

Periodic volumes (`--tileable`, and the exported graph's `forward`): the noise coordinates wrap
modulo the volume's sides, which are then multiples of 2**(K-1), so every scale wraps whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import texport.textures.noise as noise_lib
from texport.models.texnet import BLOCK_SHRINK, MultiScaleNoiseInput

AXES = ("z", "y", "x")  # a volume is [.., D, H, W]: tensor dims 2, 3, 4


class ConvBlock3d(nn.Sequential):
    """3x3x3, 3x3x3, 1x1x1 convolutions without padding, each followed by BatchNorm and LeakyReLU (0.01)
    as texport.models.texnet.ConvBlock; BLOCK_SHRINK voxels fewer on each side."""

    def __init__(self, cin: int, cout: int):
        layers: list[nn.Module] = []
        for i, kernel in enumerate((3, 3, 1)):
            layers += [nn.Conv3d(cin if i == 0 else cout, cout, kernel), nn.BatchNorm3d(cout), nn.LeakyReLU(0.01, inplace=True)]
        super().__init__(*layers)


@dataclass(frozen=True)
class AxisPlan:
    """One axis of a window, per scale i (finest first): the noise range [start, stop) in scale-i voxels,
    and, for scales below the coarsest, what to drop from each end of the upsampled coarser result."""
    noise: tuple[tuple[int, int], ...]
    crops: tuple[tuple[int, int], ...]  # crops[i]: (front, back) of the upsampled scale i+1, for scale i's join


def plan_axis(lo: int, hi: int, scales: int) -> AxisPlan:
    """The plan of output voxels [lo, hi) on one axis: each join block needs BLOCK_SHRINK more on each
    side, each noise block BLOCK_SHRINK more again, and a coarser scale the voxels whose x2 nearest
    upsampling covers what the finer join needs (floor division: the coarse grid is the absolute one)."""
    noise, crops = [], []
    a, b = lo, hi
    for _ in range(scales - 1):
        join_a, join_b = a - BLOCK_SHRINK, b + BLOCK_SHRINK
        noise.append((join_a - BLOCK_SHRINK, join_b + BLOCK_SHRINK))
        a, b = join_a // 2, (join_b - 1) // 2 + 1  # the coarser scale's output range
        crops.append((join_a - 2 * a, 2 * b - join_b))
    noise.append((a - BLOCK_SHRINK, b + BLOCK_SHRINK))
    return AxisPlan(tuple(noise), tuple(crops))


def receptive_radius(scales: int) -> int:
    """How far (full-resolution voxels) an output voxel's noise reaches, from the plan of one voxel."""
    plan = plan_axis(0, 1, scales)
    return max(max(-start, stop - 1) * 2 ** i + 2 ** i - 1 for i, (start, stop) in enumerate(plan.noise))


class SolidNetwork(MultiScaleNoiseInput, nn.Module):
    """g(z): multi-scale 3D noise -> volume [B, 3, D, H, W] in [0, 1] (module docstring)."""

    def __init__(self, scales: int = 4, noise_channels: int = 3, width: int = 4):
        super().__init__()
        if scales < 1 or noise_channels < 1 or width < 1:
            raise ValueError(f"scales, noise channels and width must be positive, got {scales}, {noise_channels}, {width}")
        self.scales, self.noise_channels, self.width = scales, noise_channels, width
        self.noise_blocks = nn.ModuleList(ConvBlock3d(noise_channels, width) for _ in range(scales))
        self.join_norms_coarse = nn.ModuleList(nn.BatchNorm3d(width * (j + 1)) for j in range(scales - 1))
        self.join_norms_fine = nn.ModuleList(nn.BatchNorm3d(width) for _ in range(scales - 1))
        self.join_blocks = nn.ModuleList(ConvBlock3d(width * (j + 2), width * (j + 2)) for j in range(scales - 1))
        self.to_rgb = nn.Conv3d(width * scales, 3, 1)
        for m in self.modules():  # Xavier initialization, as the texture network
            if isinstance(m, nn.Conv3d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def config(self) -> dict:
        return {"scales": self.scales, "noise_channels": self.noise_channels, "width": self.width}

    def generate(self, z: list[torch.Tensor], plans: tuple[AxisPlan, AxisPlan, AxisPlan]) -> torch.Tensor:
        """The body on per-scale noise z (finest first), each covering its plan's noise ranges (z, y, x)."""
        y = self.noise_blocks[-1](z[-1])
        for j, i in enumerate(range(self.scales - 2, -1, -1)):
            up = F.interpolate(y, scale_factor=2.0, mode="nearest")
            for dim, plan in zip((2, 3, 4), plans):
                front, back = plan.crops[i]
                up = up.narrow(dim, front, up.shape[dim] - front - back)
            coarse = self.join_norms_coarse[j](up)
            fine = self.join_norms_fine[j](self.noise_blocks[i](z[i]))
            y = self.join_blocks[j](torch.cat([coarse, fine], dim=1))
        return torch.sigmoid(self.to_rgb(y))

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        """The periodic volume of full-resolution noise [B, K*C, D, H, W] (sides multiples of
        size_multiple): each scale wrapped by its halo, as if the noise repeated in every direction.
        The exported graph; a window of the infinite volume is the centre of a larger one (the export's
        metadata `texport.halo`: the receptive radius rounded up to the grid)."""
        m = self.size_multiple
        plans = tuple(plan_axis(0, 2 * m, self.scales) for _ in AXES)  # the margins are the same for every size on the grid
        z = []
        for i, scale in enumerate(noise_lib.scales3(noise, self.scales)):
            for dim, plan in zip((2, 3, 4), plans):
                start, stop = plan.noise[i]
                n = scale.shape[dim]
                index = torch.arange(start, n + stop - 2 * m // 2 ** i, device=noise.device) % n
                scale = scale.index_select(dim, index)
            z.append(scale)
        return self.generate(z, plans)

    def window_noise(self, seed: int, origin: tuple[int, int, int], size: tuple[int, int, int], batch: int = 1,
                     period: tuple[int, int, int] | None = None, device: torch.device | str = "cpu"
                     ) -> tuple[list[torch.Tensor], tuple[AxisPlan, AxisPlan, AxisPlan]]:
        """Per-scale noise and plans of the window at origin (x, y, z) of size (W, H, D); period (W, H, D):
        the noise wraps (sides multiples of size_multiple). Batch item b uses seed + b."""
        dev = torch.device(device)
        (x0, y0, z0), (w, h, d) = origin, size
        plans = tuple(plan_axis(o, o + n, self.scales) for o, n in ((z0, d), (y0, h), (x0, w)))
        periods = (None, None, None) if period is None else (period[2], period[1], period[0])
        z = []
        for i in range(self.scales):
            coords = []
            for plan, p in zip(plans, periods):
                start, stop = plan.noise[i]
                c = torch.arange(start, stop, dtype=torch.int64, device=dev) * 2 ** i
                coords.append(c % p if p is not None else c)
            z.append(noise_lib.noise_at3(seed, self.noise_channels, *coords, batch=batch, first_channel=i * self.noise_channels))
        return z, plans

    def window(self, seed: int, origin: tuple[int, int, int], size: tuple[int, int, int], batch: int = 1,
               period: tuple[int, int, int] | None = None) -> torch.Tensor:
        """The window of the infinite (or, with period, periodic) volume: [batch, 3, D, H, W]."""
        dev = next(self.parameters()).device
        z, plans = self.window_noise(seed, origin, size, batch, period, dev)
        return self.generate(z, plans)
