"""Export parity (issue 10 item 2): exported graphs against the fp32 PyTorch model, on the 0-1 image.

For every shipped model kind, the fp32 and fp16 ONNX graphs run through onnxruntime's CPU provider
(and OpenVINO f32 for the fp32 graph, when installed) at several sizes, noise seeds and, for ProPO,
exemplars; each row is the worst max abs difference over its seeds and exemplars. Targets: 1e-4 in
fp32, 1e-2 in fp16.

    python benchmarks/parity.py            # about 10 minutes on 2 CPU cores
    python benchmarks/parity.py --quick    # sizes 64 and 256, two seeds
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gatys as gatys_benchmark  # noqa: E402  (replace_section)

from texport.export import PARITY, export  # noqa: E402
from texport.graphs import ProPOGraph  # noqa: E402
from texport.images import load_image, resolve_texture  # noqa: E402
from texport.models import load_propo, load_texnet  # noqa: E402
from texport.noise import noise_field  # noqa: E402

TEXNETS = ["pebbles", "red-peppers"]


def runtimes(path: Path, with_openvino: bool) -> dict:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    found = {"onnxruntime": lambda feed: session.run(None, feed)[0]}
    if with_openvino:
        try:
            import openvino as ov
        except ImportError:
            return found
        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        found["openvino f32"] = lambda feed: compiled(feed)[compiled.output(0)]
    return found


def cases(model: str, sizes, seeds):
    """(size, feed, fp32 torch output) for every size, seed and (ProPO) exemplar."""
    if model == "propo":
        graph = ProPOGraph(load_propo("propo").model).eval()
        textures = [load_image(resolve_texture(n)) for n in ("pebbles", "red-peppers")]
        for size in sizes:
            for seed in seeds:
                for texture in textures:
                    for crop in (64, None):  # a small crop and the whole exemplar
                        t = texture if crop is None else texture[..., :crop, :crop]
                        z = noise_field(seed, 3, size, size)
                        with torch.no_grad():
                            want = graph(z, t).numpy()
                        yield size, {"noise": z.numpy(), "texture": t.numpy()}, want
    else:
        net = load_texnet(model).network
        for size in sizes:
            for seed in seeds:
                z = net.noise(size, size, seed=seed)
                with torch.no_grad():
                    want = net(z).numpy()
                yield size, {"noise": z.numpy()}, want


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
                run = runtimes(path, with_openvino=precision == "fp32")
                for size, feed, want in cases(model, sizes, seeds):
                    for name, call in run.items():
                        diff = float(np.abs(call(feed) - want).max())
                        row = worst.setdefault(name, {})
                        row[size] = max(row.get(size, 0.0), diff)
                for name, row in worst.items():
                    line = (f"| {model} | {precision} | {name} | " + " | ".join(f"{row[s]:.1e}" for s in sizes)
                            + f" | {PARITY[precision]:.0e} |")
                    print(line, flush=True)
                    lines.append(line)
    body = "\n".join([
        "## Export parity (`benchmarks/parity.py`)", "",
        f"Worst max abs difference on the 0-1 image against the fp32 PyTorch model, over noise seeds "
        f"{', '.join(map(str, seeds))} and (ProPO) the pebbles and red-peppers exemplars, whole and as 64 px crops. "
        f"fp16 graphs keep each model's sensitive parts in fp32 (`half_body()`); torch {torch.__version__}.", "",
        *lines])
    if not args.no_write:
        gatys_benchmark.replace_section(HERE / "RESULTS.md", "parity", body)


if __name__ == "__main__":
    main()
