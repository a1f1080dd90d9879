"""Training ProPO on a set of textures (Shi & Qiao 2020 sec. 3.4-3.5, 4.1; eq. 10).

Each iteration draws a target crop (random position and flips) from the training split, fresh
noise, runs the five stages, and minimizes the mean over stages of stage m's loss on x^m: the
relative Gram loss of levels 1..m (each level's ||G - G_target||^2 / ||G_target||^2, so levels
and textures of very different energies count alike, as in the foundation's 'normalized' weights)
plus the colour-distribution term (sliced Wasserstein on RGB, weight color_weight x m, the
foundation objective's scaling). The pass over x^m that gives stage m's loss also feeds stage
m+1 (ProPO.run), so no image is described twice.

Incremental learning (Shi & Qiao 2020 sec. 1 and 4.3 name it; its source, Li et al. 2017 "Diversified
Texture Synthesis with Feed-forward Networks", grows the training set during training): the
textures are visited in a seeded random order; the pool starts with `INCREMENTAL_START` and grows
linearly to the whole split by half the run; each iteration trains on the newest texture with
probability 1/2, else on any texture already in the pool. It is off by default (--incremental
turns it on): on a two-texture set it made training diverge (stage losses 5-10x up after 160
steps at lr 5e-4, where uniform draws lowered every stage's loss), and in matched 400-step runs it
scored a worse Gram loss than uniform draws (0.84 vs 0.69) for a slightly higher diversity (2.53 vs
2.42; RESULTS.md "ProPO design ablation"). Without it, targets are drawn uniformly from the start.

Resumable: every `checkpoint_every` iterations the model (safetensors + manifest) and the Adam
state (OUTPUT.state.safetensors) are written atomically; --resume continues from them. All
randomness is derived from (seed, iteration, item), so a resumed run draws what an unbroken one
would, and so does every process of a run on several (--nproc, or torchrun;
texport.distributed_training), each drawing its share of the batch. ProPO has no layer that couples
the items of a batch (InstanceNorm, per-image colour matching), so DistributedDataParallel's averaged
gradient is the whole batch's; rank 0 writes the checkpoints.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

import texport.defaults as defaults
import texport.objectives.metrics as metrics
import texport.textures.noise as noise_lib
from texport.devices import resolve_device
from texport.errors import TexportError
from texport.models.checkpoints import check_state, load_checkpoint, save_checkpoint
from texport.models.handle import PROPO
from texport.models.loading import load_propo, sample_propo
from texport.models.propo import DEFAULT_WIDTHS, LEVELS, SIZE_MULTIPLE, UPSAMPLE_MODES, ProPO, pseudo_optimizer_state
from texport.objectives.descriptor import build_descriptor
from texport.objectives.objective import ObjectiveSpec, parse_loss
from texport.progress import StepProgress
from texport.textures.datasets import DEFAULT_HELD_OUT, DEFAULT_RESIZE, TextureDataset, open_dataset
from texport.textures.images import load_image, save_image, shipped_textures, side_by_side, stack_rows
from texport.training.distributed import processes, role
from texport.training.propo_stages import (
    DEFAULT_COLOR_WEIGHT,
    DEFAULT_SPECTRUM_WEIGHT,
    StageLosses,
    _Stages,
    stage_objective,
)
from texport.training.runs import (
    RunOutput,
    Schedule,
    TrainReport,
    build_run,
    check_run,
    check_same_run,
    load_optimizer_state,
    noise_record,
    save_optimizer_state,
    state_path,
)

DEFAULT_ITERS = defaults.PROPO_ITERS
DEFAULT_SIZE = defaults.PROPO_SIZE
DEFAULT_LR = defaults.PROPO_LR
BETAS = (0.5, 0.999)
DEFAULT_NOISE_AMPLITUDE = defaults.PROPO_NOISE_AMPLITUDE
INCREMENTAL_START = 8
NOISE_SEED_OFFSET = 1 << 30
# Item i of iteration t draws its target (texture, crop, flips) from its own generator, seeded
# seed * 1000003 + t + i * 2**40: any process can draw any item alone (runs on several processes), and
# item 0's is the generator every item of an iteration once shared, so batch-1 runs draw as before.
ITEM_SEED_STRIDE = 1 << 40
TARGET_DRAWS = "per item: torch.Generator(seed * 1000003 + step + item * 2**40)"
OPTIMIZER_STATE = "propo-optimizer-state"
# a resumed run must have been started with these settings (and the same architecture and descriptor)
# Half-to-half limits of stationary_screen. 0.8 is twice the largest spectral distance between the
# halves of the four classic textures at 256 px (0.40), and 0.1 just above their largest mean-colour
# difference (0.084): what a texture's two halves can differ by, with room for game textures' coarser
# structure. RESULTS.md "ProPO training data" records what each limit drops.
DEFAULT_STATIONARITY = defaults.PROPO_STATIONARITY
STATIONARY_COLOUR_LIMIT = 0.1
RESUME_KEYS = ("size", "resize", "batch", "color_weight", "spectrum_weight", "incremental", "seed", "iterations_planned")


def learning_rate(step: int, iters: int, lr: float) -> float:
    """Seed 000 sec. 4.1: constant, then linearly to 0 over the second half."""
    half = iters // 2
    return lr if step < half else lr * max(0.0, (iters - step) / max(1, iters - half))


class IncrementalSampler:
    """Which training texture iteration `step` uses (see the module docstring)."""
    def __init__(self, count: int, iters: int, seed: int, incremental: bool = True, start: int = INCREMENTAL_START):
        self.count, self.iters, self.seed, self.incremental = count, iters, seed, incremental
        self.start = min(count, start)
        self.order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()

    def pool_size(self, step: int) -> int:
        if not self.incremental:
            return self.count
        grow_until = max(1, self.iters // 2)
        return min(self.count, self.start + (self.count - self.start) * step // grow_until)

    def __call__(self, step: int, generator: torch.Generator) -> int:
        n = self.pool_size(step)
        if self.incremental and float(torch.rand((), generator=generator)) < 0.5:
            return self.order[n - 1]
        return self.order[int(torch.randint(0, n, (1,), generator=generator))]


def item_generator(seed: int, step: int, item: int) -> torch.Generator:
    """The generator of item `item`'s target at iteration `step` (see ITEM_SEED_STRIDE)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step + item * ITEM_SEED_STRIDE) % (1 << 64))


def draw_targets(data: TextureDataset, sampler: IncrementalSampler, seed: int, step: int, size: int, first: int,
                 count: int, per_item: bool = True) -> torch.Tensor:
    """Targets first .. first + count - 1 of iteration `step`'s batch, [count, 3, size, size].

    per_item False: the rule of runs started before per-item draws (one generator for the whole
    batch, items drawn in turn), kept so that such a run resumes as it would have gone on.
    """
    if not per_item:
        if first != 0:
            raise ValueError("one generator per iteration is drawn in turn: the whole batch only")
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        return torch.cat([data.crop(sampler(step, gen), size, gen) for _ in range(count)])
    targets = []
    for item in range(first, first + count):
        gen = item_generator(seed, step, item)
        targets.append(data.crop(sampler(step, gen), size, gen))
    return torch.cat(targets)


@dataclass(frozen=True)
class PropoData:
    """What ProPO learns from: the training split of a folder or zip archive of texture images, scaled so
    their shortest side is `resize`, and crops of `size` drawn from them."""
    dataset: Path
    size: int = DEFAULT_SIZE  # a multiple of 16 (the paper: 256)
    resize: int = DEFAULT_RESIZE
    held_out_fraction: float = DEFAULT_HELD_OUT  # folders kept out of training (sha1 of their names)
    limit: int | None = None  # at most this many training images (quick runs)
    incremental: bool = False  # grow the training set during the run (experimental)
    stationarity: float = DEFAULT_STATIONARITY  # drop images whose halves differ more (stationary_screen); 0: keep all


@dataclass(frozen=True)
class PropoArchitecture:
    """The pseudo-optimizers and what each stage is fed (texport.models.propo.ProPO)."""
    widths: tuple[int, ...] = DEFAULT_WIDTHS
    color_input: bool = True
    noise_amplitude: float = DEFAULT_NOISE_AMPLITUDE
    color_match: bool = True
    histogram_match: bool = True
    upsample: str = "nearest"  # how the pseudo optimizers go up a level (texport.models.propo.Upsample)


@dataclass(frozen=True)
class PropoRun:
    """One ProPO training run (Shi & Qiao 2020): `PropoRun.of(dataset, output, **settings)`.

    The objective's loss is the stages' Gram + colour objective (gram+color) or its sliced Wasserstein
    form (sw+color); its weights scale with the stage number (stage_objective)."""
    data: PropoData
    network: PropoArchitecture
    objective: ObjectiveSpec
    schedule: Schedule
    output: RunOutput

    @classmethod
    def of(cls, dataset: str | os.PathLike, output: str | os.PathLike, **settings) -> "PropoRun":
        """From flat settings (iters, size, resize, lr, batch, color_weight, widths, resume, ...; see the parts)."""
        if "widths" in settings:
            settings["widths"] = tuple(settings["widths"])
        return build_run(cls, dict(settings, dataset=Path(dataset), path=Path(output)), KIND_DEFAULTS)


STAGE_OBJECTIVES = {
    "gram": "mean over stages m of sum_{l<=m} ||G_l - G_l(target)||^2 / ||G_l(target)||^2",
    "sw": "mean over stages m of sum_{l<=m} SW_2^2(F_l, F_l(target)) / mean(proj(F_l(target))^2) (Heitz et al. 2021)",
}
KIND_DEFAULTS = {"iters": DEFAULT_ITERS, "batch": 1, "lr": DEFAULT_LR, "color_weight": DEFAULT_COLOR_WEIGHT,
                 "spectrum_weight": DEFAULT_SPECTRUM_WEIGHT, "layers": LEVELS}


def check_propo_run(run: PropoRun) -> Path:
    """Every check a ProPO run makes before any work (the CLI calls it before decoding the dataset)."""
    out = check_run(run.schedule, run.output)
    data, objective = run.data, run.objective
    parse_loss(objective.loss)
    if tuple(objective.layers) != tuple(LEVELS) or objective.octaves != 1:
        raise TexportError(f"ProPO's stages are trained on their levels {', '.join(LEVELS)}, single scale, "
                           f"not {', '.join(objective.layers)} over {objective.octaves} octaves")
    if data.size < SIZE_MULTIPLE or data.size % SIZE_MULTIPLE:
        raise TexportError(f"the training crop side must be a multiple of {SIZE_MULTIPLE}, got {data.size}")
    if data.resize < data.size:
        raise TexportError(f"images are resized to {data.resize}, smaller than the training crop side {data.size}")
    if data.stationarity < 0:
        raise TexportError(f"the stationarity limit must be >= 0 (0 keeps every image), got {data.stationarity}")
    if not 0 <= data.held_out_fraction < 1:
        raise TexportError(f"the held-out fraction must be in [0, 1), got {data.held_out_fraction}")
    if run.network.upsample not in UPSAMPLE_MODES:
        raise TexportError(f"unknown upsampling {run.network.upsample!r}: choose {', '.join(UPSAMPLE_MODES)}")
    return out


def stationary_screen(limit: float, colour_limit: float = STATIONARY_COLOUR_LIMIT) -> Callable[[torch.Tensor], bool]:
    """Keep an image when its halves look like two samples of one texture (metrics.half_distances):
    spectral distance at most `limit` and mean colours within `colour_limit`. A Gram or spectrum
    objective has no stationary target in a decal, a door or an arch, and every crop of one teaches
    the stages to reach for structure that is not texture. Images too small to split in 64 px halves
    are kept."""
    def keep(image: torch.Tensor) -> bool:
        if min(image.shape[-2:]) < 2 * metrics.PATCH:
            return True
        spectral, colour = metrics.half_distances(image)
        return spectral <= limit and colour <= colour_limit
    return keep


def open_training_set(data: PropoData) -> TextureDataset:
    """The training split the run's data part names, decoded (the images at least 64 px or the crop side),
    without the images that are not stationary textures (data.stationarity > 0)."""
    return open_dataset(data.dataset, "train", data.resize, min_side=min(64, data.size),
                        held_out_fraction=data.held_out_fraction, limit=data.limit,
                        screen=stationary_screen(data.stationarity) if data.stationarity > 0 else None)


def train_propo(run: PropoRun, progress: StepProgress | None = None, loaded: TextureDataset | None = None) -> TrainReport:
    """Train ProPO on the training split of `dataset` (a folder or zip archive) and save it to `output`.

    output.resume continues `output` from its last checkpoint (every setting the same); output.finish (with resume)
    makes the stopped run a finished model at the iterations it has done, e.g. to ship a copy of a
    long run that goes on elsewhere. schedule.nproc trains on that many processes (texport.training.distributed);
    the batch is split between them and the result is that of one process, up to rounding.
    loaded: the training split already opened (open_dataset), e.g. by the CLI before its progress bar.
    """
    data_spec, arch, objective_spec, schedule, output = run.data, run.network, run.objective, run.schedule, run.output
    size, resize, held_out_fraction, incremental = data_spec.size, data_spec.resize, data_spec.held_out_fraction, data_spec.incremental
    iters, batch, lr, seed = schedule.iters, schedule.batch, schedule.lr, schedule.seed
    color_weight, spectrum_weight = objective_spec.color_weight, objective_spec.spectrum_weight
    resume, finish, nproc = output.resume, output.finish, schedule.nproc
    call = {k: v for k, v in locals().items() if k != "progress"}  # what the other processes are given
    out = check_propo_run(run)
    dev = resolve_device(schedule.device)
    data = loaded or open_training_set(data_spec)
    # the other processes of a run on several get the decoded images
    with processes(nproc, dev, train_propo, {"run": run, "loaded": data}) as ranks:  # ranks: None for one process
        leader, first, count, dev = role(ranks, batch, dev)  # the leader writes the files and shows progress
        if not leader:
            progress = None
        desc = build_descriptor(objective_spec.descriptor, LEVELS, weights_file=objective_spec.descriptor_weights, device=dev,
                                precision=objective_spec.precision)
        torch.manual_seed(seed)
        model = ProPO(desc, widths=arch.widths, color_input=arch.color_input, noise_amplitude=arch.noise_amplitude,
                      color_match=arch.color_match, histogram_match=arch.histogram_match,
                      upsample=arch.upsample).to(dev).train()
        opt = torch.optim.Adam(model.pseudo_optimizers.parameters(), lr=lr, betas=BETAS)
        settings = {"iterations_planned": iters, "size": size, "resize": resize, "lr": lr, "betas": list(BETAS),
                    "batch": batch, "schedule": "constant, then linear to 0 over the second half (Shi & Qiao 2020)",
                    "color_weight": color_weight, "spectrum_weight": spectrum_weight, "incremental": incremental,
                    "seed": seed, "held_out_fraction": held_out_fraction, "stationarity": data_spec.stationarity,
                    "loss": objective_spec.loss, "objective": STAGE_OBJECTIVES[parse_loss(objective_spec.loss)[0]]
                    + (" + color_weight * m * sliced-Wasserstein(RGB)" if parse_loss(objective_spec.loss)[1] else "")
                    + " + spectrum_weight * m * mean((x - P(x))^2) (Liu et al. 2016)",
                    "target_draws": TARGET_DRAWS}
        per_item = True
        start_step, history, seconds_before = 0, [], 0.0
        if resume:
            state, manifest = load_checkpoint(out, kind=PROPO)
            previous = manifest.get("training", {})
            if previous.get("stationarity", 0.0) != data_spec.stationarity:  # runs before the screen kept every image
                raise TexportError(f"cannot resume {out}: it was trained with stationarity={previous.get('stationarity', 0.0)!r}, "
                                   f"not {data_spec.stationarity!r}")
            if previous.get("loss", "gram+color") != objective_spec.loss:  # runs before --loss recorded none: Gram
                raise TexportError(f"cannot resume {out}: it was trained with loss={previous.get('loss', 'gram+color')!r}, "
                                   f"not {objective_spec.loss!r}")
            check_same_run(out, manifest, {key: settings[key] for key in RESUME_KEYS},
                           {"architecture": model.config(), "descriptor": desc.identity}, ("architecture", "descriptor"))
            check_state(out, model.pseudo_optimizers, pseudo_optimizer_state(state))
            extra = load_optimizer_state(state_path(out), opt, OPTIMIZER_STATE)
            start_step = int(extra["step"])
            history = list(previous.get("loss_history", []))
            seconds_before = float(previous.get("seconds", 0.0))
            if "target_draws" not in previous and batch > 1:  # started with one generator per iteration: kept
                per_item = False
                del settings["target_draws"]
                if ranks is not None:
                    raise TexportError(f"cannot resume {out} on several processes: it was started before targets were "
                                       "drawn per item; resume it with one process")
        stages_run = ranks.wrap(_Stages(model)) if ranks is not None else None  # DDP: gradients averaged over the ranks
        sampler = IncrementalSampler(len(data), iters, seed, incremental)
        manifest_base = {
            "kind": PROPO,
            "name": output.name or out.stem,
            "architecture": model.config(),
            "size_multiple": SIZE_MULTIPLE,
            "levels": list(LEVELS),
            "noise": noise_record(3),
            "descriptor": desc.identity,
            "dataset": dict(data.describe(), held_out_fraction=held_out_fraction, held_out_rule="sha1(folder) < fraction"),
        }
        window: list[StageLosses] = []
        begin = time.perf_counter()
        step = start_step
        if finish:  # the stopped run as it is: its record kept, marked finished (early), no optimizer state to resume
            training = dict(previous, interrupted=False, **({"finished_early": True} if step < iters else {}))
            if leader:
                save_checkpoint(out, model.trainable_state(), dict(manifest_base, training=training))
                state_path(out).unlink(missing_ok=True)
            return TrainReport(out, step, iters, seconds_before, float(previous.get("final_loss", float("nan"))),
                               previous.get("final_stage_losses", {}), False, history,
                               rank=ranks.rank if ranks is not None else 0)

        def save(interrupted: bool) -> dict:
            recent = window[-50:]
            stages = {
                term: [sum(getattr(s, term)[i] for s in recent) / len(recent) for i in range(len(LEVELS))]
                for term in ("gram", "color", "spectrum") if recent and getattr(recent[-1], term)
            }
            training = dict(settings, iterations=step, seconds=round(seconds_before + time.perf_counter() - begin, 1),
                            device=dev.type, precision=desc.precision, interrupted=interrupted, final_loss=sum(s.total for s in recent) / max(1, len(recent)),
                            final_stage_losses=stages, loss_history=history,
                            **({"processes": ranks.world} if ranks is not None else {}))
            if leader:
                save_checkpoint(out, model.trainable_state(), dict(manifest_base, training=training))
                save_optimizer_state(state_path(out), opt, step, OPTIMIZER_STATE, {"model": out.name})
            return stages

        interrupted, failure = False, None
        try:
            while step < iters:
                # item i of the batch: its own target generator and noise seed (..) + i, whichever rank draws it
                target = draw_targets(data, sampler, seed, step, size, first, count, per_item).to(dev)
                z = noise_lib.noise_field(NOISE_SEED_OFFSET + (seed * iters + step) * batch + first, 3, size, size,
                                          batch=count, device=dev)
                for group in opt.param_groups:
                    group["lr"] = learning_rate(step, iters, lr)
                loss, terms = stage_objective(model, z, target, color_weight, spectrum_weight, run=stages_run,
                                              loss=objective_spec.loss)
                if ranks is not None:  # the batch's means (every rank then agrees on whether they are finite)
                    terms = _averaged(terms, ranks)
                opt.zero_grad(set_to_none=True)
                if math.isfinite(terms.total):
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.pseudo_optimizers.parameters(), 10.0)
                    opt.step()
                window.append(terms)
                del window[:-200]
                step += 1
                if step % 10 == 0:
                    history.append(round(sum(s.total for s in window[-10:]) / len(window[-10:]), 5))
                if progress is not None:
                    progress(step, sum(s.total for s in window[-20:]) / len(window[-20:]))
                if schedule.checkpoint_every and step % schedule.checkpoint_every == 0 and step < iters:
                    save(interrupted=False)
        except KeyboardInterrupt:
            interrupted = True
        except RuntimeError as exc:  # a collective failed: if another rank is gone, this one holds the state at `step`
            failure = ranks.lost(exc) if ranks is not None else None
            if failure is None:
                raise
            interrupted = True
        stages = save(interrupted)
        if ranks is not None and interrupted:
            ranks.stop_others()
        if failure is not None:
            raise failure
        recent = window[-50:]
        return TrainReport(out, step, iters, seconds_before + time.perf_counter() - begin,
                           sum(s.total for s in recent) / max(1, len(recent)), stages, interrupted, history,
                           rank=ranks.rank if ranks is not None else 0)


def _averaged(terms: StageLosses, ranks) -> StageLosses:
    """StageLosses of the whole batch from each rank's (the means of equal shares average to the batch's)."""
    n, k = len(terms.gram), len(terms.spectrum)
    values = ranks.average([terms.total, *terms.gram, *terms.color, *terms.spectrum])
    return StageLosses(values[1:1 + n], values[1 + n:1 + 2 * n], values[0], values[1 + 2 * n:1 + 2 * n + k])


def describe_stage_losses(stages: dict) -> str:
    return json.dumps({k: [round(v, 4) for v in vals] for k, vals in stages.items()})


def write_preview(model_path: Path, dataset: Path, held_out: float, count: int = 2) -> Path:
    """MODEL.png: rows of Shi & Qiao 2020 fig. 6 (noise, x^1..x^5, target) for the shipped textures and
    `count` held-out images, all unseen in training (held-out images: the first by SHA-1 of their names, as the benchmark picks)."""

    targets = [load_image(p) for _, p in sorted(shipped_textures().items())]
    try:
        data = open_dataset(dataset, "held-out", held_out_fraction=held_out)
        targets += [data.image(i) for i in data.by_name_hash(count)]
    except TexportError:
        pass  # no held-out split (--held-out 0): the shipped textures alone
    loaded = load_propo(model_path)
    rows = [side_by_side([*sample_propo(loaded, t, 256, seed=0, stages=True), t], height=128) for t in targets]
    preview = model_path.with_suffix(".png")
    save_image(stack_rows(rows), preview)
    return preview
