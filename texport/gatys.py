"""Gatys et al. texture synthesis by optimization: the slow, exact fallback (seed 004 pseudo-code).

Pixels start as uniform noise in [0, 1] and are optimized against the objective's target
statistics, computed once. Pixels stay inside [0, 1] throughout, as in Gatys et al.'s own code:
L-BFGS-B with bounds (scipy), or projected Adam. Optimizing unconstrained pixels and clamping at
the end left a 3x-35x higher loss at the same budget, and clamping after every L-BFGS step froze
pixels (both tried while building this).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from .devices import resolve_device
from .errors import TexportError
from .objective import DEFAULT_COLOR_WEIGHT, DEFAULT_LOSS, TextureObjective, build_objective
from .sizes import check_size, parse_size

OPTIMIZERS = ("lbfgs", "adam")
DEFAULT_ITERS = 400  # seed 000 sec. 4.2: Gatys converges after about 400 L-BFGS iterations

Progress = Callable[[int, float], None]


@dataclass
class GatysResult:
    image: torch.Tensor  # [1, 3, H, W] in [0, 1], on the CPU
    loss: float  # final objective value
    terms: dict[str, float]  # final value of each term ('gram' or 'sw', 'color', 'total')
    evaluations: int
    seconds: float
    descriptor: str  # identity
    history: list[float] = field(default_factory=list)


def synthesize(
    texture: torch.Tensor,
    size: int | str | tuple[int, int] = 256,
    iters: int = DEFAULT_ITERS,
    optimizer: str = "lbfgs",
    loss: str = DEFAULT_LOSS,
    layers: Sequence[str] | None = None,
    layer_weights: str | Mapping[str, float] = "normalized",
    octaves: int = 1,
    color_weight: float = DEFAULT_COLOR_WEIGHT,
    tileable: bool = False,
    seed: int = 0,
    device: str | torch.device = "auto",
    descriptor: str = "auto",
    descriptor_weights: str | None = None,
    lr: float = 0.02,
    max_size: int | None = None,
    objective: TextureObjective | None = None,
    progress: Progress | None = None,
) -> GatysResult:
    """Synthesize a texture like `texture` ([1, 3, h, w] in [0, 1]) at `size` (N or WxH).

    iters counts loss-and-gradient evaluations (one per Adam step; L-BFGS-B uses one or more per
    iteration), so the budget is the same compute whichever optimizer runs.
    """
    if iters <= 0:
        raise TexportError(f"iters must be positive, got {iters}")
    if optimizer not in OPTIMIZERS:
        raise TexportError(f"unknown optimizer {optimizer!r}: choose lbfgs or adam")
    width, height = check_size(parse_size(size), max_size)
    dev = resolve_device(device)
    if objective is None:
        objective = build_objective(texture.to(dev), loss, layers, layer_weights, octaves, color_weight, descriptor,
                                    descriptor_weights, tileable=tileable, device=dev)
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.rand(1, 3, height, width, generator=gen)
    run = _lbfgs if optimizer == "lbfgs" else _adam
    start = time.perf_counter()
    image, history = run(objective, x0.to(dev), iters, progress, lr)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        terms = {k: float(v[0]) for k, v in objective(image).items()}
    return GatysResult(image.detach().cpu(), terms["total"], terms, len(history), seconds,
                       objective.descriptor.identity, history)


def _evaluate(objective: TextureObjective, x: torch.Tensor) -> tuple[float, torch.Tensor]:
    x = x.detach().requires_grad_(True)
    total = objective(x)["total"].sum()
    (grad,) = torch.autograd.grad(total, x)
    return float(total.detach()), grad


def _lbfgs(objective, x0, iters, progress, lr):
    """scipy's L-BFGS-B with [0, 1] bounds; the budget is a hard cap on function evaluations."""
    from scipy.optimize import Bounds, minimize

    shape, dev = x0.shape, x0.device
    history: list[float] = []
    best = {"loss": float("inf"), "x": x0.clone()}

    def fun(flat: np.ndarray) -> tuple[float, np.ndarray]:
        x = torch.from_numpy(flat.astype(np.float32)).view(shape).to(dev)
        value, grad = _evaluate(objective, x)
        if len(history) < iters:  # scipy may overrun maxfun by a line-search step: do not count or keep it
            history.append(value)
            if value < best["loss"]:
                best["loss"], best["x"] = value, x.clone()
            if progress:
                progress(len(history), value)
        return value, grad.double().cpu().numpy().ravel()

    minimize(fun, x0.double().cpu().numpy().ravel(), jac=True, method="L-BFGS-B", bounds=Bounds(0.0, 1.0),
             options={"maxfun": iters, "maxiter": iters, "ftol": 0.0, "gtol": 0.0, "maxcor": 20})
    return best["x"], history


def _adam(objective, x0, iters, progress, lr):
    """Projected Adam: a step, then projection back onto [0, 1]."""
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    history: list[float] = []
    best = {"loss": float("inf"), "x": x0.clone()}
    for step in range(iters):
        opt.zero_grad(set_to_none=True)
        total = objective(x)["total"].sum()
        total.backward()
        value = float(total.detach())
        if value < best["loss"]:
            best["loss"], best["x"] = value, x.detach().clone()
        opt.step()
        with torch.no_grad():
            x.clamp_(0.0, 1.0)
        history.append(value)
        if progress:
            progress(step + 1, value)
    return best["x"], history
