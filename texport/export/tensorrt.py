"""ONNX -> serialized TensorRT engine, for both flavours through one code path.

`tensorrt-rtx` (module tensorrt_rtx, NVIDIA TensorRT for RTX: GeForce / RTX PRO GPUs; pip-installable;
its ahead-of-time build needs no GPU) and standard `tensorrt` (data-centre GPUs such as the H100;
installed from NVIDIA's index) share the builder / parser / profile API used here. Without a
choice the standard one is used when importable, else RTX.

The engine comes with a JSON sidecar (ENGINE.json): flavour and version, inputs and outputs,
the optimization profile, precision, target compute capabilities, the source ONNX's and the
engine's sha256, the texport version and the build time; texport refuses to run an engine without
one, or one whose bytes no longer match it.

Found on this project's CPU-only machines with tensorrt-rtx 1.7: any explicit workspace limit
fails the build (the builder tries to reserve it on a device: "OutOfMemory"), so the limit is
opt-in; builds without one work.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from texport import __version__
from texport.errors import TexportError
from texport.files import atomic_path, sha256_file, write_bytes_atomic
from texport.models.formats import FLAVOURS, SIDECAR_FORMAT, sidecar_path

RTX_DEFAULT_TARGETS = "SM80, SM86, SM89, SM120 and later (TensorRT-RTX default)"

Shape = tuple[int, ...]


@dataclass
class InputProfile:
    """min / opt / max shape of one dynamic input."""
    name: str
    min: Shape
    opt: Shape
    max: Shape

    def as_dict(self) -> dict:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


def import_flavour(flavour: str | None = None):
    """(flavour name, module): the one asked for, else standard TensorRT if importable, else RTX."""
    order = [flavour] if flavour else ["tensorrt", "tensorrt-rtx"]
    for name in order:
        if name not in FLAVOURS:
            raise TexportError(f"unknown TensorRT flavour {name!r}: use tensorrt or tensorrt-rtx")
        try:
            return name, importlib.import_module(FLAVOURS[name])
        except ImportError:
            continue
    wanted = flavour or "tensorrt or tensorrt-rtx"
    raise TexportError(f"{wanted} is not installed (pip install tensorrt-rtx==1.7.1.116, or standard TensorRT "
                       "from NVIDIA's index)")


class _Logger:
    """Collects the builder's errors so a failed build explains itself in one line."""
    def __init__(self, trt):
        class Collect(trt.ILogger):
            def __init__(inner):
                trt.ILogger.__init__(inner)
                inner.errors: list[str] = []

            def log(inner, severity, msg):
                if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                    inner.errors.append(" ".join(str(msg).split()))

        self.logger = Collect()

    @property
    def errors(self) -> list[str]:
        return self.logger.errors


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, profiles: list[InputProfile],
                 flavour: str | None = None, precision: str = "fp32", workspace_mb: int | None = None,
                 compute_capabilities: list[str] | None = None, timing_cache: str | os.PathLike | None = None,
                 metadata: dict | None = None) -> dict:
    """Build and serialize an engine (atomically, with its sidecar); returns the sidecar."""
    name, trt = import_flavour(flavour)
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    log = _Logger(trt)
    builder = trt.Builder(log.logger)
    # TensorRT-RTX networks are always strongly typed; standard TensorRT gets the flag so both
    # take their precision from the ONNX graph's types.
    flags = 0
    if name == "tensorrt" and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, log.logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [parser.get_error(i).desc() for i in range(parser.num_errors)]
        raise TexportError(f"{name} could not parse {onnx_path.name}: {errors[0] if errors else 'unknown error'}")
    config = builder.create_builder_config()
    if workspace_mb is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    targets = _set_compute_capabilities(trt, config, name, compute_capabilities)
    profile = builder.create_optimization_profile()
    inputs = {network.get_input(i).name: network.get_input(i) for i in range(network.num_inputs)}
    for p in profiles:
        if p.name not in inputs:
            raise TexportError(f"{onnx_path.name} has no input {p.name!r} (inputs: {', '.join(inputs)})")
        profile.set_shape(p.name, p.min, p.opt, p.max)
    config.add_optimization_profile(profile)
    cache = _load_timing_cache(config, timing_cache)
    start = time.perf_counter()
    blob = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if blob is None:
        detail = log.errors[-1] if log.errors else "no reason given"
        raise TexportError(f"{name} engine build failed: {detail[:300]}")
    if cache is not None and timing_cache is not None:
        write_bytes_atomic(timing_cache, bytes(cache.serialize()))
    sidecar = {
        "format": SIDECAR_FORMAT,
        "flavour": name,
        "flavour_version": trt.__version__,
        "precision": precision,
        "inputs": [_tensor(network.get_input(i)) for i in range(network.num_inputs)],
        "outputs": [_tensor(network.get_output(i)) for i in range(network.num_outputs)],
        "profile": {p.name: p.as_dict() for p in profiles},
        "compute_capabilities": targets,
        "workspace_mb": workspace_mb,
        "source_onnx": {"name": onnx_path.name, "sha256": sha256_file(onnx_path)},
        "engine_sha256": hashlib.sha256(bytes(blob)).hexdigest(),
        "build_seconds": round(seconds, 2),
        "texport_version": __version__,
        **(metadata or {}),
    }
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(bytes(blob))
        write_bytes_atomic(sidecar_path(engine_path), (json.dumps(sidecar, indent=1) + "\n").encode())
    return sidecar


def _tensor(t) -> dict:
    return {"name": t.name, "dtype": str(t.dtype).rsplit(".", 1)[-1].lower(), "shape": list(t.shape)}


def _set_compute_capabilities(trt, config, flavour: str, wanted: list[str] | None) -> list[str] | str:
    """RTX engines name their target GPUs; standard TensorRT builds for the GPU it runs on."""
    if flavour != "tensorrt-rtx":
        if wanted:
            raise TexportError("target compute capabilities are for tensorrt-rtx engines; standard TensorRT builds for the local GPU")
        return "the build machine's GPU"
    if not wanted:
        return RTX_DEFAULT_TARGETS
    members = trt.ComputeCapability.__members__
    chosen = []
    for w in wanted:
        key = "SM" + w.upper().removeprefix("SM").replace(".", "")
        if key not in members or key in ("NONE", "CURRENT"):
            known = ", ".join(k for k in members if k.startswith("SM"))
            raise TexportError(f"unknown compute capability {w!r} for tensorrt-rtx (known: {known})")
        chosen.append(key)
    config.num_compute_capabilities = len(chosen)
    for i, key in enumerate(chosen):
        config.set_compute_capability(members[key], i)
    return chosen


def _load_timing_cache(config, path: str | os.PathLike | None):
    if path is None or not hasattr(config, "create_timing_cache"):
        return None
    p = Path(path)
    data = p.read_bytes() if p.is_file() else b""
    cache = config.create_timing_cache(data)
    if cache is None:  # an unreadable or foreign cache: start a fresh one rather than fail the build
        cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


class RuntimeCache:
    """TensorRT-RTX's cache of JIT-compiled kernels, kept beside the engine as ENGINE.rtcache.

    RTX engines compile their kernels for the GPU at run time, per input shape; the cache spares
    the next process that work. TensorRT-RTX checks a loaded cache against the GPU, driver and
    version itself and ignores one that does not fit. Standard TensorRT has no such cache (its
    kernels are chosen at build time): `context` then makes a plain execution context.
    """

    def __init__(self, engine, engine_path: str | os.PathLike):
        self.path = Path(str(engine_path) + ".rtcache")
        self.config = self.cache = None
        self.loaded = self.warned = False
        if hasattr(engine, "create_runtime_config"):
            config = engine.create_runtime_config()
            if hasattr(config, "create_runtime_cache"):
                self.config, self.cache = config, config.create_runtime_cache()
                if self.path.is_file():
                    self.loaded = bool(self.cache.deserialize(self.path.read_bytes()))
                self.config.set_runtime_cache(self.cache)

    def context(self, engine):
        return engine.create_execution_context(self.config) if self.config is not None else engine.create_execution_context()

    def save(self) -> None:
        """Write the cache (atomically); a read-only engine folder costs the next run a recompile, not this one."""
        if self.cache is None:
            return
        try:
            write_bytes_atomic(self.path, bytes(self.cache.serialize()))
        except OSError as err:
            if not self.warned:
                self.warned = True

                warnings.warn(f"TensorRT-RTX runtime cache not saved to {self.path}: {err}", stacklevel=2)


