"""Batches from a job file (`texport batch JOBS.csv|JOBS.json`): one PNG per row.

A job names a model, a target texture (ProPO models only), a size, a seed and an output PNG, and
may say `tileable`. The whole file is checked before any work starts, with one-line errors that
name the row, so a typo on row 9,000 stops the batch at once rather than hours in. Relative paths
are taken from the job file's folder, so a job file moves together with its textures and outputs.

Resuming: every output carries its job in a PNG tEXt chunk (`texport-job`: the SHA-256 of the model
file and of the texture file, the size, seed, tileability, backend, precision and bit depth). A rerun
skips an output whose chunk matches its job and redoes any other, so a stopped batch resumes where it
stopped, and a changed row (another seed, a retrained model, an edited texture) is made again.
Outputs are written atomically, so a stopped batch leaves only complete files.

`render` makes an output's bytes both here and on a Ray worker (texport.cluster): a batch's
files do not depend on where it ran.
"""

from __future__ import annotations

import csv
import json
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from texport.errors import TexportError
from texport.files import sha256_file, write_bytes_atomic
from texport.models.formats import format_of
from texport.models.handle import Model, open_model
from texport.progress import CountProgress
from texport.runtime.backends import backend_spec, choose_backend, open_backend
from texport.runtime.sampling import sample_with
from texport.textures.images import add_png_text, encode_png, load_image, read_png_text, resolve_texture
from texport.textures.sizes import SizePlan, plan_size

JOB_KEY = "texport-job"  # the PNG tEXt keyword that records an output's job
COLUMNS = ("model", "texture", "size", "seed", "output", "tileable")
REQUIRED = ("model", "size", "seed", "output")



@dataclass(frozen=True)
class Render:
    """What a worker needs to make one output, besides the model and texture: small and picklable."""
    plan: SizePlan
    seed: int
    tileable: bool
    bits: int
    record: str  # the job as written into the output's tEXt chunk (JSON)


@dataclass(frozen=True)
class Job:
    where: str  # "jobs.csv line 3", for messages
    model: Model
    backend: str  # the backend spec, resolved ("auto" is decided once, on the driver)
    fp16: bool
    texture: Path | None
    output: Path
    render: Render


def _sha256(path: Path, cache: dict) -> str:
    key = str(path.resolve())
    if key not in cache:
        cache[key] = sha256_file(path)
    return cache[key]


def _rows(path: Path) -> list[tuple[str, dict]]:
    """(where, fields) for each row of a .csv (with a header) or .json (a list of objects) job file."""
    if not path.is_file():
        raise TexportError(f"no such job file: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f, skipinitialspace=True)
                rows = []
                for fields in reader:
                    if None in fields:
                        raise TexportError(f"{path.name} line {reader.line_num}: more values than columns")
                    if not any((v or "").strip() for v in fields.values()):
                        continue  # a blank line
                    rows.append((f"{path.name} line {reader.line_num}", fields))
                header = reader.fieldnames or []
        elif suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
                raise TexportError(f"{path.name} must hold a list of job objects")
            rows = [(f"{path.name} item {n}", item) for n, item in enumerate(data, 1)]
            header = sorted({k for item in data for k in item})
        else:
            raise TexportError(f"a job file is .csv or .json, got {path.name}")
    except (UnicodeDecodeError, csv.Error, json.JSONDecodeError) as exc:
        raise TexportError(f"{path.name} cannot be read as {suffix[1:].upper()}: {' '.join(str(exc).split())}") from None
    unknown = [c for c in header if c not in COLUMNS]
    if unknown:
        raise TexportError(f"{path.name}: unknown column {unknown[0]!r} (columns: {', '.join(COLUMNS)})")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise TexportError(f"{path.name}: no {missing[0]!r} column (required: {', '.join(REQUIRED)})")
    if not rows:
        raise TexportError(f"{path.name} holds no jobs")
    return rows


def _flag(value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value if value is not None else "").strip().lower()
    if text in ("", "0", "false", "no"):
        return False
    if text in ("1", "true", "yes"):
        return True
    raise TexportError(f"tileable must be true or false, got {value!r}")


def load_jobs(path: str | os.PathLike, backend: str | None = None, device: str = "auto", fp16: bool = False,
              bits: int = 8) -> list[Job]:
    """Read and check a whole job file (one-line errors naming the row); every job's record is fixed here."""
    path = Path(path)
    base = path.parent
    if bits not in (8, 16):
        raise TexportError(f"bits must be 8 or 16, got {bits}")
    models: dict[str, Model] = {}
    hashes: dict[str, str] = {}
    outputs: dict[Path, str] = {}
    jobs = []
    for where, fields in _rows(path):
        try:
            def value(key: str) -> str:
                return "" if fields.get(key) is None else str(fields[key]).strip()

            name = value("model")
            if not name:
                raise TexportError("no model")
            if (base / name).exists() or format_of(name) is not None or os.sep in name:
                name = str(base / name)  # a file (an absolute path stays as it is); else a shipped model's name
            if name not in models:
                models[name] = open_model(name)
            model = models[name].require_generator()
            tileable = _flag(fields.get("tileable"))
            plan = plan_size(value("size"), model.size_multiple, model.min_side, tileable)
            try:
                seed = int(value("seed"))
            except ValueError:
                raise TexportError(f"seed must be an integer, got {value('seed')!r}") from None
            texture = None
            if value("texture"):
                texture = base / value("texture")
                texture = texture if texture.exists() else resolve_texture(value("texture"))
                if texture.is_dir():
                    raise TexportError(f"expected an image file, got a folder: {texture}")
            if model.is_propo and texture is None:
                raise TexportError(f"{model.path.name} is a ProPO model: it needs a texture")
            if not model.is_propo and texture is not None:
                raise TexportError(f"{model.path.name} is a texture network trained on one texture: leave texture empty")
            output = base / value("output")
            if not value("output") or output.suffix.lower() != ".png":
                raise TexportError(f"output must be a .png file, got {value('output')!r}")
            if not output.parent.is_dir():
                raise TexportError(f"output folder does not exist: {output.parent}")
            if output.is_dir():
                raise TexportError(f"output is a folder: {output}")
            first = outputs.setdefault(output.resolve(), where)
            if first != where:
                raise TexportError(f"output {value('output')} is also {first}'s")
            spec = backend_spec(*choose_backend(model, backend, device))
            record = json.dumps({"model": _sha256(model.path, hashes),
                                 "texture": _sha256(texture, hashes) if texture is not None else None,
                                 "size": f"{plan.width}x{plan.height}", "seed": seed, "tileable": tileable,
                                 "backend": spec, "fp16": fp16, "bits": bits}, sort_keys=True, separators=(",", ":"))
        except TexportError as exc:
            raise TexportError(f"{where}: {exc}") from None
        jobs.append(Job(where, model, spec, fp16, texture, output, Render(plan, seed, tileable, bits, record)))
    return jobs


def is_done(job: Job) -> bool:
    """Whether the job's output exists and records this very job."""
    return read_png_text(job.output, JOB_KEY) == job.render.record


def render(backend, job: Render, texture: torch.Tensor | None) -> bytes:
    """One output's PNG bytes, its job in the tEXt chunk."""
    image = sample_with(backend, job.plan, job.seed, 1, texture, tileable=job.tileable)
    return add_png_text(encode_png(image, job.bits), JOB_KEY, job.record)


class Recent(OrderedDict):
    """The few most recently used items (opened backends, loaded textures), so a batch that moves
    between models does not reopen one per job, and one that uses many does not hold them all."""

    def __init__(self, size: int = 2):
        super().__init__()
        self.size = size

    def get_or(self, key, make: Callable):
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = make()
        self[key] = value
        while len(self) > self.size:
            self.popitem(last=False)
        return value


def pending(jobs: list[Job]) -> tuple[list[Job], dict]:
    """(the jobs still to do: output missing or recording another job, counts so far: jobs, skipped, written)."""
    todo = [job for job in jobs if not is_done(job)]
    return todo, {"jobs": len(jobs), "skipped": len(jobs) - len(todo), "written": 0}


def run_batch(jobs: str | os.PathLike | list[Job], backend: str | None = None, device: str = "auto", fp16: bool = False,
              bits: int = 8, progress: CountProgress | None = None) -> dict:
    """Make every job's output that is missing or records another job, in this process (a job file is
    loaded with `backend`, `fp16` and `bits`; texport.scale.cluster.batch_on_ray runs the same jobs on
    Ray). Returns counts: jobs, skipped (already done), written."""
    if not isinstance(jobs, list):
        jobs = load_jobs(jobs, backend, device, fp16, bits)
    todo, summary = pending(jobs)
    opened, textures = Recent(), Recent()
    for n, job in enumerate(todo, 1):
        job_backend = opened.get_or((str(job.model.path), job.backend, job.fp16),
                                    lambda: open_backend(job.model, job.backend, device, job.fp16))
        texture = None if job.texture is None else textures.get_or(str(job.texture), lambda: load_image(job.texture))
        write_bytes_atomic(job.output, render(job_backend, job.render, texture))
        summary["written"] = n
        if progress is not None:
            progress(1, len(todo))
    return summary
