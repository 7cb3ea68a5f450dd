#!/usr/bin/env bash
# Fill the cloud gaps of a real L3 SST file (AVHRR, Alboran Sea; 80 % of cells missing, land
# marked by the `mask` variable, which impute-cli finds and uses by itself), then look at the
# output as a user would. Run from the project root with ../shared beside it.
set -euo pipefail
data=../shared/data/alboranSST_small.nc
impute-cli train "$data" --preset quick --out models/alboran-quick --overwrite   # auto -> empirical
impute-cli impute "$data" alboran_filled.nc --model models/alboran-quick --overwrite
ncdump -h alboran_filled.nc | grep -A6 "SST_filled("
