"""Training a solid texture network on 2D slices (Gutierrez, Rabin, Galerne & Hurtut 2020).

Gatys's optimization is out of reach in 3D (a descriptor pass over a whole volume), so the 3D
generator (texport.models.solid) is trained so that its slices, in each of three directions, have
the descriptor statistics of a 2D exemplar of that direction. Each step picks one direction at
random and generates only the slab one slice needs ("single-slice training": a window one voxel
thick, with the halo its convolutions eat, at a random place of the infinite volume), so the cost
of a step grows with the slice's area, not with a volume. The default objective (Gram + colour +
spectrum, texport.objectives.objective) measures the slices, each against its direction's
exemplar; Adam with the texture network's schedule (texport.training.texnet.learning_rate).

Directions, for a volume v[z, y, x] (the .npy layout [D, H, W, 3]):

- the exemplar (x): slices normal to x, v[:, :, x0]: rows run along z, columns along y;
- --y: slices normal to y, v[:, y0, :]: rows run along z, columns along x;
- --z: slices normal to z, v[z0, :, :]: rows run along y, columns along x (the slices a folder output holds).

Rows run downwards with growing z (or y), columns rightwards with growing y (or x). An isotropic
material (marble, granite) takes one exemplar for all three; wood takes its cross-section for the
direction along the grain and a plank's face for the other two.

Resumable like texport.training.texnet: every `checkpoint_every` steps and on Ctrl-C or SIGTERM the
model and Adam's state are written atomically; --resume continues with the same settings, and every
draw (direction, place, noise) is a function of (seed, step, item), so a resumed run draws what an
unbroken one would. At the end BatchNorm's statistics are recalibrated over fresh windows.
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
from texport.models.handle import SOLID
from texport.models.loading import load_solid
from texport.models.solid import SolidNetwork
from texport.objectives.objective import ObjectiveSpec, build_objective
from texport.progress import StepProgress
from texport.textures.carve import render_carved
from texport.textures.images import load_exemplar, save_image, side_by_side, stack_rows
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

DIRECTIONS = ("x", "y", "z")  # the axis each direction's slices are normal to
OPTIMIZER_STATE = "solid-optimizer-state"
PLACE = 1 << 20  # training slices lie anywhere in [-PLACE, PLACE) on every axis


@dataclass(frozen=True)
class SolidData:
    """What a solid network learns from: an exemplar per direction (y and z default to x's), the
    side of the training slices."""
    texture: Path  # slices normal to x
    texture_y: Path | None = None
    texture_z: Path | None = None
    size: int = defaults.SOLID_SIZE

    def paths(self) -> dict[str, Path]:
        return {"x": self.texture, "y": self.texture_y or self.texture, "z": self.texture_z or self.texture}


@dataclass(frozen=True)
class SolidArchitecture:
    """The generator (texport.models.solid.SolidNetwork)."""
    scales: int = defaults.SOLID_SCALES
    noise_channels: int = 3
    width: int = defaults.SOLID_WIDTH


@dataclass(frozen=True)
class SolidRun:
    """One solid-network training run: `SolidRun.of(texture, output, **settings)`."""
    data: SolidData
    network: SolidArchitecture
    objective: ObjectiveSpec
    schedule: Schedule
    output: RunOutput

    @classmethod
    def of(cls, texture: str | os.PathLike, output: str | os.PathLike, **settings) -> "SolidRun":
        """From flat settings (iters, batch, lr, size, scales, width, texture_y, texture_z, loss, precision, resume, ...)."""
        for key in ("texture_y", "texture_z"):
            if settings.get(key) is not None:
                settings[key] = Path(settings[key])
        if settings.get("layers") is None:
            settings.pop("layers", None)
        return build_run(cls, dict(settings, texture=Path(texture), path=Path(output)), KIND_DEFAULTS)


KIND_DEFAULTS = {"iters": defaults.SOLID_ITERS, "batch": defaults.SOLID_BATCH, "lr": defaults.SOLID_LR}


def slice_window(direction: str, place: tuple[int, int, int], size: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(origin (x, y, z), size (W, H, D)) of the slab that holds one size x size slice normal to `direction`."""
    thin = {"x": (1, size, size), "y": (size, 1, size), "z": (size, size, 1)}[direction]
    return place, thin


def as_slice(volume: torch.Tensor, direction: str) -> torch.Tensor:
    """The image [B, 3, rows, columns] of a one-voxel slab [B, 3, D, H, W] (rows and columns as the module says)."""
    return {"x": lambda v: v[..., 0], "y": lambda v: v[:, :, :, 0, :], "z": lambda v: v[:, :, 0]}[direction](volume)


def draw_step(seed: int, step: int, size: int) -> tuple[str, tuple[int, int, int]]:
    """Step `step`'s direction and slab origin, a function of (seed, step) alone (resumable)."""
    g = torch.Generator().manual_seed(TRAIN_SEED_OFFSET + seed * 1_000_003 + step)
    direction = DIRECTIONS[int(torch.randint(3, (1,), generator=g))]
    place = tuple(int(v) for v in torch.randint(-PLACE, PLACE - size, (3,), generator=g))
    return direction, place


def train_solid(run: SolidRun, progress: StepProgress | None = None) -> TrainReport:
    """Train a SolidNetwork on its exemplars' slices and save it (safetensors + manifest) to `output`."""
    data, arch, spec, schedule, output = run.data, run.network, run.objective, run.schedule, run.output
    iters, batch, lr, seed, size = schedule.iters, schedule.batch, schedule.lr, schedule.seed, data.size
    if schedule.nproc not in (None, 1):
        raise TexportError("solid networks train on one process")
    out = check_run(schedule, output)
    if size < 16:
        raise TexportError(f"the training slice side must be at least 16, got {size}")
    if arch.scales < 1 or arch.width < 1 or arch.noise_channels < 1:
        raise TexportError(f"scales, width and noise channels must be positive, got {arch.scales}, {arch.width}, "
                           f"{arch.noise_channels}")
    paths = data.paths()
    exemplars = {d: load_exemplar(p) for d, p in paths.items()}
    dev = resolve_device(schedule.device)
    objectives: dict[str, object] = {}
    for d in DIRECTIONS:  # one descriptor; an exemplar shared by directions has one objective
        same = next((e for e in objectives if paths[e] == paths[d]), None)
        if same is not None:
            objectives[d] = objectives[same]
            continue
        first = next(iter(objectives.values()), None)
        objectives[d] = build_objective(exemplars[d].to(dev), spec, device=dev,
                                        descriptor=first.descriptor if first is not None else None)
    objective_x = objectives["x"]
    torch.manual_seed(seed)
    net = SolidNetwork(arch.scales, arch.noise_channels, arch.width).to(dev).train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    manifest_base = {
        "kind": SOLID,
        "name": output.name or out.stem,
        "architecture": net.config(),
        "size_multiple": net.size_multiple,
        "noise": noise_record(net.input_channels, dimensions="3: (seed + item, channel, z, y, x)"),
        "texture": image_record(paths["x"], exemplars["x"]),
        "textures": {d: image_record(p, exemplars[d]) for d, p in paths.items()},
        "slices": "x: v[:, :, x] rows z, columns y; y: v[:, y, :] rows z, columns x; z: v[z, :, :] rows y, columns x",
        "descriptor": objective_x.descriptor.identity,
        "objective": objective_x.spec.as_dict(),
    }
    settings = {"planned_iterations": iters, "batch": batch, "size": size, "lr": lr, "seed": seed}
    log, done, seconds_before = LossLog(), 0, 0.0
    if output.resume:
        state, manifest = load_checkpoint(out, kind=SOLID)
        previous = manifest.get("training", {})
        check_same_run(out, manifest, settings, manifest_base, ("architecture", "textures", "descriptor", "objective"))
        if previous.get("batchnorm", "").startswith("recalibrated"):
            raise TexportError(f"cannot resume {out}: it is a finished model (its BatchNorm statistics were recalibrated)")
        check_state(out, net, state)
        done = int(load_optimizer_state(state_path(out), opt, OPTIMIZER_STATE)["step"])
        log, seconds_before = LossLog(previous), float(previous.get("seconds", 0.0))
    more = {d: exemplars[d] for d in ("y", "z") if paths[d] != paths["x"]}
    start = time.perf_counter()

    def save(interrupted: bool, final: bool = False) -> None:
        manifest = dict(manifest_base, training=dict(
            settings, iterations=done, schedule="x0.7 at iters/2 then every iters/10 (Ulyanov et al. 2016, scaled)",
            optimizer="adam", device=dev.type, precision=objective_x.descriptor.precision,
            sampling="single-slice: one random direction per step, batch slices of size x size at one random place",
            seconds=round(seconds_before + time.perf_counter() - start, 1),
            batchnorm="recalibrated over 32 fresh windows" if final else "running averages (intermediate checkpoint)",
            interrupted=interrupted, **log.record(), **({"finished_early": True} if final and done < iters else {})))
        save_checkpoint(out, net.state_dict(), manifest, exemplar=exemplars["x"], more_exemplars=more)
        if final:
            state_path(out).unlink(missing_ok=True)
        else:
            save_optimizer_state(state_path(out), opt, done, OPTIMIZER_STATE, {"model": out.name})

    interrupted = False
    try:
        while done < iters and not output.finish:
            step = done
            for group in opt.param_groups:
                group["lr"] = learning_rate(step, iters, lr)
            direction, place = draw_step(seed, step, size)
            origin, thin = slice_window(direction, place, size)
            noise_seed = TRAIN_SEED_OFFSET + seed * iters * batch + step * batch
            image = as_slice(net.window(noise_seed, origin, thin, batch=batch), direction)
            terms = objectives[direction](image)
            value = terms["total"].mean()
            opt.zero_grad(set_to_none=True)
            value.backward()
            opt.step()
            done = step + 1
            log.add(done, {k: float(v.detach().mean()) for k, v in terms.items()})
            if progress is not None:
                progress(done, log.loss())
            if schedule.checkpoint_every and done % schedule.checkpoint_every == 0 and done < iters:
                save(interrupted=False)
    except KeyboardInterrupt:
        interrupted = True
    if interrupted and done < iters and not output.finish:
        save(interrupted=True)
    else:
        recalibrate(net, seed, min(size, 32), batch)
        save(interrupted, final=True)
    return TrainReport(out, done, iters, seconds_before + time.perf_counter() - start, log.loss(), log.terms(),
                       interrupted, log.history)


@torch.no_grad()
def recalibrate(net: SolidNetwork, seed: int, side: int, batch: int, batches: int = 32) -> None:
    """BatchNorm's statistics averaged over fresh cubes of the volume ("precise BN", as
    texport.training.texnet.recalibrate_batchnorm): the running averages trail the weights."""
    def forward(i: int) -> None:
        place = draw_step(seed + 7919, i, side)[1]
        net.window(TRAIN_SEED_OFFSET // 2 + seed * 4096 + i * batch, place, (side, side, side), batch=batch)

    precise_batchnorm(net, forward, batches)


@torch.no_grad()
def preview_sheet(network: SolidNetwork, exemplars: list[torch.Tensor], side: int = 64, seed: int = 0) -> torch.Tensor:
    """Exemplars (x, y, z directions) in the first row; the slices normal to x, y and z through the
    middle of a side^3 volume (seed 0) and a cube with a corner cut away, carved from it, in the second."""
    volume = network.window(seed, (0, 0, 0), (side, side, side))[0].float().cpu()  # [3, D, H, W]
    m = side // 2
    slices = [volume[:, :, :, m], volume[:, :, m, :], volume[:, m]]
    carved = render_carved(volume.permute(1, 2, 3, 0).numpy(), "cube", 256)
    return stack_rows([side_by_side(exemplars, height=128),
                       side_by_side([*slices, torch.from_numpy(carved).permute(2, 0, 1)], height=128)])


def write_preview(model_path: Path, side: int = 64) -> Path:
    """MODEL.png beside a trained solid network: its exemplars, three slices and a carved cube (preview_sheet)."""
    loaded = load_solid(model_path)
    paths = [loaded.manifest["textures"][d]["name"] for d in DIRECTIONS]
    stored = {d: load_stored_exemplar(model_path, "" if d == "x" else d) for d in DIRECTIONS}
    exemplars = [stored[d] if stored[d] is not None else stored["x"] for d in DIRECTIONS]
    shown = exemplars[:1] if len(set(paths)) == 1 else exemplars
    preview = model_path.with_suffix(".png")
    save_image(preview_sheet(loaded.network, shown, side), preview)
    return preview
