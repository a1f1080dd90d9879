"""Style network (Ulyanov et al. 2016, sec. 3.3): content image + noise -> the content in a learnt style.

The texture network's multi-scale body (`texport.texnet`), with the content image, downsampled to
each scale (2x2 averages, as the noise is subsampled), joined to that scale's noise: every noise
block reads noise_channels + 3 channels. One network per style, trained once (eq. 6, texture loss
on the style image + alpha x content loss), then applied to any photograph of any size: it is fully
convolutional. Convolutions pad by reflection, not circularly: a photograph does not wrap, and
circular padding would bleed one border's content into the opposite one.

Normalization is per image (InstanceNorm; Ulyanov, Vedaldi & Lempitsky 2016, "Instance
normalization: the missing ingredient for fast stylization"), not BatchNorm as in the texture
networks: a stylization should not depend on the other photographs of a batch, and per-image
statistics remove each photograph's contrast before the style is applied. Measured here (cezanne,
150 iterations, 14 photographs): objective 4.52 with InstanceNorm against 5.05 to 5.3 with BatchNorm
(lr 0.01 and 0.05), and BatchNorm's frozen statistics gave blotched eval-mode images. Photographs do
not tile, so the per-image statistics cost nothing that texture networks need.

The noise amplitude is a knob at inference time (the paper's fig. 5): the network sees
noise_scale x noise, without retraining; in the paper larger values let the style take over. The
shipped InstanceNorm network mostly ignores its noise (benchmarks/RESULTS.md, "Style networks vs
Gatys": the content term moves from 0.375 at 0 to 0.388 at 4, the fine texture grows). Hosts of an
exported graph multiply the noise themselves.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import texport.textures.noise as noise_lib
from texport.models.texnet import TextureNetwork

CONTENT_CHANNELS = 3


def content_scales(content: torch.Tensor, scales: int) -> list[torch.Tensor]:
    """content [B, 3, H, W] at full, 1/2, ..., 1/2**(scales-1) resolution (2x2 box averages, finest first)."""
    out = [content]
    for _ in range(scales - 1):
        out.append(F.avg_pool2d(out[-1], 2))
    return out


class StyleNetwork(TextureNetwork):
    """g(content, z): content [B, 3, H, W] in [0, 1] and noise [B, K*C, H, W] -> [B, 3, H, W] in [0, 1];
    H and W multiples of 2**(K-1)."""

    def __init__(self, scales: int = 5, noise_channels: int = 3, width: int = 8, norm: str = "instance"):
        super().__init__(scales, noise_channels, width, norm, extra_channels=CONTENT_CHANNELS, padding="reflect")

    def forward(self, content: torch.Tensor, noise: torch.Tensor, noise_scale: float = 1.0) -> torch.Tensor:
        z = noise_lib.scales(noise * noise_scale if noise_scale != 1.0 else noise, self.scales)
        c = content_scales(content.to(noise.dtype), self.scales)
        return self.generate([torch.cat([zi, ci], dim=1) for zi, ci in zip(z, c)])
