"""texport bench: one row per backend, size and batch, with numbers that add up."""

from __future__ import annotations

import dataclasses
import json

import pytest

from texport.runtime.bench import FlopModel, bench, table
from texport.errors import TexportError

from conftest import run_cli


def test_bench_rows_are_consistent():
    rows = bench("pebbles", ["torch", "onnxruntime"], sizes=(64, 96), batches=(1, 2), warmup=1, runs=3)
    assert [(r.backend, r.size, r.batch) for r in rows] == [
        (b, s, n) for b in ("torch", "onnxruntime") for s in (64, 96) for n in (1, 2)]
    for r in rows:
        assert not r.skipped and r.median_ms > 0 and r.p95_ms >= r.median_ms
        assert r.images_per_s == pytest.approx(r.batch / (r.median_ms / 1e3))
        assert r.megapixels_per_s == pytest.approx(r.images_per_s * r.size ** 2 / 1e6)
        assert r.gflops == pytest.approx(r.gflop_per_image * r.images_per_s)
        assert r.peak_memory_mb > 0 and r.device_name
    long = dataclasses.replace(rows[0], backend="torch+channels_last+compile")  # wider than the header
    lines = table([long] + rows).splitlines()
    assert len({line.index("precision") for line in lines[:1]} | {line.index(" fp32") + 1 for line in lines[2:]}) == 1


def test_flop_count_grows_with_the_pixels_and_matches_a_direct_count(pebbles):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from texport.runtime.backends import open_backend
    from texport.textures.noise import noise_field

    flops = FlopModel("pebbles", None)
    runner = open_backend("pebbles", "torch")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        runner(noise_field(0, 15, 96, 96))
    assert flops(96) == pytest.approx(counter.get_total_flops() / 1e9, rel=1e-6)
    # all convolutions: 4x the pixels, 4x the work, less the wrapped border's share (texnet.TextureNetwork._forward)
    assert 0.99 * 4 < flops(1024) / flops(512) < 4


def test_bench_cli_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    result = run_cli("bench", "bark", "--backend", "torch:channels_last,onnxruntime", "--sizes", "64", "--batch", "1",
                     "--runs", "2", "--warmup", "0", "--json", str(out))
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert [r["backend"] for r in data["rows"]] == ["torch+channels_last", "onnxruntime"]
    assert "median ms" in result.stdout and data["texport_version"]


@pytest.mark.parametrize("args,message", [
    (["--sizes", "100"], "multiples of 16"),
    (["--batch", "0"], "positive integers"),
    (["--backend", "cuda"], "unknown backend"),
    (["--backend", "onnxruntime:compile"], "the onnxruntime backend takes none"),
], ids=["size off the grid", "zero batch", "unknown backend", "unknown option"])
def test_bench_cli_rejects_bad_lists(args, message, cli_main):
    result = cli_main("bench", "bark", *args, "--runs", "1")
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_bench_api_rejects_zero_runs():
    with pytest.raises(TexportError, match="runs must be at least 1"):
        bench("bark", ["torch"], runs=0)


def test_bench_resolves_the_model_once(monkeypatch, tmp_path):
    """One handle (texport.models.handle.Model) serves every backend and the FLOP count: the name is resolved
    and the manifest read once, however many backends run."""
    import texport.models.checkpoints as checkpoints
    import texport.models.handle as handle

    monkeypatch.setenv("TEXPORT_CACHE", str(tmp_path / "cache"))
    calls = {"resolve": 0, "manifest": 0}
    resolve, read = handle.resolve_model, checkpoints.read_manifest

    def counted_resolve(name):
        calls["resolve"] += 1
        return resolve(name)

    def counted_read(path):
        calls["manifest"] += 1
        return read(path)

    monkeypatch.setattr(handle, "resolve_model", counted_resolve)
    monkeypatch.setattr(checkpoints, "read_manifest", counted_read)
    rows = bench("bark", ["torch", "onnxruntime"], sizes=(32,), batches=(1,), warmup=0, runs=1)
    assert [r.skipped for r in rows] == ["", ""] and all(r.median_ms > 0 for r in rows)
    assert calls == {"resolve": 1, "manifest": 1}


@pytest.mark.parametrize("name,content,message", [
    ("fake.onnx", b"junk", "not a readable ONNX file"),
    ("fake.engine", b"junk", "has no sidecar"),
], ids=["damaged onnx", "engine without sidecar"])
def test_bench_exits_2_when_nothing_can_run(name, content, message, tmp_path, cli_main):
    from conftest import one_error_line

    (tmp_path / name).write_bytes(content)
    line = one_error_line(cli_main("bench", tmp_path / name, "--sizes", "64", "--batch", "1", "--runs", "1"))
    assert message in line, line


def test_bench_of_an_onnx_file_skips_no_row_for_pytorch(tmp_path, monkeypatch):
    """`--backend all` on an .onnx runs only the runtimes that read ONNX (before, every torch row was 'skipped')."""
    from texport.export.exporter import export

    monkeypatch.setenv("TEXPORT_CACHE", str(tmp_path / "cache"))
    onnx_file = export(tmp_path / "bark.onnx", check=False)[0].path
    rows = bench(onnx_file, ["all"], sizes=(32,), batches=(1,), warmup=0, runs=1)
    assert rows and "torch" not in {r.backend for r in rows} and not any(r.skipped for r in rows)
    with pytest.raises(TexportError, match="nothing could run: .*multiples of 16"):
        bench(onnx_file, ["onnxruntime"], sizes=(40,), batches=(1,), warmup=0, runs=1)
