"""DDS quality: PSNR of every mip level per format, decoded by an independent reader.

A tileable sample of each shipped texture network is written as DDS in every format with the full
mip chain (texport.textures.dds.encode_dds, sRGB by default or --linear); each level is decoded with
texture2ddecoder (not texport's code) and compared with the float level before encoding
(texport.textures.mips.mip_chain of the 8-bit level 0; the encoder is given these floats rounded to 8 bits). Level 0's float is the PNG itself, so its row is also the PSNR against the PNG that
`synth` writes for the same seed. Also reported: file size and the seconds encode_dds took (the float
chain and the blocks, one CPU thread).

    python benchmarks/dds_quality.py                      # pebbles and red-peppers, 512 px, seed 0
    python benchmarks/dds_quality.py --models bark --size 256 --section dds-bark
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import texture2ddecoder
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gatys as gatys_benchmark  # noqa: E402  (cpu_name, replace_section)

import texport  # noqa: E402
import texport.textures.dds as dds
import texport.textures.mips as mips  # noqa: E402
from texport.models.loading import load_texnet, sample_texnet  # noqa: E402

FORMATS = ("bc7", "bc1", "bc3", "rgba8")
DECODE = {"bc7": texture2ddecoder.decode_bc7, "bc1": texture2ddecoder.decode_bc1, "bc3": texture2ddecoder.decode_bc3}


def decoded_levels(data: bytes, fmt: str, width: int, height: int) -> list[np.ndarray]:
    offset, levels = dds.HEADER_BYTES, []
    for w, h in mips.level_sizes(width, height):
        n = dds.level_bytes(fmt, w, h)
        raw = data[offset:offset + n]
        offset += n
        if fmt == "rgba8":
            levels.append(np.frombuffer(raw, np.uint8).reshape(h, w, 4)[..., :3])
        else:  # texture2ddecoder writes BGRA
            levels.append(np.frombuffer(DECODE[fmt](raw, w, h), np.uint8).reshape(h, w, 4)[..., [2, 1, 0]])
    assert offset == len(data)
    return levels


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def measure(model: str, size: int, seed: int, srgb: bool) -> dict:
    rgb = dds.stored_rgb(sample_texnet(load_texnet(model), size, seed=seed, tileable=True))
    chain = mips.mip_chain(rgb / 255.0, tileable=True, srgb=srgb)
    result = {"sizes": mips.level_sizes(size, size), "formats": {}}
    for fmt in FORMATS:
        start = time.perf_counter()
        data = dds.encode_dds(rgb, fmt, srgb=srgb, mips=True, tileable=True)
        seconds = time.perf_counter() - start
        levels = decoded_levels(data, fmt, size, size)
        result["formats"][fmt] = {"psnr": [psnr(d, c * 255.0) for d, c in zip(levels, chain)],
                                  "bytes": len(data), "seconds": seconds}
    return result


def table(model: str, r: dict) -> list[str]:
    head = "| level | " + " | ".join(dds.FORMATS[f].title for f in FORMATS) + " |"
    lines = [f"`{model}`:", "", head, "| --- |" + " --- |" * len(FORMATS)]
    for k, (w, h) in enumerate(r["sizes"]):
        cells = [r["formats"][f]["psnr"][k] for f in FORMATS]
        lines.append(f"| {k}: {w}x{h} | " + " | ".join("exact" if math.isinf(c) else f"{c:.1f}" for c in cells) + " |")
    lines.append("| file KB | " + " | ".join(f"{r['formats'][f]['bytes'] / 1024:.0f}" for f in FORMATS) + " |")
    lines.append("| seconds (chain + blocks) | " + " | ".join(f"{r['formats'][f]['seconds']:.2f}" for f in FORMATS) + " |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="pebbles,red-peppers", help="Shipped texture networks, comma-separated.")
    parser.add_argument("--size", type=int, default=512, help="Side of the tileable sample (a multiple of 16).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--linear", action="store_true", help="Linear (UNORM) formats, mips averaged as stored.")
    parser.add_argument("--section", default="dds", help="RESULTS.md section to write.")
    args = parser.parse_args()
    torch.set_num_threads(1)
    command = "python benchmarks/dds_quality.py" + "".join(
        f" {flag}" for flag, on in ((f"--models {args.models}", args.models != "pebbles,red-peppers"),
                                    (f"--size {args.size}", args.size != 512), (f"--seed {args.seed}", args.seed != 0),
                                    ("--linear", args.linear), (f"--section {args.section}", args.section != "dds")) if on)
    lines = [
        f"## DDS quality (`{command}`)",
        "",
        f"PSNR (dB) of each mip level against the float level before encoding, decoded with texture2ddecoder "
        f"{version('texture2ddecoder')}; level 0's float is the 8-bit PNG `synth` writes, so its row is also the PSNR "
        f"against the PNG. A {args.size}x{args.size} tileable sample (seed {args.seed}) of each model, "
        f"{'linear (UNORM)' if args.linear else 'sRGB'} formats, full chain (tent filter, wrapping; "
        f"{'stored values' if args.linear else 'linear light'}); RGBA8's levels differ from the float only by 8-bit "
        f"rounding. Encoder etcpak {version('etcpak')} (BC7: equal RGB weights). Machine: "
        f"{gatys_benchmark.cpu_name()}, 1 thread, numpy {np.__version__}, torch {torch.__version__}, texport "
        f"{texport.__version__}; measured {time.strftime('%Y-%m-%d')}.",
        "",
    ]
    for model in args.models.split(","):
        lines += table(model, measure(model, args.size, args.seed, not args.linear))
    body = "\n".join(lines).rstrip() + "\n"
    gatys_benchmark.replace_section(HERE / "RESULTS.md", args.section, body)
    print(body)


if __name__ == "__main__":
    main()
