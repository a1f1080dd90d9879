"""bf16 descriptor passes against fp32: speed and quality, for Gatys and for training.

1. Speed: one descriptor pass (VGG up to pool4, forward and backward to the image) and one Gatys
   evaluation at 256 px, and one texture-network training step (the shipped pebbles network's batch
   and size), in each precision, best of `--repeats`, on this machine's threads.
2. Gatys: 256 px, 400 L-BFGS-B evaluations of the default objective from the same noise on the four
   classic textures, optimized in fp32 and in bf16; every result measured the same way in fp32 on its
   saved 8-bit image (benchmarks/gatys.py `measures`: objective, judge, spectral, colour); and in fp32
   from another noise, since L-BFGS is chaotic: any change of rounding moves its end point, and two
   fp32 runs show how far.
3. Training: the shipped pebbles network fine-tuned for `--tune-iters` iterations on its own
   objective from its own weights, in fp32 and in bf16 from each of `--tune-seeds` (the fp32 runs' range is
   the run-to-run spread a bf16 run is held to); loss curves in one plot, end measures of 5 samples at
   256 px.

Runs are cached in benchmarks/cache/precision/ (by settings); writes its RESULTS.md section and
benchmarks/images/precision_loss.png, precision_gatys.png.

    OMP_NUM_THREADS=2 python benchmarks/precision.py        # add --no-spread to skip the fp32 seed-1 Gatys runs
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gatys as gatys_benchmark  # noqa: E402

import texport  # noqa: E402
import texport.optimization.gatys as gatys  # noqa: E402
from texport.devices import cpu_has_native_bf16  # noqa: E402
from texport.models.checkpoints import read_manifest  # noqa: E402
from texport.models.handle import resolve_model  # noqa: E402
from texport.models.loading import load_texnet, sample_texnet  # noqa: E402
from texport.objectives.descriptor import build_descriptor  # noqa: E402
from texport.objectives.losses import PO_LAYERS  # noqa: E402
from texport.objectives.objective import ObjectiveSpec, build_objective  # noqa: E402
from texport.textures.images import load_exemplar, load_image, quantize, save_image, side_by_side  # noqa: E402
from texport.training.texnet import TexnetRun, train_texnet  # noqa: E402

CACHE = HERE / "cache" / "precision"
IMAGES = HERE / "images"
SIZE = 256
PRECISIONS = ("fp32", "bf16")
SAMPLES = 5


def best_seconds(function, repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def speed(repeats: int) -> dict:
    """Seconds of a descriptor pass, a Gatys evaluation and a training step in each precision."""
    pebbles = load_exemplar(gatys_benchmark.texture_path("pebbles"), gatys_benchmark.EXEMPLAR_CROPS["pebbles"])
    manifest = read_manifest(resolve_model("pebbles"))
    batch, size = manifest["training"]["batch"], manifest["training"]["size"]
    out = {}
    for precision in PRECISIONS:
        desc = build_descriptor("vgg16-hed", PO_LAYERS, precision=precision)
        x = torch.rand(1, 3, SIZE, SIZE, requires_grad=True)

        def descriptor_pass():
            features = desc(x, padding="circular")
            torch.autograd.grad(sum(f.square().mean() for f in features.values()), x)

        objective = build_objective(pebbles, descriptor=desc)

        def evaluation():
            torch.autograd.grad(objective(x)["total"].sum(), x)

        loaded = load_texnet("pebbles")
        net = loaded.network.train()
        step_objective = build_objective(pebbles, descriptor=desc, tileable=True)
        noise = net.noise(size, size, seed=0, batch=batch)

        def training_step():
            net.zero_grad(set_to_none=True)
            step_objective(net(noise))["total"].mean().backward()

        out[precision] = {"pass": best_seconds(descriptor_pass, repeats), "evaluation": best_seconds(evaluation, repeats),
                          "step": best_seconds(training_step, repeats)}
    return out


# what the bf16 path computes: a change to it invalidates the bf16 records (padding inside the conv for
# zeros, BorderPad for circular and reflect, channels-last fp32 taps)
BF16_PATH = "conv-padding/border-pad/channels-last-taps"
# what every path computes after the descriptor: a change invalidates all records (losses.gram's own
# backward, sliced Wasserstein targets resampled once per size)
LOSS_PATH = "gram-own-backward/cached-quantiles"


def cached(name: str, settings: dict, compute) -> dict:
    settings = dict(settings, loss_path=LOSS_PATH)
    if settings.get("precision") == "bf16":
        settings = dict(settings, bf16_path=BF16_PATH)
    key = hashlib.sha256(json.dumps([name, settings, torch.__version__, texport.__version__], sort_keys=True).encode()).hexdigest()[:16]
    path = CACHE / f"{name}-{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    record = compute(CACHE / f"{name}-{key}")
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    return record


def gatys_run(texture: str, precision: str, iters: int, seed: int = 0) -> dict:
    path = gatys_benchmark.texture_path(texture)
    crop = gatys_benchmark.EXEMPLAR_CROPS.get(path.stem)

    def compute(stem: Path) -> dict:
        exemplar = load_exemplar(path, crop)
        print(f"  gatys {texture} {precision} seed {seed}: {iters} evaluations ...", flush=True)
        objective = build_objective(exemplar, ObjectiveSpec(descriptor="vgg16-hed", precision=precision))
        result = gatys.synthesize(exemplar, SIZE, iters, objective, seed=seed, device="cpu")
        fp32 = build_descriptor("vgg16-hed", PO_LAYERS)
        CACHE.mkdir(parents=True, exist_ok=True)
        save_image(result.image, stem.with_suffix(".png"))
        return dict(gatys_benchmark.measures(result.image, exemplar, fp32)[0], texture=texture, precision=precision, seed=seed,
                    evaluations=result.evaluations, seconds=result.seconds, optimized_loss=result.loss,
                    image=stem.with_suffix(".png").name)

    settings = {"texture": texture, "precision": precision, "iters": iters, "size": SIZE,
                "exemplar": hashlib.sha256(path.read_bytes()).hexdigest()}
    return dict(cached("gatys", dict(settings, seed=seed) if seed else settings, compute), seed=seed)


def tune_run(precision: str, seed: int, iters: int) -> dict:
    source = resolve_model("pebbles")
    manifest = read_manifest(source)
    training, objective = manifest["training"], manifest["objective"]
    path = gatys_benchmark.texture_path("pebbles")

    def compute(stem: Path) -> dict:
        losses, times = [], []
        start = time.perf_counter()

        def progress(done: int, loss: float) -> None:
            times.append(time.perf_counter() - start)

        print(f"  fine-tune pebbles {precision} seed {seed}: {iters} iterations ...", flush=True)
        out = stem.with_suffix(".safetensors")
        CACHE.mkdir(parents=True, exist_ok=True)
        run = TexnetRun.of(path, out, init="pebbles", iters=iters, batch=training["batch"], size=training["size"],
                           lr=training["lr"], seed=seed, checkpoint_every=0, device="cpu", crop=manifest["texture"]["crop"],
                           loss=objective["loss"], layers=objective["layers"], color_weight=objective["color_weight"],
                           spectrum_weight=objective["spectrum_weight"], descriptor="vgg16-hed", precision=precision)
        report = train_texnet(run, progress=progress)
        losses = read_manifest(out)["training"]["loss_history"]  # the mean of every 10 iterations
        exemplar = load_exemplar(path, manifest["texture"]["crop"])
        samples = quantize(sample_texnet(load_texnet(out), SIZE, seed=0, count=SAMPLES))
        measured = gatys_benchmark.measures(samples, exemplar, build_descriptor("vgg16-hed", PO_LAYERS))
        save_image(side_by_side([exemplar] + [s[None] for s in samples[:3]], height=SIZE), stem.with_suffix(".png"))
        out.unlink()
        return {"precision": precision, "seed": seed, "iters": iters, "loss_history": losses,
                "seconds_per_step": (times[-1] - times[0]) / max(1, len(times) - 1), "final_loss": report.loss,
                "threads": torch.get_num_threads(),
                **{k: statistics.mean(m[k] for m in measured) for k in ("objective", "judge", "spectral", "color")},
                "image": stem.with_suffix(".png").name}

    return cached("tune", {"precision": precision, "seed": seed, "iters": iters, "model": manifest["training"]}, compute)


def plot(curves: dict[str, list[float]], every: int, path: Path) -> None:
    """Loss curves (mean of every `every` iterations) on a log scale, one colour per precision."""
    width, height, margin = 720, 420, 60
    values = [v for curve in curves.values() for v in curve if v > 0]
    low, high = min(values), max(values)
    import math

    def xy(i: int, v: float, n: int) -> tuple[float, float]:
        x = margin + (width - 2 * margin) * i / max(1, n - 1)
        y = height - margin - (height - 2 * margin) * (math.log(v) - math.log(low)) / max(1e-9, math.log(high) - math.log(low))
        return x, y

    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([margin, margin, width - margin, height - margin], outline="black")
    colours = {"fp32": (31, 119, 180), "bf16": (255, 127, 14)}
    for n, (label, curve) in enumerate(curves.items()):
        colour = colours[label.split()[0]]
        points = [xy(i, v, len(curve)) for i, v in enumerate(curve)]
        draw.line(points, fill=colour, width=2 if "seed 0" in label else 1)
        draw.text((margin + 10, margin + 10 + 14 * n), label, fill=colour)
    draw.text((margin, height - margin + 8), f"iteration 0 .. {every * max(len(c) for c in curves.values())}", fill="black")
    draw.text((4, margin - 16), f"training loss (log scale, {low:.3g} .. {high:.3g}), mean of every {every}", fill="black")
    path.parent.mkdir(exist_ok=True)
    image.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--textures", default=gatys_benchmark.TEXTURES)
    parser.add_argument("--gatys-iters", type=int, default=gatys_benchmark.BUDGET)
    parser.add_argument("--tune-iters", type=int, default=300)
    parser.add_argument("--tune-seeds", default="0,1,2", help="fine-tunes from each seed in each precision")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-speed", action="store_true", help="leave the speed table as RESULTS.md has it")
    parser.add_argument("--no-spread", dest="spread", action="store_false",
                        help="skip Gatys in fp32 from a second noise (seed 1): how far two fp32 runs' objectives differ")
    args = parser.parse_args()
    timing = None if args.skip_speed else speed(args.repeats)
    gatys_rows = [gatys_run(t, p, args.gatys_iters) for t in args.textures.split(",") for p in PRECISIONS]
    spread_rows = [gatys_run(t, "fp32", args.gatys_iters, seed=1) for t in args.textures.split(",")] if args.spread else []
    tune_rows = [tune_run(p, int(seed), args.tune_iters) for p in PRECISIONS for seed in args.tune_seeds.split(",")]
    IMAGES.mkdir(exist_ok=True)
    plot({f"{r['precision']} seed {r['seed']}": r["loss_history"] for r in tune_rows}, 10, IMAGES / "precision_loss.png")
    sheet = [side_by_side([load_exemplar(gatys_benchmark.texture_path(t), gatys_benchmark.EXEMPLAR_CROPS.get(t))]
                          + [load_image(CACHE / r["image"]) for r in gatys_rows + spread_rows if r["texture"] == t], height=SIZE)
             for t in args.textures.split(",")]
    save_image(torch.cat([torch.nn.functional.pad(s, (0, max(x.shape[-1] for x in sheet) - s.shape[-1])) for s in sheet], dim=2),
               IMAGES / "precision_gatys.png")
    write_results(timing, gatys_rows, spread_rows, tune_rows, args)


def write_results(timing, gatys_rows, spread_rows, tune_rows, args) -> None:
    machine = f"{gatys_benchmark.cpu_name()}, {torch.get_num_threads()} threads, native bf16: {cpu_has_native_bf16()}"
    lines = ["## bf16 descriptor passes (`benchmarks/precision.py`)", "",
             f"Machine: {machine}; torch {torch.__version__}, texport {texport.__version__}; measured {time.strftime('%Y-%m-%d')}. "
             "bf16: the descriptor's convolutions in bf16 on channels-last activations (autocast); images, Gram "
             "matrices, spectra, sorting, losses and optimizer state in fp32. Descriptor vgg16-hed, layers "
             f"{', '.join(PO_LAYERS)}.", ""]
    section = RESULTS_SECTION
    if timing is None:
        text = gatys_benchmark.RESULTS.read_text()
        start = text.find("<!-- precision-speed:start -->")
        if start >= 0:
            lines.append(text[start:text.index("<!-- precision-speed:end -->") + len("<!-- precision-speed:end -->")])
    else:
        speed_lines = ["<!-- precision-speed:start -->",
                       f"Speed, best of {args.repeats} (seconds; {SIZE} px for a pass and an evaluation, the pebbles network's "
                       "batch and size for a training step):", "",
                       "| what | fp32 | bf16 | speed-up |", "| --- | --- | --- | --- |"]
        for what, label in (("pass", "descriptor pass (forward + backward to the image)"),
                            ("evaluation", "Gatys evaluation (default objective)"), ("step", "texture-network training step")):
            a, b = timing["fp32"][what], timing["bf16"][what]
            speed_lines.append(f"| {label} | {a:.3f} | {b:.3f} | {a / b:.2f}x |")
        speed_lines.append("<!-- precision-speed:end -->")
        lines += speed_lines
    lines += ["", f"Gatys, {SIZE} px, {args.gatys_iters} L-BFGS-B evaluations from the same noise (seed 0), optimized in "
              "each precision" + (", and in fp32 from another noise (seed 1): two fp32 runs' spread" if spread_rows else "")
              + "; every measure in fp32 on the saved 8-bit image (`benchmarks/gatys.py` measures). "
              "Seconds per evaluation include L-BFGS-B's own work.", "",
              "| texture | precision | seed | objective | judge | spectral | colour | s / evaluation |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in gatys_rows + spread_rows:
        lines.append(f"| {r['texture']} | {r['precision']} | {r['seed']} | {r['objective']:.4g} | {r['judge']:.3f} | {r['spectral']:.3f} | "
                     f"{r['color']:.4f} | {r['seconds'] / r['evaluations']:.3f} |")
    lines += ["", "Per texture, bf16 against fp32 (seed 0)" + (", and fp32 seed 1 against fp32 seed 0" if spread_rows else "") + ":", "",
              "| texture | objective bf16 / fp32 | judge bf16 - fp32 |" + (" objective fp32 seed 1 / seed 0 | judge seed 1 - seed 0 |" if spread_rows else ""),
              "| --- | --- | --- |" + (" --- | --- |" if spread_rows else "")]
    by = {(r["texture"], r["precision"], r["seed"]): r for r in gatys_rows + spread_rows}
    ratios, judges, spread_ratios, spread_judges = [], [], [], []
    for t in args.textures.split(","):
        a, b = by[(t, "fp32", 0)], by[(t, "bf16", 0)]
        ratios.append(b["objective"] / a["objective"])
        judges.append(b["judge"] - a["judge"])
        line = f"| {t} | {ratios[-1]:.3f} | {judges[-1]:+.4f} |"
        if spread_rows:
            c = by[(t, "fp32", 1)]
            spread_ratios.append(c["objective"] / a["objective"])
            spread_judges.append(c["judge"] - a["judge"])
            line += f" {spread_ratios[-1]:.3f} | {spread_judges[-1]:+.4f} |"
        lines.append(line)
    lines.append(f"| median | {statistics.median(ratios):.3f} | {statistics.median(judges):+.4f} |"
                 + (f" {statistics.median(spread_ratios):.3f} | {statistics.median(spread_judges):+.4f} |" if spread_rows else ""))
    lines += ["", f"Training: the shipped pebbles network fine-tuned for {args.tune_iters} iterations on its own objective and "
              "settings from its own weights; 5 samples at 256 px measured in fp32. Curves: "
              "`benchmarks/images/precision_loss.png`.", "",
              "| precision | seed | final training loss | objective | judge | spectral | colour | s / step | threads |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in tune_rows:
        lines.append(f"| {r['precision']} | {r['seed']} | {r['final_loss']:.4g} | {r['objective']:.4g} | {r['judge']:.3f} | "
                     f"{r['spectral']:.3f} | {r['color']:.4f} | {r['seconds_per_step']:.3f} | {r.get('threads', RECORD_THREADS)} |")
    lines += ["", "End measures, the range over seeds in each precision (the target: bf16 inside fp32's range; "
              "s / step above ran on the threads given, under the other core's load where 1: the speed table is the "
              "clean comparison):", "", "| measure | fp32 | bf16 | bf16 inside fp32's range |", "| --- | --- | --- | --- |"]
    for key in ("final_loss", "objective", "judge", "spectral", "color"):
        ranges = {p: [r[key] for r in tune_rows if r["precision"] == p] for p in PRECISIONS}
        low, high = min(ranges["fp32"]), max(ranges["fp32"])
        inside = sum(low <= v <= high for v in ranges["bf16"])
        lines.append(f"| {key.replace('_', ' ')} | {low:.4g} - {high:.4g} | {min(ranges['bf16']):.4g} - {max(ranges['bf16']):.4g} | "
                     f"{inside} of {len(ranges['bf16'])} |")
    lines += ["", "Images: `benchmarks/images/precision_gatys.png` (per row: exemplar | fp32 | bf16"
              + (" | fp32 seed 1" if spread_rows else "") + ").", ""]
    gatys_benchmark.replace_section(gatys_benchmark.RESULTS, section, "\n".join(lines))
    print("\n".join(lines))


RESULTS_SECTION = "precision"
RECORD_THREADS = 2  # records made before they kept their thread count ran with OMP_NUM_THREADS=2

if __name__ == "__main__":
    main()
