#!/usr/bin/env bash
# Block gaps on the GP cube with the context samplers of session 7 (issue 3): U-Net with
# train.augment (benchmarks/presets/gp_aug.yaml), trained on the seed-0 block cube with the
# `block` context (lasting outages: runs of frames of any length) for two training seeds and with
# the `empirical` context (the cube's own gaps), and the space-time U-Net (gp_st_aug.yaml) with
# the `block` context; each scored on its own gaps and on another
# realisation (seed 1), with one member against the exact conditional mean; then the perfect-
# network limit of both samplers and the error by distance in time. The "whole-window" rows of
# RESULTS.md need the sampler of commit 8fcc322.
# Run alone, venv active, from the project root:  bash benchmarks/gp_block_context.sh OUT [STEPS]
set -uo pipefail
W=${1:?usage: gp_block_context.sh OUT [STEPS]}; STEPS=${2:-2000}; mkdir -p "$W"
for c in block block_s1; do
  [ -f "$W/$c/gappy.nc" ] || python benchmarks/gp_exact.py make "$W/$c" --pattern block \
    --seed "$([ $c = block ] && echo 0 || echo 1)" > /dev/null
done
run() {  # name context seed [preset]
  local m="$W/block/m-$1" t0=$SECONDS
  impute-cli train "$W/block/gappy.nc" --preset "${4:-benchmarks/presets/gp_aug.yaml}" --mask-pattern "$2" \
    --steps "$STEPS" --seed "$3" --out "$m" --overwrite --quiet 2>/dev/null
  echo "== $1: $2 context, training seed $3, $STEPS steps (train $((SECONDS - t0)) s)"
  for c in block block_s1; do
    impute-cli impute "$W/$c/gappy.nc" "$W/$c/o-$1.nc" --model "$m" --overwrite --quiet 2>/dev/null
    echo "$c: $(python benchmarks/gp_exact.py score "$W/$c" "$W/$c/o-$1.nc" --var tas | grep 'MSE ratio')"
    python benchmarks/gp_member_probe.py "$W/$c" "$m" | tail -2
  done
}
run runs block 0; run runs_s1 block 1; run emp empirical 0
run st_runs block 0 benchmarks/presets/gp_st_aug.yaml  # the space-time U-Net
echo "== perfect network: block context, then empirical"
python benchmarks/gp_method_limit.py "$W/block" --pattern block --runs 16:0.7 --save "$W/limit_block"
python benchmarks/gp_method_limit.py "$W/block" --pattern block --context empirical --runs 16:0.7
echo "== by distance in time to the nearest observation"
python benchmarks/gp_by_distance.py "$W/block" "$W/limit_block-1.npy" "$W/block/o-runs.nc" "$W/block/o-st_runs.nc"
