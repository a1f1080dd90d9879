"""Export parity: exported graphs against the fp32 PyTorch model, on the 0-1 image.

For every shipped model kind, the fp32 and fp16 ONNX graphs run through the CPU backends a user gets
(texport.runtime.backends: onnxruntime, and when installed OpenVINO: f32 and bf16 on the fp32 graph, the
fp16 graph as is) at several sizes, noise seeds and, for ProPO, exemplars; each row is the worst max
abs difference over its seeds and exemplars. Targets: 1e-4 in fp32, 1e-2 in fp16 (and bf16).

    python benchmarks/parity.py            # about 45 minutes on 2 CPU cores
    python benchmarks/parity.py --quick    # sizes 64 and 256, two seeds
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gatys as gatys_benchmark  # noqa: E402  (replace_section)

from texport.runtime.backends import open_backend  # noqa: E402
from texport.errors import TexportError  # noqa: E402
from texport.export.exporter import PARITY, export  # noqa: E402
from texport.export.graphs import ProPOGraph  # noqa: E402
from texport.textures.images import load_image, resolve_texture  # noqa: E402
from texport.models.loading import load_propo, load_texnet  # noqa: E402
from texport.textures.noise import noise_field  # noqa: E402

TEXNETS = ["pebbles", "red-peppers"]


def runtimes(path: Path, precision: str) -> dict:
    """The backends a user gets for this ONNX file (texport.runtime.backends), by row label."""
    found = {"onnxruntime": open_backend(path, "onnxruntime", "cpu")}
    if importlib.util.find_spec("openvino") is not None:
        if precision == "fp32":
            found["openvino f32"] = open_backend(path, "openvino", "cpu")
            try:  # OpenVINO's own bf16 everywhere, on the fp32 graph (--backend openvino:bf16)
                found["openvino bf16"] = open_backend(path, "openvino:bf16", "cpu")
            except TexportError:  # this CPU has no bf16
                pass
        else:  # the fp16 graph, computed in f32 on CPUs without native f16
            runner = open_backend(path, "openvino", "cpu", fp16=True)
            found[f"openvino (computed in {runner.compute})"] = runner
    return found


def cases(model: str, sizes, seeds):
    """(size, feed, fp32 torch output) for every size, seed and (ProPO) exemplar."""
    if model == "propo":
        graph = ProPOGraph(load_propo("propo").network).eval()
        textures = [load_image(resolve_texture(n)) for n in ("pebbles", "red-peppers")]
        for size in sizes:
            for seed in seeds:
                for texture in textures:
                    for crop in (64, None):  # a small crop and the whole exemplar
                        t = texture if crop is None else texture[..., :crop, :crop]
                        z = noise_field(seed, 3, size, size)
                        with torch.no_grad():
                            want = graph(z, t).numpy()
                        yield size, (z, t), want
    else:
        net = load_texnet(model).network
        for size in sizes:
            for seed in seeds:
                z = net.noise(size, size, seed=seed)
                with torch.no_grad():
                    want = net(z).numpy()
                yield size, (z, None), want


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    sizes = (64, 256) if args.quick else (64, 256, 512, 1024)
    seeds = (0, 1) if args.quick else (0, 1, 2)
    lines = ["| model | graph | runtime | " + " | ".join(f"{s} px" for s in sizes) + " | target |",
             "| --- | --- | --- | " + " | ".join("---" for _ in sizes) + " | --- |"]
    with tempfile.TemporaryDirectory() as tmp:
        for model in TEXNETS + ["propo"]:
            for precision in ("fp32", "fp16"):
                path = export(Path(tmp) / f"{model}-{precision}.onnx", model=model, fp16=precision == "fp16",
                              check=False)[0].path
                worst: dict[str, dict[int, float]] = {}
                run = runtimes(path, precision)
                for size, (noise, texture), want in cases(model, sizes, seeds):
                    for name, runner in run.items():
                        diff = float(np.abs(runner(noise, texture).numpy() - want).max())
                        row = worst.setdefault(name, {})
                        row[size] = max(row.get(size, 0.0), diff)
                for name, row in worst.items():
                    target = PARITY["fp16"] if "bf16" in name else PARITY[precision]
                    line = (f"| {model} | {precision} | {name} | " + " | ".join(f"{row[s]:.1e}" for s in sizes)
                            + f" | {target:.0e} |")
                    print(line, flush=True)
                    lines.append(line)
    body = "\n".join([
        "## Export parity (`benchmarks/parity.py`)", "",
        f"Worst max abs difference on the 0-1 image against the fp32 PyTorch model, over noise seeds "
        f"{', '.join(map(str, seeds))} and (ProPO) the pebbles and red-peppers exemplars, whole and as 64 px crops. "
        f"fp16 graphs keep each model's sensitive parts in fp32 (`half_body()`); OpenVINO bf16 is OpenVINO's own "
        f"inference precision over the whole fp32 graph (`--backend openvino:bf16`), held to the fp16 target; "
        f"torch {torch.__version__}.", "",
        *lines])
    if not args.no_write:
        gatys_benchmark.replace_section(HERE / "RESULTS.md", "parity", body)


if __name__ == "__main__":
    main()
