"""cdo: CDO's own `fillmiss` as a baseline, run by the `cdo` program when it is on PATH.

`cdo fillmiss` fills each missing value with the mean of its observed neighbours, growing
into gaps field by field (time step by time step): what many CDO users fill with today. The
values go to CDO in a temporary NetCDF file on a plain lon/lat grid of the cube's shape (the
operator works on grid indices), every non-observed cell (gaps and land) as missing, and come
back scored on the same hidden cells as every other method."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

from impute_cli.evaluation.fill_steps import climatology_map, fill_rest, outside_valid, prepare
from impute_cli.evaluation.kriging import BaselineSkipped

CDO_TIMEOUT = 600  # seconds


def cdo_fillmiss(values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """`cdo -s fillmiss` on (T, H, W); frames CDO cannot fill (no observation) get the
    climatology, then Laplace, as the other baselines do. Skipped when cdo is not on PATH."""
    exe = shutil.which("cdo")
    if exe is None:
        raise BaselineSkipped("the cdo program is not on PATH (Debian/Ubuntu: apt install cdo)")
    v, mask, obs = prepare(values, valid)
    T, H, W = v.shape
    data = np.where(obs, v, np.nan).astype("float64")
    ds = xr.Dataset({"v": (("time", "lat", "lon"), data, {"units": "1"})},
                    coords={"time": ("time", np.arange(T, dtype="float64"), {"units": "days since 2000-01-01",
                                                                             "calendar": "standard", "axis": "T"}),
                            "lat": ("lat", np.linspace(-80, 80, H), {"units": "degrees_north", "axis": "Y"}),
                            "lon": ("lon", np.linspace(0, 359, W), {"units": "degrees_east", "axis": "X"})})
    with tempfile.TemporaryDirectory(prefix="impute-cli-cdo-") as tmp:
        src, dst = Path(tmp) / "in.nc", Path(tmp) / "out.nc"
        ds.to_netcdf(src, encoding={"v": {"_FillValue": -9.0e33}})
        try:
            subprocess.run([exe, "-s", "fillmiss", str(src), str(dst)], check=True, capture_output=True,
                           timeout=CDO_TIMEOUT)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
            err = getattr(e, "stderr", b"") or b""
            raise BaselineSkipped(f"cdo fillmiss failed ({err.decode(errors='replace').strip()[:120] or e})") from None
        with xr.open_dataset(dst) as out_ds:
            filled = out_ds["v"].values.astype("float64")
    out = np.where(obs, v, np.where(mask[None], filled, np.nan))
    out = fill_rest(out, mask, climatology_map(v, mask, obs))
    return outside_valid(out, mask)
