"""Deployment benchmarks: backends on this machine, engine builds, a large tile run.

1. Backends (`texport.runtime.bench`): the shipped pebbles texture network at 256-2048 px and the ProPO
   model at 256 and 512 px, batch 1 (and 8 at 256 and 512 for the texture network), on torch eager
   fp32 (`inference_mode`, nothing else), torch with its own tuned options (channels_last +
   torch.compile), onnxruntime and OpenVINO in fp32; at 512 px the fp16 graphs (torch, onnxruntime,
   OpenVINO) and OpenVINO's own bf16 (`openvino:bf16`, on CPUs that have it). The
   table gives the fastest backend's speed-up over torch eager at 512 px (target >= 5x for texture
   networks on a CPU). On a GPU machine the same script times the torch backends there.
2. Engine builds: tensorrt-rtx (when installed) builds fp32 and fp16 engines of both model kinds;
   the build seconds and sizes.
3. A 16384x16384 `texport tile` of the pebbles texture network in a fresh process, with its wall
   time and peak resident memory (target <= 2 GB).

    python benchmarks/deploy.py                      # all three parts (about 20 minutes on 2 CPU cores)
    python benchmarks/deploy.py --parts backends --quick
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gatys as gatys_benchmark  # noqa: E402  (replace_section, cpu_name)

import texport  # noqa: E402
from texport.runtime.bench import bench, table  # noqa: E402

CPU_BACKENDS = ["torch", "torch:channels_last+compile", "onnxruntime", "openvino"]
GPU_BACKENDS = ["torch", "torch:channels_last", "torch:compile", "torch:cuda_graphs", "onnxruntime"]


def part_backends(quick: bool) -> list[str]:
    gpu = torch.cuda.is_available()
    backends = GPU_BACKENDS if gpu else CPU_BACKENDS
    half = [b for b in backends if ":" not in b]  # the fp16 graphs, on each runtime without tuning options
    runs = [("pebbles", (256, 512) if quick else (256, 512, 1024, 2048), (1,), backends, False),
            ("pebbles", (256, 512), (8,), backends, False),
            ("pebbles", (512,), (1,), half, True),
            ("propo", (256,) if quick else (256, 512), (1,), backends, False)]
    if not gpu:
        runs.insert(3, ("pebbles", (512,), (1,), ["openvino:bf16"], False))
    lines, results = [], {}
    for model, sizes, batches, names, fp16 in runs:
        rows = bench(model, names, sizes, batches, warmup=2, runs=3 if quick else 7, fp16=fp16)
        print(table(rows), flush=True)
        results.setdefault(model, []).extend(rows)
        note = " --fp16" if fp16 else " (OpenVINO's bf16)" if names == ["openvino:bf16"] else ""
        lines += [f"`{model}`{note}, batch {','.join(map(str, batches))}:", "",
                  "| backend | precision | size | batch | median ms | p95 ms | images/s | MP/s | GFLOP/s | peak MB |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in rows:
            if r.skipped:
                lines.append(f"| {r.backend} | {r.precision} | {r.size} | {r.batch} | skipped: {r.skipped} | | | | | |")
            else:
                lines.append(f"| {r.backend} | {r.precision} | {r.size} | {r.batch} | {r.median_ms:.1f} | {r.p95_ms:.1f} | "
                             f"{r.images_per_s:.2f} | {r.megapixels_per_s:.2f} | {r.gflops:.1f} | {r.peak_memory_mb:.0f} |")
        lines.append("")
    texnet = [r for r in results["pebbles"] if r.size == 512 and r.batch == 1 and not r.skipped and r.precision == "fp32"]
    eager = next(r for r in texnet if r.backend == "torch")
    best = min(texnet, key=lambda r: r.median_ms)
    lines.append(f"Texture network at 512x512, batch 1, fp32: fastest {best.backend} {best.median_ms:.1f} ms vs torch eager "
                 f"{eager.median_ms:.1f} ms = **{eager.median_ms / best.median_ms:.2f}x** (target >= 5x); torch's own tuned "
                 + ", ".join(f"{r.backend} {r.median_ms:.1f} ms" for r in texnet if r.backend.startswith("torch+")) + ".")
    bf16 = [r for r in results["pebbles"] if r.precision == "bf16" and not r.skipped]
    if bf16:
        lines.append(f"OpenVINO's own bf16 (outside the fp16 parity tolerance, not counted for the target): {bf16[0].median_ms:.1f} ms "
                     f"= {eager.median_ms / bf16[0].median_ms:.2f}x torch eager.")
    return lines


def part_engines() -> list[str]:
    from texport.export.exporter import export

    lines = ["| model | precision | flavour | build s | engine MB | profile (image sides) |", "| --- | --- | --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory() as tmp:
        for model in ("pebbles", "propo"):
            for fp16 in (False, True):
                item = export(Path(tmp) / f"{model}{'-fp16' if fp16 else ''}.engine", model=model, fp16=fp16, check=False)[0]
                side = item.sidecar
                prof = side["profile"]["noise"]
                lines.append(f"| {model} | {side['precision']} | {side['flavour']} {side['flavour_version']} | "
                             f"{side['build_seconds']:.1f} | {item.path.stat().st_size / 1e6:.1f} | "
                             f"{prof['min'][2]}/{prof['opt'][2]}/{prof['max'][2]} |")
                print(lines[-1], flush=True)
    return lines


def part_tile(size: int, backend: str, keep: str | None) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(keep) if keep else Path(tmp) / "tile.png"
        # VmHWM, not ru_maxrss: a child started with vfork inherits its parent's ru_maxrss (this one's, gigabytes)
        code = ("import sys, time; from texport.runtime.bench import _peak_rss_mb; from texport.commands.cli import main; t = time.time(); "
                f"rc = main(['tile', 'pebbles', '-o', {str(out)!r}, '--size', '{size}x{size}', '--tile', '1024', "
                f"'--backend', {backend!r}]); "
                "print('RESULT', rc, time.time() - t, _peak_rss_mb())")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT")), None)
        if line is None:
            return [f"tile run failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"]
        _, rc, seconds, peak = line.split()
        mb = out.stat().st_size / 1e6 if out.exists() else 0
    return [f"`texport tile pebbles --size {size}x{size} --tile 1024 --backend {backend}` in a fresh process: "
            f"exit {rc}, {float(seconds):.0f} s, peak RSS **{float(peak):.0f} MB** (target <= 2048), PNG {mb:.0f} MB."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="backends,engines,tile")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tile-size", type=int, default=16384)
    parser.add_argument("--tile-backend", default="onnxruntime")
    parser.add_argument("--tile-output", default=None, help="keep the tiled PNG here (to look at it)")
    args = parser.parse_args()
    parts = args.parts.split(",")
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else gatys_benchmark.cpu_name()
    header = [f"Machine: {device}, {torch.get_num_threads()} threads, torch {torch.__version__}, texport "
              f"{texport.__version__}; measured {time.strftime('%Y-%m-%d')}. `python benchmarks/deploy.py "
              f"--parts {args.parts}{' --quick' if args.quick else ''}`.", ""]
    section = "deploy-gpu" if torch.cuda.is_available() else "deploy-cpu"
    if "backends" in parts:
        body = ["## Backends (`benchmarks/deploy.py`)" + (" on the GPU" if torch.cuda.is_available() else " on this CPU"), ""]
        gatys_benchmark.replace_section(gatys_benchmark.RESULTS, section, "\n".join(body + header + part_backends(args.quick)))
    if "engines" in parts:
        body = ["## TensorRT engine builds (`benchmarks/deploy.py --parts engines`)", ""]
        gatys_benchmark.replace_section(gatys_benchmark.RESULTS, "deploy-engines", "\n".join(body + header + part_engines()))
    if "tile" in parts:
        body = ["## Large tiles (`benchmarks/deploy.py --parts tile`)", ""]
        lines = part_tile(args.tile_size, args.tile_backend, args.tile_output)
        print(lines[0], flush=True)
        gatys_benchmark.replace_section(gatys_benchmark.RESULTS, "deploy-tile", "\n".join(body + header + lines))


if __name__ == "__main__":
    main()
