#!/usr/bin/env bash
# The push-pull input (network.prefill_input) on the Gaussian-process cube: the gp preset with and
# without it, 1000 training steps, pixel and block gaps, point estimate scored against the exact
# posterior mean. Run alone, venv active, from the project root:  bash benchmarks/prefill_gp.sh OUT
set -uo pipefail
W=${1:?usage: prefill_gp.sh OUT}; mkdir -p "$W"
cp benchmarks/presets/gp.yaml "$W/gp.yaml"
sed 's/^  blocks_per_level: 1$/  blocks_per_level: 1\n  prefill_input: true/' benchmarks/presets/gp.yaml > "$W/gp_prefill.yaml"
for pat in pixel block; do
  [ -f "$W/$pat/gappy.nc" ] || python benchmarks/gp_exact.py make "$W/$pat" --pattern $pat > /dev/null
  for p in gp gp_prefill; do
    t0=$SECONDS
    impute-cli train "$W/$pat/gappy.nc" --preset "$W/$p.yaml" --steps 1000 --out "$W/$pat/m-$p" --overwrite --quiet 2>/dev/null
    impute-cli impute "$W/$pat/gappy.nc" "$W/$pat/o-$p.nc" --model "$W/$pat/m-$p" --overwrite --quiet 2>/dev/null
    echo "== $pat $p ($((SECONDS - t0)) s)"
    python benchmarks/gp_exact.py score "$W/$pat" "$W/$pat/o-$p.nc" --var tas 2>/dev/null | grep -i "MSE ratio"
  done
done
