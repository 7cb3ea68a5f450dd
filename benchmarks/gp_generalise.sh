#!/usr/bin/env bash
# Does the model learn the GP's interpolation or the training record? (issue 3, session 6.)
# Every model is trained on the seed-0 cube and scored twice against the exact posterior: on the
# gaps of that cube (what `impute` on the training file gives) and on another realisation of the
# same process (seed 1, never seen). Then the per-member probe (gp_member_probe.py) and the
# perfect-network limit of the method (gp_method_limit.py). Presets differ from
# benchmarks/presets/gp.yaml (or gp_st.yaml) only in the line named.
# Run alone, venv active, from the project root:  bash benchmarks/gp_generalise.sh OUT [STEPS]
set -uo pipefail
W=${1:?usage: gp_generalise.sh OUT [STEPS]}; STEPS=${2:-2000}; mkdir -p "$W"
variant() {  # base-preset name python-statements-on-c
  python - "$1" "$W/$2.yaml" "$3" <<'PY'
import sys, yaml
c = yaml.safe_load(open(sys.argv[1])); exec(sys.argv[3]); yaml.safe_dump(c, open(sys.argv[2], "w"))
PY
}
AUG='c["train"]["augment"] = ["flip", "reverse_time"]'
variant benchmarks/presets/gp.yaml gp "pass"
variant benchmarks/presets/gp.yaml gp_aug "$AUG"
variant benchmarks/presets/gp.yaml gp_noclim 'c["network"]["climatology_input"] = False'
variant benchmarks/presets/gp.yaml gp_prefill 'c["network"]["prefill_input"] = True'
variant benchmarks/presets/gp.yaml gp_low09 'c["diffusion"]["low_noise_fraction"] = 0.9'
variant benchmarks/presets/gp_st.yaml gp_st "pass"
variant benchmarks/presets/gp_st.yaml gp_st_aug "$AUG"
for pat in pixel block; do
  [ -f "$W/$pat/gappy.nc" ] || python benchmarks/gp_exact.py make "$W/$pat" --pattern $pat > /dev/null
  [ -f "$W/${pat}_s1/gappy.nc" ] || python benchmarks/gp_exact.py make "$W/${pat}_s1" --pattern $pat --seed 1 > /dev/null
done
score() {  # pattern model name
  for c in "$1" "$1_s1"; do
    impute-cli impute "$W/$c/gappy.nc" "$W/$c/o-$3.nc" --model "$2" --overwrite --quiet 2>/dev/null
    echo "$c: $(python benchmarks/gp_exact.py score "$W/$c" "$W/$c/o-$3.nc" --var tas 2>/dev/null | grep 'MSE ratio')"
  done
}
run() {  # pattern preset-name [steps]
  local pat=$1 name=$2 steps=${3:-$STEPS} t0=$SECONDS m="$W/$1/m-$2-${3:-$STEPS}"
  impute-cli train "$W/$pat/gappy.nc" --preset "$W/$name.yaml" --mask-pattern "$pat" --steps "$steps" \
    --out "$m" --overwrite --quiet 2>/dev/null
  echo "== $pat $name $steps steps (train $((SECONDS - t0)) s)"
  score "$pat" "$m" "$name-$steps"
  for c in "$pat" "${pat}_s1"; do python benchmarks/gp_member_probe.py "$W/$c" "$m" | tail -2; done
}
overlap() {  # pattern preset-name overlap: the same model, tiles overlapping more at imputation
  local src="$W/$1/m-$2-$STEPS" m="$W/$1/m-$2-ov$3"
  rm -rf "$m"; cp -r "$src" "$m"
  python - "$m/model.yaml" "$3" <<'PY'
import sys, yaml
p = sys.argv[1]; c = yaml.safe_load(open(p)); c["preset"]["window"]["overlap"] = float(sys.argv[2])
yaml.safe_dump(c, open(p, "w"))
PY
  echo "== $1 $2, window.overlap $3 at imputation"; score "$1" "$m" "$2-ov$3"
}
run block gp; overlap block gp 0.5; overlap block gp 0.75
run block gp 500; run block gp 1000
run block gp_aug; run block gp_aug 6000
run block gp_noclim; run block gp_prefill; run block gp_low09
run pixel gp; run pixel gp_aug
run pixel gp_st; run pixel gp_st_aug; run pixel gp_st_aug 4000
echo "== perfect network, the method's limit"
python benchmarks/gp_method_limit.py "$W/block" --pattern block --runs 16:0.7,64:0.7,16:0.9
python benchmarks/gp_method_limit.py "$W/pixel" --pattern pixel --runs 16:0.7,16:0.9
