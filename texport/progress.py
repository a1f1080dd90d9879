"""The progress callbacks long operations take, so the CLI can draw one bar for any of them.

A library function reports and never draws: the typer commands (texport.commands.options.progress_bar)
turn these calls into a bar on stderr, and Python callers pass their own or nothing.
"""

from __future__ import annotations

from typing import Callable

StepProgress = Callable[[int, float], None]  # (steps done so far, the current loss): optimizations and training
CountProgress = Callable[[int, int], None]  # (this many more done, of this total): tiles, bands, batch jobs
