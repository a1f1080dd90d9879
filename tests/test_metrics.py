"""Quality measures the objectives cannot see (texport.metrics)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import texport
import texport.objectives.metrics as metrics
from texport.errors import TexportError


def test_no_objective_imports_the_metrics():
    """A judge one optimizes stops judging: only benchmarks and tests may import texport.metrics."""
    for path in Path(texport.__file__).parent.rglob("*.py"):
        if path.name in ("metrics.py", "__init__.py"):  # a package's __init__ only re-exports (test_structure)
            continue
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names]
        modules = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert "metrics" not in names and not any(m.endswith("metrics") for m in modules), path.name


def test_spectral_distance_is_zero_for_the_same_image_and_sees_hatching(pebbles):
    exemplar = pebbles  # the package's 128 px copy
    assert float(metrics.spectral_distance(exemplar, exemplar)[0]) == 0.0
    # energy at frequencies where the exemplar has little (pixel noise of 0.05, which a Gram loss barely sees)
    hatched = (exemplar + 0.05 * torch.randn(exemplar.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    floor = metrics.spectral_floor(exemplar)
    shifted = torch.roll(exemplar, shifts=(5, 9), dims=(-2, -1))  # the same spectrum, other patches
    assert float(metrics.spectral_distance(hatched, exemplar)[0]) > 3 * float(metrics.spectral_distance(shifted, exemplar)[0])
    assert floor > 0
    assert metrics.spectral_target(floor) == pytest.approx(1.5 * floor + 0.1)
    # a batch gives one value per image, and too small an image is one clear error
    assert metrics.spectral_distance(torch.cat([exemplar, hatched]), exemplar).shape == (2,)
    with pytest.raises(TexportError, match="at least 64x64"):
        metrics.spectral_distance(exemplar[..., :32, :32], exemplar)


def test_power_spectrum_matches_its_definition(pebbles):
    image = pebbles[..., :96, :64]  # patches at rows 0 and 32 (flush with the edge), one column
    y = metrics.luminance(texport.textures.images.quantize(image))[0]
    hann = torch.hann_window(64, periodic=False, dtype=torch.float64)
    window = hann[:, None] * hann[None, :]
    expected = sum(torch.fft.fft2((p - p.mean()) * window).abs().pow(2) for p in (y[:64], y[32:96])) / 2 + 1e-6
    assert torch.allclose(metrics.power_spectrum(image)[0], expected)


def test_judge_prefers_the_exemplars_own_texture_to_noise(pebbles, peppers):
    judge = metrics.Judge()
    left, right = pebbles[..., :64], pebbles[..., 64:]
    noise = torch.rand(1, 3, 128, 64, generator=torch.Generator().manual_seed(0))
    same = float(judge.distance(right, left)[0])
    other = float(judge.distance(peppers[..., :64], left)[0])
    random = float(judge.distance(noise, left)[0])
    assert float(judge.distance(left, left)[0]) == 0.0
    assert same < other and same < random, (same, other, random)
    with pytest.raises(TexportError, match="at least 32x32"):
        judge.distance(pebbles[..., :16, :16], left)


def test_gatys_cache_key_follows_the_numbers_not_the_source(monkeypatch):
    """benchmarks/gatys.py keys cached runs on a measured fingerprint: same code -> same key; a
    change that moves the objective's numbers -> a new key (no stale record can be hit)."""
    import functools
    import importlib.util
    import sys

    from texport.objectives.descriptor import build_descriptor

    bench = Path(__file__).resolve().parent.parent / "benchmarks"
    monkeypatch.syspath_prepend(str(bench))
    spec = importlib.util.spec_from_file_location("gatys_benchmark_under_test", bench / "gatys.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gatys_benchmark_under_test", module)
    spec.loader.exec_module(module)
    desc = build_descriptor("random", ("relu1_1", "pool1", "pool2", "pool3", "pool4"))
    first = module.reference_fingerprint(desc)
    module._fingerprints.clear()
    assert module.reference_fingerprint(desc) == first  # deterministic
    module._fingerprints.clear()
    monkeypatch.setattr(module, "build_objective", functools.partial(module.build_objective, color_weight=11.0))
    assert module.reference_fingerprint(desc) != first


def test_cielab_matches_reference_colours():
    """sRGB white, black, mid grey and pure red against the CIE values (D65)."""
    rgb = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.5, 0.5, 0.5], [1.0, 0.0, 0.0]]).T.reshape(1, 3, 1, 4)
    lab = metrics.cielab(rgb)[0, :, 0].T
    expected = torch.tensor([[100.0, 0.0, 0.0], [0.0, 0.0, 0.0], [53.39, 0.0, 0.0], [53.24, 80.09, 67.20]], dtype=torch.float64)
    assert torch.allclose(lab, expected, atol=0.05), lab


def test_palette_spread_sees_a_collapsed_palette(pebbles):
    """The exemplar against itself scores 1; the same texture with every patch pulled to its mean colour
    (the pixel variance kept, the regional colours gone) scores far below 1; and a 31 px image is refused."""
    assert metrics.palette_spread(pebbles, pebbles) == pytest.approx((1.0, 1.0))
    grey = pebbles.mean(dim=1, keepdim=True)
    collapsed = (grey - grey.mean() + pebbles.mean(dim=(2, 3), keepdim=True)).clamp(0, 1)  # one mean colour, same luminance detail
    a, b = metrics.palette_spread(collapsed, pebbles)
    assert a < 0.2 and b < 0.2, (a, b)
    pooled = metrics.palette_spread(torch.cat([pebbles, collapsed]), pebbles)
    assert a < pooled[0] < 1.0 and b < pooled[1] < 1.0
    with pytest.raises(TexportError, match="palette spread"):
        metrics.palette_spread(pebbles[..., :31, :31], pebbles)


def test_grid_ratio_sees_a_fine_grid_along_its_axis_only(pebbles):
    ratios = metrics.grid_ratios(pebbles, pebbles)
    assert all(float(v[0]) == pytest.approx(1.0) for v in ratios.values())
    # vertical lines every 4 px: a grid along x, at the 4 px period, none along y
    x = torch.arange(pebbles.shape[-1])
    lines = (pebbles + 0.08 * (x % 4 == 0).float()).clamp(0, 1)
    ratios = metrics.grid_ratios(lines, pebbles)
    assert float(ratios["x4"][0]) > 2 and float(ratios["y4"][0]) < 1.2
    assert float(metrics.grid_ratio(lines, pebbles)[0]) == max(float(v[0]) for v in ratios.values())
    shifted = torch.roll(pebbles, shifts=(5, 9), dims=(-2, -1))  # the same texture: no grid
    assert float(metrics.grid_ratio(shifted, pebbles)[0]) < 1.3
