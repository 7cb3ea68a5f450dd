#!/usr/bin/env bash
# Solvers of the samples: CRPS and raw interval coverage on a real file's held-out cells, for the
# DDIM solver at 20 and 10 steps and DPM-Solver++(2M) at 10 and 6 steps, one model for all.
#
#   bash benchmarks/solvers.sh OUT [DATA] [TRAIN_STEPS] [SAMPLES]
#
# DATA defaults to ../shared/data/tcw.nc (cloud holdout, 20 % of the observed cells hidden),
# TRAIN_STEPS to 1500, SAMPLES to 16. The first run trains a `quick` model on the held-out cube
# (kept in OUT/files/model); the others score that model with each solver. About 15 minutes on
# 2 CPU cores. Writes OUT/<solver><steps>.json (evaluate's report) and prints a Markdown table.
set -euo pipefail
out=$1; data=${2:-../shared/data/tcw.nc}; train=${3:-1500}; n=${4:-16}
mkdir -p "$out"
uptime
run() {  # solver steps [extra evaluate options]
  local s=$1 k=$2; shift 2
  local t0=$(date +%s)
  impute-cli evaluate "$data" --holdout cloud --fraction 0.2 --samples "$n" --solver "$s" --sampler-steps "$k" \
    --json --quiet "$@" > "$out/$s$k.json"
  echo "$s $k: $(( $(date +%s) - t0 )) s" >&2
}
run ddim 20 --train-steps "$train" --keep "$out/files" --overwrite
for cfg in "dpm2m 10" "ddim 10" "dpm2m 6"; do run $cfg --model "$out/files/model"; done
uptime
python - "$out" <<'PY'
import json, sys
from pathlib import Path
print("| solver | steps | CRPS | mean spread | 50 % cells | 90 % cells | impute s |")
print("|---|---|---|---|---|---|---|")
for name in ("ddim20", "dpm2m10", "ddim10", "dpm2m6"):
    r = json.loads((Path(sys.argv[1]) / f"{name}.json").read_text())
    v = next(iter(r["variables"].values()))
    m, L = v["methods"]["impute-cli"], v["methods"]["impute-cli"]["levels"]
    solver = name.rstrip("0123456789")
    print(f"| {solver} | {name[len(solver):]} | {m['crps']:.4f} | {m['mean_std']:.3f} | "
          f"{100 * L['0.5']['cell_coverage']:.1f} % | {100 * L['0.9']['cell_coverage']:.1f} % | {r['model']['impute_seconds']} |")
PY
