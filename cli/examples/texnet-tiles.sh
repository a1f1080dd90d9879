#!/usr/bin/env bash
# Pipeline example: many different tileable textures from one shipped texture network.
#   bash cli/examples/texnet-tiles.sh pebbles out/ 16 512
# Each tile wraps around (its size is a multiple of the model's grid, 16); tile n uses seed n, so a
# re-run gives the same files.
set -euo pipefail
model=${1:?usage: texnet-tiles.sh MODEL OUT_DIR [COUNT] [SIZE]}
out=${2:?usage: texnet-tiles.sh MODEL OUT_DIR [COUNT] [SIZE]}
count=${3:-16}
size=${4:-512}
texport=${TEXPORT:-texport}
mkdir -p "$out"
"$texport" synth "$model" -o "$out/$model.png" --size "$size" --count "$count" --tileable --snap
