"""Gatys budget benchmark: the reference every faster model is compared against.

For each texture, size (128, 256, 512) and objective (Gram only, and the default Gram + colour):
400 L-BFGS-B evaluations (seed 000 sec. 4.2: Gatys converged after about 400 iterations), recording
seconds, final Gram texture loss (normalized layer weights, the same definition for both
objectives), and colour distance (sliced Wasserstein-1 on the saved 8-bit image, 0-1 scale).

Results are cached in benchmarks/cache/gatys/ under a key made of the exemplar's bytes, the run's
settings, the descriptor identity and the source of the modules that compute them, so a re-run
recomputes only what changed. Writes the table into benchmarks/RESULTS.md (its own section) and
exemplar | Gram-only | default images side by side into benchmarks/images/.

    python benchmarks/gatys.py                      # pebbles at 128, 256, 512
    python benchmarks/gatys.py --sizes 128,256 --textures pebbles,red-peppers
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
from pathlib import Path

import torch

import texport
from texport import descriptor, gatys, losses, objective
from texport.images import load_exemplar, load_image, quantize, save_image, side_by_side
from texport.objective import build_objective

HERE = Path(__file__).resolve().parent
CACHE = HERE / "cache" / "gatys"
IMAGES = HERE / "images"
RESULTS = HERE / "RESULTS.md"
SHARED = HERE.parent.parent / "shared" / "textures"
OBJECTIVES = ("gram", "gram+color")
BUDGET = 400


def texture_path(name: str) -> Path:
    """Full-size exemplars from ../shared/textures when present, else the package's small copies."""
    for candidate in (Path(name), SHARED / f"{name}.jpg"):
        if candidate.is_file():
            return candidate
    from texport.images import resolve_texture

    return resolve_texture(name)


def code_hash() -> str:
    digest = hashlib.sha256()
    for module in (gatys, objective, losses, descriptor):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


def cache_key(path: Path, size: int, loss: str, iters: int, seed: int, desc, crop=None) -> str:
    """The cache name of a Gatys run: exemplar bytes, settings, descriptor, code and torch version."""
    key_parts = [hashlib.sha256(path.read_bytes()).hexdigest(), size, loss, iters, seed, desc.identity,
                 code_hash(), torch.__version__]
    if crop is not None:
        key_parts.append(list(crop))
    return hashlib.sha256(json.dumps(key_parts).encode()).hexdigest()[:20]


def run_one(path: Path, size: int, loss: str, iters: int, seed: int, device: str, desc, crop=None) -> dict:
    """One cached Gatys run; crop (x, y, w, h) cuts the exemplar first (as a texture network's manifest records)."""
    key = cache_key(path, size, loss, iters, seed, desc, crop)
    record_path, image_path = CACHE / f"{key}.json", CACHE / f"{key}.png"
    if record_path.is_file() and image_path.is_file():
        return json.loads(record_path.read_text())
    exemplar = load_exemplar(path, crop)
    obj = build_objective(exemplar, loss, descriptor=desc)
    print(f"  {path.stem} {size}px {loss}: {iters} evaluations ...", flush=True)
    result = gatys.synthesize(exemplar, size, iters, objective=obj, seed=seed, device=device)
    saved = quantize(result.image)  # metrics on the image as saved
    gram_obj = obj if loss == "gram" else build_objective(exemplar, "gram", descriptor=desc)
    with torch.no_grad():
        gram_loss = float(gram_obj(saved)["gram"][0])
    record = {
        "texture": path.stem, "crop": list(crop) if crop is not None else None, "size": size, "loss": loss, "evaluations": result.evaluations,
        "seconds": round(result.seconds, 2), "gram_loss": gram_loss,
        "color_distance": float(losses.color_distance(saved, exemplar)), "descriptor": desc.identity, "key": key,
        "machine": f"{cpu_name()}, {torch.get_num_threads()} threads",
    }
    CACHE.mkdir(parents=True, exist_ok=True)
    save_image(result.image, image_path)
    record_path.write_text(json.dumps(record, indent=1))
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--textures", default="pebbles")
    parser.add_argument("--sizes", default="128,256,512")
    parser.add_argument("--iters", type=int, default=BUDGET)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--descriptor", default="auto")
    args = parser.parse_args()
    desc = descriptor.build_descriptor(args.descriptor, losses.PO_LAYERS, device=args.device)
    rows = []
    for name in args.textures.split(","):
        path = texture_path(name)
        for size in (int(s) for s in args.sizes.split(",")):
            records = {loss: run_one(path, size, loss, args.iters, args.seed, args.device, desc) for loss in OBJECTIVES}
            rows += records.values()
            images = [load_image(path)] + [load_image(CACHE / f"{r['key']}.png") for r in records.values()]
            IMAGES.mkdir(exist_ok=True)
            save_image(side_by_side(images, height=min(size, 384)), IMAGES / f"gatys_{path.stem}_{size}.png")
    write_results(rows, desc, args)


def cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def write_results(rows: list[dict], desc, args) -> None:
    cpu = cpu_name()
    lines = [
        "## Gatys reference (`benchmarks/gatys.py`)",
        "",
        f"{args.iters} L-BFGS-B evaluations from uniform noise (seed {args.seed}), pixels bounded to [0, 1]; "
        f"descriptor `{desc.identity[:26]}…` through pool4, layers {', '.join(losses.PO_LAYERS)} with normalized "
        "weights. Gram loss: the normalized-weight texture loss of the saved image (same definition for both "
        "objectives). Colour: sliced Wasserstein-1 of RGB on the saved 8-bit image, 0-1 scale. "
        "Cached rows keep the machine they were measured on (two 2-core cloud VMs so far; the Intel one ran "
        "the same work about 1.5x slower). "
        f"This run: {cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, device {args.device}, "
        f"texport {texport.__version__}; measured {time.strftime('%Y-%m-%d')}.",
        "",
        "| texture | size | objective | evaluations | seconds | Gram loss | colour distance | machine (2 threads) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(f"| {r['texture']} | {r['size']} | {r['loss']} | {r['evaluations']} | {r['seconds']:.1f} | "
                     f"{r['gram_loss']:.3g} | {r['color_distance']:.4f} | {r.get('machine', '?').split(',')[0]} |")
    lines += ["", "Images (exemplar | Gram only | Gram + colour): "
              + ", ".join(f"`benchmarks/images/gatys_{r['texture']}_{r['size']}.png`" for r in rows[::2]), ""]
    replace_section(RESULTS, "gatys", "\n".join(lines))
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
