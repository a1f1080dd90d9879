"""Large DDS textures: `texport tile -o big.dds --mips` against `texport tile -o big.png` in one run.

Both run the shipped pebbles texture network in a fresh process each (tileable, 1024 px tiles, the same
backend and seed), first the DDS (BC7 sRGB by default, the full mip chain), then the PNG. Recorded:
wall time and peak resident memory of each (VmHWM of the process), the DDS's time over the PNG's
(target <= 1.3), its peak (target <= 2.5 GB), and the DDS read back by two readers that are not
texport's: texture2ddecoder decodes level 0 on a few crops, block rows read straight from the file
(PSNR against the PNG's pixels, read by Pillow; target >= 35 dB) and every level up to 4096 px whole;
Pillow opens the file and decodes level 0, which must equal texture2ddecoder's on the crops. Then
`texport dds` converts the PNG (streaming its rows): its time, peak memory and whether its bytes are
the streamed file's.

    python benchmarks/large_dds.py                          # 16384x16384, onnxruntime (about an hour on 2 busy cores)
    python benchmarks/large_dds.py --size 4096 --section large-dds-4096
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import texture2ddecoder
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gatys as gatys_benchmark  # noqa: E402  (cpu_name, replace_section)

import texport  # noqa: E402
import texport.textures.dds as dds  # noqa: E402
import texport.textures.mips as mips  # noqa: E402

DECODE = {"bc7": texture2ddecoder.decode_bc7, "bc1": texture2ddecoder.decode_bc1, "bc3": texture2ddecoder.decode_bc3}


def run_tile(args: list[str]) -> dict:
    """`texport ARGS` in a fresh process: seconds, peak RSS in MB (VmHWM: a child started with vfork inherits
    its parent's ru_maxrss) and CPU seconds (user + system, all its threads: on a machine shared with
    other jobs the wall times of two runs also measure how busy it was, their CPU times much less)."""
    code = ("import resource, time; from texport.runtime.bench import _peak_rss_mb; from texport.commands.cli import main; "
            f"t = time.time(); rc = main({args!r}); u = resource.getrusage(resource.RUSAGE_SELF); "
            "print('RESULT', rc, time.time() - t, _peak_rss_mb(), u.ru_utime + u.ru_stime)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT")), None)
    if line is None or line.split()[1] != "0":
        tail = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode
        raise SystemExit(f"texport {' '.join(args)} failed: {tail}")
    _, _, seconds, peak, cpu = line.split()
    return {"seconds": float(seconds), "peak_mb": float(peak), "cpu_seconds": float(cpu)}


def level0_crop(path: Path, fmt: str, width: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """Level 0's pixels in box (x, y, w, h; multiples of 4), decoded by texture2ddecoder from the block rows
    read straight out of the file: RGB uint8 [h, w, 3]."""
    x, y, w, h = box
    block = dds.FORMATS[fmt].block_bytes
    row_bytes = math.ceil(width / 4) * block
    with open(path, "rb") as f:
        data = bytearray()
        for by in range(y // 4, (y + h) // 4):
            f.seek(dds.HEADER_BYTES + by * row_bytes + x // 4 * block)
            data += f.read(w // 4 * block)
    return np.frombuffer(DECODE[fmt](bytes(data), w, h), np.uint8).reshape(h, w, 4)[..., [2, 1, 0]]


def decode_small_levels(path: Path, fmt: str, size: int, largest: int = 4096) -> int:
    """Decode every level up to `largest` px whole (texture2ddecoder); the bytes must end with the last level."""
    data = path.read_bytes() if size <= largest else None
    offset, decoded = dds.HEADER_BYTES, 0
    with open(path, "rb") as f:
        for w, h in mips.level_sizes(size, size):
            n = dds.level_bytes(fmt, w, h)
            if max(w, h) <= largest:
                f.seek(offset)
                raw = f.read(n) if data is None else data[offset:offset + n]
                assert len(raw) == n
                assert len(DECODE[fmt](raw, w, h)) == w * h * 4
                decoded += 1
            offset += n
    assert offset == path.stat().st_size, "bytes after the last level"
    return decoded


def _same_file(a: Path, b: Path) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 24), fb.read(1 << 24)
            if x != y:
                return False
            if not x:
                return True


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=16384, help="Side of the square tile (a multiple of 16).")
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--format", default="bc7", choices=list(DECODE))
    parser.add_argument("--folder", default=None, help="Write big.dds and big.png here and keep them (default: a "
                                                       "temporary folder under benchmarks/, removed after).")
    parser.add_argument("--no-convert", dest="convert", action="store_false",
                        help="Skip `texport dds big.png` (its time, memory and bytes against the streamed DDS).")
    parser.add_argument("--section", default="large-dds", help="RESULTS.md section to write.")
    args = parser.parse_args()
    size, fmt = args.size, args.format
    keep = Path(args.folder) if args.folder else None
    with (contextlib.nullcontext(str(keep)) if keep else tempfile.TemporaryDirectory(dir=HERE)) as tmp:
        folder = Path(tmp)
        out_dds, out_png = folder / "big.dds", folder / "big.png"
        common = ["tile", "pebbles", "--size", f"{size}x{size}", "--tile", "1024", "--tileable", "--backend", args.backend]
        load_before = os.getloadavg()[0]  # what else ran beside: the wall-time ratio assumes a quiet machine
        print(f"tile -> DDS {size}x{size} ...", flush=True)
        streamed = run_tile([*common, "--format", fmt, "--mips", "-o", str(out_dds)])
        print(streamed, flush=True)
        print(f"tile -> PNG {size}x{size} ...", flush=True)
        png_run = run_tile([*common, "-o", str(out_png)])
        print(png_run, flush=True)
        converted = None
        if args.convert:
            print("dds big.png ...", flush=True)
            out_conv = folder / "converted.dds"
            converted = run_tile(["dds", str(out_png), "--format", fmt, "--mips", "--tileable", "-o", str(out_conv)])
            converted["same"] = _same_file(out_conv, out_dds)
            out_conv.unlink()
            print(converted, flush=True)
        side = min(1024, size)
        boxes = [(0, 0, side, side), ((size - side) // 2 // 4 * 4, (size - side) // 2 // 4 * 4, side, side),
                 (size - side, size - side, side, side)]
        crops = [level0_crop(out_dds, fmt, size, box) for box in boxes]
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None  # our own files, of a known size
        try:
            with Image.open(out_png) as img:
                png = [np.asarray(img.crop((x, y, x + w, y + h)).convert("RGB")) for x, y, w, h in boxes]
            scores = [psnr(c, p) for c, p in zip(crops, png)]
            del png
            with Image.open(out_dds) as img:
                pillow_ok = img.format == "DDS" and img.size == (size, size)
                pillow_same = all(np.array_equal(np.asarray(img.crop((x, y, x + w, y + h)).convert("RGB")), c)
                                  for (x, y, w, h), c in zip(boxes, crops))
        finally:
            Image.MAX_IMAGE_PIXELS = saved
        levels = len(mips.level_sizes(size, size))
        decoded = decode_small_levels(out_dds, fmt, size)
        dds_mb, png_mb = out_dds.stat().st_size / 1e6, out_png.stat().st_size / 1e6
    ratio = streamed["seconds"] / png_run["seconds"]
    command = "python benchmarks/large_dds.py" + "".join(
        f" {flag}" for flag, on in ((f"--size {size}", size != 16384), (f"--backend {args.backend}", args.backend != "onnxruntime"),
                                    (f"--format {fmt}", fmt != "bc7"), ("--no-convert", not args.convert),
                                    (f"--section {args.section}", args.section != "large-dds")) if on)
    title = dds.FORMATS[fmt].title
    lines = [
        f"## Large DDS textures (`{command}`)",
        "",
        f"`texport tile pebbles --size {size}x{size} --tile 1024 --tileable --backend {args.backend}` in a fresh process "
        f"each, `-o big.dds --format {fmt} --mips` ({title} sRGB, {levels} levels, streamed band by band) and then "
        f"`-o big.png`. Machine: {gatys_benchmark.cpu_name()}, {os.cpu_count()} CPU threads (load average "
        f"{load_before:.1f} before the runs), "
        f"torch {torch.__version__}, etcpak {version('etcpak')}, texture2ddecoder {version('texture2ddecoder')}, "
        f"Pillow {version('pillow')}, texport {texport.__version__}; measured {time.strftime('%Y-%m-%d')}.",
        "",
        "| output | wall s | CPU s | peak RSS MB | file MB |",
        "| --- | --- | --- | --- | --- |",
        f"| DDS, {title} with mips | {streamed['seconds']:.0f} | {streamed['cpu_seconds']:.0f} | "
        f"**{streamed['peak_mb']:.0f}** (target <= 2560) | {dds_mb:.0f} |",
        f"| PNG | {png_run['seconds']:.0f} | {png_run['cpu_seconds']:.0f} | {png_run['peak_mb']:.0f} | {png_mb:.0f} |",
    ]
    if converted is not None:
        lines.append(f"| `texport dds big.png --mips --tileable` (the PNG to a DDS) | {converted['seconds']:.0f} | "
                     f"{converted['cpu_seconds']:.0f} | {converted['peak_mb']:.0f} | {dds_mb:.0f}: the streamed "
                     f"file's bytes {'exactly' if converted['same'] else '**NOT**'} |")
    lines += [
        "",
        f"DDS time over PNG time: **{ratio:.2f}x** wall (target <= 1.3), "
        f"{streamed['cpu_seconds'] / png_run['cpu_seconds']:.2f}x CPU. Level 0 against the PNG, decoded by "
        f"texture2ddecoder on {len(boxes)} crops of {side}x{side} (top left, centre, bottom right): PSNR "
        f"{', '.join(f'{s:.1f}' for s in scores)} dB (target >= 35). Pillow opens it "
        f"({'yes' if pillow_ok else 'NO'}) and its level 0 equals texture2ddecoder's on the crops "
        f"({'yes' if pillow_same else 'NO'}); texture2ddecoder decoded the {decoded} levels of 4096 px and "
        f"smaller whole, and the levels fill the file exactly.",
        "",
    ]
    body = "\n".join(lines)
    gatys_benchmark.replace_section(gatys_benchmark.RESULTS, args.section, body)
    print(body)


if __name__ == "__main__":
    main()
