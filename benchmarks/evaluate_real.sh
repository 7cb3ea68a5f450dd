#!/usr/bin/env bash
# The model against the classical methods on the shared real files: `impute-cli evaluate` on
# tcw.nc (cloud holdouts, 50 % and 20 % observed) and alboranSST_small.nc (empirical and cloud
# holdouts) of ../shared/data, each run training its model on the held-out data only and scoring
# every method (impute-cli, kriging, DINEOF, Laplace, ...) on the same hidden cells.
# Not part of the test suite; run alone on the machine, from the project root, venv active
# (. .venv/bin/activate):
#   bash benchmarks/evaluate_real.sh OUT [STEPS]      (STEPS: training steps, default 3000)
# Time on 2 CPU cores: about 40 minutes at 3000 steps (tcw 5 minutes a run; alboranSST 15, three
# models on its 10 time steps).
# Writes OUT/<run>.json (the --json report), OUT/<run>.txt (the table), OUT/<run>.log and
# OUT/<run>/ (--report).
set -euo pipefail
out=${1:?usage: evaluate_real.sh OUT [STEPS]}
steps=${2:-3000}
data=../shared/data
mkdir -p "$out"
run() {  # name, then evaluate's arguments
  local name=$1; shift
  local t0=$SECONDS
  impute-cli evaluate "$@" --report "$out/$name" --json --quiet > "$out/$name.json" 2> "$out/$name.log"
  echo "== $name ($((SECONDS - t0)) s): impute-cli evaluate $*" | tee "$out/$name.txt"
  # the terminal table, rebuilt from the strict JSON (null for NaN)
  python -c "import json, sys; from impute_cli.evaluation.evaluate import format_table; print(format_table(json.load(open(sys.argv[1]))))" \
    "$out/$name.json" | tee -a "$out/$name.txt"
}
# tcw is complete: cloud holdouts leave 50 % and 20 % observed.
# It has no gaps of its own, so the empirical holdout does not apply to it.
run tcw-cloud-50 "$data/tcw.nc" --holdout cloud --fraction 0.5 --train-steps "$steps"
run tcw-cloud-20 "$data/tcw.nc" --holdout cloud --fraction 0.8 --train-steps "$steps"
# alboranSST_small: real clouds (45 % of sea cells missing), land excluded by its `mask`.
run alboran-empirical "$data/alboranSST_small.nc" --holdout empirical --fraction 0.2 --train-steps "$steps" --samples 8
run alboran-cloud "$data/alboranSST_small.nc" --holdout cloud --fraction 0.2 --train-steps "$steps"
