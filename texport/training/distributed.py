"""Training on several processes (`texport train texnet|propo --nproc N`, or under `torchrun`).

Data parallelism with torch.distributed's DistributedDataParallel (Li et al. 2020, "PyTorch
Distributed: Experiences on Accelerating Data Parallel Training", VLDB): every process (rank) holds
the whole model, computes the loss of its share of the batch, and DDP averages the gradients across
ranks during the backward pass, so every rank takes the same optimizer step. Ranks talk over gloo
on a CPU and NCCL on GPUs.

Why N ranks train like one process: iteration t's batch of B items is split in equal shares, rank r
taking items r*B/N .. (r+1)*B/N - 1, and every random draw of item i (its noise, its target crop) is
a function of (seed, t, i) alone, so the ranks together draw exactly the batch one process draws.
Each rank's loss is the mean over its B/N items; the average of the N means is the mean over B, and
so is the average of their gradients. Layers that couple the items of a batch must see the whole
batch: texture networks use BatchNorm (Ioffe & Szegedy 2015), whose training statistics
`AllReduceBatchNorm2d` sums across ranks (torch's SyncBatchNorm does so on CUDA only). ProPO has no
such layer (InstanceNorm and every statistic are per image). What is left are rounding differences
(sums in another order), which tests/test_distributed.py bounds.

Processes: `--nproc N` starts N - 1 helpers (multiprocessing, spawn) and this process is rank 0,
which alone shows progress and writes checkpoints (atomically, as one process does). The ranks meet
through a file store in a private temporary folder, and gloo binds to the loopback interface: a run
on one machine opens nothing to the network. On a CPU each rank takes its share of this process's
threads (torch.get_num_threads() / N), so the ranks share the cores instead of each taking them all.
Under `torchrun` (RANK, WORLD_SIZE, LOCAL_RANK set) every process is started by torchrun and the
process group comes from its environment; --nproc is then left out (torchrun's argument parser
would take it for its own --nproc-per-node). One process (--nproc 1, the default) makes no process
group at all: the training code runs as it always has.

Stopping: helpers ignore Ctrl-C (it reaches every process of the terminal); rank 0, interrupted,
saves its checkpoint of the iterations completed, which is the state of every rank since they step
together, and then ends the helpers. A helper that dies makes rank 0's next collective fail; rank 0
then saves likewise and reports the helper in one line. Helpers end themselves if rank 0 disappears.
"""

from __future__ import annotations

import contextlib
import inspect
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from texport.devices import environment
from texport.errors import TexportError

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
JOIN_SECONDS = 60  # how long rank 0 waits for finished helpers to exit before ending them
# What a collective's RuntimeError says when another rank has gone (gloo: "Connection closed by peer").
TRANSPORT_ERRORS = ("connection closed", "connection reset", "broken pipe", "gloo", "nccl")


def launched_by_torchrun() -> bool:
    """Whether torchrun (or another launcher setting its variables) started this process."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def world_size(nproc: int | None) -> int:
    """The number of training processes a run has: --nproc, or that of the group it already runs in."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    if launched_by_torchrun():
        return int(os.environ["WORLD_SIZE"])
    return 1 if nproc is None else nproc


def check_nproc(nproc: int | None, batch: int) -> int:
    """The checks a run on several processes makes before any work; returns the number of processes."""
    if nproc is not None and nproc < 1:
        raise TexportError(f"the number of training processes (--nproc) must be at least 1, got {nproc}")
    world = world_size(nproc)
    if nproc is not None and nproc != world:
        raise TexportError(f"--nproc {nproc} differs from the {world} processes this run was launched with (torchrun)")
    if world > 1 and not dist.is_available():
        raise TexportError("this torch build has no torch.distributed: train with one process")
    if batch % world:
        raise TexportError(f"the batch ({batch}) must be a multiple of the number of training processes ({world}): "
                           "each takes an equal share")
    return world


@dataclass
class Ranks:
    """This process's place in a run on several processes (a run on one process has none: None)."""
    rank: int
    world: int
    local_rank: int
    device: torch.device
    helpers: list = field(default_factory=list)  # rank 0 of a --nproc run: the helper processes
    store: Any = None
    stopping: bool = False
    _batchnorm_group: Any = None

    @property
    def leader(self) -> bool:
        """Rank 0: shows progress and writes every file."""
        return self.rank == 0

    def share(self, batch: int) -> tuple[int, int]:
        """(first item, item count) of this rank's share of a batch."""
        count = batch // self.world
        return self.rank * count, count

    def average(self, values: Sequence[float]) -> list[float]:
        """The mean over ranks of each value (in float64): losses of equal shares average to the batch's."""
        t = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return (t / self.world).tolist()

    def batchnorm_group(self):
        """A process group of its own for BatchNorm statistics, apart from DDP's gradient buckets.
        Every rank must ask for it at the same point of the run (creating a group is collective)."""
        if self._batchnorm_group is None:
            self._batchnorm_group = dist.new_group(list(range(self.world)))
        return self._batchnorm_group

    def wrap(self, module: nn.Module) -> nn.Module:
        """module under DistributedDataParallel. Buffers are not broadcast from rank 0 at every
        forward: BatchNorm's running statistics are computed alike on every rank (AllReduceBatchNorm2d)."""

        ids = [self.device.index] if self.device.type == "cuda" else None
        # newer torch names the option forward_sync_buffers (broadcast_buffers warns); older torch knows the other only
        known = inspect.signature(DistributedDataParallel).parameters
        option = "forward_sync_buffers" if "forward_sync_buffers" in known else "broadcast_buffers"
        return DistributedDataParallel(module, device_ids=ids, **{option: False})

    def stop_others(self) -> None:
        """Rank 0 ends the run early (interrupted): the helpers are ended, not waited for."""
        self.stopping = True

    def lost(self, exc: BaseException) -> TexportError | None:
        """If exc (a RuntimeError) is a collective failing because another rank is gone, the one line
        that says so; None if it is something else (to be raised as it is)."""
        deadline = time.monotonic() + 2.0  # the helper that failed is exiting; the others may still wait
        while True:
            failed = [(rank, p.exitcode) for rank, p in enumerate(self.helpers, start=1) if p.exitcode]
            if failed or not self.helpers or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        for rank, code in failed:
            reason = _stored_error(self.store, rank)
            if not reason:
                reason = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            return TexportError(f"training process {rank} of {self.world} stopped ({reason}); "
                                "the last checkpoint is kept: continue with --resume")
        detail = " ".join(str(exc).split())
        if not (isinstance(exc, getattr(dist, "DistError", ())) or any(t in detail.lower() for t in TRANSPORT_ERRORS)):
            return None
        return TexportError(f"another training process stopped ({detail[:160]}); the last checkpoint is kept: "
                            "continue with --resume")


def role(ranks: Ranks | None, batch: int, device: torch.device) -> tuple[bool, int, int, torch.device]:
    """(leader, first item, item count, device) of this process in a training step of `batch` items:
    the whole batch, on the given device, when the run has one process."""
    if ranks is None:
        return True, 0, batch, device
    first, count = ranks.share(batch)
    return ranks.leader, first, count, ranks.device


@contextlib.contextmanager
def processes(nproc: int | None, device: torch.device, target: Callable, arguments: dict) -> Iterator[Ranks | None]:
    """The processes of one training run; yields this process's Ranks, or None for a single process.

    With --nproc N > 1 outside any group, starts ranks 1..N-1 running target(**arguments) (the same
    training function: inside it, this yields their Ranks) and makes this process rank 0. Under
    torchrun, joins the group its variables describe. On leaving, rank 0 waits for the helpers to
    finish, or ends them if it stopped early or failed; the group is closed by whoever opened it.
    """
    world = world_size(nproc)
    if world == 1:
        yield None
        return
    if dist.is_initialized():  # a helper started below, or a group the caller made
        rank = dist.get_rank()
        local = int(os.environ.get("LOCAL_RANK", rank))
        yield Ranks(rank, world, local, _rank_device(device, local))
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if launched_by_torchrun():
        local = int(os.environ["LOCAL_RANK"])
        dev = _rank_device(device, local)
        dist.init_process_group(backend, init_method="env://", device_id=dev if dev.type == "cuda" else None)
        try:
            yield Ranks(dist.get_rank(), world, local, dev)
        finally:
            dist.destroy_process_group()
        return
    with _spawned(world, device, backend, target, arguments) as ranks:
        yield ranks


@contextlib.contextmanager
def _spawned(world: int, device: torch.device, backend: str, target: Callable, arguments: dict) -> Iterator[Ranks]:
    """Rank 0 of a run whose other ranks this process starts (see processes)."""
    if device.type == "cuda" and world > torch.cuda.device_count():
        raise TexportError(f"{world} training processes need {world} GPUs, this machine has {torch.cuda.device_count()}")
    dev = _rank_device(device, 0)
    threads = max(1, torch.get_num_threads() // world) if dev.type == "cpu" else None
    saved_threads, scope = torch.get_num_threads(), contextlib.ExitStack()
    folder = tempfile.mkdtemp(prefix="texport-ranks-")
    store_path = os.path.join(folder, "store")
    context = multiprocessing.get_context("spawn")
    helpers = [context.Process(target=_helper, args=(rank, world, store_path, backend, threads, device, target, arguments,
                                                     os.getpid()), daemon=True, name=f"texport-rank-{rank}")
               for rank in range(1, world)]
    ranks = None
    try:
        scope.enter_context(environment(_loopback_environment()))  # the helpers inherit it; gloo reads it when a group is made
        for process in helpers:
            process.start()
        store = dist.FileStore(store_path, world)
        _wait_until_ready(store, helpers)
        dist.init_process_group(backend, store=store, rank=0, world_size=world)
        if threads is not None:
            torch.set_num_threads(threads)  # N ranks share the cores instead of each taking them all
        ranks = Ranks(0, world, 0, dev, helpers, store)
        yield ranks
        if ranks.stopping:
            _end(helpers)
        else:
            _join(helpers)
            if any(process.exitcode for process in helpers):
                raise ranks.lost(RuntimeError("connection closed")) from None
    except RuntimeError as exc:  # a collective failed: another rank is gone, or the group never formed
        failure = ranks.lost(exc) if ranks is not None else TexportError(
            f"training processes failed to start ({' '.join(str(exc).split())[:160]})")
        _end(helpers)
        if failure is None:
            raise
        raise failure from None
    except BaseException:
        _end(helpers)
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
        torch.set_num_threads(saved_threads)
        scope.close()
        shutil.rmtree(folder, ignore_errors=True)


def _rank_device(device: torch.device, local_rank: int) -> torch.device:
    """CPU for every rank on a CPU run; GPU `local_rank` for each on a GPU run (one GPU per rank)."""
    if device.type != "cuda":
        return device
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def _loopback_environment() -> dict[str, str]:
    """GLOO_SOCKET_IFNAME (and NCCL's) naming the loopback interface: the ranks of one machine talk
    over it only (by default gloo binds to the address the host name resolves to)."""
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        return {}
    loopback = next((name for name in names if name.startswith("lo")), None)  # Linux lo, BSD and macOS lo0
    return {"GLOO_SOCKET_IFNAME": loopback, "NCCL_SOCKET_IFNAME": loopback} if loopback else {}


def _wait_until_ready(store, helpers: list) -> None:
    """Wait (interruptibly) until every helper has reached the store, failing at once if one dies:
    creating the group itself would wait for a missing rank until its timeout."""
    keys = [f"ready/{rank}" for rank in range(1, len(helpers) + 1)]
    while not store.check(keys):
        for rank, process in enumerate(helpers, start=1):
            if process.exitcode is not None:
                reason = _stored_error(store, rank) or f"exit code {process.exitcode}"
                raise TexportError(f"training process {rank} failed to start ({reason})")
        time.sleep(0.02)


def _join(helpers: list) -> None:
    deadline = time.monotonic() + JOIN_SECONDS
    for process in helpers:
        process.join(timeout=max(0.0, deadline - time.monotonic()))
    _end(helpers)  # any still running past the deadline


def _end(helpers: list) -> None:
    """SIGTERM to the helpers still running (they write nothing), then SIGKILL to any left."""
    helpers = [process for process in helpers if process.pid is not None]  # started
    for process in helpers:
        if process.is_alive():
            process.terminate()
    for process in helpers:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
            process.join()


def _stored_error(store, rank: int) -> str | None:
    try:
        if store is not None and store.check([f"error/{rank}"]):
            return store.get(f"error/{rank}").decode(errors="replace")
    except Exception:  # the store itself may be gone with its process
        return None
    return None


def _watch_parent(parent: int) -> None:
    """End this helper if rank 0 disappears (killed outright, its group never closed)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="texport-parent-watch").start()


def _helper(rank: int, world: int, store_path: str, backend: str, threads: int | None, device: torch.device,
            target: Callable, arguments: dict, parent: int) -> None:
    """A helper rank: join the group, run the training function, exit quietly (rank 0 reports)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the whole terminal; rank 0 stops the run
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _watch_parent(parent)
    if threads is not None:
        torch.set_num_threads(threads)
    store = dist.FileStore(store_path, world)
    code = 0
    try:
        _rank_device(device, rank)
        store.set(f"ready/{rank}", "1")
        dist.init_process_group(backend, store=store, rank=rank, world_size=world)
        target(**arguments)
    except BaseException as exc:  # reported by rank 0 in its one line
        code = 2 if isinstance(exc, TexportError) else 1
        line = str(exc) if isinstance(exc, TexportError) else f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(Exception):
            store.set(f"error/{rank}", " ".join(line.split())[:300])
    finally:
        with contextlib.suppress(Exception):
            if dist.is_initialized():
                dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no interpreter teardown: nothing of the helper's is left to flush


class _AllReduceSum(torch.autograd.Function):
    """The sum of a tensor over the ranks of group; its gradient is the sum over the ranks of theirs
    (every rank's loss depends on every rank's summand)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        total = tensor.clone()
        dist.all_reduce(total, group=group)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        total = grad.clone()
        dist.all_reduce(total, group=ctx.group)
        return total, None


class AllReduceBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the whole batch, summed across ranks.

    Mean and variance come from two all-reduces of per-channel sums (the mean first, then the
    squared deviations from it: the two-pass form, as exact as one process's), through an all-reduce
    whose backward all-reduces the gradients (_AllReduceSum): the gradient of every rank's loss
    reaches every rank's activations, as in one process. The running averages are updated from the
    same global statistics on every rank, so they stay equal without being broadcast. Outside
    training, or without a group, it is torch's BatchNorm2d. Its parameters and buffers are
    BatchNorm2d's (a model file does not change).
    """

    group: Any = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.group is None:
            return super().forward(x)
        n = x.numel() // x.shape[1] * dist.get_world_size(self.group)
        dims = (0, 2, 3)
        mean = _AllReduceSum.apply(x.sum(dims), self.group) / n
        centred = x - mean[None, :, None, None]
        var = _AllReduceSum.apply(centred.square().sum(dims), self.group) / n
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                self.running_var.mul_(1 - factor).add_(var.detach() * (n / max(1, n - 1)), alpha=factor)
        return y


def all_reduce_batchnorm(module: nn.Module, group) -> nn.Module:
    """Make every BatchNorm2d of module an AllReduceBatchNorm2d over group, in place; returns module.

    The layers keep their parameter and buffer objects (an optimizer made before still holds them).
    """
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            child.__class__ = AllReduceBatchNorm2d  # the same state: nothing to copy
            child.group = group
        else:
            all_reduce_batchnorm(child, group)
    return module
