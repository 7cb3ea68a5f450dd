#!/usr/bin/env bash
# The defaults on real and synthetic data: `impute-cli evaluate` with the default preset (no
# --model: each model is trained on the held-out cube only) on every row of the acceptance
# table of the defaults -- tcw cloud 50 % and 20 % observed, alboranSST empirical and cloud
# 20 %, ndvi empirical 20 %, the demo cube, and the synthetic hourly cube with a daily cycle
# (half observed under large clouds, then 20 % of the rest hidden) -- and the geometric mean of
# model RMSE / best classical RMSE over them, each ratio with evaluate's 90 % block-bootstrap interval.
# Not part of the test suite; run alone, from the project root, venv active:
#   bash benchmarks/defaults.sh OUT [ROW...]     (rows: tcw50 tcw20 albemp albcloud ndviemp demo hourly)
# About 45 minutes on 2 idle CPU cores. Writes OUT/<row>.json and OUT/table.md.
set -euo pipefail
out=${1:?usage: defaults.sh OUT [ROW...]}; shift
rows=("$@"); [ ${#rows[@]} -gt 0 ] || rows=(tcw50 tcw20 albemp albcloud ndviemp demo hourly)
data=../shared/data
mkdir -p "$out"
python -c "from impute_cli.synthetic import write_demo as w; w('$out/demo'); w('$out/hourly', kind='hourly')"
for r in "${rows[@]}"; do
  case $r in
    tcw50) args=("$data/tcw.nc" --holdout cloud --fraction 0.5);;
    tcw20) args=("$data/tcw.nc" --holdout cloud --fraction 0.8);;
    albemp) args=("$data/alboranSST_small.nc" --holdout empirical --fraction 0.2);;
    albcloud) args=("$data/alboranSST_small.nc" --holdout cloud --fraction 0.2);;
    ndviemp) args=("$data/ndvi_alaska_small.nc" --holdout empirical --fraction 0.2);;
    demo) args=("$out/demo/gappy.nc" --holdout cloud --fraction 0.2);;
    hourly) args=("$out/hourly/gappy.nc" --holdout cloud --fraction 0.2);;
    *) echo "unknown row $r" >&2; exit 2;;
  esac
  echo "== $r: load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  impute-cli evaluate "${args[@]}" --json --quiet > "$out/$r.json" 2> "$out/$r.log"
done
python - "$out" "${rows[@]}" <<'PY'
import json, math, sys
out, rows = sys.argv[1], sys.argv[2:]
lines = ["| row | model RMSE | best classical | its RMSE | ratio | 90 % interval | rank | training s |",
         "|---|---|---|---|---|---|---|---|"]
ratios = []
for r in rows:
    j = json.load(open(f"{out}/{r}.json"))
    for v, res in j["variables"].items():
        ms = sorted((m["rmse"], k) for k, m in res["methods"].items())
        mine = next(x for x in ms if x[1] == "impute-cli"); best = next(x for x in ms if x[1] != "impute-cli")
        ratios.append(mine[0] / best[0])
        iv = res.get("ratio_interval") or {}
        ci = f"{iv['low']:.3f}–{iv['high']:.3f}" if iv else "–"
        lines.append(f"| {r} ({v}) | {mine[0]:.4g} | {best[1]} | {best[0]:.4g} | {mine[0] / best[0]:.3f} | {ci} | "
                     f"{ms.index(mine) + 1} | {j['model'].get('train_seconds', '')} |")
lines.append(f"\ngeometric mean of the ratios: {math.exp(sum(map(math.log, ratios)) / len(ratios)):.3f}")
open(f"{out}/table.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
