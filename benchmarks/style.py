"""Style networks against Gatys style transfer (Ulyanov et al. 2016 sec. 3.3, fig. 3, 5, 14).

For each held-out photograph (never seen in training; `cli/fetch_photos.py`), scaled so its shorter
side is the size and centre-cropped square: Gatys style transfer (`texport gatys STYLE --content`,
400 bounded L-BFGS evaluations started from the photograph, the network's own objective: eq. 6 with
the model's alpha, content layer, colour and spectrum weights) and the style network's output (seed
0, noise scale 1, torch on the CPU). Per image: the objective (total, its style part, its content
term), seconds, the independent judge's distance to the style image (EfficientNet-Lite0, which no
objective uses) and the spectral distance to it; the unstylized photograph as a baseline.

Writes RESULTS.md "Style networks vs Gatys", the sheet benchmarks/images/style_sheet.png (content |
style | Gatys | network per photograph at 1:1), the noise-scale strip style_noise_strip.png (fig. 5)
and a 1024x768 stylization (fig. 14) with its time and peak memory per backend (each in a fresh
process, so the peak is its own). Gatys runs are cached in benchmarks/cache/style/ (the images
git-ignored: they are derived from the photographs), so a stopped benchmark resumes.

    python cli/fetch_photos.py runs/photos
    python benchmarks/style.py --model trained/cezanne-style.safetensors --photos runs/photos/held-out
    python benchmarks/style.py --gatys-only ...     # fill the Gatys cache (no model needed)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gatys as gatys_benchmark  # noqa: E402

import texport  # noqa: E402
import texport.objectives.metrics as metrics  # noqa: E402
from texport.models.checkpoints import read_manifest  # noqa: E402
from texport.objectives.descriptor import build_descriptor  # noqa: E402
from texport.optimization.gatys import transfer_style  # noqa: E402
from texport.textures.images import load_image, quantize, save_image, side_by_side, stack_rows  # noqa: E402
from texport.objectives.losses import PO_LAYERS  # noqa: E402
from texport.objectives.objective import StyleObjective, build_style_objective  # noqa: E402

CACHE = HERE / "cache" / "style"
IMAGES = HERE / "images"
ITERS = 400
SIZES = (256, 512)
SHARED = HERE.parents[1] / "shared" / "textures"
AT_512 = ("astronaut", "aitzgorri")  # Gatys at 512 px costs ~4x: two photographs
CREDITS = ("Photographs (`cli/fetch_photos.py`'s SOURCES.md): astronaut (NASA) and rocket (SpaceX), public domain; "
           "chelsea (Stefan van der Walt) and coffee (Rachel Michetti), CC0; aitzgorri (Aitzol Berasategi), CC-BY-4.0, "
           "so its crops in the sheet and the 1024x768 stylization are adaptations under CC-BY-4.0. The style: "
           "cezanne.jpg (a public-domain painting, from the texture_nets repository).")
NOISE_SCALES = (0.0, 0.5, 1.0, 2.0, 4.0)
BIG = (1024, 768)


def square_content(path: Path, side: int) -> torch.Tensor:
    """The photograph scaled so its shorter side is `side` (antialiased), centre-cropped to side x side."""
    image = load_image(path)
    h, w = image.shape[-2:]
    scale = side / min(h, w)
    size = (max(side, round(h * scale)), max(side, round(w * scale)))
    image = torch.nn.functional.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False)
    top, left = (size[0] - side) // 2, (size[1] - side) // 2
    return image[..., top:top + side, left:left + side].clamp(0, 1)


def objective_for(model_manifest: dict | None, style: torch.Tensor, desc) -> StyleObjective:
    """The model's own objective (its manifest), or the defaults when only Gatys runs."""
    spec = (model_manifest or {}).get("objective", {})
    options = {k: spec[k] for k in ("alpha", "content_layer", "color_weight", "spectrum_weight") if k in spec}
    return build_style_objective(style, descriptor=desc, **options)


@torch.no_grad()
def measure(image: torch.Tensor, photo: torch.Tensor, style: torch.Tensor, objective: StyleObjective) -> dict:
    """The objective's terms, the judge's and the spectral distance to the style, on the 8-bit image."""
    saved = quantize(image)
    terms = {k: float(v[0]) for k, v in objective.bind(photo)(saved).items()}
    terms["style"] = terms["total"] - objective.content_scale * terms["content"]
    terms["judge"] = float(gatys_benchmark.judge().distance(saved, style)[0])
    terms["spectral"] = float(metrics.spectral_distance(saved, style)[0])
    return terms


def gatys_run(photo_path: Path, side: int, style_path: Path, style: torch.Tensor, objective: StyleObjective, desc) -> dict:
    """One cached Gatys style transfer (record + image)."""
    key_parts = [hashlib.sha256(photo_path.read_bytes()).hexdigest(), hashlib.sha256(style_path.read_bytes()).hexdigest(),
                 side, ITERS, objective.as_dict(), desc.identity, gatys_benchmark.reference_fingerprint(desc), torch.__version__]
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:20]
    record_path, image_path = CACHE / f"{key}.json", CACHE / "images" / f"{key}.png"
    if record_path.is_file() and image_path.is_file():
        return dict(json.loads(record_path.read_text()), image=load_image(image_path))
    photo = square_content(photo_path, side)
    print(f"  gatys {photo_path.stem} {side}px: {ITERS} evaluations ...", flush=True)
    result = transfer_style(style, photo, iters=ITERS, objective=objective, device="cpu")
    record = dict(measure(result.image, photo, style, objective), photo=photo_path.stem, size=side,
                  seconds=round(result.seconds, 2), evaluations=result.evaluations, key=key,
                  machine=f"{gatys_benchmark.cpu_name()}, {torch.get_num_threads()} threads")
    image_path.parent.mkdir(parents=True, exist_ok=True)
    save_image(result.image, image_path)
    record_path.write_text(json.dumps(record, indent=1))
    return dict(record, image=result.image)


def network_run(backend, photo: torch.Tensor, runs: int = 3, noise_scale: float = 1.0) -> tuple[torch.Tensor, float]:
    """The network's image (seed 0) and the median seconds of `runs` timed calls after one warm-up."""
    from texport.runtime.sampling import stylize_with

    image = stylize_with(backend, photo, seed=0, noise_scale=noise_scale)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        stylize_with(backend, photo, seed=0, noise_scale=noise_scale)
        times.append(time.perf_counter() - start)
    return image, statistics.median(times)


BIG_SCRIPT = """
import json, resource, sys, time
from texport.runtime.backends import open_backend
from texport.runtime.sampling import stylize_with
from texport.textures.images import load_image, save_image
model, photo, backend, out = sys.argv[1:5]
runner = open_backend(model, backend, device="cpu")
image = load_image(photo)
stylize_with(runner, image, seed=0)
times = []
for _ in range(3):
    start = time.perf_counter(); result = stylize_with(runner, image, seed=0); times.append(time.perf_counter() - start)
if out != "-":
    save_image(result, out)
print(json.dumps({"seconds": sorted(times)[1], "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def big_stylization(model: Path, photo_path: Path, backends: list[str], out: Path) -> list[dict]:
    """Fig. 14: the photograph at 1024x768 through each backend, each in its own process (time, peak RSS)."""
    import tempfile

    photo = load_image(photo_path)
    h, w = photo.shape[-2:]
    scale = max(BIG[0] / w, BIG[1] / h)
    photo = torch.nn.functional.interpolate(photo, size=(round(h * scale), round(w * scale)), mode="bilinear",
                                            antialias=True, align_corners=False)
    top, left = (photo.shape[-2] - BIG[1]) // 2, (photo.shape[-1] - BIG[0]) // 2
    photo = photo[..., top:top + BIG[1], left:left + BIG[0]].clamp(0, 1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        content = save_image(photo, Path(tmp) / "content.png")
        for i, backend in enumerate(backends):
            done = subprocess.run([sys.executable, "-c", BIG_SCRIPT, str(model), str(content), backend,
                                   str(out) if i == 0 else "-"], capture_output=True, text=True, check=True)
            rows.append(dict(json.loads(done.stdout.strip().splitlines()[-1]), backend=backend))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("trained/cezanne-style.safetensors"))
    parser.add_argument("--style", type=Path, default=None, help="Style image file (default: the model's, from ../shared/textures).")
    parser.add_argument("--photos", type=Path, default=Path("runs/photos/held-out"))
    parser.add_argument("--gatys-only", action="store_true", help="Only fill the Gatys cache.")
    parser.add_argument("--only", nargs="*", default=None, help="Photographs (stems) to run; default all.")
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES), help="Photograph sides (default 256 512).")
    parser.add_argument("--section", default="style")
    args = parser.parse_args()

    photos = sorted(p for p in args.photos.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if args.only:
        photos = [p for p in photos if p.stem in args.only]
    if not photos:
        sys.exit(f"style.py: no photographs in {args.photos} (run: python cli/fetch_photos.py runs/photos)")
    manifest = None if args.gatys_only and not args.model.is_file() else read_manifest(args.model)
    # the style file itself (the cache key hashes its bytes): the one the model names, beside the shipped textures
    style_path = args.style or SHARED / (manifest["style"]["file"] if manifest else "cezanne.jpg")
    style = load_image(style_path)
    if manifest is not None and hashlib.sha256(style_path.read_bytes()).hexdigest() != manifest["style"]["sha256"]:
        sys.exit(f"style.py: {style_path} is not the style image {args.model.name} was trained on")
    identity = manifest["descriptor"] if manifest else None
    desc = build_descriptor("auto", (*PO_LAYERS, "relu4_2"), expect_identity=identity)
    objective = objective_for(manifest, style, desc)
    plan = [(p, s) for s in args.sizes for p in photos if s == 256 or p.stem in AT_512]
    gatys_rows = {(p.stem, s): gatys_run(p, s, style_path, style, objective, desc) for p, s in plan}
    if args.gatys_only:
        return

    from texport.runtime.backends import open_backend

    backend = open_backend(args.model, "torch", device="cpu")
    rows, sheet = [], []
    for photo_path, side in plan:
        photo = square_content(photo_path, side)
        image, seconds = network_run(backend, photo)
        g = gatys_rows[(photo_path.stem, side)]
        rows.append(dict(photo=photo_path.stem, size=side, gatys=g, network=dict(measure(image, photo, style, objective),
                                                                                 seconds=seconds),
                         original=measure(photo, photo, style, objective)))
        if side == 256:
            sheet.append(side_by_side([photo, style, g["image"], image], height=256))
    IMAGES.mkdir(exist_ok=True)
    save_image(stack_rows(sheet), IMAGES / "style_sheet.png")
    strip_photo = square_content(next(p for p in photos if p.stem == "chelsea") if any(p.stem == "chelsea" for p in photos)
                                 else photos[0], 256)
    from texport.runtime.sampling import stylize_with

    strip = [strip_photo] + [stylize_with(backend, strip_photo, seed=0, noise_scale=k) for k in NOISE_SCALES]
    save_image(side_by_side(strip, height=256), IMAGES / "style_noise_strip.png")
    knob = []  # fig. 5 measured: what each noise scale trades, over the 256 px photographs
    for k in NOISE_SCALES:
        measured = []
        for photo_path, side in plan:
            if side == 256:
                photo = square_content(photo_path, side)
                measured.append(measure(stylize_with(backend, photo, seed=0, noise_scale=k), photo, style, objective))
        knob.append({"scale": k, **{m: statistics.median(x[m] for x in measured) for m in measured[0]}})
    big_photo = next((p for p in photos if p.stem == "aitzgorri"), photos[0])
    big = big_stylization(args.model, big_photo, ["torch", "onnxruntime"], IMAGES / "style_1024x768.png")
    write_results(rows, knob, big, big_photo.stem, args, manifest)


def write_results(rows: list[dict], knob: list[dict], big: list[dict], big_photo: str, args, manifest: dict) -> None:
    training = manifest["training"]
    objective = manifest["objective"]
    lines = [
        "## Style networks vs Gatys (`benchmarks/style.py`)",
        "",
        f"Model `{args.model.name}` (style {manifest['style']['file']}; {training['iterations']} iterations, batch "
        f"{training['batch']}, {training['size']} px crops of {manifest['content']['images']} photographs). Held-out "
        f"photographs (`cli/fetch_photos.py`, held-out/), shorter side scaled to the size and centre-cropped square. "
        f"Gatys: {ITERS} L-BFGS-B evaluations from the photograph on the same objective (eq. 6: style = Gram + colour "
        f"x{objective['color_weight']:g} + spectrum x{objective['spectrum_weight']:g}, alpha {objective['alpha']:g} x the "
        f"{objective['content_layer']} content term). Network: seed 0, noise scale 1, torch fp32 on the CPU, median of "
        f"3 after a warm-up. Measures on the 8-bit image: the objective (total; style part; content term before alpha), "
        f"the judge's distance to the style image (EfficientNet-Lite0 sliced Wasserstein, no objective uses it) and the "
        f"spectral distance to it; `photo`: the unstylized photograph. This run: {gatys_benchmark.cpu_name()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, texport {texport.__version__}; measured "
        f"{time.strftime('%Y-%m-%d')}.",
        "",
        "| photo | size | objective: network / Gatys (ratio) | style part: network / Gatys | content: network / Gatys / photo "
        "| seconds: network / Gatys (speed-up) | judge: network / Gatys / photo | spectral: network / Gatys / photo |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        n, g, o = r["network"], r["gatys"], r["original"]
        lines.append(
            f"| {r['photo']} | {r['size']} | {n['total']:.4g} / {g['total']:.4g} ({n['total'] / g['total']:.2f}x) | "
            f"{n['style']:.4g} / {g['style']:.4g} | {n['content']:.3f} / {g['content']:.3f} / 0 | "
            f"{n['seconds']:.3f} / {g['seconds']:.0f} ({g['seconds'] / n['seconds']:.0f}x) | "
            f"{n['judge']:.3f} / {g['judge']:.3f} / {o['judge']:.3f} | {n['spectral']:.3f} / {g['spectral']:.3f} / {o['spectral']:.3f} |")
    lines += ["", "Medians over the held-out photographs:", "",
              "| size | photos | objective ratio | speed-up | judge: network / Gatys / photo | spectral: network / Gatys / photo |",
              "| --- | --- | --- | --- | --- | --- |"]
    for side in SIZES:
        sel = [r for r in rows if r["size"] == side]
        if not sel:
            continue

        def med(f):
            return statistics.median(f(r) for r in sel)

        lines.append(
            f"| {side} | {len(sel)} | {med(lambda r: r['network']['total'] / r['gatys']['total']):.2f}x | "
            f"{med(lambda r: r['gatys']['seconds'] / r['network']['seconds']):.0f}x | "
            f"{med(lambda r: r['network']['judge']):.3f} / {med(lambda r: r['gatys']['judge']):.3f} / "
            f"{med(lambda r: r['original']['judge']):.3f} | {med(lambda r: r['network']['spectral']):.3f} / "
            f"{med(lambda r: r['gatys']['spectral']):.3f} / {med(lambda r: r['original']['spectral']):.3f} |")
    lines += ["", "The noise scale (fig. 5), medians over the 256 px photographs (seed 0):", "",
              "| noise scale | objective | style part | content | judge | spectral |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {k['scale']:g} | {k['total']:.4g} | {k['style']:.4g} | {k['content']:.3f} | {k['judge']:.3f} | "
              f"{k['spectral']:.3f} |" for k in knob]
    lines += ["", f"Fig. 14: `{big_photo}` at {BIG[0]}x{BIG[1]} (`benchmarks/images/style_1024x768.png`), each backend in "
              "a fresh process (median of 3 after a warm-up; peak resident memory of the whole process):", "",
              "| backend | seconds | peak memory (MB) |", "| --- | --- | --- |"]
    lines += [f"| {b['backend']} | {b['seconds']:.3f} | {b['peak_mb']:.0f} |" for b in big]
    lines += ["", "Sheet (`benchmarks/images/style_sheet.png`): per 256 px photograph, content | style | Gatys | network. "
              f"Noise-scale strip (`style_noise_strip.png`, fig. 5): the photograph, then noise scales "
              f"{', '.join(f'{k:g}' for k in NOISE_SCALES)}.", "", CREDITS, ""]
    gatys_benchmark.replace_section(gatys_benchmark.RESULTS, args.section, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
