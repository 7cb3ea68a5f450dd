#!/usr/bin/env bash
# The symmetric ensemble (impute.symmetric) on and off, point estimate only, on the GP cubes
# (issue 3, session 8). Needs the models of `python benchmarks/uncertainty.py OUT --steps 4000
# --runs block_aug block_st_aug st_aug st_dense`; scores each on its own cube and on another
# realisation (seed 1, made here). The "off" model is a copy whose card says
# impute.symmetric: false. Run alone, venv active, from the project root:
#   bash benchmarks/gp_symmetric.sh OUT
set -euo pipefail
U=${1:?usage: gp_symmetric.sh OUT (the folder of benchmarks/uncertainty.py)}
for p in block pixel; do
  [ -f "$U/cube-$p-s1/gappy.nc" ] || python benchmarks/gp_exact.py make "$U/cube-$p-s1" --pattern $p --seed 1 > /dev/null
done
score() {  # label model pattern
  for c in cube-$3 cube-$3-s1; do
    impute-cli impute "$U/$c/gappy.nc" "$U/$c/o-sym.nc" --model "$2" --overwrite --quiet 2>/dev/null
    echo "$1 $c: $(python benchmarks/gp_exact.py score "$U/$c" "$U/$c/o-sym.nc" --var tas | grep 'MSE ratio' | cut -d'|' -f3)"
  done
}
for m in block-mask-pattern_block-gp_st_aug block-mask-pattern_block-gp_aug \
         pixel-mask-pattern_pixel-gp_st_aug pixel-mask-pattern_pixel-gp_st_dense; do
  M="$U/model-$m-4000"
  rm -rf "$M-nosym"; cp -r "$M" "$M-nosym"
  python - "$M-nosym/model.yaml" <<'PY'
import sys, yaml
p = sys.argv[1]; d = yaml.safe_load(open(p)); d["preset"]["impute"]["symmetric"] = False
yaml.safe_dump(d, open(p, "w"), sort_keys=False)
PY
  score "$m on" "$M" "${m%%-*}"; score "$m off" "$M-nosym" "${m%%-*}"
done
