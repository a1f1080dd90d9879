#!/usr/bin/env python3
"""Build the add-on's installable zip: texport_blender/ plus _project.py, which records this checkout
so that the add-on finds texport in its .venv (cli/install.sh) without being told.

    python3 cli/examples/blender/build_zip.py [-o OUT.zip] [--project ROOT]

Default output: cli/examples/blender/build/texport_blender.zip. Install it in Blender with
Edit > Preferences > Add-ons > Install..., then tick "Material: texport". Any Python 3.8+ runs it.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = HERE / "texport_blender"
ROOT = HERE.parents[2]


def build(output: Path, project: Path = ROOT) -> Path:
    files = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts and p.name != "_project.py")
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    try:
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in files:
                zf.write(path, f"{PACKAGE.name}/{path.relative_to(PACKAGE).as_posix()}")
            zf.writestr(f"{PACKAGE.name}/_project.py",
                        '"""Written by build_zip.py: the checkout whose .venv holds texport."""\n\n'
                        f"ROOT = {str(project.resolve())!r}\n")
        partial.replace(output)  # a complete zip or none
    finally:
        partial.unlink(missing_ok=True)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=HERE / "build" / "texport_blender.zip")
    parser.add_argument("--project", type=Path, default=ROOT, help="checkout whose .venv/bin/texport the add-on uses")
    args = parser.parse_args(argv)
    out = build(args.output, args.project)
    print(f"wrote {out} (install: Edit > Preferences > Add-ons > Install..., then enable 'Material: texport'; "
          f"texport found in {args.project.resolve()}/.venv or on PATH)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
