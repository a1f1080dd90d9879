"""Means that stay accurate in every runtime an exported graph meets.

onnxruntime's CPU ReduceMean over many elements at once is far less accurate than torch's (the
mean square of a [64, 256, 256] gradient: 1e-6 relative, 5e-5 at 1024 px; torch 1e-7). ProPO
amplifies such errors: its gradients are scaled to unit RMS, and its colour gradient's mean and
variance terms cancel after colour matching, so the last bits of a mean decide its direction.
Reducing one image axis at a time (a few hundred to a few thousand elements per sum) brought
ProPO's onnxruntime-vs-torch image difference from 1e-4..4e-4 to 1e-5..6e-5 at 64-1024 px.
"""

from __future__ import annotations

from typing import Sequence

import torch


def mean_nested(x: torch.Tensor, dims: Sequence[int]) -> torch.Tensor:
    """Mean over `dims` (kept as size-1 axes), one axis at a time, in the order given.

    The steps alternate ReduceMean and ReduceSum / n: OpenVINO merges consecutive reductions of one
    kind back into a single one (a [3, 1024, 1024] colour mean: 1.6e-6 relative merged, 8e-8 not),
    which made its ProPO images 2e-3 off torch's at 512 px.
    """
    for i, d in enumerate(dims):
        x = x.mean(dim=d, keepdim=True) if i % 2 == 0 else x.sum(dim=d, keepdim=True) / x.shape[d]
    return x


def standardize(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Each channel of [B, C, H, W] x to zero mean and unit variance over its pixels (mean_nested statistics)."""
    centred = x - mean_nested(x, (3, 2))
    return centred * torch.rsqrt(mean_nested(centred * centred, (3, 2)) + eps)


class InstanceNorm2d(torch.nn.InstanceNorm2d):
    """torch's InstanceNorm2d (same parameters and weights) with its statistics from mean_nested, in fp32.

    Exported, torch's layer becomes one InstanceNormalization op, whose channel mean and variance
    each runtime takes over the whole image at once: at 1024 px its output was 7.4e-5 off in
    onnxruntime and 2.9e-5 in OpenVINO (torch 5e-7), and ProPO's stage steps passed that on
    (OpenVINO's 1024 px images 4.8e-4 off torch's). Taken per axis: within 1.2e-6 in both.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = False, **kwargs):
        super().__init__(num_features, eps=eps, affine=affine, **kwargs)
        if self.track_running_stats:
            raise ValueError("texport's InstanceNorm2d takes per-image statistics only (track_running_stats=False)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = standardize(x.float(), self.eps)  # statistics in fp32 whatever the layer's precision
        if self.affine:
            y = y * self.weight.float()[:, None, None] + self.bias.float()[:, None, None]
        return y.to(x.dtype)
