"""testing: small public helpers for tests (the project's own and its users').

`tiny_cube_dataset` makes a CF-style gappy cube in a few milliseconds from `impute_cli.synthetic`
(smooth advected field, realistic gaps, optional land mask, level dim or several variables);
`tiny_series_dataset` makes station series (time, station) with outages and dropouts;
`tiny_preset_yaml` writes a preset with a tiny network and few steps, so a train + impute round
trip runs in seconds on a CPU. Nothing here is used by the CLI itself."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import xarray as xr
import yaml

from impute_cli.synthetic import advected_field, gap_mask, series_gaps  # series_gaps: also for the tests

CUBE_PATTERNS = ("cloud", "pixel", "block", "none")

TINY_PRESET: dict[str, Any] = {
    "description": "tiny preset for tests (seconds on a CPU)",
    "network": {"base_channels": 8, "channel_mult": [1, 2], "blocks_per_level": 1, "emb_dim": 16,
                "prefill_input": True},
    "window": {"frames": 3, "height": 16, "width": 16, "overlap": 0.25},
    "mask": {"pattern": "auto", "context_ratio": 0.7, "query": "observed", "query_ratio": 1.0,
             "block_sizes": [2, 4]},
    "train": {"steps": 20, "batch_size": 4, "lr": 0.002, "warmup": 5, "ema": 0.9,
              "checkpoint_every": 5, "seed": 0},
    "impute": {"ensemble": 2, "batch_size": 8},
}


def land_mask(H: int, W: int) -> np.ndarray:
    """(H, W) bool, True on land: a rectangular 'coast' in the lower-left corner."""
    land = np.zeros((H, W), bool)
    land[: max(1, H // 2), : max(1, W // 4)] = True
    return land


def tiny_cube_dataset(T: int = 12, H: int = 16, W: int = 16, pattern: str = "cloud", observed: float = 0.6,
                      seed: int = 0, nvars: int = 1, with_land: bool = False, level_dim: bool = False,
                      var: str | Sequence[str] = "sst", spacing: float = 0.25, units: str = "degC",
                      levels: Sequence[int] = (850, 500)) -> xr.Dataset:
    """A small gappy cube: dims (time, [level,] lat, lon), float32, NaN in the gaps.

    pattern: 'cloud', 'pixel' or 'block' gaps keeping about `observed` of the cells, or 'none'
    (a complete cube). nvars variables (named by `var`, a name or a list of names; with one name
    and nvars > 1 they are var, var_1, var_2...). with_land adds a static `mask` (lat, lon)
    variable, 1 = sea and 0 = land, and the data are NaN on land. level_dim adds a `level` dim
    to every variable (one channel per level). spacing is the lat/lon grid step in degrees."""
    if pattern not in CUBE_PATTERNS:
        raise ValueError(f"unknown pattern {pattern!r}; use one of {CUBE_PATTERNS}")
    if isinstance(var, str):
        names = [var] + [f"{var}_{k}" for k in range(1, nvars)]
    else:
        names = list(var)
        if len(names) != nvars and nvars != 1:
            raise ValueError("give nvars names in var")
    land = land_mask(H, W) if with_land else np.zeros((H, W), bool)
    obs = np.ones((T, H, W), bool) if pattern == "none" else gap_mask((T, H, W), pattern, observed, seed)
    obs = obs & ~land[None]
    coords: dict[str, Any] = {
        "time": ("time", pd.date_range("2021-01-01", periods=T, freq="D"), {"standard_name": "time", "axis": "T"}),
        "lat": ("lat", (30 + spacing * np.arange(H)).astype("float32"),
                {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"}),
        "lon": ("lon", (-40 + spacing * np.arange(W)).astype("float32"),
                {"standard_name": "longitude", "units": "degrees_east", "axis": "X"}),
    }
    if level_dim:
        coords["level"] = ("level", np.asarray(levels, "int32"), {"units": "hPa", "positive": "down"})
    data_vars: dict[str, Any] = {}
    for k, name in enumerate(names):
        if level_dim:
            fields = [15.0 + 2.0 * advected_field(T, H, W, seed + 17 * k + 5 * j) - 3.0 * j for j in range(len(levels))]
            arr = np.stack([np.where(obs, f, np.nan) for f in fields], axis=1).astype("float32")
            dims: tuple[str, ...] = ("time", "level", "lat", "lon")
        else:
            field = 15.0 + 2.0 * advected_field(T, H, W, seed + 17 * k)
            arr = np.where(obs, field, np.nan).astype("float32")
            dims = ("time", "lat", "lon")
        data_vars[name] = (dims, arr, {"units": units, "long_name": f"synthetic {name}"})
    if with_land:
        data_vars["mask"] = (("lat", "lon"), (~land).astype("float32"), {"long_name": "land/sea mask (1 = sea)"})
    return xr.Dataset(data_vars, coords=coords,
                      attrs={"Conventions": "CF-1.8", "title": f"impute-cli tiny test cube, {pattern} gaps",
                             "history": "2021-01-01T00:00:00Z: made by impute_cli.testing"})


def tiny_series_dataset(T: int = 48, S: int = 12, observed: float = 0.75, seed: int = 0, var: str = "tas",
                        dim: str = "station", units: str = "degC", station_first: bool = False,
                        outage_steps: tuple[int, int] = (3, 12)) -> xr.Dataset:
    """Gappy station series: `var` (time, station) float32, NaN in the gaps (CF timeSeries).

    The S stations sit at random points of a small area and sample one smooth advected field,
    so that near stations agree, each with its own offset (its height, say). Gaps are stations
    out for runs of `outage_steps` time steps plus random dropouts, keeping about `observed`
    of the cells (`observed=1` gives complete series). The station dim carries string ids
    (cf_role timeseries_id) and lat(station)/lon(station) are auxiliary coordinates.
    dim='feature' makes a multivariate series instead (time, feature): several series side
    by side, named f0, f1..., without locations. station_first puts the dims as CF's
    orthogonal array does, (station, time)."""
    rng = np.random.default_rng(seed)
    n = 12  # stations sample a 12 x 12 field
    field = advected_field(T, n, n, seed)
    cells = rng.choice(n * n, S, replace=S > n * n)
    iy, ix = np.divmod(cells, n)
    values = 12.0 + 4.0 * field[:, iy, ix] + rng.normal(0.0, 2.0, S)[None].astype("float32")
    obs = np.ones((T, S), bool) if observed >= 1.0 else series_gaps(T, S, observed, seed, outage_steps)
    arr = np.where(obs, values, np.nan).astype("float32")
    dims: tuple[str, str] = ("time", dim)
    if station_first:
        arr, dims = np.ascontiguousarray(arr.T), (dim, "time")
    coords: dict[str, Any] = {
        "time": ("time", pd.date_range("2021-01-01", periods=T, freq="h"), {"standard_name": "time", "axis": "T"})}
    attrs: dict[str, Any] = {"units": units, "long_name": f"synthetic {var}"}
    if dim == "station":
        coords["station"] = ("station", np.array([f"ST{k:03d}" for k in range(S)]),
                             {"cf_role": "timeseries_id", "long_name": "station id"})
        coords["lat"] = ("station", (45.0 + 0.1 * iy + rng.uniform(0, 0.1, S)).astype("float32"),
                         {"standard_name": "latitude", "units": "degrees_north"})
        coords["lon"] = ("station", (5.0 + 0.1 * ix + rng.uniform(0, 0.1, S)).astype("float32"),
                         {"standard_name": "longitude", "units": "degrees_east"})
        if units in ("degC", "K"):
            attrs["standard_name"] = "air_temperature"
    else:
        coords[dim] = (dim, np.array([f"f{k}" for k in range(S)]), {"long_name": "series name"})
    return xr.Dataset({var: (dims, arr, attrs)}, coords=coords,
                      attrs={"Conventions": "CF-1.8", "featureType": "timeSeries",
                             "title": f"impute-cli tiny test series, {S} {dim}s",
                             "history": "2021-01-01T00:00:00Z: made by impute_cli.testing"})


def write_cube(ds: xr.Dataset, path: str | Path) -> Path:
    """Write a dataset as NetCDF (.nc) or Zarr (.zarr) by the path's extension."""
    path = Path(path)
    if path.suffix == ".zarr":
        ds.to_zarr(path, mode="w")
    else:
        ds.to_netcdf(path)
    return path


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def tiny_preset_dict(**overrides: Any) -> dict[str, Any]:
    """The tiny preset as a mapping; overrides are merged per section, e.g.
    `tiny_preset_dict(train={"steps": 8}, mask={"pattern": "pixel"})`."""
    return _merge(TINY_PRESET, overrides)


def tiny_preset_yaml(path: str | Path, **overrides: Any) -> Path:
    """Write the tiny preset (with `overrides` merged per section) to `path`; returns the path.
    Its preset name is the file's stem."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(tiny_preset_dict(**overrides), sort_keys=False))
    return path
