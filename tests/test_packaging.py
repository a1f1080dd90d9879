"""What a user installs: the wheel carries trained/ (as texport.trained) and the shipped textures."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_trained_readme_and_textures(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr
    (wheel,) = tmp_path.glob("texport-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "texport/trained/README.md" in names
    assert {"texport/textures/pebbles.png", "texport/textures/red-peppers.png", "texport/textures/README.md"} <= names
    assert not any(name.startswith(("cli/", "tests/")) for name in names)  # no top-level 'cli' package
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "texport = texport.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_trained_readme_is_found_from_the_installed_package():
    from importlib import resources

    text = (resources.files("texport.trained") / "README.md").read_text()
    assert "provenance" in text.lower() or "licence" in text.lower()
