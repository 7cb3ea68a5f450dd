#!/usr/bin/env bash
# CF check of an impute-cli output: what users will check. cdo sinfon and ncdump -h open the
# output, and the IOOS compliance checker (cf:1.8) finds no distinct issue in OUT that IN did
# not have. Exit status 1 (and the new issues printed) otherwise.
#   bash benchmarks/cf_check.sh IN.nc OUT.nc
# Takes seconds; writes nothing. Needs Debian's cdo and netcdf-bin, and
# `pip install compliance-checker`.
set -euo pipefail
in=$1; out=$2
cdo -s sinfon "$out" > /dev/null && echo "cdo sinfon: ok"
ncdump -h "$out" > /dev/null && echo "ncdump -h: ok"
# Issues are compared with the new variables' names folded onto their source variable's
# (V_filled, V_imputed_flag, V_std, V_lower, V_upper, V_sample, V_ci_* inherit V's dims and coordinates, hence V's issues).
# V_sample's leading 'sample' dim is where CF wants other dims (left of T); it is dropped from the
# dimension-order line, which the checker raises only when the input's own Y/X are not recognised.
issues() { compliance-checker --test=cf:1.8 "$1" 2>/dev/null | grep '^\*' \
  | sed -E 's/\b([A-Za-z0-9_]+)_(filled|imputed_flag|std|lower|upper|sample|ci_lower|ci_upper|ci_radius)\b/\1/g' \
  | sed -E 's/sample \(U\), //' | sort -u || true; }
new=$(comm -13 <(issues "$in") <(issues "$out"))
if [ -n "$new" ]; then
  echo "CF issues the output adds:"; echo "$new"; exit 1
fi
echo "compliance-checker cf:1.8: no issue in $out that $in did not have"
