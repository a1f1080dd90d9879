"""Mixed precision by parts: each part of a model runs in the dtype of its own parameters.

A model's `half_body()` (TextureNetwork, ProPO) turns its costly, rounding-tolerant parts to fp16
and leaves the rest fp32; the parts then meet tensors of the other precision, which these cast on
the way in. In an all-fp32 model the casts are no-ops.
"""

from __future__ import annotations

import torch
from torch import nn


def run_in_own_precision(part: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """part(x), with x cast to the dtype of part's parameters."""
    return part(x.to(next(part.parameters()).dtype))


class OwnPrecision(nn.Module):
    """Wraps a module whose caller cannot cast for it (a descriptor's convolutions)."""
    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_in_own_precision(self.module, x)
