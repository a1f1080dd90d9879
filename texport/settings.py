"""Typed parts from flat keyword settings: how a long list of options (a CLI command's, a Python
caller's) becomes the few dataclasses a function takes, each setting going to the part that has a
field of its name. An unknown setting is a TypeError, as for a function's unknown keyword."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping


def fill(parts: Mapping[str, type], settings: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """{part name: part(**its settings)}: each part (a dataclass) gets the settings named like its fields,
    `defaults` first where a setting is not given, then the part's own field defaults."""
    given = {**(defaults or {}), **settings}
    filled = {}
    for name, part in parts.items():
        fields = {f.name for f in dataclasses.fields(part)}
        filled[name] = part(**{key: given.pop(key) for key in list(given) if key in fields})
    if given:
        raise TypeError(f"unknown setting(s): {', '.join(sorted(given))} (known: parts {', '.join(parts)})")
    return filled
