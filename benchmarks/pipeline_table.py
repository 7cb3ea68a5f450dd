"""Issue 2's acceptance table: the trained model against temporal linear interpolation and a
Laplace fill on hidden cells, and the context strategies against MissDiff on block gaps.

Not part of the test suite. Run from the project root with ../shared beside it:

    python benchmarks/pipeline_table.py tcw --observed 0.5 --steps 3000
    python benchmarks/pipeline_table.py tcw --observed 0.2 --steps 3000
    python benchmarks/pipeline_table.py block --steps 3000

`tcw` hides cells of ../shared/data/tcw.nc with the independent `holdout.py make --pattern
cloud`, trains on the gappy file only, imputes, and scores with `holdout.py score` (its own
baselines, on the same hidden cells). `block` makes a synthetic advected cube with block
outages (impute_cli.synthetic) and trains one model per context strategy."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
HOLDOUT = SHARED / "tools" / "holdout.py"


def sh(*args: str) -> str:
    t = time.perf_counter()
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"failed: {' '.join(args)}\n{r.stderr[-2000:]}")
    print(f"  [{time.perf_counter() - t:6.0f} s] {' '.join(args)}", file=sys.stderr)
    return r.stdout


def train_impute(gappy: Path, out: Path, work: Path, tag: str, steps: int, preset: str, extra: list[str]) -> Path:
    model = work / f"model-{tag}"
    sh("impute-cli", "train", str(gappy), "--preset", preset, "--steps", str(steps), "--out", str(model),
       "--overwrite", "--quiet", *extra)
    sh("impute-cli", "impute", str(gappy), str(out), "--model", str(model), "--overwrite", "--quiet")
    return out


def tcw(args: argparse.Namespace) -> None:
    work = Path(args.work) / f"tcw-{args.observed}"
    sh(sys.executable, str(HOLDOUT), "make", str(SHARED / "data" / "tcw.nc"), "tcw", str(work),
       "--pattern", "cloud", "--observed", str(args.observed), "--seed", str(args.seed))
    out = train_impute(work / "gappy.nc", work / "filled.nc", work, args.mask, args.steps, args.preset,
                       ["--mask-pattern", args.mask])
    res = json.loads(sh(sys.executable, str(HOLDOUT), "score", str(work), str(out), "--var", "tcw"))
    print(f"\n## tcw.nc, cloud gaps, {args.observed:.0%} observed ({res['cells']} hidden cells), "
          f"model: {args.preset} preset, {args.steps} steps, --mask-pattern {args.mask}\n")
    print("| method | RMSE (kg m-2) |\n|---|---|")
    for k, v in sorted(res["rmse"].items(), key=lambda kv: kv[1]):
        print(f"| {'**impute-cli**' if k == 'tool' else k} | {v:.3f} |")
    print(f"\nobserved cells preserved: {res['observed_preserved']}; NaN left in gaps: {res['tool_nan_in_gaps']}")


def block(args: argparse.Namespace) -> None:
    from impute_cli.baselines import laplace_fill, temporal_linear
    from impute_cli.synthetic import write_demo
    work = Path(args.work) / "block"
    gappy, truth_p = write_demo(work, T=args.frames, H=48, W=48, pattern="block", observed=args.observed,
                                seed=args.seed)
    truth = xr.open_dataset(truth_p)
    hidden = ~truth["observed"].values
    g = xr.open_dataset(gappy)["sst"].values
    rmse = lambda a: float(np.sqrt(np.mean((a[hidden] - truth["sst"].values[hidden]) ** 2)))
    rows = {"temporal_linear": rmse(temporal_linear(g)), "laplace": rmse(laplace_fill(g))}
    settings = {
        "block context (ours)": ["--mask-pattern", "block"],
        "empirical context (ours)": ["--mask-pattern", "empirical"],
        "pixel context (mismatched)": ["--mask-pattern", "pixel"],
        "MissDiff (context = query = M)": ["--mask-pattern", "pixel", "--context-ratio", "1", "--query-ratio", "1"],
    }
    for name, extra in settings.items():
        tag = name.split()[0].lower()
        out = train_impute(gappy, work / f"filled-{tag}.nc", work, tag, args.steps, args.preset, extra)
        rows[name] = rmse(xr.open_dataset(out)["sst_filled"].values)
    print(f"\n## synthetic advected cube {args.frames}x48x48, 4x4 block grid, blocks out for 8 steps, "
          f"{args.observed:.0%} of blocks observed ({int(hidden.sum())} hidden cells), {args.preset} preset, "
          f"{args.steps} steps\n")
    print("| method | RMSE |\n|---|---|")
    for k, v in sorted(rows.items(), key=lambda kv: kv[1]):
        print(f"| {k} | {v:.4f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", choices=["tcw", "block"])
    ap.add_argument("--observed", type=float, default=0.5)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--mask", default="empirical")
    ap.add_argument("--frames", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="/tmp/impute-cli-bench")
    args = ap.parse_args()
    (tcw if args.case == "tcw" else block)(args)


if __name__ == "__main__":
    main()
