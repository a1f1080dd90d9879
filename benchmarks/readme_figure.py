"""The README's picture: pebbles four ways, at 256x256.

    exemplar | texture network | ProPO | Gatys

- exemplar: the shipped pebbles image cut as the benchmarks cut it (`gatys.EXEMPLAR_CROPS`: the printed
  label along its bottom left out; 256x232, shown 1:1);
- texture network: the shipped `pebbles` network, noise seed 0;
- ProPO: the shipped `propo` model with that exemplar as its target, noise seed 0;
- Gatys: the cached reference run of `benchmarks/gatys.py` (400 L-BFGS-B evaluations of the default
  objective, seed 0). This script never starts one (about 15 minutes on one CPU thread): without the
  cached record it stops and says which command makes it.

Everything is seeded, so a re-run with the same models gives the same picture. Re-run it whenever a
shipped model changes (e.g. a retrained `trained/propo.safetensors`):

    OMP_NUM_THREADS=1 python benchmarks/readme_figure.py

Writes benchmarks/images/readme_pebbles.png.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gatys as reference  # noqa: E402  (benchmarks/gatys.py: the cached Gatys runs)

import texport.objectives.descriptor as descriptor
import texport.objectives.losses as losses  # noqa: E402
from texport.textures.images import load_exemplar, load_image, to_uint8  # noqa: E402
from texport.models.loading import load_propo, load_texnet, sample_texnet, sample_propo  # noqa: E402

OUTPUT = reference.IMAGES / "readme_pebbles.png"
TEXTURE = "pebbles"
SIZE = 256
SEED = 0
GAP = 6
LABEL_HEIGHT = 24


def gatys_reference(path: Path, crop) -> torch.Tensor:
    """The cached Gatys image for pebbles at SIZE px (default objective, BUDGET evaluations, seed 0)."""
    desc = descriptor.build_descriptor("auto", losses.PO_LAYERS, device="cpu")
    key = reference.cache_key(path, SIZE, "gram+color", reference.BUDGET, SEED, desc, crop)
    image_path = reference.CACHE / f"{key}.png"
    if not (reference.CACHE / f"{key}.json").is_file() or not image_path.is_file():
        sys.exit(f"readme_figure: no cached Gatys run {key} for {path.stem} at {SIZE} px; make it first with "
                 f"'python benchmarks/gatys.py --textures {path.stem} --sizes {SIZE}' (about 15 minutes on one thread)")
    return load_image(image_path)


def to_pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray(to_uint8(image[0] if image.dim() == 4 else image).permute(1, 2, 0).numpy(), "RGB")


def compose(panels: list[tuple[str, torch.Tensor]]) -> Image.Image:
    """The images 1:1 in a row, top-aligned, each with its label underneath, on white."""
    pils = [(label, to_pil(image)) for label, image in panels]
    width = sum(p.width for _, p in pils) + GAP * (len(pils) - 1)
    height = max(p.height for _, p in pils) + LABEL_HEIGHT
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    try:
        font = ImageFont.load_default(size=15)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        font = ImageFont.load_default()
    x = 0
    for label, pil in pils:
        canvas.paste(pil, (x, 0))
        text_width = draw.textlength(label, font=font)
        draw.text((x + (pil.width - text_width) / 2, height - LABEL_HEIGHT + 4), label, fill=(40, 40, 40), font=font)
        x += pil.width + GAP
    return canvas


def main() -> None:
    torch.manual_seed(SEED)
    path = reference.texture_path(TEXTURE)
    crop = reference.EXEMPLAR_CROPS.get(path.stem)
    exemplar = load_exemplar(path, crop)
    gatys_image = gatys_reference(path, crop)
    texnet = sample_texnet(load_texnet(TEXTURE), SIZE, seed=SEED)
    propo = sample_propo(load_propo("propo"), exemplar, SIZE, seed=SEED)
    figure = compose([("exemplar", exemplar), ("texture network", texnet), ("ProPO", propo), ("Gatys", gatys_image)])
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUTPUT.with_suffix(".tmp.png")
    figure.save(tmp, format="PNG", optimize=True)
    tmp.replace(OUTPUT)
    print(f"wrote {OUTPUT} ({figure.width}x{figure.height}); mean RGB {np.asarray(figure).mean():.1f}")


if __name__ == "__main__":
    main()
