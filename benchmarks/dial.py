"""The quality dial: quality against time on every path from noise or a model to a 256 px texture.

Paths (`--paths`), each with a budget of 400 objective evaluations (refinements 200; seed 0):
- gatys: Gatys from uniform noise (the reference; 400 evaluations is where it is taken as converged);
- coarse-to-fine: `gatys --coarse-to-fine 3` (the budget split by cost over three scales);
- texnet+refine: a shipped texture network's sample (seed 0), then Gatys evaluations from it (what
  `synth --refine N` and `gatys --init MODEL --iters N` both run);
- propo+refine: ProPO's sample for the exemplar, then the same refinement;
- pyramid (`--pyramid pebbles`): Gatys on the pyramid loss (`gatys --pyramid 3`, Snelgrove 2017), measured
  on the default objective at its snapshots only.
Texture networks run on their own exemplars; ProPO on the held-out textures of its benchmark
(`propo_quality.py`), which it never saw; their Gatys references are that benchmark's cached runs
(`propo_reference`). Model loading is timed apart and excluded from the curves; a model's synthesis
time is their start. Runs made under different loads are compared at the same speed too (each
run's seconds over its own seconds per evaluation).

Per path: the default objective (Gram + colour + spectrum) of every evaluation at full size (best so
far) against seconds, and at evaluations 0 (the start), 1, 2, 5, ... 400 the Quality v2 measures of
the image (`gatys.py measures`; a coarse scale's image upsampled to 256 px first). Writes per texture
a log-log chart (objective, spectral distance, judge against seconds) to benchmarks/images/dial_*.png
and the table of RESULTS.md "Quality dial": the objective after 0 and 50 evaluations against the
400-evaluation Gatys value, and the time to reach that value. Each run is cached in
benchmarks/cache/dial/ (keyed like the Gatys cache), so a stopped benchmark resumes where it was.

    python benchmarks/dial.py --pyramid pebbles                # the four texture networks
    python benchmarks/dial.py --textures none --propo 8        # ProPO on 8 held-out textures
    python benchmarks/dial.py --propo 8 --pyramid pebbles      # both, one table and the sheets

Also writes dial_sheet_texnet.png and dial_sheet_propo.png (1:1 crops of every path's images). Several processes can fill the cache at once (`--propo-shard K/N`).
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
import texport.optimization.gatys as gatys
import texport.objectives.losses as losses  # noqa: E402
from texport.models.checkpoints import read_manifest  # noqa: E402
from texport.objectives.descriptor import build_descriptor  # noqa: E402
from texport.textures.images import load_exemplar, load_image, quantize, save_image  # noqa: E402
from texport.models.loading import load_propo, load_texnet, sample_texnet, sample_propo
from texport.models.handle import resolve_model  # noqa: E402
from texport.objectives.objective import build_objective  # noqa: E402

SIZE = 256
BUDGET = 400
REFINE_BUDGET = 200  # a refinement slower than half of Gatys's time has missed its target (<= 25%) anyway
LEVELS = 3  # coarse-to-fine scales: 64, 128, 256 px
SNAPSHOTS = (1, 2, 5, 10, 20, 50, 100, 200, 400)
PATHS = ("gatys", "coarse-to-fine", "pyramid", "texnet+refine", "propo+refine")
PYRAMID_OCTAVES = 3  # the pyramid *loss* (Snelgrove 2017, `gatys --pyramid 3`), for comparison with coarse-to-fine
CACHE = HERE / "cache" / "dial"
IMAGES = CACHE / "images"  # each run's start, 50-evaluation and final images (git-ignored; the sheets are in benchmarks/images)
TARGETS = {"texnet_50": 3.0, "propo_50": 10.0, "texnet_reach": 0.25, "propo_reach": 0.5, "c2f_reach": 0.5}
COLOURS = {"gatys": (40, 40, 40), "coarse-to-fine": (30, 110, 220), "texnet+refine": (220, 60, 40), "propo+refine": (40, 160, 60),
           "pyramid": (150, 60, 180)}


def run_key(kind: str, path: Path, crop, model: str | None, desc) -> str:
    model_sha = hashlib.sha256(resolve_model(model).read_bytes()).hexdigest() if model else None
    parts = [kind, hashlib.sha256(path.read_bytes()).hexdigest(), crop, model_sha, SIZE, BUDGET, REFINE_BUDGET, LEVELS,
             list(SNAPSHOTS), gatys.level_budgets(BUDGET, LEVELS),
             desc.identity, gatys_benchmark.reference_fingerprint(desc), torch.__version__]
    if kind == "coarse-to-fine":
        parts.append("snapshots at the full size too, and the end")
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
    total = coarse + (gatys.level_budgets(BUDGET, LEVELS)[-1] if coarse else budget)
    snapshots = SNAPSHOTS + tuple(coarse + n for n in SNAPSHOTS) + (total,) if coarse else SNAPSHOTS  # coarse and full-size images
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
    kept = {"start": 0, "at50": coarse + 50, "end": max(images)}  # 50: evaluations at full size
    points = []
    IMAGES.mkdir(parents=True, exist_ok=True)
    for n in sorted(images):
        image = images[n]
        if image.shape[-2:] != (SIZE, SIZE):
            image = gatys.upsample(image, SIZE, SIZE, circular=False)
        if n in kept.values():
            save_image(quantize(image)[0], IMAGES / f"{key}_{n}.png")
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
              "images": {which: n for which, n in kept.items() if n in images},
              "machine": f"{gatys_benchmark.cpu_name()}, {torch.get_num_threads()} threads"}
    CACHE.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record))
    return record


def propo_reference(texture: Path, desc, device: str, records: list[dict]) -> dict:
    """Gatys's 400-evaluation result on a held-out texture, from the ProPO benchmark's Gatys cache.

    ProPO's benchmark (`propo_quality.py`) already ran these references (`benchmarks/gatys.py`'s cache,
    same objective, size and seed), so the dial does not run them again: it has their final value, not
    their curve. That value is the objective of the saved 8-bit image, and it is compared with the refined
    sample's 8-bit measures. Their seconds were measured in another session under another load, so the
    Gatys time used for 'reach' is 400 times the refinement's own seconds per evaluation (the same image
    size, objective and process: an evaluation costs the same from noise or from a sample).
    """
    record = gatys_benchmark.run_one(texture, SIZE, "gram+color", BUDGET, 0, device, desc)
    refined = next((r for r in records if r["kind"] == "propo+refine"), None)
    if refined is not None and len(refined["curve"]) > 1:
        times = [s for s, _ in refined["curve"]]
        seconds = BUDGET * statistics.median(b - a for a, b in zip(times, times[1:]))
    else:
        seconds = record["seconds"]
    point = {"evaluations": BUDGET, "seconds": round(seconds, 4),
             **{k: record[k] for k in ("objective", "gram", "spectral", "judge", "color", "target")}}
    return {"kind": "gatys", "texture": texture.stem, "crop": None, "model": None, "load_seconds": 0.0,
            "start_seconds": 0.0, "curve": [[round(seconds, 4), record["objective"]]], "points": [point],
            "key": record["key"], "machine": record["machine"], "quantized": True}


def seconds_per_evaluation(record: dict) -> float:
    """The run's median seconds per full-size evaluation: its own measure of the machine's speed under its load."""
    times = [s for s, _ in record["curve"]]
    if len(times) < 2:
        return record["curve"][0][0] / BUDGET
    return statistics.median(b - a for a, b in zip(times, times[1:]))


def image_at(record: dict, which: str) -> Path | None:
    """A run's saved 8-bit image: 'start', 'at50' (50 full-size evaluations) or 'end'; None if not kept."""
    if record.get("quantized"):  # a ProPO reference: the Gatys cache's final image
        return gatys_benchmark.CACHE / f"{record['key']}.png" if which == "end" else None
    kept = record.get("images")
    if not isinstance(kept, dict):  # records made before the field: full-size runs, images (if any) at 0, 50, end
        kept = {"start": 0, "at50": 50, "end": REFINE_BUDGET if record["kind"].endswith("+refine") else BUDGET}
    n = kept.get(which)
    path = IMAGES / f"{record['key']}_{n}.png"
    return path if n is not None and path.is_file() else None


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
    parser.add_argument("--propo-shard", default="0/1", help="K/N: run only the held-out textures i with i %% N == K "
                        "(N processes fill the cache in parallel; a last run with 0/1 writes the table)")
    parser.add_argument("--paths", default="gatys,coarse-to-fine,texnet+refine,propo+refine",
                        help=f"any of {', '.join(PATHS)} (pyramid: the pyramid loss, for comparison with coarse-to-fine)")
    parser.add_argument("--propo-paths", default="gatys,propo+refine",
                        help="paths on ProPO's held-out textures (gatys: the cached reference; coarse-to-fine: also)")
    parser.add_argument("--pyramid", default="", help="texture networks (comma-separated) whose exemplars also get the "
                        "pyramid-loss path, for comparison with coarse-to-fine (e.g. pebbles)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    paths = args.paths.split(",")
    desc = build_descriptor("auto", losses.PO_LAYERS, device=args.device)
    groups: list[tuple[str, list[dict], Path, object]] = []  # (name, records, exemplar file, its crop)
    for name in ([] if args.textures == "none" else args.textures.split(",")):
        manifest = read_manifest(resolve_model(name))
        texture = gatys_benchmark.texture_path(manifest["texture"]["name"])
        crop = manifest["texture"].get("crop")
        kinds = [k for k in paths if k != "propo+refine"] + (["pyramid"] if name in args.pyramid.split(",") and
                                                             "pyramid" not in paths else [])
        records = [run_path(kind, texture, crop, name if kind == "texnet+refine" else None, desc, args.device)
                   for kind in kinds]
        groups.append((f"texnet {name}", records, texture, crop))
        chart(records, f"{name}, {SIZE} px, {gatys_benchmark.cpu_name()}", gatys_benchmark.IMAGES / f"dial_{name}.png")
    if args.propo:
        from propo_quality import find_dataset, pick_textures

        manifest = read_manifest(resolve_model(args.propo_model))
        fraction = manifest["dataset"].get("held_out_fraction", 0.1)
        shard, shards = (int(v) for v in args.propo_shard.split("/"))
        picked = pick_textures(find_dataset(args.dataset), "held-out", args.propo, fraction)
        for texture in [t for i, t in enumerate(picked) if i % shards == shard]:
            propo_paths = args.propo_paths.split(",")
            records = [run_path(kind, texture, None, args.propo_model if kind == "propo+refine" else None, desc, args.device)
                       for kind in propo_paths if kind not in ("texnet+refine", "gatys")]
            if "gatys" in propo_paths:
                records.insert(0, propo_reference(texture, desc, args.device, records))
            groups.append((f"propo {texture.stem}", records, texture, None))
            chart(records, f"ProPO, {texture.stem}, {SIZE} px", gatys_benchmark.IMAGES / f"dial_propo_{texture.stem[:40]}.png")
    if args.propo_shard == "0/1":  # the last run over everything: sheets and table
        write_sheets(groups, desc)
        write_results(groups, args)


SHEET_CROP = 128  # 1:1 crops: what the eye judges (hatching, blotches) is lost in a downscaled thumbnail
SHEET_COLUMNS = (("gatys", "end", "Gatys 400"), ("coarse-to-fine", "end", "coarse-to-fine"),
                 ("model", "start", "model sample"), ("model", "at50", "sample + 50"), ("model", "end", "sample + 200"))


def write_sheets(groups: list[tuple[str, list[dict], Path, object]], desc) -> None:
    """Per model kind, one sheet: a row per texture (the exemplar, then each path's image, 128 px 1:1
    crops from the top left)."""
    from PIL import Image, ImageDraw

    from texport.textures.images import to_uint8

    def crop(image: torch.Tensor, side: int = SHEET_CROP) -> Image.Image:
        array = to_uint8(image[0] if image.dim() == 4 else image).permute(1, 2, 0).numpy()
        return Image.fromarray(array[:side, :side], "RGB")

    for kind in ("texnet", "propo"):
        rows = [group for group in groups if group[0].startswith(kind + " ")]
        if not rows:
            continue
        columns = [c for c in SHEET_COLUMNS if c[0] != "coarse-to-fine" or
                   any(r["kind"] == "coarse-to-fine" for group in rows for r in group[1])]
        gap, label = 4, 14
        sheet = Image.new("RGB", ((SHEET_CROP + gap) * (len(columns) + 1), label + (SHEET_CROP + gap) * len(rows)), "white")
        draw = ImageDraw.Draw(sheet)
        for c, title in enumerate(["exemplar"] + [t for _, _, t in columns]):
            draw.text((c * (SHEET_CROP + gap) + 2, 1), title, fill=(0, 0, 0))
        for r, (name, records, texture, texture_crop) in enumerate(rows):
            y = label + r * (SHEET_CROP + gap)
            sheet.paste(crop(load_exemplar(texture, texture_crop)), (0, y))
            for c, (path_kind, which, _) in enumerate(columns, start=1):
                image_path = path_image(records, path_kind, which, texture, texture_crop, desc)
                if image_path is not None:
                    sheet.paste(crop(load_image(image_path)), (c * (SHEET_CROP + gap), y))
            draw.text((2, y + SHEET_CROP - 12), name.split(" ", 1)[1][:20], fill=(255, 255, 255))
        out = gatys_benchmark.IMAGES / f"dial_sheet_{kind}.png"
        sheet.save(out, optimize=True)
        print(f"wrote {out}")


def path_image(records: list[dict], path_kind: str, which: str, texture: Path, crop, desc) -> Path | None:
    """The image a sheet column shows: path_kind ('model': the texture's +refine run) at 'start', 'at50' or 'end'."""
    record = next((q for q in records if q["kind"] == path_kind or
                   (path_kind == "model" and q["kind"].endswith("+refine"))), None)
    image_path = image_at(record, which) if record else None
    if image_path is None and path_kind == "gatys" and which == "end":
        image_path = gatys_reference_image(texture, crop, desc)
    return image_path


def gatys_reference_image(texture: Path, crop, desc) -> Path | None:
    """The Gatys benchmark's cached 400-evaluation image of the same exemplar, objective and seed, for runs
    of this benchmark made before it kept images (the same computation, run by benchmarks/gatys.py)."""
    path = gatys_benchmark.CACHE / f"{gatys_benchmark.cache_key(texture, SIZE, 'gram+color', BUDGET, 0, desc, crop)}.png"
    return path if path.is_file() else None


def write_results(groups: list[tuple[str, list[dict], Path, object]], args) -> None:
    machines = sorted({r["machine"] for _, records, _, _ in groups for r in records})
    lines = [
        "## Quality dial (`benchmarks/dial.py`)",
        "",
        f"{SIZE}x{SIZE}, seed 0, the default objective (Gram + colour + spectrum). Paths: Gatys from noise ({BUDGET} "
        f"evaluations), coarse-to-fine Gatys ({LEVELS} scales, evaluations {gatys.level_budgets(BUDGET, LEVELS)} costing "
        f"about {BUDGET} full-size ones), a model's sample refined by {REFINE_BUDGET} Gatys evaluations (`synth --refine N` "
        "= `gatys --init MODEL --iters N`). Objective: best value so far at full size, unquantized as the optimizer sees "
        "it, except in ProPO rows: their Gatys reference is the 8-bit result of the ProPO benchmark's cached run "
        "(`propo_quality.py`, same objective, size and seed), so 'after 50' there is the refined sample's 8-bit value. "
        f"'Reach': seconds until the path's objective is at or below the {BUDGET}-evaluation Gatys value, model loading "
        "excluded (its own column); 'not reached' within the path's budget. The runs were made at different times under "
        "different loads (two benchmark processes on two cores, sometimes with training beside them), so 'same speed' "
        "divides each run's seconds by its own median seconds per full-size evaluation before comparing (ProPO rows: the "
        "Gatys time is 400 times the refinement's seconds per evaluation). Machines: "
        f"{'; '.join(machines)}, torch {torch.__version__}, device {args.device}, texport {texport.__version__}; "
        f"measured {time.strftime('%Y-%m-%d')}. Images: `benchmarks/images/dial_sheet_texnet.png`, "
        "`dial_sheet_propo.png` (128 px 1:1 crops of each path's start, 50-evaluation and final image).",
        "",
        "| texture | path | load s | start s | objective at start | after 50 | s at 50 | Gatys 400 | after 50 / Gatys 400 | "
        "reach s | Gatys s | reach / Gatys | same speed | spectral at 50 | judge at 50 |",
        "|" + " --- |" * 15,
    ]
    summary: dict[str, list[tuple[float | None, float, float | None, float | None]]] = {}
    for name, records, _, _ in groups:
        ref = next((r for r in records if r["kind"] == "gatys"), None)
        if ref is None:
            print(f"{name}: no Gatys reference among --paths; the table needs one", file=sys.stderr)
            continue
        ref_value, ref_seconds = ref["curve"][-1][1], ref["curve"][-1][0]
        for r in records:
            at_start = next((q["objective"] for q in r["points"] if q["evaluations"] == 0), None)
            refining = r["kind"] in ("texnet+refine", "propo+refine")
            at50 = _at50(r)
            point50 = next((q for q in r["points"] if q["evaluations"] == at50), {})
            after50 = (point50["objective"] if ref.get("quantized") else value_at(r, 50)) if refining else None
            reach = time_to_reach(r, ref_value)
            ratio = after50 / ref_value if after50 is not None else None
            share = reach / ref_seconds if reach is not None else None
            ref_speed = seconds_per_evaluation(r) if ref.get("quantized") else seconds_per_evaluation(ref)
            same_speed = (reach / seconds_per_evaluation(r)) / (ref_seconds / ref_speed) if reach is not None else None
            if r["kind"] != "gatys":
                summary.setdefault(r["kind"], []).append((after50, ref_value, share, same_speed))
            elif ref.get("quantized"):
                continue  # the reference row of a held-out texture: its numbers are in the ProPO rows
            cells = [name[:40], r["kind"], f"{r['load_seconds']:.2f}", f"{r['start_seconds']:.2f}", _g(at_start),
                     _g(after50), _f(point50.get("seconds")), f"{ref_value:.4g}", _f(ratio, 2), _f(reach), f"{ref_seconds:.1f}",
                     _f(share, 2), _f(same_speed, 2), _f(point50.get("spectral"), 3), _f(point50.get("judge"), 3)]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| path | after 50 / Gatys 400: ratio of means (median) | target | reach / Gatys time, same speed: median "
              "(reached; raw seconds median) | target |", "| --- | --- | --- | --- | --- |"]
    targets = {"texnet+refine": ("texnet_50", "texnet_reach"), "propo+refine": ("propo_50", "propo_reach"),
               "coarse-to-fine": (None, "c2f_reach"), "pyramid": (None, None)}
    for kind, rows in summary.items():
        pairs = [(a, g) for a, g, _, _ in rows if a is not None]
        raw = statistics.median(s if s is not None else float("inf") for _, _, s, _ in rows)
        same = statistics.median(s if s is not None else float("inf") for _, _, _, s in rows)
        t50, treach = targets[kind]
        means = (f"{statistics.mean(a for a, _ in pairs) / statistics.mean(g for _, g in pairs):.2f} "
                 f"({statistics.median(a / g for a, g in pairs):.2f})") if pairs else "-"
        reached = sum(s is not None for _, _, _, s in rows)
        lines.append(f"| {kind} | {means} | {'-' if t50 is None else f'<= {TARGETS[t50]:g}'} | "
                     f"{_f(same if same != float('inf') else None, 2, 'not reached')} ({reached} of {len(rows)}; "
                     f"{_f(raw if raw != float('inf') else None, 2, 'not reached')}) | "
                     f"{'-' if treach is None else f'<= {TARGETS[treach]:g}'} |")
    lines += ["", "Charts: `benchmarks/images/dial_*.png` (objective, spectral distance, judge against seconds, log-log).", ""]
    gatys_benchmark.replace_section(gatys_benchmark.RESULTS, "dial", "\n".join(lines))
    print("\n".join(lines))


def _at50(record: dict) -> int:
    """The evaluation count of a run's 50th full-size evaluation (coarse-to-fine counts its coarse ones first)."""
    kept = record.get("images")
    return kept.get("at50", 50) if isinstance(kept, dict) else 50


def _f(value: float | None, digits: int = 1, missing: str = "-") -> str:
    return missing if value is None else f"{value:.{digits}f}"


def _g(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


if __name__ == "__main__":
    main()
