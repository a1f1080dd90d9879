"""A solid network's lattice blocks (texport.scale.volumes) on any CPU backend.

Every block of the lattice has the same shape and the same crops, so one fixed-shape graph computes
them all: on PyTorch the network itself (a channels-last copy, which runs the 3D convolutions on
oneDNN's kernels rather than PyTorch's slow reference path), on onnxruntime and OpenVINO the block graph
(texport.export.graphs.solid_block_spec, exported once into the ONNX cache). The noise comes from
the same contract on every backend (SolidNetwork.window_noise), so each backend's volumes agree with
each other to rounding, and a backend's own blocks agree with its own larger volumes bit for bit.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from texport.errors import TexportError
from texport.export.cache import cached_onnx
from texport.models.handle import Model
from texport.models.loading import load_solid
from texport.models.solid import SolidNetwork
from texport.runtime.backends import OnnxRuntimeBackend, OpenVINOBackend, choose_backend
from texport.textures.images import to_uint8


class BlockComputer:
    """compute(seed, origin (x, y, z), period or None) -> one block, uint8 [side, side, side, 3] (z, y, x, RGB)."""

    def __init__(self, network: SolidNetwork, side: int, runner=None, name: str = "torch"):
        self.network, self.side, self.runner, self.name = network, side, runner, name
        if runner is None:
            self.fast = copy.deepcopy(network).eval().to(memory_format=torch.channels_last_3d)

    @classmethod
    def open(cls, model: Model, side: int, backend: str | None = None, device: str = "auto") -> "BlockComputer":
        """For a solid model (a texport file: the block graph is exported from it) on `backend`
        (None: torch; auto: the fastest here)."""
        if model.format != "texport":
            raise TexportError("volumes are computed from the texport model (a shipped name or .safetensors): "
                               "its block graph is exported from it")
        network = load_solid(model, "cpu" if backend not in (None, "torch") else device).network
        name, options = choose_backend(model, backend, device)
        if name == "torch":
            return cls(network, side)
        if name == "tensorrt":
            raise TexportError("volumes run on torch, onnxruntime or openvino")
        graph = cached_onnx(model, False, block=side)
        runtime = OnnxRuntimeBackend if name == "onnxruntime" else OpenVINOBackend
        return cls(network, side, runtime(model, device, graph=graph, **options), name)

    @property
    def size_multiple(self) -> int:
        return self.network.size_multiple

    @torch.no_grad()
    def __call__(self, seed: int, origin: tuple[int, int, int], period: tuple[int, int, int] | None) -> np.ndarray:
        dev = next(self.network.parameters()).device
        z, plans = self.network.window_noise(seed, origin, (self.side,) * 3, period=period, device=dev)
        if self.runner is None:
            block = self.fast.generate(z, plans)
        else:
            block = self.runner.run({f"noise{i}": t for i, t in enumerate(z)})
        return to_uint8(block[0].float().cpu()).permute(1, 2, 3, 0).numpy()

    def describe(self) -> str:
        return self.name if self.runner is None else self.runner.describe()
