"""Texture statistics and losses, written once for Gatys, training, export and benchmarks.

Everything here works on descriptor features (dicts of [B, C, H, W] tensors) or on RGB images in
[0, 1], returns one value per batch item ([B]) so callers choose mean or sum, and is plain tensor
ops, so the same code runs under autograd, inside exported graphs, and on any device.

Sources: Gram matrix and texture loss, Shi & Qiao 2020 eq. 1-2, analytic gradient eq. 6,
diversity eq. 11; Gaussian-pyramid loss, Snelgrove 2017 eq. 4-6; sliced Wasserstein loss,
Heitz et al., "A Sliced Wasserstein Loss for Neural Texture Synthesis" (CVPR 2021).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from texport.textures.images import quantize

# Layer sets (names as in texport.descriptor).
PO_LAYERS = ("relu1_1", "pool1", "pool2", "pool3", "pool4")  # Shi & Qiao 2020 sec. 4.1, conv1_1 after its ReLU
TEXNET_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")  # Ulyanov et al. 2016
PYRAMID_LAYERS = ("pool1", "conv3_2")  # Snelgrove 2017 sec. 4
PYRAMID_OCTAVES = 5
DIVERSITY_LAYER = "conv4_2"  # Shi & Qiao 2020 eq. 11
COLOR_DIRECTIONS = 64
COLOR_SEED = 0


def _fp32(f: torch.Tensor) -> torch.Tensor:
    return f.float()


def flat_samples(features: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] as [B, C, H*W] without a copy where the layout allows: channels-last features (the
    bf16 descriptor's) become a transposed view, which bmm and einsum read as they are, where reshape
    would first reorder every element."""
    b, c, h, w = features.shape
    if c > 1 and not features.is_contiguous() and features.is_contiguous(memory_format=torch.channels_last):
        return features.permute(0, 2, 3, 1).reshape(b, h * w, c).transpose(1, 2)
    return features.reshape(b, c, h * w)


def gram(features: torch.Tensor) -> torch.Tensor:
    """Normalized Gram matrix G = F^T F / N (Shi & Qiao 2020 eq. 1): [B, C, H, W] -> [B, C, C], always fp32.

    Computed outside autocast: VGG activations squared and summed overflow fp16.
    """
    with torch.autocast(device_type=features.device.type, enabled=False):
        f = flat_samples(_fp32(features))
        if f.requires_grad and torch.is_grad_enabled():
            return _Gram.apply(f)
        return torch.bmm(f, f.transpose(1, 2)) / f.shape[-1]


class _Gram(torch.autograd.Function):
    """G = F F^T / N with a backward that returns dL/dF in F's own layout, in one product.

    Autograd's own backward of bmm(F, F^T) makes two products and adds them, in the standard layout;
    for channels-last features (the bf16 descriptor's) that sum, and the reorder before the
    gradient joins the convolutions' channels-last one, cost more than the bf16 convolutions save.
    Here dL/dF = (dG + dG^T) F / N, formed as F^T (dG + dG^T) / N, which is [B, N, C]: channels-last.
    """

    @staticmethod
    def forward(ctx, f: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(f)
        return torch.bmm(f, f.transpose(1, 2)) / f.shape[-1]

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (f,) = ctx.saved_tensors
        symmetric = (grad + grad.transpose(1, 2)) / f.shape[-1]
        if f.is_contiguous():  # [B, C, N] in the standard layout: the gradient in it too
            return torch.bmm(symmetric, f)
        return torch.bmm(f.transpose(1, 2), symmetric).transpose(1, 2)


def grams(features: Mapping[str, torch.Tensor], layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """Gram matrices of the given (default: all) layers."""
    return {name: gram(features[name]) for name in (layers or features.keys())}


def texture_loss(
    features: Mapping[str, torch.Tensor],
    target_grams: Mapping[str, torch.Tensor],
    weights: Mapping[str, float] | None = None,
) -> torch.Tensor:
    """Texture loss (Shi & Qiao 2020 eq. 2): sum over layers of w_l ||G_l(x) - G_l(target)||_F^2, per batch item."""
    total = None
    for name, target in target_grams.items():
        diff = gram(features[name]) - target.float()
        term = diff.pow(2).sum(dim=(1, 2)) * (1.0 if weights is None else float(weights.get(name, 1.0)))
        total = term if total is None else total + term
    return total


def gram_gradient(features: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    """Analytic dL/dF of ||G(F) - G_target||^2 (Shi & Qiao 2020 eq. 6): (4/N) (G(F) - G_target) F.

    Plain tensor ops (no autograd) so ProPO can fold it into an exported graph. The Gram difference
    is formed in fp32; the result has the features' shape [B, C, H, W] and fp32 dtype.
    """
    with torch.autocast(device_type=features.device.type, enabled=False):
        b, c, h, w = features.shape
        n = h * w
        f = flat_samples(_fp32(features))
        diff = torch.bmm(f, f.transpose(1, 2)) / n - target_gram.float()
        return (torch.bmm(diff, f) * (4.0 / n)).reshape(b, c, h, w)


def texture_gradients(
    features: Mapping[str, torch.Tensor],
    target_grams: Mapping[str, torch.Tensor],
    weights: Mapping[str, float] | None = None,
) -> dict[str, torch.Tensor]:
    """Per-layer gradients of the (weighted) texture loss w.r.t. each layer's features."""
    return {
        name: gram_gradient(features[name], target) * (1.0 if weights is None else float(weights.get(name, 1.0)))
        for name, target in target_grams.items()
    }


# ---------------------------------------------------------------------------------------------
# Multi-scale (Snelgrove 2017)

_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def blur_downsample(x: torch.Tensor, circular: bool = False) -> torch.Tensor:
    """One Gaussian-pyramid step: 5-tap binomial blur, then keep every second pixel."""
    c = x.shape[1]
    k = _BINOMIAL.to(x)
    x = F.pad(x, (2, 2, 2, 2), mode="circular" if circular else "reflect")
    x = F.conv2d(x, k.view(1, 1, 1, 5).expand(c, 1, 1, 5), groups=c)
    x = F.conv2d(x, k.view(1, 1, 5, 1).expand(c, 1, 5, 1), groups=c)
    return x[..., ::2, ::2]


def gaussian_pyramid(x: torch.Tensor, octaves: int, circular: bool = False) -> list[torch.Tensor]:
    """[x, blur-down(x), ...] with `octaves` levels (octave 0 is the image itself)."""
    levels = [x]
    for _ in range(octaves - 1):
        levels.append(blur_downsample(levels[-1], circular))
    return levels


# ---------------------------------------------------------------------------------------------
# Sliced Wasserstein: pixel colours (colour fidelity) and features (Heitz et al. 2021)


def random_directions(count: int, dim: int, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """`count` seeded unit vectors in R^dim, [count, dim] (same on every device: drawn on the CPU)."""
    gen = torch.Generator().manual_seed(seed)
    d = torch.randn(count, dim, generator=gen, dtype=torch.float64)
    return (d / d.norm(dim=1, keepdim=True)).float().to(device)


def sort_last(values: torch.Tensor) -> torch.Tensor:
    """values sorted along the last axis, differentiable: the same values torch.sort gives.

    On the CPU, NumPy sorts: its AVX-512 sorts (x86-simd-sort) order 64 rows of 65536 floats
    several times faster than torch.sort, and the sliced Wasserstein loss sorts that much for
    every layer of every evaluation. With a gradient to carry, NumPy's argsort gives the order
    and `gather` keeps autograd's path; without one, NumPy sorts the values alone (faster still).
    """
    if values.device.type != "cpu":
        return values.sort(dim=-1).values
    if values.requires_grad:
        order = np.argsort(values.detach().numpy(), axis=-1)
        return values.gather(-1, torch.from_numpy(order))
    return torch.from_numpy(np.sort(values.numpy(), axis=-1))


def sorted_projections(values: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Project [B, C, H, W] samples (one per pixel) on [K, C] directions and sort: [B, K, H*W]."""
    with torch.autocast(device_type=values.device.type, enabled=False):
        proj = torch.einsum("kc,bcn->bkn", directions.float(), flat_samples(values.float()))
        return sort_last(proj)


def resample_quantiles(sorted_values: torch.Tensor, count: int) -> torch.Tensor:
    """The empirical quantile function of sorted samples [..., N] at levels (k + 0.5)/count, k < count.

    Linear interpolation between order statistics at position level*N - 0.5; when count == N this
    returns the sorted samples unchanged, so equal-size comparisons are exact.
    """
    n = sorted_values.shape[-1]
    if n == count:
        return sorted_values
    pos = ((torch.arange(count, device=sorted_values.device, dtype=torch.float64) + 0.5) * n / count - 0.5).clamp(0, n - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=n - 1)
    frac = (pos - lo).to(sorted_values.dtype)
    return sorted_values[..., lo] * (1 - frac) + sorted_values[..., hi] * frac


def sliced_wasserstein_loss(values: torch.Tensor, target_sorted: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between sorted projections of `values` and the target's quantiles, per item.

    target_sorted: [1 or B, K, M] sorted target projections on the same directions; any M (any
    exemplar size) is resampled to this image's number of samples.
    """
    proj = sorted_projections(values, directions)
    target = resample_quantiles(target_sorted.float(), proj.shape[-1])
    return (proj - target).pow(2).mean(dim=(1, 2))


def color_loss(image: torch.Tensor, target_sorted: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Pixel-space colour-distribution loss: sliced Wasserstein-2 over RGB in [0, 1] (per batch item)."""
    return sliced_wasserstein_loss(image, target_sorted, directions)


def color_distance(a: torch.Tensor, b: torch.Tensor, directions: int = COLOR_DIRECTIONS, seed: int = COLOR_SEED) -> torch.Tensor:
    """The colour metric: sliced Wasserstein-1 between the RGB distributions of two images, 0-1 scale.

    Both images are first quantized to 8 bits (metrics are taken on the saved image). For each of
    `directions` fixed seeded unit directions, pixels are projected and sorted; the two quantile
    functions are compared at M = min(N_a, N_b) levels (k + 0.5)/M (see resample_quantiles) and the
    mean absolute difference over levels and directions is returned, per batch item of `a`.
    """

    dirs = random_directions(directions, 3, seed, a.device)
    pa = sorted_projections(quantize(a), dirs)
    pb = sorted_projections(quantize(b.to(a.device)), dirs)
    m = min(pa.shape[-1], pb.shape[-1])
    return (resample_quantiles(pa, m) - resample_quantiles(pb, m)).abs().mean(dim=(1, 2))


# ---------------------------------------------------------------------------------------------
# Content and diversity


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared feature difference at the content layer (texport.defaults.STYLE_CONTENT_LAYER), per item."""
    return (features.float() - target.float()).pow(2).mean(dim=(1, 2, 3))


def diversity(features: torch.Tensor) -> torch.Tensor:
    """Diversity of a batch (Shi & Qiao 2020 eq. 11): mean over pairs i != j of the mean |F(x_i) - F(x_j)|.

    `features` are [B, C, H, W] at the diversity layer (conv4_2), B >= 2. The L1 norm is averaged
    over elements so the value does not depend on the image size.
    """
    b = features.shape[0]
    if b < 2:
        raise ValueError("diversity needs at least two images")
    f = features.float().reshape(b, -1)
    total = sum((f[i] - f[j]).abs().mean() for i in range(b) for j in range(b) if i != j)
    return total / (b * (b - 1))
