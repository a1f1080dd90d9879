"""Gram against sliced Wasserstein objectives, in order of cost: does matching whole feature
distributions (Heitz et al. 2021) keep the palette that a Gram matrix lets collapse?

1. `screen`: Gatys at 256 px, 400 L-BFGS-B evaluations from the same noise, under `gram+color` (today's
   default) and `sw+color`, both with the spectrum term, in bf16 (RESULTS.md "bf16 descriptor passes":
   bf16 Gatys lands within fp32's spread), on the four classic textures.
2. `tune`: each shipped texture network fine-tuned (`--init`) for 400 iterations under each objective
   at the same iterations and seeds, 5 samples at 256 px.
3. `models`: texture networks trained elsewhere (from scratch under each loss), measured the same way.

Every image is measured the same way, whatever it was optimized for: the default objective's value
(the yardstick of the "objective" columns), the judge, spectral and colour distances
(`benchmarks/gatys.py` measures) and the palette spread (a*, b*; texport.objectives.metrics), all on
the saved 8-bit images. The gram+color Gatys runs are `benchmarks/precision.py`'s bf16 runs (same
settings, read from its cache). Runs are cached in benchmarks/cache/distribution/; writes the RESULTS.md
sections `distribution-screen` and `distribution-tune` and sheets in benchmarks/images/.

    OMP_NUM_THREADS=2 python benchmarks/distribution.py screen
    OMP_NUM_THREADS=2 python benchmarks/distribution.py tune --textures pebbles,bark
    python benchmarks/distribution.py models --models runs/a.safetensors,runs/b.safetensors --command "texport train texnet ..."
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gatys as gatys_benchmark  # noqa: E402
import precision as precision_benchmark  # noqa: E402

import texport  # noqa: E402
import texport.objectives.metrics as metrics  # noqa: E402
import texport.optimization.gatys as gatys  # noqa: E402
from texport.models.checkpoints import read_manifest  # noqa: E402
from texport.models.handle import resolve_model  # noqa: E402
from texport.models.loading import load_texnet, sample_texnet  # noqa: E402
from texport.objectives.descriptor import build_descriptor  # noqa: E402
from texport.objectives.losses import PO_LAYERS  # noqa: E402
from texport.objectives.objective import ObjectiveSpec, build_objective  # noqa: E402
from texport.textures.images import load_exemplar, load_image, quantize, save_image, side_by_side  # noqa: E402
from texport.training.texnet import TexnetRun, train_texnet  # noqa: E402

CACHE = HERE / "cache" / "distribution"
IMAGES = HERE / "images"
SIZE = 256
LOSSES = ("gram+color", "sw+color")
SAMPLES = 5
PRECISION = "bf16"


def cached(name: str, settings: dict, compute) -> dict:
    key = hashlib.sha256(json.dumps([name, settings, torch.__version__, texport.__version__], sort_keys=True).encode()).hexdigest()[:16]
    path = CACHE / f"{name}-{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    CACHE.mkdir(parents=True, exist_ok=True)
    record = compute(CACHE / f"{name}-{key}")
    path.write_text(json.dumps(record, indent=1))
    return record


def exemplar_of(texture: str) -> torch.Tensor:
    path = gatys_benchmark.texture_path(texture)
    return load_exemplar(path, gatys_benchmark.EXEMPLAR_CROPS.get(path.stem))


def measure(images: torch.Tensor, exemplar: torch.Tensor) -> dict:
    """Mean of each image's measures, and the palette spread of all of them pooled."""
    saved = quantize(images)
    rows = gatys_benchmark.measures(saved, exemplar, build_descriptor("vgg16-hed", PO_LAYERS))
    spread = metrics.palette_spread(saved, exemplar)
    return {**{k: statistics.mean(r[k] for r in rows) for k in ("objective", "judge", "spectral", "target", "color")},
            "color_max": max(r["color"] for r in rows), "palette_a": spread[0], "palette_b": spread[1]}


def screen_run(texture: str, loss: str, iters: int) -> dict:
    if loss == "gram+color":  # the same settings as precision.py's bf16 runs: read them from its cache
        record = precision_benchmark.gatys_run(texture, PRECISION, iters)
        image = load_image(precision_benchmark.CACHE / record["image"])
        return {**measure(image, exemplar_of(texture)), "texture": texture, "loss": loss, "image": str(
            (precision_benchmark.CACHE / record["image"]).relative_to(HERE)), "seconds_per_evaluation":
            record["seconds"] / record["evaluations"]}

    def compute(stem: Path) -> dict:
        exemplar = exemplar_of(texture)
        print(f"  gatys {texture} {loss}: {iters} evaluations ...", flush=True)
        objective = build_objective(exemplar, ObjectiveSpec(loss=loss, descriptor="vgg16-hed", precision=PRECISION))
        result = gatys.synthesize(exemplar, SIZE, iters, objective, seed=0, device="cpu")
        save_image(result.image, stem.with_suffix(".png"))
        return {**measure(result.image, exemplar), "texture": texture, "loss": loss,
                "image": str(stem.with_suffix(".png").relative_to(HERE)),
                "seconds_per_evaluation": result.seconds / result.evaluations}

    return cached("gatys", {"texture": texture, "loss": loss, "iters": iters, "size": SIZE, "precision": PRECISION,
                            "bf16_path": precision_benchmark.BF16_PATH}, compute)


def variant(name: str) -> tuple[str, int, float | None]:
    """'gram+color' -> ('gram+color', 1, None); 'gram+color/co5/cw100' -> ('gram+color', 5, 100.0): the loss, its
    colour octaves and a colour weight in place of the shipped network's (None: the network's own)."""
    loss, *options = name.split("/")
    settings = {option[:2]: option[2:] for option in options}
    unknown = set(settings) - {"co", "cw"}
    if unknown:
        raise SystemExit(f"variant {name!r}: unknown option(s) {', '.join(sorted(unknown))} (coN, cwX)")
    return loss, int(settings.get("co", 1)), float(settings["cw"]) if "cw" in settings else None


def variant_label(name: str) -> str:
    loss, octaves, weight = variant(name)
    return loss + (f", {octaves} colour octaves" if octaves != 1 else "") + (f", colour weight {weight:g}" if weight else "")


def tune_run(texture: str, name: str, iters: int, seed: int) -> dict:
    loss, color_octaves, color_weight = variant(name)
    source = resolve_model(texture)
    manifest = read_manifest(source)
    training, objective = manifest["training"], manifest["objective"]
    path = gatys_benchmark.texture_path(texture)

    def compute(stem: Path) -> dict:
        times = []
        start = time.perf_counter()
        print(f"  fine-tune {texture} {variant_label(name)} seed {seed}: {iters} iterations ...", flush=True)
        out = stem.with_suffix(".safetensors")
        run = TexnetRun.of(path, out, init=texture, iters=iters, batch=training["batch"], size=training["size"],
                           lr=training["lr"], seed=seed, checkpoint_every=0, device="cpu", crop=manifest["texture"]["crop"],
                           loss=loss, layers=objective["layers"], color_weight=color_weight or objective["color_weight"],
                           color_octaves=color_octaves, spectrum_weight=objective["spectrum_weight"], descriptor="vgg16-hed", precision=PRECISION)
        train_texnet(run, progress=lambda done, value: times.append(time.perf_counter() - start))
        exemplar = load_exemplar(path, manifest["texture"]["crop"])
        samples = quantize(sample_texnet(load_texnet(out), SIZE, seed=0, count=SAMPLES))
        save_image(side_by_side([s[None] for s in samples[:3]], height=SIZE), stem.with_suffix(".png"))
        return {**measure(samples, exemplar), "texture": texture, "loss": loss, "seed": seed, "iters": iters,
                "seconds_per_step": (times[-1] - times[0]) / max(1, len(times) - 1),
                "loss_history": read_manifest(out)["training"]["loss_history"],
                "image": str(stem.with_suffix(".png").relative_to(HERE)), "model": out.name}

    settings = {"texture": texture, "loss": loss, "iters": iters, "seed": seed, "precision": PRECISION,
                "model": manifest["training"]}
    if color_octaves != 1:  # the runs before colour octaves existed keep their cache keys
        settings["color_octaves"] = color_octaves
    if color_weight:
        settings["color_weight"] = color_weight
    return cached("tune", settings, compute)


def speed(repeats: int = 3) -> dict:
    """Seconds of one Gatys evaluation (256 px) and one training step (the pebbles network's batch and
    size) under each loss, best of `repeats`, the losses interleaved so that load on the machine
    falls on both alike."""
    pebbles = exemplar_of("pebbles")
    manifest = read_manifest(resolve_model("pebbles"))
    batch, size = manifest["training"]["batch"], manifest["training"]["size"]
    net = load_texnet("pebbles").network.train()
    noise = net.noise(size, size, seed=0, batch=batch)
    x = torch.rand(1, 3, SIZE, SIZE, requires_grad=True)
    work = {}
    for loss in LOSSES:
        spec = ObjectiveSpec(loss=loss, descriptor="vgg16-hed", precision=PRECISION)
        objective, tileable = build_objective(pebbles, spec), build_objective(pebbles, spec, tileable=True)

        def evaluation(objective=objective):
            torch.autograd.grad(objective(x)["total"].sum(), x)

        def step(objective=tileable):
            net.zero_grad(set_to_none=True)
            objective(net(noise))["total"].mean().backward()

        work[loss] = {"evaluation": evaluation, "step": step}
    best = {loss: {part: float("inf") for part in parts} for loss, parts in work.items()}
    for _ in range(repeats):
        for loss, parts in work.items():
            for part, function in parts.items():
                start = time.perf_counter()
                function()
                best[loss][part] = min(best[loss][part], time.perf_counter() - start)
    return best


def model_row(path: Path) -> dict:
    """A texture network file (trained elsewhere, e.g. from scratch under each loss) measured like the others."""
    manifest = read_manifest(path)
    texture = manifest["texture"]["name"]
    exemplar = load_exemplar(gatys_benchmark.texture_path(texture), manifest["texture"]["crop"])
    samples = quantize(sample_texnet(load_texnet(path), SIZE, seed=0, count=SAMPLES))
    image = CACHE / f"model-{path.stem}.png"
    CACHE.mkdir(parents=True, exist_ok=True)
    save_image(side_by_side([s[None] for s in samples[:3]], height=SIZE), image)
    training, objective = manifest["training"], manifest["objective"]
    octaves = objective.get("color_octaves", 1)
    return {**measure(samples, exemplar), "texture": texture, "image": str(image.relative_to(HERE)),
            "label": f"{objective['loss']}" + (f", {octaves} colour octaves" if octaves != 1 else "")
                     + f", colour weight {objective['color_weight']:g}, {training['iterations']} iterations from "
                     + ("scratch" if "initialized_from" not in training else training["initialized_from"]["model"]),
            "seconds": training["seconds"]}


def shipped_row(texture: str) -> dict:
    """The shipped network as it is: the row every fine-tune is compared with."""
    def compute(stem: Path) -> dict:
        manifest = read_manifest(resolve_model(texture))
        exemplar = load_exemplar(gatys_benchmark.texture_path(texture), manifest["texture"]["crop"])
        samples = quantize(sample_texnet(load_texnet(resolve_model(texture)), SIZE, seed=0, count=SAMPLES))
        return {**measure(samples, exemplar), "texture": texture, "loss": "shipped", "seed": None}

    return cached("shipped", {"texture": texture, "model": read_manifest(resolve_model(texture))["training"]}, compute)


def table(rows: list[dict], first: str) -> list[str]:
    lines = [f"| texture | {first} | objective | judge | spectral (target) | colour (max) | palette a* | palette b* |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        ok = "ok" if r["spectral"] <= r["target"] else "over"
        lines.append(f"| {r['texture']} | {r['label']} | {r['objective']:.4g} | {r['judge']:.3f} | {r['spectral']:.3f} "
                     f"({r['target']:.3f}, {ok}) | {r['color']:.4f} ({r['color_max']:.4f}) | {r['palette_a']:.2f} | "
                     f"{r['palette_b']:.2f} |")
    lines += ["", "Median over textures:", "", f"| {first} | objective | judge | spectral / target | colour | palette a* | palette b* |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for label in dict.fromkeys(r["label"] for r in rows):
        sel = [r for r in rows if r["label"] == label]
        med = lambda key: statistics.median(key(r) for r in sel)  # noqa: E731
        lines.append(f"| {label} | {med(lambda r: r['objective']):.4g} | {med(lambda r: r['judge']):.3f} | "
                     f"{med(lambda r: r['spectral'] / r['target']):.2f} | {med(lambda r: r['color']):.4f} | "
                     f"{med(lambda r: r['palette_a']):.2f} | {med(lambda r: r['palette_b']):.2f} |")
    return lines


def sheet(textures: list[str], rows: list[dict], name: str) -> str:
    strips = [side_by_side([exemplar_of(t)] + [load_image(HERE / r["image"]) for r in rows
                                              if r["texture"] == t and "image" in r], height=SIZE) for t in textures]
    width = max(s.shape[-1] for s in strips)
    IMAGES.mkdir(exist_ok=True)
    save_image(torch.cat([torch.nn.functional.pad(s, (0, width - s.shape[-1])) for s in strips], dim=2), IMAGES / name)
    return f"`benchmarks/images/{name}`"


def machine() -> str:
    return (f"{gatys_benchmark.cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}, texport "
            f"{texport.__version__}, descriptor vgg16-hed in {PRECISION}; measured {time.strftime('%Y-%m-%d')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=("screen", "tune", "models"))
    parser.add_argument("--models", default="", help="models stage: texture network files to measure")
    parser.add_argument("--command", default="", help="models stage: how they were trained (quoted in RESULTS.md)")
    parser.add_argument("--textures", default=gatys_benchmark.TEXTURES)
    parser.add_argument("--iters", type=int, default=400)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--section", default=None, help="tune stage: the RESULTS.md section (default distribution-tune)")
    parser.add_argument("--variants", default=",".join(LOSSES),
                        help="tune stage: losses, each optionally /coN for N colour octaves and /cwX for colour weight X "
                             "(gram+color/co5/cw100)")
    args = parser.parse_args()
    textures = args.textures.split(",")
    if args.stage == "screen":
        rows = [dict(screen_run(t, loss, args.iters), label=loss) for t in textures for loss in LOSSES]
        images = sheet(textures, rows, "distribution_screen.png")
        cost = speed()
        body = ["## Gram against sliced Wasserstein: the Gatys screen (`benchmarks/distribution.py screen`)", "",
                f"Gatys at {SIZE} px, {args.iters} L-BFGS-B evaluations from the same noise (seed 0), spectrum term at its "
                f"default weight, each loss with its colour term. Measures on the saved 8-bit image: objective = today's "
                f"default objective (gram+color + spectrum), whatever was optimized; palette = palette spread (std of 32x32 "
                f"patch-mean CIELAB chroma / the exemplar's; 1 is the exemplar's). {machine()}.", "",
                *table(rows, "loss"), "",
                "Cost, best of 3, losses interleaved (seconds; a Gatys evaluation at 256 px, a training step at the pebbles "
                "network's batch and size): " + ", ".join(
                    f"{loss} {cost[loss]['evaluation']:.3f} / {cost[loss]['step']:.3f}" for loss in LOSSES)
                + f"; sw+color / gram+color {cost['sw+color']['evaluation'] / cost['gram+color']['evaluation']:.2f}x per "
                f"evaluation, {cost['sw+color']['step'] / cost['gram+color']['step']:.2f}x per step.", "",
                "Seconds per evaluation in the runs above (beside other jobs; the gram+color runs are precision.py's): "
                + ", ".join(f"{r['texture']} {r['label']} {r['seconds_per_evaluation']:.2f}" for r in rows),
                "", f"Images (per row: exemplar | gram+color | sw+color): {images}", ""]
        gatys_benchmark.replace_section(gatys_benchmark.RESULTS, "distribution-screen", "\n".join(body))
    elif args.stage == "models":
        rows = [model_row(Path(m)) for m in args.models.split(",")]
        images = sheet(sorted({r["texture"] for r in rows}), rows, "distribution_models.png")
        body = ["## Gram against sliced Wasserstein: texture networks trained from scratch (`benchmarks/distribution.py models`)", "",
                f"Trained with `{args.command}`, the same seed, batch, size, learning rate and weights under each loss; "
                f"{SAMPLES} samples at {SIZE} px (seeds 0-4), measures as in the screen. {machine()}.", "",
                *table(rows, "run"), "",
                "Training seconds (beside other jobs): " + ", ".join(f"{r['label']} {r['seconds']:.0f}" for r in rows), "",
                f"Images (per row: exemplar | 3 samples of each run, in the table's order): {images}", ""]
        gatys_benchmark.replace_section(gatys_benchmark.RESULTS, "distribution-models", "\n".join(body))
    else:
        rows = []
        for t in textures:
            rows.append(dict(shipped_row(t), label="shipped"))
            for name in args.variants.split(","):
                for seed in (int(s) for s in args.seeds.split(",")):
                    rows.append(dict(tune_run(t, name, args.iters, seed), label=f"{variant_label(name)} seed {seed}"))
        images = sheet(textures, rows, f"{(args.section or 'distribution-tune').replace('-', '_')}.png")
        command = f"tune --textures {args.textures} --section {args.section}" if args.section else "tune"
        body = [f"## Gram against sliced Wasserstein: fine-tuned texture networks (`benchmarks/distribution.py {command}`)", "",
                f"Each shipped network fine-tuned from its own weights for {args.iters} iterations (its batch, size, lr, "
                f"layers and weights) under each loss (`--variants {args.variants}`; N colour octaves: the colour term "
                f"matched on N Gaussian-pyramid levels, regional colours as well as pixels), in {PRECISION}; {SAMPLES} samples at {SIZE} px (seeds 0-4), measures "
                f"as in the screen (mean over samples, palette spread pooled). {machine()}.", "",
                *table(rows, "run"), "",
                "Seconds per step: " + ", ".join(f"{r['texture']} {r['label']} {r['seconds_per_step']:.2f}" for r in rows if "seconds_per_step" in r),
                "", f"Images (per row: exemplar | 3 samples of each fine-tune, in the table's order): {images}", ""]
        gatys_benchmark.replace_section(gatys_benchmark.RESULTS, args.section or "distribution-tune", "\n".join(body))
    print("\n".join(body))


if __name__ == "__main__":
    main()
