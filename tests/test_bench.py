"""texport bench: one row per backend, size and batch, with numbers that add up."""

from __future__ import annotations

import dataclasses
import json

import pytest

from texport.bench import FlopModel, bench, table
from texport.errors import TexportError

from conftest import run_cli


def test_bench_rows_are_consistent():
    rows = bench("pebbles", ["torch", "onnxruntime"], sizes=(64, 96), batches=(1, 2), warmup=1, iters=3)
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

    from texport.backends import open_backend
    from texport.noise import noise_field

    flops = FlopModel("pebbles", None)
    runner = open_backend("pebbles", "torch")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        runner(noise_field(0, 15, 96, 96))
    assert flops(96) == pytest.approx(counter.get_total_flops() / 1e9, rel=1e-6)
    # all convolutions: 4x the pixels, 4x the work, less the wrapped border's share (texnet.TextureNetwork._forward)
    assert 0.99 * 4 < flops(1024) / flops(512) < 4


def test_bench_cli_writes_json_and_rejects_bad_lists(tmp_path):
    out = tmp_path / "bench.json"
    result = run_cli("bench", "bark", "--backend", "torch:channels_last,onnxruntime", "--sizes", "64", "--batch", "1",
                     "--iters", "2", "--warmup", "0", "--json", str(out))
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert [r["backend"] for r in data["rows"]] == ["torch+channels_last", "onnxruntime"]
    assert "median ms" in result.stdout and data["texport_version"]
    for args, message in ((["--sizes", "100"], "multiples of 16"), (["--batch", "0"], "positive integers"),
                          (["--backend", "cuda"], "unknown backend"), (["--backend", "onnxruntime:compile"], "the onnxruntime backend takes none")):
        result = run_cli("bench", "bark", *args, "--iters", "1")
        assert result.returncode == 2 and message in result.stderr, result.stderr
    with pytest.raises(TexportError, match="--iters"):
        bench("bark", ["torch"], iters=0)
