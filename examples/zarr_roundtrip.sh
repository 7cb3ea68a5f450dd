#!/usr/bin/env bash
# A Zarr store in, a Zarr store out; without --model a quick model is trained on the input first.
set -euo pipefail
python - <<'PY'
from impute_cli.synthetic import demo_datasets
gappy, _ = demo_datasets(T=32, H=32, W=32, pattern="cloud", observed=0.5)
gappy.to_zarr("demo_gappy.zarr", mode="w")
PY
impute-cli impute demo_gappy.zarr demo_filled.zarr --train-steps 300 --overwrite
python -c "import xarray as xr; print(xr.open_zarr('demo_filled.zarr'))"
