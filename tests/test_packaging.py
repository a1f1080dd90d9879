"""What a user installs: the wheel carries trained/ (as texport.trained) and the shipped textures."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_ships_every_subpackage_trained_readme_and_textures(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr
    (wheel,) = tmp_path.glob("texport-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "texport").rglob("__init__.py")}
    assert len(packages) >= 10 and {f"{p}/__init__.py" for p in packages} <= names  # no stage left out of the wheel
    assert "texport/trained/README.md" in names
    shipped = {Path(p).stem for p in (ROOT / "trained").glob("*.safetensors")}
    assert shipped and {f"texport/trained/{n}.safetensors" for n in shipped} <= names
    assert {f"texport/trained/{n}.png" for n in shipped} <= names  # every model ships with its preview
    assert {f"texport/textures/shipped/{n}" for n in ("pebbles.png", "red-peppers.png", "README.md")} <= names
    assert not any(name.startswith(("cli/", "tests/")) for name in names)  # no top-level 'cli' package
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "texport = texport.commands.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()

    # the installed wheel, not the editable checkout: every stage imports and the entry point synthesizes
    site = tmp_path / "site"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "-q", "--target", str(site),
                          str(wheel)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    script = ("import sys, importlib, texport; assert texport.__file__.startswith(sys.argv[1]), texport.__file__;"
              "[importlib.import_module(m) for m in sys.argv[2].split(',')];"
              "from texport.commands.cli import main; sys.exit(main(['synth', 'pebbles', '--size', '64', '-o', sys.argv[3]]))")
    modules = ",".join(p.replace("/", ".") for p in sorted(packages))
    res = subprocess.run([sys.executable, "-c", script, str(site), modules, str(tmp_path / "out.png")], cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "out.png").stat().st_size > 1000


def test_every_shipped_model_loads_and_has_a_provenance_row():
    from texport.models.handle import PROPO, SOLID, STYLENET, shipped_models
    from texport.models.loading import load_propo, load_solid, load_stylenet, load_texnet, model_kind

    readme = (ROOT / "trained" / "README.md").read_text()
    loaders = {PROPO: load_propo, STYLENET: load_stylenet, SOLID: load_solid}
    kinds = set()
    for name, path in shipped_models().items():
        kinds.add(model_kind(path))
        model = loaders.get(model_kind(path), load_texnet)(path)
        assert model.manifest["training"]["interrupted"] is False
        assert f"`{path.name}`" in readme, f"{path.name} has no row in trained/README.md"
    assert kinds == {"texnet", "propo", "stylenet", "solid"}


def test_trained_readme_is_found_from_the_installed_package():
    from importlib import resources

    text = (resources.files("texport.trained") / "README.md").read_text()
    assert "provenance" in text.lower() or "licence" in text.lower()
