"""Where work runs: the torch device (a clear error instead of a CUDA traceback when no GPU is there),
and the environment variables that the processes a run starts (Ray's, the training ranks) inherit."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch

from texport.errors import TexportError


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """'auto' -> cuda if available else cpu; 'cuda' without a GPU is a one-line error."""
    if isinstance(name, torch.device):
        name = str(name)
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TexportError(f"device {name!r} requested but no CUDA GPU is available (use the cpu device)")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise TexportError(f"unknown device {name!r}: use cpu, cuda, cuda:N or auto")


def available_memory(device: torch.device) -> int | None:
    """Bytes free for new work on the device (CUDA: free device memory; CPU: Linux MemAvailable), or None if unknown."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


@contextlib.contextmanager
def environment(variables: dict[str, str]) -> Iterator[None]:
    """os.environ with `variables` set for the block, every one put back as it was (or removed) after it."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
