"""Runtime backends behind one interface: `open_backend(model, name)` -> a callable on images.

Every backend maps `noise` [B, C, H, W] (and, for ProPO, `texture` [B, 3, h, w]) as fp32 torch
tensors to an `image` [B, 3, H, W] in [0, 1] as an fp32 CPU tensor, so results can be compared
across backends (tests/test_backends.py) and timed alike (`texport bench`). The sizes must already
be valid for the model (multiples of its size multiple); texport.models pads and crops for users.

- `torch`: the PyTorch model, eager; options fp16, channels_last, compile (torch.compile) and, on
  CUDA, cuda_graphs (torch.compile's "reduce-overhead" mode, which captures CUDA graphs).
- `onnxruntime`: the exported ONNX graph (cached under ~/.cache/texport/onnx), CUDA execution
  provider when torch sees a GPU and onnxruntime-gpu offers it, else CPU.
- `openvino`: the same ONNX files in Intel's runtime (optional extra): fp32, the fp16 graph, or
  with the option "openvino:bf16" OpenVINO's own bf16 (outside the fp16 tolerance, see the class).
- `tensorrt`: a `.engine` / `.plan` built by `texport export`, run with torch CUDA tensors as
  buffers; needs an NVIDIA GPU the engine supports. TensorRT-RTX engines keep their JIT-compiled
  kernels in ENGINE.rtcache beside the engine (tensorrt_build.RuntimeCache).

CPU backends use as many threads as torch does (torch.get_num_threads(), e.g. OMP_NUM_THREADS),
so their timings compare like for like. `auto` picks a static preference for the device (measured on this project's CPU, RESULTS.md):
GPU: tensorrt (given an engine), onnxruntime, torch; CPU: openvino, onnxruntime, torch.
"""

from __future__ import annotations

import abc
import functools
import hashlib
import importlib.util
import os
from pathlib import Path

import torch

from .errors import TexportError

BACKENDS = ("torch", "onnxruntime", "openvino", "tensorrt")
# "NAME:OPT+OPT" options each backend takes (parse_backend)
BACKEND_OPTIONS = {"torch": {"channels_last", "compile", "cuda_graphs"}, "openvino": {"bf16"}}


def parse_backend(spec: str) -> tuple[str, dict[str, bool]]:
    """ "torch:channels_last+compile" -> ("torch", {"channels_last": True, "compile": True})."""
    name, _, opts = spec.strip().partition(":")
    if name not in BACKENDS and name != "auto":
        raise TexportError(f"unknown backend {name!r}: use auto, {', '.join(BACKENDS)}")
    chosen = {o: True for o in opts.split("+") if o}
    allowed = BACKEND_OPTIONS.get(name, set())
    bad = set(chosen) - allowed
    if bad:
        raise TexportError(f"unknown {name} option(s) {', '.join(sorted(bad))}: "
                           + (f"use {', '.join(sorted(allowed))}" if allowed else f"the {name} backend takes none"))
    return name, chosen


class Backend(abc.ABC):
    """A prepared model: __call__(noise, texture=None) -> image on the CPU, fp32 in [0, 1]."""

    name = "?"
    kind = "?"  # texnet or propo
    precision = "fp32"
    device = "cpu"
    noise_channels = 3  # the noise input's channels (texture networks: scales x channels per scale)
    size_multiple = 16  # the sides the graph takes (texture networks: 2^(scales-1); ProPO: 16)
    min_side = 16  # the smallest side it takes (ProPO: 32)
    input_names: tuple[str, ...] = ("noise",)
    caveat: str | None = None  # one line the CLI prints when this backend's results fall outside the parity tolerances

    @abc.abstractmethod
    def __call__(self, noise: torch.Tensor, texture: torch.Tensor | None = None) -> torch.Tensor:
        """Each backend runs its own graph."""

    def inputs(self, noise: torch.Tensor, texture: torch.Tensor | None) -> list[torch.Tensor]:
        if self.kind == "propo":
            if texture is None:
                raise TexportError("a ProPO model needs a texture")
            if texture.shape[0] != noise.shape[0]:
                texture = texture.expand(noise.shape[0], -1, -1, -1)
            return [noise, texture]
        return [noise]

    def describe(self) -> str:
        return f"{self.name} ({self.device}, {self.precision})"


# ---------------------------------------------------------------------------------------------


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, model: str | os.PathLike, device: str = "auto", fp16: bool = False, channels_last: bool = False,
                 compile: bool = False, cuda_graphs: bool = False):
        from .devices import resolve_device
        from .graphs import ProPOGraph, TexnetGraph, in_precision
        from .models import PROPO, load_propo, load_texnet, model_kind

        self.kind = "propo" if model_kind(model) == PROPO else "texnet"
        dev = resolve_device(device)
        if cuda_graphs and dev.type != "cuda":
            raise TexportError("CUDA graphs need a CUDA device")
        if self.kind == "propo":
            from .propo import MIN_SIDE, SIZE_MULTIPLE

            graph = ProPOGraph(load_propo(model, dev).model)
            self.size_multiple, self.min_side = SIZE_MULTIPLE, MIN_SIDE
        else:
            graph = TexnetGraph(load_texnet(model, dev).network)
            self.noise_channels = graph.network.input_channels
            self.size_multiple = self.min_side = graph.network.size_multiple
        self.precision = "fp16" if fp16 else "fp32"
        module = in_precision(graph.eval(), self.precision)
        if channels_last:
            module = module.to(memory_format=torch.channels_last)
        if compile or cuda_graphs:
            module = torch.compile(module, mode="reduce-overhead" if cuda_graphs else "default", dynamic=False)
        self.module, self.device = module, str(dev)
        self.options = {k: v for k, v in (("channels_last", channels_last), ("compile", compile),
                                          ("cuda_graphs", cuda_graphs)) if v}

    @torch.inference_mode()
    def __call__(self, noise, texture=None):
        dev = torch.device(self.device)
        xs = [x.to(dev) for x in self.inputs(noise, texture)]
        if "channels_last" in self.options:
            xs = [x.contiguous(memory_format=torch.channels_last) for x in xs]
        return self.module(*xs).float().cpu()

    def describe(self) -> str:
        extra = "".join(f", {k}" for k in self.options)
        return f"torch ({self.device}, {self.precision}{extra})"


# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _code_hash() -> str:
    """texport's own source: a change to how graphs are built (e.g. their numerics) re-exports them."""
    digest = hashlib.sha256()
    for file in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(file.name.encode() + file.read_bytes())
    return digest.hexdigest()


def cached_onnx(model: str | os.PathLike, fp16: bool) -> Path:
    """The model's main ONNX graph, exported once per model file, precision and texport source."""
    from .export import specs_for
    from .models import resolve_model
    from .onnx_export import export_onnx
    from .tensorrt_build import sha256_file

    path = resolve_model(model)
    from . import __version__

    key = hashlib.sha256(f"{sha256_file(path)}:{fp16}:{__version__}:{_code_hash()}:{torch.__version__}".encode()).hexdigest()[:16]
    folder = Path(os.environ.get("TEXPORT_CACHE", Path.home() / ".cache" / "texport")) / "onnx"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{path.stem}-{'fp16' if fp16 else 'fp32'}-{key}.onnx"
    if not out.is_file():
        export_onnx(specs_for(model, "fp16" if fp16 else "fp32", split=False)[0], out)
    return out


def grid_of(meta: dict) -> tuple[int, int]:
    """(size multiple, smallest side) from a graph's texport metadata."""
    multiple = int(meta.get("texport.size_multiple", 16))
    return multiple, int(meta.get("texport.min_side", multiple))


def _onnx_source(model: str | os.PathLike, fp16: bool) -> tuple[Path, dict]:
    from .onnx_export import read_metadata

    p = Path(model)
    path = p if p.suffix == ".onnx" else cached_onnx(model, fp16)
    meta = read_metadata(path)
    if meta.get("texport.kind") not in ("texnet", "propo") or meta.get("texport.graph"):
        raise TexportError(f"{path} is not a texport model graph (export it with texport export)")
    return path, meta


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, model: str | os.PathLike, device: str = "auto", fp16: bool = False, threads: int | None = None,
                 low_memory: bool = False):
        import onnxruntime as ort

        path, meta = _onnx_source(model, fp16)
        self.kind, self.precision = meta["texport.kind"], meta.get("texport.precision", "fp32").split()[0]
        self.size_multiple, self.min_side = grid_of(meta)
        available = ort.get_available_providers()
        want_cuda = device in ("auto", "cuda") and torch.cuda.is_available() and "CUDAExecutionProvider" in available
        if device == "cuda" and not want_cuda:
            raise TexportError("onnxruntime has no usable CUDA execution provider here")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if want_cuda else ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()  # the same CPU share as torch
        # No memory-pattern caching: with sizes changing from call to call it kept every size's buffers.
        # The arena keeps buffers between runs; without it every run page-faults its buffers afresh
        # (texture network, 2 CPU cores: 895 vs 376 ms at 1024 px, 1370 vs 510 ms at 1216 px), but
        # with it a process holds about twice a run's working set (1216 px: 2.5 GB vs 1.4 GB peak).
        # low_memory (texport tile) drops it.
        options.enable_cpu_mem_arena = not low_memory
        options.enable_mem_pattern = False
        # Idle worker threads sleep instead of spinning: they share the CPU with torch in the same process.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.noise_channels = int(self.session.get_inputs()[0].shape[1])
        self.device = "cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        self.input_names = tuple(i.name for i in self.session.get_inputs())

    def __call__(self, noise, texture=None):
        feed = {n: x.detach().float().cpu().numpy() for n, x in zip(self.input_names, self.inputs(noise, texture))}
        return torch.from_numpy(self.session.run(None, feed)[0]).float()


class OpenVINOBackend(Backend):
    """Intel's runtime on the CPU, reading texport's ONNX graphs.

    fp32: the fp32 graph with OpenVINO's inference precision pinned to f32 (on CPUs with bf16 it would
    otherwise pick bf16 by itself). fp16: the fp16 graph, the same file onnxruntime runs, so the same
    parts stay fp32; CPUs without native f16 compute it in f32 after its fp16 roundings (no faster,
    and said so in describe()). bf16 (option "openvino:bf16"): the fp32 graph with OpenVINO's bf16
    inference precision everywhere; OpenVINO cannot be told to keep texport's fp32 parts, so it is
    far outside the fp16 tolerance (benchmarks/RESULTS.md) and never picked by itself.
    """

    name = "openvino"

    def __init__(self, model: str | os.PathLike, device: str = "auto", fp16: bool = False, threads: int | None = None,
                 bf16: bool = False):
        if importlib.util.find_spec("openvino") is None:
            raise TexportError("the openvino backend needs OpenVINO: pip install 'texport[openvino]'")
        import openvino as ov

        if device == "cuda":
            raise TexportError("the openvino backend runs on the CPU here")
        if fp16 and bf16:
            raise TexportError("choose --fp16 or openvino:bf16, not both")
        core = ov.Core()
        if bf16 and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise TexportError(f"this CPU has no bf16 ({core.get_property('CPU', 'FULL_DEVICE_NAME')})")
        path, meta = _onnx_source(model, fp16)
        self.kind, graph = meta["texport.kind"], meta.get("texport.precision", "fp32").split()[0]
        self.size_multiple, self.min_side = grid_of(meta)
        if bf16 and graph != "fp32":
            raise TexportError(f"openvino:bf16 runs an fp32 graph; {path.name} is {graph}")
        config = {"INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32",
                  "INFERENCE_NUM_THREADS": threads or torch.get_num_threads()}  # the same CPU share as torch
        self.compiled = core.compile_model(str(path), "CPU", config)
        self.compute = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.precision = "bf16" if bf16 else graph
        if bf16:
            self.caveat = ("openvino:bf16 runs the whole graph in bf16, outside the fp16 parity tolerance "
                           "(0.06-0.5 off fp32, benchmarks/RESULTS.md)")
        self.input_names = tuple(i.get_any_name() for i in self.compiled.inputs)
        self.noise_channels = self.compiled.inputs[0].get_partial_shape()[1].get_length()
        self.request = self.compiled.create_infer_request()

    def __call__(self, noise, texture=None):
        feed = {n: x.detach().float().cpu().numpy() for n, x in zip(self.input_names, self.inputs(noise, texture))}
        result = self.request.infer(feed)
        return torch.from_numpy(next(iter(result.values())).copy()).float()

    def describe(self) -> str:
        computed = f", computed in {self.compute}" if self.precision == "fp16" and self.compute != "f16" else ""
        return f"{self.name} ({self.device}, {self.precision}{computed})"


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, engine: str | os.PathLike, device: str = "auto", flavour: str | None = None):
        from .tensorrt_build import RuntimeCache, import_flavour, read_sidecar

        side = read_sidecar(engine)
        wanted = flavour or side["flavour"]
        if wanted != side["flavour"]:
            raise TexportError(f"{engine} is a {side['flavour']} engine, not {wanted}")
        name, trt = import_flavour(side["flavour"])
        if not torch.cuda.is_available() or device == "cpu":
            raise TexportError(f"running a TensorRT engine needs an NVIDIA GPU ({name} engine {Path(engine).name}); "
                               "none is available here")
        self.kind = side["model"]["texport.kind"]
        self.size_multiple, self.min_side = grid_of(side["model"])
        self.precision, self.device = side["precision"], "cuda"
        self.profile = side["profile"]
        logger = trt.Logger(trt.Logger.ERROR)
        self.runtime = trt.Runtime(logger)
        self.engine = self.runtime.deserialize_cuda_engine(Path(engine).read_bytes())
        if self.engine is None:
            raise TexportError(f"{engine} could not be loaded by {name} {trt.__version__} on "
                               f"{torch.cuda.get_device_name()} (built with {side['flavour_version']} for "
                               f"{side['compute_capabilities']})")
        self.runtime_cache = RuntimeCache(self.engine, engine)
        self.context = self.runtime_cache.context(self.engine)
        self.shapes_seen: set[tuple] = set()
        self.input_names = tuple(t["name"] for t in side["inputs"])
        self.noise_channels = side["inputs"][0]["shape"][1]
        self.output_name = side["outputs"][0]["name"]

    def __call__(self, noise, texture=None):
        xs = [x.to("cuda", torch.float32).contiguous() for x in self.inputs(noise, texture)]
        for name, x in zip(self.input_names, xs):
            lo, hi = self.profile[name]["min"], self.profile[name]["max"]
            if any(s < a or s > b for s, a, b in zip(x.shape, lo, hi)):
                raise TexportError(f"input {name} {list(x.shape)} is outside the engine's profile {lo}..{hi}")
            self.context.set_input_shape(name, tuple(x.shape))
            self.context.set_tensor_address(name, x.data_ptr())
        out = torch.empty(tuple(self.context.get_tensor_shape(self.output_name)), device="cuda", dtype=torch.float32)
        self.context.set_tensor_address(self.output_name, out.data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise TexportError("TensorRT execution failed")
        stream.synchronize()
        shapes = tuple(tuple(x.shape) for x in xs)
        if shapes not in self.shapes_seen:  # new shapes may have JIT-compiled kernels (TensorRT-RTX): keep them
            self.shapes_seen.add(shapes)
            self.runtime_cache.save()
        return out.cpu()


# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def synthesize_with(backend: Backend, size, seed: int = 0, count: int = 1, texture: torch.Tensor | None = None,
                    tileable: bool = False, snap: bool = False, max_size: int | None = None, batch: int = 1) -> torch.Tensor:
    """count images [count, 3, H, W] through a backend: the same noise, padding and cropping as the
    torch path of texport.models (image n uses noise seed + n), so backends agree image for image."""
    from .models import tileable_size, valid_size
    from .noise import noise_field
    from .sizes import check_size, parse_size

    width, height = check_size(parse_size(size), max_size)
    multiple, smallest, channels = backend.size_multiple, backend.min_side, backend.noise_channels
    if backend.kind == "propo" and texture is None:
        raise TexportError("a ProPO model needs --texture")
    if tileable:
        width, height = tileable_size(width, height, multiple, snap)
    if count < 1:
        raise TexportError(f"count must be at least 1, got {count}")
    gw, gh = (max(smallest, s) for s in valid_size(width, height, multiple))
    images = []
    for start in range(0, count, batch):
        n = min(batch, count - start)
        z = noise_field(seed + start, channels, gh, gw, batch=n)  # item i: seed + start + i (texport.noise)
        images.append(backend(z, texture)[:, :, :height, :width].clamp(0, 1))
    return torch.cat(images)


def available(device: str = "auto", engine: bool = False) -> list[str]:
    """Backends usable here, in `auto`'s order of preference."""
    gpu = torch.cuda.is_available() and device != "cpu"
    order = ["tensorrt", "onnxruntime", "torch"] if gpu else ["openvino", "onnxruntime", "torch"]
    ok = []
    for name in order:
        if name == "tensorrt" and not engine:
            continue
        if name == "openvino" and importlib.util.find_spec("openvino") is None:
            continue
        ok.append(name)
    return ok


def open_backend(model: str | os.PathLike, backend: str = "auto", device: str = "auto", fp16: bool = False,
                 **options) -> Backend:
    """A backend for `model` (shipped name, .safetensors, .onnx, or a TensorRT .engine / .plan).

    `backend` may carry options, "torch:channels_last+compile" (BACKEND_OPTIONS), or pass them as keywords.
    low_memory=True asks for bounded memory over speed (onnxruntime drops its arena; others ignore it).
    """
    backend, chosen = parse_backend(backend)
    low_memory = options.pop("low_memory", False)
    options = {**chosen, **options}
    is_engine = Path(str(model)).suffix.lower() in (".engine", ".plan")
    if backend == "auto":
        backend = "tensorrt" if is_engine else available(device)[0]
    if is_engine != (backend == "tensorrt"):
        raise TexportError("the tensorrt backend runs .engine / .plan files (build one with texport export), "
                           "and only it does" if is_engine else f"the tensorrt backend needs an engine file, got {model}")
    if backend == "torch":
        if Path(str(model)).suffix == ".onnx":
            raise TexportError("the torch backend runs texport models (.safetensors or shipped names), not .onnx files")
        return TorchBackend(model, device, fp16, **options)
    if backend == "onnxruntime":
        return OnnxRuntimeBackend(model, device, fp16, low_memory=low_memory, **options)
    if backend == "openvino":
        return OpenVINOBackend(model, device, fp16, **options)
    return TensorRTBackend(model, device, **options)
