"""The quality dial: quality against time on every path from noise or a model to a 256 px texture.

Paths (`--paths`), each with a budget of 400 objective evaluations (refinements 200; seed 0):
- gatys: Gatys from uniform noise (the reference; 400 evaluations is where it is taken as converged);
- coarse-to-fine: `gatys --coarse-to-fine 3` (the budget split by cost over three scales);
- texnet+refine: a shipped texture network's sample (seed 0), then Gatys evaluations from it (what
  `synth --refine N` and `gatys --init MODEL --iters N` both run);
- propo+refine: ProPO's sample for the exemplar, then the same refinement;
- pyramid (on request): Gatys on the pyramid loss (`gatys --pyramid 3`, Snelgrove 2017), measured on the
  default objective at its snapshots only.
Texture networks run on their own exemplars; ProPO on the held-out textures of its benchmark
(`propo_quality.py`), which it never saw. Model loading is timed apart and excluded from the curves;
a model's synthesis time is their start.

Per path: the default objective (Gram + colour + spectrum) of every evaluation at full size (best so
far) against seconds, and at evaluations 0 (the start), 1, 2, 5, ... 400 the Quality v2 measures of
the image (`gatys.py measures`; a coarse scale's image upsampled to 256 px first). Writes per texture
a log-log chart (objective, spectral distance, judge against seconds) to benchmarks/images/dial_*.png
and the table of RESULTS.md "Quality dial": the objective after 0 and 50 evaluations against the
400-evaluation Gatys value, and the time to reach that value. Each run is cached in
benchmarks/cache/dial/ (keyed like the Gatys cache), so a stopped benchmark resumes where it was.

    python benchmarks/dial.py                                  # the four texture networks
    python benchmarks/dial.py --textures none --propo 8        # ProPO on 8 held-out textures
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

import texport  # noqa: E402
from texport import gatys, losses  # noqa: E402
from texport.checkpoints import read_manifest  # noqa: E402
from texport.descriptor import build_descriptor  # noqa: E402
from texport.images import load_exemplar, quantize  # noqa: E402
from texport.models import load_propo, load_texnet, resolve_model, sample_texnet, sample_propo  # noqa: E402
from texport.objective import build_objective  # noqa: E402

SIZE = 256
BUDGET = 400
REFINE_BUDGET = 200  # a refinement slower than half of Gatys's time has missed its target (<= 25%) anyway
LEVELS = 3  # coarse-to-fine scales: 64, 128, 256 px
SNAPSHOTS = (1, 2, 5, 10, 20, 50, 100, 200, 400)
PATHS = ("gatys", "coarse-to-fine", "pyramid", "texnet+refine", "propo+refine")
PYRAMID_OCTAVES = 3  # the pyramid *loss* (Snelgrove 2017, `gatys --pyramid 3`), for comparison with coarse-to-fine
CACHE = HERE / "cache" / "dial"
TARGETS = {"texnet_50": 3.0, "propo_50": 10.0, "texnet_reach": 0.25, "propo_reach": 0.5, "c2f_reach": 0.5}
COLOURS = {"gatys": (40, 40, 40), "coarse-to-fine": (30, 110, 220), "texnet+refine": (220, 60, 40), "propo+refine": (40, 160, 60),
           "pyramid": (150, 60, 180)}


def run_key(kind: str, path: Path, crop, model: str | None, desc) -> str:
    model_sha = hashlib.sha256(resolve_model(model).read_bytes()).hexdigest() if model else None
    parts = [kind, hashlib.sha256(path.read_bytes()).hexdigest(), crop, model_sha, SIZE, BUDGET, REFINE_BUDGET, LEVELS,
             list(SNAPSHOTS), gatys.level_budgets(BUDGET, LEVELS),
             desc.identity, gatys_benchmark.reference_fingerprint(desc), torch.__version__]
    if kind == "coarse-to-fine":
        parts.append("snapshots at the full size too")
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]


def run_path(kind: str, path: Path, crop, model: str | None, desc, device: str) -> dict:
    """One path on one texture (cached): curve, measured snapshots, load and start seconds."""
    key = run_key(kind, path, crop, model, desc)
    record_path = CACHE / f"{key}.json"
    if record_path.is_file():
        return json.loads(record_path.read_text())
    print(f"  {kind} {path.stem} ...", flush=True)
    exemplar = load_exemplar(path, crop)
    objective = build_objective(exemplar, descriptor=desc)
    if kind == "pyramid":  # its own objective (Snelgrove's layers over 3 octaves); measured on the default one
        name = desc.identity.split(":")[0]
        pyramid_desc = build_descriptor(name, losses.PYRAMID_LAYERS, device=device)  # the same weights, trimmed shallower
        objective = build_objective(exemplar, octaves=PYRAMID_OCTAVES, descriptor=pyramid_desc)
    init, load_seconds, start_seconds = None, 0.0, 0.0
    if kind in ("texnet+refine", "propo+refine"):
        t0 = time.perf_counter()
        loaded = load_texnet(model, device) if kind == "texnet+refine" else load_propo(model, device)
        t1 = time.perf_counter()
        init = sample_texnet(loaded, SIZE, seed=0) if kind == "texnet+refine" else sample_propo(loaded, exemplar, SIZE, seed=0)
        load_seconds, start_seconds = t1 - t0, time.perf_counter() - t1
    budget = REFINE_BUDGET if init is not None else BUDGET
    coarse = sum(gatys.level_budgets(BUDGET, LEVELS)[:-1]) if kind == "coarse-to-fine" else 0
    snapshots = SNAPSHOTS + tuple(coarse + n for n in SNAPSHOTS) if coarse else SNAPSHOTS  # coarse and full-size images
    result = gatys.synthesize(None, SIZE, budget, objective=objective, init=init, seed=0, device=device,
                              coarse_to_fine=LEVELS if kind == "coarse-to-fine" else 1, snapshots=snapshots)
    if kind == "pyramid":
        coarse = len(result.history)  # none of its values are the default objective's: the curve comes from the points
    curve, best = [], float("inf")
    for n, (value, seconds) in enumerate(zip(result.history, result.times), start=1):
        if n > coarse:  # values at coarse scales are against a downsampled exemplar: not comparable
            best = min(best, value)
            curve.append([round(start_seconds + seconds, 4), best])
    images = ({0: init} if init is not None else {}) | dict(result.snapshots)
    points = []
    for n in sorted(images):
        image = images[n]
        if image.shape[-2:] != (SIZE, SIZE):
            image = gatys.upsample(image, SIZE, SIZE, circular=False)
        measured = gatys_benchmark.measures(quantize(image), exemplar, desc)[0]
        seconds = start_seconds + (result.times[n - 1] if n else 0.0)
        points.append({"evaluations": n, "seconds": round(seconds, 4), **{k: measured[k] for k in
                       ("objective", "gram", "spectral", "judge", "color", "target")}})
    if kind == "pyramid":
        for q in points:
            best = min(best, q["objective"])
            curve.append([q["seconds"], best])
    record = {"kind": kind, "texture": path.stem, "crop": crop, "model": model, "load_seconds": round(load_seconds, 4),
              "start_seconds": round(start_seconds, 4), "curve": curve, "points": points, "key": key,
              "machine": f"{gatys_benchmark.cpu_name()}, {torch.get_num_threads()} threads"}
    CACHE.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record))
    return record


def value_at(record: dict, evaluations: int) -> float:
    """Best objective after `evaluations` full-size evaluations (a refinement's curve starts at its first)."""
    return record["curve"][min(evaluations, len(record["curve"])) - 1][1]


def time_to_reach(record: dict, value: float) -> float | None:
    return next((s for s, v in record["curve"] if v <= value), None)


# ---------------------------------------------------------------------------------------------
# A log-log chart with PIL (no plotting dependency)


def chart(records: list[dict], title: str, out: Path) -> None:
    from PIL import Image, ImageDraw

    import math

    panels = (("objective", "objective (best so far)"), ("spectral", "spectral distance"), ("judge", "judge distance"))
    w, h, pad = 360, 260, 48
    img = Image.new("RGB", (w * len(panels), h + 40), "white")
    draw = ImageDraw.Draw(img)
    draw.text((8, 4), title, fill=(0, 0, 0))
    for p, (field, label) in enumerate(panels):
        series = []
        for r in records:
            if field == "objective":
                pts = [(s, v) for s, v in r["curve"] if s > 0 and v > 0]
            else:
                pts = [(q["seconds"], q[field]) for q in r["points"] if q["seconds"] > 0 and q[field] > 0]
            series.append((r["kind"], pts))
        xs = [s for _, pts in series for s, _ in pts]
        ys = [v for _, pts in series for _, v in pts]
        if not xs:
            continue
        lx0, lx1 = math.floor(math.log10(min(xs))), math.ceil(math.log10(max(xs)))
        ly0, ly1 = math.log10(min(ys)), math.log10(max(ys))
        ly0, ly1 = (ly0 - 0.05, ly1 + 0.05) if ly1 > ly0 else (ly0 - 0.5, ly1 + 0.5)
        x0, y0 = p * w + pad, 30

        def at(s: float, v: float) -> tuple[float, float]:
            fx = (math.log10(s) - lx0) / max(lx1 - lx0, 1e-9)
            fy = (math.log10(v) - ly0) / (ly1 - ly0)
            return x0 + fx * (w - pad - 12), y0 + (1 - fy) * (h - pad)

        draw.rectangle([x0, y0, x0 + w - pad - 12, y0 + h - pad], outline=(120, 120, 120))
        for e in range(lx0, lx1 + 1):
            gx, _ = at(10 ** e, 10 ** ly0)
            draw.line([gx, y0 + h - pad, gx, y0 + h - pad + 4], fill=(0, 0, 0))
            draw.text((gx - 10, y0 + h - pad + 6), f"1e{e}s" if e not in (0, 1, 2) else f"{10 ** e}s", fill=(0, 0, 0))
        for v in (10 ** ly0, 10 ** ly1):
            _, gy = at(10 ** lx0, v)
            draw.text((p * w + 2, gy - 6), f"{v:.2g}", fill=(0, 0, 0))
        draw.text((x0 + 4, y0 + h - pad + 20), label, fill=(0, 0, 0))
        for kind, pts in series:
            line = [at(s, v) for s, v in pts]
            if len(line) > 1:
                draw.line(line, fill=COLOURS[kind], width=2)
            for cx, cy in line if field != "objective" else line[:1]:
                draw.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=COLOURS[kind])
    for i, kind in enumerate(k for k in PATHS if any(r["kind"] == k for r in records)):
        draw.line([w * len(panels) - 150, 10 + 12 * i, w * len(panels) - 130, 10 + 12 * i], fill=COLOURS[kind], width=3)
        draw.text((w * len(panels) - 125, 4 + 12 * i), kind, fill=(0, 0, 0))
    out.parent.mkdir(exist_ok=True)
    img.save(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--textures", default="pebbles,red-peppers,bark,cezanne",
                        help="shipped texture networks to run (their exemplars; none: skip)")
    parser.add_argument("--propo", type=int, default=0, help="held-out textures for ProPO (0: skip)")
    parser.add_argument("--propo-model", default="propo")
    parser.add_argument("--dataset", default=None)
    parser.add_argument("--paths", default="gatys,coarse-to-fine,texnet+refine,propo+refine",
                        help=f"any of {', '.join(PATHS)} (pyramid: the pyramid loss, for comparison with coarse-to-fine)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    paths = args.paths.split(",")
    desc = build_descriptor("auto", losses.PO_LAYERS, device=args.device)
    groups: list[tuple[str, list[dict]]] = []
    for name in ([] if args.textures == "none" else args.textures.split(",")):
        manifest = read_manifest(resolve_model(name))
        texture = gatys_benchmark.texture_path(manifest["texture"]["name"])
        crop = manifest["texture"].get("crop")
        records = [run_path(kind, texture, crop, name if kind == "texnet+refine" else None, desc, args.device)
                   for kind in paths if kind != "propo+refine"]
        groups.append((f"texnet {name}", records))
        chart(records, f"{name}, {SIZE} px, {gatys_benchmark.cpu_name()}", gatys_benchmark.IMAGES / f"dial_{name}.png")
    if args.propo:
        from propo_quality import find_dataset, pick_textures

        manifest = read_manifest(resolve_model(args.propo_model))
        fraction = manifest["dataset"].get("held_out_fraction", 0.1)
        for texture in pick_textures(find_dataset(args.dataset), "held-out", args.propo, fraction):
            records = [run_path(kind, texture, None, args.propo_model if kind == "propo+refine" else None, desc, args.device)
                       for kind in paths if kind != "texnet+refine"]
            groups.append((f"propo {texture.stem}", records))
            chart(records, f"ProPO, {texture.stem}, {SIZE} px", gatys_benchmark.IMAGES / f"dial_propo_{texture.stem[:40]}.png")
    write_results(groups, args)


def write_results(groups: list[tuple[str, list[dict]]], args) -> None:
    lines = [
        "## Quality dial (`benchmarks/dial.py`)",
        "",
        f"{SIZE}x{SIZE}, seed 0, {BUDGET} evaluations per path of the default objective (Gram + colour + spectrum): Gatys from "
        f"noise, coarse-to-fine Gatys ({LEVELS} scales), a model's sample refined by Gatys evaluations (`synth --refine N` "
        "= `gatys --init MODEL --iters N`). Objective: best value so far at full size (unquantized, as the optimizer sees "
        "it); 'after N' counts refinement evaluations; 'reach': seconds until the path's objective is at or below the "
        f"{BUDGET}-evaluation Gatys value, model loading excluded (its own column). Machine: {gatys_benchmark.cpu_name()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, device {args.device}, texport "
        f"{texport.__version__}; measured {time.strftime('%Y-%m-%d')}.",
        "",
        "| texture | path | load s | start s | objective at start | after 50 | s at 50 | Gatys 400 | after 50 / Gatys 400 | "
        "reach s | Gatys s | reach / Gatys | spectral at 50 | judge at 50 |",
        "|" + " --- |" * 14,
    ]
    summary: dict[str, list[tuple[float | None, float, float | None]]] = {}  # (after 50, Gatys 400, reach share)
    for name, records in groups:
        ref = next(r for r in records if r["kind"] == "gatys")
        ref_value, ref_seconds = ref["curve"][-1][1], ref["curve"][-1][0]
        for r in records:
            at_start = next((q["objective"] for q in r["points"] if q["evaluations"] == 0), None)
            refining = r["kind"] in ("texnet+refine", "propo+refine")
            after50 = value_at(r, 50) if refining else None
            reach = time_to_reach(r, ref_value)
            point50 = next((q for q in r["points"] if q["evaluations"] == 50), {})
            seconds50 = point50.get("seconds") if refining else None  # sample + 50 evaluations, loading excluded
            ratio = after50 / ref_value if after50 is not None else None
            share = reach / ref_seconds if reach is not None else None
            if r["kind"] != "gatys":
                summary.setdefault(r["kind"], []).append((after50, ref_value, share))
            lines.append(
                f"| {name[:40]} | {r['kind']} | {r['load_seconds']:.2f} | {r['start_seconds']:.2f} | "
                f"{'-' if at_start is None else f'{at_start:.4g}'} | {'-' if after50 is None else f'{after50:.4g}'} | "
                f"{'-' if seconds50 is None else f'{seconds50:.1f}'} | "
                f"{ref_value:.4g} | {'-' if ratio is None else f'{ratio:.2f}'} | {'-' if reach is None else f'{reach:.1f}'} | "
                f"{ref_seconds:.1f} | {'-' if share is None else f'{share:.2f}'} | {point50.get('spectral', float('nan')):.3f} | "
                f"{point50.get('judge', float('nan')):.3f} |")
    lines += ["", "| path | after 50 / Gatys 400: ratio of means (median) | target | reach / Gatys time: median (reached) | target |",
              "| --- | --- | --- | --- | --- |"]
    targets = {"texnet+refine": ("texnet_50", "texnet_reach"), "propo+refine": ("propo_50", "propo_reach"),
               "coarse-to-fine": (None, "c2f_reach"), "pyramid": (None, None)}
    for kind, rows in summary.items():
        pairs = [(a, g) for a, g, _ in rows if a is not None]
        shares = [s if s is not None else float("inf") for _, _, s in rows]
        t50, treach = targets[kind]
        means = (f"{statistics.mean(a for a, _ in pairs) / statistics.mean(g for _, g in pairs):.2f} "
                 f"({statistics.median(a / g for a, g in pairs):.2f})") if pairs else "-"
        lines.append(f"| {kind} | {means} | "
                     f"{'-' if t50 is None else f'<= {TARGETS[t50]:g}'} | "
                     f"{'not reached' if statistics.median(shares) == float('inf') else f'{statistics.median(shares):.2f}'} "
                     f"({sum(s != float('inf') for s in shares)} of {len(shares)}) | "
                     f"{'-' if treach is None else f'<= {TARGETS[treach]:g}'} |")
    lines += ["", "Charts: `benchmarks/images/dial_*.png` (objective, spectral distance, judge against seconds, log-log).", ""]
    gatys_benchmark.replace_section(gatys_benchmark.RESULTS, "dial", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
