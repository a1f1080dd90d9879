"""Output sizes: '512' or '1024x768' (width x height), checked, and planned onto a model's grid.

A generator takes sides that are multiples of its size multiple (a texture network's 2^(scales-1),
ProPO's 16) and at least its smallest side. Any requested size >= 16 is served by generating the
next size on the grid and cropping its top-left corner, so a window of the noise field keeps its
meaning whatever the requested size. A cropped output no longer wraps around, so a tileable
request off the grid is refused in one line, or snapped to the nearest size on it. `plan_size` is
the one place that decides this, for every backend, `synth` and the quality dial.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import texport.defaults as defaults
from texport.errors import TexportError

MIN_SIZE = 16
DEFAULT_MAX_SIZE = defaults.SIZE_LIMIT


def max_size() -> int:
    """The largest side accepted; TEXPORT_MAX_SIZE overrides the default."""
    value = os.environ.get("TEXPORT_MAX_SIZE")
    if not value:
        return DEFAULT_MAX_SIZE
    try:
        return int(value)
    except ValueError:
        raise TexportError(f"TEXPORT_MAX_SIZE must be an integer, got {value!r}") from None


def parse_size(text: str | int | tuple[int, int]) -> tuple[int, int]:
    """Return (width, height) from 512, '512', '1024x768' or (1024, 768)."""
    if isinstance(text, int):
        return text, text
    if isinstance(text, tuple):
        return int(text[0]), int(text[1])
    parts = str(text).lower().replace("*", "x").split("x")
    try:
        if len(parts) == 1:
            w = h = int(parts[0])
        elif len(parts) == 2:
            w, h = int(parts[0]), int(parts[1])
        else:
            raise ValueError
    except ValueError:
        raise TexportError(f"size must be N or WxH (e.g. 512 or 1024x768), got {text!r}") from None
    return w, h


def check_size(size: tuple[int, int], limit: int | None = None) -> tuple[int, int]:
    """Reject sides below MIN_SIZE or above the configured maximum."""
    limit = max_size() if limit is None else limit
    w, h = size
    if min(w, h) < MIN_SIZE:
        raise TexportError(f"size {w}x{h} is too small: each side must be at least {MIN_SIZE} pixels")
    if max(w, h) > limit:
        raise TexportError(
            f"size {w}x{h} exceeds the maximum side of {limit} pixels (raise the size limit, or set TEXPORT_MAX_SIZE)"
        )
    return w, h


@dataclass(frozen=True)
class SizePlan:
    """What the user gets (width x height) and what the generator computes (grid_width x grid_height,
    on the model's grid); the output is the grid image's top-left crop."""

    width: int
    height: int
    grid_width: int
    grid_height: int


def grid_size(width: int, height: int, multiple: int, min_side: int = 1) -> tuple[int, int]:
    """The smallest (W, H) >= the request with both sides multiples of `multiple` and >= min_side."""
    return tuple(max(min_side, -(-s // multiple) * multiple) for s in (width, height))  # type: ignore[return-value]


def tileable_size(width: int, height: int, multiple: int, snap: bool) -> tuple[int, int]:
    """The request if it wraps exactly, the nearest multiples if snap, else a one-line error."""
    if width % multiple == 0 and height % multiple == 0:
        return width, height
    near = tuple(max(multiple, round(s / multiple) * multiple) for s in (width, height))
    if snap:
        return near  # type: ignore[return-value]
    raise TexportError(
        f"a tileable output needs sides that are multiples of {multiple}; {width}x{height} would be a crop "
        f"that does not wrap (the nearest that does: {near[0]}x{near[1]}; snapping picks it)"
    )


def plan_size(size: "str | int | tuple[int, int] | SizePlan", multiple: int = 1, min_side: int = MIN_SIZE,
              tileable: bool = False, snap: bool = False, limit: int | None = None) -> SizePlan:
    """Parse and check a requested size and place it on a generator's grid (a plan is returned as is)."""
    if isinstance(size, SizePlan):
        return size
    width, height = check_size(parse_size(size), limit)
    if tileable:
        width, height = tileable_size(width, height, multiple, snap)
        if min(width, height) < min_side:
            raise TexportError(f"a tileable output of this model needs sides of at least {min_side}, got {width}x{height}")
    return SizePlan(width, height, *grid_size(width, height, multiple, min_side))
