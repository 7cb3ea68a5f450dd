#!/usr/bin/env bash
# Error bars and their coverage: sample the gaps of a synthetic cube whose truth is known, build
# 90 % confidence regions, calibrate them, and check them against the truth.
set -euo pipefail
out=${1:-uncertainty_demo}
mkdir -p "$out"
python - "$out" <<'PY'
import sys
from impute_cli.synthetic import write_demo
write_demo(sys.argv[1], T=48, H=32, W=32, pattern="cloud", observed=0.5, seed=1)
PY
impute-cli train "$out/gappy.nc" --out "$out/model" --steps 600 --overwrite --quiet
impute-cli impute "$out/gappy.nc" "$out/samples.nc" --model "$out/model" --samples 16 --save-samples --overwrite --quiet
impute-cli confidence "$out/samples.nc" "$out/regions.nc" --level 0.9 --truth "$out/truth.nc" --calibrate \
  --calibration-frames 48 --overwrite --quiet
ncdump -h "$out/regions.nc" | grep -E "sst_(std|lower|upper|ci_lower|ci_upper|ci_radius)\(" || true
