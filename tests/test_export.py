"""ONNX export of every shipped model kind: metadata, checker, dynamic sizes, parity, bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from texport.errors import TexportError
from texport.export.cache import cached_onnx
from texport.export.exporter import PARITY, PARITY_FP32, Exported, export
from texport.export.graphs import ProPOGraph, statistic_names
from texport.models.loading import load_propo, load_texnet
from texport.textures.noise import noise_field
from texport.models.formats import read_metadata

from conftest import one_error_line, run_cli


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def propo_files(tmp_path_factory) -> list:
    """The ProPO export with its parity checks (~40 s): the tests that use it are marked slow."""
    return export(tmp_path_factory.mktemp("onnx") / "propo.onnx")


@pytest.fixture(scope="module")
def pebbles_file(tmp_path_factory) -> Path:
    return export(tmp_path_factory.mktemp("onnx") / "pebbles.onnx")[0].path


def test_texnet_graph_is_checked_named_and_carries_metadata(pebbles_file):
    model = onnx.load(str(pebbles_file))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["noise"] and [o.name for o in model.graph.output] == ["image"]
    meta = read_metadata(pebbles_file)
    assert meta["texport.kind"] == "texnet" and meta["texport.size_multiple"] == "16"
    assert meta["texport.descriptor"].startswith("vgg16-hed:") and "lowbias32" in meta["texport.noise_distribution"]
    assert meta["texport.noise_shape"].startswith("[batch, 15, height, width]")
    for key in ("texport.version", "texport.value_range", "texport.model"):
        assert meta[key]


@pytest.mark.parametrize("batch,height,width", [(1, 48, 80), (2, 128, 96)])
def test_texnet_onnx_matches_torch_at_any_size_and_batch(pebbles_file, batch, height, width):
    net = load_texnet("pebbles").network
    z = net.noise(height, width, seed=5, batch=batch)
    got = _session(pebbles_file).run(None, {"noise": z.numpy()})[0]
    with torch.no_grad():
        want = net(z).numpy()
    assert got.shape == (batch, 3, height, width)
    assert float(np.abs(got - want).max()) <= PARITY_FP32


@pytest.mark.slow
def test_propo_writes_the_whole_graph_and_the_encode_synth_pair(propo_files):
    paths = [e.path for e in propo_files]
    assert [p.name for p in paths] == ["propo.onnx", "propo.encode.onnx", "propo.synth.onnx"]
    assert all(e.max_abs_diff <= PARITY_FP32 for e in propo_files)
    names = statistic_names(load_propo("propo").network)
    assert names[:5] == ["relu1_1", "pool1", "pool2", "pool3", "pool4"]
    whole, encode, synth = (onnx.load(str(p), load_external_data=False) for p in paths)
    assert [i.name for i in whole.graph.input] == ["noise", "texture"]
    assert [o.name for o in encode.graph.output] == names
    assert [i.name for i in synth.graph.input] == ["noise", *names]
    meta = read_metadata(paths[0])
    assert meta["texport.kind"] == "propo" and meta["texport.statistics"] == ",".join(names)
    assert read_metadata(paths[1])["texport.graph"] == "encode"


@pytest.mark.slow
def test_propo_onnx_matches_torch_at_two_sizes_and_textures(propo_files, pebbles, peppers):
    loaded = load_propo("propo")
    graph = ProPOGraph(loaded.network).eval()
    whole, encode, synth = (_session(e.path) for e in propo_files)
    for (h, w), texture in (((64, 96), pebbles), ((96, 64), peppers[..., :80, :112]), ((256, 256), peppers)):
        z = noise_field(7, 3, h, w)
        with torch.no_grad():
            want = graph(z, texture).numpy()
        got = whole.run(None, {"noise": z.numpy(), "texture": texture.numpy()})[0]
        assert float(np.abs(got - want).max()) <= PARITY_FP32
        # texture -> statistics once, then noise + statistics -> image: the same image
        stats = encode.run(None, {"texture": texture.numpy()})
        names = [o.name for o in encode.get_outputs()]
        split = synth.run(None, {"noise": z.numpy(), **dict(zip(names, stats))})[0]
        assert float(np.abs(split - want).max()) <= PARITY_FP32


@pytest.mark.parametrize("args,message", [
    (["{tmp}/pebbles.engin"], "cannot tell the format"),
    (["{tmp}/nosuch.onnx"], "no such model"),
    (["{tmp}/x.onnx", "--model", "{tmp}/missing.safetensors"], "not found"),
    (["{tmp}/missing-folder/pebbles.onnx"], "output folder does not exist"),
], ids=["unknown extension", "unknown model", "missing model file", "missing folder"])
def test_export_errors_are_one_line_and_leave_nothing(args, message, tmp_path, cli_main):
    line = one_error_line(cli_main("export", *[a.replace("{tmp}", str(tmp_path)) for a in args]))
    assert message in line, line
    assert list(tmp_path.iterdir()) == []


def test_cli_export_reports_parity(tmp_path):
    result = run_cli("export", str(tmp_path / "tile.onnx"), "--model", "bark")
    assert result.returncode == 0, result.stderr
    assert "max abs diff" in result.stdout and (tmp_path / "tile.onnx").is_file()
    assert read_metadata(tmp_path / "tile.onnx")["texport.model"] == "bark"


def test_corrupt_onnx_is_refused_in_one_line(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07not a protobuf at all" * 10)
    with pytest.raises(TexportError, match="not a readable ONNX file"):
        read_metadata(bad)


# ---------------------------------------------------------------------------------------------
# fp16 graphs and TensorRT engines

def test_fp16_texnet_onnx_is_half_inside_and_close_to_fp32(tmp_path):
    path = export(tmp_path / "red-peppers.onnx", fp16=True)[0].path
    model = onnx.load(str(path))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # fp32 interface
    weights = {init.data_type for init in model.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in weights
    assert read_metadata(path)["texport.precision"].startswith("fp16")
    net = load_texnet("red-peppers").network
    session = _session(path)
    for size in (64, 256):
        z = net.noise(size, size, seed=2)
        with torch.no_grad():
            want = net(z).numpy()
        got = session.run(None, {"noise": z.numpy()})[0]
        assert float(np.abs(got - want).max()) <= PARITY["fp16"]


@pytest.mark.slow
def test_fp16_propo_onnx_is_close_to_fp32_at_two_sizes(pebbles, peppers):
    path = cached_onnx("propo", fp16=True)  # the same export_onnx as `texport export --fp16`, made once per suite
    model = onnx.load(str(path), load_external_data=False)
    assert onnx.TensorProto.FLOAT16 in {init.data_type for init in model.graph.initializer}
    graph = ProPOGraph(load_propo("propo").network).eval()
    session = _session(path)
    for size, texture in ((64, pebbles), (256, peppers)):
        z = noise_field(3, 3, size, size)
        with torch.no_grad():
            want = graph(z, texture).numpy()
        got = session.run(None, {"noise": z.numpy(), "texture": texture.numpy()})[0]
        assert float(np.abs(got - want).max()) <= PARITY["fp16"]


@pytest.fixture(scope="module")
def engines(tmp_path_factory) -> dict:
    pytest.importorskip("tensorrt_rtx", reason="tensorrt-rtx is installed by the test command; run tests/run.sh")
    from texport.models.formats import read_sidecar

    folder = tmp_path_factory.mktemp("engines")
    # A ProPO engine build takes ~40 s on one core: the two run as CLI processes side by side
    # while the texture-network engines are built here through the Python API.
    profile = ["--no-check", "--batch", "2", "--opt-size", "64", "--max-size", "256", "--texture-sizes", "32,64,128"]
    paths = {(name, fp16): folder / f"{name}{'-fp16' if fp16 else ''}.engine" for name in ("pebbles", "propo")
             for fp16 in (False, True)}
    jobs = {fp16: subprocess.Popen(
        [sys.executable, "-m", "texport", "export", str(paths[("propo", fp16)]), "--model", "propo",
         *(["--fp16"] if fp16 else []), *profile], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for fp16 in (False, True)}
    built = {}
    for fp16 in (False, True):
        built[("pebbles", fp16)] = export(paths[("pebbles", fp16)], model="pebbles", fp16=fp16, check=False, batch=2,
                                          sizes=(None, 64, 256))[0]
    for fp16, job in jobs.items():
        _, err = job.communicate(timeout=600)
        assert job.returncode == 0, err
        out = paths[("propo", fp16)]
        built[("propo", fp16)] = Exported(out, "propo", float("nan"), read_sidecar(out))
    return built


@pytest.mark.slow
def test_real_tensorrt_rtx_engines_for_every_kind_and_precision(engines):
    from texport.models.formats import read_sidecar

    for (name, fp16), item in engines.items():
        assert item.path.is_file() and item.path.stat().st_size > 100_000
        side = read_sidecar(item.path)
        assert side == item.sidecar
        assert side["flavour"] == "tensorrt-rtx" and side["flavour_version"] == "1.7.1.116"
        assert side["precision"] == ("fp16" if fp16 else "fp32")
        assert side["model"]["texport.kind"] == ("propo" if name == "propo" else "texnet")
        assert len(side["source_onnx"]["sha256"]) == 64 and side["texport_version"]
        assert side["compute_capabilities"].startswith("SM80")
        noise = side["profile"]["noise"]
        assert noise["min"][0] == 1 and noise["max"][0] == 2 and noise["max"][2:] == [256, 256]
        names = [t["name"] for t in side["inputs"]]
        assert names == (["noise", "texture"] if name == "propo" else ["noise"])
        if name == "propo":
            assert side["profile"]["texture"]["max"] == [2, 3, 128, 128]
        assert [t["name"] for t in side["outputs"]] == ["image"]


@pytest.mark.parametrize("args,message", [
    (["--compute-capability", "9.0"], "unknown compute capability"),
    (["--opt-size", "100"], "multiples of 16"),
    (["--opt-size", "4096"], "min <= opt <= max"),
    (["--texture-sizes", "32,64"], "three integers"),
    (["--trt", "tensorrt"], "tensorrt is not installed"),
], ids=["unknown gpu", "opt off the grid", "opt above max", "two texture sizes", "standard tensorrt missing"])
def test_bad_engine_requests_are_one_line_and_leave_nothing(args, message, tmp_path, cli_main):
    pytest.importorskip("tensorrt_rtx", reason="tensorrt-rtx is installed by the test command")
    import importlib.util

    if args[0] == "--trt" and importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("standard TensorRT is installed")
    line = one_error_line(cli_main("export", tmp_path / "x.plan", "--model", "bark", *args))
    assert message in line, line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_engine_for_named_gpus_timing_cache_and_damaged_engines(tmp_path):
    pytest.importorskip("tensorrt_rtx", reason="tensorrt-rtx is installed by the test command")
    from texport.models.formats import read_sidecar

    import importlib.util

    out = tmp_path / "bark.engine"
    result = run_cli("export", str(out), "--compute-capability", "8.6,8.9", "--max-size", "512", "--no-check")
    assert result.returncode == 0, result.stderr
    assert read_sidecar(out)["compute_capabilities"] == ["SM86", "SM89"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bark.engine", "bark.engine.json"]
    # the timing cache is written and read back by a second build
    cache = tmp_path / "timing.cache"
    again = tmp_path / "again.engine"
    assert run_cli("export", str(again), "--model", "bark", "--max-size", "512", "--no-check", "--timing-cache", str(cache)).returncode == 0
    assert cache.stat().st_size > 0
    result = run_cli("export", str(again), "--model", "bark", "--max-size", "512", "--no-check", "--timing-cache", str(cache))
    assert result.returncode == 0, result.stderr
    # an engine of the other flavour, and a damaged engine, are refused in one line without a GPU
    side = json.loads((tmp_path / "again.engine.json").read_text())
    (tmp_path / "again.engine.json").write_text(json.dumps(dict(side, flavour="tensorrt")))
    result = run_cli("synth", str(again), "-o", str(tmp_path / "x.png"))
    if importlib.util.find_spec("tensorrt") is None:
        assert result.returncode == 2 and "tensorrt is not installed" in result.stderr, result.stderr
    (tmp_path / "again.engine.json").write_text(json.dumps(side))
    again.write_bytes(again.read_bytes()[:-100])
    result = run_cli("synth", str(again), "-o", str(tmp_path / "x.png"))
    assert result.returncode == 2 and "damaged" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    for p in (again, tmp_path / "again.engine.json", cache):
        p.unlink()
    (tmp_path / "bark.engine.json").write_text('{"format": "something else"}')
    with pytest.raises(TexportError, match="not a texport engine sidecar"):
        read_sidecar(out)
    (tmp_path / "bark.engine.json").unlink()
    with pytest.raises(TexportError, match="no sidecar"):
        read_sidecar(out)


class _FakeCache:
    """Stands in for TensorRT-RTX's IRuntimeCache, which needs a GPU to exist."""

    def __init__(self):
        self.blob = b""

    def deserialize(self, blob):
        ok = blob.startswith(b"rtx:")
        self.blob = blob if ok else self.blob
        return ok

    def serialize(self):
        return self.blob + b"+kernel"


class _FakeConfig:
    def __init__(self):
        self.cache = None

    def create_runtime_cache(self):
        return _FakeCache()

    def set_runtime_cache(self, cache):
        self.cache = cache
        return True


class _FakeEngine:
    def create_runtime_config(self):
        return _FakeConfig()

    def create_execution_context(self, config=None):
        return ("context", config)


def test_rtx_runtime_cache_is_loaded_beside_the_engine_and_saved(tmp_path):
    from texport.export.tensorrt import RuntimeCache

    engine_path = tmp_path / "pebbles.engine"
    cache_file = tmp_path / "pebbles.engine.rtcache"
    cache_file.write_bytes(b"rtx:old")
    cache = RuntimeCache(_FakeEngine(), engine_path)
    assert cache.loaded and cache.context(_FakeEngine())[1] is cache.config and cache.config.cache is cache.cache
    cache.save()
    assert cache_file.read_bytes() == b"rtx:old+kernel"
    cache_file.write_bytes(b"foreign")  # another GPU's or version's cache: ignored, replaced on save
    assert not RuntimeCache(_FakeEngine(), engine_path).loaded

    class StandardEngine:  # standard TensorRT: no runtime cache, a plain context, nothing written
        def create_execution_context(self):
            return "plain"

    plain = RuntimeCache(StandardEngine(), tmp_path / "other.engine")
    assert plain.context(StandardEngine()) == "plain"
    plain.save()
    assert not (tmp_path / "other.engine.rtcache").exists()


@pytest.mark.parametrize("suffix", [".onnx", ".engine"])
@pytest.mark.parametrize("args,message", [
    (["--min-size", "512", "--max-size", "256"], "min <= opt <= max"),
    (["--opt-size", "4096"], "min <= opt <= max"),
    (["--batch", "0"], "largest batch must be at least 1"),
], ids=["min above max", "opt above max", "no batch"])
def test_contradictory_profiles_are_refused_for_every_format(suffix, args, message, tmp_path, cli_main):
    """An ONNX graph has no profile, but asking for min > max is still the user's mistake."""
    line = one_error_line(cli_main("export", tmp_path / f"x{suffix}", "--model", "bark", *args))
    assert message in line, line
    assert list(tmp_path.iterdir()) == []
