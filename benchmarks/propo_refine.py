"""ProPO's any-texture path: a sample, then `--refine N` Gatys evaluations, at one scale or coarse-to-fine.

The quality path for a texture ProPO never saw is `synth propo --texture X --refine N`. This measures
what N evaluations buy from the sample at 1, 2 or 3 scales (`--refine-scales`: the sample downsampled,
refined at the coarse scales where an evaluation is cheap, then at full size; every setting costs about
N full-size evaluations), against a 400-evaluation Gatys run from noise (benchmarks/gatys.py's cached
run: same objective, size and seed). Textures: the 8 held-out textures of `propo_quality.py` and the
four classic ones (none of them in ProPO's training data), 256 px, ProPO seed 0 (`--samples` more).
Measures (benchmarks/gatys.py `measures`, on the saved 8-bit images): the default objective, spectral
distance, the judge, colour distance, `metrics.grid_ratio` and the palette spread (`metrics.palette_spread`, a* / b*;
one image each, so a sample's palette). Results are cached in
benchmarks/cache/propo_refine/; writes its RESULTS.md section and a 1:1 sheet.

    python benchmarks/propo_refine.py --dataset /path/to/pak4-textures.pk3 --iters 50 --scales 1,2,3
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
from propo_quality import SIZE, find_dataset, pick_textures  # noqa: E402

import texport  # noqa: E402
import texport.defaults as defaults  # noqa: E402
import texport.objectives.metrics as metrics  # noqa: E402
from texport.models.handle import resolve_model  # noqa: E402
from texport.models.loading import load_propo, sample_propo  # noqa: E402
from texport.objectives.descriptor import build_descriptor  # noqa: E402
from texport.objectives.losses import PO_LAYERS  # noqa: E402
from texport.optimization.refinement import refine  # noqa: E402
from texport.textures.images import load_exemplar, load_image, quantize, save_image, side_by_side, stack_rows  # noqa: E402

CACHE = HERE / "cache" / "propo_refine"
IMAGES = HERE / "images"
CROP = 128  # the sheet's 1:1 crops


def textures(dataset: Path, count: int) -> list[tuple[str, torch.Tensor, Path, tuple | None]]:
    """(name, exemplar, file, crop): the held-out textures, then the classic ones."""
    found = [(p.stem, load_image(p), p, None) for p in pick_textures(dataset, "held-out", count, defaults.HELD_OUT_FRACTION)]
    for name in gatys_benchmark.TEXTURES.split(","):
        path = gatys_benchmark.texture_path(name)
        crop = gatys_benchmark.EXEMPLAR_CROPS.get(path.stem)
        found.append((name, load_exemplar(path, crop), path, crop))
    return found


def gatys_reference(path: Path, crop, desc) -> dict:
    """benchmarks/gatys.py's 400-evaluation run at 256 px, seed 0 (run now if not cached)."""
    return gatys_benchmark.run_one(path, SIZE, "gram+color", gatys_benchmark.BUDGET, 0, "cpu", desc, crop=crop)


def refined(model, model_key: str, name: str, exemplar: torch.Tensor, seed: int, iters: int, scales: int, desc,
            detail: bool = False) -> dict:
    """One sample (scales 0: unrefined) and its measures, cached with its image."""
    parts = [model_key, name, hashlib.sha256(quantize(exemplar).numpy().tobytes()).hexdigest(), seed, iters, scales, SIZE,
             torch.__version__] + (["detail"] if detail else [])
    key = hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]
    record, image_path = CACHE / f"{key}.json", CACHE / f"{key}.png"
    if record.is_file() and image_path.is_file():
        return json.loads(record.read_text())
    print(f"  {name} seed {seed}: " + (f"refine {iters} over {scales} scale(s)" if scales else "sample"), flush=True)
    sample = sample_propo(model, exemplar, SIZE, seed=seed)
    start = time.perf_counter()
    image = refine(model, sample, iters, texture=exemplar, device="cpu", coarse_to_fine=scales, start_detail=detail) if scales else sample
    seconds = time.perf_counter() - start
    measured = gatys_benchmark.measures(image, exemplar, desc)[0]
    CACHE.mkdir(parents=True, exist_ok=True)
    save_image(image, image_path)
    row = dict(measured, grid=float(metrics.grid_ratio(quantize(image), exemplar)[0]), seconds=seconds,
               texture=name, seed=seed, iters=iters, scales=scales, detail=detail, threads=torch.get_num_threads(),
               image=image_path.name)
    record.write_text(json.dumps(row, indent=1))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="propo")
    parser.add_argument("--dataset", default=None)
    parser.add_argument("--count", type=int, default=8, help="held-out textures")
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--scales", default="1,2,3,3d", help="refinements to compare: scales, 'd' for the sample's detail kept "
                                                            "across scales (--refine-detail); the sample itself is always a row")
    parser.add_argument("--samples", type=int, default=1, help="ProPO seeds 0..N-1 per texture")
    parser.add_argument("--section", default="propo-refine")
    parser.add_argument("--readme", default="pebbles", help="the texture of README's three levels: exemplar | sample | "
                                                            "sample refined by the default --refine-scales | Gatys 400")
    args = parser.parse_args()
    desc = build_descriptor("vgg16-hed", PO_LAYERS)
    handle = resolve_model(args.model)
    model = load_propo(handle)
    model_key = hashlib.sha256(Path(model.path).read_bytes()).hexdigest()
    scales = ["0"] + [s for s in args.scales.split(",") if s != "0"]
    rows, sheet = [], []
    for name, exemplar, path, crop in textures(find_dataset(args.dataset), args.count):
        reference = gatys_reference(path, crop, desc)
        reference["palette"] = metrics.palette_spread(load_image(gatys_benchmark.CACHE / f"{reference['key']}.png"), exemplar)
        runs = {k: [refined(model, model_key, name, exemplar, seed, args.iters, int(k.rstrip("d")), desc, k.endswith("d"))
                    for seed in range(args.samples)] for k in scales}
        for run in (x for k in scales for x in runs[k]):  # from the saved image: cached records before the column have it too
            run["palette"] = metrics.palette_spread(load_image(CACHE / run["image"]), exemplar)
        rows.append({"texture": name, "gatys": reference, "runs": runs, "target": metrics.spectral_target(metrics.spectral_floor(exemplar))})
        default = f"{defaults.PROPO_REFINE_SCALES}" + ("d" if defaults.REFINE_DETAIL else "")
        if name == args.readme and default in runs:
            levels = [exemplar, load_image(CACHE / runs["0"][0]["image"]), load_image(CACHE / runs[default][0]["image"]),
                      load_image(gatys_benchmark.CACHE / f"{reference['key']}.png")]
            save_image(side_by_side(levels, height=SIZE), IMAGES / "readme_propo_levels.png")
        crops = [exemplar, load_image(gatys_benchmark.CACHE / f"{reference['key']}.png")] + [load_image(CACHE / runs[k][0]["image"]) for k in scales]
        sheet.append(side_by_side([c[..., :CROP, :CROP] for c in crops], height=CROP))
    IMAGES.mkdir(exist_ok=True)
    sheet_path = IMAGES / f"{args.section.replace('-', '_')}.png"
    save_image(stack_rows(sheet), sheet_path)
    write_results(rows, scales, args, sheet_path)


def label(k: str, iters: int) -> str:
    scales = int(k.rstrip("d"))
    return "sample" if scales == 0 else (f"refine {iters}, {scales} scale" + ("s" if scales > 1 else "")
                                         + (" + sample's detail" if k.endswith("d") else ""))


def write_results(rows: list[dict], scales: list[int], args, sheet_path: Path) -> None:
    mean = statistics.mean
    lines = [f"## ProPO's any-texture path: sample, then refinement (`benchmarks/propo_refine.py --iters {args.iters} --scales "
             f"{args.scales}`)", "",
             f"Model `{args.model}`; 256 px; {args.samples} ProPO sample(s) per texture (seeds from 0), refined by {args.iters} "
             "Gatys evaluations of the default objective (fp32, L-BFGS-B) at 1, 2 or 3 scales (`synth --refine-scales`: "
             "about the cost of that many full-size evaluations; '+ sample's detail': the sample's finer bands added back "
             "at each finer scale, `--refine-detail`), against Gatys from noise, 400 evaluations, seed 0 "
             "(benchmarks/gatys.py's cached run). Measures on the saved 8-bit images; grid: `metrics.grid_ratio` (largest "
             "power ratio to the exemplar at periods of 2-16 px; no grid: <= 2). Seconds: the refinement alone, on "
             f"{rows[0]['runs'][scales[-1]][0]['threads']} thread(s). Machine: {gatys_benchmark.cpu_name()}, torch "
             f"{torch.__version__}, texport {texport.__version__}; measured {time.strftime('%Y-%m-%d')}.", "",
             "| texture | path | objective | spectral (target) | judge | judge / Gatys's | colour | grid | palette a* / b* | seconds |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]

    def palette(runs: list[dict]) -> str:
        return f"{mean(x['palette'][0] for x in runs):.2f} / {mean(x['palette'][1] for x in runs):.2f}"

    for r in rows:
        g = r["gatys"]
        lines.append(f"| {r['texture'][:40]} | Gatys 400 | {g['objective']:.4g} | {g['spectral']:.3f} ({r['target']:.3f}) | "
                     f"{g['judge']:.3f} | 1 | {g['color']:.4f} | - | {palette([g])} | {g['seconds']:.0f} |")
        for k in scales:
            runs = r["runs"][k]
            lines.append(f"| | {label(k, args.iters)} | {mean(x['objective'] for x in runs):.4g} | {mean(x['spectral'] for x in runs):.3f} | "
                         f"{mean(x['judge'] for x in runs):.3f} | {mean(x['judge'] for x in runs) / g['judge']:.2f} | "
                         f"{max(x['color'] for x in runs):.4f} | {mean(x['grid'] for x in runs):.3g} | {palette(runs)} | "
                         f"{mean(x['seconds'] for x in runs):.0f} |")
    lines += ["", "| path | judge / Gatys's: median (max) | spectral within target | colour max | grid median | "
              "palette a* / b*: median (min) | seconds / Gatys 400's (median; target <= 0.125) |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    gatys_palettes = [r["gatys"]["palette"] for r in rows]
    lines.append(f"| Gatys 400 | 1 | {sum(r['gatys']['spectral'] <= r['target'] for r in rows)} of {len(rows)} | "
                 f"{max(r['gatys']['color'] for r in rows):.4f} | - | "
                 f"{statistics.median(p[0] for p in gatys_palettes):.2f} ({min(p[0] for p in gatys_palettes):.2f}) / "
                 f"{statistics.median(p[1] for p in gatys_palettes):.2f} ({min(p[1] for p in gatys_palettes):.2f}) | 1 |")
    for k in scales:
        ratios = [mean(x["judge"] for x in r["runs"][k]) / r["gatys"]["judge"] for r in rows]
        within = sum(all(x["spectral"] <= r["target"] for x in r["runs"][k]) for r in rows)
        # Gatys 400's time on this machine and load: 400 x the one-scale refinement's seconds per evaluation
        time_ratio = statistics.median(mean(x["seconds"] for x in r["runs"][k]) / mean(x["seconds"] for x in r["runs"]["1"])
                                       * args.iters / gatys_benchmark.BUDGET for r in rows) if k != "0" and "1" in scales else None
        lines.append(f"| {label(k, args.iters)} | {statistics.median(ratios):.2f} ({max(ratios):.2f}) | {within} of {len(rows)} | "
                     f"{max(x['color'] for r in rows for x in r['runs'][k]):.4f} | "
                     f"{statistics.median(mean(x['grid'] for x in r['runs'][k]) for r in rows):.3g} | "
                     + " / ".join(f"{statistics.median(p):.2f} ({min(p):.2f})" for p in (
                         [mean(x["palette"][axis] for x in r["runs"][k]) for r in rows] for axis in (0, 1))) + " | "
                     + (f"{time_ratio:.3f} |" if time_ratio is not None else "- |"))
    lines += ["", f"1:1 sheet, per row (top-left {CROP} px of each): exemplar | Gatys 400 | "
              + " | ".join(label(k, args.iters) for k in scales) + f" (seed 0): `benchmarks/images/{sheet_path.name}`. "
              "Gatys 400's seconds in the per-texture rows were measured when its cached run was made (another day and "
              "load); the summary's time ratio instead takes 400 x this run's own seconds per evaluation at one scale.", ""]
    gatys_benchmark.replace_section(gatys_benchmark.RESULTS, args.section, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
