"""Synthesis on a Ray cluster: `texport tile --ray ADDRESS` and `texport batch --ray ADDRESS`.

Users outgrow one machine with large tiles and large batches. The bands of a tile and the jobs of a
batch are independent, so they are tasks on an existing engine, Ray (`pip install 'texport[ray]'`),
which brings the scheduling, worker restarts, task retries and the object store; texport adds only
what is specific to textures.

- ADDRESS: anything `ray.init` takes (`auto`, `ray://host:port`) or `local:N`, a private cluster of
  N workers on this machine for the run (on 127.0.0.1 only, no dashboard, no usage statistics),
  shut down after it. A process already connected (a caller's own `ray.init`) is used as it is.
- Workers: one actor per `threads` CPUs of the cluster, each with `threads` torch / onnxruntime
  threads. An actor opens a model on its first task that needs it and keeps the last few, so a task
  costs its compute and its transfer, not a model load. Shipped models are opened by name (texport is
  installed on every node; the file's SHA-256 is checked), other model files travel once through the
  object store.
- Tiles: a band (a row of tiles) is a task. A texture network's band comes back as finished PNG
  scanlines; a ProPO band as its weighted sums, cross-faded on the driver (tiling.assemble). Batches:
  a job is a task and comes back as the PNG file's bytes. The driver takes results in order, with at
  most `inflight` tasks submitted and not yet taken, so its memory stays bounded as on one machine (a
  band or an image at a time), and it alone writes the output, atomically: a stopped run (Ctrl-C,
  SIGTERM) leaves no partial file.
- Same code, same bytes: workers run tiling.compute_band and batch.render, the functions the
  single-process paths run, so at the same thread count per worker on the same machine the output
  is byte for byte the single-process one: `--ray-threads 1`, the default, against OMP_NUM_THREADS=1.
  Other thread counts: a few pixels one level apart; across machines: within the backends' parity tolerance.
- Failures: an actor whose process dies is restarted (MAX_RESTARTS) and its unfinished tasks are
  retried (MAX_TASK_RETRIES); the restarted actor reopens its model on its next task.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch

from texport.errors import TexportError
from texport.export.cache import cached_onnx
from texport.files import cache_folder, sha256_file, write_bytes_atomic
from texport.models.handle import open_model, shipped_models
from texport.progress import CountProgress
from texport.runtime.backends import backend_spec, choose_backend, open_backend
from texport.scale.batch import Recent, pending
from texport.scale.batch import render as make
from texport.scale.connection import Cluster, connect, import_ray
from texport.scale.tiling import Sums, TileRequest, assemble, compute_band, crossfade_head, plan_tiles, write_bands
from texport.textures.images import load_image, png_rows

MAX_RESTARTS = 3  # an actor's process may die this many times in one run
MAX_TASK_RETRIES = 3  # and each of its tasks may be retried this many times
RECENT = 2  # models (and targets) an actor keeps open
FAULT_ENV = "TEXPORT_RAY_TEST_FAULTS"  # tests only: see _test_fault


# -- what travels to the workers ------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A model as a worker opens it: a shipped model's name, or its file's bytes in the object store."""
    sha256: str
    file_name: str
    shipped: str | None
    data: Any  # an ObjectRef of the file's bytes (None for a shipped model): nested, so fetched only when opened
    backend: str
    device: str
    fp16: bool
    low_memory: bool

    @property
    def key(self) -> tuple:
        return self.sha256, self.backend, self.device, self.fp16, self.low_memory


@dataclass(frozen=True)
class Target:
    """A ProPO target texture in the object store, fetched by a worker when it first needs it."""
    key: str
    data: Any  # an ObjectRef of the [1, 3, h, w] float32 array


def _source(ray, model, backend: str | None, device: str, fp16: bool, low_memory: bool, refs: dict) -> Source:
    """The Source of a model handle, its bytes put in the object store once per run (`refs`)."""
    if model.format == "engine":
        raise TexportError("--ray runs texport models and .onnx graphs: a TensorRT engine is built for one GPU")
    name, options = choose_backend(model, backend, device)
    spec = backend_spec(name, options)
    if name in ("onnxruntime", "openvino") and model.format == "texport":
        cached_onnx(model, fp16)  # exported once here, not by every worker on this machine at once
    sha = sha256_file(model.path)
    shipped = next((n for n, p in shipped_models().items() if p.resolve() == model.path.resolve()), None)
    if shipped is None and sha not in refs:
        refs[sha] = ray.put(model.path.read_bytes())
    return Source(sha, model.path.name, shipped, None if shipped else refs[sha], spec, device, fp16, low_memory)


def _target(ray, texture: torch.Tensor) -> Target:
    array = texture.detach().float().cpu().contiguous().numpy()
    return Target(hashlib.sha256(array.tobytes()).hexdigest(), ray.put(array))


# -- the worker -----------------------------------------------------------------------------------


def _test_fault() -> None:
    """Tests only: when $TEXPORT_RAY_TEST_FAULTS names a folder holding a file `exit-once`, the first
    worker to take it away exits in the middle of its task, as a killed worker would, so a test can
    check that Ray restarts the worker and retries the task. Unset, this costs one lookup."""
    folder = os.environ.get(FAULT_ENV)
    if not folder:
        return
    try:
        os.unlink(os.path.join(folder, "exit-once"))
    except FileNotFoundError:
        return
    Path(folder, f"exited-{os.getpid()}").touch()
    os._exit(1)


class Worker:
    """A Ray actor: opens models and targets when first needed, keeps the last few, computes tasks."""
    def __init__(self, threads: int):
        torch.set_num_threads(threads)
        self.threads = threads
        self.backends, self.targets = Recent(RECENT), Recent(RECENT)
        self.busy, self.tasks = 0.0, 0

    def _backend(self, source: Source):
        return self.backends.get_or(source.key, lambda: self._open(source))

    def _open(self, source: Source):
        import ray

        if source.shipped is not None:
            path = shipped_models().get(source.shipped)
            if path is None or sha256_file(path) != source.sha256:
                raise TexportError(f"the Ray worker on {os.uname().nodename} has another {source.shipped!r} model than "
                                   "the driver (install the same texport on every node)")
        else:
            path = cache_folder("ray") / source.sha256[:16] / source.file_name
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                write_bytes_atomic(path, ray.get(source.data))
        return open_backend(open_model(path), source.backend, source.device, source.fp16, low_memory=source.low_memory)

    def _texture(self, target: Target | None) -> torch.Tensor | None:
        import ray

        if target is None:
            return None
        return self.targets.get_or(target.key, lambda: torch.from_numpy(ray.get(target.data).copy()))

    def ready(self, source: Source | None = None) -> dict:
        """Opens the model (the run's start waits for every worker's) and says where the worker runs."""
        described = self._backend(source).describe() if source is not None else None
        return {"host": os.uname().nodename, "pid": os.getpid(), "threads": torch.get_num_threads(), "backend": described}

    def band(self, source: Source, plan, y0: int, target: Target | None, bits: int = 8):
        """One band (tiling.compute_band): a texture network's PNG scanlines, or ProPO's (sums, weights)."""
        backend, texture = self._backend(source), self._texture(target)
        _test_fault()
        start = time.perf_counter()
        result = compute_band(backend, plan, y0, texture)
        out = (result[0].numpy(), result[1].numpy()) if plan.propo else png_rows(result, bits)
        self._count(start)
        return out

    def job(self, source: Source, render, target: Target | None) -> bytes:
        """One batch job's PNG bytes (batch.render)."""
        backend, texture = self._backend(source), self._texture(target)
        _test_fault()
        start = time.perf_counter()
        data = make(backend, render, texture)
        self._count(start)
        return data

    def _count(self, start: float) -> None:
        self.busy += time.perf_counter() - start
        self.tasks += 1

    def stats(self) -> tuple[float, int]:
        """Seconds spent computing tasks and their number, since the actor (re)started."""
        return self.busy, self.tasks


@contextlib.contextmanager
def _workers(ray, cluster: Cluster, threads: int, tasks: int) -> Iterator[list]:
    """One actor per `threads` CPUs of the cluster (no more than there are tasks), for the block. They
    are killed after it; after an error or interrupt on a private cluster, the shutdown that follows
    does it without Ray's notices of every queued task it would otherwise retry."""
    if cluster.cpus < threads:  # an actor that never fits would wait forever
        raise TexportError(f"the Ray cluster has {cluster.cpus} CPUs, fewer than the {threads} threads asked per worker")
    count = min(tasks, cluster.cpus // threads)
    actor = ray.remote(Worker).options(num_cpus=threads, max_restarts=MAX_RESTARTS, max_task_retries=MAX_TASK_RETRIES,
                                       scheduling_strategy="SPREAD")
    actors = [actor.remote(threads) for _ in range(count)]
    try:
        yield actors
    except BaseException:
        if not cluster.local:
            for a in actors:
                ray.kill(a)
        raise
    for a in actors:
        ray.kill(a)


def _get(ray, ref):
    """ray.get, with a worker's TexportError as a one-line TexportError, and a worker that kept dying as one."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, TexportError):
            raise TexportError(str(cause)) from None
        raise
    except ray.exceptions.RayActorError as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        raise TexportError(f"a Ray worker kept dying ({MAX_RESTARTS} restarts): {lines[0] if lines else exc}") from None


def _in_order(ray, actors: list, calls: Iterable[Callable], inflight: int,
              done: Callable[[], None] | None = None, waited: list[float] | None = None) -> Iterator:
    """Submits each call (actor -> ObjectRef) to the actor with the fewest unfinished tasks, keeping at most
    `inflight` submitted and not yet taken; yields the refs in submission order, each once it is ready.
    `done` is called as each task finishes, in whatever order they finish (the progress bar); the
    seconds spent waiting for tasks are added to waited[0] (the rest of the driver's time is its own work)."""
    calls = iter(calls)
    queue: deque = deque()  # (ref, actor index), in submission order
    load = [0] * len(actors)
    finished: set = set()

    def fill() -> None:
        while len(queue) < inflight:
            call = next(calls, None)
            if call is None:
                return
            i = min(range(len(actors)), key=load.__getitem__)
            queue.append((call(actors[i]), i))
            load[i] += 1

    fill()
    while queue:
        head = queue[0][0]
        while head not in finished:
            waiting = {ref: i for ref, i in queue if ref not in finished}
            start = time.perf_counter()
            ready, _ = ray.wait(list(waiting), num_returns=1)
            if waited is not None:
                waited[0] += time.perf_counter() - start
            for ref in ready:
                finished.add(ref)
                load[waiting[ref]] -= 1
                if done is not None:
                    done()
        queue.popleft()
        finished.discard(head)
        yield head
        fill()


def _finish(ray, actors: list, summary: dict, started: float, workers: list[dict], work: tuple[float, float]) -> dict:
    """The run's summary; work = (when the driver began taking results, seconds it then spent waiting)."""
    busy = ray.get([a.stats.remote() for a in actors])
    summary.update({"driver_seconds": time.perf_counter() - work[0] - work[1], "workers": len(actors), "threads": workers[0]["threads"], "hosts": len({w["host"] for w in workers}),
                    "backend": workers[0]["backend"], "worker_seconds": sum(b for b, _ in busy),
                    "tasks": sum(n for _, n in busy), "seconds": time.perf_counter() - started})
    return summary


# -- the two commands -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RayWorkers:
    """Where and how a run computes on Ray: the cluster (scale.connection), each worker's threads (and
    CPUs), at most `inflight` tasks submitted and not yet taken (default two per worker), the device."""
    address: str
    threads: int = 1
    inflight: int | None = None
    device: str = "auto"


def tile_on_ray(model, output: str | os.PathLike, request: TileRequest, workers: RayWorkers,
                texture: torch.Tensor | None = None, backend: str | None = None, fp16: bool = False,
                progress: CountProgress | None = None) -> dict:
    """tiling.tile_image on a Ray cluster: the same PNG or DDS, its bands computed by workers (one band
    per task; the driver builds a DDS's blocks and mips as the bands come). Returns tile_image's
    summary plus the cluster's: workers, threads, hosts, backend, tasks, startup and total seconds,
    worker seconds (summed over workers) and driver seconds (taking results and writing the file, not
    waiting)."""
    ray = import_ray()
    handle = open_model(model)
    plan = plan_tiles(handle, request, texture is not None)
    bits = request.bits
    if bits not in (8, 16):
        raise TexportError(f"bits must be 8 or 16, got {bits}")
    started = time.perf_counter()
    with connect(workers.address, workers.threads) as cluster:
        source = _source(ray, handle, backend, workers.device, fp16, True, {})
        target = _target(ray, texture) if texture is not None else None
        with _workers(ray, cluster, workers.threads, len(plan.bands)) as actors:
            ready = [_get(ray, r) for r in [a.ready.remote(source) for a in actors]]
            summary = {**plan.summary(), "startup_seconds": time.perf_counter() - started}
            per_band = len(plan.columns)

            def done() -> None:
                if progress is not None:
                    progress(per_band, plan.tiles)

            order = list(plan.bands)
            if plan.wraps_rows:  # the last band first: the top band's cross-fade needs it (reused at the end)
                order = [order[-1], *order[:-1]]
            calls = [lambda a, y0=y0: a.band.remote(source, plan, y0, target, bits) for y0 in order]
            waited = [0.0]
            refs = _in_order(ray, actors, calls, workers.inflight or 2 * len(actors), done, waited)
            def sums(ref) -> Sums:
                acc, wsum = _get(ray, ref)
                return torch.from_numpy(acc.copy()), torch.from_numpy(wsum.copy())

            def bands():  # texture networks: finished scanlines; ProPO: sums, cross-faded here
                if not plan.propo:
                    yield from (_get(ray, ref) for ref in refs)
                    return
                head, rest = None, map(sums, refs)
                if plan.wraps_rows:
                    last = next(refs)
                    head = tuple(t.clone() for t in crossfade_head(plan, sums(last)))
                    rest = map(sums, itertools.chain(refs, [last]))
                yield from assemble(plan, rest, head)

            taking = time.perf_counter()
            summary["path"] = write_bands(output, request, bands())
            return _finish(ray, actors, summary, started, ready, (taking, waited[0]))


def batch_on_ray(jobs: list, workers: RayWorkers, progress: CountProgress | None = None) -> dict:
    """texport.scale.batch's jobs on a Ray cluster: the ones still to do (batch.pending), each a task whose
    PNG bytes the driver writes (atomically, in job order, at most `inflight` out, default two per
    worker). Returns batch.run_batch's counts and, if any job ran, the cluster's summary, as tile_on_ray's."""
    jobs, counts = pending(jobs)
    if not jobs:
        return counts
    ray = import_ray()
    started = time.perf_counter()
    with connect(workers.address, workers.threads) as cluster:
        refs: dict = {}
        sources = {}
        for job in jobs:  # every model's bytes in the object store once, before any work
            key = (str(job.model.path), job.backend, job.fp16)
            if key not in sources:
                sources[key] = _source(ray, job.model, job.backend, workers.device, job.fp16, False, refs)
        targets = Recent(4)
        with _workers(ray, cluster, workers.threads, len(jobs)) as actors:
            first = sources[(str(jobs[0].model.path), jobs[0].backend, jobs[0].fp16)]
            ready = [_get(ray, r) for r in [a.ready.remote(first) for a in actors]]
            summary = {"startup_seconds": time.perf_counter() - started}

            def done() -> None:
                if progress is not None:
                    progress(1, len(jobs))

            def call(job):
                source = sources[(str(job.model.path), job.backend, job.fp16)]
                target = None if job.texture is None else targets.get_or(
                    str(job.texture), lambda: _target(ray, load_image(job.texture)))
                return lambda a: a.job.remote(source, job.render, target)

            waited, taking = [0.0], time.perf_counter()
            for job, ref in zip(jobs, _in_order(ray, actors, map(call, jobs), workers.inflight or 2 * len(actors), done, waited)):
                write_bytes_atomic(job.output, _get(ray, ref))
            return {**counts, "written": len(jobs), **_finish(ray, actors, summary, started, ready, (taking, waited[0]))}
