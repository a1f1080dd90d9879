"""Device choice with a clear error instead of a CUDA traceback when no GPU is there."""

from __future__ import annotations

import torch

from .errors import TexportError


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
