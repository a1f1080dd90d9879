"""What ProPO's stationarity screen keeps and drops of its training data.

Every image of the dataset's training split (default: Debian's openarena-081-textures
pak4-textures.pk3), decoded as training decodes it (shortest side 256), measured by
`texport.objectives.metrics.half_distances`: the spectral distance and the largest mean-colour
difference between its halves, left/right and top/bottom. The four classic textures, which ProPO
never trains on, give the scale: two halves of a texture are two samples of one process. Writes the
RESULTS.md section `propo-data` and sheets of dropped and kept images (by SHA-1 of their names, so
no folder is favoured) to benchmarks/images/.

    python benchmarks/propo_data.py --dataset /path/to/pak4-textures.pk3
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gatys as gatys_benchmark  # noqa: E402

import texport.objectives.metrics as metrics  # noqa: E402
from texport.textures.datasets import DEFAULT_RESIZE, open_dataset  # noqa: E402
from texport.textures.images import load_exemplar, save_image, side_by_side, stack_rows  # noqa: E402
from texport.training.propo import DEFAULT_STATIONARITY, STATIONARY_COLOUR_LIMIT  # noqa: E402

DEFAULT_DATASET = Path("/work/data/oa/usr/share/games/openarena/baseoa/pak4-textures.pk3")
IMAGES = HERE / "images"
THUMB = 96


def resized(image: torch.Tensor, side: int = DEFAULT_RESIZE) -> torch.Tensor:
    h, w = image.shape[-2:]
    scale = side / min(h, w)
    return F.interpolate(image, size=(round(h * scale), round(w * scale)), mode="bicubic", antialias=True).clamp(0, 1)


def thumbs(data, indices: list[int]) -> torch.Tensor:
    tiles = [F.interpolate(data.image(i)[..., :256, :256], size=(THUMB, THUMB), mode="area") for i in indices]
    rows = [side_by_side(tiles[k:k + 12], height=THUMB) for k in range(0, len(tiles), 12)]
    width = max(r.shape[-1] for r in rows)
    return stack_rows([F.pad(r, (0, width - r.shape[-1]), value=1.0) for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--limit", type=float, default=DEFAULT_STATIONARITY)
    args = parser.parse_args()
    classic = {}
    for name in gatys_benchmark.TEXTURES.split(","):
        path = gatys_benchmark.texture_path(name)
        classic[name] = metrics.half_distances(resized(load_exemplar(path, gatys_benchmark.EXEMPLAR_CROPS.get(path.stem))))
    data = open_dataset(args.dataset, "train", DEFAULT_RESIZE, min_side=64)
    measured = {}
    for i in range(len(data)):
        image = data.image(i)
        if min(image.shape[-2:]) >= 2 * metrics.PATCH:
            measured[i] = metrics.half_distances(image)
    spectral_off = {i for i, (s, c) in measured.items() if s > args.limit}
    colour_off = {i for i, (s, c) in measured.items() if c > STATIONARY_COLOUR_LIMIT}
    dropped = sorted(spectral_off | colour_off)
    kept = [i for i in range(len(data)) if i not in set(dropped)]
    order = lambda ids: sorted(ids, key=lambda i: hashlib.sha1(data.names[i].encode()).hexdigest())  # noqa: E731
    IMAGES.mkdir(exist_ok=True)
    save_image(thumbs(data, order(dropped)[:48]), IMAGES / "propo_data_dropped.png")
    save_image(thumbs(data, order(kept)[:48]), IMAGES / "propo_data_kept.png")
    spectral = sorted(s for s, _ in measured.values())
    lines = [
        "## ProPO training data: the stationarity screen (`benchmarks/propo_data.py`)", "",
        f"Training split of `{args.dataset.name}` as `train propo` decodes it (shortest side {DEFAULT_RESIZE}; flat, small and "
        f"cut-out images already left out: {data.skipped}); {len(data)} images, {len(measured)} large enough to measure "
        f"(both halves >= {metrics.PATCH} px). An image is dropped when the spectral distance between its halves (the larger of "
        f"left/right and top/bottom) exceeds {args.limit:g}, or a channel's mean differs by more than "
        f"{STATIONARY_COLOUR_LIMIT:g} between halves. Measured {time.strftime('%Y-%m-%d')}.", "",
        "The classic textures (never trained on), at the same scale:", "",
        "| texture | spectral between halves | mean colour between halves |", "| --- | --- | --- |",
        *[f"| {n} | {s:.3f} | {c:.3f} |" for n, (s, c) in classic.items()], "",
        "| | images | share |", "| --- | --- | --- |",
        f"| training split | {len(data)} | 100% |",
        f"| dropped: spectral > {args.limit:g} | {len(spectral_off)} | {len(spectral_off) / len(data):.0%} |",
        f"| dropped: mean colour > {STATIONARY_COLOUR_LIMIT:g} | {len(colour_off)} | {len(colour_off) / len(data):.0%} |",
        f"| dropped (either) | {len(dropped)} | {len(dropped) / len(data):.0%} |",
        f"| kept | {len(kept)} | {len(kept) / len(data):.0%} |", "",
        f"Spectral distance between halves over the measured images: median {statistics.median(spectral):.3f}, "
        f"90th percentile {spectral[int(0.9 * (len(spectral) - 1))]:.3f}, largest {spectral[-1]:.3f}.", "",
        "Looked at: the dropped sheet is mostly decals, signs, flames, skies and trims; the screen compares halves, so "
        "an object centred in its image (a round lamp, an emblem, a symmetric panel) has two alike halves and is kept.", "",
        "Sheets (first 48 by SHA-1 of the name, 96 px thumbnails of GPL-2 OpenArena textures): "
        "`benchmarks/images/propo_data_dropped.png`, `benchmarks/images/propo_data_kept.png`.", "",
    ]
    gatys_benchmark.replace_section(gatys_benchmark.RESULTS, "propo-data", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
