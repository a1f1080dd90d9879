"""Trained-model files: safetensors weights with a JSON manifest in the safetensors header.

One self-contained file per model, never pickled: the header's metadata entry ``texport`` holds
the JSON manifest (format, kind, architecture, training record, descriptor identity, texport
version). Loading accepts only this format and turns a truncated, foreign or mismatched file into
one TexportError line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from texport import __version__
from texport.errors import TexportError
from texport.files import write_bytes_atomic

FORMAT = "texport-model"
FORMAT_VERSION = 1
MANIFEST_KEY = "texport"
# A texture network's file also keeps the exemplar it was trained on (after its crop), 8-bit
# [3, H, W]: refining a sample (`synth --refine`) needs the target's Gram matrices, colours and
# Fourier modulus, and the exemplar is smaller than its PO-layer Gram matrices alone (1.4 MB fp32).
EXEMPLAR_KEY = "exemplar"


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, torch.Tensor], manifest: dict,
                    exemplar: torch.Tensor | None = None, more_exemplars: Mapping[str, torch.Tensor] | None = None) -> None:
    """Write weights (and the exemplar [1, 3, H, W] in [0, 1], as 8 bits) and manifest atomically
    (an existing file is replaced only by a complete one). more_exemplars: a solid network's other
    directions ({"y": image, "z": image}), kept as exemplar.y, exemplar.z."""
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "texport_version": __version__, **manifest}
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    for key, image in ([(EXEMPLAR_KEY, exemplar)] if exemplar is not None else []) + \
            [(f"{EXEMPLAR_KEY}.{name}", image) for name, image in (more_exemplars or {}).items()]:
        tensors[key] = (image.detach().float().cpu()[0].clamp(0, 1) * 255).round().to(torch.uint8).contiguous()
    # serialized in memory, then written by Python: a failed write (the disk full) is an OSError that
    # texport.files turns into one line, and the earlier file stays
    write_bytes_atomic(path, save(tensors, metadata={MANIFEST_KEY: json.dumps(header, sort_keys=True)}))


def training_chain(training: Mapping) -> list[Mapping]:
    """A manifest's `training` record and every start it was fine-tuned from (`initialized_from`, nested),
    the first run first: what a fine-tuned model's budget adds up."""
    chain = [training]
    while (chain[-1].get("initialized_from") or {}).get("iterations"):
        chain.append(chain[-1]["initialized_from"])
    return chain[::-1]


def read_manifest(path: str | os.PathLike) -> dict:
    """The manifest alone (cheap: reads the header only)."""
    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for every kind of damage
        raise TexportError(f"{path} is not a texport model (unreadable safetensors: {_short(exc)})") from None
    return _parse_manifest(path, meta)


def load_checkpoint(path: str | os.PathLike, kind: str | None = None,
                    manifest: dict | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict, manifest); checks the format, the kind if given, and that every tensor is readable.
    A manifest already read (texport.models.handle.Model) is not read again."""

    path = _existing(path)
    manifest = read_manifest(path) if manifest is None else manifest
    if kind is not None and manifest.get("kind") != kind:
        raise TexportError(f"{path} is a {manifest.get('kind')!r} model, expected {kind!r}")
    try:
        state = load_file(str(path))
    except Exception as exc:
        raise TexportError(f"{path} is damaged (truncated or corrupt weights: {_short(exc)})") from None
    for key in [k for k in state if k == EXEMPLAR_KEY or k.startswith(EXEMPLAR_KEY + ".")]:
        state.pop(key)
    return state, manifest


def stored_exemplar_names(path: str | os.PathLike) -> list[str]:
    """The exemplars a model file keeps: "" for the exemplar, then a solid network's other directions ("y", "z")."""
    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
    except Exception as exc:
        raise TexportError(f"{path} is damaged (unreadable tensors: {_short(exc)})") from None
    return [k.partition(".")[2] for k in sorted(keys) if k == EXEMPLAR_KEY or k.startswith(EXEMPLAR_KEY + ".")]


def load_stored_exemplar(path: str | os.PathLike, name: str = "") -> torch.Tensor | None:
    """The exemplar [1, 3, H, W] in [0, 1] a model file keeps, or None (files made before it was kept);
    name: a solid network's other direction ("y", "z")."""
    path = _existing(path)
    key = f"{EXEMPLAR_KEY}.{name}" if name else EXEMPLAR_KEY
    try:
        with safe_open(str(path), framework="pt") as f:
            if key not in f.keys():
                return None
            stored = f.get_tensor(key)
    except Exception as exc:
        raise TexportError(f"{path} is damaged (unreadable exemplar: {_short(exc)})") from None
    if stored.dtype != torch.uint8 or stored.dim() != 3 or stored.shape[0] != 3:
        raise TexportError(f"{path} keeps an exemplar of the wrong kind ({stored.dtype}, {list(stored.shape)})")
    return stored.float()[None] / 255


def check_state(path: str | os.PathLike, model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Load state into model, failing in one line if names or shapes differ from its architecture."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or extra or wrong:
        detail = "; ".join(
            f"{what}: {', '.join(names[:3])}{' …' if len(names) > 3 else ''}"
            for what, names in (("missing", missing), ("unexpected", extra), ("wrong shape", wrong)) if names
        )
        raise TexportError(f"{path} does not match its declared architecture ({detail})")
    model.load_state_dict(state)


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise TexportError(f"model file not found: {path}")
    return path


def _parse_manifest(path: Path, meta: Mapping[str, str]) -> dict:
    if MANIFEST_KEY not in meta:
        raise TexportError(f"{path} is a safetensors file without a texport manifest (not a texport model)")
    try:
        manifest = json.loads(meta[MANIFEST_KEY])
    except json.JSONDecodeError:
        raise TexportError(f"{path} has a corrupt texport manifest (invalid JSON)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise TexportError(f"{path} is not a texport model (manifest format {manifest.get('format') if isinstance(manifest, dict) else None!r})")
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise TexportError(
            f"{path} uses model format {manifest['format_version']}, newer than this texport ({__version__}) reads; upgrade texport"
        )
    return manifest


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:160] or type(exc).__name__
