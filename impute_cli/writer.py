"""writer: the input dataset, untouched, plus for each imputed variable V

- `V_filled`: the point estimate in the gaps, the input's own values (bit for bit) elsewhere;
- `V_imputed_flag`: 0 observed, 1 imputed, 2 missing but not to be filled (outside the static mask);
- with samples: `V_std` (per-cell standard error of V_filled: the samples' RMS deviation from
  it, CF modifier `standard_error`), `V_lower` / `V_upper` (the samples' quantiles, default 5 % and 95 %), all
  zero-spread on observed cells, and with --save-samples `V_sample` (sample, time, ...);

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
    t, space = cube.grid.time_dim, cube.grid.file_dims  # (y, x), or (station,) for a series
    values = cube.grid.to_file(values)  # a series drops its dummy y axis
    idx = [c for c, (v, _) in enumerate(cube.channel_sel) if v == var]
    da = cube.ds[var]
    extra = [d for d in da.dims if d not in (t, *space)]
    arr = values[:, idx].reshape(values.shape[0], *[da.sizes[d] for d in extra], *values.shape[2:])
    order = (t, *extra, *space)
    return np.transpose(arr, [order.index(d) for d in da.dims])


SAMPLE_DIM = "sample"


def _float_var(ds: xr.Dataset, name: str, values: np.ndarray, src: xr.DataArray, attrs: dict,
               dims: tuple | None = None) -> None:
    dims = dims or src.dims
    coords = {k: c for k, c in src.coords.items() if set(c.dims) <= set(dims)}
    ds[name] = xr.DataArray(values, dims=dims, coords=coords, attrs=attrs)
    ds[name].encoding = {"_FillValue": np.array(np.nan, dtype=values.dtype), "dtype": values.dtype}


def _spread_variables(ds: xr.Dataset, cube: Cube, v: str, src: xr.DataArray, samples: np.ndarray,
                      observed: np.ndarray, out: np.ndarray, sampler: dict, quantiles: tuple[float, float],
                      save_samples: bool) -> list[str]:
    """V_std, V_lower, V_upper (and V_sample) from the samples; observed cells have zero spread."""
    per = np.stack([channel_to_variable(cube, s, v) for s in samples]).astype(out.dtype)  # (N, *src.dims)
    per = np.where(observed[None], out[None], per)  # observed cells: the input's values in every sample
    n = per.shape[0]
    # the standard error of V_filled as the samples see it: their RMS deviation from the point
    # estimate (the samples' own mean can sit away from it, and that is uncertainty too)
    std = np.sqrt(((per - out[None]) ** 2).mean(axis=0))
    lo, hi = np.quantile(per, quantiles, axis=0).astype(out.dtype)
    std = np.where(observed, 0, std).astype(out.dtype)
    lo, hi = np.where(observed, out, lo), np.where(observed, out, hi)
    how = (f"{n} samples of the multi-step sampler (Zhou et al., App. E, Alg. 4; {sampler['steps']} steps, "
           f"omega {sampler['omega']}, eta {sampler['eta']:g}, seed {sampler['seed']})") if "omega" in sampler \
        else f"{n} samples: {sampler.get('note', '')}"
    sn = src.attrs.get("standard_name")
    units = {"units": src.attrs["units"]} if "units" in src.attrs else {}
    long = src.attrs.get("long_name", v)
    names = [f"{v}_std", f"{v}_lower", f"{v}_upper"]
    _float_var(ds, names[0], std, src, {
        **({"standard_name": f"{sn} standard_error"} if sn else {}), **units,
        "long_name": f"standard error of {v}_filled (0 where observed)",
        "comment": f"root-mean-square deviation from {v}_filled of {how}"})
    for name, q, vals, word in ((names[1], quantiles[0], lo, "lower"), (names[2], quantiles[1], hi, "upper")):
        _float_var(ds, name, vals, src, {
            **units, "long_name": f"{q:.0%} quantile of the imputed {long} ({word} bound; observed value where observed)",
            "quantile": q, "comment": f"empirical quantile of {how}"})
    if save_samples:
        # CF 1.8 §2.4: dims other than T, Z, Y, X go to their left (CDO then skips this
        # variable with a warning; V_std, V_lower and V_upper are what CDO users read)
        dims, arr = (SAMPLE_DIM, *src.dims), per
        _float_var(ds, f"{v}_sample", arr, src, {
            **units, "long_name": f"samples of the imputed {long} (observed value where observed)",
            "comment": how}, dims=dims)
        ds.coords[SAMPLE_DIM] = xr.DataArray(np.arange(n, dtype="int32"), dims=SAMPLE_DIM,
                                             attrs={"standard_name": "realization", "units": "1", "long_name": "sample number"})
        names.append(f"{v}_sample")
    return names


def build_output(cube: Cube, filled: np.ndarray, history: str, *, samples: np.ndarray | None = None,
                 sampler: dict | None = None, quantiles: tuple[float, float] = (0.05, 0.95),
                 save_samples: bool = False) -> xr.Dataset:
    """The output dataset: every input variable unchanged, plus V_filled and V_imputed_flag, and
    with `samples` (N, T, C, H, W) the spread variables."""
    ds = cube.ds.copy()
    space, valid_file = cube.grid.file_dims, cube.grid.to_file(cube.valid)  # the file's spatial layout
    for v in cube.variables:
        src = cube.ds[v]
        orig = np.asarray(src.values)
        pred = channel_to_variable(cube, filled, v).astype(orig.dtype if orig.dtype.kind == "f" else "float64")
        valid = xr.DataArray(valid_file, dims=space).broadcast_like(src).transpose(*src.dims).values
        observed = np.isfinite(orig) if orig.dtype.kind == "f" else np.ones(orig.shape, bool)
        out = np.where(observed, orig, np.where(valid, pred, np.nan)).astype(pred.dtype)
        flag = np.where(observed, FLAG_OBSERVED, np.where(valid, FLAG_IMPUTED, FLAG_NOT_FILLED)).astype("int8")
        name, fname = f"{v}_filled", f"{v}_imputed_flag"
        attrs = {k: src.attrs[k] for k in ("standard_name", "units", "long_name") if k in src.attrs}
        attrs["long_name"] = f"{attrs.get('long_name', v)} with gaps filled by impute-cli"
        attrs["ancillary_variables"] = fname
        attrs["comment"] = ("observed cells are the input's values bit for bit; gaps hold the diffusion "
                            "model's ensemble single-step estimate (Zhou et al., eq. 10)")
        _float_var(ds, name, out, src, attrs)
        flag_attrs = {"standard_name": f"{src.attrs['standard_name']} status_flag"} if "standard_name" in src.attrs else {}
        ds[fname] = xr.DataArray(flag, dims=src.dims, coords=src.coords, attrs={
            **flag_attrs,
            "long_name": f"which cells of {v}_filled were imputed",
            "flag_values": np.array([0, 1, 2], "int8"),
            "flag_meanings": "observed imputed missing_not_filled",
        })
        ds[fname].encoding = {"_FillValue": None, "dtype": "int8"}
        if samples is not None and sampler is not None:
            extra = _spread_variables(ds, cube, v, src, samples, observed, out, sampler, quantiles, save_samples)
            ds[name].attrs["ancillary_variables"] = " ".join([fname, *extra[:3]])
            ds[name].attrs["comment"] += f"; the spread of {sampler['samples']} samples is in {v}_std"
    if sampler is not None:
        ds.attrs["impute_cli_model"] = str(sampler.get("model", ""))
        ds.attrs["impute_cli_sampler"] = ", ".join(f"{k}={val}" for k, val in sampler.items() if k != "model")
    prev = ds.attrs.get("history", "")
    stamp = utc_stamp()
    ds.attrs["history"] = f"{stamp}: {history} (impute-cli {__version__})" + (f"\n{prev}" if prev else "")
    return ds


def utc_stamp() -> str:
    """The time written into `history` and model cards: now, or SOURCE_DATE_EPOCH when set (the
    reproducible-builds convention), so that a rerun can give a byte-identical file."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    t = time.gmtime(int(epoch)) if epoch and epoch.isdigit() else time.gmtime()
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", t)


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
