"""Volume outputs, written slab by slab along z so a volume larger than memory streams to disk.

Three forms, chosen by the output path:

- `NAME.npy`: uint8 [D, H, W, 3] (numpy's format, version 1.0 header; C order, so slabs along z are
  contiguous and are appended as they come);
- `NAME.dds`: a DX10 volume texture (texport.textures.dds_volume): RGBA8, or BC7 / BC1 / BC3 per slice;
- a folder (a path ending in a separator, or without a suffix): numbered PNG slices along z,
  `slice-0000.png` ... (rows along y, columns along x).

Every form is written atomically: a temporary file (or folder) beside the output, renamed over it only
when complete, so an error or Ctrl-C leaves nothing and an earlier output untouched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

import texport.textures.dds_volume as dds_volume
from texport.errors import TexportError
from texport.files import atomic_path, write_error
from texport.textures.dds import DdsOptions, is_dds
from texport.textures.images import save_image

VOLUME_SUFFIXES = (".npy", ".dds")


def is_folder_output(path: str | os.PathLike) -> bool:
    """A folder of PNG slices: a path ending in a separator, an existing folder, or a name without a suffix."""
    text = str(path)
    return text.endswith(("/", os.sep)) or Path(text).is_dir() or Path(text).suffix == ""


def check_volume_output(path: str | os.PathLike) -> str:
    """The form an output path names ("npy", "dds" or "folder"), checked before any work (one-line errors)."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise TexportError(f"output folder does not exist: {parent}")
    if is_folder_output(path):
        if p.exists() and (not p.is_dir() or any(p.iterdir())):
            raise TexportError(f"the slice folder {p} exists and is not empty: give a new or empty folder")
        return "folder"
    if p.suffix.lower() not in VOLUME_SUFFIXES:
        raise TexportError(f"a volume is written as .npy, .dds or a folder of PNG slices (NAME/), got {p.name}")
    if p.is_dir():
        raise TexportError(f"output is a folder: {p}")
    return "dds" if is_dds(p) else "npy"


class NpyWriter:
    """uint8 [D, H, W, 3] in numpy's .npy format, slabs appended along z."""

    def __init__(self, file, size: tuple[int, int, int]):
        width, height, depth = size
        np.lib.format.write_array_header_1_0(file, {"descr": "|u1", "fortran_order": False,
                                                    "shape": (depth, height, width, 3)})
        self.file = file

    def write(self, slab: np.ndarray) -> None:
        self.file.write(np.ascontiguousarray(slab).tobytes())

    def finish(self) -> None:
        pass


class SliceWriter:
    """One PNG per z slice in a folder, numbered from 0."""

    def __init__(self, folder: Path, depth: int):
        self.folder, self.index, self.digits = folder, 0, max(4, len(str(depth - 1)))

    def write(self, slab: np.ndarray) -> None:
        for image in slab:
            tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255
            save_image(tensor, self.folder / f"slice-{self.index:0{self.digits}d}.png")
            self.index += 1

    def finish(self) -> None:
        pass


@contextlib.contextmanager
def _atomic_folder(target: Path) -> Iterator[Path]:
    """A temporary folder beside `target`, renamed to it when the block succeeds (removed otherwise)."""
    parent = target.parent if str(target.parent) else Path(".")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    except OSError as exc:
        raise write_error(target, exc) from None
    try:
        yield tmp
        if target.is_dir():
            target.rmdir()  # checked empty before the work (check_volume_output)
        os.replace(tmp, target)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise write_error(target, exc) from None
        raise


@contextlib.contextmanager
def volume_writer(path: str | os.PathLike, size: tuple[int, int, int], dds: DdsOptions | None = None,
                  tileable: bool = False):
    """A writer for a volume of size (W, H, D) at `path` (its form from the path): write(slab [n, H, W, 3]
    uint8) in z order, D slices in all; the output appears only when the block ends without error."""
    form = check_volume_output(path)
    target = Path(path)
    if form == "folder":
        with _atomic_folder(target) as tmp:
            writer = SliceWriter(tmp, size[2])
            yield writer
            writer.finish()
        return
    with atomic_path(target) as tmp, open(tmp, "wb") as file:
        if form == "npy":
            writer = NpyWriter(file, size)
        else:
            options = dds or DdsOptions()
            writer = dds_volume.DdsVolumeWriter(file, size, options.format, options.srgb, options.mips, tileable)
        yield writer
        writer.finish()
