"""Histogram matching along principal colour axes (texport.color_transfer)."""

from __future__ import annotations

import torch

import texport.objectives.color_transfer as color_transfer
import texport.objectives.losses as losses


def _colours(seed: int, shape=(1, 3, 40, 56), power: float = 2.0) -> torch.Tensor:
    """Correlated, skewed colours: a random mix (chosen by seed) of powers of uniforms."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.rand(3, 3, generator=g)
    x = torch.rand(*shape, generator=g) ** power
    return (torch.einsum("kc,nchw->nkhw", mix, x) / mix.sum(dim=1).view(1, 3, 1, 1)).clamp(0, 1)


def test_principal_axes_are_the_covariance_eigenvectors():
    image = _colours(0)
    basis = color_transfer.principal_axes(image)[0]
    assert torch.allclose(basis @ basis.T, torch.eye(3), atol=1e-5)
    x = image.flatten(2)[0]
    cov = torch.cov(x, correction=0)
    # rotated into the basis, the covariance is diagonal
    rotated = basis @ cov @ basis.T
    assert float((rotated - torch.diag(torch.diagonal(rotated))).abs().max()) < 1e-6 * float(cov.abs().max()) + 1e-9
    _, vectors = torch.linalg.eigh(cov)
    assert torch.allclose((basis @ vectors).abs().max(dim=1).values, torch.ones(3), atol=1e-4)


def test_grey_and_flat_images_give_finite_results():
    grey = torch.rand(1, 1, 32, 32).expand(1, 3, 32, 32).contiguous()  # rank-1 covariance
    flat = torch.full((1, 3, 32, 32), 0.3)
    for target in (grey, flat):
        basis, quantiles = color_transfer.statistics(target)
        assert torch.isfinite(basis).all() and torch.isfinite(quantiles).all()
        out = color_transfer.match(_colours(1, (1, 3, 32, 32)), basis, quantiles)
        assert torch.isfinite(out).all()
    out = color_transfer.match(flat, *color_transfer.statistics(_colours(2)))
    assert torch.isfinite(out).all()
    assert torch.allclose(color_transfer.match(flat, *color_transfer.statistics(flat)), flat, atol=1e-5)


def test_match_gives_the_targets_colour_distribution_and_keeps_the_order():
    # independent components along the same rotated axes, with different distribution shapes (a
    # flat-ish source, a skewed target) and sizes: the case the method is exact for
    rotation = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(3)))[0]
    scales = torch.tensor([0.25, 0.1, 0.04]).view(1, 3, 1, 1)

    def along_axes(shape, power, seed):
        c = (torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) ** power - 0.5) * scales
        return 0.5 + torch.einsum("ck,nkhw->nchw", rotation, c)

    source, target = along_axes((2, 3, 64, 48), 0.5, 4), along_axes((1, 3, 37, 51), 3.0, 5)
    basis, quantiles = color_transfer.statistics(target)
    out = color_transfer.match(source, basis.expand(2, 3, 3), quantiles.expand(2, -1, -1))
    assert out.shape == source.shape
    for n in range(2):
        before = float(losses.color_distance(source[n:n + 1], target))
        after = float(losses.color_distance(out[n:n + 1], target))
        assert after < 0.01 < before and after < before / 5
    # along every axis the map is monotone: pixels keep their order
    s = (basis[0] @ source.flatten(2))[0]
    o = (basis[0] @ out.flatten(2))[0]
    for k in range(3):
        ordered = o[k][s[k].argsort()]
        assert float((ordered[1:] - ordered[:-1]).min()) > -1e-5


def test_quantiles_are_monotone_and_span_the_target():
    target = _colours(5, (1, 3, 128, 128))
    basis, quantiles = color_transfer.statistics(target)
    values = basis[0] @ target.flatten(2)[0]
    assert (quantiles[0, :, 1:] >= quantiles[0, :, :-1] - 1e-7).all()
    assert torch.allclose(quantiles[0, :, 0], values.min(dim=1).values, atol=1e-6)
    assert torch.allclose(quantiles[0, :, -1], values.max(dim=1).values, atol=1e-6)
    exact = torch.quantile(values, torch.tensor([0.25, 0.5, 0.75]), dim=1).T
    bin_width = (values.max(dim=1).values - values.min(dim=1).values) / color_transfer.EDGES
    assert ((quantiles[0, :, [64, 128, 192]] - exact).abs() < bin_width[:, None]).all()
