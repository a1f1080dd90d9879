"""Training a texture network on one exemplar (seed 001 sec. 3.2, "Learning").

Minimizes, over fresh noise samples, the foundation's default objective (Gram texture loss plus the
colour-distribution term) of the generated batch against the exemplar, with Adam. The paper's
schedule (lr 0.1, x0.7 at iteration 1000 of 2000 and then every 200) is kept in proportion to the
chosen length: decay at half the run, then every tenth. The run is checkpointed regularly and on
Ctrl-C, so an interrupted run leaves a usable model.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from . import losses
from .checkpoints import save_checkpoint
from .devices import resolve_device
from .errors import TexportError
from .images import load_exemplar
from .models import TEXNET
from .objective import DEFAULT_COLOR_WEIGHT, DEFAULT_LOSS, build_objective
from .texnet import TextureNetwork

# Defaults measured on a 2-core CPU to give good textures within 30 minutes (see benchmarks/RESULTS.md).
DEFAULT_ITERS = 1500
DEFAULT_BATCH = 4
DEFAULT_SIZE = 128
DEFAULT_LR = 0.05
DEFAULT_WIDTH = 8
TRAIN_SEED_OFFSET = 1 << 30  # training noise seeds stay clear of the small seeds users sample with

Progress = Callable[[int, float], None]


def learning_rate(step: int, iters: int, lr: float) -> float:
    """Seed 001's schedule scaled to `iters`: x0.7 at iters/2, then every iters/10."""
    half, every = iters // 2, max(1, iters // 10)
    if step < half:
        return lr
    return lr * 0.7 ** (1 + (step - half) // every)


@torch.no_grad()
def recalibrate_batchnorm(net: TextureNetwork, size: int, batch: int, seed: int, batches: int = 32) -> None:
    """Replace BatchNorm's running statistics by exact averages over fresh noise batches.

    The running averages trail the weights while the learning rate is high; measured on a pebbles
    run after 400 iterations, eval-mode samples had a 2x higher colour loss than the same noise in
    training mode. Averaging the final network's statistics over many batches ("precise BN")
    closes that gap. Generator forwards only: cheap.
    """
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    net.train()
    dev = next(net.parameters()).device
    for i in range(batches):
        net(net.noise(size, size, seed=seed + i * batch, batch=batch, device=dev))
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    net.eval()


@dataclass
class TrainReport:
    path: Path
    iterations: int
    planned: int
    seconds: float
    loss: float  # mean objective over the last iterations
    terms: dict[str, float]
    interrupted: bool = False
    history: list[float] = field(default_factory=list)


def check_run(iters: int, batch: int, lr: float, output: str | os.PathLike) -> Path:
    """The checks every training run makes before any work (texture networks, ProPO): the output path."""
    if iters < 1 or batch < 1:
        raise TexportError(f"--iters and --batch must be positive (got {iters}, {batch})")
    if lr <= 0:
        raise TexportError(f"--lr must be positive, got {lr}")
    out = Path(output)
    if not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise TexportError(f"output folder does not exist: {out.parent}")
    return out


def train_texnet(
    texture: str | os.PathLike,
    output: str | os.PathLike,
    iters: int = DEFAULT_ITERS,
    batch: int = DEFAULT_BATCH,
    size: int = DEFAULT_SIZE,
    lr: float = DEFAULT_LR,
    loss: str = DEFAULT_LOSS,
    layers: Sequence[str] | None = None,
    color_weight: float = DEFAULT_COLOR_WEIGHT,
    descriptor: str = "auto",
    descriptor_weights: str | None = None,
    device: str | torch.device = "auto",
    scales: int = 5,
    noise_channels: int = 3,
    width: int = DEFAULT_WIDTH,
    norm: str = "batch",
    seed: int = 0,
    crop: Sequence[int] | None = None,
    name: str | None = None,
    checkpoint_every: int = 100,
    progress: Progress | None = None,
) -> TrainReport:
    """Train a TextureNetwork on the exemplar at `texture` and save it (safetensors + manifest) to `output`.

    crop (x, y, w, h) trains on part of the exemplar, e.g. without a printed label; it is recorded.
    """
    out = check_run(iters, batch, lr, output)
    net_multiple = 2 ** (scales - 1)
    if size < 16 or size % net_multiple:
        raise TexportError(f"training --size must be a multiple of {net_multiple} and at least 16, got {size}")
    if width < 1:
        raise TexportError(f"--width must be positive, got {width}")
    texture_path = Path(texture)
    exemplar = load_exemplar(texture_path, crop)
    dev = resolve_device(device)
    objective = build_objective(exemplar.to(dev), loss, layers or losses.PO_LAYERS, color_weight=color_weight,
                                descriptor=descriptor, descriptor_weights=descriptor_weights, tileable=True, device=dev)
    torch.manual_seed(seed)
    net = TextureNetwork(scales, noise_channels, width, norm=norm).to(dev).train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    manifest_base = {
        "kind": TEXNET,
        "name": name or out.stem,
        "architecture": net.config(),
        "size_multiple": net.size_multiple,
        "noise": {"contract": "texport.noise/1 lowbias32 uniform[0,1) 24-bit", "channels": net.input_channels,
                  "batch_seed": "seed + item"},
        "texture": {"name": texture_path.stem, "file": texture_path.name,
                    "sha256": hashlib.sha256(texture_path.read_bytes()).hexdigest(),
                    "size": [exemplar.shape[-1], exemplar.shape[-2]],
                    "crop": list(crop) if crop is not None else None},
        "descriptor": objective.descriptor.identity,
        "objective": objective.spec.as_dict(),
    }
    history: list[float] = []
    terms_acc: dict[str, list[float]] = {}
    start = time.perf_counter()
    done = 0

    def save(interrupted: bool, final: bool = False) -> dict:
        recent = history[-20:] or [float("nan")]
        terms = {k: sum(v[-20:]) / len(v[-20:]) for k, v in terms_acc.items()}
        manifest = dict(manifest_base, training={
            "iterations": done, "planned_iterations": iters, "batch": batch, "size": size, "lr": lr,
            "schedule": "x0.7 at iters/2 then every iters/10 (seed 001, scaled)", "optimizer": "adam",
            "seed": seed, "device": dev.type, "batchnorm": "recalibrated over 32 fresh batches" if final else "running averages (intermediate checkpoint)", "seconds": round(time.perf_counter() - start, 1),
            "final_loss": sum(recent) / len(recent), "final_terms": terms, "interrupted": interrupted,
        })
        save_checkpoint(out, net.state_dict(), manifest)
        return terms

    interrupted = False
    try:
        for step in range(iters):
            for group in opt.param_groups:
                group["lr"] = learning_rate(step, iters, lr)
            z = net.noise(size, size, seed=TRAIN_SEED_OFFSET + seed * iters * batch + step * batch, batch=batch, device=dev)
            terms = objective(net(z))
            value = terms["total"].mean()
            opt.zero_grad(set_to_none=True)
            value.backward()
            opt.step()
            history.append(float(value.detach()))
            for k, v in terms.items():
                terms_acc.setdefault(k, []).append(float(v.detach().mean()))
            if progress is not None:
                progress(step + 1, sum(history[-20:]) / len(history[-20:]))
            done = step + 1
            if checkpoint_every and done % checkpoint_every == 0 and done < iters:
                save(interrupted=False)
    except KeyboardInterrupt:
        interrupted = True  # the `done` iterations completed are kept
    recalibrate_batchnorm(net, size, batch, seed=TRAIN_SEED_OFFSET // 2 + seed * 4096)
    terms = save(interrupted, final=True)
    recent = history[-20:] or [float("nan")]
    return TrainReport(out, done, iters, time.perf_counter() - start, sum(recent) / len(recent), terms, interrupted, history)
