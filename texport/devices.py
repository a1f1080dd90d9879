"""Where work runs: the torch device (a clear error instead of a CUDA traceback when no GPU is there),
the precision of descriptor passes, and the environment variables that the processes a run starts
(Ray's, the training ranks) inherit."""

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


PRECISIONS = ("auto", "fp32", "bf16")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of CPUs that compute bf16 natively


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), as Linux reports it."""
    try:
        with open("/proc/cpuinfo") as info:
            flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    except OSError:
        return False
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def resolve_precision(name: str, device: torch.device | str) -> str:
    """'fp32' or 'bf16' for descriptor passes: 'auto' is bf16 on a CUDA GPU that supports it and on a CPU
    with native bf16 (where it about halves the time of a pass), else fp32."""
    if name not in PRECISIONS:
        raise TexportError(f"unknown precision {name!r}: choose {', '.join(PRECISIONS)}")
    if name != "auto":
        return name
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"
