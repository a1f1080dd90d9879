"""Ray for synthesis (texport.cluster, texport.batch): tiles and batches on a cluster.

One private `local:2` cluster serves the module (started by the API's own `connect`); every run
below reuses it, as a caller's own connection is reused. Workers run one thread each, and the
single-process references are made with one thread too: the same thread count, the same bytes.
Ray is in the dev extra: if it is missing, these tests fail rather than skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import torch

try:
    import ray
except ImportError:  # pragma: no cover - the dev extra installs it
    pytest.fail("Ray is missing: pip install -e '.[dev]' (or 'texport[ray]')", pytrace=False)

from texport.scale.batch import JOB_KEY, load_jobs, run_batch
from texport.scale.cluster import FAULT_ENV, RayWorkers, tile_on_ray
from texport.scale.connection import connect
from texport.textures.images import read_png_text, resolve_texture
from texport.scale.tiling import TileRequest, tile_image

from conftest import one_error_line


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The module's local:2 cluster; its workers see FAULT_ENV (the retry test's hook), set before it starts."""
    faults = tmp_path_factory.mktemp("faults")
    saved = os.environ.get(FAULT_ENV)
    os.environ[FAULT_ENV] = str(faults)
    try:
        with connect("local:2") as info:
            yield info, faults
    finally:
        if saved is None:
            os.environ.pop(FAULT_ENV, None)
        else:
            os.environ[FAULT_ENV] = saved
    assert not ray.is_initialized()  # local:N shuts its cluster down


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _single(model, backend, path, width, height, tile, seed, tileable, texture=None):
    from texport.runtime.backends import open_backend

    tile_image(open_backend(model, backend, low_memory=True), path, TileRequest(width, height, tile, seed, tileable), texture)
    return path.read_bytes()


def test_local_cluster_is_private(cluster):
    info, _ = cluster
    assert info.local and info.cpus == 2
    assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
    assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}


def test_cli_tile_on_ray_is_byte_identical(cluster, one_thread, cli_main, tmp_path):
    args = ["tile", "bark", "--size", "256x200", "--tile", "64", "--seed", "3"]
    one = cli_main(*args, "-o", tmp_path / "one.png")
    assert one.returncode == 0, one.stderr
    many = cli_main(*args, "-o", tmp_path / "ray.png", "--ray", "local:2")
    assert many.returncode == 0, many.stderr
    assert "on 2 Ray workers x 1 thread (torch (cpu, fp32))" in many.stdout, many.stdout
    assert (tmp_path / "ray.png").read_bytes() == (tmp_path / "one.png").read_bytes()


def test_cli_tile_to_dds_on_ray_is_byte_identical(cluster, one_thread, cli_main, tmp_path):
    """The driver streams the workers' scanlines into the DDS (blocks and wrapping mips) as one process does."""
    args = ["tile", "pebbles", "--size", "256x192", "--tile", "64", "--seed", "3", "--tileable", "--mips"]
    one = cli_main(*args, "-o", tmp_path / "one.dds")
    assert one.returncode == 0, one.stderr
    many = cli_main(*args, "-o", tmp_path / "ray.dds", "--ray", "local:2")
    assert many.returncode == 0, many.stderr
    assert "BC7 sRGB, mips" in many.stdout and "Ray workers" in many.stdout, many.stdout
    assert (tmp_path / "ray.dds").read_bytes() == (tmp_path / "one.dds").read_bytes()


@pytest.mark.parametrize("model,backend,width,height,tile,tileable", [
    ("pebbles", "onnxruntime", 256, 192, 64, True),
    ("propo", "torch", 256, 256, 128, True),
], ids=["texnet tileable onnxruntime", "propo tileable"])
def test_tile_on_ray_is_byte_identical(model, backend, width, height, tile, tileable, cluster, one_thread, pebbles,
                                       tmp_path):
    texture = pebbles if model == "propo" else None
    one = _single(model, backend, tmp_path / "one.png", width, height, tile, 4, tileable, texture)
    summary = tile_on_ray(model, tmp_path / "ray.png", TileRequest(width, height, tile, 4, tileable), RayWorkers("local:2"), texture,
                          backend=backend)
    assert summary["workers"] == 2 and summary["threads"] == 1
    assert summary["tasks"] == len(range(0, height, tile))  # one task per band (the wrapped ProPO's last band reused)
    assert (tmp_path / "ray.png").read_bytes() == one


def test_a_dying_worker_s_task_is_retried(cluster, one_thread, tmp_path):
    """The first worker to take `exit-once` exits mid-task (os._exit, after opening its model): Ray restarts
    it and retries the task, and the image is still the single-process one."""
    _, faults = cluster
    (faults / "exit-once").touch()
    tile_on_ray("bark", tmp_path / "ray.png", TileRequest(256, 200, 64, 3), RayWorkers("local:2"))
    assert not (faults / "exit-once").exists()
    exited = [int(p.name.split("-")[1]) for p in faults.glob("exited-*")]
    assert len(exited) == 1
    with pytest.raises(ProcessLookupError):
        os.kill(exited[0], 0)  # that worker process is gone
    assert (tmp_path / "ray.png").read_bytes() == _single("bark", "torch", tmp_path / "one.png", 256, 200, 64, 3, False)


def test_a_worker_s_error_is_one_line(cluster, cli_main, tmp_path):
    """Raised on a worker (here: no CUDA there), told on the driver as on one machine."""
    line = one_error_line(cli_main("tile", "bark", "-o", tmp_path / "x.png", "--size", "64", "--device", "cuda",
                                   "--ray", "local:2"))
    assert "CUDA" in line, line
    assert not list(tmp_path.iterdir())


def test_a_stopped_tile_leaves_no_output(cluster, tmp_path):
    def stop(n, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tile_on_ray("bark", tmp_path / "ray.png", TileRequest(256, 256, 64), RayWorkers("local:2"), progress=stop)
    assert list(tmp_path.iterdir()) == []


JOBS = [{"model": "bark", "size": "64", "seed": 1, "output": "a.png"},
        {"model": "pebbles", "size": "48x32", "seed": 2, "output": "b.png", "tileable": True},
        {"model": "propo", "texture": "pebbles.png", "size": "64", "seed": 3, "output": "c.png"}]


def _job_folder(path, jobs=JOBS):
    path.mkdir()
    shutil.copy(resolve_texture("pebbles"), path / "pebbles.png")
    (path / "jobs.json").write_text(json.dumps(jobs))
    return path / "jobs.json"


def test_batch_on_ray_matches_one_process_and_resumes(cluster, one_thread, cli_main, tmp_path):
    here = _job_folder(tmp_path / "here")
    assert run_batch(here) == {"jobs": 3, "skipped": 0, "written": 3}
    there = _job_folder(tmp_path / "there")
    first = cli_main("batch", there, "--ray", "local:2")
    assert first.returncode == 0 and "wrote 3 of 3 outputs on 2 Ray workers" in first.stdout, first.stdout + first.stderr
    for name in ("a.png", "b.png", "c.png"):
        assert (there.parent / name).read_bytes() == (here.parent / name).read_bytes(), name
    assert json.loads(read_png_text(there.parent / "c.png", JOB_KEY))["seed"] == 3

    stamps = {p.name: p.stat().st_mtime_ns for p in there.parent.glob("*.png") if p.name != "pebbles.png"}
    again = cli_main("batch", there, "--ray", "local:2")
    assert again.returncode == 0 and "wrote 0 of 3 outputs, skipped 3 already made" in again.stdout, again.stdout
    assert {p.name: p.stat().st_mtime_ns for p in there.parent.glob("*.png") if p.name != "pebbles.png"} == stamps

    # a changed job (another seed) is made again, and so is an output that records no job
    there.write_text(json.dumps([JOBS[0], JOBS[1], {**JOBS[2], "seed": 4}]))
    (there.parent / "a.png").write_bytes((here.parent / "pebbles.png").read_bytes())
    before_c = (there.parent / "c.png").read_bytes()
    redo = cli_main("batch", there, "--ray", "local:2")
    assert redo.returncode == 0 and "wrote 2 of 3 outputs, skipped 1 already made" in redo.stdout, redo.stdout
    assert (there.parent / "a.png").read_bytes() == (here.parent / "a.png").read_bytes()
    assert (there.parent / "c.png").read_bytes() != before_c
    assert json.loads(read_png_text(there.parent / "c.png", JOB_KEY))["seed"] == 4


@pytest.mark.parametrize("name,text,message", [
    ("jobs.csv", "model,size,sed,output\nbark,64,1,a.png\n", "unknown column 'sed'"),
    ("jobs.csv", "model,size,output\nbark,64,a.png\n", "no 'seed' column"),
    ("jobs.csv", "model,size,seed,output\n", "holds no jobs"),
    ("jobs.csv", "model,size,seed,output\nbark,64,1,a.png\nbark,12,1,b.png\n", "jobs.csv line 3: size 12x12 is too small"),
    ("jobs.csv", "model,size,seed,output\nbark,64,x,a.png\n", "line 2: seed must be an integer"),
    ("jobs.csv", "model,size,seed,output\nnosuch,64,1,a.png\n", "line 2: no such model: 'nosuch'"),
    ("jobs.csv", "model,size,seed,output\npropo,64,1,a.png\n", "needs a texture"),
    ("jobs.csv", "model,texture,size,seed,output\nbark,pebbles,64,1,a.png\n", "leave texture empty"),
    ("jobs.csv", "model,texture,size,seed,output\npropo,nosuch.png,64,1,a.png\n", "no such file"),
    ("jobs.csv", "model,size,seed,output\nbark,64,1,a.jpg\n", "output must be a .png file"),
    ("jobs.csv", "model,size,seed,output\nbark,64,1,a.png\nbark,64,2,a.png\n", "line 3: output a.png is also jobs.csv line 2's"),
    ("jobs.csv", "model,size,seed,output,tileable\nbark,100,1,a.png,true\n", "multiples of 16"),
    ("jobs.json", '{"model": "bark"}', "must hold a list of job objects"),
    ("jobs.json", "[{", "cannot be read as JSON"),
    ("jobs.txt", "model,size,seed,output\n", "a job file is .csv or .json"),
], ids=["unknown column", "missing column", "no jobs", "bad size", "bad seed", "unknown model", "propo without texture",
        "texnet with texture", "missing texture", "not png", "duplicate output", "tileable off the grid", "json not a list",
        "bad json", "other suffix"])
def test_bad_job_files_are_one_line(name, text, message, cli_main, tmp_path):
    (tmp_path / name).write_text(text)
    line = one_error_line(cli_main("batch", tmp_path / name, "--ray", "local:2"))
    assert message in line, line
    assert not list(tmp_path.glob("*.png"))


def test_missing_ray_and_bad_addresses_are_one_line(cli_main, tmp_path, monkeypatch):
    line = one_error_line(cli_main("tile", "bark", "-o", tmp_path / "x.png", "--size", "64", "--ray", "local:0"))
    assert "local:N needs a number of workers N >= 1" in line, line
    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    for args in (["tile", "bark", "-o", tmp_path / "x.png", "--size", "64"], ["batch", tmp_path / "jobs.csv"]):
        line = one_error_line(cli_main(*args, "--ray", "local:2"))
        assert "pip install 'texport[ray]'" in line, line
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1", "auto"])
def test_an_address_where_nothing_listens_fails_in_seconds_with_one_line(address, tmp_path, monkeypatch):
    """ray.init alone retries such an address for minutes; texport probes it first (scale.connection)."""
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # what `auto` resolves to here: port 1, nothing there
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "texport", "tile", "bark", "-o", str(tmp_path / "x.png"), "--size", "64",
                           "--ray", address], capture_output=True, text=True, timeout=120)
    assert time.monotonic() - start < 30
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert "cannot connect to the Ray cluster" in line and "127.0.0.1:1" in line, line
    assert not list(tmp_path.iterdir())


def test_load_jobs_takes_paths_from_the_job_file_s_folder(tmp_path):
    jobs = load_jobs(_job_folder(tmp_path / "jobs"))
    assert [j.output for j in jobs] == [tmp_path / "jobs" / n for n in ("a.png", "b.png", "c.png")]
    assert jobs[2].texture == tmp_path / "jobs" / "pebbles.png" and jobs[0].texture is None
    assert (jobs[1].render.plan.width, jobs[1].render.plan.height, jobs[1].render.tileable) == (48, 32, True)
