"""`train` then `impute` on every file of ../shared/data, checking the output invariants
(observed cells unchanged, no NaN left in the gaps), counting the cells a static mask leaves
unfilled and, where the gaps were imposed, the RMSE on them.

Real gaps where the file has them (alboranSST_small.nc, ndvi_alaska_small.nc); imposed cloud
gaps (50 % observed, impute_cli.synthetic.gap_mask) on every variable where it is complete
(tcw.nc, eraint_uvz.nc). Not part of the test suite. Run from the project root, with ../shared
beside it and the venv active (impute-cli on PATH):

    python benchmarks/real_files.py --steps 300

Time on 2 CPU cores: about 4 minutes (quick preset, 300 steps per file). Writes the gappy
copies, models and outputs under --work (default /tmp/impute-cli-real); prints a Markdown table.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def impose(src: Path, dst: Path, observed: float, seed: int) -> None:
    """Cloud gaps on every floating variable; the file is written unpacked (float32)."""
    from impute_cli.io.dataset import open_dataset, select_variables
    from impute_cli.synthetic import gap_mask
    ds = open_dataset(src).load()
    variables, (t, y, x) = select_variables(ds, None)
    mask = gap_mask((ds.sizes[t], ds.sizes[y], ds.sizes[x]), "cloud", observed, seed)
    keep = xr.DataArray(mask, dims=(t, y, x))
    for v in variables:
        ds[v] = ds[v].where(keep).astype("float32")
        ds[v].encoding = {"_FillValue": np.float32(np.nan)}
    ds.to_netcdf(dst)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--work", default="/tmp/impute-cli-real")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, complete in (("alboranSST_small.nc", False), ("ndvi_alaska_small.nc", False),
                           ("tcw.nc", True), ("eraint_uvz.nc", True)):
        src = DATA / name
        inp = src
        if complete:
            inp = work / f"gappy-{name}"
            impose(src, inp, 0.5, seed=0)
        model, out = work / f"model-{src.stem}", work / f"filled-{src.stem}.nc"
        t0 = time.perf_counter()
        for cmd in (["impute-cli", "train", str(inp), "--steps", str(args.steps), "--out", str(model),
                     "--overwrite", "--quiet"],
                    ["impute-cli", "impute", str(inp), str(out), "--model", str(model), "--overwrite", "--quiet"]):
            r = subprocess.run(cmd, capture_output=True, text=True)
            print(r.stderr.strip(), file=sys.stderr)
            if r.returncode:
                sys.exit(f"FAILED: {' '.join(cmd)}")
        secs = time.perf_counter() - t0
        i, o, truth = xr.open_dataset(inp), xr.open_dataset(out), xr.open_dataset(src)
        for v in [v for v in o.data_vars if v.endswith("_filled")]:
            base = v[: -len("_filled")]
            flag = o[f"{base}_imputed_flag"].values
            obs = flag == 0
            kept = np.array_equal(o[v].values[obs], i[base].values[obs]) and o[v].dtype == i[base].dtype
            nan_left = int(np.isnan(o[v].values[flag == 1]).sum())
            rmse = ""
            if complete:
                t = truth[base].transpose(*o[v].dims).values
                h = flag == 1
                rmse = f"{float(np.sqrt(np.mean((o[v].values[h] - t[h]) ** 2))):.4g}"
            rows.append((name, base, int((flag == 1).sum()), int((flag == 2).sum()), kept, nan_left, rmse, f"{secs:.0f}"))
    print("| file | variable | imputed cells | not filled (static mask) | observed unchanged | NaN left in gaps | RMSE on imposed gaps | train+impute s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(map(str, r)) + " |")


if __name__ == "__main__":
    main()
