"""`texport bench`: latency, throughput and memory of a model on each backend, size and batch.

For every (backend, size, batch): `warmup` untimed runs, then `runs` timed ones (wall clock around
the backend call, which returns the image on the CPU, so a GPU run includes the copy back); median
and p95 latency, images/s, megapixels/s, achieved GFLOP/s from the graph's counted FLOPs, peak
memory and the device. FLOPs: torch.utils.flop_counter on the fp32 PyTorch graph (convolutions and
matrix products: what the hardware spends its time on) at three sizes, fitted as a + b * side + c *
side**2 (`FlopModel`: the pixels' work grows with side**2, a texture network's wrapped border with
the side, ProPO's texture encoding is constant). Peak memory: CPU:
the process's peak resident set, reset before each configuration (Linux /proc/self/clear_refs);
GPU: the torch allocator's peak (torch backend) — other GPU runtimes allocate outside it ("-").
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import asdict, astuple, dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

import texport.defaults as defaults
from texport import __version__
from texport.errors import TexportError
from texport.models.handle import PROPO, SOLID, Model, open_model
from texport.runtime.backends import Backend, available, open_backend, parse_backend
from texport.textures.images import load_image, resolve_texture
from texport.textures.noise import noise_field, noise_volume

DEFAULT_SIZES = defaults.BENCH_SIZES
DEFAULT_BATCHES = defaults.BENCH_BATCHES


@dataclass
class BenchRow:
    backend: str
    precision: str
    device: str
    device_name: str
    size: int
    batch: int
    median_ms: float | None = None
    p95_ms: float | None = None
    images_per_s: float | None = None
    megapixels_per_s: float | None = None
    megavoxels_per_s: float | None = None  # solid networks: cubes side^3
    gflop_per_image: float | None = None
    gflops: float | None = None
    peak_memory_mb: float | None = None
    memory_kind: str = ""
    skipped: str = ""


def device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({torch.get_num_threads()} threads)"
    except OSError:
        pass
    return platform.processor() or "cpu"


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class FlopModel:
    """GFLOP per square image as a + b * side + c * side**2, counted on the fp32 torch graph at three sizes.

    The work on the pixels grows with side**2; a texture network also convolves a wrapped border
    (texnet.TextureNetwork._forward), which grows with the side.
    """

    SIDES = (64, 128, 192)
    CUBES = (1, 2, 3, 4)  # solid networks, in multiples of their grid: a + b side + c side^2 + d side^3

    def __init__(self, model: str | os.PathLike | Model, texture: torch.Tensor | None):
        model = open_model(model)
        self.coefficients = None
        if model.format != "texport":
            return  # counted only for texport models (the graph they came from is not at hand)
        backend = open_backend(model, "torch", "cpu")
        counts = []
        sides = tuple(model.size_multiple * k for k in self.CUBES) if model.kind == SOLID else self.SIDES
        for side in sides:
            z = bench_noise(backend, side, 1)
            with FlopCounterMode(display=False) as counter, torch.no_grad():
                backend(z, texture)
            counts.append(counter.get_total_flops() / 1e9)
        vandermonde = torch.tensor([[float(s) ** p for p in range(len(sides))] for s in sides], dtype=torch.float64)
        self.coefficients = torch.linalg.solve(vandermonde, torch.tensor(counts, dtype=torch.float64)).tolist()

    def __call__(self, side: int) -> float | None:
        if self.coefficients is None:
            return None
        return sum(c * side ** p for p, c in enumerate(self.coefficients))


def bench_noise(backend: Backend, side: int, batch: int) -> torch.Tensor:
    """The noise of a square image, or of a cube for a solid network."""
    if backend.kind == SOLID:
        return noise_volume(0, backend.noise_channels, side, side, side, batch=batch)
    return noise_field(0, backend.noise_channels, side, side, batch=batch)


@dataclass(frozen=True)
class Timing:
    """How each configuration is timed: untimed warm-up runs, then timed runs, in a precision on a device."""
    warmup: int = defaults.BENCH_WARMUP
    runs: int = defaults.BENCH_RUNS
    fp16: bool = False
    device: str = "auto"


def bench(model: str | os.PathLike | Model, backends: list[str] | None = None, sizes=DEFAULT_SIZES, batches=DEFAULT_BATCHES,
          texture: torch.Tensor | None = None, progress=None, **timing) -> list[BenchRow]:
    """Time `model` on each backend (default: every one available here that runs its format) at
    each size and batch; `runs` timed runs after `warmup` untimed ones per configuration (timing: Timing's
    fields, warmup, runs, fp16, device).

    A backend may carry options: "torch:channels_last+compile", "openvino:bf16" (texport.models.formats.FORMATS).
    When no configuration could run, one TexportError says why (the first reason).
    """
    warmup, runs, fp16, device = astuple(Timing(**timing))
    if runs < 1 or warmup < 0:
        raise TexportError(f"timed runs must be at least 1 and warm-up runs at least 0, got {runs}, {warmup}")
    if not sizes or not batches or min(sizes) < 1 or min(batches) < 1:
        raise TexportError(f"sizes and batches must be positive, got {list(sizes)} and {list(batches)}")
    model = open_model(model).require_generator(volumes=True)  # resolved once: every backend and the FLOP count take the handle
    names = backends if backends and backends != ["all"] else runnable(model, device)
    specs = [parse_backend(spec) for spec in names]  # "torch:channels_last+compile": with those options
    if texture is None:
        texture = load_image(resolve_texture("pebbles"))
    flops = FlopModel(model, texture)
    rows = []
    for name, chosen in specs:
        label = label_with_options = name + ("".join(f"+{o}" for o in chosen) if chosen else "")
        try:
            backend = open_backend(model, name, device, fp16, **chosen)
        except TexportError as exc:
            rows += [BenchRow(label, "fp16" if fp16 else "fp32", device, "", s, b, skipped=str(exc)) for s in sizes for b in batches]
            continue
        dev_name = device_name(backend.device)
        tex = texture if backend.kind == PROPO else None
        for side in sizes:
            for batch in batches:
                row = BenchRow(label_with_options, backend.precision, backend.device, dev_name, side, batch)
                rows.append(row)
                try:
                    _time(backend, row, side, batch, tex, warmup, runs, flops(side))
                except (RuntimeError, MemoryError, TexportError) as exc:  # out of memory, profile limits
                    row.skipped = " ".join(str(exc).split())[:160]
                if progress is not None:
                    progress(row)
    if rows and all(r.skipped for r in rows):
        raise TexportError(f"nothing could run: {rows[0].skipped}")
    return rows


def runnable(model: Model, device: str = "auto") -> list[str]:
    """The backends available here that run this model's format (an .onnx file is not PyTorch's;
    an engine only TensorRT's)."""
    if model.format == "engine":
        return ["tensorrt"]
    names = available(device)
    return [n for n in names if n != "torch"] if model.format == "onnx" else names


def _time(backend: Backend, row: BenchRow, side: int, batch: int, texture, warmup: int, runs: int, gflop) -> None:
    if side % backend.size_multiple or side < backend.min_side:
        raise TexportError(f"this model takes sides that are multiples of {backend.size_multiple} (at least "
                           f"{backend.min_side}), not {side}")
    z = bench_noise(backend, side, batch)
    cuda = backend.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    reset = _reset_peak_rss()
    for _ in range(warmup):
        backend(z, texture)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        backend(z, texture)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    row.median_ms = median * 1e3
    row.p95_ms = sorted(times)[min(len(times) - 1, round(0.95 * (len(times) - 1)))] * 1e3
    row.images_per_s = batch / median
    if backend.kind == SOLID:
        row.megavoxels_per_s = batch * side ** 3 / 1e6 / median
    else:
        row.megapixels_per_s = batch * side * side / 1e6 / median
    if gflop is not None:
        row.gflop_per_image = gflop
        row.gflops = gflop * batch / median
    if cuda:
        row.peak_memory_mb = torch.cuda.max_memory_allocated() / 2**20 if backend.name == "torch" else None
        row.memory_kind = "torch allocator peak" if backend.name == "torch" else "not measured (outside torch's allocator)"
    else:
        row.peak_memory_mb = _peak_rss_mb()
        row.memory_kind = "peak RSS of the process" + ("" if reset else " (not resettable: since start)")


def table(rows: list[BenchRow]) -> str:
    w = max([len("backend")] + [len(r.backend) for r in rows])  # "torch+channels_last+compile" is 27 wide
    volumes = any(r.megavoxels_per_s is not None for r in rows)  # a solid network: cubes, megavoxels per second
    head = (f"{'backend':<{w}} {'precision':<9} {'size':>5} {'batch':>5} {'median ms':>10} {'p95 ms':>9} "
            f"{'vol/s' if volumes else 'img/s':>8} {'MV/s' if volumes else 'MP/s':>8} {'GFLOP/s':>8} {'peak MB':>8}  device")
    lines = [head, "-" * len(head)]
    for r in rows:
        if r.skipped:
            lines.append(f"{r.backend:<{w}} {r.precision:<9} {r.size:>5} {r.batch:>5}  skipped: {r.skipped}")
            continue

        def f(v, spec):
            return "-" if v is None else format(v, spec)

        lines.append(f"{r.backend:<{w}} {r.precision:<9} {r.size:>5} {r.batch:>5} {f(r.median_ms, '10.1f')} "
                     f"{f(r.p95_ms, '9.1f')} {f(r.images_per_s, '8.2f')} {f(r.megavoxels_per_s if volumes else r.megapixels_per_s, '8.2f')} "
                     f"{f(r.gflops, '8.1f')} {f(r.peak_memory_mb, '8.0f')}  {r.device_name}")
    return "\n".join(lines)


def as_json(rows: list[BenchRow], model: str, extra: dict | None = None) -> dict:
    return {"model": str(model), "texport_version": __version__, "torch": torch.__version__,
            "measured": time.strftime("%Y-%m-%dT%H:%M:%S"), **(extra or {}), "rows": [asdict(r) for r in rows]}
