"""Texture networks against the Gatys reference: quality, colour, diversity, speed, memory.

For each shipped texture network at 256x256, on the descriptor it was trained with and the same
objective: the Gram texture loss (normalized layer weights) and colour distance (sliced
Wasserstein-1 on 0-1 RGB) of 5 network samples (seeds 0-4, mean) and of a Gatys result (400
L-BFGS-B evaluations, the default Gram + colour objective, from benchmarks/gatys.py and its cache);
their ratios; diversity (seed 000 eq. 11, conv4_2) of the 5 samples and, for one texture, of 5
Gatys runs with seeds 0-4; seconds per image and the speed-up. Then seconds per image and peak
memory of the network at 512, 1024 and 2048 pixels, each size in a fresh process. All metrics are
taken on the images as saved (8-bit). Writes its section of benchmarks/RESULTS.md.

    python benchmarks/quality.py                         # every shipped texture network
    python benchmarks/quality.py --models pebbles --gatys-diversity pebbles
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
from texport import losses  # noqa: E402
from texport.checkpoints import read_manifest  # noqa: E402
from texport.descriptor import build_descriptor  # noqa: E402
from texport.images import load_exemplar, load_image, quantize, save_image, side_by_side  # noqa: E402
from texport.models import load_texnet, shipped_models, synthesize  # noqa: E402
from texport.objective import build_objective  # noqa: E402

SIZE = 256
SAMPLES = 5
LARGE = (512, 1024, 2048)
TARGETS = {"gram_ratio": 3.0, "color": 0.01, "diversity_ratio": 0.9, "speedup": 500.0}


def exemplar_for(manifest: dict) -> Path:
    """The exemplar the network was trained on (checked by sha256), from ../shared/textures or the package."""
    import hashlib

    path = gatys_benchmark.texture_path(manifest["texture"]["name"])
    if hashlib.sha256(path.read_bytes()).hexdigest() != manifest["texture"]["sha256"]:
        raise SystemExit(f"{path} is not the exemplar {manifest['name']} was trained on (sha256 differs)")
    return path


def seconds_per_image(model, size: int, repeats: int = 5) -> float:
    synthesize(model, size, seed=100)  # warm-up
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        synthesize(model, size, seed=r)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="comma-separated shipped texture networks (default: all)")
    parser.add_argument("--gatys-diversity", default="pebbles", help="texture whose 5 Gatys runs give the diversity reference")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--_one-size", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._one_size:
        return _one_size(args._one_size[0], int(args._one_size[1]), args.device)
    shipped = {n: p for n, p in shipped_models().items() if read_manifest(p).get("kind") == "texnet"}
    names = args.models.split(",") if args.models else list(shipped)
    rows, large = [], {}
    for name in names:
        loaded = load_texnet(shipped[name], args.device)
        manifest = loaded.manifest
        path = exemplar_for(manifest)
        crop = manifest["texture"].get("crop")
        exemplar = load_exemplar(path, crop)
        desc = build_descriptor(manifest["descriptor"].split(":")[0], losses.PO_LAYERS + (losses.DIVERSITY_LAYER,),
                                device=args.device, expect_identity=manifest["descriptor"])
        gram_objective = build_objective(exemplar, "gram", descriptor=desc)
        samples = quantize(synthesize(loaded, SIZE, seed=0, count=SAMPLES))
        with torch.no_grad():
            net_gram = [float(v) for v in gram_objective(samples)["gram"]]
            net_color = [float(losses.color_distance(s[None], exemplar)) for s in samples]
            net_div = float(losses.diversity(desc(samples, padding="reflect")[losses.DIVERSITY_LAYER]))
        gatys_seeds = range(SAMPLES) if name == args.gatys_diversity else range(1)
        gatys_records = [gatys_benchmark.run_one(path, SIZE, "gram+color", gatys_benchmark.BUDGET, s, args.device, desc, crop)
                         for s in gatys_seeds]
        ref = gatys_records[0]
        gatys_div = None
        if len(gatys_records) > 1:
            gatys_images = torch.cat([load_image(gatys_benchmark.CACHE / f"{r['key']}.png") for r in gatys_records])
            with torch.no_grad():
                gatys_div = float(losses.diversity(desc(gatys_images, padding="reflect")[losses.DIVERSITY_LAYER]))
        net_seconds = seconds_per_image(loaded, SIZE)
        rows.append({
            "texture": name, "net_gram": statistics.mean(net_gram), "gatys_gram": ref["gram_loss"],
            "net_color": statistics.mean(net_color), "gatys_color": ref["color_distance"],
            "net_div": net_div, "gatys_div": gatys_div, "net_seconds": net_seconds, "gatys_seconds": ref["seconds"],
            "iterations": manifest["training"]["iterations"], "train_seconds": manifest["training"]["seconds"],
        })
        gatys_benchmark.IMAGES.mkdir(exist_ok=True)
        gatys_image = load_image(gatys_benchmark.CACHE / f"{ref['key']}.png")
        save_image(side_by_side([exemplar, gatys_image] + [s[None] for s in samples[:3]], height=SIZE),
                   gatys_benchmark.IMAGES / f"texnet_{name}_{SIZE}.png")
        large[name] = [measure_large(shipped[name], s, args.device) for s in LARGE]
        print(json.dumps(rows[-1]), json.dumps(large[name]), flush=True)
    write_results(rows, large, args.device)


def write_results(rows: list[dict], large: dict, device: str) -> None:
    cpu = gatys_benchmark.cpu_name()
    lines = [
        "## Texture networks vs Gatys (`benchmarks/quality.py`)",
        "",
        f"256x256; network: mean of {SAMPLES} samples (seeds 0-4); Gatys: 400 L-BFGS-B evaluations of the default "
        "Gram + colour objective (seed 0). Gram loss: normalized-weight texture loss on the PO layers; colour: "
        "sliced Wasserstein-1 on 0-1 RGB; both on the saved 8-bit images, on the descriptor each network was "
        "trained with. Diversity: seed 000 eq. 11 on conv4_2 over the 5 images. "
        f"Targets: Gram ratio <= {TARGETS['gram_ratio']:g}, network colour <= {TARGETS['color']:g}, diversity ratio >= "
        f"{TARGETS['diversity_ratio']:g}, speed-up >= {TARGETS['speedup']:g}. Machine: {cpu}, {torch.get_num_threads()} "
        f"threads, torch {torch.__version__}, device {device}, texport {texport.__version__}; measured {time.strftime('%Y-%m-%d')}.",
        "",
        "| texture | train iters | train s | Gram net | Gram Gatys | ratio | colour net | colour Gatys | diversity net | diversity Gatys | ratio | s/image net | s/image Gatys | speed-up |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        div_ratio = f"{r['net_div'] / r['gatys_div']:.2f}" if r["gatys_div"] else "-"
        gatys_div = f"{r['gatys_div']:.4g}" if r["gatys_div"] else "-"
        lines.append(
            f"| {r['texture']} | {r['iterations']} | {r['train_seconds']:.0f} | {r['net_gram']:.3g} | {r['gatys_gram']:.3g} | "
            f"{r['net_gram'] / r['gatys_gram']:.2f} | {r['net_color']:.4f} | {r['gatys_color']:.4f} | {r['net_div']:.4g} | "
            f"{gatys_div} | {div_ratio} | {r['net_seconds']:.4f} | {r['gatys_seconds']:.1f} | "
            f"{r['gatys_seconds'] / r['net_seconds']:.0f}x |"
        )
    lines += ["", "Network at larger sizes (one image; memory: "
              f"{next(iter(large.values()))[0]['memory'] if large else '-'}):", "",
              "| texture | " + " | ".join(f"{s} s | {s} MiB" for s in LARGE) + " |",
              "| --- |" + " --- | --- |" * len(LARGE)]
    # MiB cells: growth / whole process
    for name, sizes in large.items():
        lines.append(f"| {name} | " + " | ".join(f"{m['seconds']:.3f} | {m['peak_mib']:.0f} / {m['total_mib']:.0f}" for m in sizes) + " |")
    lines += ["", "Images (exemplar | Gatys | 3 network samples): "
              + ", ".join(f"`benchmarks/images/texnet_{r['texture']}_{SIZE}.png`" for r in rows), ""]
    gatys_benchmark.replace_section(gatys_benchmark.RESULTS, "quality", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
