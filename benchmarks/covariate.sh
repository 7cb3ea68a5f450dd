#!/usr/bin/env bash
# A covariate: the demo cube's SST (96 days of 48 x 64, half observed under drifting clouds)
# with a gap-free, coarser and imperfect analysis of the same SST beside it
# (`synthetic.analysis_of`: smoothed by a Gaussian of 2 cells, plus an error field of its own,
# 0.5 degC). `impute-cli evaluate --holdout cloud --fraction 0.2` with the default preset,
# without and with `--covariate sst_analysis` (the same hidden cells: the holdout is drawn on
# the imputed variable; with the covariate, evaluate also ranks `regression_kriging`, the
# classical filler that uses it), and two more uses of the analysis scored on the same hidden
# cells: the analysis alone, and the analysis plus a Laplace fill of the observed increments.
# Then the same on a real field: tcw.nc (../shared/data; skipped when absent) with a synthetic
# analysis of it (blur of 2 cells, its own error 0.2 x the field's std), 50 % observed under
# drifting clouds (`--holdout cloud --fraction 0.5`).
# Not part of the test suite; run alone, from the project root, venv active:
#   bash benchmarks/covariate.sh OUT
# About 15 minutes on 2 idle CPU cores. Writes OUT/{plain,covariate,tcw_plain,tcw_covariate}.json
# and OUT/table.md.
set -euo pipefail
out=${1:?usage: covariate.sh OUT}
mkdir -p "$out"
python -c "from impute_cli.synthetic import write_demo as w; w('$out/data', covariate='sst_analysis')"
echo "== plain: load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
impute-cli evaluate "$out/data/gappy.nc" --var sst --keep "$out/plain" --json --quiet > "$out/plain.json" 2> "$out/plain.log"
echo "== covariate: load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
impute-cli evaluate "$out/data/gappy.nc" --covariate sst_analysis --keep "$out/covariate" --json --quiet \
  > "$out/covariate.json" 2> "$out/covariate.log"
tcw=../shared/data/tcw.nc
if [ -f "$tcw" ]; then
  python - "$tcw" "$out/tcw_cov.nc" <<'PY'
import sys
import xarray as xr
from impute_cli.synthetic import analysis_of
ds = xr.open_dataset(sys.argv[1]).load()
v = ds["tcw"].values.astype("float32")
ds["tcw_analysis"] = (ds["tcw"].dims, analysis_of(v, seed=0, error=0.2 * float(v.std())),
                      {"units": ds["tcw"].attrs.get("units", ""), "long_name": "synthetic analysis of tcw"})
ds.to_netcdf(sys.argv[2])
PY
  for run in "tcw_plain --var tcw" "tcw_covariate --covariate tcw_analysis"; do
    echo "== ${run%% *}: load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    impute-cli evaluate "$out/tcw_cov.nc" --holdout cloud --fraction 0.5 ${run#* } --json --quiet \
      > "$out/${run%% *}.json" 2> "$out/${run%% *}.log"
  done
fi
echo "== done: load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python - "$out" <<'EOF'
import json, sys
from pathlib import Path
import numpy as np
import xarray as xr
from impute_cli.evaluation.baselines import laplace

out = Path(sys.argv[1])
gappy = xr.open_dataset(out / "covariate" / "gappy.nc")
truth = xr.open_dataset(out / "covariate" / "truth.nc")["sst"].values
g, a = gappy["sst"].values, gappy["sst_analysis"].values
hidden = np.isfinite(truth) & ~np.isfinite(g)
valid = np.ones(g.shape[1:], bool)
def rmse(est): return float(np.sqrt(np.mean((est[hidden] - truth[hidden]) ** 2)))
plain, cov = (json.loads((out / f"{n}.json").read_text())["variables"]["sst"] for n in ("plain", "covariate"))
best = next(m for m in plain["ranking"] if m != "impute-cli")
secs = {n: json.loads((out / f"{n}.json").read_text())["model"]["train_seconds"] for n in ("plain", "covariate")}
rows = [("impute-cli, sst alone", plain["methods"]["impute-cli"]["rmse"], secs["plain"]),
        ("impute-cli, --covariate sst_analysis", cov["methods"]["impute-cli"]["rmse"], secs["covariate"]),
        (f"best classical filler of sst alone ({best})", plain["methods"][best]["rmse"], None),
        ("regression_kriging (evaluate, with the covariate)", cov["methods"]["regression_kriging"]["rmse"],
         None),
        ("the analysis alone", rmse(a), None),
        ("analysis + Laplace fill of the increments", rmse(a + laplace(g - a, valid)), None)]
lines = ["| method | RMSE (degC) | training (s) |", "|---|---|---|"]
lines += [f"| {n} | {e:.4f} | {'' if t is None else f'{t:.0f}'} |" for n, e, t in rows]
if (out / "tcw_covariate.json").exists():
    runs = {n: json.loads((out / f"{n}.json").read_text()) for n in ("tcw_plain", "tcw_covariate")}
    lines += ["", "| tcw, 50 % observed | RMSE (kg m-2) | rank | training (s) |", "|---|---|---|---|"]
    for n, r in runs.items():
        v = r["variables"]["tcw"]
        lines += [f"| {m} ({n}) | {v['methods'][m]['rmse']:.4f} | {v['ranking'].index(m) + 1} | "
                  f"{r['model']['train_seconds'] if m == 'impute-cli' else ''} |" for m in v["ranking"][:2]]
(out / "table.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
