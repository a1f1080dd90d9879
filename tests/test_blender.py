"""The Blender add-on (cli/examples/blender): a thin client of the `texport` executable.

The add-on's runner (command lines, finding the executable, the background run and its cancellation)
imports no bpy and is tested here with this Python. The add-on itself runs in headless Blender
(`blender -b --factory-startup`, Debian's blender, which tests/run.sh installs as root) on the
default cube, driven by tests/blender_session.py: installed and enabled from the zip build_zip.py
makes, its error paths must leave the material as it was, and the texture it packs must be, pixel
for pixel, the PNG `texport synth` writes for the same model and seed (texport's PNG bytes are what
is packed, so the 8-bit round trip is exact). Those tests skip, saying so, when blender is not
installed. Blender's modal path (the panel's button: timer, progress, Esc) needs its event loop,
which background mode does not run: tests/blender_modal.py runs it in a Blender window on a virtual
display (xvfb-run, Debian's `xvfb`), and skips, saying so, without one.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from texport.models.checkpoints import read_manifest
from texport.models.handle import shipped_models

ROOT = Path(__file__).resolve().parents[1]
ADDON = ROOT / "cli" / "examples" / "blender"
BLENDER = os.environ.get("BLENDER") or shutil.which("blender")
XVFB_RUN = shutil.which("xvfb-run")
TEXPORT = Path(sys.prefix) / "bin" / "texport"  # the executable of this environment, as the add-on runs it
ENV = dict(os.environ, OMP_NUM_THREADS="1")  # Blender's texport and the reference run with the same threads

spec = importlib.util.spec_from_file_location("texport_blender_runner", ADDON / "texport_blender" / "runner.py")
runner = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look their module up
spec.loader.exec_module(runner)

needs_blender = pytest.mark.skipif(BLENDER is None, reason="blender is not installed (Debian: apt-get install "
                                                           "--no-install-recommends blender; tests/run.sh does it as root)")


def test_command_lines_and_names():
    r = runner.Request("network", model="pebbles", size="256", seed=3, tileable=True)
    assert r.argv("/x/texport", "/t/o.png") == ["/x/texport", "synth", "pebbles", "--size", "256", "--seed", "3",
                                                 "--tileable", "-o", "/t/o.png"]
    assert r.name() == "pebbles-seed3"
    assert r.next_sample().name() == "pebbles-seed4" and r.next_sample().size == "256"
    f = runner.Request("file", model="/m/wall.onnx", size="512x256", seed=0, tileable=False, refine=5, backend="onnxruntime")
    assert f.argv("t", "o.png")[1:] == ["synth", "/m/wall.onnx", "--size", "512x256", "--seed", "0", "--refine", "5",
                                        "--backend", "onnxruntime", "-o", "o.png"]
    assert f.name() == "wall-seed0"
    p = runner.Request("propo", texture="/tmp/x/texture.png", image="Bricks", seed=2)
    assert p.argv("t", "o.png")[1:5] == ["synth", "propo", "--texture", "/tmp/x/texture.png"]
    assert p.name() == "propo-Bricks-seed2"
    g = runner.Request("gatys", texture="pebbles", iters=50, refine=9, backend="torch", seed=1)
    assert g.argv("t", "o.png")[1:] == ["gatys", "pebbles", "--iters", "50", "--size", "512", "--seed", "1", "--tileable",
                                        "-o", "o.png"]  # Gatys takes neither --refine nor --backend
    assert g.name() == "gatys-pebbles-seed1"
    assert runner.Request.from_record({**p.record(), "unknown": 1}) == runner.replace(p, texture="")  # written again per run
    assert runner.Request.from_record({**r.record(), "tileable": 1, "seed": 3.0}) == r  # as Blender gives it back
    for bad, message in ((runner.Request("network", model=" "), "no model"),
                         (runner.Request("file", model="/no/such.safetensors"), "model file not found"),
                         (runner.Request("propo"), "no texture"), (runner.Request("network", model="x", size=""), "no size")):
        with pytest.raises(runner.RunError, match=message):
            bad.check()


def test_finding_the_executable(tmp_path, monkeypatch):
    assert runner.PROJECT == str(ROOT)  # run from the source tree, the checkout is the project
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(runner.RunError, match="texport executable not found at /no/texport"):
        runner.find_texport("/no/texport", root=str(tmp_path))
    with pytest.raises(runner.RunError, match=r"not found \(in .*\.venv or PATH\)"):
        runner.find_texport("", root=str(tmp_path))
    exe = tmp_path / ".venv" / "bin" / "texport"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert runner.find_texport("", root=str(tmp_path)) == str(exe)  # the project's .venv
    on_path = tmp_path / "bin" / "texport"
    on_path.parent.mkdir()
    on_path.write_text("#!/bin/sh\n")
    on_path.chmod(0o755)
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert runner.find_texport("", root=str(tmp_path / "elsewhere")) == str(on_path)  # then PATH
    assert runner.find_texport(str(on_path), root=str(tmp_path)) == str(on_path)  # a preference wins


def test_one_line_message_out_of_a_progress_bar():
    bar = "\x1b[?25lrefine 32x32 \x1b[90m━━\x1b[0m \x1b[32m1/3\x1b[0m loss 8.2\r\x1b[2K"
    assert runner.one_line(bar + "texport: error: bad size\n", 2) == "texport: error: bad size"
    assert runner.one_line("Traceback ...\nValueError: boom\n", 1) == "texport failed (exit 1): ValueError: boom"
    assert runner.one_line("", 139) == "texport failed (exit 139) without a message"


def test_job_progress_and_cancel(tmp_path):
    """A real run reports the progress bar's steps and writes its PNG; a cancelled one is terminated and writes nothing."""
    job = runner.Job(runner.Request("network", model="pebbles", size="32", refine=2), str(TEXPORT), env=ENV)
    assert job.wait(300), "texport did not finish"
    assert job.error is None and os.path.isfile(job.output) and job.fraction == 1.0
    job.close()
    assert not os.path.exists(job.folder)

    slow = runner.Job(runner.Request("gatys", texture="pebbles", size="64", iters=100000), str(TEXPORT), env=ENV)
    time.sleep(3)
    assert not slow.done
    slow.cancel()
    assert slow.done and slow.cancelled and slow.error == "texport cancelled"
    assert slow._process.returncode in (143, -15)  # SIGTERM: texport's own exit, or before its handler was set
    assert not os.path.exists(slow.output)
    slow.close()

    with pytest.raises(runner.RunError, match="cannot run"):
        runner.Job(runner.Request("network", model="pebbles"), str(tmp_path / "not-executable"))


def blender(script_config: dict, tmp_path: Path, name: str, script: str = "blender_session.py",
            windowed: bool = False) -> dict:
    """Run a tests/ script in Blender (headless, or in a window on a virtual display); its JSON report.
    Blender's user folders are the test's own, so installing the add-on leaves the user's alone."""
    config = tmp_path / f"{name}.json"
    report = tmp_path / f"{name}.report.json"
    config.write_text(json.dumps({**script_config, "report": str(report)}))
    env = dict(ENV, BLENDER_USER_SCRIPTS=str(tmp_path / "user-scripts"), BLENDER_USER_CONFIG=str(tmp_path / "user-config"))
    how = [XVFB_RUN, "-a", "-s", "-screen 0 1280x800x24", BLENDER, "--enable-event-simulate"] if windowed else [BLENDER, "-b"]
    result = subprocess.run([*how, "--factory-startup", "--python-exit-code", "1", "--python",
                             str(ROOT / "tests" / script), "--", str(config)],
                            capture_output=True, text=True, env=env, timeout=600)
    output = result.stdout + result.stderr
    assert report.is_file(), f"blender wrote no report (exit {result.returncode}):\n{output[-6000:]}"
    found = json.loads(report.read_text())
    assert "exception" not in found, found["exception"]
    assert "Traceback" not in output, output[-6000:]  # e.g. an error drawing the panel, which Blender only prints
    return found


def rgba(path: Path, size: int) -> np.ndarray:
    return np.frombuffer(path.read_bytes(), dtype=np.uint8).reshape(size, size, 4)


def texport_png(out: Path, *args) -> None:
    """`texport ARGS -o OUT` as the add-on runs it (the same executable and threads)."""
    result = subprocess.run([str(TEXPORT), *map(str, args), "-o", str(out)], capture_output=True, text=True, env=ENV,
                            timeout=600)
    assert result.returncode == 0, result.stderr


def png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.mark.slow
@needs_blender
def test_blender_addon_on_the_default_cube(tmp_path, cli_main):
    zip_path = tmp_path / "texport_blender.zip"
    build = subprocess.run([sys.executable, str(ADDON / "build_zip.py"), "-o", str(zip_path)], capture_output=True, text=True)
    assert build.returncode == 0 and zip_path.is_file(), build.stderr
    paths = {"zip": str(zip_path), "texport": str(TEXPORT), "work": str(tmp_path), "blend1": str(tmp_path / "seed3.blend"),
             "blend2": str(tmp_path / "seed4.blend"), "propo_pixels": str(tmp_path / "propo.rgba")}
    made = blender({**paths, "mode": "make"}, tmp_path, "make")
    assert made["enabled"]

    # errors: Blender's error report with the one-line message; the material and the temporary folder as they were
    refused = cli_main("synth", "pebbles", "--size", "100", "--tileable", "-o", tmp_path / "refused.png")
    texport_says = refused.stderr.strip()
    assert refused.returncode == 2 and texport_says.startswith("texport: error:"), refused.stderr
    for key, message in (("missing", "texport executable not found at"), ("failing", texport_says),
                         ("bad_input", "model file not found")):
        case = made[key]
        assert case["raised"] and message in case["message"], (key, case)
        assert case["unchanged"] and case["no_temporary_files"], (key, case)

    # Synthesize: into the cube's own material, slot 0, nodes wired, the image packed and named
    first = made["first"]
    assert made["synthesize"] == ["FINISHED"] and first["material"] == "Material"
    assert ("ShaderNodeTexImage", "Color", "ShaderNodeBsdfPrincipled", "Base Color") in map(tuple, first["links"])
    assert ("ShaderNodeBsdfPrincipled", "BSDF", "ShaderNodeOutputMaterial", "Surface") in map(tuple, first["links"])
    assert len(first["links"]) == 2
    assert (first["image"], first["size"], first["packed"], first["colorspace"]) == ("pebbles-seed3", [256, 256], True, "sRGB")
    assert first["record"]["model"] == "pebbles" and first["record"]["seed"] == 3 and first["record"]["tileable"]

    # New sample: the same image datablock in the same node, the next seed
    second = made["second"]
    assert made["new_sample"] == ["FINISHED"] and made["panel_seed"] == 4
    assert (second["image"], second["pointer"], second["node"]) == ("pebbles-seed4", first["pointer"], first["node"])
    assert made["temporary_files"] == []

    # reopened in a second Blender: the packed pixels are texport's PNG of the same model and seed, exactly
    reread = blender({**paths, "mode": "read", "object": made["object"]}, tmp_path, "read")
    texport_png(tmp_path / "reference.png", "synth", "pebbles", "--size", 256, "--seed", 3, "--count", 2, "--tileable")
    for key, seed in (("blend1", 3), ("blend2", 4)):
        assert reread[key]["image"] == f"pebbles-seed{seed}" and reread[key]["packed"], reread[key]
        assert sorted(map(tuple, reread[key]["links"])) == sorted(map(tuple, first["links"]))
        got = rgba(Path(paths[key] + ".rgba"), 256)
        want = png(tmp_path / f"reference-{seed - 3:04d}.png")
        assert (got[..., 3] == 255).all()
        assert np.array_equal(got[..., :3], want), f"seed {seed}: {np.abs(got[..., :3].astype(int) - want).max()} levels off"

    # ProPO on an Image datablock (the packed seed-4 texture): the same as ProPO on that PNG from the command line
    propo = made["propo_texture"]
    assert made["propo"] == ["FINISHED"] and (propo["image"], propo["size"]) == ("propo-pebbles-seed4-seed1", [64, 64])
    texport_png(tmp_path / "propo.png", "synth", "propo", "--texture", tmp_path / "reference-0001.png", "--size", 64,
                "--seed", 1, "--tileable")
    assert np.array_equal(rgba(Path(paths["propo_pixels"]), 64)[..., :3], png(tmp_path / "propo.png"))


def test_zip_holds_the_addon_and_the_project(tmp_path):
    import zipfile

    out = tmp_path / "build" / "addon.zip"
    build = subprocess.run([sys.executable, str(ADDON / "build_zip.py"), "-o", str(out), "--project", str(tmp_path)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        project = zf.read("texport_blender/_project.py").decode()
    sources = {f"texport_blender/{p.name}" for p in (ADDON / "texport_blender").glob("*.py")}
    assert names == sources | {"texport_blender/_project.py"} and "texport_blender/__init__.py" in names
    assert f"ROOT = {str(tmp_path)!r}" in project
    assert list(out.parent.iterdir()) == [out]  # no partial file left


@pytest.mark.slow
@needs_blender
@pytest.mark.skipif(XVFB_RUN is None, reason="xvfb-run is not installed (Debian: apt-get install --no-install-recommends "
                                             "xvfb xauth; tests/run.sh does it as root)")
def test_blender_addon_from_the_panel_runs_modally_and_escape_cancels(tmp_path):
    """As a click on the panel's button: the UI stays live, progress comes from texport's bar, Esc stops texport."""
    zip_path = tmp_path / "texport_blender.zip"
    assert subprocess.run([sys.executable, str(ADDON / "build_zip.py"), "-o", str(zip_path)]).returncode == 0
    found = blender({"zip": str(zip_path), "texport": str(TEXPORT)}, tmp_path, "modal", "blender_modal.py", windowed=True)
    assert found.get("done"), found
    texnets = sorted(name for name, path in shipped_models().items() if read_manifest(path)["kind"] == "texnet")
    assert found["networks"] == texnets and "pebbles" in texnets  # the Network field's list, from `texport models`
    assert found["invoke"] == ["RUNNING_MODAL"] and found["running"]
    assert found["fraction"] == 1.0  # the refinement's progress bar, read while it ran
    assert found["image"] == [[64, 64], True]
    assert found["after_modal"][0] == [["Image Texture", "Base Color"], ["Principled BSDF", "Surface"]]
    assert found["panel"] == ["INTERFACE"]
    assert found["invoke_gatys"] == ["RUNNING_MODAL"] and found["gatys_running"]
    assert not found["running_after_escape"] and found["returncode"] in (143, -15)
    assert found["unchanged"] and found["leftovers"] == []
