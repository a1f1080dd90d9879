"""Texture network generator (Ulyanov et al. 2016, sec. 3.2): multi-scale noise -> RGB texture.

K noise scales, finest (full resolution) to coarsest (1/2**(K-1)). Each scale passes a block of
3x3, 3x3, 1x1 convolutions with 8 channels; from the coarsest up, the running result is upsampled
x2 (nearest), normalized, concatenated with the next finer scale's normalized block output, and
passed through a block as wide as the join (8*i channels); a final 1x1 convolution and a sigmoid
give RGB in [0, 1]. 71,659 parameters for K=5 and 8 channels.

Every convolution pads circularly, so an output wraps around (tileable) and has no border.
BatchNorm, as in the paper, runs with frozen statistics at inference: each output pixel is then a
function of nearby noise only, and everything but the convolutions works pixel by pixel. So at
inference the network wraps each noise scale once by what its convolutions will eat and convolves
without padding (`TextureNetwork._forward`): the same sums as padding every convolution, without a copy of
every feature map (at 512 px on 2 CPU cores: OpenVINO 71 -> 64 ms, onnxruntime 106 -> 84 ms, torch
341 -> 320 ms). InstanceNorm is an experiment option (per-image statistics rule
exact tiling out). The noise comes as one [B, K*C, H, W] tensor (texport.noise contract).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import texport.textures.noise as noise_lib
from texport.models.precision import run_in_own_precision

NORMS = ("batch", "instance")
BLOCK_SHRINK = 2  # pixels a ConvBlock without padding removes from each side (two 3x3 convolutions)


def _norm(channels: int, kind: str) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.InstanceNorm2d(channels, affine=True)


class ConvBlock(nn.Sequential):
    """3x3, 3x3, 1x1 convolutions, each followed by normalization and an activation (Ulyanov et al. 2016, fig. 2).

    The paper uses ReLU; LeakyReLU (slope 0.01) keeps a gradient for units that a batch drives
    negative, which with 8 channels per scale would otherwise be lost for the rest of training.
    """

    def __init__(self, cin: int, cout: int, norm: str, padding: str = "circular"):
        layers: list[nn.Module] = []
        for i, kernel in enumerate((3, 3, 1)):
            layers += [
                nn.Conv2d(cin if i == 0 else cout, cout, kernel, padding=kernel // 2, padding_mode=padding),
                _norm(cout, norm),
                nn.LeakyReLU(0.01, inplace=True),
            ]
        super().__init__(*layers)

    def unpadded(self, x: torch.Tensor) -> torch.Tensor:
        """The block without padding: BLOCK_SHRINK pixels fewer on each side; x cast to the block's dtype."""
        for layer in self:
            if isinstance(layer, nn.Conv2d):
                x = F.conv2d(x.to(layer.weight.dtype), layer.weight, layer.bias)
            else:
                x = layer(x)
        return x


def wrap(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Circular padding by `pad` on every side, any pad (F.pad's circular mode stops at the size)."""
    if pad == 0:
        return x
    h, w = x.shape[-2:]
    rows = torch.arange(-pad, h + pad, device=x.device) % h
    cols = torch.arange(-pad, w + pad, device=x.device) % w
    return x.index_select(2, rows).index_select(3, cols)


def halos(scales: int) -> tuple[list[int], list[int]]:
    """Per scale (finest first): the halo its block's output needs, and what to crop after upsampling.

    The finest join block must output no halo; a block's input needs BLOCK_SHRINK more; its coarse
    input comes upsampled x2, so the next coarser scale outputs half that, rounded up, and an odd
    halo leaves one pixel to crop after the upsampling.
    """
    out, crop = [0] * scales, [0] * scales
    for level in range(scales - 1):
        need = out[level] + BLOCK_SHRINK
        out[level + 1] = (need + 1) // 2
        crop[level] = 2 * out[level + 1] - need
    return out, crop


def receptive_radius(scales: int) -> int:
    """A bound on how far (full-resolution pixels) an output pixel's noise reaches: scale i's noise is
    wrapped by its halo plus the blocks it passes, in pixels of 2^i (K = 5: 80; measured 77)."""
    out, _ = halos(scales)
    wraps = [out[i] + (BLOCK_SHRINK if i == scales - 1 else 2 * BLOCK_SHRINK) for i in range(scales)]
    return max((w + 1) * 2 ** i for i, w in enumerate(wraps))


class MultiScaleNoiseInput:
    """The input both generators share (Ulyanov et al. 2016): K noise scales of C channels each, the
    coarsest at 1/2**(K-1) of the output, so periodic outputs have sides that are multiples of that."""
    scales: int
    noise_channels: int

    @property
    def size_multiple(self) -> int:
        return 2 ** (self.scales - 1)

    @property
    def input_channels(self) -> int:
        return self.scales * self.noise_channels


class TextureNetwork(MultiScaleNoiseInput, nn.Module):
    """g(z): noise [B, K*C, H, W] -> texture [B, 3, H, W] in [0, 1]; H and W multiples of 2**(K-1)."""
    def __init__(self, scales: int = 5, noise_channels: int = 3, width: int = 8, norm: str = "batch",
                 extra_channels: int = 0, padding: str = "circular"):
        """extra_channels: inputs joined to each noise scale (a style network's content image, 3);
        padding: every convolution's ("circular": tileable textures; "reflect": photographs)."""
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        self.scales, self.noise_channels, self.width, self.norm = scales, noise_channels, width, norm
        self.padding = padding
        self.noise_blocks = nn.ModuleList(ConvBlock(noise_channels + extra_channels, width, norm, padding)
                                          for _ in range(scales))
        # join j merges the running result (j+1 scales deep, width*(j+1) channels) with one more scale
        self.join_norms_coarse = nn.ModuleList(_norm(width * (j + 1), norm) for j in range(scales - 1))
        self.join_norms_fine = nn.ModuleList(_norm(width, norm) for _ in range(scales - 1))
        self.join_blocks = nn.ModuleList(ConvBlock(width * (j + 2), width * (j + 2), norm, padding)
                                         for j in range(scales - 1))
        self.to_rgb = nn.Conv2d(width * scales, 3, 1)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        for m in self.modules():  # Xavier initialization (Ulyanov et al. 2016 sec. 3.2)
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        # batch statistics (training) and InstanceNorm would see a wrapped border: they pad every convolution
        return self._forward(noise, unpadded=not self.training and self.norm == "batch")

    def _forward(self, noise: torch.Tensor, unpadded: bool) -> torch.Tensor:
        return self.generate(noise_lib.scales(noise, self.scales), unpadded)

    def generate(self, z: list[torch.Tensor], unpadded: bool = False) -> torch.Tensor:
        """The multi-scale body on its per-scale inputs z (finest first). unpadded: each scale wrapped
        once (halos), convolutions without padding; else every convolution pads (circularly for a
        texture). The same sums, so the same image, under frozen BatchNorm and circular padding."""
        out, crop = halos(self.scales)

        def block(module: ConvBlock, x: torch.Tensor, wrap_by: int = 0) -> torch.Tensor:
            return module.unpadded(wrap(x, wrap_by)) if unpadded else run_in_own_precision(module, x)

        y = block(self.noise_blocks[-1], z[-1], out[-1] + BLOCK_SHRINK)
        for j, i in enumerate(range(self.scales - 2, -1, -1)):
            up = self.upsample(y)
            if unpadded and crop[i]:
                up = up[:, :, crop[i]:-crop[i], crop[i]:-crop[i]]
            coarse = run_in_own_precision(self.join_norms_coarse[j], up)
            fine = block(self.noise_blocks[i], z[i], out[i] + 2 * BLOCK_SHRINK)
            fine = run_in_own_precision(self.join_norms_fine[j], fine)
            y = block(self.join_blocks[j], torch.cat([coarse, fine], dim=1))
        return torch.sigmoid(run_in_own_precision(self.to_rgb, y).float())

    def half_body(self) -> "TextureNetwork":
        """fp16 where the work is, fp32 where the gain is (in place; returns self).

        Only the finest join block and the 1x1 output convolution go to fp16: 84% of the
        multiply-adds for five scales and 8 channels. The generator turns small changes of its
        early features into large ones (rounding the noise to fp16 alone moved pixels by 0.018,
        bark at 256 px). Measured by rounding one part at a time to fp16 (pebbles, 256 px): noise
        block outputs 7.8e-3, join normalizations 5.2e-3, the coarsest join block 6.1e-3, the finest
        1.6e-3 to 1.8e-3 per kind of tensor; all in fp16: 2.6e-2, beyond the 1e-2 budget.
        """
        self.join_blocks[-1].half()
        self.to_rgb.half()
        return self

    def noise(self, height: int, width: int, seed: int = 0, batch: int = 1, x0: int = 0, y0: int = 0,
              device: torch.device | str = "cpu") -> torch.Tensor:
        """This network's input noise for a window of the field (texport.noise contract)."""
        return noise_lib.noise_field(seed, self.input_channels, height, width, x0, y0, batch, device)

    def config(self) -> dict:
        return {"scales": self.scales, "noise_channels": self.noise_channels, "width": self.width, "norm": self.norm}
