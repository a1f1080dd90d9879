"""Where a texture network's colours go: colour variety, rare colours and bright specks, per model.

Quality v2 found the shipped networks' samples all one hue (pebbles: every stone grey-blue, the
exemplar's tan and pink ones missing) with a few glowing specks. This measures, on 256 px samples
(seeds 0-3, saved 8-bit) beside the exemplar the network was trained on:

- colour variety at the scale of objects: the standard deviation of the image blurred by a
  Gaussian of sigma 6 px, along the exemplar's two minor colour axes (chroma; its principal axis
  is mostly brightness), i.e. whether whole regions take different hues;
- rare colours: the share of pixels beyond the exemplar's 5th or 95th percentile on each minor
  axis (the exemplar scores 10% by construction);
- specks: the share of pixels brighter than the exemplar's brightest 0.1% (its 99.9th percentile of
  luminance), and the share where the sigmoid saturates (output within 1/255 of 0 or 1);
- BatchNorm: colour distance of the same noise through the network in eval mode (recalibrated
  running statistics) and in training mode (the batch's own statistics), to see whether the
  statistics used at inference lose colours.

    python benchmarks/texnet_colour.py trained/pebbles.safetensors runs/pebbles.safetensors
    python benchmarks/texnet_colour.py --texture pebbles gatys.png ...   # images against a texture
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gatys as gatys_benchmark  # noqa: E402

import texport.objectives.losses as losses  # noqa: E402
from texport.textures.images import load_exemplar, load_image, quantize  # noqa: E402
from texport.models.loading import load_texnet, sample_texnet  # noqa: E402


def blur(x: torch.Tensor, sigma: float = 6.0) -> torch.Tensor:
    radius = int(3 * sigma)
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = torch.nn.functional.pad(x, (radius,) * 4, mode="reflect")
    x = torch.nn.functional.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return torch.nn.functional.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def minor_axes(exemplar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pixels = exemplar.reshape(3, -1).double()
    mean = pixels.mean(dim=1, keepdim=True)
    cov = (pixels - mean) @ (pixels - mean).T / pixels.shape[1]
    _, vectors = torch.linalg.eigh(cov)  # ascending: the last is the principal (brightness) axis
    return mean.float(), vectors[:, :2].T.float()


def measures(images: torch.Tensor, exemplar: torch.Tensor) -> dict:
    mean, axes = minor_axes(exemplar)

    def chroma(x):
        return torch.einsum("kc,bchw->bkhw", axes, x - mean.view(1, 3, 1, 1))

    ex_chroma = chroma(exemplar).reshape(2, -1)
    lo, hi = ex_chroma.quantile(0.05, dim=1), ex_chroma.quantile(0.95, dim=1)
    c = chroma(images)
    luma = (images * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
    ex_luma = (exemplar * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
    top = ex_luma.flatten().quantile(0.999)
    rare = ((c < lo.view(1, 2, 1, 1)) | (c > hi.view(1, 2, 1, 1))).float().mean(dim=(0, 2, 3))
    return {
        "variety": [round(float(v), 4) for v in chroma(blur(images)).std(dim=(0, 2, 3))],
        "rare": [round(float(v), 4) for v in rare],
        "specks": round(float((luma > top).float().mean()), 5),
        "saturated": round(float(((images < 1 / 255) | (images > 254 / 255)).float().mean()), 5),
        "colour": round(float(losses.color_distance(images, exemplar).mean()), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="texture networks, or image files with --texture")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--texture", default=None, help="measure image files against this shared texture instead")
    args = parser.parse_args()
    if args.texture:
        path = gatys_benchmark.texture_path(args.texture)
        exemplar = load_exemplar(path, gatys_benchmark.EXEMPLAR_CROPS.get(path.stem))
        for name in args.models:
            print(json.dumps({"image": name, "samples": measures(quantize(load_image(name)), exemplar)}))
        return
    for name in args.models:
        model = load_texnet(name)
        manifest = model.manifest
        exemplar = load_exemplar(gatys_benchmark.texture_path(manifest["texture"]["name"]), manifest["texture"].get("crop"))
        samples = quantize(sample_texnet(model, args.size, seed=0, count=4))
        net = model.network
        noise = net.noise(args.size, args.size, seed=0, batch=4)
        with torch.no_grad():
            net.train()
            train_mode = quantize(net(noise))
            net.eval()
        row = {"model": name, "exemplar": measures(exemplar, exemplar), "samples": measures(samples, exemplar),
               "train-mode BatchNorm colour": round(float(losses.color_distance(train_mode, exemplar).mean()), 4)}
        print(json.dumps(row))


if __name__ == "__main__":
    main()
