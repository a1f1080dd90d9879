"""Style networks after training: the handle, the one stylization plan, every backend, export and the CLI."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from texport.runtime.backends import open_backend
from texport.runtime.sampling import stylize_with
from texport.errors import TexportError
from texport.export.exporter import PARITY, export
from texport.models.handle import open_model
from texport.textures.images import load_image, resolve_texture, save_image
from texport.models.loading import load_stylenet
from texport.runtime.sampling import stylize
from texport.models.formats import read_metadata

from conftest import one_error_line

CPU_BACKENDS = ["onnxruntime"] + (["openvino"] if importlib.util.find_spec("openvino") else [])


@pytest.fixture(autouse=True)
def onnx_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TEXPORT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    """An odd-sized photograph stand-in (77 x 45: neither side on the 16-pixel grid)."""
    return load_image(resolve_texture("red-peppers"))[..., 10:55, 20:97]


@pytest.fixture(scope="module")
def style_onnx(stylenet_model, tmp_path_factory):
    return export(tmp_path_factory.mktemp("style-onnx") / "style.onnx", stylenet_model)[0]


def test_the_handle_knows_a_style_network_and_commands_that_cannot_run_it_say_so(stylenet_model, tmp_path):
    model = open_model(stylenet_model)
    assert model.kind == "stylenet" and model.is_stylenet and not model.is_propo
    # 2^(scales-1) grid; reflect padding needs 2 pixels at the coarsest scale; 5 scales x 3 noise channels
    assert (model.size_multiple, model.min_side, model.noise_channels) == (16, 32, 15)
    assert model.require_stylenet() is model
    with pytest.raises(TexportError, match="texport stylize"):
        model.require_generator()
    with pytest.raises(TexportError, match="not a style network: .*texport synth"):
        open_model("pebbles").require_stylenet()
    assert type(load_stylenet(model).network).__name__ == "StyleNetwork"
    from texport.runtime.bench import bench

    with pytest.raises(TexportError, match="texport stylize"):
        bench(model, ["torch"], [32], [1])
    from texport.scale.batch import load_jobs

    jobs = tmp_path / "jobs.csv"
    jobs.write_text(f"model,size,seed,output\n{stylenet_model},64,0,out.png\n")
    with pytest.raises(TexportError, match="texport stylize"):
        load_jobs(jobs)


def test_the_plan_pads_the_grid_runs_the_network_and_crops(stylenet_model, photo):
    net = load_stylenet(stylenet_model).network
    got = stylize(stylenet_model, photo, seed=2)
    assert got.shape == (1, 3, 45, 77)
    # by hand: reflect-pad to 80 x 48 at the bottom and right, the network on the grid, the top-left crop
    padded = F.pad(photo, (0, 3, 0, 3), mode="reflect")
    with torch.no_grad():
        want = net(padded, net.noise(48, 80, seed=2))[..., :45, :77].clamp(0, 1)
    assert torch.equal(got, want)
    # a requested size: the photograph resized to it (antialiased bilinear), then the same plan
    resized = stylize(stylenet_model, photo, "100x60", seed=2)
    assert resized.shape == (1, 3, 60, 100)
    fitted = F.interpolate(photo, size=(60, 100), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    assert torch.equal(resized, stylize(stylenet_model, fitted, seed=2))
    # a 16-pixel photograph on the 32-pixel smallest grid: too small to reflect that far, so repeated
    assert stylize(stylenet_model, photo[..., :16, :16]).shape == (1, 3, 16, 16)


def test_noise_scale_zero_is_deterministic_and_differs_from_one(stylenet_model, photo):
    quiet = [stylize(stylenet_model, photo, seed=s, noise_scale=0) for s in (0, 7)]
    assert torch.equal(quiet[0], quiet[1])
    loud = [stylize(stylenet_model, photo, seed=s, noise_scale=1) for s in (0, 7)]
    assert float((loud[0] - quiet[0]).abs().max()) > 0.05 and not torch.equal(loud[0], loud[1])
    for bad in (-0.5, float("nan")):
        with pytest.raises(TexportError, match="noise scale must be a number >= 0"):
            stylize(stylenet_model, photo, noise_scale=bad)


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_every_backend_stylizes_within_fp32_parity_of_torch(name, stylenet_model, style_onnx, photo):
    for size in (None, "100x60"):
        want = stylize(stylenet_model, photo, size, seed=3, noise_scale=1.5)
        for source in (stylenet_model, style_onnx.path):  # the model's own cached export, and an exported file
            got = stylize_with(open_backend(source, name), photo, size, seed=3, noise_scale=1.5)
            assert got.shape == want.shape
            assert float((got - want).abs().max()) <= PARITY["fp32"], (name, source, size)


def test_onnx_export_names_inputs_keeps_sizes_dynamic_and_matches_torch(stylenet_model, style_onnx):
    import onnxruntime as ort

    assert style_onnx.max_abs_diff <= PARITY["fp32"]
    graph = onnx.load(str(style_onnx.path))
    assert [i.name for i in graph.graph.input] == ["content", "noise"] and [o.name for o in graph.graph.output] == ["image"]
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.graph.input}
    assert dims == {"content": ["batch", 3, "height", "width"], "noise": ["batch", 15, "height", "width"]}
    meta = read_metadata(style_onnx.path)
    assert meta["texport.kind"] == "stylenet" and meta["texport.size_multiple"] == "16" and meta["texport.min_side"] == "32"
    assert "multiplies the noise by the noise scale" in meta["texport.noise_scale"] and meta["texport.style"] == "style"
    assert meta["texport.noise_shape"].startswith("[batch, 15, height, width]")
    handle = open_model(style_onnx.path)
    assert (handle.kind, handle.noise_channels, handle.min_side) == ("stylenet", 15, 32)
    net = load_stylenet(stylenet_model).network
    session = ort.InferenceSession(str(style_onnx.path), providers=["CPUExecutionProvider"])
    for batch, h, w in ((2, 48, 80), (1, 96, 32)):
        content = torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(h))
        noise = net.noise(h, w, seed=1, batch=batch) * 0.5
        with torch.no_grad():
            want = net(content, noise).numpy()
        got = session.run(None, {"noise": noise.numpy(), "content": content.numpy()})[0]
        assert got.shape == (batch, 3, h, w) and float(np.abs(got - want).max()) <= PARITY["fp32"]


def test_fp16_export_and_torch_fp16_stay_within_the_fp16_tolerance(stylenet_model, photo, tmp_path):
    half = export(tmp_path / "half.onnx", stylenet_model, fp16=True)[0]
    assert half.max_abs_diff <= PARITY["fp16"]
    assert onnx.TensorProto.FLOAT16 in {i.data_type for i in onnx.load(str(half.path)).graph.initializer}
    assert read_metadata(half.path)["texport.precision"].startswith("fp16")
    want = stylize(stylenet_model, photo, "128x96")
    runner = open_backend(stylenet_model, "torch", fp16=True)
    assert runner.precision == "fp16"
    assert float((stylize_with(runner, photo, "128x96") - want).abs().max()) <= PARITY["fp16"]


@pytest.mark.slow
def test_a_tensorrt_rtx_engine_takes_content_and_noise_on_one_profile(stylenet_model, tmp_path, cli_main):
    pytest.importorskip("tensorrt_rtx", reason="tensorrt-rtx is installed by the test command")
    from texport.models.formats import read_sidecar

    engine = tmp_path / "style.engine"
    export(engine, stylenet_model, check=False, batch=2, sizes=(None, 64, 128))
    side = read_sidecar(engine)
    assert [t["name"] for t in side["inputs"]] == ["content", "noise"] and side["model"]["texport.kind"] == "stylenet"
    content, noise = side["profile"]["content"], side["profile"]["noise"]
    for key, sides in (("min", [32, 32]), ("opt", [64, 64]), ("max", [128, 128])):
        assert content[key][1:] == [3, *sides] and noise[key][1:] == [15, *sides] and content[key][0] == noise[key][0]
    handle = open_model(engine)
    assert (handle.kind, handle.noise_channels, handle.min_side) == ("stylenet", 15, 32)
    if not torch.cuda.is_available():
        line = one_error_line(cli_main("stylize", engine, "pebbles", "-o", tmp_path / "x.png"))
        assert "needs an NVIDIA GPU" in line and not (tmp_path / "x.png").exists()


def test_cli_stylize_writes_a_png_of_the_requested_size(stylenet_model, photo, tmp_path, cli_main):
    content = save_image(photo, tmp_path / "photo.png")
    out = tmp_path / "out.png"
    result = cli_main("stylize", stylenet_model, content, "-o", out, "--seed", "3", "--noise-scale", "0.5")
    assert result.returncode == 0, result.stderr
    assert "77x45" in result.stdout and "torch" in result.stdout
    with Image.open(out) as img:
        assert img.size == (77, 45) and img.mode == "RGB"
    want = stylize(stylenet_model, load_image(content), seed=3, noise_scale=0.5)
    assert float((load_image(out) - want).abs().max()) <= 0.5 / 255 + 1e-6  # the same image, 8-bit
    result = cli_main("stylize", stylenet_model, content, "-o", out, "--size", "100x60", "--backend", "onnxruntime", "--16bit")
    assert result.returncode == 0 and "onnxruntime" in result.stdout, result.stderr
    with Image.open(out) as img:
        assert img.size == (100, 60)
    assert out.read_bytes()[24] == 16  # the IHDR's bit depth


@pytest.fixture
def inputs(tmp_path, photo):
    """A text file named .png, a truncated PNG, a 10 x 12 photograph, a 300 x 200 one, an earlier out.png."""
    (tmp_path / "text.png").write_text("not an image")
    whole = tmp_path / "whole.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(whole)
    (tmp_path / "cut.png").write_bytes(whole.read_bytes()[:500])
    save_image(photo[..., :12, :10], tmp_path / "tiny.png")
    save_image(F.interpolate(photo, size=(200, 300)), tmp_path / "big.png")
    (tmp_path / "out.png").write_bytes(b"previous result")
    return tmp_path


# stylize (or another command) arguments before -o OUT; {style} is the style network, {tmp} the test's folder
ERRORS = {
    "missing content": (["stylize", "{style}", "{tmp}/nope.png"], "no such file"),
    "content not an image": (["stylize", "{style}", "{tmp}/text.png"], "not an image"),
    "truncated content": (["stylize", "{style}", "{tmp}/cut.png"], "cannot read image"),
    "content too small": (["stylize", "{style}", "{tmp}/tiny.png", "--size", "64"], "10x12: each side must be at least 16"),
    "content too big": (["stylize", "{style}", "{tmp}/big.png", "--size-limit", "256"], "exceeds the maximum side of 256"),
    "size too big": (["stylize", "{style}", "{tmp}/whole.png", "--size", "300x200", "--size-limit", "256"], "exceeds the maximum"),
    "negative noise scale": (["stylize", "{style}", "{tmp}/whole.png", "--noise-scale", "-1"], "noise scale must be a number >= 0"),
    "texture network": (["stylize", "pebbles", "{tmp}/whole.png"], "not a style network"),
    "synth": (["synth", "{style}"], "texport stylize"),
    "tile": (["tile", "{style}", "--size", "64"], "texport stylize"),
    "bench": (["bench", "{style}", "--sizes", "32", "--runs", "1"], "texport stylize"),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_bad_requests_are_one_line_and_leave_no_output(name, inputs, stylenet_model, cli_main):
    args, expected = ERRORS[name]
    args = [a.replace("{style}", str(stylenet_model)).replace("{tmp}", str(inputs)) for a in args]
    out = [] if args[0] == "bench" else ["-o", inputs / "out.png"]
    line = one_error_line(cli_main(*args, *out))
    assert expected in line, line
    assert (inputs / "out.png").read_bytes() == b"previous result"
    assert not list(inputs.glob(".out.png.*"))  # no temporary file left behind


def test_models_lists_a_style_network_with_its_style_and_prints_its_manifest(stylenet_model, monkeypatch, cli_main):
    import texport.models.handle

    shipped = dict(texport.models.handle.shipped_models(), **{"tiny-style": stylenet_model})
    monkeypatch.setattr(texport.models.handle, "shipped_models", lambda: shipped)
    result = cli_main("models")
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("tiny-style"))
    assert row.split()[1:3] == ["stylenet", "style"]
    assert any(line.split()[1] == "texnet" for line in result.stdout.splitlines()[1:])
    result = cli_main("models", stylenet_model)
    manifest = json.loads(result.stdout)
    assert manifest["kind"] == "stylenet" and manifest["style"]["name"] == "style"
