"""dataset: a NetCDF/Zarr file on disk -> a lazy `Cube` (time, channel, y, x).

Opening a file and planning work touch no data: xarray opens lazily with Dask, CF decoding
(fill values, scale/offset) is xarray's, and only `Cube.read` computes.

Which dims are which, per variable (`grid_dims`):

1. time: CF `axis: T` or `standard_name: time`, else a common name (time, valid_time, date,
   month...), else datetime values. A variable without one is not imputable.
2. A grid: a Y dim and an X dim, found the same way (`axis: Y`/`X`, standard_name latitude /
   projection_y_coordinate..., or names lat/latitude/y/rlat...). Every other dim (level,
   member...) makes channels: one channel per level.
3. Otherwise a series, with ONE spatial dim -- time x station, or time x feature (several
   series side by side, the multivariate time-series setting). That dim is the Y or X dim
   when only one of them is found (time x lat), else the only dim that is neither time, nor a
   channel dim (CF `axis: Z`, a `positive` attribute, a vertical or realization standard_name,
   or a name such as level/depth/member/realization), nor a cell-bounds dim (bnds, nv). Two or
   more such dims are ambiguous and refused: set `axis: X` on the one that indexes the series.
   Station coordinates lat(station)/lon(station) are auxiliary coordinates, not dims, and do
   not count. Inside, a series is a grid of height 1: y is a dummy axis (`Grid.y_dim` None,
   H = 1) and x is the series dim (W = number of stations/features), so windows, masks,
   batches and the network are unchanged; `Grid.file_dims` and `Grid.to_file` give the
   layout back to the writer, so the output has the input's dims. All stations of a variable
   share one normalisation (one channel): features in different units belong in separate
   variables.

Without --var, the variables on the most common grid are taken, 2-D grids before series (so
a time_bnds(time, bnds) or a station table beside a gridded field is never picked)."""

from __future__ import annotations

import warnings
from pathlib import Path

import dask.array as dsa
import numpy as np
import xarray as xr

from impute_cli.io.netcdf_header import check_classic_header
from impute_cli.errors import ImputeError, first_line
from impute_cli.io.cube import Cube, Grid, compute

TIME_NAMES = ("time", "t", "valid_time", "date", "month", "day", "year")
Y_NAMES = ("lat", "latitude", "y", "rlat", "nav_lat", "grid_latitude", "south_north")
X_NAMES = ("lon", "longitude", "x", "rlon", "nav_lon", "grid_longitude", "west_east")
AXIS_STANDARD_NAMES = ("latitude", "longitude", "projection_y_coordinate", "projection_x_coordinate",
                       "grid_latitude", "grid_longitude")
CHANNEL_DIM_NAMES = ("level", "lev", "levels", "plev", "pressure", "isobaric", "depth", "height", "altitude",
                     "z", "member", "ensemble", "realization", "realisation", "number", "member_id")
CHANNEL_STANDARD_NAMES = ("air_pressure", "depth", "height", "altitude", "model_level_number", "realization",
                          "atmosphere_hybrid_sigma_pressure_coordinate", "atmosphere_sigma_coordinate")
BOUNDS_DIM_NAMES = ("bnds", "bounds", "bnd", "nv", "nbnd", "nbnds", "nb2", "vertices", "nvertex", "two")
MASK_NAMES = ("mask", "lsm", "land_sea_mask", "landmask", "land_mask", "sea_mask", "seamask", "lsmask")
MASK_STANDARD_NAMES = ("land_binary_mask", "sea_binary_mask", "land_area_fraction", "sea_area_fraction")


def open_dataset(path: str | Path) -> xr.Dataset:
    """Open NetCDF or Zarr lazily, CF-decoded. Refuses missing or unreadable files clearly."""
    p = Path(path)
    if not p.exists():
        raise ImputeError(f"input '{path}' does not exist; check the path")
    is_zarr = p.suffix == ".zarr" or (p.is_dir() and ((p / ".zgroup").exists() or (p / "zarr.json").exists()))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. '_FillValue = NaN' on packed shorts (eraint_uvz.nc)
            if is_zarr:
                ds = xr.open_zarr(p, chunks={})
            elif p.is_dir():
                raise ImputeError(f"'{path}' is a folder but not a Zarr store; give a .nc file or a .zarr store")
            else:
                _check_classic_size(p)
                ds = xr.open_dataset(p, chunks="auto")  # dask splits a large contiguous variable (~128 MiB chunks)
    except ImputeError:
        raise
    except Exception as e:  # netCDF4/zarr raise many types for corrupt files
        raise ImputeError(f"cannot read '{path}' as NetCDF or Zarr ({first_line(e)}); is the file complete?") from None
    for name, v in ds.variables.items():  # xarray opens these but fails on first use
        if len(set(v.dims)) < len(v.dims):
            raise ImputeError(f"variable '{name}' of '{path}' uses a dimension twice {v.dims}; the header is "
                              "corrupt or the file is not CF (rename one of the dimensions)")
    return ds


def _check_classic_size(p: Path) -> None:
    """A classic (CDF-1/2/5) NetCDF file cut short still opens -- netCDF-C reads the missing tail
    as zeros -- so compare its size with the bytes its header promises for the data alone."""
    with open(p, "rb") as f:
        magic = f.read(4)
    if magic[:3] != b"CDF":
        return
    check_classic_header(p)  # before netCDF-C, which can crash on a corrupt header
    import netCDF4
    with netCDF4.Dataset(p) as nc:
        rec_dim = next((d for d in nc.dimensions.values() if d.isunlimited()), None)
        nrec = len(rec_dim) if rec_dim is not None else 0
        fixed = record = 0
        for v in nc.variables.values():
            size = v.dtype.itemsize * int(np.prod([len(nc.dimensions[d]) for d in v.dimensions
                                                    if rec_dim is None or d != rec_dim.name]))
            padded = -(-size // 4) * 4
            if rec_dim is not None and rec_dim.name in v.dimensions:
                record += padded
            else:
                fixed += padded
    expected = fixed + nrec * record
    actual = p.stat().st_size
    if actual < expected:
        raise ImputeError(f"'{p}' is truncated: its header describes at least {expected} bytes of data "
                          f"but the file has {actual}; get a complete copy of the file")


def _attr(ds: xr.Dataset, name: str, key: str) -> str:
    return str(ds[name].attrs.get(key, "")).lower() if name in ds.variables else ""


def _find_dim(ds: xr.Dataset, dims: tuple[str, ...], axis: str, standard: tuple[str, ...],
              names: tuple[str, ...]) -> str | None:
    for d in dims:  # CF axis / standard_name first, then common names, then datetime dtype
        if _attr(ds, d, "axis") == axis.lower() or _attr(ds, d, "standard_name") in standard:
            return d
    for d in dims:
        if d.lower() in names:
            return d
    if axis == "T":
        for d in dims:
            if d in ds.variables and np.issubdtype(ds[d].dtype, np.datetime64):
                return d
    return None


def _is_channel_dim(ds: xr.Dataset, d: str) -> bool:
    """A vertical level, ensemble member or realization dim: its entries become channels."""
    return (d.lower() in CHANNEL_DIM_NAMES or _attr(ds, d, "axis") == "z"
            or (d in ds.variables and "positive" in ds[d].attrs)
            or _attr(ds, d, "standard_name") in CHANNEL_STANDARD_NAMES)


def grid_dims(ds: xr.Dataset, v: str) -> tuple[str, str | None, str] | str:
    """(time, y, x) dims of variable `v`, y None for a series (one spatial dim); or, when it has
    none, why (a one-line reason). The rule is in the module docstring."""
    dims = tuple(str(d) for d in ds[v].dims)
    t = _find_dim(ds, dims, "T", ("time",), TIME_NAMES)
    if t is None:
        return (f"variable '{v}' has dims {dims}: no time dim found; name it time or set the CF "
                "attribute axis='T' on its coordinate")
    y = _find_dim(ds, dims, "Y", ("latitude", "projection_y_coordinate", "grid_latitude"), Y_NAMES)
    x = _find_dim(ds, dims, "X", ("longitude", "projection_x_coordinate", "grid_longitude"), X_NAMES)
    if y and x and len({t, y, x}) == 3:
        return t, y, x
    found = [d for d in (x, y) if d and d != t]
    if found:  # one of Y/X: a series along it (time x lat)
        return t, None, found[0]
    rest = [d for d in dims if d != t and not _is_channel_dim(ds, d) and d.lower() not in BOUNDS_DIM_NAMES]
    if len(rest) == 1:
        return t, None, rest[0]
    if not rest:
        return (f"variable '{v}' has dims {dims}: besides time there is no lat/lon grid and no station or "
                "feature dim; impute-cli needs a grid (time, lat, lon) or series side by side (time, station)")
    return (f"variable '{v}' has dims {dims}: cannot tell which of {', '.join(rest)} is the grid or the "
            "station/feature dim; name grid dims lat/lon, or set axis='X' on the station/feature dim's "
            "coordinate (other dims become channels)")


def select_variables(ds: xr.Dataset, wanted: list[str] | None, covariates: list[str] | None = None
                     ) -> tuple[list[str], tuple[str, str | None, str]]:
    """Variables to impute (default: every floating variable on the main grid but the
    `covariates`) and their (time, y, x) dims, y None for a series (see the module docstring).
    The covariates must be numeric, on the same grid, and not among the imputed variables."""
    covariates = covariates or []
    if both := [v for v in wanted or [] if v in covariates]:
        raise ImputeError(f"'{both[0]}' is named both with --var and --covariate; a variable is either filled "
                          "or context, so drop one of the two")
    for v in (wanted or []) + covariates:
        flag = "--covariate" if v in covariates else "--var"
        if v not in ds.data_vars:
            raise ImputeError(f"variable '{v}' is not in the file; it has: {', '.join(map(str, ds.data_vars))}")
        if not np.issubdtype(ds[v].dtype, np.number) or np.issubdtype(ds[v].dtype, np.bool_):
            raise ImputeError(f"variable '{v}' is not numeric ({ds[v].dtype}); choose a numeric variable with {flag}")
        if isinstance(why := grid_dims(ds, v), str):
            raise ImputeError(why)
    if wanted:
        chosen = list(wanted)
    else:
        bounds = {str(ds[v].attrs.get("bounds", "")) for v in ds.variables}
        found = {str(v): grid_dims(ds, str(v)) for v in ds.data_vars
                 if np.issubdtype(ds[v].dtype, np.floating) and str(v) not in bounds and str(v) not in covariates}
        cands = [v for v, g in found.items() if not isinstance(g, str)]
        if any(found[v][1] is not None for v in cands):  # 2-D grids before series
            cands = [v for v in cands if found[v][1] is not None]
        if not cands:
            raise ImputeError("no floating-point variable with a time dim and lat/lon (or a station/feature) dims "
                              "found; name one with --var, or set the CF 'axis' attributes")
        grids = [(found[v], tuple(ds[v].sizes[d] for d in found[v][1:] if d)) for v in cands]
        main = max(dict.fromkeys(grids), key=grids.count)  # ties: the first in the file
        chosen = [v for v, g in zip(cands, grids) if g == main]
    grids_ = {grid_dims(ds, v) for v in chosen}
    if len(grids_) > 1:
        raise ImputeError(f"variables {', '.join(chosen)} are on different grids "
                          f"{sorted(grids_, key=str)}; impute them in separate runs with --var")
    for v in covariates:
        if grid_dims(ds, v) not in grids_:  # the same dims: in one file, the same sizes
            raise ImputeError(f"covariate '{v}' is not on the grid of {', '.join(chosen)}; regrid it to that grid "
                              "(e.g. cdo remapbil) or leave it out")
    return [str(v) for v in chosen], grids_.pop()  # type: ignore[return-value]


def _is_mask_candidate(ds: xr.Dataset, v: str, space: tuple[str, ...]) -> bool:
    """A variable on the spatial dims alone named or standard-named like a land/sea mask."""
    return set(ds[v].dims) == set(space) and (v.lower() in MASK_NAMES
                                              or _attr(ds, v, "standard_name") in MASK_STANDARD_NAMES)


def _static_mask(ds: xr.Dataset, name: str | None, space: tuple[str, ...],
                 observed_any: np.ndarray | None) -> tuple[np.ndarray | None, str | None]:
    """The fillable cells, in the file's spatial layout `space` ((y, x), or (station,) for a
    series), from a mask variable (land/sea, stations to fill). Its polarity (which value
    means 'fill here') is taken from where the data are observed, since conventions differ
    (land_binary_mask is 1 on land, many SST files use 1 for sea)."""
    if name is None:
        name = next((str(v) for v in ds.data_vars if _is_mask_candidate(ds, str(v), space)), None)
        if name is None:
            return None, None
    elif name not in ds.variables:
        raise ImputeError(f"static mask variable '{name}' is not in the file; it has: {', '.join(map(str, ds.data_vars))}")
    m = ds[name]
    if not set(space) <= set(m.dims):
        raise ImputeError(f"static mask '{name}' has dims {m.dims}; it needs the grid dims ({', '.join(space)})")
    other = [d for d in m.dims if d not in space]
    vals = np.asarray(m.transpose(*other, *space).values, dtype="float64")
    if other:
        vals = vals.reshape(-1, *vals.shape[len(other):])[0]
    nonzero = np.isfinite(vals) & (vals != 0)
    if observed_any is not None and observed_any.any():
        # keep the polarity under which most observed cells are fillable
        valid = nonzero if observed_any[nonzero].sum() >= observed_any[~nonzero].sum() else ~nonzero
    else:
        valid = nonzero
    if not valid.any():
        raise ImputeError(f"static mask '{name}' leaves no cell to fill; check the variable or drop --static-mask")
    return valid, name


def _axis_values(ds: xr.Dataset, dim: str, n: int, positions: bool) -> tuple[float, ...]:
    """A dim's coordinate values as floats (the grid fingerprint); positions 0..n-1 when it
    has none, when they are not numbers (station ids), or when `positions` (a station or
    feature dim, whose labels are not a spacing)."""
    if positions or dim not in ds.variables or not np.issubdtype(ds[dim].dtype, np.number):
        return tuple(float(i) for i in range(n))
    return tuple(float(a) for a in ds[dim].values)


def _is_global_longitude(ds: xr.Dataset, x: str, values: tuple[float, ...]) -> bool:
    """x is longitude (by its standard_name, units or name) at an even spacing whose columns
    make a whole circle: n * spacing = 360 degrees, to a tenth of a cell."""
    lon = (_attr(ds, x, "standard_name") == "longitude" or x.lower() in ("lon", "longitude")
           or _attr(ds, x, "units") in ("degrees_east", "degree_east", "degrees_e", "degree_e"))
    if not lon or len(values) < 3:
        return False
    d = np.diff(np.asarray(values, "float64"))
    return bool(np.allclose(d, d[0], rtol=1e-3) and abs(abs(d[0]) * len(values) - 360.0) <= 0.1 * abs(d[0]))


def open_cube(path: str | Path, variables: list[str] | None = None, static_mask: str | None = None,
              ds: xr.Dataset | None = None, valid: np.ndarray | None = None,
              covariates: list[str] | None = None) -> Cube:
    """Open a file as a lazy Cube: variables selected, dims found, extra dims made channels.
    A series (time x station) becomes a grid of height 1 (see the module docstring). `valid`,
    the fillable cells found by an earlier opening, skips finding the static mask's polarity
    (a pass over the data). `covariates`: variables of the same grid that the model sees as
    context only (never filled, never hidden); their channels come after the imputed ones."""
    ds = open_dataset(path) if ds is None else ds
    covariates = list(dict.fromkeys(covariates or []))
    chosen, (t, y, x) = select_variables(ds, variables, covariates)
    space = (x,) if y is None else (y, x)
    extra_all: list[str] = []
    arrays, channels, sel, units = [], [], [], []
    for v in chosen + covariates:
        da = ds[v]
        extra = [d for d in da.dims if d not in (t, *space)]
        for d in extra:
            if d not in extra_all:
                extra_all.append(d)
        da = da.transpose(t, *extra, *space)
        for d in (t, *space):
            if da.sizes[d] == 0:
                raise ImputeError(f"variable '{v}' has a zero-length '{d}' dim; nothing to impute")
        arr = da.data if isinstance(da.data, dsa.Array) else dsa.from_array(da.values)
        n_extra = int(np.prod([da.sizes[d] for d in extra])) if extra else 1
        H = 1 if y is None else da.sizes[y]
        arrays.append(arr.astype("float32").reshape(da.sizes[t], n_extra, H, da.sizes[x]))
        for idx in np.ndindex(*[da.sizes[d] for d in extra]) if extra else [()]:
            isel = {d: int(i) for d, i in zip(extra, idx)}
            label = v + "".join(f"[{d}={_coord_label(ds, d, i)}]" for d, i in isel.items())
            channels.append(label)
            sel.append((v, isel))
            units.append(str(da.attrs.get("units", "")))
    data = dsa.concatenate(arrays, axis=1) if len(arrays) > 1 else arrays[0]
    n_target = sum(v in chosen for v, _ in sel)
    check_monotonic(ds, t, increasing=True)
    for d in space if y is not None else ():  # a station/feature dim is a set of labels, not an axis
        check_monotonic(ds, d)
    T, H, W = ds.sizes[t], (1 if y is None else ds.sizes[y]), ds.sizes[x]
    # a series keeps its coordinate values (for the model's spacing check) only along a
    # latitude/longitude-like axis (time x lat); station or feature labels are not a spacing
    real_axis = y is not None or x.lower() in X_NAMES + Y_NAMES or _attr(ds, x, "standard_name") in AXIS_STANDARD_NAMES
    yv = (0.0,) if y is None else _axis_values(ds, y, H, False)
    xv = _axis_values(ds, x, W, not real_axis)
    grid = Grid(t, y, x, tuple(extra_all), (T, H, W), yv, xv, wraps=y is not None and _is_global_longitude(ds, x, xv))
    if valid is not None:
        return Cube(ds, chosen, channels, sel, units, grid, valid, static_mask, data, covariates=tuple(covariates))
    observed_any = None
    if static_mask is not None or any(_is_mask_candidate(ds, str(v), space) for v in ds.data_vars):
        observed_any = grid.to_file(np.asarray(compute(dsa.isfinite(data[:, :n_target]).any(axis=(0, 1)))[0]))
    valid, mask_name = _static_mask(ds, static_mask, space, observed_any)
    valid = np.ones((H, W), bool) if valid is None else valid.reshape(H, W)
    return Cube(ds, chosen, channels, sel, units, grid, valid, mask_name, data, covariates=tuple(covariates))


def check_monotonic(ds: xr.Dataset, dim: str, increasing: bool = False) -> None:
    """Refuse a coordinate with repeated values or out of order: windows, the grid spacing and
    time interpolation all assume a regular, ordered axis. Time must increase; a spatial axis may
    run either way (descending latitude is common)."""
    if dim not in ds.indexes:
        return
    idx = ds.indexes[dim]
    if not idx.is_unique:
        dup = idx[idx.duplicated()][0]
        raise ImputeError(f"coordinate '{dim}' repeats the value {dup}; drop the duplicates first "
                          f"(e.g. xarray's drop_duplicates('{dim}'))")
    if not (idx.is_monotonic_increasing or (not increasing and idx.is_monotonic_decreasing)):
        order = "increasing" if increasing else "monotonic"
        cdo = " or cdo's sorttimestamp" if increasing else ""
        raise ImputeError(f"coordinate '{dim}' is not {order}; sort the file along it first "
                          f"(e.g. xarray's sortby('{dim}'){cdo})")


def _coord_label(ds: xr.Dataset, dim: str, i: int) -> str:
    if dim in ds.variables:
        v = ds[dim].values[i]
        return str(v.item() if hasattr(v, "item") else v)
    return str(i)


