"""Style networks (Ulyanov et al. 2016 sec. 3.3): the model, eq. 6's objective, training and Gatys style transfer."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from conftest import one_error_line
from texport.models.checkpoints import load_checkpoint, read_manifest
from texport.errors import TexportError
from texport.optimization.gatys import transfer_style
from texport.textures.images import load_image, resolve_texture, save_image
from texport.objectives.objective import build_style_objective
from texport.training.style import StyleRun, content_batch, train_style
from texport.models.stylenet import StyleNetwork, content_scales
from texport.models.texnet import TextureNetwork
from texport.training.runs import state_path


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Two shipped textures standing in for a folder of photographs."""
    root = tmp_path_factory.mktemp("photos")
    for name in ("pebbles", "red-peppers"):
        shutil.copy(resolve_texture(name), root / f"{name}.png")
    return root


@pytest.fixture(scope="module")
def style(tmp_path_factory) -> Path:
    return save_image(load_image(resolve_texture("red-peppers"))[..., :96, :96], tmp_path_factory.mktemp("style") / "style.png")


def test_style_network_reuses_the_texture_network_body():
    """The same blocks as a texture network, each noise scale widened by the content's 3 channels."""
    net, texnet = StyleNetwork(), TextureNetwork()
    assert isinstance(net, TextureNetwork)
    assert net.noise_blocks[0][0].in_channels == texnet.noise_blocks[0][0].in_channels + 3
    extra = sum(p.numel() for p in net.parameters()) - sum(p.numel() for p in texnet.parameters())
    assert extra == 5 * 3 * 8 * 9  # one 3x3 convolution per scale reads 3 more input channels
    assert all(m.padding_mode == "reflect" for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    levels = content_scales(torch.rand(1, 3, 64, 48), 5)
    assert [tuple(c.shape[-2:]) for c in levels] == [(64, 48), (32, 24), (16, 12), (8, 6), (4, 3)]


def test_noise_scale_is_an_input_time_knob():
    torch.manual_seed(0)
    net = StyleNetwork().eval()
    content = torch.rand(1, 3, 48, 64)
    with torch.no_grad():
        a, b = (net(content, net.noise(48, 64, seed=s)) for s in (1, 2))
        c, d = (net(content, net.noise(48, 64, seed=s), noise_scale=0.0) for s in (1, 2))
        e = net(content, net.noise(48, 64, seed=1) * 3.0)
        f = net(content, net.noise(48, 64, seed=1), noise_scale=3.0)
    assert a.shape == (1, 3, 48, 64) and 0 <= float(a.min()) and float(a.max()) <= 1
    assert not torch.equal(a, b) and torch.equal(c, d)  # without noise the output is a function of the content alone
    assert torch.allclose(e, f)


def test_style_objective_is_texture_plus_alpha_content():
    style = load_image(resolve_texture("red-peppers"))
    photo = load_image(resolve_texture("pebbles"))[..., :64, :64]
    one = build_style_objective(style, alpha=1.0, descriptor="vgg16-hed").bind(photo)
    two = build_style_objective(style, alpha=2.0, descriptor="vgg16-hed").bind(photo)
    x = torch.rand(1, 3, 64, 64)
    t1, t2 = one(x), two(x)
    assert float(t1["content"]) > 0 and torch.allclose(t1["content"], t2["content"])
    texture = t1["total"] - one.content_scale * t1["content"]
    assert torch.allclose(t2["total"], texture + 2 * one.content_scale * t1["content"], rtol=1e-5)
    assert float(one(photo)["content"]) == 0.0  # the photograph itself has no content loss
    with pytest.raises(TexportError, match="alpha must be >= 0"):
        build_style_objective(style, alpha=-1.0, descriptor="vgg16-hed")
    with pytest.raises(TexportError, match="differ in size"):
        one(torch.rand(1, 3, 96, 64))


def test_content_crops_are_a_function_of_seed_step_and_item(photos):
    from texport.textures.datasets import open_dataset

    data = open_dataset(photos, split="all", resize=64, min_side=32)
    a, b = content_batch(data, 5, 3, 32, seed=0), content_batch(data, 5, 3, 32, seed=0)
    assert a.shape == (3, 3, 32, 32) and torch.equal(a, b)
    assert not torch.equal(a, content_batch(data, 6, 3, 32, seed=0))


def test_a_short_training_run_lowers_the_objective(photos, style, tmp_path):
    out = tmp_path / "s.safetensors"
    report = train_style(StyleRun.of(style, photos, out, iters=30, batch=2, size=32, resize=64, device="cpu", checkpoint_every=0))
    assert report.iterations == 30 and not state_path(out).exists()
    manifest = read_manifest(out)
    assert manifest["kind"] == "stylenet" and manifest["objective"]["alpha"] == 1.0
    assert manifest["objective"]["content_layer"] == "relu4_2" and manifest["content"]["images"] == 2
    objective = build_style_objective(load_image(style), descriptor="vgg16-hed")
    from texport.textures.datasets import open_dataset

    batch = content_batch(open_dataset(photos, split="all", resize=64, min_side=32), 999, 4, 32, seed=3)
    torch.manual_seed(0)  # the run's initial weights
    fresh = StyleNetwork().eval()
    trained = StyleNetwork()
    trained.load_state_dict({k: v for k, v in load_checkpoint(out)[0].items() if k != "exemplar"})
    trained.eval()
    target = objective.content_target(batch)
    with torch.no_grad():
        z = fresh.noise(32, 32, seed=1, batch=4)
        before = objective(fresh(batch, z), target)["total"].mean()
        after = objective(trained(batch, z), target)["total"].mean()
    assert after < before / 2, (float(before), float(after))


def test_interrupted_style_training_resumes_to_the_same_weights(photos, style, tmp_path):
    kw = dict(iters=6, batch=2, size=32, resize=64, descriptor="random", device="cpu", checkpoint_every=2)
    full, part = tmp_path / "full.safetensors", tmp_path / "part.safetensors"
    train_style(StyleRun.of(style, photos, full, **kw))

    def interrupt(step, loss):
        if step == 3:
            raise KeyboardInterrupt

    stopped = train_style(StyleRun.of(style, photos, part, **kw), progress=interrupt)
    assert stopped.interrupted and stopped.iterations == 3 and state_path(part).is_file()
    with pytest.raises(TexportError, match="cannot resume .* its objective differs"):
        train_style(StyleRun.of(style, photos, part, resume=True, **dict(kw, alpha=2.0)))
    resumed = train_style(StyleRun.of(style, photos, part, resume=True, **kw))
    assert resumed.iterations == 6 and not resumed.interrupted
    a, b = load_checkpoint(full)[0], load_checkpoint(part)[0]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("what", ["one photo", "no photos", "missing folder", "small crops", "bad size"])
def test_bad_training_inputs_are_one_line_errors(what, photos, style, tmp_path, cli_main):
    folder = tmp_path / "content"
    folder.mkdir()
    args = ["train", "style", str(style), "--content", str(folder), "-o", str(tmp_path / "m.safetensors"),
            "--iters", "2", "--size", "32", "--resize", "64", "--descriptor", "random"]
    expected = {"one photo": "at least 2", "no photos": "no images", "missing folder": "dataset not found",
                "small crops": "smaller than the 128 px crops", "bad size": "multiple of 16"}[what]
    if what == "one photo":
        shutil.copy(resolve_texture("pebbles"), folder / "a.png")
    elif what == "no photos":
        (folder / "notes.txt").write_text("not an image")
    elif what == "missing folder":
        args[4] = str(tmp_path / "nowhere")
    elif what == "small crops":
        args[args.index("--size") + 1] = "128"
    else:
        args[args.index("--size") + 1] = "40"
    result = cli_main(*args)
    assert result.returncode == 2 and expected in one_error_line(result)
    assert not (tmp_path / "m.safetensors").exists()


def test_gatys_style_transfer_starts_from_the_photograph_and_lowers_the_objective():
    style = load_image(resolve_texture("red-peppers"))
    photo = load_image(resolve_texture("pebbles"))[..., :64, :80]
    objective = build_style_objective(style, descriptor="vgg16-hed")
    start = objective.bind(photo)(photo)["total"]
    result = transfer_style(style, photo, iters=15, objective=objective, device="cpu")
    assert result.image.shape == (1, 3, 64, 80) and result.history[0] == pytest.approx(float(start), rel=1e-4)
    assert result.loss < float(start) / 2 and result.terms["content"] > 0


def test_cli_gatys_content_writes_the_photographs_size(tmp_path, cli_main):
    photo = save_image(load_image(resolve_texture("pebbles"))[..., :45, :77], tmp_path / "photo.png")
    out = tmp_path / "o.png"
    result = cli_main("gatys", "red-peppers", "--content", str(photo), "-o", str(out), "--iters", "3", "--descriptor", "random")
    assert result.returncode == 0, result.stderr
    assert load_image(out).shape == (1, 3, 45, 77) and "evaluations" in result.stdout
    missing = cli_main("gatys", "red-peppers", "--content", str(tmp_path / "none.png"), "-o", str(tmp_path / "x.png"))
    assert missing.returncode == 2 and "none.png" in one_error_line(missing) and not (tmp_path / "x.png").exists()
    clash = cli_main("gatys", "red-peppers", "--content", str(photo), "-o", str(tmp_path / "x.png"), "--tileable")
    assert clash.returncode == 2 and "drop --tileable" in one_error_line(clash)


def test_cli_train_style_writes_the_model_and_its_preview(photos, style, tmp_path, cli_main):
    out = tmp_path / "m.safetensors"
    result = cli_main("train", "style", str(style), "--content", str(photos), "-o", str(out), "--iters", "2",
                      "--batch", "2", "--size", "32", "--resize", "64", "--descriptor", "random")
    assert result.returncode == 0, result.stderr
    assert "2 iterations" in result.stdout and read_manifest(out)["training"]["finished"]
    preview = load_image(out.with_suffix(".png"))
    assert preview.shape[-2] == 256 and preview.shape[-1] > 3 * 256  # photograph | style | result
    again = cli_main("train", "style", str(style), "--content", str(photos), "-o", str(out), "--iters", "2",
                     "--batch", "2", "--size", "32", "--resize", "64", "--descriptor", "random", "--resume")
    assert again.returncode == 2 and "nothing to resume" in one_error_line(again)


@pytest.mark.slow
def test_cli_style_training_stopped_by_sigterm_saves_and_resumes(photos, style, tmp_path):
    from conftest import run_cli, run_until_checkpoint_then_sigterm

    out = tmp_path / "m.safetensors"
    common = ["train", "style", str(style), "--content", str(photos), "-o", str(out), "--batch", "1", "--size", "32",
              "--resize", "64", "--descriptor", "random", "--checkpoint-every", "5", "--no-preview"]
    code, stdout, stderr = run_until_checkpoint_then_sigterm([*common, "--iters", "100000"], state_path(out))
    assert code == 143, stderr
    assert "interrupted after" in stdout and stderr.strip().splitlines()[-1] == "texport: terminated (SIGTERM)"
    done = read_manifest(out)["training"]["iterations"]
    assert done >= 5 and state_path(out).is_file()
    resumed = run_cli(*common, "--iters", "100000", "--resume", "--finish")
    assert resumed.returncode == 0, resumed.stderr
    assert read_manifest(out)["training"]["iterations"] == done and not state_path(out).exists()
