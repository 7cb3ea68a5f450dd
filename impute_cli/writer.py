"""writer: the input dataset, untouched, plus for each imputed variable V

- `V_filled`: the point estimate in the gaps, the input's own values (bit for bit) elsewhere;
- `V_imputed_flag`: 0 observed, 1 imputed, 2 missing but not to be filled (outside the static mask);

written to a temporary name beside OUT and renamed when complete (NetCDF or Zarr by OUT's
extension); a `history` line records the command."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from . import __version__
from .dataset import Cube
from .errors import ImputeError

FLAG_OBSERVED, FLAG_IMPUTED, FLAG_NOT_FILLED = 0, 1, 2
ZARR_ENCODING_KEYS = {"dtype", "scale_factor", "add_offset", "_FillValue", "units", "calendar"}
NETCDF_DROP_KEYS = {"chunks", "preferred_chunks", "compressors", "filters", "serializer", "shards"}


def output_format(out: str | Path) -> str:
    suffix = Path(str(out).rstrip("/")).suffix.lower()
    if suffix in (".nc", ".nc4", ".netcdf"):
        return "netcdf"
    if suffix == ".zarr":
        return "zarr"
    raise ImputeError(f"output '{out}' must end in .nc (NetCDF) or .zarr (Zarr)")


def check_output_path(out: str | Path, inp: str | Path, overwrite: bool) -> None:
    output_format(out)
    o, i = Path(out), Path(inp)
    if o.resolve() == i.resolve():
        raise ImputeError("the output path is the input path; inputs are never modified: choose another OUT")
    if o.exists() and not overwrite:
        raise ImputeError(f"output '{out}' already exists; pass --overwrite to replace it or choose another name")
    if not o.parent.exists():
        raise ImputeError(f"the folder of output '{out}' does not exist; create it first")


def channel_to_variable(cube: Cube, values: np.ndarray, var: str) -> np.ndarray:
    """(T, C, H, W) channels of `var` back to the variable's own dim order."""
    t, y, x = cube.grid.time_dim, cube.grid.y_dim, cube.grid.x_dim
    idx = [c for c, (v, _) in enumerate(cube.channel_sel) if v == var]
    da = cube.ds[var]
    extra = [d for d in da.dims if d not in (t, y, x)]
    arr = values[:, idx].reshape(values.shape[0], *[da.sizes[d] for d in extra], *values.shape[2:])
    order = (t, *extra, y, x)
    return np.transpose(arr, [order.index(d) for d in da.dims])


def build_output(cube: Cube, filled: np.ndarray, history: str) -> xr.Dataset:
    """The output dataset: every input variable unchanged, plus V_filled and V_imputed_flag."""
    ds = cube.ds.copy()
    y, x = cube.grid.y_dim, cube.grid.x_dim
    for v in cube.variables:
        src = cube.ds[v]
        orig = np.asarray(src.values)
        pred = channel_to_variable(cube, filled, v).astype(orig.dtype if orig.dtype.kind == "f" else "float64")
        valid = xr.DataArray(cube.valid, dims=(y, x)).broadcast_like(src).transpose(*src.dims).values
        observed = np.isfinite(orig) if orig.dtype.kind == "f" else np.ones(orig.shape, bool)
        out = np.where(observed, orig, np.where(valid, pred, np.nan)).astype(pred.dtype)
        flag = np.where(observed, FLAG_OBSERVED, np.where(valid, FLAG_IMPUTED, FLAG_NOT_FILLED)).astype("int8")
        name, fname = f"{v}_filled", f"{v}_imputed_flag"
        attrs = {k: src.attrs[k] for k in ("standard_name", "units", "long_name") if k in src.attrs}
        attrs["long_name"] = f"{attrs.get('long_name', v)} with gaps filled by impute-cli"
        attrs["ancillary_variables"] = fname
        attrs["comment"] = ("observed cells are the input's values bit for bit; gaps hold the diffusion "
                            "model's ensemble single-step estimate (Zhou et al., eq. 10)")
        ds[name] = xr.DataArray(out, dims=src.dims, coords=src.coords, attrs=attrs)
        ds[name].encoding = {"_FillValue": np.array(np.nan, dtype=out.dtype), "dtype": out.dtype}
        flag_attrs = {"standard_name": f"{src.attrs['standard_name']} status_flag"} if "standard_name" in src.attrs else {}
        ds[fname] = xr.DataArray(flag, dims=src.dims, coords=src.coords, attrs={
            **flag_attrs,
            "long_name": f"which cells of {v}_filled were imputed",
            "flag_values": np.array([0, 1, 2], "int8"),
            "flag_meanings": "observed imputed missing_not_filled",
        })
        ds[fname].encoding = {"_FillValue": None, "dtype": "int8"}
    prev = ds.attrs.get("history", "")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ds.attrs["history"] = f"{stamp}: {history} (impute-cli {__version__})" + (f"\n{prev}" if prev else "")
    return ds


def _encodings(ds: xr.Dataset, fmt: str) -> None:
    """Keep each variable's on-disk encoding (packing, fill value) where the format takes it.
    A `missing_value` that conflicts with `_FillValue` (xarray decodes both to NaN) keeps the
    file's `missing_value` and drops the NaN `_FillValue` xarray added."""
    for v in ds.variables.values():
        enc = dict(v.encoding)
        fill, miss = enc.get("_FillValue"), enc.get("missing_value")
        if fill is None or (miss is not None and not np.array_equal(fill, miss, equal_nan=True)):
            enc["_FillValue"] = None  # add no fill value the input did not have
        if fmt == "zarr":
            enc = {k: val for k, val in enc.items() if k in ZARR_ENCODING_KEYS}
        else:
            enc = {k: val for k, val in enc.items() if k not in NETCDF_DROP_KEYS}
        v.encoding = enc


def write_atomic(ds: xr.Dataset, out: str | Path, overwrite: bool) -> None:
    """Write to a temporary name in OUT's folder, then rename: OUT appears only when complete."""
    out = Path(str(out).rstrip("/"))
    fmt = output_format(out)
    _encodings(ds, fmt)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    target = tmp / out.name
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                if fmt == "zarr":
                    ds.to_zarr(target, mode="w", consolidated=True)
                else:
                    ds.to_netcdf(target)
            except (ValueError, TypeError, OSError, RuntimeError) as e:
                first = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise ImputeError(f"could not write '{out}' ({first}); nothing was written") from None
        if out.exists():
            if not overwrite:
                raise ImputeError(f"output '{out}' appeared while writing; pass --overwrite or choose another name")
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(target, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
