"""Solid textures (Gutierrez et al. 2020): what a training step costs, how fast volumes come, and what
an object carved from one looks like.

Parts (--parts, comma-separated):

- steps: 20 single-slice training steps of a solid network against 20 steps of a texture network at
  the same slice side and batch (the default objective on pebbles, one thread); the time between the
  first and the last step, so set-up and the final BatchNorm recalibration are left out;
- speed: a WxWxW volume on the block lattice (`texport synth`'s path, torch), and each backend's
  periodic graph (`texport bench`) in voxels per second, beside the shipped pebbles texture network's
  pixels per second at 512 px, at --threads threads;
- memory: a --big^3 volume written to a .npy file block by block (run alone: the peak resident set
  of the process, torch included, is the number);
- preview: a cube with a corner cut away and a sphere carved from a 128^3 volume of --model, with its
  exemplar and three slices, to benchmarks/images/solid_preview_NAME.png.

Each part writes its own section of RESULTS.md (solid-steps, solid-speed, solid-memory, solid-preview).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import gatys as gatys_benchmark  # noqa: E402  (cpu_name, replace_section)

import texport  # noqa: E402
from texport.models.checkpoints import load_stored_exemplar  # noqa: E402
from texport.models.handle import open_model, resolve_model  # noqa: E402
from texport.models.loading import load_solid  # noqa: E402
from texport.runtime.backends import available  # noqa: E402
from texport.runtime.bench import FlopModel, bench  # noqa: E402
from texport.runtime.volumes import BlockComputer  # noqa: E402
from texport.scale.volumes import VolumeRequest, synthesize_volume, write_volume  # noqa: E402
from texport.textures.carve import render_carved  # noqa: E402
from texport.textures.images import resolve_texture, save_image, side_by_side, stack_rows  # noqa: E402
from texport.training.solid import SolidRun, train_solid  # noqa: E402
from texport.training.texnet import TexnetRun, train_texnet  # noqa: E402


def machine(threads: int) -> str:
    return (f"{gatys_benchmark.cpu_name()}, {threads} thread{'s' if threads > 1 else ''}, torch {torch.__version__}, "
            f"texport {texport.__version__}; measured {time.strftime('%Y-%m-%d')}")


def timed_steps(train, run_class, texture: Path, out: Path, steps: int, **settings) -> float:
    """Seconds per step between the end of step 1 and the end of step 1 + steps."""
    marks = {}

    def progress(step, loss):
        marks[step] = time.perf_counter()

    train(run_class.of(texture, out, iters=steps + 1, checkpoint_every=0, **settings), progress)
    return (marks[steps + 1] - marks[1]) / steps


def part_steps(args) -> str:
    texture = resolve_texture(args.texture)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            common = {"batch": args.batch, "size": size, "precision": "fp32"}
            solid = timed_steps(train_solid, SolidRun, texture, Path(tmp) / "s.safetensors", args.steps,
                                scales=args.scales, **common)
            flat = timed_steps(train_texnet, TexnetRun, texture, Path(tmp) / "t.safetensors", args.steps, **common)
            rows.append(f"| {size} | {args.batch} | {solid:.3f} | {flat:.3f} | {solid / flat:.2f} |")
    return "\n".join([
        f"## Solid textures: a training step (`python benchmarks/solid.py --parts steps`)", "",
        f"{args.steps} steps after the first, default objective on {args.texture}; solid: {args.scales} scales, one "
        f"random direction per step, the slab of one slice; texture network: its defaults (5 scales), the same side "
        f"and batch. Machine: {machine(1)} (shared with other work: timings are upper bounds).", "",
        "| slice side | batch | solid s/step | texture network s/step | ratio |", "| --- | --- | --- | --- | --- |",
        *rows, ""])


def part_speed(args) -> str:
    torch.set_num_threads(args.threads)
    handle = open_model(args.model)
    side = args.side
    rows = []
    for name in available("cpu")[::-1]:  # torch, onnxruntime, openvino (where installed)
        blocks = BlockComputer.open(handle, 64, name, "cpu")
        synthesize_volume(blocks, VolumeRequest((64, 64, 64)))  # the export and the runtime's first call
        start = time.perf_counter()
        synthesize_volume(blocks, VolumeRequest((side, side, side)))
        lattice = time.perf_counter() - start
        rows.append(f"| {name}, block lattice (`texport synth --backend {name}`) | {side}^3 | {lattice:.2f} | "
                    f"{side ** 3 / lattice / 1e6:.2f} |")
    for row in bench(args.model, None, [64, side], [1], warmup=1, runs=3, device="cpu"):
        if not row.skipped:
            rows.append(f"| {row.backend}, periodic graph | {row.size}^3 | {row.median_ms / 1e3:.2f} | "
                        f"{row.megavoxels_per_s:.2f} |")
    gflop = FlopModel(args.model, None)(256)
    flat = [r for r in bench("pebbles", None, [512], [1], warmup=1, runs=3, device="cpu") if not r.skipped]
    rows += [f"| {r.backend}, texture network pebbles | 512^2 | {r.median_ms / 1e3:.3f} | {r.megapixels_per_s:.2f} (pixels) |"
             for r in flat]
    return "\n".join([
        f"## Solid textures: speed (`python benchmarks/solid.py --parts speed --model {args.model} --side {side}`)", "",
        f"Machine: {machine(args.threads)} (shared with other work). The lattice computes blocks of 64^3 with their "
        "halos (bit-exact windows), after one untimed 64^3 volume (the block graph's export and the runtime's first "
        "call); the periodic graph is what `texport export` writes, on the noise as given.", "",
        "| path | size | seconds | megavoxels/s |", "| --- | --- | --- | --- |", *rows, "",
        f"A 256^3 volume is {gflop:.0f} GFLOP (torch's FLOP counter on the periodic graph, fitted as a cubic in the "
        f"side): at a sustained 10-30 TFLOP/s of fp32 convolution on a GPU, an estimate of {gflop / 30:.0f}-"
        f"{gflop / 10:.0f} ms (not measured here).", ""])


def part_memory(args) -> str:
    torch.set_num_threads(args.threads)
    net = load_solid(args.model).network
    side = args.big
    with tempfile.TemporaryDirectory(dir=HERE) as tmp:
        start = time.perf_counter()
        write_volume(net, Path(tmp) / "v.npy", VolumeRequest((side, side, side)))
        seconds = time.perf_counter() - start
        size = (Path(tmp) / "v.npy").stat().st_size
    peak = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith("VmHWM:")) / 2**20
    return "\n".join([
        f"## Solid textures: a large volume (`python benchmarks/solid.py --parts memory --model {args.model} --big {side}`)",
        "", f"A {side}^3 volume ({size / 2**20:.0f} MiB .npy) written block by block (64^3 blocks, one slab of 64 slices "
        f"in memory) in {seconds:.0f} s; peak resident set of the whole process (torch and the model included): "
        f"{peak:.2f} GiB. Machine: {machine(args.threads)} (shared with other work).", ""])


def part_preview(args) -> str:
    net = load_solid(args.model).network
    name = Path(args.model).stem
    volume = synthesize_volume(net, VolumeRequest((128, 128, 128), seed=args.seed))
    m = 64
    tensors = [torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float() / 255
               for a in (volume[:, :, m], volume[:, m, :], volume[m])]
    carved = [torch.from_numpy(render_carved(volume, shape, 320)).permute(2, 0, 1)[None] for shape in ("cube", "sphere")]
    exemplar = load_stored_exemplar(resolve_model(args.model))
    sheet = stack_rows([side_by_side([exemplar, *tensors], height=192), side_by_side(carved, height=320)])
    out = HERE / "images" / f"solid_preview_{name}.png"
    save_image(sheet, out)
    return "\n".join([
        f"## Solid textures: a carved object (`python benchmarks/solid.py --parts preview --model {args.model}`)", "",
        f"`benchmarks/images/{out.name}`: the exemplar, the slices normal to x, y and z through the middle of a "
        f"128^3 volume (seed {args.seed}); below, a cube with its corner cut away and a sphere carved from it (Lambert "
        f"shading). {machine(1)}.", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="steps,speed,preview", help="steps, speed, memory (run it alone), preview.")
    parser.add_argument("--model", default="pebbles-solid", help="A solid model (shipped name or .safetensors).")
    parser.add_argument("--texture", default="pebbles")
    parser.add_argument("--sizes", type=lambda t: [int(v) for v in t.split(",")], default=[64, 128])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--scales", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--side", type=int, default=128)
    parser.add_argument("--big", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    parts = {"steps": part_steps, "speed": part_speed, "memory": part_memory, "preview": part_preview}
    for part in args.parts.split(","):
        body = parts[part](args)
        gatys_benchmark.replace_section(HERE / "RESULTS.md", f"solid-{part}", body)
        print(body)


if __name__ == "__main__":
    main()
