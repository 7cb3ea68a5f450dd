#!/usr/bin/env bash
# The distilled sampler against the multi-step solver it was distilled from, on a
# Gaussian-process cube with an exact posterior (gp_exact.py's 512 x 16 x 16 record, half of
# its cells hidden: scattered pixels, or with PATTERN block, 4 x 4 blocks out for 8 steps). One `quick` model is trained on the gappy cube; then
# `impute --samples 32 --save-samples` draws with the solver (`--sampler full`), `distill`
# gives the model its student, and the same command draws with the student (the default once
# it is there). Each output is scored by `gp_exact.py score` on the hidden cells: the samples'
# CRPS (and the exact posterior's), their raw 90 % interval's coverage, the calibrated
# interval's (the default output), and the point estimate's MSE over the posterior's (the same
# for both: distillation leaves the point estimate alone). Commands are timed under GNU time.
# Not part of the test suite; run alone, from the project root, venv active:
#   bash benchmarks/distilled_sampler.sh OUT [DISTILL_STEPS] [PATTERN] [WIDTH]
# (defaults: distill's own steps and width -- half the model's -- and pixel)
# About 6 minutes on 2 idle CPU cores with bf16 arithmetic (an AMD EPYC with AVX-512 BF16). Writes OUT/gp, OUT/model, OUT/{full,student}.nc, .json, .time
# and OUT/table.md.
set -euo pipefail
out=${1:?usage: distilled_sampler.sh OUT [DISTILL_STEPS] [PATTERN]}
steps=${2:-}
pattern=${3:-pixel}
width=${4:-}
here=$(dirname "$0")
mkdir -p "$out"
load() { cut -d' ' -f1-3 /proc/loadavg; }
python "$here/gp_exact.py" make "$out/gp" --pattern "$pattern" > "$out/make.md"
echo "== train: load $(load)" >&2
/usr/bin/time -f "%e" -o "$out/train.time" impute-cli train "$out/gp/gappy.nc" --out "$out/model" --overwrite \
  --quiet 2> "$out/train.log"
run() {  # run NAME [impute options]: 32 samples, timed and scored
  local name=$1; shift
  echo "== $name: load $(load)" >&2
  /usr/bin/time -f "%e" -o "$out/$name.time" impute-cli impute "$out/gp/gappy.nc" "$out/$name.nc" \
    --model "$out/model" --samples 32 --save-samples --overwrite --quiet "$@" 2> "$out/$name.log"
  python "$here/gp_exact.py" score "$out/gp" "$out/$name.nc" --json > "$out/$name.json"
}
run full --sampler full
echo "== distill ${steps:-default} steps: load $(load)" >&2
/usr/bin/time -f "%e" -o "$out/distill.time" impute-cli distill "$out/model" ${steps:+--steps "$steps"} \
  ${width:+--width "$width"} --overwrite --quiet 2> "$out/distill.log"
run student
echo "== point estimate: load $(load)" >&2
/usr/bin/time -f "%e" -o "$out/point.time" impute-cli impute "$out/gp/gappy.nc" "$out/point.nc" \
  --model "$out/model" --overwrite --quiet 2> "$out/point.log"
python - "$out" <<'PY'
import json, sys
import yaml
out = sys.argv[1]
student = yaml.safe_load(open(f"{out}/model/model.yaml"))["student"]
steps = student["steps"]
width = student.get("network", {}).get("base_channels", "the model's")
sec = lambda n: float(open(f"{out}/{n}.time").read().split()[-1])
point = sec("point")
lines = [f"| sampler | CRPS, K (exact posterior) | raw 90 % interval covers | calibrated 90 % interval covers "
         f"(oracle) | point estimate MSE / posterior | impute --samples 32, s (× point estimate) |",
         "|---|---|---|---|---|---|"]
for name, label in (("full", "multi-step solver (DPM-Solver++(2M), 6 steps)"),
                    ("student", f"distilled, one call (width {width}, {steps} distillation steps, {sec('distill'):.0f} s)")):
    r = json.load(open(f"{out}/{name}.json"))
    s, iv = r["samples"], r["intervals"]
    cal = next(v for k, v in iv.items() if "lower" in k)
    lines.append(f"| {label} | {s['crps']:.4f} ({s['crps_oracle']:.4f}) | {s['raw_coverage']:.1%} | "
                 f"{cal['coverage']:.1%} ({r['cell_coverage_oracle']:.1%}) | {r['mse_ratio']:.3f} | "
                 f"{sec(name):.1f} ({sec(name) / point:.1f}×) |")
lines.append(f"\npoint estimate alone: {point:.1f} s; training: {sec('train'):.0f} s")
open(f"{out}/table.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
