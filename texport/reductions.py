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
