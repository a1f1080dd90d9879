#!/usr/bin/env bash
# The test command: set everything up, then run the suite. Extra arguments go to pytest.
#   cli/install.sh                 texport, torch, the descriptor (.venv)
#   cli/examples/cpp/build.sh      the C++ host (onnxruntime headers from Debian, g++)
#   cli/examples/web/setup.sh      the browser page (onnxruntime-web from npm, its model)
#   Debian's chromium              the page's screenshot test (installed when running as root)
#   Debian's blender, xvfb         the Blender add-on's tests, headless and in a virtual display (as root)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/cli/install.sh"
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "texport: installing Debian's chromium for the browser test" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  else
    echo "texport: no chromium and not root: the browser screenshot test will be skipped (apt-get install chromium)" >&2
  fi
fi
if ! command -v blender >/dev/null 2>&1 || ! command -v xvfb-run >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "texport: installing Debian's blender and xvfb for the add-on tests" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends blender xvfb xauth >/dev/null
  else
    echo "texport: no blender or xvfb-run and not root: Blender add-on tests will be skipped (apt-get install blender xvfb xauth)" >&2
  fi
fi
TEXPORT_VENV="${TEXPORT_VENV:-$root/.venv}" bash "$root/cli/examples/cpp/build.sh"
TEXPORT_VENV="${TEXPORT_VENV:-$root/.venv}" bash "$root/cli/examples/web/setup.sh"
cd "$root"
exec "${TEXPORT_VENV:-$root/.venv}/bin/python" -m pytest -q "$@"
