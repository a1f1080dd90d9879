"""The spectrum constraint (Liu, Gousseau & Xia 2016) and its reference image."""

from __future__ import annotations

import math

import pytest
import torch

import texport.objectives.spectrum as spectrum
from texport.objectives.objective import TextureObjective, build_objective



def _laplacians(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(periodic Laplacian, interior Laplacian: neighbours inside the image only) of [..., H, W]."""
    periodic = sum(torch.roll(u, s, d) for s, d in ((1, -1), (-1, -1), (1, -2), (-1, -2))) - 4 * u
    padded = torch.nn.functional.pad(u, (1, 1, 1, 1))
    inside = torch.nn.functional.pad(torch.ones_like(u), (1, 1, 1, 1))
    h, w = u.shape[-2:]
    shifts = ((0, 1), (2, 1), (1, 0), (1, 2))
    interior = sum(padded[..., a:a + h, b:b + w] - inside[..., a:a + h, b:b + w] * u for a, b in shifts)
    return periodic, interior


def test_periodic_component_removes_the_border_cross(pebbles):
    # Moisan 2011: the periodic component p has the image's interior Laplacian as its periodic Laplacian
    u = pebbles[..., :40, :56].double()
    p = spectrum.periodic_component(u)
    assert torch.allclose(_laplacians(p)[0], _laplacians(u)[1], atol=1e-9)
    # a ramp is all border jump: its spectrum has a bright cross on the axes, the periodic part none
    ramp = torch.linspace(0, 1, 40).view(1, 1, 1, 40).expand(1, 3, 40, 40).contiguous()
    axis_energy = lambda img: torch.fft.fft2(img - img.mean()).abs()[..., 0, 1:].pow(2).sum()  # noqa: E731
    assert axis_energy(spectrum.periodic_component(ramp)) < 1e-2 * axis_energy(ramp)
    # and the smooth part it removes has zero mean
    assert float(spectrum.periodic_component(ramp).mean()) == pytest.approx(float(ramp.mean()), abs=1e-6)


def test_an_exemplar_of_the_output_size_gives_liu_et_als_reference(pebbles):
    u = pebbles[..., :48, :64]
    ref = spectrum.reference_spectrum(u, 48, 64)
    periodic = spectrum.periodic_component(u)
    # the same modulus, and P leaves the periodic component (and its circular shifts) where they are
    assert torch.allclose(ref.abs(), torch.fft.fft2(periodic).abs(), rtol=1e-3, atol=1e-3)
    shifted = torch.roll(periodic, shifts=(7, -11), dims=(-2, -1))
    assert torch.allclose(spectrum.project(shifted, ref), shifted, atol=1e-4)
    assert float(spectrum.spectrum_loss(shifted, ref)[0]) < 1e-8


@pytest.mark.parametrize("size", [(32, 32), (24, 40), (96, 96), (64, 160)])
def test_reference_has_the_exemplars_mean_and_per_channel_power_at_any_size(pebbles, size):
    exemplar = pebbles[..., :64, :80]
    ref = spectrum.reference_spectrum(exemplar, *size)
    n = size[0] * size[1]
    assert ref.shape == (1, 3, *size)
    assert torch.allclose(ref[..., 0, 0].real / n, exemplar.mean(dim=(-2, -1)), atol=1e-5)
    # AC power per pixel = the variance of the exemplar's periodic windows (Parseval), averaged over windows
    ac = ref.abs().pow(2).sum(dim=(-2, -1)) / n**2 - ref[..., 0, 0].abs().pow(2) / n**2
    wh, ww = min(64, size[0]), min(80, size[1])
    variances = torch.stack([spectrum.periodic_component(exemplar[..., t:t + wh, l:l + ww]).var(dim=(-2, -1), unbiased=False)
                             for t in spectrum._starts(64, wh) for l in spectrum._starts(80, ww)]).mean(dim=0)
    assert torch.allclose(ac, variances, rtol=1e-3)
    # a real image: the projection of anything is real and has the reference's modulus
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0))
    projected = spectrum.project(x, ref)
    assert torch.allclose(torch.fft.fft2(projected).abs(), ref.abs().expand(2, -1, -1, -1), rtol=1e-3, atol=1e-2)
    assert torch.all(spectrum.spectrum_loss(x, ref) < (x - 0.5).pow(2).mean(dim=(1, 2, 3)) + 1)


def test_spectrum_loss_gradient_pulls_towards_the_projection(pebbles):
    ref_spectrum = spectrum.reference_spectrum(pebbles[..., :32, :32], 32, 32)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    spectrum.spectrum_loss(x, ref_spectrum).sum().backward()
    expected = 2 * (x.detach() - spectrum.project(x.detach(), ref_spectrum)) / x.numel()
    assert torch.allclose(x.grad, expected, atol=1e-7)


def test_objective_carries_the_spectrum_term_by_default_and_zero_turns_it_off(hed, pebbles):
    exemplar = pebbles[..., :64, :64]
    x = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(2))
    with_term = build_objective(exemplar, descriptor=hed)
    without = build_objective(exemplar, descriptor=hed, spectrum_weight=0)
    a, b = with_term(x), without(x)
    assert "spectrum" in a and "spectrum" not in b
    assert float(a["total"][0]) == pytest.approx(float(b["total"][0]) + with_term.spectrum_scale * float(a["spectrum"][0]), rel=1e-5)
    assert with_term.spec.as_dict()["spectrum_weight"] == with_term.spec.spectrum_weight > 0
    with pytest.raises(Exception, match="spectrum weight"):
        TextureObjective(hed, exemplar, type(with_term.spec)(spectrum_weight=-1.0))
