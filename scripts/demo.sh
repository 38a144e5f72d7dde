#!/usr/bin/env bash
# The main job (README): take a real KV-cache snapshot (default: the shipped SmolLM2 sample), store it
# with a packed low-bit codec (default: the main preset), and print what was stored (mqinfo) and what it
# cost and lost (mqverify: modeled vs actual bits per dim, fidelity against the lossless original).
#   scripts/demo.sh [INPUT [CODEC_SPEC]]
set -euo pipefail
cd "$(dirname "$0")/.."
input=${1:-$(ls data/sample/*.mqkv | head -n 1)}
codec=${2:-affine_seven_level_3bit_g64_meta4}
MQKV_TARGETS="mqconvert mqinfo mqverify" bash scripts/build.sh
mkdir -p out
name=$(basename "${input%.*}")
out="out/${name}.${codec//[^A-Za-z0-9_]/_}.mqkv"
echo "== mqconvert $input $out --codec $codec"
build/tools/mqconvert "$input" "$out" --codec "$codec"
echo
echo "== mqinfo $out"
build/tools/mqinfo "$out"
echo
echo "== mqverify $out --reference $input"
build/tools/mqverify "$out" --reference "$input"
