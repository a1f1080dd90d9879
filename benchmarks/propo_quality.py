"""ProPO against the Gatys reference on held-out and training textures (Shi & Qiao 2020 Table 2, fig. 6).

Textures: the first N usable images (by SHA-1 of their names) of the held-out and of the training
split of the dataset ProPO was trained on (default: Debian's openarena-081-textures pak4-textures.pk3),
scaled so the shortest side is 256 and centre-cropped to 256x256; they are written to
benchmarks/cache/textures/ (not committed: third-party images, regenerated from the archive).

For each texture at 256x256, on the model's descriptor: the Quality v2 measures of
benchmarks/gatys.py (`measures`: the default objective's value, spectral distance, judge, colour
distance) of 5 ProPO samples (seeds 0-4, mean) and of a Gatys result (400 L-BFGS-B evaluations of
the default objective, seed 0, cached by benchmarks/gatys.py); objective ratios per texture, the
ratio of the means and their median; the default objective of each stage image x^1..x^5; diversity (eq. 11, conv4_2) of 5 ProPO samples vs
5 Gatys runs on two textures; seconds per image of both. Metrics on the saved 8-bit images.

    python benchmarks/propo_quality.py                        # needs the archive; runs missing Gatys
    python benchmarks/propo_quality.py --gatys none           # ProPO columns only (minutes)
    python benchmarks/propo_quality.py --dataset /path/to/pak4-textures.pk3 --count 8
    python benchmarks/propo_quality.py --splits held-out --count 4   # the target's split only
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gatys as gatys_benchmark  # noqa: E402

import texport  # noqa: E402
import texport.objectives.losses as losses  # noqa: E402
from texport.textures.datasets import open_dataset  # noqa: E402
from texport.objectives.descriptor import build_descriptor  # noqa: E402
from texport.textures.images import load_image, quantize, save_image, side_by_side, stack_rows  # noqa: E402
from texport.models.loading import load_propo, sample_propo
from texport.models.handle import resolve_model  # noqa: E402
from texport.objectives.objective import build_objective  # noqa: E402

SIZE = 256
SAMPLES = 5
TEXTURES = HERE / "cache" / "textures"
DEFAULT_DATASET = Path("/usr/share/games/openarena/baseoa/pak4-textures.pk3")
TARGETS = {"objective_ratio_train": 50.0, "objective_ratio_held_out": 50.0, "color": 0.01, "diversity_ratio": 0.9, "speedup": 100.0}


def find_dataset(given: str | None) -> Path:
    for candidate in ([Path(given)] if given else []) + [DEFAULT_DATASET, Path("/tmp/oa") / DEFAULT_DATASET.relative_to("/")]:
        if candidate.exists():
            return candidate
    raise SystemExit("dataset not found: give --dataset, or get it with 'apt-get download openarena-081-textures && "
                     "dpkg-deb -x openarena-081-textures_*.deb /tmp/oa'")


def pick_textures(dataset: Path, split: str, count: int, held_out_fraction: float) -> list[Path]:
    """The first `count` usable images of a split by SHA-1 of their names, as 256x256 PNGs."""
    data = open_dataset(dataset, split, resize=SIZE, held_out_fraction=held_out_fraction)
    order = data.by_name_hash(count)
    TEXTURES.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in order:
        image = data.image(i)
        h, w = image.shape[-2:]
        y, x = (h - SIZE) // 2, (w - SIZE) // 2
        name = data.names[i].replace("/", "_").rsplit(".", 1)[0]
        path = TEXTURES / f"{split}_{name}.png"
        if not path.is_file():
            save_image(image[..., y:y + SIZE, x:x + SIZE], path)
        paths.append(path)
    return paths


def seconds_per_image(model, texture: torch.Tensor, repeats: int = 3) -> float:
    """Encode + synthesize one 256x256 image (what a user waits for), median of repeats."""
    sample_propo(model, texture, SIZE, seed=100)
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        sample_propo(model, texture, SIZE, seed=r)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(model, path: Path, split: str, desc, gatys_mode: str, diversity: bool, device: str) -> dict:
    exemplar = load_image(path)
    objective = build_objective(exemplar, descriptor=desc)  # the default objective (Gram + colour + spectrum)
    stages = sample_propo(model, exemplar, SIZE, seed=0, count=SAMPLES, stages=True)
    samples = quantize(stages[-1])
    measured = gatys_benchmark.measures(samples, exemplar, desc)
    with torch.no_grad():
        stage_objective = [float(objective(quantize(s))["total"].mean()) for s in stages[1:]]
        div = float(losses.diversity(desc(samples, padding="reflect")[losses.DIVERSITY_LAYER]))
    row = {"texture": path.stem, "split": split, **{k: statistics.mean(m[k] for m in measured) for k in measured[0]},
           "stage_objective": stage_objective, "diversity": div, "seconds": seconds_per_image(model, exemplar),
           "gatys": None, "gatys_diversity": None}
    images = [exemplar] + [s[None] for s in samples[:3]]
    if gatys_mode != "none":
        seeds = range(SAMPLES) if diversity else range(1)
        records = []
        for s in seeds:
            record = gatys_cached(path, s, desc) if gatys_mode == "cached" else \
                gatys_benchmark.run_one(path, SIZE, "gram+color", gatys_benchmark.BUDGET, s, device, desc)
            if record is None:
                break
            records.append(record)
        if records:
            row["gatys"] = {k: records[0][k] for k in ("objective", "gram", "spectral", "judge", "color", "seconds")}
            images.insert(1, load_image(gatys_benchmark.CACHE / f"{records[0]['key']}.png"))
        if diversity and len(records) == SAMPLES:
            g = torch.cat([load_image(gatys_benchmark.CACHE / f"{r['key']}.png") for r in records])
            with torch.no_grad():
                row["gatys_diversity"] = float(losses.diversity(desc(g, padding="reflect")[losses.DIVERSITY_LAYER]))
    row["sheet"] = side_by_side(images, height=128)
    row["stages_sheet"] = side_by_side([s[:1] for s in stages] + [exemplar], height=128)
    return row


def gatys_cached(path: Path, seed: int, desc) -> dict | None:
    """A Gatys record if benchmarks/gatys.py has it cached (same key), else None."""
    key = gatys_benchmark.cache_key(path, SIZE, "gram+color", gatys_benchmark.BUDGET, seed, desc)
    record = gatys_benchmark.CACHE / f"{key}.json"
    return json.loads(record.read_text()) if record.is_file() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="propo")
    parser.add_argument("--dataset", default=None)
    parser.add_argument("--count", type=int, default=8, help="textures per split")
    parser.add_argument("--splits", default="held-out,train", help="held-out (the target), train, or both")
    parser.add_argument("--gatys", choices=("run", "cached", "none"), default="run")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--section", default=None, help="RESULTS.md section and image suffix (default: propo; e.g. to keep "
                        "another model's results beside the shipped one's)")
    parser.add_argument("--histogram-match", action=argparse.BooleanOptionalAction, default=None,
                        help="override the model's final colour histogram matching (results go to their own section)")
    args = parser.parse_args()
    model = load_propo(args.model, args.device)
    if args.histogram_match is not None:
        model.network.histogram_match = args.histogram_match
    manifest = model.manifest
    fraction = manifest["dataset"].get("held_out_fraction", 0.1)
    dataset = find_dataset(args.dataset)
    desc = build_descriptor("auto", losses.PO_LAYERS + (losses.DIVERSITY_LAYER,), device=args.device,
                            expect_identity=manifest["descriptor"])
    rows = []
    splits = [x for x in ("held-out", "train") if x in args.splits.split(",")]
    for split in splits:
        for i, path in enumerate(pick_textures(dataset, split, args.count, fraction)):
            rows.append(measure(model, path, split, desc, args.gatys, diversity=(i == 0), device=args.device))
            print(json.dumps({k: v for k, v in rows[-1].items() if not k.endswith("sheet")}), flush=True)
    gatys_benchmark.IMAGES.mkdir(exist_ok=True)
    suffix = image_suffix(args)
    for split in splits:
        save_image(stack_rows([r["sheet"] for r in rows if r["split"] == split]),
                   gatys_benchmark.IMAGES / f"propo_{split}_{SIZE}{suffix}.png")
        save_image(stack_rows([r["stages_sheet"] for r in rows if r["split"] == split][:4]),
                   gatys_benchmark.IMAGES / f"propo_stages_{split}_{SIZE}{suffix}.png")
    write_results(rows, manifest, args)


def image_suffix(args) -> str:
    """The sheets' file-name suffix: a histogram override and a named section each get their own files."""
    suffix = "" if args.histogram_match is None else f"_histogram_{'on' if args.histogram_match else 'off'}"
    return suffix + (f"_{args.section}" if args.section else "")


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def write_results(rows: list[dict], manifest: dict, args) -> None:
    t = manifest["training"]
    arch = manifest["architecture"]
    hist = arch.get("histogram_match", False) if args.histogram_match is None else args.histogram_match
    lines = [
        "## ProPO vs Gatys (`benchmarks/propo_quality.py`"
        + ("" if args.histogram_match is None else f" `--{'' if args.histogram_match else 'no-'}histogram-match`")
        + (f" `--model {args.model} --section {args.section}`" if args.section else "") + ")",
        "",
        f"Model `{resolve_model(args.model).name}`: {t['iterations']} iterations of {t['iterations_planned']} planned, "
        f"{t['size']} px crops, colour input {arch.get('color_input')}, final histogram matching {hist}, lr {t['lr']}, "
        f"batch {t['batch']}, colour weight {t['color_weight']}, spectrum weight {t.get('spectrum_weight', 0)}, "
        f"incremental {t['incremental']}, {t['seconds']:.0f} s on {t['device']}; trained on "
        f"{manifest['dataset']['images']} images of {manifest['dataset']['source']}. 256x256; ProPO: mean of {SAMPLES} "
        "samples (seeds 0-4); Gatys: 400 L-BFGS-B evaluations of the default objective (Gram + colour + spectrum, "
        "seed 0). Measures on the saved 8-bit images (`benchmarks/gatys.py` `measures`): the default objective's "
        "value, spectral distance (its target 1.5 x floor + 0.1), the judge (EfficientNet-Lite0) and colour distance. "
        f"Stage columns: the default objective of x^1..x^5. Gatys: {args.gatys}. Machine: {gatys_benchmark.cpu_name()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, device {args.device}, texport "
        f"{texport.__version__}; measured {time.strftime('%Y-%m-%d')}.",
        "",
        "| split | texture | objective ProPO | objective Gatys | ratio | spectral ProPO (target) | spectral Gatys | "
        "judge ProPO | judge Gatys | colour ProPO | colour Gatys | x^1 | x^2 | x^3 | x^4 | x^5 | s/image ProPO | s/image Gatys |",
        "|" + " --- |" * 18,
    ]
    for r in rows:
        g = r["gatys"] or {}
        ratio = r["objective"] / g["objective"] if g else None
        lines.append(f"| {r['split']} | {r['texture'][:40]} | {r['objective']:.3g} | {_fmt(g.get('objective'), '.3g')} | "
                     f"{_fmt(ratio, '.1f')} | {r['spectral']:.3f} ({r['target']:.3f}) | {_fmt(g.get('spectral'), '.3f')} | "
                     f"{r['judge']:.3f} | {_fmt(g.get('judge'), '.3f')} | {r['color']:.4f} | {_fmt(g.get('color'), '.4f')} | "
                     + " | ".join(f"{v:.3g}" for v in r["stage_objective"])
                     + f" | {r['seconds']:.3f} | {_fmt(g.get('seconds'), '.1f')} |")
    lines += ["", "| split | mean objective ProPO | mean objective Gatys | ratio of means (target) | median ratio | "
              "spectral within target | judge ProPO / Gatys (median) | mean colour ProPO (target <= 0.01) | "
              "diversity ProPO / Gatys (texture) | speed-up (target >= 100) |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for split, target in (("held-out", TARGETS["objective_ratio_held_out"]), ("train", TARGETS["objective_ratio_train"])):
        sel = [r for r in rows if r["split"] == split]
        if not sel:
            continue
        mean_obj = statistics.mean(r["objective"] for r in sel)
        refs = [r["gatys"] for r in sel if r["gatys"]]
        mean_gatys = statistics.mean(g["objective"] for g in refs) if len(refs) == len(sel) else None
        ratio = mean_obj / mean_gatys if mean_gatys else None
        ratios = [r["objective"] / r["gatys"]["objective"] for r in sel if r["gatys"]]
        judges = [r["judge"] / r["gatys"]["judge"] for r in sel if r["gatys"]]
        div = next((r for r in sel if r["gatys_diversity"]), None)
        div_text = f"{div['diversity']:.3g} / {div['gatys_diversity']:.3g} = {div['diversity'] / div['gatys_diversity']:.2f}x ({div['texture'][:24]})" \
            if div else f"{sel[0]['diversity']:.3g} / - ({sel[0]['texture'][:24]})"
        secs = [r["gatys"]["seconds"] / r["seconds"] for r in sel if r["gatys"]]
        lines.append(f"| {split} | {mean_obj:.3g} | {_fmt(mean_gatys, '.3g')} | {_fmt(ratio, '.1f')} (<= {target:g}) | "
                     f"{_fmt(statistics.median(ratios) if ratios else None, '.1f')} | "
                     f"{sum(r['spectral'] <= r['target'] for r in sel)} of {len(sel)} | "
                     f"{_fmt(statistics.median(judges) if judges else None, '.2f')} | "
                     f"{statistics.mean(r['color'] for r in sel):.4f} | {div_text} | "
                     f"{_fmt(statistics.mean(secs) if secs else None, '.0f')} |")
    suffix, splits = image_suffix(args), list(dict.fromkeys(r["split"] for r in rows))
    lines += ["", "Images: " + ", ".join(f"`benchmarks/images/propo_{split}_{SIZE}{suffix}.png`" for split in splits)
              + f" (exemplar | Gatys | 3 ProPO samples), `benchmarks/images/propo_stages_*_{SIZE}{suffix}.png` (noise, "
              "x^1..x^5, target).", ""]
    section = "propo" if args.histogram_match is None else f"propo-histogram-{'on' if args.histogram_match else 'off'}"
    section = args.section or section
    gatys_benchmark.replace_section(gatys_benchmark.RESULTS, section, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
