#!/usr/bin/env bash
# A covariate: fill cloudy SST with a gap-free analysis of the same SST beside it (a synthetic
# cube whose truth is known). The model sees the analysis as context only; the output has
# sst_filled, never sst_analysis_filled. Then evaluate ranks the model with and without it
# against the classical fillers, regression kriging on the analysis included.
set -euo pipefail
out=${1:-covariate_demo}
mkdir -p "$out"
python - "$out" <<'PY'
import sys
from impute_cli.synthetic import write_demo
write_demo(sys.argv[1], T=48, H=32, W=32, pattern="cloud", observed=0.5, seed=1, covariate="sst_analysis")
PY
impute-cli train "$out/gappy.nc" --covariate sst_analysis --out "$out/model" --steps 600 --overwrite --quiet
impute-cli impute "$out/gappy.nc" "$out/filled.nc" --model "$out/model" --overwrite --quiet
ncdump -h "$out/filled.nc" | grep -E "^\s+(float|byte) " || true
impute-cli evaluate "$out/gappy.nc" --covariate sst_analysis --train-steps 600 --quiet
impute-cli evaluate "$out/gappy.nc" --var sst --train-steps 600 --quiet
