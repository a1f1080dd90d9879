"""ProPO design questions, answered by short matched training runs (same seed, data, steps):

1. colour input: feed the stages the pixels' colour-Gram gradient, or only the descriptor gradients?
2. incremental learning (growing the training set) vs uniform draws: its effect on diversity.

Each variant trains `--iters` steps on `--size` px crops of the training split, then is scored on
the first `--count` held-out textures (by SHA-1 of their names, 256 px shortest side, centre
`--eval-size` crop): the Quality v2 measures (benchmarks/gatys.py `measures`) and diversity
(eq. 11, conv4_2) of 5 samples per texture, all on 8-bit images. Small runs: they rank the
variants; they do not predict a long run's absolute quality. Writes its RESULTS.md section.

    python benchmarks/propo_ablation.py --dataset /path/to/pak4-textures.pk3 --iters 400 --size 64
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gatys as gatys_benchmark  # noqa: E402
from propo_quality import find_dataset  # noqa: E402

import texport  # noqa: E402
import texport.defaults as defaults  # noqa: E402
import texport.objectives.losses as losses  # noqa: E402
import texport.objectives.metrics as metrics  # noqa: E402
from texport.textures.datasets import open_dataset  # noqa: E402
from texport.objectives.descriptor import build_descriptor  # noqa: E402
from texport.textures.images import quantize, save_image, side_by_side, stack_rows  # noqa: E402
from texport.models.loading import load_propo, sample_propo  # noqa: E402
from texport.models.checkpoints import read_manifest  # noqa: E402
from texport.training.runs import state_path  # noqa: E402
from texport.training.propo import DEFAULT_SPECTRUM_WEIGHT, DEFAULT_STATIONARITY, PropoRun, open_training_set, train_propo  # noqa: E402

VARIANTS = {  # file key -> (what it changes, train_propo arguments); 'default' is what ships
    "raw": ("uniform [0, 1) start, no colour moment matching", {"noise_amplitude": 1.0, "color_match": False}),
    "noise-0.1": ("start 0.5 +- 0.05, no colour moment matching", {"noise_amplitude": 0.1, "color_match": False}),
    "default": ("start 0.5 +- 0.05, stage colour moments set to the target's, colour input, uniform draws, spectrum weight 60",
                {"color_input": True}),
    "no-color-input": ("default without the colour-Gram gradient input", {"color_input": False}),
    "incremental": ("default with incremental learning", {"incremental": True}),
    "spectrum-6": ("default with the spectrum weight 6 (texport.objectives.objective's) instead of 60", {"color_input": True, "spectrum_weight": 6.0}),
    "default-seed1": ("default from another seed (weights and draws): the spread between two runs", {"color_input": True, "seed": 1}),
    "unscreened": ("default on every training image (no stationarity screen)", {"stationarity": 0.0}),
    "sw+color": ("default with the sliced Wasserstein stage loss (Heitz et al. 2021) in place of Gram's", {"loss": "sw+color"}),
    "batch-4": ("default with 4 targets per step", {"batch": 4}),
    "bilinear-up": ("default with bilinear (not nearest) upsampling in the pseudo optimizers", {"upsample": "bilinear"}),
    "shuffle-up": ("default with pixel-shuffle upsampling in the pseudo optimizers", {"upsample": "shuffle"}),
}
RUNS = HERE / "cache" / "ablation"
IMAGES = HERE / "images"


def score(model_path: Path, targets: list[torch.Tensor], size: int, desc, firsts: list | None = None) -> dict:
    """Quality v2 measures (benchmarks/gatys.py `measures`) of 5 samples per target: per-target means, then
    the mean and the median over targets (the mean alone is ruled by the target with the largest loss).
    firsts, if given, collects each target's first sample (for the 1:1 sheet)."""
    model = load_propo(model_path)
    per_target, div = [], []
    for target in targets:
        samples = quantize(sample_propo(model, target, size, seed=0, count=5))
        if firsts is not None:
            firsts.append(samples[:1])
        measured = gatys_benchmark.measures(samples, target, desc)
        per_target.append({k: statistics.mean(m[k] for m in measured) for k in ("objective", "gram", "spectral", "judge", "color")})
        per_target[-1]["grid"] = float(metrics.grid_ratio(samples, target).mean())
        per_target[-1]["spectral_ok"] = float(all(m["spectral"] <= m["target"] for m in measured))
        with torch.no_grad():
            div.append(float(losses.diversity(desc(samples, padding="reflect")[losses.DIVERSITY_LAYER])))
    keys = per_target[0].keys()
    return {**{k: statistics.mean(t[k] for t in per_target) for k in keys},
            **{f"median_{k}": statistics.median(t[k] for t in per_target) for k in keys}, "diversity": statistics.mean(div)}


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt()  # SIGTERM as Ctrl-C: the run saves its checkpoint (a background job ignores SIGINT)


def main() -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=None)
    parser.add_argument("--iters", type=int, default=400)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--eval-size", type=int, default=128)
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--variants", default=None, help="comma-separated names (default: all)")
    parser.add_argument("--section", default="propo-ablation", help="RESULTS.md section to write (a subset of variants: its own)")
    parser.add_argument("--train-only", action="store_true",
                        help="train the variants' runs (into the cache) and stop: run several at once, then score them together")
    args = parser.parse_args()
    dataset = find_dataset(args.dataset)
    held = open_dataset(dataset, "held-out", resize=256)
    order = held.by_name_hash(args.count)
    targets = []
    for i in order:
        image = held.image(i)
        h, w = image.shape[-2:]
        y, x = (h - args.eval_size) // 2, (w - args.eval_size) // 2
        targets.append(image[..., y:y + args.eval_size, x:x + args.eval_size])
    training_sets = {}  # by the run's data settings: the stationarity screen decides what a run trains on
    desc = build_descriptor("auto", losses.PO_LAYERS + (losses.DIVERSITY_LAYER,))
    RUNS.mkdir(parents=True, exist_ok=True)
    rows, columns = [], []
    names = args.variants.split(",") if args.variants else list(VARIANTS)
    for name in names:
        what, kwargs = VARIANTS[name]
        out = RUNS / (f"{name}_{args.size}_{args.iters}_spectrum{kwargs.get('spectrum_weight', DEFAULT_SPECTRUM_WEIGHT):g}"
                      f"_stationarity{kwargs.get('stationarity', DEFAULT_STATIONARITY):g}.safetensors")
        # an interrupted run's checkpoint records fewer iterations, and its optimizer state lies beside it
        unfinished = out.is_file() and state_path(out).is_file() and read_manifest(out)["training"]["iterations"] < args.iters
        if not out.is_file() or unfinished:
            run = PropoRun.of(dataset, out, iters=args.iters, size=args.size, checkpoint_every=100, resume=unfinished,
                              precision=defaults.TRAIN_PRECISION, **kwargs)  # as `texport train propo` runs
            key = (run.data.resize, run.data.stationarity)
            if key not in training_sets:
                training_sets[key] = open_training_set(run.data)
            if train_propo(run, loaded=training_sets[key]).interrupted:
                raise SystemExit(f"{name}: interrupted; run the same command again to continue it")
        if args.train_only:
            continue
        columns.append([])
        row = {"variant": f"{name}: {what}", **score(out, targets, args.eval_size, desc, columns[-1])}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.train_only:
        return
    lines = [
        "## ProPO design ablation (`benchmarks/propo_ablation.py"
        + (f" --variants {args.variants} --section {args.section}" if args.section != "propo-ablation" else "") + "`)",
        "",
        f"Each variant: {args.iters} steps on {args.size} px crops of the training images of {dataset.name} "
        f"({', '.join(f'{len(t)} with stationarity limit {k[1]:g}' for k, t in training_sets.items()) or 'cached runs'}) "
        f"(default lr, seed 0, precision {defaults.TRAIN_PRECISION}, the default objective: Gram + colour + spectrum weight "
        f"{DEFAULT_SPECTRUM_WEIGHT:g}), scored "
        f"on {len(targets)} held-out textures ({args.eval_size} px, 5 samples each; Quality v2 measures on 8-bit images: "
        "the default objective, the plain Gram loss, spectral distance and the share of samples within its target, "
        "the judge, colour distance, the grid ratio (`metrics.grid_ratio`: the largest power ratio to the target at "
        "periods of 2-16 px; no grid: <= 2); mean over textures, median in brackets). Machine: "
        f"{gatys_benchmark.cpu_name()}, {torch.get_num_threads()} threads, texport {texport.__version__}; measured "
        f"{time.strftime('%Y-%m-%d')}.",
        "",
        "| variant | objective | Gram | spectral | spectral within target | judge | colour | grid | diversity (eq. 11) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ] + [f"| {r['variant']} | " + " | ".join(f"{r[k]:.4g} ({r['median_' + k]:.4g})" for k in ("objective", "gram", "spectral"))
         + f" | {r['spectral_ok']:.2f} | {r['judge']:.3f} ({r['median_judge']:.3f}) | {r['color']:.4f} ({r['median_color']:.4f}) | "
         f"{r['grid']:.3g} ({r['median_grid']:.3g}) | {r['diversity']:.4g} |" for r in rows] + [""]
    sheet = IMAGES / f"{args.section.replace('-', '_')}.png"
    save_image(stack_rows([side_by_side([target, *(column[i] for column in columns)], height=args.eval_size)
                           for i, target in enumerate(targets)]), sheet)
    lines += [f"1:1 sheet, per row (a held-out texture): target | {' | '.join(names)} (seed 0): `benchmarks/images/{sheet.name}`", ""]
    gatys_benchmark.replace_section(gatys_benchmark.RESULTS, args.section, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
