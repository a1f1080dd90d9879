"""Runtime backends behind one interface: `open_backend(model, name)` -> a callable on images.

Every backend maps `noise` [B, C, H, W] (and, for ProPO, `texture` [B, 3, h, w]; for a style
network, `content` [B, 3, H, W]) as fp32 torch tensors to an `image` [B, 3, H, W] in [0, 1] as an
fp32 CPU tensor, so results can be compared across backends (tests/test_backends.py) and timed
alike (`texport bench`); inputs reach every runtime by name. Every backend opens a
`texport.models.handle.Model` (resolved once) and takes the sizes on its grid; `sample_with` plans any
requested size onto that grid (texport.textures.sizes.plan_size) the way texport.models does, and
`stylize_with` is the one plan of a stylization (resize, pad, noise, crop) for every backend.

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
import importlib.util
import os
from pathlib import Path

import onnxruntime as ort
import torch

from texport.devices import resolve_device
from texport.errors import TexportError
from texport.export.cache import onnx_file
from texport.export.graphs import ProPOGraph, StyleGraph, TexnetGraph, in_precision
from texport.export.tensorrt import RuntimeCache, import_flavour
from texport.models.formats import BACKENDS, FORMATS, backend_options, read_graph, read_metadata
from texport.models.handle import PROPO, SOLID, STYLENET, Model, open_model
from texport.models.loading import load_propo, load_solid, load_stylenet, load_texnet

FORMAT_ROWS = {row.name: row for row in FORMATS}


def parse_backend(spec: str) -> tuple[str, dict[str, bool]]:
    """ "torch:channels_last+compile" -> ("torch", {"channels_last": True, "compile": True})."""
    name, _, opts = spec.strip().partition(":")
    if name not in BACKENDS and name != "auto":
        raise TexportError(f"unknown backend {name!r}: use auto, {', '.join(BACKENDS)}")
    chosen = {o: True for o in opts.split("+") if o}
    allowed = set(backend_options(name))
    bad = set(chosen) - allowed
    if bad:
        raise TexportError(f"unknown {name} option(s) {', '.join(sorted(bad))}: "
                           + (f"use {', '.join(sorted(allowed))}" if allowed else f"the {name} backend takes none"))
    return name, chosen


class Backend(abc.ABC):
    """A prepared model: __call__(noise, texture=None, content=None) -> image on the CPU, fp32 in [0, 1]."""
    name = "?"
    precision = "fp32"
    device = "cpu"
    input_names: tuple[str, ...] = ("noise",)
    caveat: str | None = None  # one line the CLI prints when this backend's results fall outside the parity tolerances

    def __init__(self, model: Model):
        self.model = model

    # what the graph takes, from the handle: sides on the grid, the noise input's channels
    @property
    def kind(self) -> str:
        return self.model.kind

    @property
    def size_multiple(self) -> int:
        return self.model.size_multiple

    @property
    def min_side(self) -> int:
        return self.model.min_side

    @property
    def noise_channels(self) -> int:
        return self.model.noise_channels

    @abc.abstractmethod
    def __call__(self, noise: torch.Tensor, texture: torch.Tensor | None = None,
                 content: torch.Tensor | None = None) -> torch.Tensor:
        """Each backend runs its own graph."""
    def inputs(self, noise: torch.Tensor, texture: torch.Tensor | None,
               content: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The graph's inputs by name (a texture or content of one item serves the whole batch)."""
        extra = {PROPO: ("texture", texture, "a ProPO model needs a target texture"),
                 STYLENET: ("content", content, "a style network needs a content image (texport stylize)")}.get(self.kind)
        if extra is None:
            return {"noise": noise}
        name, image, missing = extra
        if image is None:
            raise TexportError(missing)
        if image.shape[0] != noise.shape[0]:
            image = image.expand(noise.shape[0], -1, -1, -1)
        return {"noise": noise, name: image}

    def describe(self) -> str:
        return f"{self.name} ({self.device}, {self.precision})"


# ---------------------------------------------------------------------------------------------


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, model: Model, device: str = "auto", fp16: bool = False, channels_last: bool = False,
                 compile: bool = False, cuda_graphs: bool = False):

        super().__init__(model)
        if model.format != "texport":
            raise TexportError(f"the torch backend runs texport models (.safetensors or shipped names), not {model.format} files")
        dev = resolve_device(device)
        if cuda_graphs and dev.type != "cuda":
            raise TexportError("CUDA graphs need a CUDA device")
        if self.kind == PROPO:
            graph = ProPOGraph(load_propo(model, dev).network)
        elif self.kind == STYLENET:
            graph = StyleGraph(load_stylenet(model, dev).network)
        elif self.kind == SOLID:  # noise [B, K*C, D, H, W] -> volume [B, 3, D, H, W]
            graph = TexnetGraph(load_solid(model, dev).network)
        else:
            graph = TexnetGraph(load_texnet(model, dev).network)
        self.input_names = graph.input_names  # the order the graph's forward takes them
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
    def __call__(self, noise, texture=None, content=None):
        dev = torch.device(self.device)
        feed = self.inputs(noise, texture, content)
        xs = [feed[name].to(dev) for name in self.input_names]
        if "channels_last" in self.options:
            xs = [x.contiguous(memory_format=torch.channels_last) for x in xs]
        return self.module(*xs).float().cpu()

    def describe(self) -> str:
        extra = "".join(f", {k}" for k in self.options)
        return f"torch ({self.device}, {self.precision}{extra})"


# ---------------------------------------------------------------------------------------------


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, model: Model, device: str = "auto", fp16: bool = False, threads: int | None = None,
                 low_memory: bool = False, graph: Path | None = None):
        """graph: another ONNX file of this model to run (a solid network's block graph), fed by name (`run`)."""
        super().__init__(model)
        path = graph or onnx_file(model, fp16)
        self.precision = read_metadata(path).get("texport.precision", "fp32").split()[0]
        available = ort.get_available_providers()
        want_cuda = device in ("auto", "cuda") and torch.cuda.is_available() and "CUDAExecutionProvider" in available
        if device == "cuda" and not want_cuda:
            raise TexportError("onnxruntime has no usable CUDA execution provider here")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if want_cuda else ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()  # the same CPU share as torch
        # No memory-pattern caching: with sizes changing from call to call it kept every size's buffers.
        # The arena keeps buffers between runs; without it every run page-faults its buffers afresh and
        # is much slower, but with it a process holds about twice a run's working set. low_memory
        # (texport tile) drops it: bounded memory over speed.
        options.enable_cpu_mem_arena = not low_memory
        options.enable_mem_pattern = False
        # Idle worker threads sleep instead of spinning: they share the CPU with torch in the same process.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.device = "cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        self.input_names = tuple(i.name for i in self.session.get_inputs())

    def __call__(self, noise, texture=None, content=None):
        return self.run(self.inputs(noise, texture, content))

    def run(self, xs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The graph on inputs given by name: its first output."""
        feed = {n: xs[n].detach().float().cpu().numpy() for n in self.input_names}
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

    def __init__(self, model: Model, device: str = "auto", fp16: bool = False, threads: int | None = None,
                 bf16: bool = False, graph: Path | None = None):
        """graph: another ONNX file of this model to run (a solid network's block graph), fed by name (`run`)."""
        super().__init__(model)
        if importlib.util.find_spec("openvino") is None:
            raise TexportError("the openvino backend needs OpenVINO: pip install 'texport[openvino]'")
        import openvino as ov

        if device == "cuda":
            raise TexportError("the openvino backend runs on the CPU here")
        if fp16 and bf16:
            raise TexportError("choose the fp16 graph or openvino:bf16, not both")
        core = ov.Core()
        if bf16 and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise TexportError(f"this CPU has no bf16 ({core.get_property('CPU', 'FULL_DEVICE_NAME')})")

        path = graph or onnx_file(model, fp16)
        meta, onnx_inputs = read_graph(path)
        graph = meta.get("texport.precision", "fp32").split()[0]
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
        # an input tensor may carry other names too (OpenVINO merges a no-op Cast's): the ONNX input's
        self.input_names = tuple(next(n for n in i.get_names() if n in onnx_inputs) for i in self.compiled.inputs)
        self.request = self.compiled.create_infer_request()

    def __call__(self, noise, texture=None, content=None):
        return self.run(self.inputs(noise, texture, content))

    def run(self, xs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The graph on inputs given by name: its first output."""
        feed = {n: xs[n].detach().float().cpu().numpy() for n in self.input_names}
        result = self.request.infer(feed)
        return torch.from_numpy(next(iter(result.values())).copy()).float()

    def describe(self) -> str:
        computed = f", computed in {self.compute}" if self.precision == "fp16" and self.compute != "f16" else ""
        return f"{self.name} ({self.device}, {self.precision}{computed})"


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, model: Model, device: str = "auto", flavour: str | None = None):
        super().__init__(model)
        if model.format != "engine":
            raise TexportError(f"the tensorrt backend needs an engine file, got {model.path.name}")
        engine, side = model.path, model.manifest
        wanted = flavour or side["flavour"]
        if wanted != side["flavour"]:
            raise TexportError(f"{engine} is a {side['flavour']} engine, not {wanted}")
        name, trt = import_flavour(side["flavour"])
        if not torch.cuda.is_available() or device == "cpu":
            raise TexportError(f"running a TensorRT engine needs an NVIDIA GPU ({name} engine {Path(engine).name}); "
                               "none is available here")
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
        self.output_name = side["outputs"][0]["name"]

    def __call__(self, noise, texture=None, content=None):
        feed = self.inputs(noise, texture, content)
        xs = [feed[name].to("cuda", torch.float32).contiguous() for name in self.input_names]
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


def open_backend(model: str | os.PathLike | Model, backend: str | None = None, device: str = "auto", fp16: bool = False,
                 **options) -> Backend:
    """A backend for `model` (a handle, or a shipped name, .safetensors, .onnx or TensorRT .engine / .plan).

    None: the model's default backend (`default_backend`); "auto": the fastest available here (`available`).
    `backend` may carry options, "torch:channels_last+compile" (texport.models.formats.FORMATS), or pass them as keywords.
    low_memory=True asks for bounded memory over speed (onnxruntime drops its arena; others ignore it).
    """
    model = open_model(model)
    backend, chosen = choose_backend(model, backend, device)
    low_memory = options.pop("low_memory", False)
    options = {**chosen, **options}
    is_engine = model.format == "engine"
    if is_engine != (backend == "tensorrt"):
        raise TexportError("the tensorrt backend runs .engine / .plan files (build one with texport export), "
                           "and only it does" if is_engine else f"the tensorrt backend needs an engine file, got {model.path.name}")
    if backend == "torch":
        return TorchBackend(model, device, fp16, **options)
    if backend == "onnxruntime":
        return OnnxRuntimeBackend(model, device, fp16, low_memory=low_memory, **options)
    if backend == "openvino":
        return OpenVINOBackend(model, device, fp16, **options)
    return TensorRTBackend(model, device, **options)


def choose_backend(model: Model, backend: str | None = None, device: str = "auto") -> tuple[str, dict[str, bool]]:
    """(backend name, options) that `backend` means for this model: None is the model's default
    (`default_backend`), "auto" the fastest available here (`available`; an engine's own runtime)."""
    name, options = parse_backend(backend or default_backend(model))
    if name == "auto":
        name = "tensorrt" if model.format == "engine" else available(device)[0]
    return name, options


def backend_spec(name: str, options: dict[str, bool]) -> str:
    """The "NAME:OPT+OPT" text of a chosen backend (parse_backend's inverse), options sorted."""
    return name + (":" + "+".join(sorted(options)) if options else "")


def default_backend(model: Model) -> str:
    """What runs a model when the user names no backend, the first of its format's backends: an engine
    its runtime, an ONNX file onnxruntime, a texport model PyTorch (the reference the exported graphs
    are checked against)."""
    return next(iter(FORMAT_ROWS[model.format].backends))
