"""Texture datasets for adaptive (ProPO) training: a folder or a zip archive of images.

A zip (.zip, or a game's .pk3 such as Debian's openarena-081-textures pak4-textures.pk3) is read
in place. Images are decoded once, scaled so the shortest side is `resize` (Shi & Qiao 2020 sec. 4.1:
"we resize the shortest edge of images to 256"), and kept in memory as 8-bit arrays; training
draws random square crops with random flips from them.

What is not a texture is left out and counted: images too small to crop, nearly flat ones
(standard deviation < 0.03), cut-outs (over a quarter of the pixels transparent), and whatever a
caller's `screen` rejects (ProPO's training drops images that are not stationary: a measure that
lives with the quality metrics, a stage above this one).

Held-out split: by folder, so a texture's variants (most game-texture folders hold a family of
near-copies) never sit on both sides. A folder is held out when the SHA-1 of its path falls in the
held-out fraction; the rule depends only on names, so the split is the same on every machine.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

import numpy as np
import torch
from PIL import Image

import texport.defaults as defaults
from texport.errors import TexportError
from texport.textures.images import READ_FORMATS, _to_float_rgb

ZIP_SUFFIXES = (".zip", ".pk3")
SPLITS = ("train", "held-out", "all")
DEFAULT_RESIZE = defaults.PROPO_RESIZE
DEFAULT_HELD_OUT = defaults.HELD_OUT_FRACTION
MIN_STD = 0.03
MAX_TRANSPARENT = 0.25


def held_out(name: str, fraction: float = DEFAULT_HELD_OUT) -> bool:
    """Whether the image `name` (path inside the dataset) belongs to the held-out split (by folder)."""
    folder = str(PurePosixPath(name).parent)
    digest = int(hashlib.sha1(folder.encode()).hexdigest()[:8], 16)
    return digest / 2**32 < fraction


def _members(source: Path) -> tuple[list[str], Callable[[str], bytes]]:
    """Image names and a reader, for a folder or a zip archive."""
    if source.is_dir():
        names = sorted(
            str(p.relative_to(source).as_posix()) for p in source.rglob("*")
            if p.is_file() and p.suffix.lower().lstrip(".") in READ_FORMATS
        )
        return names, lambda name: (source / name).read_bytes()
    if source.is_file() and (source.suffix.lower() in ZIP_SUFFIXES or zipfile.is_zipfile(source)):
        try:
            archive = zipfile.ZipFile(source)
        except (zipfile.BadZipFile, OSError) as exc:
            raise TexportError(f"cannot read archive {source}: {exc}") from None
        names = sorted(n for n in archive.namelist() if n.rsplit(".", 1)[-1].lower() in READ_FORMATS and not n.endswith("/"))
        return names, archive.read
    if not source.exists():
        raise TexportError(f"dataset not found: {source}")
    raise TexportError(f"dataset must be a folder or a zip archive of images (.zip, .pk3), got {source}")


@dataclass
class Skipped:
    small: int = 0
    flat: int = 0
    cutout: int = 0
    unreadable: int = 0
    screened: int = 0

    def __str__(self) -> str:
        return ", ".join(f"{v} {k}" for k, v in vars(self).items() if v) or "none"


@dataclass
class TextureDataset:
    """Decoded images of one split: names and HxWx3 uint8 arrays (shortest side = resize)."""
    source: Path
    split: str
    resize: int
    names: list[str] = field(default_factory=list)
    arrays: list[np.ndarray] = field(default_factory=list)
    skipped: Skipped = field(default_factory=Skipped)
    other_split: int = 0
    dropped: list[str] = field(default_factory=list)  # names a screen rejected

    def __len__(self) -> int:
        return len(self.names)

    def image(self, index: int) -> torch.Tensor:
        """Image `index` as [1, 3, H, W] float in [0, 1]."""
        return torch.from_numpy(self.arrays[index].copy()).permute(2, 0, 1)[None].float() / 255.0

    def crop(self, index: int, size: int, generator: torch.Generator) -> torch.Tensor:
        """A random size x size crop of image `index`, flipped left-right and/or up-down at random."""
        arr = self.arrays[index]
        h, w = arr.shape[:2]
        y = int(torch.randint(0, h - size + 1, (1,), generator=generator))
        x = int(torch.randint(0, w - size + 1, (1,), generator=generator))
        patch = torch.from_numpy(np.ascontiguousarray(arr[y:y + size, x:x + size])).permute(2, 0, 1)[None].float() / 255.0
        flips = torch.randint(0, 2, (2,), generator=generator)
        if flips[0]:
            patch = patch.flip(-1)
        if flips[1]:
            patch = patch.flip(-2)
        return patch

    def by_name_hash(self, count: int | None = None) -> list[int]:
        """Image indices ordered by the SHA-1 of their names: a fixed pick that favours no folder."""
        order = sorted(range(len(self)), key=lambda i: hashlib.sha1(self.names[i].encode()).hexdigest())
        return order[:count]

    def describe(self) -> dict:
        digest = hashlib.sha256("\n".join(self.names).encode()).hexdigest()
        return {"source": self.source.name, "split": self.split, "images": len(self.names), "resize": self.resize,
                "names_sha256": digest, "skipped": vars(self.skipped), "other_split_images": self.other_split}


def _decode(data: bytes, resize: int, min_side: int) -> tuple[np.ndarray | None, str | None]:
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            if "A" in img.getbands():
                alpha = np.asarray(img.getchannel("A"))
                if (alpha < 128).mean() > MAX_TRANSPARENT:
                    return None, "cutout"
            w, h = img.size
            if min(w, h) < min_side:
                return None, "small"
            scale = resize / min(w, h)
            rgb = Image.fromarray((_to_float_rgb(img) * 255.0 + 0.5).astype(np.uint8))
            if scale != 1:
                rgb = rgb.resize((max(resize, round(w * scale)), max(resize, round(h * scale))), Image.BICUBIC)
            arr = np.asarray(rgb, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None, "unreadable"
    if (arr.astype(np.float32) / 255.0).std(axis=(0, 1)).max() < MIN_STD:
        return None, "flat"
    return arr, None


def open_dataset(
    source: str | os.PathLike,
    split: str = "train",
    resize: int = DEFAULT_RESIZE,
    min_side: int = 64,
    held_out_fraction: float = DEFAULT_HELD_OUT,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    screen: Callable[[torch.Tensor], bool] | None = None,
) -> TextureDataset:
    """Decode the images of one split (train, held-out or all); fails in one line if none are usable.
    screen: keeps an image ([1, 3, H, W] in [0, 1], after resizing) when it returns True; the others
    are counted as `screened`, and their names kept in `dropped`."""
    if split not in SPLITS:
        raise TexportError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    source = Path(source)
    names, read = _members(source)
    if not names:
        raise TexportError(f"no images ({', '.join(READ_FORMATS)}) in {source}")
    chosen = [n for n in names if split == "all" or held_out(n, held_out_fraction) == (split == "held-out")]
    data = TextureDataset(source, split, resize, other_split=len(names) - len(chosen))
    for i, name in enumerate(chosen):
        if limit is not None and len(data) >= limit:
            break
        arr, why = _decode(read(name), resize, min_side)
        if arr is not None and screen is not None and not screen(torch.tensor(arr).permute(2, 0, 1)[None].float() / 255.0):
            arr, why = None, "screened"
            data.dropped.append(name)
        if arr is None:
            setattr(data.skipped, why, getattr(data.skipped, why) + 1)
        else:
            data.names.append(name)
            data.arrays.append(arr)
        if progress is not None:
            progress(i + 1, len(chosen))
    if not data.names:
        raise TexportError(f"no usable {split} images in {source} ({len(chosen)} candidates; skipped {data.skipped})")
    return data

