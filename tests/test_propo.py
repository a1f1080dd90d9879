"""ProPO: in-graph gradients, shapes, encode-once equality, training, checkpoints, datasets, CLI."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import texport.objectives.losses as losses
from texport.models.checkpoints import read_manifest, save_checkpoint
from texport.textures.datasets import held_out, open_dataset
from texport.errors import TexportError
from texport.models.loading import load_propo, sample_propo
from texport.textures.noise import noise_field
from texport.models.propo import LEVELS, ProPO, match_moments, with_ones
from texport.training.propo import IncrementalSampler, PropoRun, learning_rate, state_path, train_propo
from texport.training.propo_stages import evaluate

from conftest import one_error_line, run_cli

SIZE = 32  # training crops in these tests: pool4 is 2x2, enough to exercise every stage


@pytest.fixture(scope="module")
def model(hed) -> ProPO:
    torch.manual_seed(0)
    return ProPO(hed).eval()


def test_in_graph_gradient_equals_autograd_for_every_level_and_colour(hed, pebbles):
    x = pebbles[..., :64, :64]
    target = pebbles[..., 64:128, 64:160]
    feats = {k: v.detach().double() for k, v in hed(x).items()}
    target_grams = {k: v.double() for k, v in losses.grams(hed(target), LEVELS).items()}
    for level in LEVELS:
        f = feats[level].clone().requires_grad_(True)
        loss = (losses.gram(f).double() - target_grams[level]).pow(2).sum()
        (auto,) = torch.autograd.grad(loss, f)
        analytic = losses.gram_gradient(f.detach().float(), target_grams[level].float()).double()
        assert torch.allclose(analytic, auto, rtol=1e-3, atol=1e-6 * auto.abs().max().item()), level
    pixels = with_ones(x).double().requires_grad_(True)
    target_rgb = losses.gram(with_ones(target)).double()
    (auto,) = torch.autograd.grad((losses.gram(pixels).double() - target_rgb).pow(2).sum(), pixels)
    analytic = losses.gram_gradient(with_ones(x), losses.gram(with_ones(target))).double()
    assert torch.allclose(analytic, auto, rtol=1e-3, atol=1e-7)


def test_colour_gradient_is_eq6_for_the_pixels(peppers):
    from texport.models.propo import color_gradient, color_moments, color_statistics

    image = torch.rand(2, 3, 24, 40, generator=torch.Generator().manual_seed(1))
    stats = color_statistics(peppers).expand(2, -1, -1)
    # the centred statistics say what the [r, g, b, 1] Gram matrix says
    gram = losses.gram(with_ones(peppers)).expand(2, -1, -1)
    mean = stats[:, :3, 3:]
    assert torch.allclose(stats[:, :3, :3] + mean @ mean.transpose(1, 2), gram[:, :3, :3], atol=1e-6)
    assert torch.allclose(stats[:, :, 3], gram[:, :, 3], atol=1e-6)
    want = losses.gram_gradient(with_ones(image), gram)[:, :3]
    assert torch.allclose(color_gradient(image, stats), want, rtol=1e-4, atol=1e-9 * float(want.abs().max()) + 1e-12)
    m, s = color_moments(stats)
    assert torch.allclose(m[0, :, 0, 0], peppers.mean(dim=(0, 2, 3)), atol=1e-6)
    assert torch.allclose(s[0, :, 0, 0], peppers.std(dim=(0, 2, 3), unbiased=False), rtol=1e-5)


def test_colour_gradient_keeps_its_bits_after_colour_matching(peppers):
    """After match_moments the image's colour Gram nearly equals the target's; the difference is summed
    directly (texport.models.propo.color_gradient), not formed from two large sums (9e-6 relative off fp64 here)."""
    from texport.models.propo import color_gradient, color_moments, color_statistics, match_moments

    stats = color_statistics(peppers)
    x = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(0)) * 0.3 + 0.35
    x = match_moments(x + 0.2 * x.roll(1, 1), *color_moments(stats))  # correlated channels, matched moments
    x64, s64 = x.double().reshape(1, 3, -1), stats.double()
    mean_t = s64[:, :3, 3:]
    gram_diff = x64 @ x64.transpose(1, 2) / x64.shape[2] - s64[:, :3, :3] - mean_t @ mean_t.transpose(1, 2)
    want = (gram_diff @ x64 + (x64.mean(2, keepdim=True) - mean_t)) * (4.0 / x64.shape[2])
    got = color_gradient(x, stats).double().reshape(want.shape)
    assert float((got - want).abs().max() / want.abs().max()) <= 1e-6


def test_stage_gradients_are_scale_normalized(model, pebbles):
    x = noise_field(0, 3, 64, 64)
    statistics = model.encode(pebbles)
    feats = model.features(x, LEVELS[-1])
    grads = model.stage_gradients(x, feats, statistics, 5)
    raw = [losses.gram_gradient(feats[lv], statistics[lv]).pow(2).mean().sqrt() for lv in LEVELS]
    assert max(raw) / min(raw) > 100  # the problem being solved: scales differ by orders of magnitude
    for g in grads:
        assert torch.allclose(g.pow(2).mean(dim=(1, 2, 3)), torch.ones(1), rtol=1e-4)
    assert [g.shape[1] for g in grads] == [64 + 3, 64, 128, 256, 512]


def test_stage_images_take_the_targets_colour_moments(model, peppers):
    target = peppers[..., :96, :112]
    images = model.synthesize(noise_field(4, 3, 64, 64), model.encode(target), stages=True)
    for x in images[:-1]:  # the last one has the target's whole histogram instead (test_color_transfer)
        assert torch.allclose(x.mean(dim=(2, 3)), target.mean(dim=(2, 3)), atol=1e-5)
        assert torch.allclose(x.std(dim=(2, 3), unbiased=False), target.std(dim=(2, 3), unbiased=False), rtol=2e-3)
    x = torch.rand(2, 3, 8, 8) * 3 - 1
    y = match_moments(x, torch.tensor([0.2, 0.5, 0.7]).view(1, 3, 1, 1), torch.tensor([0.1, 0.2, 0.05]).view(1, 3, 1, 1))
    assert torch.allclose(y.mean(dim=(2, 3)), torch.tensor([[0.2, 0.5, 0.7]] * 2), atol=1e-6)
    # the relative layout of the pixels is kept: an increasing affine map per channel
    assert torch.equal(x[0, 0].flatten().argsort(), y[0, 0].flatten().argsort())
    assert float(losses.color_distance(images[-1], target)) < float(losses.color_distance(images[-2], target))


@pytest.mark.parametrize("size", [(17, 33), (100, 47), (16, 16)])
def test_odd_sizes_are_padded_to_16_and_cropped(model, pebbles, size, tmp_path):
    from texport.models.loading import LoadedPropo

    loaded = LoadedPropo(model, {"name": "test"}, tmp_path / "m.safetensors")
    w, h = size
    stages = sample_propo(loaded, pebbles[..., :80, :120], (w, h), seed=3, count=2, stages=True)
    assert len(stages) == 6  # noise, x^1..x^5
    assert all(s.shape == (2, 3, h, w) for s in stages)
    assert all(float(s.min()) >= 0 and float(s.max()) <= 1 for s in stages)
    with pytest.raises(ValueError, match="multiples of 16"):
        model.synthesize(noise_field(0, 3, 40, 48), model.encode(pebbles))
    with pytest.raises(ValueError, match="at least 32"):
        model.synthesize(noise_field(0, 3, 16, 48), model.encode(pebbles))


def test_stage_images_have_the_noise_shape_and_differ(model, pebbles):
    z = noise_field(5, 3, 48, 80)
    images = model.synthesize(z, model.encode(pebbles), stages=True)
    assert [tuple(i.shape) for i in images] == [(1, 3, 48, 80)] * 5
    assert all(not torch.equal(a, b) for a, b in zip([z, *images], images))


def test_encode_once_then_synthesize_equals_forward(model, peppers):
    texture = peppers[..., :96, :112]
    z1, z2 = noise_field(1, 3, 64, 64), noise_field(2, 3, 64, 64)
    with torch.no_grad():
        statistics = model.encode(texture)
        a1, a2 = model.synthesize(z1, statistics), model.synthesize(z2, statistics)
        b1, b2 = model(z1, texture), model(z2, texture)
    assert torch.equal(a1, b1) and torch.equal(a2, b2)
    assert not torch.equal(a1, a2)


def test_one_descriptor_pass_per_stage_image(model, pebbles, monkeypatch):
    calls = []
    original = model.descriptor.forward

    def counting(x, padding=None, until=None):
        calls.append(until)
        return original(x, padding=padding, until=until)

    monkeypatch.setattr(model.descriptor, "forward", counting)
    with torch.no_grad():
        statistics = model.encode(pebbles)
        calls.clear()
        model.run(noise_field(0, 3, 32, 32), statistics, final_features=True)
    # x^0 .. x^5: six passes, each only as deep as the next stage (or the loss) needs
    assert calls == ["relu1_1", "pool1", "pool2", "pool3", "pool4", "pool4"]


def test_learning_rate_and_incremental_sampler():
    assert learning_rate(0, 100, 1.0) == 1.0 and learning_rate(49, 100, 1.0) == 1.0
    assert learning_rate(75, 100, 1.0) == pytest.approx(0.5) and learning_rate(100, 100, 1.0) == 0.0
    gen = torch.Generator().manual_seed(0)
    inc = IncrementalSampler(100, 1000, seed=0)
    assert inc.pool_size(0) == 8 and inc.pool_size(250) == 54 and inc.pool_size(500) == 100 and inc.pool_size(999) == 100
    early = {inc(3, gen) for _ in range(200)}
    assert early <= set(inc.order[:8]) and inc.order[7] in early
    flat = IncrementalSampler(100, 1000, seed=0, incremental=False)
    assert len({flat(3, gen) for _ in range(400)}) > 50


def test_dataset_folder_and_zip_agree_and_filter_non_textures(dataset, tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "d" / "junk").mkdir(parents=True)
    Image.fromarray(np.full((80, 80, 3), 120, np.uint8)).save(tmp_path / "d" / "junk" / "flat.png")
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "d" / "junk" / "small.png")
    rgba = rng.integers(0, 255, (80, 80, 4), dtype=np.uint8)
    rgba[..., 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "d" / "junk" / "cutout.png")
    (tmp_path / "d" / "junk" / "broken.jpg").write_bytes(b"not a jpeg")
    for p in dataset.rglob("*.png"):
        (tmp_path / "d" / p.parent.name).mkdir(exist_ok=True)
        shutil.copy(p, tmp_path / "d" / p.parent.name / p.name)
    archive = tmp_path / "d.pk3"
    with zipfile.ZipFile(archive, "w") as z:
        for p in sorted((tmp_path / "d").rglob("*.*")):
            z.write(p, p.relative_to(tmp_path / "d").as_posix())
    a = open_dataset(tmp_path / "d", "all", resize=128)
    b = open_dataset(archive, "all", resize=128)
    assert a.names == b.names == ["pebbles/pebbles.png", "red-peppers/red-peppers.png"]
    assert vars(a.skipped) == {"small": 1, "flat": 1, "cutout": 1, "unreadable": 1, "screened": 0}
    assert min(a.arrays[0].shape[:2]) == 128
    assert all(np.array_equal(x, y) for x, y in zip(a.arrays, b.arrays))
    crop = a.crop(0, 64, torch.Generator().manual_seed(0))
    assert crop.shape == (1, 3, 64, 64) and 0 <= float(crop.min()) and float(crop.max()) <= 1


def test_held_out_split_is_by_folder_and_deterministic():
    names = [f"textures/family{i}/variant{j}.jpg" for i in range(200) for j in range(3)]
    flags = {n: held_out(n, 0.1) for n in names}
    for i in range(200):
        assert len({flags[f"textures/family{i}/variant{j}.jpg"] for j in range(3)}) == 1
    share = sum(flags.values()) / len(names)
    assert 0.04 < share < 0.18
    assert flags == {n: held_out(n, 0.1) for n in names}


def test_dataset_errors_are_one_line(tmp_path):
    with pytest.raises(TexportError, match="dataset not found"):
        open_dataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TexportError, match="no images"):
        open_dataset(tmp_path / "empty")
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(TexportError, match="cannot read archive|zip archive"):
        open_dataset(tmp_path / "bad.zip")


@pytest.fixture(scope="module")
def trained(dataset, hed, tmp_path_factory):
    """A short real training run (2 real textures, 32 px crops); returns (path, losses before, after)."""
    out = tmp_path_factory.mktemp("propo") / "tiny.safetensors"
    data = open_dataset(dataset, "all", resize=96)
    targets = [data.image(i)[..., :SIZE, :SIZE] for i in range(len(data))]
    torch.manual_seed(0)
    before = evaluate(ProPO(hed), targets, SIZE)
    train_propo(PropoRun.of(dataset, out, iters=160, size=SIZE, resize=96, lr=5e-4, held_out_fraction=0.0, descriptor="vgg16-hed", checkpoint_every=80))
    after = evaluate(load_propo(out).network, targets, SIZE)
    return out, before, after


@pytest.mark.slow
def test_short_training_on_real_textures_lowers_every_stage_loss(trained):
    """Every stage's objective (relative Gram + m x colour + m x spectrum) falls, and each of its terms, except
    that the first stage may give up a little Gram loss to the spectrum term (weight 60)."""
    from texport.training.propo_stages import DEFAULT_COLOR_WEIGHT, DEFAULT_SPECTRUM_WEIGHT

    _, before, after = trained

    def stage(losses, m):
        return losses.gram[m] + (m + 1) * (DEFAULT_COLOR_WEIGHT * losses.color[m] + DEFAULT_SPECTRUM_WEIGHT * losses.spectrum[m])

    for m in range(5):
        assert stage(after, m) < stage(before, m), (m, before.as_dict(), after.as_dict())
        assert after.color[m] < before.color[m], (m, before.color, after.color)
        assert after.spectrum[m] < before.spectrum[m], (m, before.spectrum, after.spectrum)
        if m > 0:
            assert after.gram[m] < before.gram[m], (m, before.gram, after.gram)
    assert after.total < 0.8 * before.total


def _manifest(model: ProPO) -> dict:
    """What load_propo needs of a ProPO manifest (train_propo writes these and its training record)."""
    return {"kind": "propo", "name": "saved", "architecture": model.config(), "descriptor": model.descriptor.identity,
            "training": {"iterations": 0, "interrupted": False}}


@pytest.fixture(scope="module")
def saved(hed, tmp_path_factory) -> tuple[Path, ProPO]:
    """A ProPO model with weights no fresh model has (seeded, then perturbed), saved with save_checkpoint."""
    torch.manual_seed(1)
    model = ProPO(hed, color_match=False).eval()
    with torch.no_grad():
        for p in model.pseudo_optimizers.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("propo-saved") / "saved.safetensors"
    save_checkpoint(path, model.trainable_state(), _manifest(model))
    return path, model


def test_checkpoint_round_trip(saved, pebbles, tmp_path):
    """save_checkpoint then load_propo gives back the same weights, manifest and images, and saving what
    was loaded writes the same weights again."""
    path, model = saved
    loaded = load_propo(path)
    manifest = read_manifest(path)
    assert loaded.manifest == manifest
    assert {k: v for k, v in manifest.items() if k in _manifest(model)} == _manifest(model)
    assert manifest["format"] == "texport-model" and loaded.network.config() == model.config()
    assert loaded.network.config()["color_match"] is False  # the architecture comes from the manifest, not defaults
    want, got = model.trainable_state(), loaded.network.trainable_state()
    assert sorted(got) == sorted(want) and all(torch.equal(got[k], want[k]) for k in want)
    z = noise_field(0, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.network(z, pebbles), model(z, pebbles))
    with safe_keys(path) as keys:
        assert not any(k.startswith("descriptor.") for k in keys)  # the descriptor is referenced, not copied
    again = tmp_path / "again.safetensors"
    save_checkpoint(again, loaded.network.trainable_state(), {k: v for k, v in manifest.items() if not k.startswith("format")})
    from texport.models.checkpoints import load_checkpoint

    state, again_manifest = load_checkpoint(again)
    assert all(torch.equal(state[k], want[k]) for k in want) and again_manifest == manifest


@pytest.mark.slow
def test_trained_model_manifest(trained):
    path, _, _ = trained
    manifest = read_manifest(path)
    assert manifest["kind"] == "propo" and manifest["architecture"]["stages"] == 5
    assert manifest["descriptor"].startswith("vgg16-hed:")
    assert manifest["dataset"]["images"] == 2 and manifest["training"]["iterations"] == 160
    assert len(manifest["training"]["final_stage_losses"]["gram"]) == 5
    assert load_propo(path).network.config() == manifest["architecture"]


def safe_keys(path):
    from safetensors import safe_open

    class _Keys:
        def __enter__(self):
            self.f = safe_open(str(path), framework="pt")
            return list(self.f.keys())

        def __exit__(self, *exc):
            return False

    return _Keys()


def test_bad_model_files_are_refused(saved, tmp_path):
    path, _ = saved
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(TexportError, match="damaged|not a texport model"):
        load_propo(truncated)
    from texport.models.handle import shipped_models

    texnet = shipped_models()["pebbles"]
    with pytest.raises(TexportError, match="expected 'propo'"):
        load_propo(texnet)
    from texport.models.checkpoints import load_checkpoint

    state, manifest = load_checkpoint(path)
    wrong_desc = tmp_path / "desc.safetensors"
    save_checkpoint(wrong_desc, state, dict(manifest, descriptor="vgg16-hed:" + "0" * 64))
    with pytest.raises(TexportError, match="descriptor mismatch"):
        load_propo(wrong_desc)
    wrong_arch = tmp_path / "arch.safetensors"
    save_checkpoint(wrong_arch, state, dict(manifest, architecture=dict(manifest["architecture"], widths=[8, 8, 8, 8, 8])))
    with pytest.raises(TexportError, match="does not match its declared architecture"):
        load_propo(wrong_arch)
    pickle = tmp_path / "evil.safetensors"
    pickle.write_bytes(b"\x80\x04\x95" + b"\x00" * 64)
    with pytest.raises(TexportError):
        load_propo(pickle)


def test_resume_continues_exactly_where_an_unbroken_run_would_be(dataset, tmp_path):
    common = dict(size=SIZE, resize=96, lr=2e-3, held_out_fraction=0.0, descriptor="vgg16-hed", checkpoint_every=0)
    train_propo(PropoRun.of(dataset, tmp_path / "whole.safetensors", iters=6, **common))
    part = tmp_path / "part.safetensors"

    def stop_at_3(step, loss):
        if step == 3:
            raise KeyboardInterrupt

    report = train_propo(PropoRun.of(dataset, part, iters=6, **common), progress=stop_at_3)
    assert report.interrupted and report.iterations == 3 and state_path(part).is_file()
    train_propo(PropoRun.of(dataset, part, iters=6, resume=True, **common))
    from texport.models.checkpoints import load_checkpoint

    whole, _ = load_checkpoint(tmp_path / "whole.safetensors")
    resumed, manifest = load_checkpoint(part)
    assert manifest["training"]["iterations"] == 6
    for key in whole:
        assert torch.allclose(whole[key], resumed[key], atol=1e-6), key
    with pytest.raises(TexportError, match="cannot resume .* size"):
        train_propo(PropoRun.of(dataset, part, iters=6, resume=True, **dict(common, size=48)))
    with pytest.raises(TexportError, match="nothing to resume"):
        train_propo(PropoRun.of(dataset, tmp_path / "none.safetensors", iters=6, resume=True, **common))

    # a stopped run can be shipped as it is: finished at its iterations, its record kept, not resumable
    train_propo(PropoRun.of(dataset, part, iters=6, **common), progress=stop_at_3)
    stopped, _ = load_checkpoint(part)
    with pytest.raises(TexportError, match="resume it to finish it"):
        train_propo(PropoRun.of(dataset, part, iters=6, finish=True, **common))
    report = train_propo(PropoRun.of(dataset, part, iters=6, resume=True, finish=True, **common))
    finished, manifest = load_checkpoint(part)
    assert report.iterations == 3 and not report.interrupted and not state_path(part).exists()
    assert manifest["training"]["interrupted"] is False and manifest["training"]["finished_early"] is True
    assert manifest["training"]["iterations"] == 3 and manifest["training"]["iterations_planned"] == 6
    for key in stopped:
        assert torch.equal(stopped[key], finished[key]), key


@pytest.mark.slow
def test_cli_train_and_synth_propo(trained, dataset, tmp_path):
    path, _, _ = trained
    out = tmp_path / "p.png"
    r = run_cli("synth", str(path), "--texture", "red-peppers", "-o", str(out), "--size", "50x40", "--count", "2", "--stages")
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "p-0001.png").size == (50, 40)
    assert (tmp_path / "p-stages.png").is_file()
    model = tmp_path / "m.safetensors"
    r = run_cli("train", "propo", str(dataset), "-o", str(model), "--iters", "2", "--size", "32", "--resize", "64",
                "--held-out", "0", "--descriptor", "vgg16-hed")
    assert r.returncode == 0, r.stderr
    assert model.is_file() and model.with_suffix(".png").is_file() and "wrote" in r.stdout


@pytest.mark.parametrize("case", ["synth without texture", "no dataset", "size off the grid", "negative stationarity",
                                  "unknown upsampling"])
def test_cli_propo_refusals_are_one_line(case, saved, dataset, tmp_path, cli_main):
    model = tmp_path / "m.safetensors"
    args, expected = {
        "synth without texture": (["synth", saved[0], "-o", tmp_path / "p.png"], "--texture"),
        "no dataset": (["train", "propo", tmp_path / "nowhere", "-o", model], f"dataset not found: {tmp_path / 'nowhere'}"),
        "size off the grid": (["train", "propo", dataset, "-o", model, "--size", "40"], "multiple of 16"),
        "negative stationarity": (["train", "propo", dataset, "-o", model, "--stationarity", "-1"], "stationarity limit must be >= 0"),
        "unknown upsampling": (["train", "propo", dataset, "-o", model, "--upsample", "cubic"], "unknown upsampling 'cubic'"),
    }[case]
    line = one_error_line(cli_main(*args))
    assert expected in line, line
    assert list(tmp_path.iterdir()) == []


def test_shipped_model_synthesizes_unseen_textures_in_their_colours(pebbles, peppers):
    from texport.models.handle import shipped_models

    model = load_propo(shipped_models()["propo"])
    assert model.manifest["dataset"]["source"] == "pak4-textures.pk3"
    for target in (pebbles, peppers):  # neither is in the training data
        image = sample_propo(model, target, 64, seed=0)
        assert image.shape == (1, 3, 64, 64)
        assert float(losses.color_distance(image, target)) < 0.08  # measured 0.04-0.05; 0.2 without colour matching


def test_cli_refines_a_propo_sample_towards_the_given_texture(tmp_path):
    """synth propo --refine N: the ProPO sample, then N Gatys evaluations against --texture."""
    from conftest import run_cli

    out = tmp_path / "r.png"
    res = run_cli("synth", "propo", "--texture", "pebbles", "-o", str(out), "--size", "48", "--refine", "2")
    assert res.returncode == 0 and out.is_file(), res.stderr
    assert "refined by 2 evaluations" in res.stdout
    sw = tmp_path / "sw.png"
    res = run_cli("synth", "propo", "--texture", "pebbles", "-o", str(sw), "--size", "48", "--refine", "2", "--loss", "sw+color")
    assert res.returncode == 0 and sw.is_file(), res.stderr
    assert not np.array_equal(np.asarray(Image.open(sw)), np.asarray(Image.open(out)))  # another objective, another image
    scales = tmp_path / "scales.png"
    res = run_cli("synth", "propo", "--texture", "pebbles", "-o", str(scales), "--size", "64", "--refine", "2", "--refine-scales", "2")
    assert res.returncode == 0 and Image.open(scales).size == (64, 64), res.stderr
    bad = tmp_path / "bad.png"
    res = run_cli("synth", "propo", "--texture", "pebbles", "-o", str(bad), "--size", "48", "--refine", "2", "--loss", "l2")
    assert res.returncode == 2 and "unknown loss 'l2'" in res.stderr and not bad.exists()


def test_sliced_wasserstein_stage_loss(model, pebbles, peppers):
    """The sw stage loss is 0 for the target's own features, positive for another texture, and trains the
    stages (a gradient reaches every pseudo optimizer); gram and sw runs record their loss."""
    from texport.training.propo_stages import SlicedTargets, stage_objective

    target = pebbles[..., :64, :64]
    sliced = SlicedTargets(model, target)
    own = model.descriptor(target, padding="reflect", until=LEVELS[-1])
    other = model.descriptor(peppers[..., :64, :64], padding="reflect", until=LEVELS[-1])
    assert float(sliced.loss(own, LEVELS)[0]) == 0.0
    assert float(sliced.loss(other, LEVELS)[0]) > 0.1
    noise = noise_field(0, 3, 64, 64)
    sw_total, sw_terms = stage_objective(model, noise, target, 1.0, loss="sw+color")
    gram_total, gram_terms = stage_objective(model, noise, target, 1.0, loss="gram+color")
    assert sw_terms.gram != gram_terms.gram and sw_terms.color == pytest.approx(gram_terms.color)
    _, no_color = stage_objective(model, noise, target, 1.0, loss="sw")
    assert no_color.total < sw_terms.total  # the colour term is left out
    model.zero_grad()
    sw_total.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.pseudo_optimizers[-1].parameters()
               if p.requires_grad)
    with pytest.raises(TexportError, match="unknown loss"):
        stage_objective(model, noise, target, 1.0, loss="wasserstein")


def test_a_run_resumes_only_with_its_own_loss(dataset, tmp_path):
    common = dict(size=SIZE, resize=96, lr=2e-3, held_out_fraction=0.0, descriptor="vgg16-hed", checkpoint_every=0, iters=3)
    part = tmp_path / "sw.safetensors"

    def stop_at_1(step, loss):
        if step == 1:
            raise KeyboardInterrupt

    train_propo(PropoRun.of(dataset, part, loss="sw+color", **common), progress=stop_at_1)
    assert read_manifest(part)["training"]["loss"] == "sw+color"
    with pytest.raises(TexportError, match="cannot resume .* loss='sw\\+color', not 'gram\\+color'"):
        train_propo(PropoRun.of(dataset, part, resume=True, **common))
    report = train_propo(PropoRun.of(dataset, part, resume=True, loss="sw+color", **common))
    assert report.iterations == 3 and not report.interrupted


def test_stationarity_screen_drops_what_is_not_texture(dataset, tmp_path):
    """An image whose halves differ (texture beside a smooth gradient; one half in shadow) is left out of
    training and named; two real textures are kept; stationarity 0 keeps everything."""
    from texport.textures.images import load_image, save_image
    from texport.training.propo import PropoData, open_training_set

    root = tmp_path / "set"
    shutil.copytree(dataset, root)
    pebbles = load_image(root / "pebbles" / "pebbles.png")
    door = pebbles.clone()
    door[..., 64:] = torch.linspace(0.2, 0.8, pebbles.shape[-2]).view(1, 1, -1, 1)
    lit = pebbles.clone()
    lit[..., 64:] *= 0.6
    (root / "decals").mkdir()
    save_image(door, root / "decals" / "door.png")
    save_image(lit, root / "decals" / "lit.png")
    screened = open_training_set(PropoData(root, resize=256, held_out_fraction=0.0))
    assert sorted(screened.dropped) == ["decals/door.png", "decals/lit.png"]
    assert screened.skipped.screened == 2 and len(screened) == 2
    everything = open_training_set(PropoData(root, resize=256, held_out_fraction=0.0, stationarity=0.0))
    assert len(everything) == 4 and everything.dropped == []


def test_half_distances_measure_both_directions(pebbles):
    """The measure is symmetric in the two splits: a top/bottom difference counts as a left/right one."""
    import texport.objectives.metrics as metrics

    spectral, colour = metrics.half_distances(pebbles)
    assert spectral < 0.8 and colour < 0.1
    shaded = pebbles.clone()
    shaded[..., 64:, :] *= 0.6  # the bottom half in shadow
    assert metrics.half_distances(shaded)[1] > 0.1
    assert metrics.half_distances(shaded.transpose(-1, -2))[1] == pytest.approx(metrics.half_distances(shaded)[1])


@pytest.mark.parametrize("mode", ["nearest", "bilinear", "shuffle"])
def test_every_upsampling_wraps_and_is_recorded(hed, mode, tmp_path):
    from texport.models.propo import Upsample

    torch.manual_seed(0)
    up = Upsample(8, 4, mode).eval()
    h = torch.rand(1, 8, 6, 10)
    with torch.no_grad():
        out, shifted = up(h), up(torch.roll(h, shifts=(1, 3), dims=(-2, -1)))
    assert out.shape == (1, 4, 12, 20)
    assert torch.allclose(shifted, torch.roll(out, shifts=(2, 6), dims=(-2, -1)), atol=1e-5)  # one coarse cell = two fine
    model = ProPO(hed, upsample=mode)
    assert model.config().get("upsample", "nearest") == mode
    path = tmp_path / "up.safetensors"
    save_checkpoint(path, model.trainable_state(), _manifest(model))
    assert load_propo(path).network.upsample == mode
    with pytest.raises(ValueError, match="unknown upsampling"):
        Upsample(8, 4, "cubic")


def test_propo_samples_refine_over_as_many_scales_as_the_size_allows():
    from texport.models.loading import load_texnet
    from texport.optimization.refinement import refinement_scales

    propo, texnet = load_propo("propo"), load_texnet("pebbles")
    target = torch.rand(1, 3, 256, 256)
    assert [refinement_scales(propo, side, side, target) for side in (256, 128, 64, 48)] == [3, 3, 2, 1]
    assert refinement_scales(propo, 256, 256, target[..., :100, :]) == 2  # the target's coarsest side counts too
    assert refinement_scales(texnet, 256, 256, target) == 1
