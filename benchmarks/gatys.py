"""Gatys budget benchmark: the reference every faster model is compared against.

For each texture and size: 400 L-BFGS-B evaluations (Shi & Qiao 2020 sec. 4.2: Gatys converged after
about 400 iterations) of the default objective (Gram + colour + spectrum) and of the same without
the spectrum term (the objective before Quality v2), recording seconds and the Quality v2 measures
of the saved 8-bit image (`measures`): the default objective's value, the plain normalized Gram
loss, spectral distance against its target 1.5 x floor + 0.1, the judge's distance
(EfficientNet-Lite0, texport.objectives.metrics) and colour distance.

Results are cached in benchmarks/cache/gatys/ under a key made of the exemplar's bytes, the run's
settings, the descriptor identity and a fingerprint of what the code computes (`reference_fingerprint`),
so a re-run recomputes only what changed. Writes the table into benchmarks/RESULTS.md (its own section) and
exemplar | without spectrum | default images side by side into benchmarks/images/.

    python benchmarks/gatys.py                      # the four shared textures at 256 px
    python benchmarks/gatys.py --sizes 128,256 --textures pebbles,red-peppers
    python benchmarks/gatys.py --sizes 128 --iters 150 --weights 0,2,6,20 --section spectrum-sweep   # the weight sweep
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import statistics
import time
from pathlib import Path

import torch

import texport
import texport.objectives.descriptor as descriptor
import texport.optimization.gatys as gatys
import texport.objectives.losses as losses
import texport.objectives.metrics as metrics
from texport.textures.images import load_exemplar, load_image, quantize, save_image, side_by_side
from texport.objectives.objective import DEFAULT_SPECTRUM_WEIGHT, build_objective

HERE = Path(__file__).resolve().parent
CACHE = HERE / "cache" / "gatys"
IMAGES = HERE / "images"
RESULTS = HERE / "RESULTS.md"
SHARED = HERE.parent.parent / "shared" / "textures"
SPECTRUM_WEIGHTS = (0.0, DEFAULT_SPECTRUM_WEIGHT)  # before Quality v2, and the default
BUDGET = 400
TEXTURES = "pebbles,red-peppers,bark,cezanne"
# Parts of exemplars that are not texture: pebbles.jpg carries a printed "source: Simoncelli" label
# along its bottom (the shipped pebbles network is trained on the same crop, recorded in its manifest).
EXEMPLAR_CROPS = {"pebbles": (0, 0, 256, 232)}


def texture_path(name: str) -> Path:
    """Full-size exemplars from ../shared/textures when present, else the package's small copies."""
    for candidate in (Path(name), SHARED / f"{name}.jpg"):
        if candidate.is_file():
            return candidate
    from texport.textures.images import resolve_texture

    return resolve_texture(name)


FINGERPRINT_SIZE = 64
FINGERPRINT_ITERS = 5
_fingerprints: dict[str, str] = {}


def reference_fingerprint(desc) -> str:
    """What a cached record's numbers depend on, measured rather than read from the source.

    A short Gatys run (FINGERPRINT_ITERS evaluations at FINGERPRINT_SIZE px from the package's pebbles,
    seed 0, default objective) and its measures, each rounded to 4 significant digits: a change to the
    optimizer, the objective, the spectrum term, the descriptor or the metrics that moves any number
    changes every key; a comment, a refactor or a new option does not (keying on the modules' source
    threw away hours of 2-core runs for each docstring edit). Low-bit differences between machines or
    thread counts can still flip a rounding: a miss, never a wrong hit of consequence.
    """
    if desc.identity not in _fingerprints:
        from texport.textures.images import resolve_texture

        exemplar = load_exemplar(resolve_texture("pebbles"))  # 128 px: the spectral floor needs 64 px halves
        obj = build_objective(exemplar, descriptor=desc)
        result = gatys.synthesize(exemplar, FINGERPRINT_SIZE, FINGERPRINT_ITERS, objective=obj, seed=0, device="cpu")
        measured = measures(result.image, exemplar, desc)[0]
        image = result.image.double()
        values = [result.loss, *image.mean(dim=(0, 2, 3)).tolist(), *image.std(dim=(0, 2, 3)).tolist(),
                  *(measured[k] for k in sorted(measured))]
        text = json.dumps([f"{v:.4g}" for v in values])
        _fingerprints[desc.identity] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return _fingerprints[desc.identity]


def cache_key(path: Path, size: int, loss: str, iters: int, seed: int, desc, crop=None,
              spectrum_weight: float = DEFAULT_SPECTRUM_WEIGHT) -> str:
    """The cache name of a Gatys run: exemplar bytes, settings, descriptor, what the code computes, torch version."""
    key_parts = [hashlib.sha256(path.read_bytes()).hexdigest(), size, loss, iters, seed, desc.identity,
                 reference_fingerprint(desc), torch.__version__, list(crop) if crop is not None else None, spectrum_weight]
    return hashlib.sha256(json.dumps(key_parts).encode()).hexdigest()[:20]


_judge: list = []


def judge() -> metrics.Judge:
    """One EfficientNet-Lite0 judge per process."""
    if not _judge:
        _judge.append(metrics.Judge())
    return _judge[0]


@torch.no_grad()
def measures(images: torch.Tensor, exemplar: torch.Tensor, desc) -> list[dict]:
    """Quality v2's measures of each image [B, 3, H, W] (quantized to 8 bits first) against the exemplar.

    objective: the default objective's value (Gram + colour + spectrum, default weights, reflect
    padding) whatever produced the image; gram: the plain normalized Gram loss; spectral (with its
    floor and target), judge and colour: texport.objectives.metrics.
    """
    saved = quantize(images)
    default = build_objective(exemplar, descriptor=desc)
    gram = build_objective(exemplar, "gram", descriptor=desc, spectrum_weight=0)
    floor = metrics.spectral_floor(exemplar)
    values = {"objective": default(saved)["total"], "gram": gram(saved)["gram"],
              "spectral": metrics.spectral_distance(saved, exemplar), "judge": judge().distance(saved, exemplar),
              "color": losses.color_distance(saved, exemplar)}
    return [dict({k: float(v[i]) for k, v in values.items()}, floor=floor, target=metrics.spectral_target(floor))
            for i in range(saved.shape[0])]


@torch.no_grad()
def objective_floor(exemplar: torch.Tensor, desc) -> float:
    """The default objective's value of the exemplar's right half against its left half's statistics.

    A genuinely new sample of the texture (the other half) scores this; Gatys, which fits one exemplar's
    exact Gram matrices and Fourier modulus, can go far below it. Ratios against Gatys read with it.
    """
    w = exemplar.shape[-1]
    left, right = exemplar[..., : w // 2], exemplar[..., w - w // 2:]
    return float(build_objective(left, descriptor=desc)(quantize(right))["total"][0])


def run_one(path: Path, size: int, loss: str, iters: int, seed: int, device: str, desc, crop=None,
            spectrum_weight: float = DEFAULT_SPECTRUM_WEIGHT) -> dict:
    """One cached Gatys run; crop (x, y, w, h) cuts the exemplar first (as a texture network's manifest records)."""
    key = cache_key(path, size, loss, iters, seed, desc, crop, spectrum_weight)
    record_path, image_path = CACHE / f"{key}.json", CACHE / f"{key}.png"
    if record_path.is_file() and image_path.is_file():
        return json.loads(record_path.read_text())
    exemplar = load_exemplar(path, crop)
    obj = build_objective(exemplar, loss, descriptor=desc, spectrum_weight=spectrum_weight)
    print(f"  {path.stem} {size}px {loss} spectrum {spectrum_weight:g}: {iters} evaluations ...", flush=True)
    result = gatys.synthesize(exemplar, size, iters, objective=obj, seed=seed, device=device)
    measured = measures(result.image, exemplar, desc)[0]
    record = dict(
        measured, texture=path.stem, crop=list(crop) if crop is not None else None, size=size, loss=loss,
        spectrum_weight=spectrum_weight, evaluations=result.evaluations, seconds=round(result.seconds, 2),
        gram_loss=measured["gram"], color_distance=measured["color"], descriptor=desc.identity, key=key, seed=seed,
        iters=iters, fingerprint=reference_fingerprint(desc),
        machine=f"{cpu_name()}, {torch.get_num_threads()} threads",
    )
    CACHE.mkdir(parents=True, exist_ok=True)
    save_image(result.image, image_path)
    record_path.write_text(json.dumps(record, indent=1))
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--textures", default=TEXTURES)
    parser.add_argument("--sizes", default="256")
    parser.add_argument("--weights", default=",".join(f"{w:g}" for w in SPECTRUM_WEIGHTS),
                        help="spectrum weights to run (default: 0, the objective before Quality v2, and the default)")
    parser.add_argument("--before", default=None,
                        help="textures that run weight 0 too (default: all); the others run the non-zero weights only")
    parser.add_argument("--iters", type=int, default=BUDGET)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--descriptor", default="auto")
    parser.add_argument("--section", default="gatys", help="RESULTS.md section (and image name prefix) to write")
    args = parser.parse_args()
    desc = descriptor.build_descriptor(args.descriptor, losses.PO_LAYERS, device=args.device)
    rows = []
    for name in args.textures.split(","):
        path = texture_path(name)
        crop = EXEMPLAR_CROPS.get(path.stem)
        for size in (int(s) for s in args.sizes.split(",")):
            weights = [float(w) for w in args.weights.split(",")]
            if args.before is not None and name not in args.before.split(","):
                weights = [w for w in weights if w > 0]
            records = [run_one(path, size, "gram+color", args.iters, args.seed, args.device, desc, crop, w) for w in weights]
            rows += records
            images = [load_exemplar(path, crop)] + [load_image(CACHE / f"{r['key']}.png") for r in records]
            IMAGES.mkdir(exist_ok=True)
            save_image(side_by_side(images, height=min(size, 384)), IMAGES / f"{args.section}_{path.stem}_{size}.png")
    write_results(rows, desc, args)


def cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def write_results(rows: list[dict], desc, args) -> None:
    cpu = cpu_name()
    lines = [
        "## Gatys reference (`benchmarks/gatys.py`)" if args.section == "gatys" else
        f"## Spectrum weight sweep (`benchmarks/gatys.py --sizes {args.sizes} --iters {args.iters} --weights {args.weights} "
        f"--section {args.section}`)",
        "",
        f"{args.iters} L-BFGS-B evaluations from uniform noise (seed {args.seed}), pixels bounded to [0, 1]; "
        f"descriptor `{desc.identity[:26]}…`, layers {', '.join(losses.PO_LAYERS)} with normalized weights, colour "
        f"weight 10; spectrum weights {args.weights} (0: the objective before Quality v2; {DEFAULT_SPECTRUM_WEIGHT:g}: the default). "
        "Measures on the saved 8-bit image: the default objective's value, the plain normalized Gram loss, spectral "
        "distance (target 1.5 x floor + 0.1, floor = exemplar's left vs right half), the judge (EfficientNet-Lite0 "
        "sliced Wasserstein) and colour distance (sliced Wasserstein-1, RGB). pebbles: the exemplar without its "
        f"label (x 0-256, y 0-232). This run: {cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"device {args.device}, texport {texport.__version__}; measured {time.strftime('%Y-%m-%d')}.",
        "",
        "| texture | size | spectrum w | seconds | objective | Gram | spectral (target) | judge | colour |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        ok = "ok" if r["spectral"] <= r["target"] else "over"
        lines.append(f"| {r['texture']} | {r['size']} | {r['spectrum_weight']:g} | {r['seconds']:.0f} | {r['objective']:.4g} | "
                     f"{r['gram']:.4g} | {r['spectral']:.3f} ({r['target']:.3f}, {ok}) | {r['judge']:.3f} | {r['color']:.4f} |")
    lines += ["", "Median across textures:", "", "| size | spectrum w | objective | spectral / target | judge | colour |",
              "| --- | --- | --- | --- | --- | --- |"]
    for size in sorted({r["size"] for r in rows}):
        for w in sorted({r["spectrum_weight"] for r in rows}):
            sel = [r for r in rows if r["size"] == size and r["spectrum_weight"] == w]
            if sel:
                lines.append(f"| {size} | {w:g} | {statistics.median(r['objective'] for r in sel):.4g} | "
                             f"{statistics.median(r['spectral'] / r['target'] for r in sel):.2f} | "
                             f"{statistics.median(r['judge'] for r in sel):.3f} | {statistics.median(r['color'] for r in sel):.4f} |")
    sheets = sorted({f"`benchmarks/images/{args.section}_{r['texture']}_{r['size']}.png`" for r in rows})
    lines += ["", f"Images (exemplar | one per spectrum weight run, in the order {args.weights}): " + ", ".join(sheets), ""]
    replace_section(RESULTS, args.section, "\n".join(lines))
    print("\n".join(lines))


def replace_section(path: Path, name: str, body: str) -> None:
    """Rewrite this benchmark's section of RESULTS.md, leaving the other benchmarks' sections alone."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else "# Benchmark results\n\nEach section is written by the script it names.\n"
    block = f"{start}\n{body}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    main()
