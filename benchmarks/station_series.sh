#!/usr/bin/env bash
# Station series against their exact posterior: a Gaussian-process record of 16 stations x 2000
# steps (AR(1) in time, Matérn-3/2 along a line of stations) with grouped gaps -- each station
# out for runs of 4 to 48 steps, plus random dropouts, about 40 % missing -- written as a
# (time, station) file by `gp_exact.py make --pattern series`. Each row is the default user
# path, `impute-cli impute IN OUT --samples 32` (a model trained on the file first, intervals
# calibrated on its own observed cells), with the preset named in the row (`auto`: the default),
# timed under GNU time, and scored by `gp_exact.py score` on the hidden cells.
# Not part of the test suite; run alone, from the project root, venv active:
#   bash benchmarks/station_series.sh OUT [PRESET...]     (default presets: auto quick; a preset
#   may be a YAML file, its row named by the file stem)
# About 8 minutes on 2 idle CPU cores. Writes OUT/<preset>.nc, .log, .json and OUT/table.md.
set -euo pipefail
out=${1:?usage: station_series.sh OUT [PRESET...]}; shift
presets=("$@"); [ ${#presets[@]} -gt 0 ] || presets=(auto quick)
here=$(dirname "$0")
mkdir -p "$out"
python "$here/gp_exact.py" make "$out/gp" --pattern series --T 2000 --W 16 --observed 0.55 > "$out/make.md"
export IMPUTE_CLI_MODELS="$out/models"  # the models trained on the way stay with the results
names=()
for p in "${presets[@]}"; do
  n=$(basename "$p" .yaml); names+=("$n")  # a preset given as a YAML file is named by its stem
  echo "== $p: load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  /usr/bin/time -f "%e" -o "$out/$n.time" impute-cli impute "$out/gp/gappy.nc" "$out/$n.nc" --preset "$p" \
    --samples 32 --overwrite --retrain 2> "$out/$n.log"
  python "$here/gp_exact.py" score "$out/gp" "$out/$n.nc" --json > "$out/$n.json"
done
python - "$out" "${names[@]}" <<'PY'
import json, re, sys
out, presets = sys.argv[1], sys.argv[2:]
lines = ["| preset | MSE / exact posterior | 90 % cells covered (oracle) | mean 90 % width, K (oracle) | whole command s |",
         "|---|---|---|---|---|"]
for p in presets:
    r = json.load(open(f"{out}/{p}.json"))
    iv = next(iter(r["intervals"].values()))
    secs = float(open(f"{out}/{p}.time").read().split()[-1])
    chose = re.search(r"training a '(\w+)' model", open(f"{out}/{p}.log").read())
    name = f"{p} ({chose.group(1)})" if chose and chose.group(1) != p else p
    lines.append(f"| {name} | {r['mse_ratio']:.3f} | {iv['coverage']:.1%} ({r['cell_coverage_oracle']:.1%}) | "
                 f"{iv['width']:.3f} ({r['width_oracle']:.3f}) | {secs:.0f} |")
open(f"{out}/table.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
