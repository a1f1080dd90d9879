"""Texture networks against the Gatys reference: quality (Quality v2 measures), diversity, speed, memory.

For each texture network at 256x256, on the descriptor it was trained with: the measures of
benchmarks/gatys.py (`measures`: the default objective's value, i.e. Gram + colour + spectrum, the
spectral distance against its target, the judge's distance, colour distance, the plain Gram loss)
of 5 network samples (seeds 0-4, mean) and of a Gatys result (400 L-BFGS-B evaluations of the
default objective, cached by benchmarks/gatys.py); the objective ratio; diversity (Shi & Qiao 2020 eq. 11,
conv4_2) of 5 samples and, for one texture, of 5 Gatys runs with seeds 0-4, both at 128 px (five
400-evaluation Gatys runs at 256 px cost more than this benchmark's 2-core budget); seconds per image
and the speed-up; then, with --large, seconds and peak memory at 512, 1024 and 2048 px, each size in
a fresh process. Every measure on the images as saved (8-bit). Each texture has its row, and the
median across textures stands beside the ratio of means. Writes its section of RESULTS.md.

    python benchmarks/quality.py                         # every shipped texture network
    python benchmarks/quality.py --models pebbles,runs/pebbles.safetensors --gatys-diversity none
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gatys as gatys_benchmark  # noqa: E402  (benchmarks/gatys.py: the cached Gatys reference)

import texport  # noqa: E402
import texport.objectives.losses as losses  # noqa: E402
import texport.objectives.metrics as metrics  # noqa: E402
from texport.models.checkpoints import read_manifest, training_chain  # noqa: E402
from texport.objectives.descriptor import build_descriptor  # noqa: E402
from texport.textures.images import load_exemplar, load_image, quantize, save_image, side_by_side  # noqa: E402
from texport.models.loading import load_texnet, sample_texnet
from texport.models.handle import shipped_models  # noqa: E402
from texport.training.texnet import TRAIN_SEED_OFFSET, recalibrate_batchnorm  # noqa: E402

SIZE = 256
SAMPLES = 5
DIVERSITY_SIZE = 128  # diversity of 5 network samples and 5 Gatys runs (seeds 0-4), both at this size
LARGE = (512, 1024, 2048)
TARGETS = {"objective_ratio": 10.0, "objective_goal": 3.0, "color": 0.01, "diversity_ratio": 0.9, "speedup": 500.0}


def exemplar_for(manifest: dict) -> Path:
    """The exemplar the network was trained on (checked by sha256), from ../shared/textures or the package."""
    import hashlib

    path = gatys_benchmark.texture_path(manifest["texture"]["name"])
    if hashlib.sha256(path.read_bytes()).hexdigest() != manifest["texture"]["sha256"]:
        raise SystemExit(f"{path} is not the exemplar {manifest['name']} was trained on (sha256 differs)")
    return path


def budget(training: dict) -> tuple[str, float]:
    """Iterations ("first+...+own" for a fine-tuned network, every start of the chain) and training seconds,
    the starts' included."""
    chain = training_chain(training)
    return "+".join(str(c["iterations"]) for c in chain), sum(float(c.get("seconds") or 0) for c in chain)


def seconds_per_image(model, size: int, repeats: int = 5) -> float:
    sample_texnet(model, size, seed=100)  # warm-up
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        sample_texnet(model, size, seed=r)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_large(model_path: Path, size: int, device: str) -> dict:
    """Seconds and peak memory at one size, in a fresh process so peaks do not mix."""
    out = subprocess.run([sys.executable, __file__, "--_one-size", str(model_path), str(size), "--device", device],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _one_size(model_path: str, size: int, device: str) -> None:
    import resource

    model = load_texnet(model_path, device)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    seconds = seconds_per_image(model, size, repeats=3 if size <= 1024 else 1)
    if device.startswith("cuda"):
        peak, total = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
    else:  # growth over the loaded model's process, and the whole process (torch itself included)
        top = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak, total = (top - base) * 1024, top * 1024
    print(json.dumps({"size": size, "seconds": seconds, "peak_mib": peak / 2**20, "total_mib": total / 2**20,
                      "memory": "CUDA max allocated / reserved" if device.startswith("cuda")
                      else "peak RSS growth over the loaded model / whole process peak RSS"}))


def measure_model(model_path: Path, device: str, gatys_diversity: bool) -> dict:
    loaded = load_texnet(model_path, device)
    manifest = loaded.manifest
    training = manifest["training"]
    if not str(training.get("batchnorm", "")).startswith("recalibrated"):  # an intermediate checkpoint: finish it as training would
        recalibrate_batchnorm(loaded.network, training["size"], training["batch"], seed=TRAIN_SEED_OFFSET // 2 + training["seed"] * 4096)
    path = exemplar_for(manifest)
    crop = manifest["texture"].get("crop")
    exemplar = load_exemplar(path, crop)
    desc = build_descriptor(manifest["descriptor"].split(":")[0], losses.PO_LAYERS + (losses.DIVERSITY_LAYER,),
                            device=device, expect_identity=manifest["descriptor"])
    samples = quantize(sample_texnet(loaded, SIZE, seed=0, count=SAMPLES))
    net = gatys_benchmark.measures(samples, exemplar, desc)

    def diversity(images: torch.Tensor) -> float:
        with torch.no_grad():
            return float(losses.diversity(desc(images, padding="reflect")[losses.DIVERSITY_LAYER]))

    net_div = diversity(quantize(sample_texnet(loaded, DIVERSITY_SIZE, seed=0, count=SAMPLES)))
    ref = gatys_benchmark.run_one(path, SIZE, "gram+color", gatys_benchmark.BUDGET, 0, device, desc, crop)
    gatys_div = None
    if gatys_diversity:  # 5 Gatys runs (seeds 0-4) at DIVERSITY_SIZE
        runs = [gatys_benchmark.run_one(path, DIVERSITY_SIZE, "gram+color", gatys_benchmark.BUDGET, s, device, desc, crop)
                for s in range(SAMPLES)]
        gatys_div = diversity(torch.cat([load_image(gatys_benchmark.CACHE / f"{r['key']}.png") for r in runs]))
    row = {"objective_floor": gatys_benchmark.objective_floor(exemplar, desc),
           "model": str(model_path), "texture": manifest["texture"]["name"], "iterations": budget(training)[0],
           "train_seconds": budget(training)[1], "net_div": net_div, "gatys_div": gatys_div,
           "net_seconds": seconds_per_image(loaded, SIZE), "gatys_seconds": ref["seconds"],
           "objective": manifest.get("objective", {}), **{f"net_{k}": statistics.mean(m[k] for m in net) for k in net[0]},
           **{f"gatys_{k}": ref[k] for k in ("objective", "gram", "spectral", "judge", "color")}}
    gatys_image = load_image(gatys_benchmark.CACHE / f"{ref['key']}.png")
    row["net_palette"] = metrics.palette_spread(samples, exemplar)  # the 5 samples' patches pooled
    row["gatys_palette"] = metrics.palette_spread(gatys_image, exemplar)
    gatys_benchmark.IMAGES.mkdir(exist_ok=True)
    save_image(side_by_side([exemplar, gatys_image] + [s[None] for s in samples[:3]], height=SIZE),
               gatys_benchmark.IMAGES / f"texnet_{Path(model_path).stem}_{SIZE}.png")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="comma-separated texture networks, names or files (default: every shipped one)")
    parser.add_argument("--gatys-diversity", default="pebbles", help="texture whose 5 Gatys runs give the diversity reference (none: skip)")
    parser.add_argument("--large", action="store_true", help="also time the networks at 512, 1024 and 2048 px")
    parser.add_argument("--section", default="quality", help="RESULTS.md section to write")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--_one-size", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._one_size:
        return _one_size(args._one_size[0], int(args._one_size[1]), args.device)
    shipped = {n: p for n, p in shipped_models().items() if read_manifest(p).get("kind") == "texnet"}
    names = args.models.split(",") if args.models else list(shipped)
    rows, large = [], {}
    for name in names:
        model_path = shipped.get(name, Path(name))
        texture = read_manifest(model_path)["texture"]["name"]
        rows.append(measure_model(model_path, args.device, gatys_diversity=(texture == args.gatys_diversity)))
        if args.large:
            large[name] = [measure_large(model_path, s, args.device) for s in LARGE]
        print(json.dumps({k: v for k, v in rows[-1].items()}), flush=True)
    write_results(rows, large, args)


def write_results(rows: list[dict], large: dict, args) -> None:
    cpu = gatys_benchmark.cpu_name()
    lines = [
        "## Texture networks vs Gatys (`benchmarks/quality.py`)",
        "",
        f"256x256; network: mean of {SAMPLES} samples (seeds 0-4); Gatys: 400 L-BFGS-B evaluations of the default "
        "objective (Gram + colour + spectrum, seed 0). Objective: the default objective's value on the saved 8-bit "
        "image; spectral distance (target 1.5 x floor + 0.1), judge (EfficientNet-Lite0, texport.objectives.metrics), colour "
        "(sliced Wasserstein-1, RGB), palette spread (std of 32x32 patch-mean CIELAB a*, b* over the samples' patches / the "
        "exemplar's; 1 is the exemplar's), all on the saved images, on the descriptor each network was trained with. "
        f"Diversity: Shi & Qiao 2020 eq. 11 on conv4_2 over 5 images at {DIVERSITY_SIZE} px (network samples, Gatys seeds 0-4). "
        f"Targets: objective ratio <= {TARGETS['objective_ratio']:g} (goal {TARGETS['objective_goal']:g}), spectral <= "
        f"target, colour <= {TARGETS['color']:g}, judge <= Gatys's, diversity ratio >= {TARGETS['diversity_ratio']:g}. "
        f"Machine: {cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, device {args.device}, texport "
        f"{texport.__version__}; measured {time.strftime('%Y-%m-%d')}.",
        "",
        "Objective floor: the default objective's value of the exemplar's right half against its left half "
        "(a genuinely new sample of the texture scores about this; Gatys fits the one exemplar's exact statistics "
        "and can go far below it).",
        "",
        "| model | train iters | train s | objective net | objective Gatys | ratio | objective floor | spectral net / Gatys (target) | "
        "judge net / Gatys | colour net / Gatys | palette a* / b* net | palette a* / b* Gatys | Gram net / Gatys | "
        "diversity net / Gatys | s/image net | speed-up |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        div = f"{r['net_div']:.3g} / {r['gatys_div']:.3g} = {r['net_div'] / r['gatys_div']:.2f}" if r["gatys_div"] else f"{r['net_div']:.3g} / -"
        lines.append(
            f"| {Path(r['model']).stem} | {r['iterations']} | {r['train_seconds']:.0f} | {r['net_objective']:.4g} | "
            f"{r['gatys_objective']:.4g} | {r['net_objective'] / r['gatys_objective']:.1f} | {r['objective_floor']:.3g} | {r['net_spectral']:.3f} / "
            f"{r['gatys_spectral']:.3f} ({r['net_target']:.3f}) | {r['net_judge']:.3f} / {r['gatys_judge']:.3f} | "
            f"{r['net_color']:.4f} / {r['gatys_color']:.4f} | {r['net_palette'][0]:.2f} / {r['net_palette'][1]:.2f} | "
            f"{r['gatys_palette'][0]:.2f} / {r['gatys_palette'][1]:.2f} | {r['net_gram']:.3g} / {r['gatys_gram']:.3g} | {div} | "
            f"{r['net_seconds']:.4f} | {r['gatys_seconds'] / r['net_seconds']:.0f}x |"
        )
    if rows:
        ratios = [r["net_objective"] / r["gatys_objective"] for r in rows]
        mean_ratio = statistics.mean(r["net_objective"] for r in rows) / statistics.mean(r["gatys_objective"] for r in rows)
        lines += ["", f"Objective ratio: median {statistics.median(ratios):.1f}, ratio of means {mean_ratio:.1f} "
                  f"(over {len(rows)} models); median spectral / target {statistics.median(r['net_spectral'] / r['net_target'] for r in rows):.2f}, "
                  f"median colour {statistics.median(r['net_color'] for r in rows):.4f}, median judge net / Gatys "
                  f"{statistics.median(r['net_judge'] / r['gatys_judge'] for r in rows):.2f}, median palette spread net "
                  f"{statistics.median(r['net_palette'][0] for r in rows):.2f} / {statistics.median(r['net_palette'][1] for r in rows):.2f} "
                  f"(a* / b*; the exemplar's is 1)."]
    if large:
        lines += ["", f"Network at larger sizes (one image; memory: {next(iter(large.values()))[0]['memory']}):", "",
                  "| model | " + " | ".join(f"{s} s | {s} MiB" for s in LARGE) + " |", "| --- |" + " --- | --- |" * len(LARGE)]
        for name, sizes in large.items():  # MiB cells: growth / whole process
            lines.append(f"| {name} | " + " | ".join(f"{m['seconds']:.3f} | {m['peak_mib']:.0f} / {m['total_mib']:.0f}" for m in sizes) + " |")
    lines += ["", "Images (exemplar | Gatys | 3 network samples): "
              + ", ".join(f"`benchmarks/images/texnet_{Path(r['model']).stem}_{SIZE}.png`" for r in rows), ""]
    gatys_benchmark.replace_section(gatys_benchmark.RESULTS, args.section, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
