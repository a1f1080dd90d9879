#!/usr/bin/env bash
# Set up the browser example: onnxruntime-web (and playwright-core, for the test) from
# package-lock.json into node_modules/, and the networks exported to models/NAME.onnx.
#
#   bash cli/examples/web/setup.sh [MODEL...]     (default: pebbles and pebbles-solid, the Texture and
#                                                  Solid tabs' models; any shipped texture or solid network)
#
# Safe to re-run and fast then: npm runs only when package-lock.json changed, a model is exported
# only when it is missing or texport (its code or the shipped weights) is newer than the file.
# TEXPORT_VENV picks the virtual environment (default: the repository's .venv, from cli/install.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
venv="${TEXPORT_VENV:-$root/.venv}"
cd "$here"

command -v node >/dev/null || { echo "setup.sh: node (v18 or newer) is needed; e.g. apt-get install nodejs npm" >&2; exit 1; }
[ -x "$venv/bin/texport" ] || { echo "setup.sh: no texport in $venv (run cli/install.sh first, or set TEXPORT_VENV)" >&2; exit 1; }

# 1. npm packages, pinned by package-lock.json
stamp=node_modules/.texport-lock.sha256
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
    echo "$want" > "$stamp"
fi

# 2. the models, exported by texport
mkdir -p models
names=("$@")
[ $# -gt 0 ] || names=(pebbles pebbles-solid)
for name in "${names[@]}"; do
    out="models/$name.onnx"
    weights="$root/trained/$name.safetensors"
    if [ -f "$out" ] && [ -z "$(find "$root/texport" "$weights" -newer "$out" -name '*.py' -o -newer "$out" -name '*.safetensors' 2>/dev/null | head -1)" ]; then
        continue
    fi
    OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" "$venv/bin/texport" export "$out" --model "$name"
done
echo "web example ready: python3 -m http.server -d $here -b 127.0.0.1 8000, then open http://127.0.0.1:8000/"
