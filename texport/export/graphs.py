"""Deployable graphs: each shipped model kind as modules with named tensor inputs and outputs.

What an engine sees: a texture network maps `noise` [B, K*C, H, W] to `image`
[B, 3, H, W]; a solid network `noise` [B, K*C, D, H, W] to `volume` [B, 3, D, H, W] (periodic in
the noise's sides; a window of the infinite volume is the centre of a larger periodic one, see
`SOLID_NOISE`); ProPO maps `noise` [B, 3, H, W] and `texture` [B, 3, h, w] to `image`, and splits
into `texture` -> one named tensor per statistic (`encode`) and `noise` + those tensors -> `image`
(`synth`), for engines that reuse a texture's statistics across frames. A style network maps
`content` [B, 3, H, W] and `noise` [B, K*C, H, W] (the same H and W) to `image`; hosts scale the noise
by the noise scale themselves. Images are in [0, 1]. The modules hold no logic of their own: they
fix argument order and names (`input_names`, which TorchBackend feeds by) for the exporters.

fp16 graphs (TensorRT-RTX is strongly typed: an fp16 engine comes from an fp16 graph) run the
costly parts of each model in half precision (its `half_body()`: the texture network's finest join
block; ProPO's descriptor and stages 3-5), while every Gram matrix, Gram difference, colour
statistic and the image itself stay fp32 through explicit casts (texport.objectives.losses.gram,
ProPO.stage_gradients); inputs and outputs stay fp32, so an engine's interface does not depend on
its precision.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from texport import __version__
from texport.models.loading import LoadedPropo, LoadedSolid, LoadedStylenet, LoadedTexnet
from texport.models.propo import BASIS_KEY, COLOR_KEY, MEAN_KEY, QUANTILES_KEY, SIZE_MULTIPLE, STD_KEY, ProPO
from texport.textures.images import load_image, resolve_texture
from texport.models.solid import plan_axis, receptive_radius
from texport.textures.noise import noise_field, noise_volume

NOISE_CONTRACT = "texport.noise/1: lowbias32 hash of (seed + item, channel, y, x), uniform [0, 1) in 2^-24 steps"
SOLID_NOISE = ("texport.noise/1 3D: lowbias32 hash32(x + hash32(y + hash32(z + hash32(channel + hash32(seed + item))))), "
               "uniform [0, 1) in 2^-24 steps")


class TexnetGraph(nn.Module):
    """noise -> image."""
    input_names = ("noise",)

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        return self.network(noise)


class ProPOGraph(nn.Module):
    """noise, texture -> image: the descriptor, the analytic gradients and all stages in one graph."""
    input_names = ("noise", "texture")

    def __init__(self, propo: ProPO):
        super().__init__()
        self.propo = propo

    def forward(self, noise: torch.Tensor, texture: torch.Tensor) -> torch.Tensor:
        return self.propo(noise, texture).clamp(0, 1)


class StyleGraph(TexnetGraph):
    """content, noise -> image: the noise as given (the host has multiplied it by its noise scale)."""
    input_names = ("content", "noise")

    def forward(self, content: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.network(content, noise)


def statistic_names(propo: ProPO) -> list[str]:
    """The encode graph's outputs, in order: the descriptor levels, then the colour statistics."""
    names = list(propo.levels)
    if propo.color_input:
        names.append(COLOR_KEY)
    if propo.color_match:
        names += [MEAN_KEY, STD_KEY]
    if propo.histogram_match:
        names += [BASIS_KEY, QUANTILES_KEY]
    return names


class ProPOEncodeGraph(nn.Module):
    """texture -> the target statistics (one tensor per name of statistic_names)."""
    def __init__(self, propo: ProPO):
        super().__init__()
        self.propo = propo
        self.names = statistic_names(propo)

    def forward(self, texture: torch.Tensor) -> tuple[torch.Tensor, ...]:
        statistics = self.propo.target_statistics(texture)
        return tuple(statistics[n] for n in self.names)


class ProPOSynthGraph(nn.Module):
    """noise, statistics... -> image."""
    def __init__(self, propo: ProPO):
        super().__init__()
        self.propo = propo
        self.names = statistic_names(propo)

    def forward(self, noise: torch.Tensor, *statistics: torch.Tensor) -> torch.Tensor:
        return self.propo.synthesize(noise, dict(zip(self.names, statistics))).clamp(0, 1)


class HalfPrecision(nn.Module):
    """A texture network, style network or ProPO graph with its model's `half_body()`: fp16 inside, fp32 in and out.

    Each model puts in fp16 the parts that hold most of its work and can afford the rounding, and
    keeps the rest fp32 (TextureNetwork.half_body, ProPO.half_body give the measurements): an
    all-fp16 graph missed the 1e-2 budget on the 0-1 image by 2-5x.
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = copy.deepcopy(module)
        model = self.module.network if isinstance(self.module, TexnetGraph) else self.module.propo
        model.half_body()

    def forward(self, *inputs: torch.Tensor):
        out = self.module(*inputs)
        return tuple(o.float() for o in out) if isinstance(out, tuple) else out.float()


def in_precision(module: nn.Module, precision: str) -> nn.Module:
    if precision == "fp32":
        return module
    if precision == "fp16":
        return HalfPrecision(module).eval()
    raise ValueError(f"precision must be fp32 or fp16, got {precision!r}")


@dataclass
class GraphSpec:
    """One graph to export: the module, example inputs, names, which axes are dynamic, metadata."""
    name: str
    module: nn.Module
    inputs: tuple[torch.Tensor, ...]
    input_names: list[str]
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    metadata: dict[str, str] = field(default_factory=dict)
    reference: nn.Module | None = None  # the fp32 graph an fp16 export is compared with

    @property
    def precision(self) -> str:
        return "fp16" if isinstance(self.module, HalfPrecision) else "fp32"


_IMAGE_AXES = {0: "batch", 2: "height", 3: "width"}
_VOLUME_AXES = {0: "batch", 2: "depth", 3: "height", 4: "width"}
_TEXTURE_AXES = {0: "batch", 2: "texture_height", 3: "texture_width"}


def _common_metadata(loaded, kind: str, precision: str) -> dict[str, str]:
    manifest = loaded.manifest
    return {
        "texport.kind": kind,
        "texport.precision": precision if precision == "fp32" else f"{precision} (Gram matrices and colour statistics fp32; inputs and outputs fp32)",
        "texport.model": loaded.name,
        "texport.version": __version__,
        "texport.value_range": "image in [0, 1], RGB, NCHW",
        "texport.noise_distribution": NOISE_CONTRACT,
        "texport.descriptor": str(manifest.get("descriptor", "")),
    }


def texnet_specs(loaded: LoadedTexnet, size: int = 64, batch: int = 1, precision: str = "fp32") -> list[GraphSpec]:
    net = loaded.network
    noise = net.noise(size, size, batch=batch, device=next(net.parameters()).device)
    meta = dict(_common_metadata(loaded, "texnet", precision),
                **{"texport.size_multiple": str(net.size_multiple),
                   "texport.noise_shape": f"[batch, {net.input_channels}, height, width]; scale i = channels "
                                          f"{net.noise_channels}i..{net.noise_channels}(i+1)-1 subsampled by 2^i"})
    graph = TexnetGraph(net).eval()
    return [GraphSpec(loaded.name, in_precision(graph, precision), (noise,), list(graph.input_names), ["image"],
                      {"noise": _IMAGE_AXES, "image": _IMAGE_AXES}, meta, graph)]


def solid_specs(loaded: LoadedSolid, size: int = 16, batch: int = 1) -> list[GraphSpec]:
    """noise [B, K*C, D, H, W] -> volume [B, 3, D, H, W], every size dynamic (multiples of the grid)."""
    net = loaded.network
    dev = next(net.parameters()).device
    noise = noise_volume(0, net.input_channels, size, size, size, batch=batch, device=dev)
    halo = -(-receptive_radius(net.scales) // net.size_multiple) * net.size_multiple
    meta = dict(_common_metadata(loaded, "solid", "fp32"),
                **{"texport.value_range": "volume in [0, 1], RGB, NCDHW",
                   "texport.noise_distribution": SOLID_NOISE,
                   "texport.size_multiple": str(net.size_multiple),
                   "texport.noise_shape": f"[batch, {net.input_channels}, depth, height, width] at voxels (x, y, z); scale i = "
                                          f"channels {net.noise_channels}i..{net.noise_channels}(i+1)-1 subsampled by 2^i "
                                          "on every axis",
                   "texport.periodic": "the volume wraps around the noise's sides; for the window at (x0, y0, z0) of the "
                                       f"infinite volume feed the noise of [x0 - {halo}, x0 + W + {halo}) (and y, z; x0 a "
                                       f"multiple of {net.size_multiple}) and keep the centre",
                   "texport.halo": str(halo)})
    graph = TexnetGraph(net).eval()
    return [GraphSpec(loaded.name, graph, (noise,), list(graph.input_names), ["volume"],
                      {"noise": _VOLUME_AXES, "volume": _VOLUME_AXES}, meta, graph)]


class SolidBlockGraph(nn.Module):
    """One block of a solid network's lattice (texport.scale.volumes): each scale's noise with its halo
    (`SolidNetwork.window_noise` of a block at a multiple of the grid) -> the block [B, 3, side, side, side].
    Every block has the same shapes and crops, so one fixed-shape graph serves the whole lattice."""

    def __init__(self, network: nn.Module, side: int):
        super().__init__()
        self.network = network
        self.plans = tuple(plan_axis(0, side, network.scales) for _ in range(3))
        self.input_names = tuple(f"noise{i}" for i in range(network.scales))

    def forward(self, *noise: torch.Tensor) -> torch.Tensor:
        return self.network.generate(list(noise), self.plans)


def solid_block_spec(loaded: LoadedSolid, side: int) -> GraphSpec:
    """The block graph of a solid network's lattice for blocks of `side` (fixed shapes, dynamic batch)."""
    net = loaded.network
    graph = SolidBlockGraph(net, side).eval()
    noise, _ = net.window_noise(0, (0, 0, 0), (side, side, side), device=next(net.parameters()).device)
    meta = dict(_common_metadata(loaded, "solid", "fp32"),
                **{"texport.graph": f"block{side}", "texport.noise_distribution": SOLID_NOISE,
                   "texport.size_multiple": str(net.size_multiple),
                   "texport.noise_shape": "noise i: scale i's noise over its halo of a block (SolidNetwork.window_noise)"})
    axes = {name: {0: "batch"} for name in graph.input_names}
    return GraphSpec(f"{loaded.name}.block{side}", graph, tuple(noise), list(graph.input_names), ["volume"],
                     {**axes, "volume": {0: "batch"}}, meta, graph)


def stylenet_specs(loaded: LoadedStylenet, size: int = 64, batch: int = 1, precision: str = "fp32") -> list[GraphSpec]:
    """One graph; content and noise share the dynamic image sides. The example content is a real image
    (the shipped red-peppers): parity is checked on it."""

    net = loaded.network
    dev = next(net.parameters()).device
    content = load_image(resolve_texture("red-peppers"))[..., :size, :size].expand(batch, -1, -1, -1).to(dev)
    noise = net.noise(size, size, batch=batch, device=dev)
    meta = dict(_common_metadata(loaded, "stylenet", precision),
                **{"texport.size_multiple": str(net.size_multiple), "texport.min_side": str(2 * net.size_multiple),
                   "texport.noise_shape": f"[batch, {net.input_channels}, height, width]; scale i = channels "
                                          f"{net.noise_channels}i..{net.noise_channels}(i+1)-1 subsampled by 2^i",
                   "texport.content": "[batch, 3, height, width] in [0, 1], RGB: the photograph, resized to the output "
                                      "size, then padded by reflection at the bottom and right to the noise's sides "
                                      "(the output is cropped back)",
                   "texport.noise_scale": "the host multiplies the noise by the noise scale (>= 0) before feeding it: "
                                          "0 renders the content most faithfully, 1 as trained, more lets the style take over",
                   "texport.style": str((loaded.manifest.get("style") or {}).get("name", ""))})
    graph = StyleGraph(net).eval()
    return [GraphSpec(loaded.name, in_precision(graph, precision), (content, noise), list(graph.input_names), ["image"],
                      {"content": _IMAGE_AXES, "noise": _IMAGE_AXES, "image": _IMAGE_AXES}, meta, graph)]


def propo_specs(loaded: LoadedPropo, size: int = 64, texture_size: int = 64, batch: int = 1,
                precision: str = "fp32", split: bool = True) -> list[GraphSpec]:
    """The whole graph, then (with split) the encode / synth pair."""
    propo = loaded.network
    dev = next(propo.parameters()).device
    noise = noise_field(0, 3, size, size, batch=batch, device=dev)
    # a real texture (the shipped pebbles) as the example: parity is checked on it

    texture = load_image(resolve_texture("pebbles"))[..., :texture_size, :texture_size].expand(batch, -1, -1, -1).to(dev)
    names = statistic_names(propo)
    meta = dict(_common_metadata(loaded, "propo", precision),
                **{"texport.size_multiple": str(SIZE_MULTIPLE), "texport.min_side": "32",
                   "texport.noise_shape": "[batch, 3, height, width]",
                   "texport.texture": "[batch, 3, texture_height, texture_width] in [0, 1], any size >= 32",
                   "texport.statistics": ",".join(names)})
    whole = ProPOGraph(propo).eval()
    main = GraphSpec(loaded.name, in_precision(whole, precision), (noise, texture), list(whole.input_names), ["image"],
                     {"noise": _IMAGE_AXES, "texture": _TEXTURE_AXES, "image": _IMAGE_AXES}, meta, whole)
    if not split:
        return [main]
    stat_axes = {n: {0: "batch"} for n in names}
    encode, synth = ProPOEncodeGraph(propo).eval(), ProPOSynthGraph(propo).eval()
    with torch.no_grad():
        statistics = encode(texture)
    return [
        main,
        GraphSpec(f"{loaded.name}.encode", in_precision(encode, precision), (texture,), ["texture"], names,
                  {"texture": _TEXTURE_AXES, **stat_axes}, dict(meta, **{"texport.graph": "encode"}), encode),
        GraphSpec(f"{loaded.name}.synth", in_precision(synth, precision), (noise, *statistics), ["noise", *names],
                  ["image"], {"noise": _IMAGE_AXES, "image": _IMAGE_AXES, **stat_axes},
                  dict(meta, **{"texport.graph": "synth"}), synth),
    ]
