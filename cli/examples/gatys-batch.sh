#!/usr/bin/env bash
# Synthesize a tileable texture for every image in a folder with the Gatys fallback.
#   cli/examples/gatys-batch.sh TEXTURES_DIR OUT_DIR [SIZE] [ITERS]
# Each result is OUT_DIR/NAME.png, with OUT_DIR/NAME.compare.png (exemplar | result) to look at.
# A failing image (unreadable, too small) is reported and skipped; the exit code counts failures.
set -uo pipefail
src="${1:?usage: $0 TEXTURES_DIR OUT_DIR [SIZE] [ITERS]}"
out="${2:?usage: $0 TEXTURES_DIR OUT_DIR [SIZE] [ITERS]}"
size="${3:-256}"
iters="${4:-400}"
mkdir -p "$out"
failed=0
for img in "$src"/*.{png,jpg,jpeg,tga,webp,bmp}; do
  [ -e "$img" ] || continue
  name="$(basename "${img%.*}")"
  if ! texport gatys "$img" -o "$out/$name.png" --compare "$out/$name.compare.png" \
      --size "$size" --iters "$iters" --tileable; then
    failed=$((failed + 1))
  fi
done
exit "$failed"
