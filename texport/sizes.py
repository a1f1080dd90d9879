"""Output sizes: '512' or '1024x768' (width x height), checked against the allowed range."""

from __future__ import annotations

import os

from .errors import TexportError

MIN_SIZE = 16
DEFAULT_MAX_SIZE = 8192


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
            f"size {w}x{h} exceeds the maximum side of {limit} pixels (raise it with --max-size or TEXPORT_MAX_SIZE)"
        )
    return w, h
