"""How long the test suite takes: the quick loop (`pytest -m "not slow"`) and, optionally, the full suite.

Runs pytest in a subprocess as a developer would (after `bash cli/install.sh`), reads its summary
line and its slowest tests, and writes the "Test times" section of RESULTS.md. The load on the
machine while it ran (the 1-minute load average before and after) is recorded beside the times,
since a suite sharing its cores with a training run takes longer.

    python benchmarks/suite_times.py            # the quick loop
    python benchmarks/suite_times.py --full     # and the full suite (what CI runs)
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gatys as gatys_benchmark  # noqa: E402

ROOT = HERE.parent


def run(marker: str | None) -> dict:
    """Wall time, summary and the five slowest tests of one pytest run."""
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=5"] + (["-m", marker] if marker else [])
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    lines = done.stdout.strip().splitlines()
    summary = next((line.strip("= ") for line in reversed(lines) if re.search(r"\d+ (passed|failed)", line)), "no summary")
    slowest = [line.strip() for line in lines if re.match(r"\s*\d+\.\d+s (call|setup|teardown)", line)][:5]
    return {"what": f'-m "{marker}"' if marker else "everything", "seconds": seconds, "summary": summary,
            "exit": done.returncode, "slowest": slowest, "load": (load_before, os.getloadavg()[0])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also time the full suite (minutes more)")
    args = parser.parse_args()
    runs = [run("not slow")] + ([run(None)] if args.full else [])
    lines = ["## Test times (`benchmarks/suite_times.py`)", "",
             f"Machine: {gatys_benchmark.cpu_name()}, {os.cpu_count()} cores; measured {time.strftime('%Y-%m-%d')}. "
             "The quick loop is `pytest -m \"not slow\"`; CI (`bash tests/run.sh`) runs everything. Load: the 1-minute "
             "load average before and after the run (other work on the machine slows the suite).", "",
             "| tests | wall time | result | exit | load before / after | slowest |", "| --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        lines.append(f"| {r['what']} | {r['seconds'] / 60:.1f} min | {r['summary']} | {r['exit']} | "
                     f"{r['load'][0]:.1f} / {r['load'][1]:.1f} | {'; '.join(r['slowest'][:3])} |")
    gatys_benchmark.replace_section(gatys_benchmark.RESULTS, "test-times", "\n".join(lines) + "\n")
    print("\n".join(lines))
    if any(r["exit"] for r in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
