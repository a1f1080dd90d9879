"""Histogram matching of colours along the target's principal axes (Heeger & Bergen 1995).

Heeger and Bergen, "Pyramid-based texture analysis/synthesis" (SIGGRAPH 1995), match the histogram
of each channel of a colour basis decorrelated by principal component analysis of the exemplar's
pixels. ProPO uses it once, on its final image: its stages match the colour mean and standard
deviation per RGB channel, which leaves the shape of the colour distribution loose (colour
distance 0.019 on held-out textures; with this step 0.0028: RESULTS.md).

Everything is plain tensor ops so the graph exports to ONNX and TensorRT: no sort, no
eigendecomposition operator. The principal axes come from cyclic Jacobi rotations of the 3x3
covariance (a fixed number of sweeps); distributions are summarized by their CDF at `EDGES + 1`
evenly spaced values between their minimum and maximum (smoothed comparisons and means, one image
axis at a time: texport.reductions), and mapped with piecewise-linear interpolation (gathers). The target's statistics are computed once per texture
(`statistics`) and kept beside its Gram matrices: a basis [B, 3, 3] and quantiles [B, 3, QUANTILES + 1].
"""

from __future__ import annotations

import torch

from texport.objectives.reductions import mean_nested

EDGES = 64  # CDF resolution of a distribution (bins between its min and max)
QUANTILES = 256  # resolution of the stored target quantile function
JACOBI_SWEEPS = 6  # 3x3 cyclic Jacobi converges to float precision in 4-5 sweeps
STRIDE = 2  # CDFs read every 2nd pixel of every 2nd row: a quarter of the memory, quantiles barely move
SOFTNESS = 0.5  # width of a pixel's logistic step in the CDF, in bins
UNIFORM = 0.01  # share of a uniform distribution mixed into every CDF: no bin is empty, so quantiles
# move at most (range / UNIFORM) x the CDF's change (across a gap in the colours they could jump)
EPS = 1e-12


def covariance(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The colour covariance [B, 3, 3] (centred, two passes) and mean [B, 3, 1] of image [B, 3, H, W], fp32.

    The products are summed one row at a time and then averaged over the rows, like mean_nested:
    one [3, H*W] x [H*W, 3] product at 1024 px was 2.5e-6 off in onnxruntime, and ProPO's colour
    gradient (the image's covariance minus the target's, nearly equal) made that 1.7e-4 in the image.
    """
    x = image.float()
    mean = mean_nested(x, (3, 2))
    rows = (x - mean).transpose(1, 2)  # [B, H, 3, W]
    cov = (rows @ rows.transpose(2, 3)).mean(dim=1) / x.shape[3]
    return cov, mean.flatten(2)


def principal_axes(image: torch.Tensor) -> torch.Tensor:
    """Rows = orthonormal eigenvectors of the colour covariance of image [B, 3, H, W]: [B, 3, 3]."""
    a, _ = covariance(image)
    v = torch.eye(3, device=image.device).expand_as(a)
    for _ in range(JACOBI_SWEEPS):
        for p, q in ((0, 1), (0, 2), (1, 2)):
            apq, app, aqq = a[:, p, q], a[:, p, p], a[:, q, q]
            # Golub & Van Loan, "Matrix Computations", alg. 8.5.1 (sym.schur2): zero a[p, q].
            small = apq.abs() < EPS
            theta = (aqq - app) / (2 * torch.where(small, torch.ones_like(apq), apq))
            t = torch.sign(theta) / (theta.abs() + torch.sqrt(theta * theta + 1))
            t = torch.where(small, torch.zeros_like(t), torch.where(theta == 0, torch.ones_like(t), t))
            c = 1 / torch.sqrt(t * t + 1)
            s = t * c
            j = _rotation(c, s, p, q)
            a = j.transpose(1, 2) @ a @ j
            v = v @ j
    return v.transpose(1, 2)


def _rotation(c: torch.Tensor, s: torch.Tensor, p: int, q: int) -> torch.Tensor:
    """The batched 3x3 Givens rotation with c at (p, p), (q, q), s at (p, q), -s at (q, p)."""
    one, zero = torch.ones_like(c), torch.zeros_like(c)
    entries = [[one, zero, zero], [zero, one, zero], [zero, zero, one]]
    entries[p][p], entries[q][q], entries[p][q], entries[q][p] = c, c, s, -s
    return torch.stack([torch.stack(row, dim=-1) for row in entries], dim=-2)


def _project(image: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] -> coordinates along the basis rows, [B, 3, H, W]."""
    return (basis @ image.float().flatten(2)).reshape(image.shape)


def _cdf(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Minimum, maximum [B, 3, 1] and CDF at EDGES + 1 even values between them [B, 3, EDGES + 1].

    Each pixel counts through a logistic step SOFTNESS bins wide rather than a hard comparison:
    the CDF, and so every output pixel, then moves continuously with the inputs, and runtimes
    that round differently (onnxruntime, TensorRT) agree closely instead of flipping whole pixels
    across an edge (hard steps gave 2e-3 differences in the quantiles for 1e-5 in the inputs).
    A 1% uniform share keeps the inverse CDF (the quantiles) continuous across gaps; both sides of
    a match get it, so identical distributions still map to themselves.
    """
    lo = values.amin(dim=(2, 3))[:, :, None]
    hi = values.amax(dim=(2, 3))[:, :, None]
    grid = torch.linspace(0, 1, EDGES + 1, device=values.device)
    edges = lo * (1 - grid) + hi * grid  # [B, 3, E+1]; the ends exactly lo and hi in any runtime
    sample = values[:, :, ::STRIDE, ::STRIDE, None]  # [B, 3, h, w, 1]
    width = ((hi - lo) * (SOFTNESS / EDGES)).clamp_min(EPS)[:, :, None, None, :]
    steps = torch.sigmoid((edges[:, :, None, None, :] - sample) / width)  # [B, 3, h, w, E+1]
    cdf = mean_nested(steps, (3, 2))[:, :, 0, 0, :]
    return lo, hi, (1 - UNIFORM) * cdf + UNIFORM * grid


def _interpolate(table: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear lookup of table [B, 3, K+1] at fractional positions [B, 3, P] in [0, K]."""
    k = table.shape[2] - 1
    position = position.clamp(0, k)
    index = position.floor().clamp(max=k - 1)
    frac = position - index
    index = index.long()
    left = table.gather(2, index)
    right = table.gather(2, index + 1)
    return left + frac * (right - left)


def statistics(texture: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The target's principal axes [B, 3, 3] and its quantile function along them [B, 3, QUANTILES + 1]."""
    basis = principal_axes(texture)
    values = _project(texture, basis)
    lo, hi, cdf = _cdf(values)
    # Invert the piecewise-linear CDF at even probabilities: the value is lo plus the bin width
    # times how much of each bin lies below the probability (a sum of clamped ramps, no search).
    levels = torch.linspace(0, 1, QUANTILES + 1, device=texture.device)[None, None, :, None]
    below, above = cdf[:, :, None, :-1], cdf[:, :, None, 1:]
    filled = ((levels - below) / (above - below).clamp_min(EPS)).clamp(0, 1).sum(dim=3)
    return basis, lo + (hi - lo) / EDGES * filled


def match(image: torch.Tensor, basis: torch.Tensor, quantiles: torch.Tensor) -> torch.Tensor:
    """image [B, 3, H, W] with its colour histogram along each target axis set to the target's."""
    values = _project(image, basis)
    lo, hi, cdf = _cdf(values)
    values = values.flatten(2)
    rank = _interpolate(cdf, (values - lo) / (hi - lo).clamp_min(EPS) * EDGES)
    matched = _interpolate(quantiles, rank * (quantiles.shape[2] - 1))
    return (basis.transpose(1, 2) @ matched).reshape(image.shape).to(image.dtype)
