"""writer: the input dataset, untouched, plus for each imputed variable V

- `V_filled`: the point estimate in the gaps, the input's own values (bit for bit) elsewhere;
- `V_imputed_flag`: 0 observed, 1 imputed, 2 missing but not to be filled (outside the static mask);
- with samples: `V_std` (standard error of V_filled: the samples' RMS deviation from it), `V_lower`
  / `V_upper` (the calibrated interval), zero-spread on observed cells, and with --save-samples
  `V_sample` (sample, time, ...); written to a temporary name beside OUT, renamed when complete."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import dask
import dask.array as dsa
import numpy as np
import xarray as xr

from impute_cli.version import __version__
from impute_cli.io.cube import Cube
from impute_cli.errors import ImputeError, first_line
from impute_cli.io.encoding import DEFAULT_COMPRESS, chunks, for_format, new_encoding, packing, clipper
from impute_cli.io.tiling import RegionPlan, Tile

FLAG_OBSERVED, FLAG_IMPUTED, FLAG_NOT_FILLED = 0, 1, 2


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
    if o.is_dir() and not any((o / m).exists() for m in ("zarr.json", ".zgroup", ".zarray")):  # never a user's folder
        raise ImputeError(f"output '{out}' is a folder that is not a Zarr store; --overwrite replaces only a file or a "
                          "Zarr store: choose another name")
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


@dataclass(frozen=True)
class VarSpec:
    """One output variable, before its values: name, dims, dtype, attributes, encoding."""

    name: str
    source: str  # the input variable it derives from
    dims: tuple[str, ...]
    dtype: np.dtype
    attrs: dict
    encoding: dict = field(default_factory=dict)  # on disk (see io.encoding)


def _out_dtype(src: xr.DataArray) -> np.dtype:
    return np.dtype(src.dtype if src.dtype.kind == "f" else "float64")


def _spread_dtype(src: xr.DataArray) -> np.dtype:
    """Uncertainty variables: float32 for packed data (its precision needs no more)."""
    return np.dtype("float32") if packing(src) is not None else _out_dtype(src)


def output_specs(cube: Cube, sampling: dict | None, quantiles: tuple[float, float],
                 save_samples: bool, compress: int = DEFAULT_COMPRESS) -> list[VarSpec]:
    """The variables impute adds, for each imputed variable V: V_filled, V_imputed_flag, and
    with samples V_std, V_lower, V_upper (and V_sample), with their encodings (`io.encoding`:
    V_filled packed like V, all compressed at zlib level `compress`)."""
    specs = _specs(cube, sampling, quantiles, save_samples)
    out = []
    for s in specs:
        src = cube.ds[s.source]
        sizes = tuple(sampling["samples"] if d == SAMPLE_DIM else cube.ds.sizes[d] for d in s.dims)
        t_axis = s.dims.index(cube.grid.time_dim) if cube.grid.time_dim in s.dims else None
        pack = packing(src) if s.name == f"{s.source}_filled" else None
        out.append(replace(s, encoding=new_encoding(s.dtype, pack, compress, chunks(sizes, t_axis))))
    return out


def _specs(cube: Cube, sampling: dict | None, quantiles: tuple[float, float], save_samples: bool) -> list[VarSpec]:
    specs = []
    for v in cube.variables:
        src = cube.ds[v]
        dt = _out_dtype(src)
        fname = f"{v}_imputed_flag"
        attrs = {k: src.attrs[k] for k in ("standard_name", "units", "long_name") if k in src.attrs}
        attrs["long_name"] = f"{attrs.get('long_name', v)} (gaps filled by impute-cli)"  # whatever the input's reads like
        attrs["ancillary_variables"] = fname
        attrs["comment"] = ("observed cells are the input's values bit for bit; gaps hold the diffusion "
                            "model's ensemble single-step estimate (Zhou et al., eq. 10)")
        specs.append(VarSpec(f"{v}_filled", v, src.dims, dt, attrs))  # attrs completed below with samples
        flag_attrs = {"standard_name": f"{src.attrs['standard_name']} status_flag"} if "standard_name" in src.attrs else {}
        specs.append(VarSpec(fname, v, src.dims, np.dtype("int8"), {
            **flag_attrs,
            "long_name": f"which cells of {v}_filled were imputed",
            "flag_values": np.array([0, 1, 2], "int8"),
            "flag_meanings": "observed imputed missing_not_filled",
        }))
        if sampling is None:
            continue
        dt = _spread_dtype(src)
        n = sampling["samples"]
        how = (f"{n} samples of the multi-step sampler (Zhou et al., App. E, Alg. 4; {sampling['steps']} steps, "
               f"omega {sampling['omega']}, eta {sampling['eta']:g}, seed {sampling['seed']})") if "omega" in sampling \
            else (f"{n} samples of the model's distilled sampler (one network call each, see 'impute-cli distill'; "
                  f"seed {sampling['seed']})") if sampling.get("sampler") == "student" \
            else f"{n} samples: {sampling.get('note', '')}"
        sn = src.attrs.get("standard_name")
        units = {"units": src.attrs["units"]} if "units" in src.attrs else {}
        long = src.attrs.get("long_name", v)
        cal = (sampling.get("calibration") or {}).get(v)
        scaled, cal_attrs = "", {}
        if cal is not None:  # split-conformal factor from observed cells hidden with the data's own gap shapes
            scaled = (f"; calibrated: scaled by the split-conformal factor {cal['cell_factor']:.4g} found on "
                      f"{cal['calibration_cells']} observed cells hidden with the data's own gap shapes and resampled, "
                      f"so that {quantiles[1] - quantiles[0]:.0%} of such cells fall inside {v}_lower..{v}_upper")
            r = np.asarray(cal.get("cell_factor_range", [np.nan]), "float64")  # 5-95 % over resampled segments
            cal_attrs = {"calibration_factor": float(cal["cell_factor"]),
                         **({"calibration_factor_range": r} if np.isfinite(r).all() else {})}
        specs.append(VarSpec(f"{v}_std", v, src.dims, dt, {
            **({"standard_name": f"{sn} standard_error"} if sn else {}), **units,
            "long_name": f"standard error of {v}_filled (0 where observed)",
            "comment": f"root-mean-square deviation from {v}_filled of {how}{scaled}", **cal_attrs}))
        level = round(quantiles[1] - quantiles[0], 10)
        for q, word, sign in ((quantiles[0], "lower", "-"), (quantiles[1], "upper", "+")):
            if cal is None:
                specs.append(VarSpec(f"{v}_{word}", v, src.dims, dt, {
                    **units, "long_name": f"{q:.0%} quantile of the imputed {long} ({word} bound; observed value where observed)",
                    "quantile": q, "comment": f"empirical quantile of {how}"}))
                continue
            specs.append(VarSpec(f"{v}_{word}", v, src.dims, dt, {
                **units, "long_name": f"{word} bound of the calibrated {level:.0%} interval of the imputed {long} "
                                      "(observed value where observed)",
                "confidence_level": level,
                "comment": f"{v}_filled {sign} the {level:.0%} quantile of the distance to {v}_filled of {how}{scaled}",
                **cal_attrs}))
        if save_samples:
            # CF 1.8 §2.4: dims other than T, Z, Y, X go to their left (CDO skips it, warning; it reads V_std...)
            specs.append(VarSpec(f"{v}_sample", v, (SAMPLE_DIM, *src.dims), dt, {
                **units, "long_name": f"samples of the imputed {long} (observed value where observed)",
                "comment": how}))
        attrs["ancillary_variables"] = " ".join([fname, f"{v}_std", f"{v}_lower", f"{v}_upper"])
        attrs["comment"] += f"; the spread of {n} samples is in {v}_std"
    return specs


def _isel(cube: Cube, box: Tile) -> dict[str, slice]:
    """The file's dims for a box of the grid (a series has no y dim)."""
    g = cube.grid
    sel = {g.time_dim: box.t, g.x_dim: box.x}
    if g.y_dim is not None:
        sel[g.y_dim] = box.y
    return sel


def output_arrays(cube: Cube, filled: np.ndarray, samples: np.ndarray | None, box: Tile,
                  quantiles: tuple[float, float], save_samples: bool,
                  factors: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """The values of every output variable over `box` of the grid, from the point estimate
    `filled` (t, C, h, w) and the samples (N, t, C, h, w) of that box, in each variable's own
    dim order. Observed cells are the input's values bit for bit, with zero spread. `factors`
    (per variable, a split-conformal calibration): [V_lower, V_upper] is V_filled ± the factor
    × the level-quantile of the samples' distance to V_filled (level HIGH − LOW of `quantiles`;
    `confidence`'s cell interval, calibrated), V_std is scaled by it; the samples stay as drawn.
    Without: the samples' own LOW and HIGH quantiles."""
    out_arrays: dict[str, np.ndarray] = {}
    sel = _isel(cube, box)
    space, valid_file = cube.grid.file_dims, cube.grid.to_file(cube.valid[box.y, box.x])
    for v in cube.variables:
        src = cube.ds[v].isel(sel)
        orig = np.asarray(src.values)
        dt = _out_dtype(src)
        clip = clipper(cube.ds[v])  # inside valid_min/max and the packing's range
        pred = clip(channel_to_variable(cube, filled, v)).astype(dt)
        valid = xr.DataArray(valid_file, dims=space).broadcast_like(src).transpose(*src.dims).values
        observed = np.isfinite(orig) if orig.dtype.kind == "f" else np.ones(orig.shape, bool)
        out = np.where(observed, orig, np.where(valid, pred, np.nan)).astype(dt)
        out_arrays[f"{v}_filled"] = out
        out_arrays[f"{v}_imputed_flag"] = np.where(observed, FLAG_OBSERVED,
                                                   np.where(valid, FLAG_IMPUTED, FLAG_NOT_FILLED)).astype("int8")
        if samples is None:
            continue
        dt, gap = _spread_dtype(cube.ds[v]), ~observed  # the spread, on the cells not observed only
        every = [clip(channel_to_variable(cube, x, v)) for x in samples] if save_samples else None
        per = np.stack([x[gap] for x in every] if every else [channel_to_variable(cube, x, v)[gap] for x in samples])
        per, est = clip(per).astype(dt), out[gap]
        # V_filled's standard error as the samples see it: their RMS deviation from it (their mean may sit away)
        std = np.sqrt(((per - est[None]) ** 2).mean(axis=0))
        f = (factors or {}).get(v)
        if f is None:  # the samples' own quantiles
            lo, hi = np.quantile(per, quantiles, axis=0).astype(dt)
        else:  # calibrated: V_filled ± f × the level-quantile of the samples' distance to it
            d = f * np.quantile(np.abs(per - est[None]), round(quantiles[1] - quantiles[0], 10), axis=0)
            lo, hi = clip(est - d).astype(dt), clip(est + d).astype(dt)
            std = f * std
        for name, zero, values in (("std", 0, std), ("lower", out, lo), ("upper", out, hi)):
            out_arrays[f"{v}_{name}"] = full = np.array(np.broadcast_to(zero, out.shape), dtype=dt)  # observed
            full[gap] = values
        if every:  # observed cells: the input's values in every sample
            out_arrays[f"{v}_sample"] = np.where(observed[None], out[None], np.stack(every).astype(dt))
    return out_arrays


def _attach(ds: xr.Dataset, spec: VarSpec, values, cube: Cube) -> None:
    """Add a variable with the source's coordinates and its encoding (NaN fill for floats)."""
    src = cube.ds[spec.source]
    coords = {k: c for k, c in src.coords.items() if set(c.dims) <= set(spec.dims)}
    ds[spec.name] = xr.DataArray(values, dims=spec.dims, coords=coords, attrs=dict(spec.attrs))
    ds[spec.name].encoding = dict(spec.encoding) or new_encoding(spec.dtype, None, 0, ())


def _finish(ds: xr.Dataset, cube: Cube, history: str, sampling: dict | None) -> xr.Dataset:
    if sampling is not None and sampling.get("samples") and SAMPLE_DIM in ds.dims:  # with V_sample only
        ds.coords[SAMPLE_DIM] = xr.DataArray(np.arange(sampling["samples"], dtype="int32"), dims=SAMPLE_DIM, attrs={
            "standard_name": "realization", "units": "1", "long_name": "sample number"})
    if sampling is not None:
        ds.attrs["impute_cli_model"] = str(sampling.get("model", ""))
        ds.attrs["impute_cli_sampler"] = ", ".join(f"{k}={val}" for k, val in sampling.items()
                                                   if k not in ("model", "calibration"))
        if sampling.get("calibration"):
            ds.attrs["impute_cli_calibration"] = "; ".join(
                f"{v}: cell_factor={c['cell_factor']:.6g}, level={c['level']:g}, cells={c['calibration_cells']}, "
                f"segments={c['calibration_segments']}, hiding={c['calibration_hiding']}"
                for v, c in sampling["calibration"].items())
    prev = ds.attrs.get("history", "")
    ds.attrs["history"] = f"{utc_stamp()}: {history} (impute-cli {__version__})" + (f"\n{prev}" if prev else "")
    return ds


def base_dataset(cube: Cube, copy: bool = True) -> xr.Dataset:
    """What the output starts from: the input dataset, or with `copy=False` its coordinates and
    only the variables the new ones need (grid mapping, coordinate bounds), for users who merge
    the new variables into the input themselves (`cdo merge`, `ncks -A`)."""
    ds = cube.ds.copy()
    if copy:
        return ds
    needed: set[str] = set()
    for name in list(cube.variables) + [str(c) for c in ds.coords]:
        attrs = ds[name].attrs
        needed.update(str(attrs[k]).split()[0] for k in ("grid_mapping", "bounds") if str(attrs.get(k, "")).strip())
    return ds.drop_vars([k for k in ds.data_vars if k not in needed])


def build_output(cube: Cube, filled: np.ndarray, history: str, *, samples: np.ndarray | None = None,
                 sampling: dict | None = None, quantiles: tuple[float, float] = (0.05, 0.95),
                 save_samples: bool = False, compress: int = DEFAULT_COMPRESS, copy: bool = True) -> xr.Dataset:
    """The output dataset in memory: every input variable unchanged, plus V_filled and
    V_imputed_flag, and with `samples` (N, T, C, H, W) the spread variables."""
    ds = base_dataset(cube, copy)
    T, H, W = cube.grid.shape
    sampling = sampling if samples is not None else None
    arrays = output_arrays(cube, filled, samples, Tile(slice(0, T), slice(0, H), slice(0, W)), quantiles,
                           save_samples and sampling is not None)
    for spec in output_specs(cube, sampling, quantiles, save_samples, compress):
        _attach(ds, spec, arrays[spec.name], cube)
    return _finish(ds, cube, history, sampling)


def lazy_output(cube: Cube, plan: RegionPlan, parts: list, history: str, *, sampling: dict | None,
                quantiles: tuple[float, float], save_samples: bool, compress: int = DEFAULT_COMPRESS,
                copy: bool = True) -> xr.Dataset:
    """The output dataset with every new variable a Dask array whose chunks are the regions of
    `plan`: `parts[i]` is a dask Delayed giving `output_arrays` of region i. Nothing is computed
    here; writing the dataset computes one region at a time (or on a cluster's workers)."""
    ds = base_dataset(cube, copy)
    g = cube.grid
    nt, ny, nx = plan.counts
    axis_of = {g.time_dim: 0, g.x_dim: 2, **({g.y_dim: 1} if g.y_dim is not None else {})}
    for spec in output_specs(cube, sampling, quantiles, save_samples, compress):
        sizes = {d: (sampling["samples"] if d == SAMPLE_DIM else ds.sizes[d]) for d in spec.dims}

        def piece(idx: tuple[int, int, int], spec: VarSpec = spec, sizes: dict = sizes):
            shape = tuple(plan.chunks(axis_of[d])[idx[axis_of[d]]] if d in axis_of else sizes[d] for d in spec.dims)
            region = parts[(idx[0] * ny + idx[1]) * nx + idx[2]]
            return dsa.from_delayed(region[spec.name], shape, dtype=spec.dtype)

        def nest(level: int, idx: list[int | None], spec: VarSpec = spec):
            if level == len(spec.dims):
                return piece(tuple(i or 0 for i in idx))
            d = spec.dims[level]
            if d not in axis_of:
                return [nest(level + 1, idx)]
            a = axis_of[d]
            return [nest(level + 1, idx[:a] + [k] + idx[a + 1:]) for k in range(plan.counts[a])]

        _attach(ds, spec, dsa.block(nest(0, [None, None, None])), cube)
    return _finish(ds, cube, history, sampling)


def utc_stamp() -> str:
    """The time written into `history` and model cards: now, or SOURCE_DATE_EPOCH when set (the
    reproducible-builds convention), so that a rerun can give a byte-identical file."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    t = time.gmtime(int(epoch)) if epoch and epoch.isdigit() else time.gmtime()
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", t)


def write_atomic(ds: xr.Dataset, out: str | Path, overwrite: bool,
                 compute: Callable[[Any], None] | None = None, together: list[str] | None = None,
                 zarr_format: int | None = None) -> None:
    """Write to a temporary name in OUT's folder, then rename: OUT appears only when complete.
    Dask-backed variables are computed while writing, chunk by chunk, by `compute` (default:
    dask's own scheduler; see `engine`). `together` names variables computed from shared
    tasks (impute's regions); a NetCDF output stages them first (see _write_netcdf)."""
    out = Path(str(out).rstrip("/"))
    fmt = output_format(out)
    for_format(ds, fmt)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    _umask_permissions(tmp)  # mkdtemp makes it 0700: Dask workers running as another user write here too
    target = tmp / out.name
    run = compute or dask.compute
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                if fmt == "zarr":
                    run(ds.to_zarr(target, mode="w", consolidated=True, compute=False, zarr_format=zarr_format))
                else:
                    _write_netcdf(ds, target, tmp / "stage.zarr", run, together or [])
            except (ValueError, TypeError, OSError, RuntimeError) as e:
                raise ImputeError(f"could not write '{out}' ({first_line(e)}); nothing was written") from None
        if out.exists():
            if not overwrite:
                raise ImputeError(f"output '{out}' appeared while writing; pass --overwrite or choose another name")
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(target, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask_permissions(path: Path) -> None:
    """Give a folder the permissions a plain mkdir would (0777 less the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o777 & ~mask)


def _write_netcdf(ds: xr.Dataset, target: Path, stage: Path, run: Callable[[Any], None],
                  together: list[str]) -> None:
    """NetCDF in bounded memory and in a fixed order. HDF5 lays a variable out where it is
    first written, so several dask variables written in one go land in an order dask picks by
    task names, and two identical runs would differ in bytes. So: (1) the `together` variables,
    whose chunks come from shared tasks, are computed once into a Zarr store beside the target
    (chunk files: order does not matter; on a cluster the workers write them); (2) the file is
    made with the coordinates and in-memory variables; (3) each dask variable is appended in
    the dataset's order, read from the stage or the input chunk by chunk, in this process."""
    lazy = [str(k) for k, v in ds.data_vars.items() if isinstance(v.data, dsa.Array)]
    staged = None
    if together:
        part = xr.Dataset({k: xr.Variable(ds[k].dims, ds[k].data, encoding={"dtype": ds[k].dtype})
                           for k in together})
        for k in together:  # NaN is the fill value of the float outputs; the int8 flag has none
            if ds[k].dtype.kind == "f":
                part[k].encoding["_FillValue"] = np.array(np.nan, ds[k].dtype)
        run(part.to_zarr(stage, mode="w", compute=False, consolidated=False))
        staged = xr.open_zarr(stage, consolidated=False)
    ds.drop_vars(lazy).to_netcdf(target)
    if "coordinates" not in ds.attrs:  # with no data variable left, xarray keeps the auxiliary
        import netCDF4  # coordinates in a global 'coordinates' attribute, which CF does not define
        with netCDF4.Dataset(target, "a") as nc:
            if "coordinates" in nc.ncattrs():
                nc.delncattr("coordinates")
    with dask.config.set(scheduler="synchronous"):
        for k in lazy:
            v = ds[k].variable
            data = staged[k].data if staged is not None and k in together else v.data
            var = xr.Variable(v.dims, data, v.attrs, dict(v.encoding))
            aux = [str(c) for c in ds[k].coords if c not in ds[k].dims]
            if aux and "coordinates" not in var.attrs:
                var.encoding["coordinates"] = " ".join(aux)
            xr.Dataset({k: var}).to_netcdf(target, mode="a")
