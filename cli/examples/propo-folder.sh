#!/usr/bin/env bash
# Pipeline example: a tileable texture like each image of a folder, from the one shipped ProPO model.
#   bash cli/examples/propo-folder.sh photos/ out/ 512
# Each output wraps around (the size is snapped to a multiple of 16); seed 0, so a re-run gives the
# same files. --stages also writes NAME-stages.png (noise, the five stage images, the target).
set -euo pipefail
src=${1:?usage: propo-folder.sh IN_DIR OUT_DIR [SIZE]}
out=${2:?usage: propo-folder.sh IN_DIR OUT_DIR [SIZE]}
size=${3:-512}
texport=${TEXPORT:-texport}
mkdir -p "$out"
shopt -s nullglob nocaseglob
for image in "$src"/*.{png,jpg,jpeg,tga,webp,bmp}; do
  name=$(basename "${image%.*}")
  "$texport" synth propo --texture "$image" -o "$out/$name.png" --size "$size" --tileable --snap --stages
done
