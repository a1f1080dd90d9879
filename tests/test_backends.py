"""Runtime backends behind one interface agree with each other within the parity tolerances."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from texport.runtime.backends import available, open_backend
from texport.runtime.sampling import sample_with
from texport.errors import TexportError
from texport.export.exporter import PARITY, export
from texport.textures.images import load_image
from texport.textures.noise import noise_field

from conftest import one_error_line, run_cli

CPU_BACKENDS = ["onnxruntime"] + (["openvino"] if importlib.util.find_spec("openvino") else [])


@pytest.fixture(autouse=True)
def onnx_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TEXPORT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.mark.slow
@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_backends_match_torch_for_both_model_kinds(name, pebbles):
    for model, channels in (("pebbles", 15), ("propo", 3)):
        runner = open_backend(model, name)
        assert runner.kind == ("propo" if model == "propo" else "texnet") and runner.precision in ("fp32", "f32")
        for h, w in ((64, 80), (256, 256)):  # ProPO's error grows with size (benchmarks/parity.py)
            z = noise_field(4, channels, h, w)
            reference = open_backend(model, "torch")(z, pebbles)
            got = runner(z, pebbles)
            assert got.shape == (1, 3, h, w)
            assert float((got - reference).abs().max()) <= PARITY["fp32"], (runner.describe(), h, w)


@pytest.mark.slow
def test_fp16_backends_report_their_precision_and_meet_its_tolerance(pebbles):
    for model, channels in (("pebbles", 15), ("propo", 3)):
        z = noise_field(4, channels, 64, 64)
        reference = open_backend(model, "torch")(z, pebbles)
        for name in ["torch"] + CPU_BACKENDS:
            half = open_backend(model, name, fp16=True)
            assert half.precision == "fp16"
            assert float((half(z, pebbles) - reference).abs().max()) <= PARITY["fp16"], (model, half.describe())


@pytest.mark.skipif("openvino" not in CPU_BACKENDS, reason="OpenVINO is not installed")
def test_openvino_bf16_is_an_option_recorded_as_such():
    import openvino as ov

    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        with pytest.raises(TexportError, match="no bf16"):
            open_backend("pebbles", "openvino:bf16")
        return
    runner = open_backend("pebbles", "openvino:bf16")
    assert runner.precision == "bf16" and runner.compute == "bf16" and "bf16" in runner.describe()
    assert "outside the fp16 parity tolerance" in runner.caveat and open_backend("pebbles", "openvino").caveat is None
    with pytest.raises(TexportError, match="not both"):
        open_backend("pebbles", "openvino:bf16", fp16=True)


def test_backends_synthesize_the_same_images_as_the_torch_path(pebbles):
    from texport.models.loading import load_texnet, sample_texnet

    want = sample_texnet(load_texnet("pebbles"), "100x60", seed=3, count=2)
    for name in CPU_BACKENDS:
        got = sample_with(open_backend("pebbles", name), "100x60", seed=3, count=2)
        assert got.shape == want.shape and float((got - want).abs().max()) <= PARITY["fp32"]


@pytest.fixture(scope="module")
def bark_onnx(tmp_path_factory):
    return export(tmp_path_factory.mktemp("onnx") / "bark.onnx", check=False)[0].path


def test_synth_cli_on_an_exported_onnx(bark_onnx, tmp_path):
    out = tmp_path / "bark.png"
    result = run_cli("synth", str(bark_onnx), "-o", str(out), "--size", "48", "--seed", "1")
    assert result.returncode == 0 and "onnxruntime" in result.stdout, result.stderr
    ref = tmp_path / "ref.png"
    assert run_cli("synth", "bark", "-o", str(ref), "--size", "48", "--seed", "1").returncode == 0
    assert float((load_image(out) - load_image(ref)).abs().max()) <= 1.5 / 255


@pytest.mark.parametrize("args,message", [
    (["bark", "--backend", "nosuch"], "unknown backend"),
    (["bark", "--backend", "openvino:fast"], "unknown openvino option(s) fast: use bf16"),
    (["{onnx}", "--backend", "torch"], "the torch backend runs texport models"),
    (["bark", "--backend", "tensorrt"], "needs an engine file"),
    (["{onnx}", "--refine", "2"], "exported graphs and engines run as they are"),
    (["{onnx}", "--stages"], "--stages shows ProPO's stages"),
], ids=["unknown backend", "unknown option", "onnx on torch", "tensorrt without engine", "refine an exported graph",
        "stages of a texture network"])
def test_synth_backend_errors_are_one_line(args, message, bark_onnx, tmp_path, cli_main):
    args = [str(bark_onnx) if a == "{onnx}" else a for a in args]
    line = one_error_line(cli_main("synth", *args, "-o", tmp_path / "x.png"))
    assert message in line, line
    assert not (tmp_path / "x.png").exists()


def test_auto_prefers_openvino_then_onnxruntime_on_the_cpu():
    cpu = available("cpu", engine=True)
    assert cpu[0] == ("openvino" if "openvino" in CPU_BACKENDS else "onnxruntime")
    assert "tensorrt" not in cpu and cpu[-2:] == ["onnxruntime", "torch"]


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message; a GPU is present")
def test_running_an_engine_without_a_gpu_is_one_clear_line(tmp_path):
    pytest.importorskip("tensorrt_rtx", reason="tensorrt-rtx is installed by the test command")
    engine = tmp_path / "pebbles.engine"
    export(engine, check=False, sizes=(None, 64, 128))
    result = run_cli("synth", str(engine), "-o", str(tmp_path / "x.png"))
    assert result.returncode == 2 and "needs an NVIDIA GPU" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.png").exists()
    with pytest.raises(TexportError, match="needs an NVIDIA GPU"):
        open_backend(engine, "auto")
    assert available(engine=True)[0] == ("openvino" if "openvino" in CPU_BACKENDS else "onnxruntime")


def test_low_memory_drops_onnxruntime_arena_only():
    """texport tile asks for bounded memory: onnxruntime without its arena, the same numbers; torch ignores it."""
    lean = open_backend("pebbles", "onnxruntime", "cpu", low_memory=True)
    fast = open_backend("pebbles", "onnxruntime", "cpu")
    assert not lean.session.get_session_options().enable_cpu_mem_arena
    assert fast.session.get_session_options().enable_cpu_mem_arena
    z = noise_field(1, 15, 48, 64)
    assert torch.equal(lean(z), fast(z))
    assert torch.equal(open_backend("pebbles", "torch", low_memory=True)(z), open_backend("pebbles", "torch")(z))
