import pytest
import torch

import texport.objectives.losses as losses


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


def _pixel_descriptor():
    """A real Descriptor whose relu1_1 features are the pixels themselves: conv1_1's centre taps undo the
    ImageNet normalization (weight = std, bias = mean), so Gram matrices can be written down by hand."""
    from texport.objectives.descriptor import IMAGENET_MEAN, IMAGENET_STD, Descriptor, VGGWeights

    w = torch.zeros(3, 3, 3, 3)
    for c in range(3):
        w[c, c, 1, 1] = IMAGENET_STD[c]
    weights = VGGWeights("pixels", "vgg16", "imagenet", {"conv1_1": (w, torch.tensor(IMAGENET_MEAN))}, "test")
    return Descriptor(weights, ("relu1_1",))


def test_pyramid_gram_loss_has_its_hand_computed_value():
    """Snelgrove's loss: sum over octaves k of sum_l w_l ||G_l(x_k) - G_l(t_k)||^2, w_l = 1 / ||G_l(t_0)||^2.

    Exemplar t: a grey 0/1 checkerboard. Its Gram (3 equal channels, mean of v^2) is 0.5 everywhere; the
    5-tap binomial blur maps it to flat 0.5 ((1+6+1)/16 = (4+4)/16 = 1/2), whose Gram is 0.25. So
    t's octaves have Grams 0.5, 0.25, 0.25 (each a 3x3 matrix) and w = 1 / (9 * 0.5^2) = 1/2.25.
    Output x: flat grey c, the same at every octave, Gram c^2. With 3 octaves:
    loss = 9 w [(c^2 - 0.5)^2 + 2 (c^2 - 0.25)^2] = 4 [(c^2 - 0.5)^2 + 2 (c^2 - 0.25)^2].
    """
    from texport.objectives.objective import ObjectiveSpec, TextureObjective

    descriptor = _pixel_descriptor()
    checker = ((torch.arange(64).view(64, 1) + torch.arange(64).view(1, 64)) % 2).float().expand(1, 3, 64, 64)
    assert torch.allclose(descriptor(checker)["relu1_1"], checker, atol=1e-6)  # the features are the pixels
    assert [float(level.std()) for level in losses.gaussian_pyramid(checker, 3)[1:]] == [0.0, 0.0]
    grey = torch.tensor([0.0, 0.5, 1.0]).view(3, 1, 1, 1).expand(3, 3, 64, 64)  # a batch: c = 0, 0.5, 1

    def pyramid_loss(octaves, layer_weights="normalized", image=grey):
        spec = ObjectiveSpec(loss="gram", layers=("relu1_1",), layer_weights=layer_weights, octaves=octaves,
                             spectrum_weight=0.0)
        terms = TextureObjective(descriptor, checker, spec)(image)
        assert set(terms) == {"gram", "total"} and torch.equal(terms["gram"], terms["total"])
        return terms["gram"].tolist()

    assert pyramid_loss(3) == pytest.approx([1.5, 0.25, 5.5], rel=1e-5)  # c=0: 4 (0.25 + 2 x 0.0625) ...
    assert pyramid_loss(1) == pytest.approx([1.0, 0.25, 1.0], rel=1e-5)  # octave 0 only: 4 (c^2 - 0.5)^2
    assert pyramid_loss(3, "uniform") == pytest.approx([3.375, 0.5625, 12.375], rel=1e-5)  # w = 1: 9 [...]
    assert pyramid_loss(3, image=checker) == pytest.approx([0.0], abs=1e-9)  # the exemplar itself: every octave matches


def test_sort_last_equals_torch_sort_with_its_gradient():
    """The NumPy sort on the CPU gives torch.sort's values, and the gradient of a loss on them."""
    from texport.objectives.losses import sort_last

    torch.manual_seed(0)
    x = torch.randn(2, 5, 300, requires_grad=True)
    weights = torch.randn(2, 5, 300)
    ours = sort_last(x)
    assert torch.equal(ours, x.sort(dim=-1).values)
    (grad_ours,) = torch.autograd.grad((ours * weights).sum(), x)
    (grad_torch,) = torch.autograd.grad((x.sort(dim=-1).values * weights).sum(), x)
    assert torch.equal(grad_ours, grad_torch)
    assert torch.equal(sort_last(x.detach()), x.detach().sort(dim=-1).values)


def test_color_octaves_tell_a_collapsed_palette_from_the_exemplar():
    """Regions of two colours against the same pixels shuffled: the pixel colour distribution is the
    same, so one colour octave cannot tell them apart; the shuffled image's regions all share one
    mean colour (a collapsed palette), which the coarser octaves of the colour term see."""
    from texport.objectives.objective import ObjectiveSpec, TextureObjective

    descriptor = _pixel_descriptor()
    blocks = ((torch.arange(64).view(64, 1) // 16 + torch.arange(64).view(1, 64) // 16) % 2).float()
    red, blue = torch.tensor([0.8, 0.2, 0.2]).view(3, 1, 1), torch.tensor([0.2, 0.3, 0.9]).view(3, 1, 1)
    exemplar = (blocks * red + (1 - blocks) * blue)[None]
    shuffled = exemplar.flatten(2)[..., torch.randperm(64 * 64, generator=torch.Generator().manual_seed(0))].view(1, 3, 64, 64)
    pair = torch.cat([exemplar, shuffled])

    def color_terms(octaves):
        spec = ObjectiveSpec(loss="gram+color", layers=("relu1_1",), color_octaves=octaves, spectrum_weight=0.0)
        return TextureObjective(descriptor, exemplar, spec)(pair)["color"].tolist()

    one = color_terms(1)
    assert one == pytest.approx([0.0, 0.0], abs=1e-9)  # the same pixels, in any arrangement
    three = color_terms(3)
    assert three[0] < 1e-4 and three[1] > 100 * max(three[0], 1e-6)  # the shuffle's regions are all one mean colour


def test_color_octaves_are_recorded_and_checked():
    from texport.errors import TexportError
    from texport.objectives.objective import ObjectiveSpec, TextureObjective

    assert "color_octaves" not in ObjectiveSpec().as_dict()  # older manifests compare equal on --resume
    assert ObjectiveSpec(color_octaves=4).as_dict()["color_octaves"] == 4
    descriptor = _pixel_descriptor()
    exemplar = torch.rand(1, 3, 64, 64)
    with pytest.raises(TexportError, match="colour octaves must be >= 1"):
        TextureObjective(descriptor, exemplar, ObjectiveSpec(layers=("relu1_1",), color_octaves=0))
    with pytest.raises(TexportError, match="at least 128 px"):
        TextureObjective(descriptor, exemplar, ObjectiveSpec(layers=("relu1_1",), color_octaves=6))
    objective = TextureObjective(descriptor, exemplar, ObjectiveSpec(layers=("relu1_1",), color_octaves=5))
    with pytest.raises(TexportError, match="at least 64 px"):
        objective(torch.rand(1, 3, 48, 48))
