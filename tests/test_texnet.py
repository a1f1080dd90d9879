"""Texture networks: the noise contract, the generator, any-size synthesis, checkpoints, training."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from conftest import one_error_line, run_cli

import texport.textures.noise as noise
from texport.models.checkpoints import load_checkpoint, read_manifest, save_checkpoint
from texport.errors import TexportError
from texport.textures.images import resolve_texture
from texport.models.loading import load_texnet, sample_texnet
from texport.textures.sizes import tileable_size
from texport.objectives.objective import build_objective
from texport.models.texnet import TextureNetwork
from texport.training.texnet import TexnetRun, learning_rate, recalibrate_batchnorm, train_texnet
from texport.training.runs import state_path


def _hash32_reference(v: np.ndarray) -> np.ndarray:
    """lowbias32 exactly as the contract writes it, in numpy uint32 (wrapping) arithmetic."""
    v = v.astype(np.uint32)
    with np.errstate(over="ignore"):
        v ^= v >> np.uint32(16)
        v *= np.uint32(0x7FEB352D)
        v ^= v >> np.uint32(15)
        v *= np.uint32(0x846CA68B)
        v ^= v >> np.uint32(16)
    return v


def test_noise_matches_the_written_contract_bit_for_bit():
    seed, c, h, w, x0, y0 = 7, 4, 5, 6, -3, 2**31 - 2  # negative and wrapping coordinates included
    field = noise.noise_field(seed, c, h, w, x0=x0, y0=y0).numpy()
    with np.errstate(over="ignore"):
        hs = _hash32_reference(np.array([seed]))
        hc = _hash32_reference(np.arange(c, dtype=np.uint32) + hs)
        ys = (np.arange(h, dtype=np.int64) + y0).astype(np.uint32)
        xs = (np.arange(w, dtype=np.int64) + x0).astype(np.uint32)
        hy = _hash32_reference(ys[None, :] + hc[:, None])
        hx = _hash32_reference(xs[None, None, :] + hy[:, :, None])
    expected = (hx >> np.uint32(8)).astype(np.float32) * np.float32(2.0**-24)
    assert np.array_equal(field[0], expected)
    assert noise.hash32(torch.tensor([0, 1, 2**32 - 1])).tolist() == _hash32_reference(np.array([0, 1, 2**32 - 1])).tolist()


def test_noise_windows_are_random_access_and_uniform():
    big = noise.noise_field(3, 2, 64, 80, batch=2)
    window = noise.noise_field(3, 2, 16, 24, x0=40, y0=32, batch=2)
    assert torch.equal(window, big[:, :, 32:48, 40:64])
    assert torch.equal(noise.noise_field(4, 2, 64, 80), big[1:2])  # batch item b uses seed + b
    assert not torch.equal(big[:, 0], big[:, 1])
    values = noise.noise_field(0, 1, 256, 256).flatten()
    assert values.min() >= 0 and values.max() < 1
    assert abs(values.mean().item() - 0.5) < 0.01 and abs(values.var().item() - 1 / 12) < 0.005


def test_noise_scales_have_the_subsampled_shapes():
    z = torch.zeros(2, 5 * 3, 64, 48)
    shapes = [tuple(s.shape) for s in noise.scales(z, 5)]
    assert shapes == [(2, 3, 64 // 2**i, 48 // 2**i) for i in range(5)]
    z = noise.noise_field(0, 6, 32, 32)
    fine, coarse = noise.scales(z, 2)
    assert torch.equal(coarse, z[:, 3:6, ::2, ::2]) and torch.equal(fine, z[:, :3])


def test_generator_size_and_parameter_count():
    net = TextureNetwork().eval()
    params = sum(p.numel() for p in net.parameters())
    assert 55_000 <= params <= 75_000, params  # Ulyanov et al. 2016 report "about 65K"
    out = net(net.noise(32, 48, batch=2))
    assert out.shape == (2, 3, 32, 48) and out.min() >= 0 and out.max() <= 1


def test_wrapped_noise_inference_equals_padding_every_convolution():
    """Eval mode wraps the noise once and convolves without padding: the same image as circular padding per layer."""
    torch.manual_seed(0)
    for scales in (5, 4):
        net = TextureNetwork(scales=scales).eval()
        for m in net.modules():  # statistics and affine parameters far from the identity
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2), m.weight.data.uniform_(0.5, 2)
        for h, w in ((16, 16), (32, 48), (96, 64)):
            z = net.noise(h, w, seed=h, batch=2)
            with torch.inference_mode():
                wrapped, padded = net(z), net._forward(z, unpadded=False)
            assert wrapped.shape == padded.shape == (2, 3, h, w)
            assert (wrapped - padded).abs().max() <= 1e-6, (scales, h, w)
            assert padded.std() > 0.01  # not a flat image that any wiring would reproduce
    half = TextureNetwork().eval().half_body()
    z = half.noise(64, 32)
    with torch.inference_mode():
        assert (half(z) - half._forward(z, unpadded=False)).abs().max() <= 1e-4  # fp16 rounding of two summation orders
    net.train()
    assert torch.equal(net(z[:, :12]), net._forward(z[:, :12], unpadded=False))  # training: batch statistics see the padding


def test_any_size_is_cropped_exactly_and_seeds_are_deterministic():
    torch.manual_seed(0)
    net = TextureNetwork().eval()
    for w, h in ((100, 37), (16, 16), (1000, 70)):
        assert sample_texnet(net, f"{w}x{h}").shape == (1, 3, h, w)
    a, b = sample_texnet(net, 40, seed=5), sample_texnet(net, 40, seed=5)
    assert torch.equal(a, b)
    assert not torch.equal(a, sample_texnet(net, 40, seed=6))
    many = sample_texnet(net, 32, seed=5, count=3)
    assert torch.equal(many[1:2], sample_texnet(net, 32, seed=6))  # image n uses seed + n
    # a crop is the top-left corner of the valid-size output
    assert torch.equal(sample_texnet(net, "40x20"), sample_texnet(net, "48x32")[..., :20, :40])


def test_tileable_sizes_and_exact_wraparound():
    assert tileable_size(64, 48, 16, snap=False) == (64, 48)
    assert tileable_size(100, 37, 16, snap=True) == (96, 32)
    with pytest.raises(TexportError, match="multiples of 16"):
        tileable_size(100, 37, 16, snap=False)
    torch.manual_seed(0)
    net = TextureNetwork().eval()
    z = net.noise(64, 64)
    out = net(z)
    # circular padding and frozen statistics: shifting the noise by a multiple of 16 shifts the texture
    shifted = net(torch.roll(z, shifts=(16, 32), dims=(2, 3)))
    assert torch.allclose(shifted, torch.roll(out, shifts=(16, 32), dims=(2, 3)), atol=1e-5)


def test_learning_rate_schedule_follows_the_paper_scaled():
    assert learning_rate(999, 2000, 0.1) == 0.1
    assert learning_rate(1000, 2000, 0.1) == pytest.approx(0.07)
    assert learning_rate(1199, 2000, 0.1) == pytest.approx(0.07)
    assert learning_rate(1200, 2000, 0.1) == pytest.approx(0.049)


def test_batchnorm_recalibration_averages_fresh_batch_statistics():
    torch.manual_seed(0)
    net = TextureNetwork()
    bn = net.noise_blocks[0][1]  # first normalization of the finest scale
    bn.running_mean.fill_(0.5)  # stale statistics, as a fast-moving training run leaves them
    recalibrate_batchnorm(net, 64, 2, seed=10, batches=3)
    assert not net.training and bn.momentum == 0.1 and int(bn.num_batches_tracked) == 3
    with torch.no_grad():
        means = [net.noise_blocks[0][0](net.noise(64, 64, seed=10 + 2 * i, batch=2)[:, :3]).mean((0, 2, 3))
                 for i in range(3)]
    assert torch.allclose(bn.running_mean, torch.stack(means).mean(0), atol=1e-5)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, hed_path):
    """A short real training run on the shipped pebbles copy (vgg16-hed, default objective); ~20 s, so
    every test that uses it is marked slow (marks on fixtures do not apply)."""
    path = tmp_path_factory.mktemp("texnet") / "pebbles.safetensors"
    report = train_texnet(TexnetRun.of(resolve_texture("pebbles"), path, iters=40, batch=2, size=64, lr=0.05, descriptor="vgg16-hed", device="cpu", checkpoint_every=0))
    return path, report


@pytest.fixture
def model_file():
    """A texture network file that needs no training: the shipped pebbles model."""
    from texport.models.handle import shipped_models

    return shipped_models()["pebbles"]


@pytest.mark.slow
def test_short_training_lowers_the_texture_loss(trained, hed, pebbles):
    path, report = trained
    assert report.iterations == 40 and not report.interrupted
    objective = build_objective(pebbles, descriptor=hed, tileable=True)
    torch.manual_seed(0)  # the trained network's initial weights
    fresh = TextureNetwork().eval()
    model = load_texnet(path)
    with torch.no_grad():
        before = objective(fresh(fresh.noise(64, 64, seed=1, batch=4)))["gram"].mean()
        after = objective(model.network(model.network.noise(64, 64, seed=1, batch=4)))["gram"].mean()
    assert after < before / 3, (float(before), float(after))


@pytest.mark.slow
def test_checkpoint_round_trip_and_manifest(trained, tmp_path):
    path, report = trained
    manifest = read_manifest(path)
    assert manifest["kind"] == "texnet" and manifest["descriptor"].startswith("vgg16-hed:")
    assert manifest["training"]["iterations"] == 40 and manifest["size_multiple"] == 16
    assert manifest["texture"]["name"] == "pebbles" and manifest["architecture"]["scales"] == 5
    a = load_texnet(path)
    copy = tmp_path / "copy.safetensors"
    save_checkpoint(copy, a.network.state_dict(), {k: v for k, v in manifest.items() if not k.startswith("format")})
    b = load_texnet(copy)
    assert torch.equal(sample_texnet(a, 48, seed=2), sample_texnet(b, 48, seed=2))


def test_damaged_and_foreign_model_files_are_refused(model_file, tmp_path):
    path = model_file
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(TexportError, match="damaged|not a texport model"):
        load_texnet(cut)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(TexportError, match="without a texport manifest"):
        load_texnet(foreign)
    state, manifest = load_checkpoint(path)
    manifest["architecture"]["width"] = 4
    wrong = tmp_path / "wrong.safetensors"
    save_checkpoint(wrong, state, {k: v for k, v in manifest.items() if not k.startswith("format")})
    with pytest.raises(TexportError, match="does not match its declared architecture"):
        load_texnet(wrong)
    manifest["kind"] = "propo"
    save_checkpoint(wrong, state, {k: v for k, v in manifest.items() if not k.startswith("format")})
    with pytest.raises(TexportError, match="expected 'texnet'"):
        load_texnet(wrong)


@pytest.mark.slow
def test_cli_synth_count_seed_and_models(trained, tmp_path):
    path, _ = trained
    out = tmp_path / "tex.png"
    res = run_cli("synth", str(path), "-o", str(out), "--size", "100x37", "--count", "2", "--seed", "3", "--device", "cpu")
    assert res.returncode == 0, res.stderr
    files = sorted(tmp_path.glob("tex-*.png"))
    assert [f.name for f in files] == ["tex-0000.png", "tex-0001.png"]
    with Image.open(files[0]) as img:
        assert img.size == (100, 37)
    again = tmp_path / "again.png"
    assert run_cli("synth", str(path), "-o", str(again), "--size", "100x37", "--seed", "3").returncode == 0
    assert again.read_bytes() == files[0].read_bytes()
    res = run_cli("models", str(path))
    assert res.returncode == 0 and '"kind": "texnet"' in res.stdout


SYNTH_REFUSALS = {  # synth arguments ("{model}": a texture network file, "{tmp}": the test's folder), message
    "truncated": (["{tmp}/cut.safetensors"], "not a texport model|damaged"),
    "not safetensors": (["{tmp}/text.safetensors"], "not a texport model"),
    "missing": (["{tmp}/none.safetensors"], "not found"),
    "unknown name": (["no-such-model"], "no such model"),
    "tileable crop": (["{model}", "--size", "100x37", "--tileable"], "multiples of 16"),
    "too small": (["{model}", "--size", "8"], "too small"),
}


@pytest.mark.parametrize("what", list(SYNTH_REFUSALS))
def test_cli_refuses_bad_models_and_sizes_in_one_line(what, model_file, tmp_path, cli_main):
    out = tmp_path / "out.png"
    out.write_bytes(b"keep me")
    (tmp_path / "cut.safetensors").write_bytes(model_file.read_bytes()[:100])
    (tmp_path / "text.safetensors").write_text("hello")
    args, pattern = SYNTH_REFUSALS[what]
    args = [a.replace("{model}", str(model_file)).replace("{tmp}", str(tmp_path)) for a in args]
    line = one_error_line(cli_main("synth", *args, "-o", out))
    assert re.search(pattern, line), line
    assert out.read_bytes() == b"keep me"


TRAIN_REFUSALS = {  # train texnet arguments ("{tmp}": the test's folder), message
    "corrupt exemplar": (["{tmp}/corrupt.png", "-o", "{tmp}/model.safetensors"], "corrupt.png"),
    "missing exemplar": (["{tmp}/none.png", "-o", "{tmp}/model.safetensors"], "no such file"),
    "size off the grid": (["pebbles", "-o", "{tmp}/model.safetensors", "--size", "100"], "multiple of 16"),
    "zero width": (["pebbles", "-o", "{tmp}/model.safetensors", "--width", "0"], "channels per noise scale must be positive"),
    "not safetensors": (["pebbles", "-o", "{tmp}/model.pt"], "written as a .safetensors file"),
    "no output folder": (["pebbles", "-o", "{tmp}/nope/m.safetensors"], "output folder does not exist"),
}


@pytest.mark.parametrize("what", list(TRAIN_REFUSALS))
def test_cli_train_refuses_bad_arguments_in_one_line(what, tmp_path, cli_main):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_text("not an image")
    args, pattern = TRAIN_REFUSALS[what]
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    line = one_error_line(cli_main("train", "texnet", *args, "--descriptor", "random", "--no-preview"))
    assert re.search(pattern, line), line
    assert [p.name for p in tmp_path.iterdir()] == [corrupt.name]


def test_interrupted_training_resumes_to_the_same_weights(tmp_path):
    """Ctrl-C leaves a resumable checkpoint; --resume finishes it bit for bit like an unbroken run."""
    kw = dict(iters=6, batch=2, size=32, descriptor="random", device="cpu", checkpoint_every=2)
    full, part = tmp_path / "full.safetensors", tmp_path / "part.safetensors"
    train_texnet(TexnetRun.of(resolve_texture("pebbles"), full, **kw))
    assert not state_path(full).exists()  # a finished model keeps no optimizer state

    def interrupt(step, loss):
        if step == 3:
            raise KeyboardInterrupt

    stopped = train_texnet(TexnetRun.of(resolve_texture("pebbles"), part, **kw), progress=interrupt)
    assert stopped.interrupted and stopped.iterations == 3 and state_path(part).is_file()
    assert read_manifest(part)["training"]["iterations"] == 3
    with pytest.raises(TexportError, match="cannot resume .* lr=0.05, not 0.01"):
        train_texnet(TexnetRun.of(resolve_texture("pebbles"), part, resume=True, **dict(kw, lr=0.01)))
    resumed = train_texnet(TexnetRun.of(resolve_texture("pebbles"), part, resume=True, **kw))
    assert resumed.iterations == 6 and not resumed.interrupted
    a, b = load_checkpoint(full)[0], load_checkpoint(part)[0]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(TexportError, match="nothing to resume"):
        train_texnet(TexnetRun.of(resolve_texture("pebbles"), part, resume=True, **kw))


@pytest.mark.slow
def test_cli_training_stopped_by_sigterm_saves_and_resumes(tmp_path):
    from conftest import run_until_checkpoint_then_sigterm

    out = tmp_path / "m.safetensors"
    args = ["train", "texnet", "pebbles", "-o", str(out), "--iters", "100000",
            "--batch", "1", "--size", "32", "--descriptor", "random", "--checkpoint-every", "5", "--no-preview"]
    code, stdout, stderr = run_until_checkpoint_then_sigterm(args, state_path(out))
    assert code == 143, stderr
    assert "interrupted after" in stdout and stderr.strip().splitlines()[-1] == "texport: terminated (SIGTERM)", (stdout, stderr)
    done = read_manifest(out)["training"]["iterations"]
    assert done >= 5 and state_path(out).is_file()
    res = run_cli("train", "texnet", "pebbles", "-o", str(out), "--iters", str(done + 2), "--batch", "1", "--size", "32",
                  "--descriptor", "random", "--resume", "--no-preview")
    assert res.returncode == 2 and "planned_iterations" in res.stderr  # the planned length is a setting too


def test_a_stopped_run_can_be_finished_where_it_is(tmp_path):
    kw = dict(iters=8, batch=2, size=32, descriptor="random", device="cpu", checkpoint_every=2)
    out = tmp_path / "m.safetensors"

    def interrupt(step, loss):
        if step == 4:
            raise KeyboardInterrupt

    train_texnet(TexnetRun.of(resolve_texture("pebbles"), out, **kw), progress=interrupt)
    with pytest.raises(TexportError, match="resume it to finish it"):
        train_texnet(TexnetRun.of(resolve_texture("pebbles"), out, finish=True, **kw))
    report = train_texnet(TexnetRun.of(resolve_texture("pebbles"), out, resume=True, finish=True, **kw))
    training = read_manifest(out)["training"]
    assert report.iterations == 4 and training["iterations"] == 4 and training["finished_early"] is True
    assert training["batchnorm"].startswith("recalibrated") and training["interrupted"] is False
    assert training["final_terms"] and not state_path(out).exists()
    assert load_texnet(out).network(torch.zeros(1, 15, 32, 32)).shape == (1, 3, 32, 32)


def test_fine_tuning_starts_from_a_trained_network_and_records_it(tmp_path):
    """--init copies a trained network's weights (no random start), records its sha256, and survives a resume."""
    import hashlib

    kw = dict(batch=2, size=32, descriptor="random", device="cpu", checkpoint_every=2)
    base = tmp_path / "base.safetensors"
    train_texnet(TexnetRun.of(resolve_texture("pebbles"), base, iters=2, **kw))
    tuned = tmp_path / "tuned.safetensors"

    def interrupt(step, loss):
        if step == 1:
            raise KeyboardInterrupt

    train_texnet(TexnetRun.of(resolve_texture("pebbles"), tuned, iters=3, init=base, seed=7, **kw), progress=interrupt)
    record = read_manifest(tuned)["training"]["initialized_from"]
    assert record["sha256"] == hashlib.sha256(base.read_bytes()).hexdigest() and record["iterations"] == 2
    train_texnet(TexnetRun.of(resolve_texture("pebbles"), tuned, iters=3, seed=7, resume=True, **kw))
    assert read_manifest(tuned)["training"]["initialized_from"] == record
    with pytest.raises(TexportError, match="a start model begins a new run"):
        train_texnet(TexnetRun.of(resolve_texture("pebbles"), tuned, iters=3, init=base, resume=True, **kw))
    with pytest.raises(TexportError, match="architecture .* differs"):
        train_texnet(TexnetRun.of(resolve_texture("pebbles"), tmp_path / "wide.safetensors", iters=1, init=base, width=4, **kw))

    # one Adam step at lr 1e-9 leaves the weights where --init put them: the start is the given network
    near = tmp_path / "near.safetensors"
    train_texnet(TexnetRun.of(resolve_texture("pebbles"), near, iters=1, lr=1e-9, init=tuned, **kw))
    chain = read_manifest(near)["training"]["initialized_from"]  # a fine-tune of a fine-tune keeps both starts
    assert chain["sha256"] == hashlib.sha256(tuned.read_bytes()).hexdigest() and chain["initialized_from"] == record
    a, b = load_checkpoint(tuned)[0], load_checkpoint(near)[0]
    weights = [k for k in a if "running" not in k and "num_batches" not in k]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in weights)
    near = tmp_path / "near-base.safetensors"
    train_texnet(TexnetRun.of(resolve_texture("pebbles"), near, iters=1, lr=1e-9, init=base, **kw))
    assert "initialized_from" not in read_manifest(near)["training"]["initialized_from"]
    a, b = load_checkpoint(base)[0], load_checkpoint(near)[0]
    weights = [k for k in a if "running" not in k and "num_batches" not in k]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in weights)
    fresh = tmp_path / "fresh.safetensors"
    train_texnet(TexnetRun.of(resolve_texture("pebbles"), fresh, iters=1, lr=1e-9, seed=7, **kw))
    assert not all(torch.allclose(a[k], load_checkpoint(fresh)[0][k], atol=1e-6) for k in weights)


@pytest.mark.slow
def test_model_files_keep_their_exemplar_and_refinement_improves_a_sample(trained, hed, tmp_path):
    """synth --refine: N Gatys evaluations from the network's sample against the exemplar its file keeps."""
    from texport.models.checkpoints import load_stored_exemplar
    from texport.textures.images import load_image
    from texport.optimization.refinement import refine

    path, _ = trained
    stored = load_stored_exemplar(path)
    assert torch.equal((stored * 255).round(), (load_image(resolve_texture("pebbles")) * 255).round())
    assert "exemplar" not in load_checkpoint(path)[0]  # weights only: the network loads as before
    model = load_texnet(path)
    sample = sample_texnet(model, 64, seed=2)
    refined = refine(model, sample, 8, device="cpu")
    objective = build_objective(stored, descriptor=hed)
    with torch.no_grad():
        assert objective(refined)["total"].item() < objective(sample)["total"].item()

    tiled = refine(model, sample_texnet(model, 64, seed=2, tileable=True), 8, tileable=True, device="cpu")
    twice = torch.cat([tiled, tiled], dim=-1)  # a wrapping image continues across its own edge
    seam = (twice[..., 63] - twice[..., 64]).abs().mean()
    inner = (tiled[..., 1:] - tiled[..., :-1]).abs().mean(dim=(0, 1, 2)).quantile(0.9)
    assert seam <= inner, (float(seam), float(inner))

    out = tmp_path / "r.png"
    res = run_cli("synth", str(path), "-o", str(out), "--size", "48", "--refine", "3")
    assert res.returncode == 0 and out.is_file(), res.stderr
    assert "refined by 3 evaluations" in res.stdout


REFINE_REFUSALS = {  # synth arguments ("{model}": a texture network file, "{tmp}": the test's folder), message
    "no exemplar": (["{tmp}/old.safetensors", "--refine", "2"], "keeps no exemplar"),
    "negative": (["{model}", "--refine", "-1"], "at least 0"),
    "no scales": (["{model}", "--refine", "2", "--refine-scales", "0"], "--refine-scales must be at least 1"),
    "texture without refine": (["{model}", "--texture", "pebbles"], "the target of --refine"),
}


@pytest.mark.parametrize("what", list(REFINE_REFUSALS))
def test_refine_refusals_are_one_line(what, model_file, tmp_path, cli_main):
    old = tmp_path / "old.safetensors"  # a file written before models kept their exemplar
    state, manifest = load_checkpoint(model_file)
    save_checkpoint(old, state, {k: v for k, v in manifest.items() if k not in ("format", "format_version", "texport_version")})
    args, pattern = REFINE_REFUSALS[what]
    args = [a.replace("{model}", str(model_file)).replace("{tmp}", str(tmp_path)) for a in args]
    line = one_error_line(cli_main("synth", *args, "-o", tmp_path / "x.png", "--size", "32"))
    assert pattern in line, line
    assert not (tmp_path / "x.png").exists()
