"""Training a texture network on one exemplar (Ulyanov et al. 2016 sec. 3.2, "Learning").

Minimizes, over fresh noise samples, the default objective (Gram texture loss, colour-distribution
term and spectrum constraint, `texport.objective`) of the generated batch against the exemplar,
with Adam. The paper's schedule (lr 0.1, x0.7 at iteration 1000 of 2000 and then every 200) is kept
in proportion to the chosen length: decay at half the run, then every tenth.

Resumable: every `checkpoint_every` iterations and on Ctrl-C the model (safetensors + manifest) and
the Adam state (OUTPUT.state.safetensors) are written atomically; --resume continues from them with
the same settings. The training noise is a function of (seed, iteration, item), so a resumed run draws
what an unbroken one would. `finish` (--resume --finish) ends a stopped run where it is instead:
BatchNorm recalibrated, optimizer state removed, the manifest recording the iterations done.

Several processes (--nproc, or torchrun; texport.distributed_training): each draws its share of the
batch's noise by the same rule, DistributedDataParallel averages the gradients, and BatchNorm sums
its statistics across them (in training and in the final recalibration), so they train as one
process with the whole batch does; rank 0 writes the checkpoints.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

import texport.defaults as defaults
from texport.devices import resolve_device
from texport.errors import TexportError
from texport.files import sha256_file
from texport.models.checkpoints import check_state, load_checkpoint, save_checkpoint
from texport.models.handle import TEXNET, resolve_model
from texport.models.loading import load_texnet, sample_texnet
from texport.models.texnet import NORMS, TextureNetwork
from texport.objectives.objective import (
    ObjectiveSpec,
    build_objective,
)
from texport.progress import StepProgress
from texport.textures.images import load_exemplar, save_image, side_by_side
from texport.training.distributed import all_reduce_batchnorm, processes, role
from texport.training.runs import (
    LossLog,
    RunOutput,
    Schedule,
    TrainReport,
    build_run,
    check_run,
    check_same_run,
    image_record,
    load_optimizer_state,
    noise_record,
    save_optimizer_state,
    state_path,
)

# Defaults measured on a 2-core CPU to give good textures within 30 minutes (see benchmarks/RESULTS.md).
DEFAULT_ITERS = defaults.TEXNET_ITERS
DEFAULT_BATCH = defaults.TEXNET_BATCH
DEFAULT_SIZE = defaults.TEXNET_SIZE
DEFAULT_LR = defaults.TEXNET_LR
DEFAULT_WIDTH = defaults.TEXNET_WIDTH
TRAIN_SEED_OFFSET = 1 << 30  # training noise seeds stay clear of the small seeds users sample with
OPTIMIZER_STATE = "texnet-optimizer-state"


def learning_rate(step: int, iters: int, lr: float) -> float:
    """Seed 001's schedule scaled to `iters`: x0.7 at iters/2, then every iters/10."""
    half, every = iters // 2, max(1, iters // 10)
    if step < half:
        return lr
    return lr * 0.7 ** (1 + (step - half) // every)


@torch.no_grad()
def recalibrate_batchnorm(net: TextureNetwork, size: int, batch: int, seed: int, batches: int = 32,
                          share: tuple[int, int] | None = None) -> None:
    """Replace BatchNorm's running statistics by exact averages over fresh noise batches.

    The running averages trail the weights while the learning rate is high; measured on a pebbles
    run after 400 iterations, eval-mode samples had a 2x higher colour loss than the same noise in
    training mode. Averaging the final network's statistics over many batches ("precise BN")
    closes that gap. Generator forwards only: cheap. share (first item, count): this rank's items of
    each batch in a run on several processes, whose BatchNorm layers sum their statistics across ranks.
    """
    first, count = share or (0, batch)
    dev = next(net.parameters()).device
    precise_batchnorm(net, lambda i: net(net.noise(size, size, seed=seed + i * batch + first, batch=count, device=dev)),
                      batches)


@torch.no_grad()
def precise_batchnorm(net: torch.nn.Module, forward: Callable[[int], object], batches: int = 32) -> None:
    """BatchNorm's running statistics set to the cumulative average over `batches` training-mode
    forwards (`forward(i)` runs batch i); the network is left in eval mode."""
    norms = [m for m in net.modules() if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d))]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    net.train()
    for i in range(batches):
        forward(i)
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    net.eval()


def _load_init(init: str | os.PathLike, net: TextureNetwork) -> dict:
    """Copy a trained texture network's weights into `net`; returns what the manifest records of it."""
    path = resolve_model(init)
    state, manifest = load_checkpoint(path, kind=TEXNET)
    if manifest.get("architecture") != net.config():
        raise TexportError(f"start model {path.name}: its architecture {manifest.get('architecture')} differs from this run's {net.config()}")
    check_state(path, net, state)  # loads the weights
    done = manifest.get("training", {})
    record = {"model": manifest.get("name") or path.stem, "file": path.name,
              "sha256": sha256_file(path),
              "iterations": done.get("iterations"), "seconds": done.get("seconds"), "objective": manifest.get("objective")}
    if done.get("initialized_from"):  # a fine-tune of a fine-tune keeps the whole chain of starts
        record["initialized_from"] = done["initialized_from"]
    return record


@dataclass(frozen=True)
class TexnetData:
    """What a texture network learns from: one exemplar (a part of it, with crop), and the side of the
    generated training images."""
    texture: Path
    size: int = DEFAULT_SIZE  # a multiple of the network's grid, at least 16
    crop: tuple[int, int, int, int] | None = None  # x, y, w, h of the exemplar (e.g. to leave out a label)


@dataclass(frozen=True)
class TexnetArchitecture:
    """The generator (texport.models.texnet.TextureNetwork), and the trained network it may start from."""
    scales: int = defaults.TEXNET_SCALES
    noise_channels: int = 3
    width: int = DEFAULT_WIDTH
    norm: str = "batch"
    init: str | None = None  # a trained texture network (name or file) of the same architecture


@dataclass(frozen=True)
class TexnetRun:
    """One texture-network training run (Ulyanov et al. 2016): `TexnetRun.of(texture, output, **settings)`."""
    data: TexnetData
    network: TexnetArchitecture
    objective: ObjectiveSpec
    schedule: Schedule
    output: RunOutput

    @classmethod
    def of(cls, texture: str | os.PathLike, output: str | os.PathLike, **settings) -> "TexnetRun":
        """From flat settings (iters, batch, lr, loss, layers, size, width, resume, ...; see the parts)."""
        if settings.get("layers") is not None:
            settings["layers"] = tuple(settings["layers"])
        else:
            settings.pop("layers", None)
        if settings.get("crop") is not None:
            settings["crop"] = tuple(settings["crop"])
        return build_run(cls, dict(settings, texture=Path(texture), path=Path(output)), KIND_DEFAULTS)


KIND_DEFAULTS = {"iters": DEFAULT_ITERS, "batch": DEFAULT_BATCH, "lr": DEFAULT_LR}


def train_texnet(run: TexnetRun, progress: StepProgress | None = None) -> TrainReport:
    """Train a TextureNetwork on the exemplar at `texture` and save it (safetensors + manifest) to `output`.

    data.crop (x, y, w, h) trains on part of the exemplar, e.g. without a printed label; it is recorded.
    output.resume continues `output` from its last checkpoint; every setting must be the same. output.finish (with
    resume) makes the stopped run a finished model at the iterations it has done. network.init starts from the
    weights of a trained texture network of the same architecture (a shipped name or a model file)
    instead of random ones: fine-tuning on a changed objective costs a fraction of training anew; the
    starting model is recorded. schedule.nproc trains on that many processes (texport.training.distributed);
    the batch is split between them and the result is that of one process, up to rounding.
    """
    data, arch, objective_spec, schedule, output = run.data, run.network, run.objective, run.schedule, run.output
    texture_path, size, crop = data.texture, data.size, data.crop
    scales, noise_channels, width, norm, init = arch.scales, arch.noise_channels, arch.width, arch.norm, arch.init
    iters, batch, lr, seed = schedule.iters, schedule.batch, schedule.lr, schedule.seed
    resume, finish, nproc = output.resume, output.finish, schedule.nproc
    if init is not None and resume:
        raise TexportError("a start model begins a new run: a resumed run already has its weights")
    if norm not in NORMS:
        raise TexportError(f"unknown norm {norm!r}: choose {' or '.join(NORMS)}")
    out = check_run(schedule, output)
    net_multiple = 2 ** (scales - 1)
    if size < 16 or size % net_multiple:
        raise TexportError(f"the training image side must be a multiple of {net_multiple} and at least 16, got {size}")
    if width < 1:
        raise TexportError(f"channels per noise scale must be positive, got {width}")
    exemplar = load_exemplar(texture_path, crop)
    dev = resolve_device(schedule.device)
    with processes(nproc, dev, train_texnet, {"run": run}) as ranks:  # ranks: None for one process
        leader, first, count, dev = role(ranks, batch, dev)  # the leader writes the files and shows progress
        if not leader:
            progress = None
        objective = build_objective(exemplar.to(dev), objective_spec, tileable=True, device=dev)
        torch.manual_seed(seed)
        net = TextureNetwork(scales, noise_channels, width, norm=norm)
        started_from = _load_init(init, net) if init is not None else None
        net = net.to(dev).train()
        if ranks is not None:  # BatchNorm over the whole batch, not each rank's share
            all_reduce_batchnorm(net, ranks.batchnorm_group())
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        manifest_base = {
            "kind": TEXNET,
            "name": output.name or out.stem,
            "architecture": net.config(),
            "size_multiple": net.size_multiple,
            "noise": noise_record(net.input_channels),
            "texture": image_record(texture_path, exemplar, crop=list(crop) if crop is not None else None),
            "descriptor": objective.descriptor.identity,
            "objective": objective.spec.as_dict(),
        }
        settings = {"planned_iterations": iters, "batch": batch, "size": size, "lr": lr, "seed": seed}
        if started_from is not None:
            settings["initialized_from"] = started_from
        log = LossLog()
        done, seconds_before, previous = 0, 0.0, {}
        if resume:
            state, manifest = load_checkpoint(out, kind=TEXNET)
            previous = manifest.get("training", {})
            if "initialized_from" in previous:  # a resumed fine-tuning run keeps its record of where it started
                settings["initialized_from"] = previous["initialized_from"]
            check_same_run(out, manifest, settings, manifest_base, ("architecture", "texture", "descriptor", "objective"))
            if previous.get("batchnorm", "").startswith("recalibrated"):
                raise TexportError(f"cannot resume {out}: it is a finished model (its BatchNorm statistics were recalibrated)")
            check_state(out, net, state)
            done = int(load_optimizer_state(state_path(out), opt, OPTIMIZER_STATE)["step"])
            log = LossLog(previous)
            seconds_before = float(previous.get("seconds", 0.0))
        model = ranks.wrap(net) if ranks is not None else net  # DDP: gradients averaged over the ranks
        start = time.perf_counter()

        def save(interrupted: bool, final: bool = False) -> dict:
            terms = log.terms()
            manifest = dict(manifest_base, training=dict(
                settings, iterations=done, schedule="x0.7 at iters/2 then every iters/10 (Ulyanov et al. 2016, scaled)",
                optimizer="adam", device=dev.type, precision=objective.descriptor.precision, seconds=round(seconds_before + time.perf_counter() - start, 1),
                batchnorm="recalibrated over 32 fresh batches" if final else "running averages (intermediate checkpoint)",
                interrupted=interrupted, **log.record(),
                **({"finished_early": True} if final and done < iters else {}),
                **({"processes": ranks.world} if ranks is not None else {}),
            ))
            if not leader:
                return terms
            save_checkpoint(out, net.state_dict(), manifest, exemplar=exemplar)
            if final:
                state_path(out).unlink(missing_ok=True)  # a finished model is not resumed
            else:
                save_optimizer_state(state_path(out), opt, done, OPTIMIZER_STATE, {"model": out.name})
            return terms

        interrupted, failure = False, None
        try:
            while done < iters and not finish:
                step = done
                for group in opt.param_groups:
                    group["lr"] = learning_rate(step, iters, lr)
                # item i of the batch: noise seed (..) + i, whichever rank draws it
                z = net.noise(size, size, seed=TRAIN_SEED_OFFSET + seed * iters * batch + step * batch + first, batch=count,
                              device=dev)
                terms = objective(model(z))
                value = terms["total"].mean()
                opt.zero_grad(set_to_none=True)
                value.backward()
                opt.step()
                logged = {k: float(v.detach().mean()) for k, v in terms.items()}  # "total": float(value)
                if ranks is not None:  # the batch's means from the ranks' means of equal shares
                    logged = dict(zip(logged, ranks.average(list(logged.values()))))
                done = step + 1
                log.add(done, logged)
                if progress is not None:
                    progress(done, log.loss())
                if schedule.checkpoint_every and done % schedule.checkpoint_every == 0 and done < iters:
                    save(interrupted=False)
        except KeyboardInterrupt:
            interrupted = True  # the `done` iterations completed are kept
        except RuntimeError as exc:  # a collective failed: if another rank is gone, this one holds the state at `done`
            failure = ranks.lost(exc) if ranks is not None else None
            if failure is None:
                raise
            interrupted = True
        if failure is not None or (interrupted and done < iters and not finish):
            save(interrupted=True)  # resumable: running BatchNorm averages, optimizer state kept
            final_terms = log.terms()
            if ranks is not None:
                ranks.stop_others()
            if failure is not None:
                raise failure
        else:
            recalibrate_batchnorm(net, size, batch, seed=TRAIN_SEED_OFFSET // 2 + seed * 4096, share=(first, count))
            final_terms = save(interrupted, final=True)
        return TrainReport(out, done, iters, seconds_before + time.perf_counter() - start, log.loss(),
                           final_terms, interrupted, log.history, rank=ranks.rank if ranks is not None else 0)


def write_preview(model_path: Path, texture_path: Path, box=None) -> Path:
    """MODEL.png beside a trained network: its exemplar (after the crop) | a 256x256 sample, seed 0."""
    sample = sample_texnet(load_texnet(model_path), 256, seed=0)
    preview = model_path.with_suffix(".png")
    save_image(side_by_side([load_exemplar(texture_path, box), sample]), preview)
    return preview
