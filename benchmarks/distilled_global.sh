#!/usr/bin/env bash
# The distilled samplers against the multi-step solver on a large cube with a known truth: the
# global-like cube of pipeline_timing.sh (31 x 161 x 320, the synthetic advected field under
# drifting clouds, 40 % gaps). One default model is trained on the gappy cube; then
# `impute --samples 64 --save-samples` draws with the solver (`--sampler full`), `distill` gives
# the model its default student (half the model's width) and the same command draws with it, and
# a copy of the model folder gets a student of the model's own width (`distill --width W`: a copy
# of the network, fine-tuned) and draws again. Each output is scored on the gaps against the
# truth: the samples' CRPS, the coverage of their raw 5-95 % interval and of the calibrated 90 %
# interval (the default output) with its mean width, and the point estimate's RMSE (the same in
# every row: distillation leaves it alone). Commands are timed under GNU time.
# Not part of the test suite; run alone, from the project root, venv active:
#   bash benchmarks/distilled_global.sh OUT
# About 35 minutes on 2 CPU cores with bf16 arithmetic (an AMD EPYC with AVX-512 BF16). Writes OUT/global, OUT/model,
# OUT/model-copy, OUT/{full,student,copy}.nc, OUT/*.time and OUT/table.md.
set -euo pipefail
out=${1:?usage: distilled_global.sh OUT}
mkdir -p "$out"
load() { cut -d' ' -f1-3 /proc/loadavg; }
python - "$out" <<'PY'
import sys
from pathlib import Path
from impute_cli.synthetic import write_demo
write_demo(Path(sys.argv[1]) / "global", T=31, H=161, W=320, pattern="cloud", observed=0.6, seed=0)
PY
timed() { local name=$1; shift; echo "== $name: load $(load)" >&2
  /usr/bin/time -f "%e" -o "$out/$name.time" "$@" --overwrite --quiet 2> "$out/$name.log"; }
timed train impute-cli train "$out/global/gappy.nc" --out "$out/model"
timed point impute-cli impute "$out/global/gappy.nc" "$out/point.nc" --model "$out/model"
timed full impute-cli impute "$out/global/gappy.nc" "$out/full.nc" --model "$out/model" --samples 64 \
  --save-samples --sampler full
rm -rf "$out/model-copy" && cp -r "$out/model" "$out/model-copy"
timed distill impute-cli distill "$out/model"
timed student impute-cli impute "$out/global/gappy.nc" "$out/student.nc" --model "$out/model" --samples 64 \
  --save-samples
width=$(python -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['preset']['network']['base_channels'])" \
  "$out/model-copy/model.yaml")
timed distill-copy impute-cli distill "$out/model-copy" --width "$width"
timed copy impute-cli impute "$out/global/gappy.nc" "$out/copy.nc" --model "$out/model-copy" --samples 64 \
  --save-samples
echo "== done: load $(load)" >&2
python - "$out" <<'PY'
import sys
import numpy as np
import xarray as xr
from impute_cli.evaluation.scores import crps_ensemble
out = sys.argv[1]
truth = xr.open_dataset(f"{out}/global/truth.nc")["sst"].values
sec = lambda n: float(open(f"{out}/{n}.time").read().split()[-1])
rows, base = [], None
for name, label, distill in (("full", "multi-step solver (DPM-Solver++(2M), 6 steps: 7 calls a sample)", None),
                             ("student", "distilled student, half width (1 call a sample, the default)", "distill"),
                             ("copy", "distilled student, the model's width (a copy, fine-tuned)", "distill-copy")):
    ds = xr.open_dataset(f"{out}/{name}.nc")
    gap = ds["sst_imputed_flag"].values == 1
    y, centre = truth[gap], ds["sst_filled"].values[gap].astype("float64")
    s = ds["sst_sample"].values[:, gap]
    crps = sum(crps_ensemble(s[:, i:i + 100_000], y[i:i + 100_000]) * len(y[i:i + 100_000])
               for i in range(0, len(y), 100_000)) / len(y)
    base = crps if base is None else base
    q05, q95 = np.quantile(s, [0.05, 0.95], axis=0)
    lo, hi = ds["sst_lower"].values[gap], ds["sst_upper"].values[gap]
    rows.append(f"| {label} | {crps:.4f} ({crps / base:.3f}) | {np.mean((y >= q05) & (y <= q95)):.1%} | "
                f"{np.mean((y >= lo) & (y <= hi)):.1%} | {np.mean(hi - lo):.2f} | "
                f"{np.sqrt(np.mean((centre - y) ** 2)):.4f} | {sec(name):.0f} ({sec(name) / sec('point'):.0f}×) | "
                f"{f'{sec(distill):.0f}' if distill else '–'} |")
lines = [f"{int(gap.sum())} gap cells; training {sec('train'):.0f} s; point estimate {sec('point'):.1f} s", "",
         "| sampler | CRPS, °C (× the solver's) | raw 5–95 % covers | calibrated 90 % covers | its mean width, °C "
         "| point estimate RMSE, °C | `impute --samples 64 --save-samples`, s (× the point estimate) | distill, s |",
         "|---|---|---|---|---|---|---|---|", *rows]
open(f"{out}/table.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
