#!/usr/bin/env bash
# Build the C++ host (texport_host.cpp) into build/ beside this script. Safe to re-run: the headers are
# fetched once and the program is rebuilt only when its source, this script or the library changed.
#
# - The library: the onnxruntime (or onnxruntime-gpu) wheel in texport's virtual environment
#   (${TEXPORT_VENV:-REPO/.venv}) ships onnxruntime/capi/libonnxruntime.so.1.X.Y. Its soname is
#   libonnxruntime.so.1, which the wheel does not provide, so build/lib/libonnxruntime.so.1 links to
#   it and the program finds it there through an rpath ($ORIGIN/lib).
# - The headers: the wheel has none. Debian's libonnxruntime-dev (trixie) carries them; it is fetched
#   with apt-get download through a sources list, state and cache of its own under build/ (the
#   machine's apt setup is not touched, no root needed) and unpacked with dpkg-deb -x into
#   build/onnxruntime-dev/. Headers of API version N work with any newer library.
#   ORT_INCLUDE_DIR=DIR uses headers you already have instead; DEBIAN_MIRROR overrides the mirror
#   (default http://deb.debian.org/debian); DEBIAN_KEYRING the keyring that signs trixie
#   (default /usr/share/keyrings/debian-archive-keyring.gpg, from debian-archive-keyring).
# Needs: bash, g++ (C++17), nm (binutils), apt-get and dpkg-deb (Debian or a derivative).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
venv="${TEXPORT_VENV:-$root/.venv}"
build="$here/build"
say() { echo "build.sh: $*" >&2; }
die() { say "$*"; exit 1; }

# --- the library, from the wheel -------------------------------------------------------------------
[ -d "$venv" ] || die "no virtual environment at $venv (run cli/install.sh, or set TEXPORT_VENV)"
venv="$(cd "$venv" && pwd)"
capi=onnxruntime/capi/libonnxruntime.so.1.*
libs=("$venv"/lib/python3*/site-packages/$capi "$venv"/lib64/python3*/site-packages/$capi)
[ -f "${libs[0]}" ] || die "no $capi in $venv (is onnxruntime installed? run cli/install.sh)"
lib="${libs[0]}"
symbols="$(nm -D --defined-only "$lib")" || die "nm cannot read $lib"
[[ "$symbols" == *" OrtGetApiBase"* ]] || die "$lib does not export OrtGetApiBase"

# --- the headers, from Debian's libonnxruntime-dev (trixie) ----------------------------------------
include="${ORT_INCLUDE_DIR:-$build/onnxruntime-dev/usr/include/onnxruntime}"
if [ ! -f "$include/onnxruntime_cxx_api.h" ]; then
  [ -z "${ORT_INCLUDE_DIR:-}" ] || die "ORT_INCLUDE_DIR=$ORT_INCLUDE_DIR has no onnxruntime_cxx_api.h"
  mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
  keyring="${DEBIAN_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}"
  command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null \
    || die "apt-get and dpkg-deb are needed to fetch the headers (or set ORT_INCLUDE_DIR)"
  [ -f "$keyring" ] \
    || die "no Debian archive keyring at $keyring (apt-get install debian-archive-keyring, or set DEBIAN_KEYRING)"
  say "fetching the onnxruntime headers: libonnxruntime-dev from Debian trixie ($mirror)"
  mkdir -p "$build"
  apt="$(mktemp -d "$build/apt.XXXXXX")"
  trap 'rm -rf "$apt"' EXIT
  mkdir -p "$apt/etc/sources.list.d" "$apt/etc/preferences.d" "$apt/state/lists/partial" \
           "$apt/cache/archives/partial" "$apt/deb"
  echo "deb [signed-by=$keyring] $mirror trixie main" > "$apt/etc/sources.list"
  opts=(-q -o "Dir::Etc::SourceList=$apt/etc/sources.list" -o "Dir::Etc::SourceParts=$apt/etc/sources.list.d"
        -o "Dir::Etc::Preferences=$apt/etc/preferences" -o "Dir::Etc::PreferencesParts=$apt/etc/preferences.d"
        -o "Dir::State=$apt/state" -o "Dir::State::status=/dev/null" -o "Dir::Cache=$apt/cache")
  # as root apt downloads as the _apt user, who may not be allowed to write under this folder
  [ "$(id -u)" != 0 ] || opts+=(-o "APT::Sandbox::User=root")
  apt-get "${opts[@]}" -o APT::Update::Error-Mode=any update >&2 || die "apt-get update of Debian trixie failed (network? DEBIAN_MIRROR?)"
  (cd "$apt/deb" && apt-get "${opts[@]}" download libonnxruntime-dev >&2) \
    || die "apt-get download libonnxruntime-dev failed"
  debs=("$apt"/deb/libonnxruntime-dev_*.deb)
  dpkg-deb -x "${debs[0]}" "$apt/x"
  rm -rf "$build/onnxruntime-dev"
  mv "$apt/x" "$build/onnxruntime-dev"  # in place only once complete
  say "headers: $(basename "${debs[0]}") -> $build/onnxruntime-dev"
fi
[ -f "$include/onnxruntime_cxx_api.h" ] || die "no onnxruntime_cxx_api.h under $include"

# --- the program ------------------------------------------------------------------------------------
mkdir -p "$build/lib"
exe="$build/texport_host"
if [ "$(readlink "$build/lib/libonnxruntime.so.1" || true)" != "$lib" ]; then
  ln -sfn "$lib" "$build/lib/libonnxruntime.so.1"
  rm -f "$exe"  # another library: link again
fi
if [ -x "$exe" ] && [ "$exe" -nt "$here/texport_host.cpp" ] && [ "$exe" -nt "${BASH_SOURCE[0]}" ] \
   && [ "$exe" -nt "$include/onnxruntime_cxx_api.h" ]; then
  say "up to date: $exe"
  exit 0
fi
say "compiling $exe against $(basename "$lib")"
g++ -std=c++17 -O2 -Wall -Wextra -I"$include" "$here/texport_host.cpp" -o "$exe.tmp" \
    "$build/lib/libonnxruntime.so.1" -Wl,-rpath,'$ORIGIN/lib'
mv "$exe.tmp" "$exe"
say "built $exe"
