#!/usr/bin/env bash
# What limits the point estimate on the Gaussian-process cube (issue 3): the gp preset, the same
# with a denser training context, with 4-frame windows, and the space-time U-Net (gp_st), pixel
# and block gaps, point estimate scored against the exact posterior mean. Also the gp model fed
# every observed cell as context at test time (its card's context fraction set to 1).
# Run alone, venv active, from the project root:  bash benchmarks/gp_backbones.sh OUT [STEPS]
set -uo pipefail
W=${1:?usage: gp_backbones.sh OUT [STEPS]}; STEPS=${2:-2000}; mkdir -p "$W"
sed 's/^  context_ratio: 0.7$/  context_ratio: 0.9/' benchmarks/presets/gp.yaml > "$W/gp_ctx09.yaml"
sed 's/^  frames: 16$/  frames: 4/' benchmarks/presets/gp.yaml > "$W/gp_f4.yaml"
score() { python benchmarks/gp_exact.py score "$1" "$2" --var tas 2>/dev/null | grep "MSE ratio"; }
run() {  # pattern preset name
  local pat=$1 preset=$2 name=$3 t0=$SECONDS
  impute-cli train "$W/$pat/gappy.nc" --preset "$preset" --mask-pattern "$pat" --steps "$STEPS" \
    --out "$W/$pat/m-$name" --overwrite --quiet 2>/dev/null
  local t1=$SECONDS
  impute-cli impute "$W/$pat/gappy.nc" "$W/$pat/o-$name.nc" --model "$W/$pat/m-$name" --overwrite --quiet 2>/dev/null
  echo "== $pat $name (train $((t1 - t0)) s, impute $((SECONDS - t1)) s)"; score "$W/$pat" "$W/$pat/o-$name.nc"
}
full_context() {  # pattern name: the model fed every observed cell as context
  local pat=$1 name=$2
  rm -rf "$W/$pat/m-$name-full"; cp -r "$W/$pat/m-$name" "$W/$pat/m-$name-full"
  python - "$W/$pat/m-$name-full/model.yaml" <<'PY'
import sys, yaml
p = sys.argv[1]; c = yaml.safe_load(open(p)); c["mask_strategy"]["context_input_fraction"] = 1.0
yaml.safe_dump(c, open(p, "w"))
PY
  impute-cli impute "$W/$pat/gappy.nc" "$W/$pat/o-$name-full.nc" --model "$W/$pat/m-$name-full" --overwrite --quiet 2>/dev/null
  echo "== $pat $name, every observed cell as context"; score "$W/$pat" "$W/$pat/o-$name-full.nc"
}
for pat in pixel block; do
  [ -f "$W/$pat/gappy.nc" ] || python benchmarks/gp_exact.py make "$W/$pat" --pattern $pat > /dev/null
done
run pixel benchmarks/presets/gp.yaml gp; full_context pixel gp
run pixel "$W/gp_ctx09.yaml" gp_ctx09; full_context pixel gp_ctx09
run pixel "$W/gp_f4.yaml" gp_f4
run pixel benchmarks/presets/gp_st.yaml gp_st
run block benchmarks/presets/gp.yaml gp
run block benchmarks/presets/gp_st.yaml gp_st
