"""What a user installs: the wheel carries trained/ (as texport.trained) and the shipped textures."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_ships_trained_readme_and_textures(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr
    (wheel,) = tmp_path.glob("texport-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "texport/trained/README.md" in names
    shipped = {Path(p).stem for p in (ROOT / "trained").glob("*.safetensors")}
    assert shipped and {f"texport/trained/{n}.safetensors" for n in shipped} <= names
    assert {f"texport/trained/{n}.png" for n in shipped} <= names  # every model ships with its preview
    assert {"texport/textures/pebbles.png", "texport/textures/red-peppers.png", "texport/textures/README.md"} <= names
    assert not any(name.startswith(("cli/", "tests/")) for name in names)  # no top-level 'cli' package
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "texport = texport.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_every_shipped_model_loads_and_has_a_provenance_row():
    from texport.models import PROPO, STYLENET, load_propo, load_stylenet, load_texnet, model_kind, shipped_models

    readme = (ROOT / "trained" / "README.md").read_text()
    loaders = {PROPO: load_propo, STYLENET: load_stylenet}
    kinds = set()
    for name, path in shipped_models().items():
        kinds.add(model_kind(path))
        model = loaders.get(model_kind(path), load_texnet)(path)
        assert model.manifest["training"]["interrupted"] is False
        assert f"`{path.name}`" in readme, f"{path.name} has no row in trained/README.md"
    assert kinds == {"texnet", "propo", "stylenet"}


def test_trained_readme_is_found_from_the_installed_package():
    from importlib import resources

    text = (resources.files("texport.trained") / "README.md").read_text()
    assert "provenance" in text.lower() or "licence" in text.lower()
