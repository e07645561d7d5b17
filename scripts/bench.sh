#!/usr/bin/env bash
# Reproducible speed measurement (issue: ELECT >= 3x faster than the reference on an H100).
# Runs `elect bench` for InstructPix2Pix (SD 1.5 sizes) and UltraEdit (SD3-medium sizes) with random
# weights, fp16, 512x512, T=100, N=10, t_stop=40, and writes one JSON per family to $OUT (default bench/);
# each mode's figures are in that file as soon as the mode completes.
#   ELECT=path/to/elect.dll  use a published build (default: dotnet run on src/Elect.Cli, Release)
#   DEVICE=cuda DTYPE=fp16 RUNS=3 MODELS="instructpix2pix ultraedit"
# Extra arguments go to every bench call and replace the script's own value of the same flag,
# e.g. `scripts/bench.sh --inference-steps 50 --modes plain,elect`.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench}
DEVICE=${DEVICE:-cuda}
DTYPE=${DTYPE:-fp16}
RUNS=${RUNS:-3}
MODELS=${MODELS:-instructpix2pix ultraedit}
mkdir -p "$OUT"
if [[ -n "${ELECT:-}" ]]; then run=(dotnet "$ELECT"); else run=(dotnet run --project src/Elect.Cli -c Release --); fi
defaults=(--device "$DEVICE" --dtype "$DTYPE" --resolution 512 --inference-steps 100 --candidates 10 --stopping-step 40
          --last-step-for-mask-extraction 20 --runs "$RUNS" --warmup 1 --modes plain,elect,best-of-n,elect-sequential)
declare -A given=()
for a in "$@"; do [[ "$a" == --* ]] && given["${a%%=*}"]=1; done
args=()
for ((i = 0; i < ${#defaults[@]}; i += 2)); do
  flag=${defaults[i]}
  [[ -n "${given[$flag]:-}" ]] || args+=("$flag" "${defaults[i+1]}")
done
for model in $MODELS; do
  out=()
  [[ -n "${given[--output]:-}" ]] || out=(--output "$OUT/$model-$DTYPE.json")
  "${run[@]}" bench --model "$model" "${args[@]}" "${out[@]}" "$@"
done
