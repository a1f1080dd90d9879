"""Training a style network on one style image and a pool of photographs (Ulyanov et al. 2016 sec. 3.3).

Minimizes eq. 6 (`texport.objectives.objective.StyleObjective`: the texture objective against the style image +
alpha x the content loss against each photograph) over random crops of the content photographs and
fresh noise, with Adam and the texture networks' schedule. The paper found a small pool of natural
images (16) enough, and better than many: the network learns the style, not the photographs.

Resumable like texture networks (`texport.texnet_training`): checkpoints every `checkpoint_every`
iterations and on Ctrl-C or SIGTERM, the Adam state beside the model, `--resume` continues with the
same settings and draws what an unbroken run would: each crop and each noise is a function of
(seed, iteration, item).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import texport.defaults as defaults
from texport.devices import resolve_device
from texport.errors import TexportError
from texport.models.checkpoints import check_state, load_checkpoint, load_stored_exemplar, save_checkpoint
from texport.models.handle import STYLENET, open_model
from texport.models.loading import load_stylenet, stylize_planned
from texport.models.stylenet import StyleNetwork
from texport.models.texnet import NORMS
from texport.objectives.objective import (
    DEFAULT_ALPHA,
    DEFAULT_CONTENT_LAYER,
    ObjectiveSpec,
    build_style_objective,
)
from texport.progress import StepProgress
from texport.textures.datasets import open_dataset
from texport.textures.images import load_exemplar, load_image, save_image, side_by_side
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
from texport.training.texnet import TRAIN_SEED_OFFSET, learning_rate, precise_batchnorm

OPTIMIZER_STATE = "stylenet-optimizer-state"
CONTENT_RESIZE = defaults.STYLE_CONTENT_RESIZE
MIN_PHOTOS = 2  # fewer cannot teach a network to follow its input


def content_batch(photos, step: int, batch: int, size: int, seed: int) -> torch.Tensor:
    """Iteration `step`'s crops [batch, 3, size, size]: item i is drawn by a generator seeded with (seed, step, i)."""
    crops = []
    for item in range(batch):
        gen = torch.Generator().manual_seed(((seed * 1_000_003 + step) * 4096 + item) & 0x7FFFFFFFFFFFFFFF)
        index = int(torch.randint(0, len(photos), (1,), generator=gen))
        crops.append(photos.crop(index, size, gen))
    return torch.cat(crops)


@dataclass(frozen=True)
class StyleData:
    """What a style network learns from: one style image and a folder or zip of photographs, scaled so
    their shorter side is `resize`, then cropped to `size` squares."""
    style: Path
    content: Path
    size: int = defaults.TEXNET_SIZE  # a multiple of the network's grid, at least 32
    resize: int = CONTENT_RESIZE


@dataclass(frozen=True)
class StyleArchitecture:
    """The generator (texport.models.stylenet.StyleNetwork)."""
    scales: int = defaults.TEXNET_SCALES
    width: int = defaults.TEXNET_WIDTH
    norm: str = "instance"


@dataclass(frozen=True)
class ContentTerm:
    """The content term of eq. 6 (Ulyanov et al. 2016): its weight relative to the style term, and its tap."""
    alpha: float = DEFAULT_ALPHA
    content_layer: str = DEFAULT_CONTENT_LAYER


@dataclass(frozen=True)
class StyleRun:
    """One style-network training run (Ulyanov et al. 2016 sec. 3.3): `StyleRun.of(style, content, output, **settings)`."""
    data: StyleData
    network: StyleArchitecture
    objective: ObjectiveSpec
    content_term: ContentTerm
    schedule: Schedule
    output: RunOutput

    @classmethod
    def of(cls, style: str | os.PathLike, content: str | os.PathLike, output: str | os.PathLike, **settings) -> "StyleRun":
        """From flat settings (alpha, iters, batch, size, resize, lr, width, norm, resume, ...; see the parts)."""
        return build_run(cls, dict(settings, style=Path(style), content=Path(content), path=Path(output)), KIND_DEFAULTS)


KIND_DEFAULTS = {"iters": defaults.STYLE_ITERS, "batch": defaults.TEXNET_BATCH, "lr": defaults.TEXNET_LR,
                 "spectrum_weight": defaults.STYLE_SPECTRUM_WEIGHT}


def train_style(run: StyleRun, progress: StepProgress | None = None) -> TrainReport:
    """Train a StyleNetwork for the style image `data.style` on the photographs in `data.content` (a folder or a
    zip) and save it (safetensors + manifest, the style image kept in the file) to `output.path`.

    Photographs are scaled so their shorter side is `resize`, then cropped to `size` squares: the
    ratio sets how much of a scene a crop holds, so stylizing photographs of about `resize` px
    matches training. resume and finish as for texture networks.
    """
    data, arch, objective_spec, schedule, output = run.data, run.network, run.objective, run.schedule, run.output
    style_path, content, size, resize = data.style, data.content, data.size, data.resize
    scales, width, norm = arch.scales, arch.width, arch.norm
    iters, batch, lr, seed = schedule.iters, schedule.batch, schedule.lr, schedule.seed
    resume, finish = output.resume, output.finish
    if schedule.nproc not in (None, 1):
        raise TexportError("style networks train on one process")
    if norm not in NORMS:
        raise TexportError(f"unknown norm {norm!r}: choose {' or '.join(NORMS)}")
    out = check_run(schedule, output)
    multiple = 2 ** (scales - 1)
    if size < 32 or size % multiple:
        raise TexportError(f"the training crop side must be a multiple of {multiple} and at least 32, got {size}")
    if resize < size:
        raise TexportError(f"photographs are scaled to {resize} px, smaller than the {size} px crops")
    style_image = load_exemplar(style_path)
    photos = open_dataset(content, split="all", resize=resize, min_side=size)
    if len(photos) < MIN_PHOTOS:
        raise TexportError(f"{content} holds {len(photos)} usable photograph(s): a style network needs at least {MIN_PHOTOS}")
    dev = resolve_device(schedule.device)
    objective = build_style_objective(style_image.to(dev), run.content_term.alpha, run.content_term.content_layer,
                                      objective_spec, device=dev)
    torch.manual_seed(seed)
    net = StyleNetwork(scales, 3, width, norm).to(dev).train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    manifest_base = {
        "kind": STYLENET,
        "name": output.name or out.stem,
        "architecture": net.config(),
        "size_multiple": net.size_multiple,
        "noise": noise_record(net.input_channels, scaled_by="noise_scale, at inference (Ulyanov et al. 2016 fig. 5)"),
        "style": image_record(style_path, style_image),
        "content": {**photos.describe(), "crop": size},
        "descriptor": objective.descriptor.identity,
        "objective": objective.as_dict(),
    }
    settings = {"planned_iterations": iters, "batch": batch, "size": size, "lr": lr, "seed": seed}
    log = LossLog()
    done, seconds_before = 0, 0.0
    if resume:
        state, manifest = load_checkpoint(out, kind=STYLENET)
        previous = manifest.get("training", {})
        check_same_run(out, manifest, settings, manifest_base, ("architecture", "style", "content", "descriptor", "objective"))
        if previous.get("finished"):
            raise TexportError(f"cannot resume {out}: it is a finished model")
        check_state(out, net, state)
        done = int(load_optimizer_state(state_path(out), opt, OPTIMIZER_STATE)["step"])
        log = LossLog(previous)
        seconds_before = float(previous.get("seconds", 0.0))
    start = time.perf_counter()

    def save(interrupted: bool, final: bool = False) -> dict:
        terms = log.terms()
        manifest = dict(manifest_base, training=dict(
            settings, iterations=done, schedule="x0.7 at iters/2 then every iters/10 (Ulyanov et al. 2016, scaled)",
            optimizer="adam", device=dev.type, precision=objective.descriptor.precision, seconds=round(seconds_before + time.perf_counter() - start, 1),
            finished=final,
            **({"batchnorm": "recalibrated over 32 fresh batches" if final else "running averages"} if norm == "batch" else {}),
            interrupted=interrupted, **log.record(),
            **({"finished_early": True} if final and done < iters else {}),
        ))
        save_checkpoint(out, net.state_dict(), manifest, exemplar=style_image)
        if final:
            state_path(out).unlink(missing_ok=True)
        else:
            save_optimizer_state(state_path(out), opt, done, OPTIMIZER_STATE, {"model": out.name})
        return terms

    interrupted = False
    try:
        while done < iters and not finish:
            step = done
            for group in opt.param_groups:
                group["lr"] = learning_rate(step, iters, lr)
            photo = content_batch(photos, step, batch, size, seed).to(dev)
            z = net.noise(size, size, seed=TRAIN_SEED_OFFSET + seed * iters * batch + step * batch, batch=batch, device=dev)
            terms = objective(net(photo, z), objective.content_target(photo))
            value = terms["total"].mean()
            opt.zero_grad(set_to_none=True)
            value.backward()
            opt.step()
            logged = {k: float(v.detach().mean()) for k, v in terms.items()}
            done = step + 1
            log.add(done, logged)
            if progress is not None:
                progress(done, log.loss())
            if schedule.checkpoint_every and done % schedule.checkpoint_every == 0 and done < iters:
                save(interrupted=False)
    except KeyboardInterrupt:
        interrupted = True
    if interrupted and done < iters and not finish:
        save(interrupted=True)
        final_terms = log.terms()
    else:
        base = TRAIN_SEED_OFFSET // 2 + seed * 4096
        precise_batchnorm(net, lambda i: net(content_batch(photos, base + i, batch, size, seed + 1).to(dev),
                                             net.noise(size, size, seed=base + i * batch, batch=batch, device=dev)))
        final_terms = save(interrupted, final=True)
    return TrainReport(out, done, iters, seconds_before + time.perf_counter() - start, log.loss(),
                       final_terms, interrupted, log.history)


def write_preview(model_path: Path, content: str | os.PathLike, photo: str | os.PathLike | None = None) -> Path:
    """MODEL.png beside a trained style network: a photograph | the style image | the photograph stylized
    (seed 0, noise scale 1), at the training scale (shorter side CONTENT_RESIZE). photo: default the
    content set's first photograph by name hash."""

    if photo is not None:
        image = load_image(photo)
    else:
        photos = open_dataset(content, split="all", resize=CONTENT_RESIZE, min_side=16)
        image = photos.image(photos.by_name_hash(1)[0])
    h, w = image.shape[-2:]
    scale = CONTENT_RESIZE / min(h, w)
    size = (round(w * scale), round(h * scale))
    loaded = load_stylenet(model_path)
    result = stylize_planned(lambda noise, fitted: loaded.network(fitted, noise), open_model(model_path), image, size, seed=0)
    preview = Path(model_path).with_suffix(".png")
    save_image(side_by_side([image, load_stored_exemplar(model_path), result]), preview)
    return preview
