"""Gatys et al. texture synthesis by optimization: the slow, exact fallback (Galerne's course notes,
pseudo-code).

Pixels start as uniform noise in [0, 1] (or a given image: a feed-forward model's sample is a far
better start than noise, so a few evaluations refine it) and are optimized against the objective's
target statistics, computed once. Coarse-to-fine (`coarse_to_fine` K > 1) first solves at 1/2^(K-1)
of the size against the exemplar blurred and downsampled as much, upsamples, and continues at each
finer scale: large structures settle where an evaluation is cheap (Gatys et al. 2017, "Controlling
perceptual factors", sec. 5; the pyramid *loss*, `octaves`, instead compares every scale at full
size). A start image joins coarse-to-fine at the coarsest scale, downsampled: a feed-forward model's
sample brings its colours and rough layout, and the coarse scales can rearrange its large structures
where an evaluation is cheap; `start_detail` adds the start's finer band back at each finer scale
(a Laplacian pyramid's detail, Burt & Adelson 1983), for starts whose fine detail is worth keeping.
Pixels stay inside [0, 1] throughout, as in Gatys et al.'s own code: L-BFGS-B with bounds
(scipy), or projected Adam. Optimizing unconstrained pixels and clamping at the end left a 3x-35x
higher loss at the same budget, and clamping after every L-BFGS step froze pixels (both tried while
building this).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from scipy.optimize import Bounds, minimize

import texport.defaults as defaults
from texport.devices import available_memory, resolve_device
from texport.errors import TexportError
from texport.objectives.objective import (
    ObjectiveSpec,
    StyleObjective,
    TextureObjective,
    build_objective,
    build_style_objective,
)
from texport.progress import StepProgress
from texport.settings import fill
from texport.textures.sizes import check_size, parse_size

OPTIMIZERS = ("lbfgs", "adam")
DEFAULT_ITERS = defaults.GATYS_ITERS
# Memory of one optimization per output pixel: an evaluation's forward and backward through the PO
# layers measured 3.7 KB/px on the CPU (pebbles, 256 and 512 px); L-BFGS-B's 20 float64 correction
# pairs and copies add about 1 KB.
BYTES_PER_PIXEL = 5 * 1024
MIN_LEVEL_SIDE = 32  # coarse-to-fine: the descriptor's deepest PO layer (pool4, /16) keeps 2x2 positions



@dataclass
class GatysResult:
    image: torch.Tensor  # [1, 3, H, W] in [0, 1], on the CPU
    loss: float  # final objective value
    terms: dict[str, float]  # final value of each term ('gram' or 'sw', 'color', 'total')
    evaluations: int
    seconds: float
    descriptor: str  # identity
    history: list[float] = field(default_factory=list)  # objective value of every evaluation
    times: list[float] = field(default_factory=list)  # seconds from the start to each evaluation
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)  # evaluations -> best image so far (at that scale)


@dataclass(frozen=True)
class GatysOptions:
    """How an optimization runs, apart from its objective and budget."""
    optimizer: str = defaults.GATYS_OPTIMIZER  # lbfgs (L-BFGS-B, bounded) or adam (projected)
    lr: float = defaults.GATYS_LR  # Adam's, pixels in [0, 1]
    seed: int = 0  # the starting noise
    device: str | torch.device = "auto"
    size_limit: int | None = None
    init: torch.Tensor | None = None  # a start [1, 3, h, w] in [0, 1] instead of noise (resized to the first scale)
    coarse_to_fine: int = 1  # K > 1: solve at 1/2^(K-1) of the size first, then each finer scale
    start_detail: bool = False  # coarse-to-fine from a start: add the start's detail back at each finer scale
    snapshots: Sequence[int] = ()  # evaluation counts at which to keep the best image so far
    tileable: bool = False  # with a built-here objective: circular padding, the result wraps around


def synthesize(texture: torch.Tensor | None, size: int | str | tuple[int, int] = 256, iters: int = DEFAULT_ITERS,
               objective: TextureObjective | StyleObjective | ObjectiveSpec | None = None, progress: StepProgress | None = None,
               **settings) -> GatysResult:
    """Synthesize a texture like `texture` ([1, 3, h, w] in [0, 1]) at `size` (N or WxH).

    iters counts loss-and-gradient evaluations (one per Adam step; L-BFGS-B uses one or more per
    iteration), so the budget is the same compute whichever optimizer runs. objective: a built
    TextureObjective (then `texture` may be None), or an ObjectiveSpec; settings: GatysOptions' fields
    (optimizer, lr, seed, device, size_limit, init, coarse_to_fine, snapshots, tileable) and, with no
    built objective, ObjectiveSpec's (loss, layers, color_weight, ...). init replaces the starting
    noise (downsampled to the coarsest scale with coarse_to_fine). coarse_to_fine K > 1 splits the
    budget over K scales (`level_budgets`) so the whole run costs about `iters` full-size evaluations.
    snapshots keep the best image so far (quality-vs-time curves).
    """
    parts = fill({"options": GatysOptions, "spec": ObjectiveSpec}, settings)
    options = parts["options"]
    coarse_to_fine, init = options.coarse_to_fine, options.init
    width, height = check_request(size, iters, options.optimizer, coarse_to_fine, options.size_limit)
    dev = resolve_device(options.device)
    check_fits(width, height, dev)
    if objective is None or isinstance(objective, ObjectiveSpec):  # else a built one (texture, or style bound to a photo)
        spec = objective or parts["spec"]
        objective = build_objective(texture.to(dev), spec, tileable=options.tileable, device=dev)
    sizes = level_sizes(width, height, coarse_to_fine, objective)
    budgets = level_budgets(iters, coarse_to_fine)
    if init is None:
        gen = torch.Generator().manual_seed(options.seed)
        x = torch.rand(1, 3, sizes[0][1], sizes[0][0], generator=gen)
    else:
        x = resize_start(init, *sizes[0])  # at the coarsest scale
    run = _lbfgs if options.optimizer == "lbfgs" else _adam
    circular = objective.padding == "circular"
    history: list[float] = []
    times: list[float] = []
    kept: dict[int, torch.Tensor] = {}
    wanted = set(options.snapshots)
    start = time.perf_counter()
    for level, ((w, h), budget) in enumerate(zip(sizes, budgets)):
        scale = len(sizes) - 1 - level  # 0 at full size
        level_objective = objective if scale == 0 else objective.downscaled(scale)
        if x.shape[-2:] != (h, w):
            x = upsample(x, w, h, circular)
            if init is not None and options.start_detail:  # the start's own band of this scale, over the coarse result
                x = (x + resize_start(init, w, h) - upsample(resize_start(init, *sizes[level - 1]), w, h, circular)).clamp(0, 1)
        done = len(history)

        def report(step: int, value: float, best: torch.Tensor, done: int = done) -> None:
            times.append(time.perf_counter() - start)
            if done + step in wanted:
                kept[done + step] = best.detach().cpu().clone()
            if progress:
                progress(done + step, value)

        x, level_history = run(level_objective, x.to(dev), budget, report, options.lr)
        history += level_history
    image = x
    seconds = time.perf_counter() - start
    with torch.no_grad():
        terms = {k: float(v[0]) for k, v in objective(image).items()}
    return GatysResult(image.detach().cpu(), terms["total"], terms, len(history), seconds,
                       objective.descriptor.identity, history, times, kept)


def check_request(size: int | str | tuple[int, int], iters: int, optimizer: str = defaults.GATYS_OPTIMIZER,
                  coarse_to_fine: int = 1, size_limit: int | None = None) -> tuple[int, int]:
    """(width, height) of a valid run, else one TexportError: called before any work is set up."""
    if iters <= 0:
        raise TexportError(f"the evaluation budget must be positive, got {iters}")
    if optimizer not in OPTIMIZERS:
        raise TexportError(f"unknown optimizer {optimizer!r}: choose {' or '.join(OPTIMIZERS)}")
    if coarse_to_fine < 1:
        raise TexportError(f"coarse-to-fine needs at least 1 scale, got {coarse_to_fine}")
    return check_size(parse_size(size), size_limit)


def check_fits(width: int, height: int, device: torch.device) -> None:
    """Refuse, before any work, an optimization whose memory would exceed what the device has free."""
    free = available_memory(device)
    need = BYTES_PER_PIXEL * width * height
    if free is not None and need > free:
        side = int((free / BYTES_PER_PIXEL) ** 0.5)
        raise TexportError(f"optimizing {width}x{height} px needs about {need / 2**30:.1f} GiB, more than the "
                           f"{free / 2**30:.1f} GiB free on {device.type}: the largest square that fits is about {side}x{side}")


def level_budgets(iters: int, levels: int) -> list[int]:
    """Evaluations per scale, coarsest first: the full size gets three quarters of the budget, the
    coarser scales equal shares of the last quarter in full-size cost (an evaluation at 1/2^k of the
    size costs about 4^-k of one at full size), so the run costs about `iters` full-size evaluations.
    A coarse scale converges in few full-size-equivalent evaluations (at 1/4 of the size, 50 of them
    buy 800 evaluations); the fine scale is where the time goes, and where it pays."""
    if levels == 1:
        return [iters]
    share = iters / 4 / (levels - 1)
    coarse = [max(1, round(share * 4 ** k)) for k in range(levels - 1, 0, -1)]
    return coarse + [max(1, iters - iters // 4)]


def level_sizes(width: int, height: int, levels: int, objective: TextureObjective) -> list[tuple[int, int]]:
    """(width, height) of each scale, coarsest first; refuses a coarsest scale the descriptor cannot read."""
    sizes = [(max(1, round(width / 2 ** k)), max(1, round(height / 2 ** k))) for k in range(levels - 1, -1, -1)]
    smallest = min(sizes[0])
    exemplar = min(objective.exemplar_size) // 2 ** (levels - 1)
    if levels > 1 and (smallest < MIN_LEVEL_SIDE or exemplar < MIN_LEVEL_SIDE):
        raise TexportError(f"coarse-to-fine over {levels} scales makes the coarsest {sizes[0][0]}x{sizes[0][1]} px "
                           f"(exemplar {exemplar} px); both need at least {MIN_LEVEL_SIDE} px: use fewer levels")
    return sizes


def resize_start(image: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """A start image [1, 3, H, W] in [0, 1] at the output size (antialiased resize when it differs)."""
    image = image.detach().float().cpu()
    if image.dim() != 4 or image.shape[:2] != (1, 3):
        raise TexportError(f"a start image must be one RGB image [1, 3, H, W], got {list(image.shape)}")
    if image.shape[-2:] != (height, width):
        image = torch.nn.functional.interpolate(image, size=(height, width), mode="bilinear", antialias=True,
                                                align_corners=False)
    return image.clamp(0.0, 1.0)


def upsample(x: torch.Tensor, width: int, height: int, circular: bool) -> torch.Tensor:
    """Bilinear upsampling to (height, width); a tileable image is padded circularly first so its seam stays."""
    if not circular:
        return torch.nn.functional.interpolate(x, size=(height, width), mode="bilinear", align_corners=False).clamp(0, 1)
    h, w = x.shape[-2:]
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="circular")
    sy, sx = height / h, width / w
    big = torch.nn.functional.interpolate(padded, size=(round((h + 2) * sy), round((w + 2) * sx)), mode="bilinear",
                                          align_corners=False)
    top, left = round(sy), round(sx)
    return big[..., top:top + height, left:left + width].clamp(0, 1)


def _evaluate(objective: TextureObjective, x: torch.Tensor) -> tuple[float, torch.Tensor]:
    x = x.detach().requires_grad_(True)
    total = objective(x)["total"].sum()
    (grad,) = torch.autograd.grad(total, x)
    return float(total.detach()), grad


def _lbfgs(objective, x0, iters, progress, lr):
    """scipy's L-BFGS-B with [0, 1] bounds; the budget is a hard cap on function evaluations."""
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
            progress(len(history), value, best["x"])
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
        progress(step + 1, value, best["x"])
    return best["x"], history


def transfer_style(style: torch.Tensor, content: torch.Tensor, size: int | str | tuple[int, int] | None = None,
                   iters: int = DEFAULT_ITERS, objective: StyleObjective | None = None,
                   progress: StepProgress | None = None, **settings) -> GatysResult:
    """Gatys et al. 2016 style transfer with the style networks' objective (eq. 6 of Ulyanov et al. 2016):
    the photograph `content` [1, 3, h, w] (resized to `size`, default its own) in the style of `style`,
    optimized from the photograph itself. objective: a `StyleObjective` to reuse; settings: GatysOptions'
    device, size_limit and snapshots, and without an objective build_style_objective's options (alpha,
    color_weight, spectrum_weight, loss, descriptor, ...)."""
    options = GatysOptions(**{key: settings.pop(key) for key in ("device", "size_limit", "snapshots") if key in settings})
    width, height = check_request(size if size is not None else (content.shape[-1], content.shape[-2]), iters,
                                  size_limit=options.size_limit)
    dev = resolve_device(options.device)
    check_fits(width, height, dev)
    photo = resize_start(content, width, height)
    if objective is None:
        objective = build_style_objective(style.to(dev), device=dev, **settings)
    elif settings:
        raise TypeError(f"give a StyleObjective or its options, not both ({', '.join(settings)})")
    return synthesize(None, (width, height), iters, objective.bind(photo.to(dev)), progress, device=dev, init=photo,
                      snapshots=options.snapshots)
