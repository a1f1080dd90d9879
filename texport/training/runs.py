"""What every training run shares (texture, style and ProPO networks): the run spec's common parts,
the checks before any work, the resume checks, the manifest's shared records, the loss log, the
report, and the optimizer state beside the model.

A run is described by one spec per kind (TexnetRun, PropoRun, StyleRun in their trainers' modules),
made of parts: the data, the network, the objective (texport.objectives.objective.ObjectiveSpec,
its loss included), the Schedule and the RunOutput. `build_run` fills a spec from flat settings, as
the CLI and Python callers hold them. A run writes OUTPUT.safetensors (weights + manifest) and
OUTPUT.state.safetensors (Adam's moments, never pickled) at every checkpoint; `--resume` continues
only the same run (check_same_run).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, TypeVar

import torch

import texport.defaults as defaults
from texport.errors import TexportError
from texport.files import sha256_file
from texport.models.checkpoints import load_checkpoint, save_checkpoint
from texport.settings import fill
from texport.training.distributed import check_nproc

HISTORY_EVERY = 10  # iterations per entry of the manifest's loss history
NOISE_CONTRACT = "texport.noise/1 lowbias32 uniform[0,1) 24-bit"  # as the manifest records it
Spec = TypeVar("Spec")


@dataclass(frozen=True)
class Schedule:
    """How long and how fast a run trains, and on what."""
    iters: int  # Adam steps
    batch: int  # samples per step
    lr: float  # the initial learning rate (each trainer has its own decay)
    seed: int = 0  # weights and every draw of the run
    checkpoint_every: int = defaults.CHECKPOINT_EVERY  # steps between checkpoints (0: only at the end)
    device: str = "auto"
    nproc: int | None = None  # training processes sharing each batch (None: one, or torchrun's)


@dataclass(frozen=True)
class RunOutput:
    """Where a run writes its model, and whether it continues a stopped one."""
    path: Path  # OUTPUT.safetensors
    resume: bool = False  # continue OUTPUT from its last checkpoint (every setting the same)
    finish: bool = False  # with resume: end the stopped run where it is, as a finished model
    name: str | None = None  # the model's name in its manifest (default: the file's stem)


def build_run(spec_class: type[Spec], settings: dict, defaults_of_kind: dict) -> Spec:
    """A run spec from flat settings ({"iters": 10, "loss": "sw+color", ...}): each setting goes to the
    part of `spec_class` that has a field of that name (texport.settings.fill); a part's missing fields
    take the kind's defaults, then the part's own."""
    return spec_class(**fill(typing.get_type_hints(spec_class), settings, defaults_of_kind))


def check_run(schedule: Schedule, output: RunOutput) -> Path:
    """The checks every training run makes before any work: the schedule, the output path, and that a
    resumed run has its files. nproc must divide the batch."""
    if output.finish and not output.resume:
        raise TexportError("finishing ends a stopped run: resume it to finish it")
    if schedule.iters < 1 or schedule.batch < 1:
        raise TexportError(f"training iterations and batch must be positive (got {schedule.iters}, {schedule.batch})")
    check_nproc(schedule.nproc, schedule.batch)
    if schedule.lr <= 0:
        raise TexportError(f"the learning rate must be positive, got {schedule.lr}")
    out = Path(output.path)
    if out.suffix != ".safetensors":
        raise TexportError(f"a model is written as a .safetensors file, got {out.name}")
    if not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise TexportError(f"output folder does not exist: {out.parent}")
    if output.resume and not (out.is_file() and state_path(out).is_file()):
        raise TexportError(f"nothing to resume: {out} and {state_path(out).name} must both exist")
    return out


def noise_record(channels: int, **extra: str) -> dict:
    """The manifest's record of the noise a network reads (texport.textures.noise's contract)."""
    return {"contract": NOISE_CONTRACT, "channels": channels, "batch_seed": "seed + item", **extra}


def image_record(path: Path, image, **extra) -> dict:
    """The manifest's record of an exemplar or style image: its name, file, sha256 and size."""
    return {"name": path.stem, "file": path.name, "sha256": sha256_file(path),
            "size": [image.shape[-1], image.shape[-2]], **extra}


class LossLog:
    """A training run's losses: the recent values of every term, the manifest's history (the mean of
    every HISTORY_EVERY iterations) and what a resumed run carries over from its manifest."""

    KEEP, RECENT = 200, 20

    def __init__(self, previous: dict | None = None):
        previous = previous or {}
        self.history: list[float] = list(previous.get("loss_history", []))
        # until new iterations replace them: the stopped run's last values
        self.terms_seen: dict[str, list[float]] = {k: [v] for k, v in previous.get("final_terms", {}).items()}
        self.totals: list[float] = [previous["final_loss"]] if "final_loss" in previous else []

    def add(self, done: int, logged: dict[str, float]) -> None:
        """Iteration `done`'s term means ({term: value}, with 'total')."""
        self.totals.append(logged["total"])
        del self.totals[:-self.KEEP]
        for k, v in logged.items():
            self.terms_seen.setdefault(k, []).append(v)
            del self.terms_seen[k][:-self.KEEP]
        if done % HISTORY_EVERY == 0:
            self.history.append(round(sum(self.totals[-HISTORY_EVERY:]) / len(self.totals[-HISTORY_EVERY:]), 6))

    def loss(self) -> float:
        """The mean total over the last RECENT iterations (nan before any)."""
        recent = self.totals[-self.RECENT:] or [float("nan")]
        return sum(recent) / len(recent)

    def terms(self) -> dict[str, float]:
        return {k: sum(v[-self.RECENT:]) / len(v[-self.RECENT:]) for k, v in self.terms_seen.items()}

    def record(self) -> dict:
        """What a manifest's training record keeps of it."""
        return {"final_loss": self.loss(), "final_terms": self.terms(), "loss_history": self.history,
                "loss_history_every": HISTORY_EVERY}


@dataclass
class TrainReport:
    path: Path
    iterations: int
    planned: int
    seconds: float
    loss: float  # mean objective over the last iterations
    terms: dict  # each term's recent mean (ProPO: each term's list over the stages)
    interrupted: bool = False
    history: list[float] = field(default_factory=list)
    rank: int = 0  # a run on several processes: rank 0 writes and reports, the others return this too


def check_same_run(out: Path, manifest: dict, settings: dict, manifest_base: dict, keys: Sequence[str]) -> None:
    """A resumed run must be the stopped one: the same training settings and the same manifest `keys`."""
    previous = manifest.get("training", {})
    for key, value in settings.items():
        if previous.get(key) != value:
            raise TexportError(f"cannot resume {out}: it was trained with {key}={previous.get(key)!r}, not {value!r}")
    for key in keys:
        if manifest.get(key) != manifest_base[key]:
            raise TexportError(f"cannot resume {out}: its {key} differs from this run's ({str(manifest.get(key))[:60]})")


def state_path(output: Path) -> Path:
    """Where a run keeps its optimizer state beside the model: OUTPUT.state.safetensors."""
    return output.with_name(output.stem + ".state.safetensors")


def save_optimizer_state(path: Path, opt: torch.optim.Optimizer, step: int, kind: str, extra: dict) -> None:
    """Adam's moments as safetensors, its settings and the step in the manifest (never pickled)."""
    sd = opt.state_dict()
    tensors = {f"{i}.{k}": v for i, s in sd["state"].items() for k, v in s.items() if torch.is_tensor(v)}
    save_checkpoint(path, tensors, {"kind": kind, "step": step, "param_groups": sd["param_groups"], **extra})


def load_optimizer_state(path: Path, opt: torch.optim.Optimizer, kind: str) -> dict:
    """Load what save_optimizer_state wrote into opt; returns its manifest (with 'step')."""
    tensors, manifest = load_checkpoint(path, kind=kind)
    state: dict = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    try:
        opt.load_state_dict({"state": state, "param_groups": manifest["param_groups"]})
    except (KeyError, ValueError) as exc:
        raise TexportError(f"{path} does not match this model's optimizer ({exc})") from None
    return manifest
