#!/usr/bin/env bash
# Pipeline timing: `impute --samples` where users meet it. A global-like cube (31 x 161 x 320,
# the synthetic advected field under drifting clouds, 40 % gaps) with 64 samples, and 16 station
# series of 2000 steps (outages, 40 % gaps) with 32 samples; each beside its point estimate.
#
#   bash benchmarks/pipeline_timing.sh OUT
#
# One `quick` model per cube is trained first (kept in OUT/m-*). Every impute is the default
# command (intervals calibrated on the input), under GNU time. About 20 minutes on 2 CPU cores.
set -euo pipefail
out=$1
mkdir -p "$out"
uptime
python - "$out" <<'PY'
import sys
from pathlib import Path
from impute_cli.synthetic import write_demo
from impute_cli.testing import tiny_series_dataset, write_cube
out = Path(sys.argv[1])
write_demo(out / "global", T=31, H=161, W=320, pattern="cloud", observed=0.6, seed=0)
write_cube(tiny_series_dataset(T=2000, S=16, observed=0.6, seed=0), out / "series.nc")
PY
t() { local name=$1; shift; /usr/bin/time -f "$name: %e s, peak RSS %M KB" "$@" --overwrite --quiet; }
t "train global" impute-cli train "$out/global/gappy.nc" --out "$out/m-global"
t "train series" impute-cli train "$out/series.nc" --out "$out/m-series"
uptime
t "global point estimate" impute-cli impute "$out/global/gappy.nc" "$out/g0.nc" --model "$out/m-global"
t "global 64 samples" impute-cli impute "$out/global/gappy.nc" "$out/g64.nc" --model "$out/m-global" --samples 64
t "series point estimate" impute-cli impute "$out/series.nc" "$out/s0.nc" --model "$out/m-series"
t "series 32 samples" impute-cli impute "$out/series.nc" "$out/s32.nc" --model "$out/m-series" --samples 32
t "series 32 samples, not calibrated" impute-cli impute "$out/series.nc" "$out/s32r.nc" --model "$out/m-series" \
  --samples 32 --no-calibrate
uptime
