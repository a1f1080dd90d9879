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
  exemplar and three slices, to benchmarks/images/solid_preview_NAME.png;
- slices (not in the default list; issue 37's quality target): for each of --seeds, --slices random
  256x256 slices one voxel thick in each direction of the seed's infinite volume of --model, measured
  against the stored exemplar of their direction (`gatys.py`'s measures: judge, spectral, colour,
  objective), beside --slices samples of a 2D texture network trained on the same exemplar at the same
  budget (--baseline, or --train-baseline to train it from the solid model's manifest first); sheet
  benchmarks/images/solid_slices_NAME.png.

Each part writes its own section of RESULTS.md (solid-steps, solid-speed, solid-memory, solid-preview,
solid-slices); --results and --images send them elsewhere (smoke runs), --section renames a lone part's.

    python benchmarks/solid.py --parts slices --train-baseline runs/pebbles-solid-texnet-baseline.safetensors
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import gatys as gatys_benchmark  # noqa: E402  (cpu_name, replace_section)

import texport  # noqa: E402
from texport.files import sha256_file  # noqa: E402
from texport.models.checkpoints import load_stored_exemplar, read_manifest  # noqa: E402
from texport.models.handle import open_model, resolve_model  # noqa: E402
from texport.models.loading import load_solid, load_texnet, sample_texnet  # noqa: E402
from texport.objectives.descriptor import build_descriptor  # noqa: E402
from texport.objectives.losses import PO_LAYERS  # noqa: E402
from texport.runtime.backends import available  # noqa: E402
from texport.runtime.bench import FlopModel, bench  # noqa: E402
from texport.runtime.volumes import BlockComputer  # noqa: E402
from texport.scale.volumes import VolumeRequest, synthesize_volume, write_volume  # noqa: E402
from texport.textures.carve import render_carved  # noqa: E402
from texport.textures.images import resolve_texture, save_image, shipped_textures, side_by_side, stack_rows  # noqa: E402
from texport.training.solid import DIRECTIONS, PLACE, SolidRun, as_slice, slice_window, train_solid  # noqa: E402
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
    out = args.images / f"solid_preview_{name}.png"
    save_image(sheet, out)
    return "\n".join([
        f"## Solid textures: a carved object (`python benchmarks/solid.py --parts preview --model {args.model}`)", "",
        f"`benchmarks/images/{out.name}`: the exemplar, the slices normal to x, y and z through the middle of a "
        f"128^3 volume (seed {args.seed}); below, a cube with its corner cut away and a sphere carved from it (Lambert "
        f"shading). {machine(1)}.", ""])


# ---------------------------------------------------------------------------------------------
# slices: issue 37's quality target, slices of the volume against a 2D texture network

SLICE_SIDE = 256
PLACE_SEED = 37_000_003  # the slices' places: a generator of their own, apart from training's draws
JUDGE_RATIO = 1.3  # slices' judge distance at most this times the 2D network's
COLOUR_TARGET = 0.01  # on every slice


def slice_places(seed: int, direction: str, count: int, side: int = SLICE_SIDE) -> list[tuple[int, int, int]]:
    """count random slab origins (x, y, z) in [-PLACE, PLACE - side) on every axis: a function of (seed,
    direction) alone, so a rerun measures the same slices."""
    g = torch.Generator().manual_seed(PLACE_SEED + 3 * seed + DIRECTIONS.index(direction))
    return [tuple(int(v) for v in row) for row in torch.randint(-PLACE, PLACE - side, (count, 3), generator=g)]


@torch.no_grad()
def volume_slice(net, seed: int, direction: str, place: tuple[int, int, int], side: int = SLICE_SIDE) -> torch.Tensor:
    """The side x side slice one voxel thick normal to `direction` whose slab starts at `place` (x, y, z), of
    seed's infinite volume: [1, 3, side, side] in [0, 1] (rows and columns as texport.training.solid says).
    The network computes just this window (with its halo), as training draws its slices: it equals the
    same slice of any larger window of the seed's volume to rounding (tests/test_solid.py checks it against
    the block lattice, `texport synth`'s volumes)."""
    origin, thin = slice_window(direction, place, side)
    return as_slice(net.window(seed, origin, thin), direction).float().cpu().clamp(0, 1)


def measured_in_batches(images: torch.Tensor, exemplar: torch.Tensor, desc, batch: int) -> list[dict]:
    return [m for i in range(0, images.shape[0], batch)
            for m in gatys_benchmark.measures(images[i:i + batch], exemplar, desc)]


def summary(measured: list[dict]) -> dict:
    target = measured[0]["target"]
    return {"judge": statistics.mean(m["judge"] for m in measured),
            "spectral": statistics.mean(m["spectral"] for m in measured),
            "within": sum(m["spectral"] <= target for m in measured) / len(measured),
            "color": statistics.mean(m["color"] for m in measured), "color_max": max(m["color"] for m in measured),
            "colour_ok": sum(m["color"] <= COLOUR_TARGET for m in measured),
            "objective": statistics.mean(m["objective"] for m in measured), "count": len(measured),
            "target": target, "floor": measured[0]["floor"]}


def training_texture(manifest: dict, given: Path | None = None) -> Path | None:
    """The exemplar file the solid model's x direction was trained on, found by its sha256: `given`
    (--exemplar-file), the shipped textures or ../shared/textures (or None)."""
    record = manifest["textures"]["x"] if "textures" in manifest else manifest["texture"]
    candidates = ([given] if given else []) + [Path(record["file"])]
    shipped = shipped_textures()
    candidates += [shipped[k] for k in (record.get("name"), Path(record["file"]).stem) if k in shipped]
    candidates += [gatys_benchmark.SHARED / record["file"], gatys_benchmark.SHARED / f"{record.get('name')}.jpg"]
    return next((c for c in candidates if c.is_file() and sha256_file(c) == record["sha256"]), None)


def baseline_settings(manifest: dict, iters: int | None = None) -> dict:
    """TexnetRun settings of a 2D texture network at the solid model's budget: its exemplar (no crop: a
    solid model trains on whole exemplars), iterations, slice side, batch, lr, seed, device, descriptor and
    precision, and its objective; the texture network's own architecture (5 scales, width 8)."""
    training, objective = manifest["training"], manifest["objective"]
    return {"iters": iters or int(training["iterations"]), "batch": int(training["batch"]), "size": int(training["size"]),
            "lr": float(training["lr"]), "seed": int(training.get("seed", 0)), "device": training.get("device", "cpu"),
            "precision": training.get("precision", "fp32"), "descriptor": manifest["descriptor"].split(":", 1)[0],
            "loss": objective["loss"], "layers": tuple(objective["layers"]), "color_weight": float(objective["color_weight"]),
            "spectrum_weight": float(objective["spectrum_weight"]), "color_octaves": int(objective.get("color_octaves", 1))}


def baseline_command(manifest: dict, texture: Path | None, output: str, iters: int | None = None) -> str:
    s = baseline_settings(manifest, iters)
    shipped = shipped_textures()
    record = manifest["textures"]["x"] if "textures" in manifest else manifest["texture"]
    if texture is None:
        name = f"<{record['file']} with sha256 {record['sha256'][:12]}...>"
    else:
        name = next((k for k, v in shipped.items() if v.resolve() == texture.resolve()), str(texture))
    return shlex.join(["texport", "train", "texnet", name, "-o", output, "--iters", str(s["iters"]), "--batch", str(s["batch"]),
                       "--size", str(s["size"]), "--lr", f"{s['lr']:g}", "--loss", s["loss"], "--layers", ",".join(s["layers"]),
                       "--color-weight", f"{s['color_weight']:g}", "--spectrum-weight", f"{s['spectrum_weight']:g}",
                       "--seed", str(s["seed"]), "--device", s["device"], "--descriptor", s["descriptor"],
                       "--precision", s["precision"]])


def ensure_baseline(args, manifest: dict) -> tuple[Path, float | None]:
    """The baseline model (--baseline, or --train-baseline trained here first, or resumed where a run of it
    stopped); and the seconds this process spent training it (None: trained before)."""
    if args.baseline is None and args.train_baseline is None:
        texture = training_texture(manifest, args.exemplar_file)
        suggested = f"runs/{Path(args.model).stem}-texnet-baseline.safetensors"  # runs/ is git-ignored
        raise SystemExit(f"--parts slices needs --baseline, a texture network trained on {args.model}'s exemplar at its "
                         f"budget: {baseline_command(manifest, texture, suggested, args.baseline_iters)} "
                         f"(or pass --train-baseline {suggested} to train it here first)")
    path = Path(args.baseline if args.baseline is not None else args.train_baseline)
    finished = path.is_file() and read_manifest(path).get("training", {}).get("batchnorm", "").startswith("recalibrated")
    if finished or args.baseline is not None:
        if not path.is_file():
            raise SystemExit(f"--baseline {path}: no such file (--train-baseline {path} trains it here)")
        return path, None
    texture = training_texture(manifest, args.exemplar_file)
    if texture is None:
        record = manifest["textures"]["x"]
        raise SystemExit(f"cannot train the baseline: no exemplar file with {args.model}'s sha256 "
                         f"{record['sha256'][:12]}... ({record['file']}) among the shipped or shared textures "
                         f"(name it with --exemplar-file)")
    settings = baseline_settings(manifest, args.baseline_iters)
    resume = path.is_file()  # a stopped run of the same settings continues
    print(f"training the baseline {'(resumed) ' if resume else ''}{path}: "
          f"{baseline_command(manifest, texture, str(path), args.baseline_iters)}", flush=True)
    start = time.perf_counter()

    def progress(done: int, loss: float) -> None:
        if done % 50 == 0 or done == settings["iters"]:
            print(f"  baseline {done}/{settings['iters']}: loss {loss:.4g} ({time.perf_counter() - start:.0f} s)", flush=True)

    path.parent.mkdir(parents=True, exist_ok=True)
    report = train_texnet(TexnetRun.of(texture, path, resume=resume, **settings), progress)
    if report.interrupted:
        raise SystemExit(f"the baseline's training stopped after {report.iterations} of {report.planned} iterations: "
                         f"run the same command again to resume it ({path})")
    return path, time.perf_counter() - start


def budget_differences(solid: dict, baseline: dict) -> list[str]:
    """Where the baseline's recorded training differs from the solid model's budget (empty: the same)."""
    a, b = solid["training"], baseline["training"]
    out = [f"{key} {b.get(key)} (solid {a.get(key)})" for key in ("iterations", "batch", "size", "lr", "precision", "seed")
           if b.get(key) != a.get(key)]
    if baseline["texture"]["sha256"] != solid["textures"]["x"]["sha256"] or baseline["texture"].get("crop"):
        out.append(f"exemplar {baseline['texture']['file']} crop {baseline['texture'].get('crop')} "
                   f"(solid {solid['textures']['x']['file']}, whole)")
    if baseline["objective"] != solid["objective"]:
        out.append(f"objective {baseline['objective']} (solid {solid['objective']})")
    return out


def one_to_one(image: torch.Tensor, side: int) -> torch.Tensor:
    """An image at 1:1 on a white side-high strip (cut to side rows if taller)."""
    image = image[..., :side, :]
    return F.pad(image, (0, 0, 0, side - image.shape[-2]), value=1.0)


def part_slices(args) -> str:
    torch.set_num_threads(args.threads)
    model_path = resolve_model(args.model)
    manifest = read_manifest(model_path)
    name = Path(args.model).stem
    baseline_path, trained_here = ensure_baseline(args, manifest)
    baseline_manifest = read_manifest(baseline_path)
    net = load_solid(model_path).network
    flat = load_texnet(baseline_path)
    desc = build_descriptor("auto", PO_LAYERS, expect_identity=manifest["descriptor"])
    stored = {d: load_stored_exemplar(model_path, "" if d == "x" else d) for d in DIRECTIONS}
    exemplars = {d: stored[d] if stored[d] is not None else stored["x"] for d in DIRECTIONS}
    side, count = args.slice_side, args.slices
    rows: dict[tuple[int, str], dict] = {}
    shown: dict[str, torch.Tensor] = {}
    generation = {"solid": 0.0, "baseline": 0.0}
    measuring = {"solid": 0.0, "baseline": 0.0}
    began = time.perf_counter()
    for seed in args.seeds:
        for direction in DIRECTIONS:
            start = time.perf_counter()
            images = torch.cat([volume_slice(net, seed, direction, place, side)
                                for place in slice_places(seed, direction, count, side)])
            made = time.perf_counter()
            measured = measured_in_batches(images, exemplars[direction], desc, args.measure_batch)
            generation["solid"] += made - start
            measuring["solid"] += time.perf_counter() - made
            rows[(seed, direction)] = summary(measured)
            shown.setdefault(direction, images[:3])
            r = rows[(seed, direction)]
            print(f"  seed {seed} {direction}: {count} slices in {made - start:.1f} s, measured in "
                  f"{time.perf_counter() - made:.1f} s: judge {r['judge']:.3f}, spectral {r['spectral']:.3f} "
                  f"({r['within']:.0%} within {r['target']:.3f}), colour {r['color']:.4f} (max {r['color_max']:.4f})",
                  flush=True)
        start = time.perf_counter()
        images = sample_texnet(flat, side, seed=seed * 1000, count=count, batch=args.measure_batch)
        made = time.perf_counter()
        measured = measured_in_batches(images, exemplars["x"], desc, args.measure_batch)
        generation["baseline"] += made - start
        measuring["baseline"] += time.perf_counter() - made
        rows[(seed, "2D")] = summary(measured)
        shown.setdefault("2D", images[:3])
        r = rows[(seed, "2D")]
        print(f"  seed {seed} 2D baseline: {count} samples in {made - start:.1f} s, measured in "
              f"{time.perf_counter() - made:.1f} s: judge {r['judge']:.3f}, spectral {r['spectral']:.3f}, colour "
              f"{r['color']:.4f} (max {r['color_max']:.4f})", flush=True)
    for (seed, what), r in rows.items():
        r["ratio"] = r["judge"] / rows[(seed, "2D")]["judge"]

    args.images.mkdir(parents=True, exist_ok=True)
    out = args.images / f"solid_slices_{name}.png"
    sheet = stack_rows([side_by_side([one_to_one(exemplars["x" if what == "2D" else what], side), *shown[what].split(1)],
                                     height=side) for what in (*DIRECTIONS, "2D")])
    save_image(sheet, out)

    whats = (*DIRECTIONS, "2D")
    label = {"x": "solid, slices normal to x", "y": "solid, slices normal to y", "z": "solid, slices normal to z",
             "2D": "2D texture network (baseline)"}
    per_seed = []
    for seed in args.seeds:
        for what in whats:
            r = rows[(seed, what)]
            per_seed.append(f"| {seed} | {label[what]} | {r['judge']:.3f} | {r['ratio']:.2f} | {r['spectral']:.3f} | "
                            f"{r['within']:.0%} | {r['color']:.4f} | {r['color_max']:.4f} | {r['objective']:.4g} |")
    medians, verdicts = [], []
    for what in whats:
        sel = [rows[(seed, what)] for seed in args.seeds]
        med = {k: statistics.median(r[k] for r in sel) for k in ("judge", "ratio", "spectral", "within", "color", "objective")}
        worst = max(r["color_max"] for r in sel)
        ok_colour = sum(r["colour_ok"] for r in sel)
        total = sum(r["count"] for r in sel)
        target = sel[0]["target"]
        judged = "" if what == "2D" else (" ok" if med["ratio"] <= JUDGE_RATIO else " over")
        medians.append(f"| {label[what]} | {med['judge']:.3f} | {med['ratio']:.2f}{judged} | {med['spectral']:.3f} "
                       f"({target:.3f}, {'ok' if med['spectral'] <= target else 'over'}) | {med['within']:.0%} | {med['color']:.4f} | "
                       f"{worst:.4f} ({ok_colour} of {total} <= {COLOUR_TARGET:g}) | {med['objective']:.4g} |")
        if what != "2D":
            verdicts.append(f"{what}: judge {'met' if med['ratio'] <= JUDGE_RATIO else 'missed'}, spectral "
                            f"{'met' if med['spectral'] <= target else 'missed'}, colour "
                            f"{'met' if ok_colour == total else 'missed'}")
    first = rows[(args.seeds[0], "x")]
    differences = budget_differences(manifest, baseline_manifest)
    solid_seconds = manifest["training"].get("seconds")
    baseline_seconds = baseline_manifest["training"].get("seconds")
    command = shlex.join(["python", "benchmarks/solid.py", *sys.argv[1:]])
    seeds = ", ".join(map(str, args.seeds))
    return "\n".join([
        f"## Solid textures: slices against a 2D texture network (`{command}`)", "",
        f"Machine: {machine(args.threads)} (shared with other work). Issue 37's target: slices in each direction "
        f"(seeds {seeds}, {count} random {side}x{side} slices one voxel thick each, at random places in "
        f"[-2^20, 2^20) of the seed's infinite volume) measured against the stored exemplar of their direction: judge "
        f"distance <= {JUDGE_RATIO:g}x the 2D texture network's on the same exemplar at the same budget; spectral "
        f"distance within 1.5 x floor + 0.1 (x exemplar: {first['target']:.3f}, floor {first['floor']:.3f}); colour <= "
        f"{COLOUR_TARGET:g} on every slice. Measures as `benchmarks/gatys.py` (on the 8-bit images, descriptor "
        f"`{desc.identity[:26]}…` in fp32, the default objective). The 2D network's samples: {count} per seed at "
        f"{side} px, noise seeds seed x 1000 + i, against the x exemplar.", "",
        f"{name}: {manifest['training']['iterations']} iterations, {manifest['training']['size']} px slices, batch "
        f"{manifest['training']['batch']}, lr {manifest['training']['lr']:g}, {manifest['training'].get('precision')}, "
        f"trained in {solid_seconds:.0f} s (its manifest). Baseline `{baseline_path.name}`: "
        f"{baseline_manifest['training']['iterations']} iterations, {baseline_manifest['training']['size']} px, batch "
        f"{baseline_manifest['training']['batch']}, lr {baseline_manifest['training']['lr']:g}, "
        f"{baseline_manifest['training'].get('precision')}, trained in {baseline_seconds:.0f} s (its manifest"
        + (f"; trained by this run: {trained_here:.0f} s wall, {args.threads} thread{'s' if args.threads > 1 else ''}"
           if trained_here is not None else "")
        + "). " + ("Same budget and exemplar." if not differences else
                   "**Not the same budget**: the baseline's " + "; ".join(differences) + "."), "",
        "Medians over seeds (judge / 2D: each seed's mean judge over the 2D network's at that seed; colour: the "
        "largest over every slice):", "",
        f"| what | judge | judge / 2D (<= {JUDGE_RATIO:g}) | spectral (target) | share within | colour | "
        f"colour max | objective |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |", *medians, "",
        "Target: " + "; ".join(verdicts) + ".", "",
        "Per seed (means over the slices; share within: slices at or under the spectral target):", "",
        "| seed | what | judge | judge / 2D | spectral | share within | colour | colour max | objective |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |", *per_seed, "",
        f"Seconds: solid slices made in {generation['solid']:.0f} s, measured in {measuring['solid']:.0f} s; 2D samples "
        f"made in {generation['baseline']:.0f} s, measured in {measuring['baseline']:.0f} s; the part took "
        f"{time.perf_counter() - began:.0f} s after loading.", "",
        f"`{shown_path(out)}`: per row, the exemplar (1:1) and 3 slices (seed {args.seeds[0]}) normal to x, "
        f"y and z, then 3 samples of the 2D network, all at 1:1 ({side} px).", ""])


def shown_path(path: Path) -> str:
    """A written file as the section names it: relative to the repository where it lies inside."""
    path = path.resolve()
    return str(path.relative_to(HERE.parent)) if path.is_relative_to(HERE.parent) else str(path)


def seed_list(text: str) -> list[int]:
    """'0-4' or '0,2,5' (or a mix) -> [0, 1, 2, 3, 4]."""
    out = []
    for item in text.split(","):
        a, _, b = item.partition("-")
        out += list(range(int(a), int(b) + 1)) if b else [int(a)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="steps,speed,preview",
                        help="steps, speed, memory (run it alone), preview; slices (not by default: needs --baseline or "
                             "--train-baseline).")
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
    parser.add_argument("--baseline", default=None,
                        help="slices: a 2D texture network (.safetensors) trained on --model's exemplar at its budget.")
    parser.add_argument("--train-baseline", default=None, metavar="PATH",
                        help="slices: train that baseline into PATH from --model's manifest (iterations, slice side, "
                             "batch, lr, seed, precision, objective) unless PATH is a finished model; resumes a stopped run.")
    parser.add_argument("--exemplar-file", type=Path, default=None,
                        help="slices: the file the solid model was trained on, where it is neither shipped nor shared")
    parser.add_argument("--baseline-iters", type=int, default=None,
                        help="slices: train the baseline for this many iterations instead of the solid's (smoke runs).")
    parser.add_argument("--seeds", type=seed_list, default=seed_list("0-4"), help="slices: volume seeds (0-4 or 0,2,5).")
    parser.add_argument("--slices", type=int, default=64, help="slices: random slices per direction and seed.")
    parser.add_argument("--slice-side", type=int, default=SLICE_SIDE, help="slices: their side in voxels.")
    parser.add_argument("--measure-batch", type=int, default=8, help="slices: images measured per batch.")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md", help="The RESULTS.md to write sections into.")
    parser.add_argument("--images", type=Path, default=HERE / "images", help="Where the sheets go.")
    parser.add_argument("--section", default=None, help="The section's name for a lone part (default solid-PART).")
    args = parser.parse_args()
    torch.set_num_threads(1)
    parts = {"steps": part_steps, "speed": part_speed, "memory": part_memory, "preview": part_preview,
             "slices": part_slices}
    names = args.parts.split(",")
    if args.section is not None and len(names) > 1:
        raise SystemExit("--section names the section of one part: give --parts one part")
    for part in names:
        body = parts[part](args)
        gatys_benchmark.replace_section(args.results, args.section or f"solid-{part}", body)
        print(body)


if __name__ == "__main__":
    main()
