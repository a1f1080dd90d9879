import pytest
import torch

from texport import losses


def test_gram_matches_direct_formula():
    torch.manual_seed(0)
    f = torch.randn(2, 4, 5, 3)
    g = losses.gram(f)
    n = 5 * 3
    for b in range(2):
        for i in range(4):
            for j in range(4):
                direct = sum(float(f[b, i].flatten()[k] * f[b, j].flatten()[k]) for k in range(n)) / n
                assert g[b, i, j].item() == pytest.approx(direct, rel=1e-5, abs=1e-6)


def test_gram_is_fp32_under_autocast():
    f = torch.full((1, 8, 64, 64), 300.0)  # 300^2 * 4096 overflows fp16's 65504
    with torch.autocast("cpu", dtype=torch.bfloat16):
        g = losses.gram(f.to(torch.bfloat16))
    assert g.dtype == torch.float32
    assert torch.isfinite(g).all()
    assert g[0, 0, 0].item() == pytest.approx(90000.0, rel=1e-2)


def test_texture_loss_of_image_against_itself_is_zero(hed, pebbles):
    feats = hed(pebbles)
    target = losses.grams(feats)
    assert losses.texture_loss(feats, target).item() == pytest.approx(0.0, abs=1e-6)
    other = hed(torch.rand_like(pebbles))
    assert losses.texture_loss(other, target).item() > 1.0


def test_analytic_gradient_equals_autograd(hed, pebbles):
    torch.manual_seed(1)
    target = losses.grams(hed(pebbles))
    feats = {k: v.detach().requires_grad_(True) for k, v in hed(torch.rand(2, 3, 48, 40)).items()}
    weights = {"relu1_1": 0.5, "pool1": 2.0, "pool2": 1.0, "pool3": 3.0, "pool4": 10.0}
    losses.texture_loss(feats, target, weights).sum().backward()
    analytic = losses.texture_gradients({k: v.detach() for k, v in feats.items()}, target, weights)
    for name, f in feats.items():
        scale = f.grad.abs().max()
        assert scale > 0
        torch.testing.assert_close(analytic[name], f.grad, rtol=1e-4, atol=1e-5 * float(scale))


def test_color_distance_is_exact_on_known_cases():
    torch.manual_seed(2)
    img = torch.rand(1, 3, 32, 32)
    assert losses.color_distance(img, img).item() == 0.0
    shuffled = img.flatten(2)[..., torch.randperm(32 * 32)].reshape(1, 3, 32, 32)
    assert losses.color_distance(shuffled, img).item() == pytest.approx(0.0, abs=1e-7)
    # A flat grey v against a flat grey u: every projection differs by (v - u) * sum(direction).
    u = torch.full((1, 3, 16, 16), 100 / 255)
    v = torch.full((1, 3, 24, 20), 140 / 255)  # different size on purpose
    dirs = losses.random_directions(64, 3, losses.COLOR_SEED)
    expected = (40 / 255) * dirs.sum(1).abs().mean().item()
    assert losses.color_distance(v, u).item() == pytest.approx(expected, rel=1e-5)


def test_color_distance_is_taken_on_8bit_values():
    img = torch.randint(0, 255, (1, 3, 16, 16)).float() / 255  # exactly representable in 8 bits
    nudged = img + 0.3 / 255  # less than half a grey level: the saved file is the same
    assert losses.color_distance(nudged, img).item() == 0.0
    assert losses.color_distance(img + 1 / 255, img).item() > 0.0


def test_sliced_wasserstein_loss_zero_on_self_and_any_size():
    torch.manual_seed(3)
    a = torch.rand(1, 3, 20, 20)
    dirs = losses.random_directions(16, 3, 0)
    target = losses.sorted_projections(a, dirs)
    assert losses.sliced_wasserstein_loss(a, target, dirs).item() == pytest.approx(0.0, abs=1e-12)
    b = torch.rand(2, 3, 37, 11)
    out = losses.sliced_wasserstein_loss(b, target, dirs)
    assert out.shape == (2,) and (out > 0).all()


def test_resample_quantiles_keeps_equal_sizes_and_interpolates():
    s = torch.arange(8.0).view(1, 1, 8)
    assert torch.equal(losses.resample_quantiles(s, 8), s)
    half = losses.resample_quantiles(s, 4)  # levels 1/8, 3/8, 5/8, 7/8 -> positions 0.5, 2.5, 4.5, 6.5
    assert half.flatten().tolist() == [0.5, 2.5, 4.5, 6.5]


def test_gaussian_pyramid_halves_each_octave():
    x = torch.rand(1, 3, 64, 48)
    levels = losses.gaussian_pyramid(x, 4)
    assert [tuple(level.shape[-2:]) for level in levels] == [(64, 48), (32, 24), (16, 12), (8, 6)]
    flat = torch.full((1, 3, 32, 32), 0.25)
    assert torch.allclose(losses.blur_downsample(flat), torch.full((1, 3, 16, 16), 0.25))


def test_content_loss_and_diversity():
    torch.manual_seed(4)
    f = torch.randn(3, 8, 5, 5)
    assert losses.content_loss(f, f).abs().max().item() == 0.0
    same = f[:1].expand(3, -1, -1, -1)
    assert losses.diversity(same).item() == 0.0
    pair = torch.stack([torch.zeros(8, 5, 5), torch.ones(8, 5, 5)])
    assert losses.diversity(pair).item() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        losses.diversity(f[:1])
