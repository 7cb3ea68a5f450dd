#!/usr/bin/env bash
# Is impute-cli better than what I use today, on MY data? Hide 20 % of the observed SST cells of a
# real cloudy file with its own cloud shapes (the empirical holdout), train a model on what is
# left, and rank it against climatology, temporal interpolation, Laplace fill, OpenCV inpainting,
# DINEOF and kriging on those cells. Run from the project root with ../shared beside it
# (5 min 54 s on 2 CPU cores; the model ranked first).
set -euo pipefail
data=../shared/data/alboranSST_small.nc
impute-cli evaluate "$data" --holdout empirical --fraction 0.2 --train-steps 1500 \
  --samples 8 --report alboran_eval --keep alboran_eval/files --json > alboran_eval.json
python -c "import json; r = json.load(open('alboran_eval.json')); print(r['variables']['SST']['ranking'])"
# The Markdown report and its figures:
ls alboran_eval/   # report.md maps.png rmse_by_method.png reliability.png files/
# An independent check of the same output with the workplace's holdout scorer:
python ../shared/tools/holdout.py score alboran_eval/files alboran_eval/files/filled.nc --var SST | head -12
