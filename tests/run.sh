#!/usr/bin/env bash
# The test command: set everything up (cli/install.sh), then run the suite. Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/cli/install.sh"
cd "$root"
exec "${TEXPORT_VENV:-$root/.venv}/bin/python" -m pytest -q "$@"
