"""Files: atomic writes and content hashes.

An output is written to a temporary file beside the target and renamed over it only when complete,
so a crash, a full disk or Ctrl-C never leaves a half-written output, and an existing file is only
replaced by a complete new one. `sha256_file` names a file's content (model files in caches, engine
sidecars, batch jobs) without importing what wrote it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from texport.errors import TexportError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it to `path` if the block succeeds."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise TexportError(f"output folder does not exist: {folder}")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise write_error(target, exc) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, target)
    except BaseException as exc:
        tmp_path.unlink(missing_ok=True)
        if isinstance(exc, OSError):  # a full disk, a file-size limit, a folder gone: one line naming the output
            raise write_error(target, exc) from None
        raise


def write_error(target: Path, exc: OSError) -> TexportError:
    """The one-line error of a write that failed (the disk full, a file-size limit): the output and why."""
    return TexportError(f"cannot write {target}: {(exc.strerror or str(exc)).lower()} (an existing file is left as it was)")


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_folder(kind: str) -> Path:
    """$TEXPORT_CACHE/KIND (default ~/.cache/texport/KIND), created: where derived files (ONNX exports,
    Ray workers' copies of models) are kept between runs."""
    folder = Path(os.environ.get("TEXPORT_CACHE", Path.home() / ".cache" / "texport")) / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder
