"""Spectrum-weight sweep: Gatys with the default Gram + colour objective and spectrum weights w.

For each texture and weight: bounded L-BFGS-B from uniform noise (seed 0), then, on the saved 8-bit
image, the measures of texport.metrics: spectral distance (and the exemplar's floor and Quality v2's
target 1.5 x floor + 0.1), the judge's distance (EfficientNet-Lite0), colour distance, and the plain
normalized Gram loss. The weight is texport's (scaled by the number of layers, like the colour
weight: w = 6 is Liu, Gousseau & Xia's term with weight 30 beside 5 relative Gram errors).
Runs are benchmarks/gatys.py's, cached with its key (exemplar, settings, descriptor, source code).
Writes its RESULTS.md section and exemplar | one image per weight into benchmarks/images/.

    python benchmarks/spectrum_sweep.py --textures pebbles --size 128 --iters 150 --weights 0,2,6,20
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gatys as gatys_benchmark  # noqa: E402  (the cached Gatys runner and its measures)

import texport  # noqa: E402
from texport import descriptor, losses  # noqa: E402
from texport.images import load_exemplar, load_image, save_image, side_by_side  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--textures", default="pebbles,red-peppers,bark,cezanne")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--iters", type=int, default=150)
    parser.add_argument("--weights", default="0,2,6,20")
    parser.add_argument("--section", default="spectrum-sweep", help="RESULTS.md section to write")
    args = parser.parse_args()
    desc = descriptor.build_descriptor("auto", losses.PO_LAYERS)
    weights = [float(w) for w in args.weights.split(",")]
    rows = []
    for name in args.textures.split(","):
        path = gatys_benchmark.texture_path(name)
        crop = gatys_benchmark.EXEMPLAR_CROPS.get(path.stem)
        records = [gatys_benchmark.run_one(path, args.size, "gram+color", args.iters, 0, "cpu", desc, crop, w)
                   for w in weights]
        rows += records
        exemplar = load_exemplar(path, crop)
        images = [exemplar] + [load_image(gatys_benchmark.CACHE / f"{r['key']}.png") for r in records]
        gatys_benchmark.IMAGES.mkdir(exist_ok=True)
        save_image(side_by_side(images, height=args.size), gatys_benchmark.IMAGES / f"spectrum_sweep_{path.stem}_{args.size}.png")
    write_results(rows, weights, args)


def write_results(rows: list[dict], weights: list[float], args) -> None:
    machine = rows[0]["machine"] if rows else "-"
    lines = [
        f"## Spectrum weight, Gatys at {args.size} px (`benchmarks/spectrum_sweep.py --size {args.size} --iters {args.iters}`)",
        "",
        f"{args.iters} L-BFGS-B evaluations from uniform noise (seed 0), Gram + colour (weight 10) + spectrum (weight w); "
        "measures on the saved 8-bit image: spectral distance (target 1.5 x floor + 0.1, floor = exemplar's left vs "
        "right half), judge (EfficientNet-Lite0 sliced Wasserstein), colour (sliced Wasserstein-1, RGB), plain "
        f"normalized Gram loss. Machine: {machine}, torch {torch.__version__}, texport {texport.__version__}; "
        f"measured {time.strftime('%Y-%m-%d')}.",
        "",
        "| texture | w | spectral | target | judge | colour | Gram | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        ok = "ok" if r["spectral"] <= r["target"] else "over"
        lines.append(f"| {r['texture']} | {r['spectrum_weight']:g} | {r['spectral']:.3f} ({ok}) | {r['target']:.3f} | "
                     f"{r['judge']:.3f} | {r['color']:.4f} | {r['gram']:.4f} | {r['seconds']:.0f} |")
    lines += ["", "Median across textures:", "", "| w | spectral / target | judge | colour | Gram |", "| --- | --- | --- | --- | --- |"]
    for w in weights:
        sel = [r for r in rows if r["spectrum_weight"] == w]
        lines.append(f"| {w:g} | {statistics.median(r['spectral'] / r['target'] for r in sel):.2f} | "
                     f"{statistics.median(r['judge'] for r in sel):.3f} | {statistics.median(r['color'] for r in sel):.4f} | "
                     f"{statistics.median(r['gram'] for r in sel):.4f} |")
    names = sorted({r["texture"] for r in rows})
    lines += ["", "Images (exemplar | one per weight, in the order above): "
              + ", ".join(f"`benchmarks/images/spectrum_sweep_{n}_{args.size}.png`" for n in names), ""]
    gatys_benchmark.replace_section(gatys_benchmark.RESULTS, args.section, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
