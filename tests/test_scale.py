"""Bounded memory and Dask: the cube imputed region by region, on this process or on a
local Dask cluster, gives the same file; regions tile the grid exactly; a lazily read cube gives
what a loaded one gives; scheduler options are checked."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from conftest import assert_one_error_line, open_any, run_cli
from impute_cli.testing import tiny_cube_dataset, write_cube
from impute_cli.io.tiling import plan_regions

CPU = ("--device", "cpu", "--quiet")


@pytest.mark.parametrize("shape,window,cell,budget", [
    ((8192, 512, 512), (8, 64, 64), 1064, 512 * 2**20),
    ((744, 33, 49), (8, 32, 32), 1064, 512 * 2**20),
    ((30, 16, 16), (8, 16, 16), 40, 512 * 2**20),
    ((100, 1, 37), (8, 1, 16), 200, 2**16),
    ((50, 40, 40), (8, 16, 16), 200, 2**20),
])
def test_regions_tile_the_grid_once_with_whole_windows(shape, window, cell, budget):
    plan = plan_regions(shape, window, cell, budget)
    regions = plan.regions()
    assert len(regions) == np.prod(plan.counts)
    # the cores are the product of a partition of each axis: every cell is in exactly one
    for axis, n in enumerate(shape):
        cuts = sorted({(r.core.t, r.core.y, r.core.x)[axis].start for r in regions} | {n})
        assert cuts[0] == 0 and list(plan.bounds[axis]) == cuts
    assert len({(r.core.t.start, r.core.y.start, r.core.x.start) for r in regions}) == len(regions)
    for r in regions:
        for core, outer, w, n in zip((r.core.t, r.core.y, r.core.x), (r.outer.t, r.outer.y, r.outer.x), window, shape):
            assert outer.start <= core.start and core.stop <= outer.stop  # the core is read with its margin
            assert outer.stop - outer.start >= min(w, n)  # and holds whole windows
    for axis in range(3):  # Zarr's rule: equal chunks but the last, which may be shorter
        c = plan.chunks(axis)
        assert all(x == c[0] for x in c[:-1]) and c[-1] <= c[0]


def test_big_cube_is_cut_in_time_first():
    plan = plan_regions((8192, 512, 512), (8, 64, 64), 40, 512 * 2**20)
    assert plan.counts[1:] == (1, 1) and plan.counts[0] > 100 and plan.margin == (4, 0, 0)


@pytest.fixture(scope="module")
def long_cube(tmp_path_factory):
    d = tmp_path_factory.mktemp("long")
    ds = tiny_cube_dataset(64, 16, 16, "cloud", 0.6, seed=4, var="sst")
    return write_cube(ds, d / "long.nc"), ds


def _same(a: xr.Dataset, b: xr.Dataset) -> None:
    assert sorted(a.variables) == sorted(b.variables)
    for v in a.variables:
        assert np.array_equal(a[v].values, b[v].values, equal_nan=True), v
        assert a[v].attrs.keys() == b[v].attrs.keys(), v
        assert all(np.array_equal(a[v].attrs[k], b[v].attrs[k]) for k in a[v].attrs), v


def test_regions_keep_the_invariants(long_cube, sst_model, tmp_path):
    """--region-mb 1 cuts the 64-step cube into several regions: observed cells are kept bit
    for bit, every gap is filled, and each region's samples have spread."""
    cube, ds = long_cube
    out = tmp_path / "o.nc"
    r = run_cli("impute", cube, out, "--model", sst_model.model, "--samples", 3, "--steps", 2, "--region-mb", 1, *CPU)
    assert r.exit_code == 0
    o = open_any(out)
    obs = np.isfinite(ds.sst.values)
    assert np.array_equal(o.sst_filled.values[obs], ds.sst.values[obs])
    assert not np.isnan(o.sst_filled.values).any()
    assert (o.sst_imputed_flag.values == np.where(obs, 0, 1)).all()
    assert (o.sst_std.values[obs] == 0).all() and (o.sst_std.values[~obs] > 0).mean() > 0.9


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_local_dask_cluster_gives_the_single_process_file(long_cube, sst_model, tmp_path, suffix):
    """--workers 2: the regions run on two worker processes and the output is the same, value for
    value and attribute for attribute (history aside: it records the command)."""
    cube, _ = long_cube
    args = ("--model", sst_model.model, "--samples", 3, "--steps", 2, "--save-samples", "--seed", 3,
            "--region-mb", 1, *CPU)
    run_cli("impute", cube, tmp_path / f"one{suffix}", *args)
    run_cli("impute", cube, tmp_path / f"two{suffix}", *args, "--workers", 2)
    a, b = open_any(tmp_path / f"one{suffix}"), open_any(tmp_path / f"two{suffix}")
    _same(a, b)
    assert {k: v for k, v in a.attrs.items() if k != "history"} == {k: v for k, v in b.attrs.items() if k != "history"}


def test_lazy_cube_gives_what_a_loaded_one_gives(long_cube, sst_model, tmp_path, monkeypatch):
    """A cube above the in-memory limit is never loaded whole: regions read their own boxes.
    The file is the same as when the cube is loaded."""
    import impute_cli.io.cube as cube_mod
    cube, _ = long_cube
    args = ("--model", sst_model.model, "--samples", 2, "--steps", 2, "--region-mb", 1, *CPU)
    run_cli("impute", cube, tmp_path / "loaded.nc", *args)
    monkeypatch.setattr(cube_mod, "IN_MEMORY_LIMIT", 0)
    run_cli("impute", cube, tmp_path / "lazy.nc", *args)
    _same(open_any(tmp_path / "loaded.nc"), open_any(tmp_path / "lazy.nc"))


def test_scheduler_and_workers_together_are_refused(long_cube, sst_model, tmp_path):
    cube, _ = long_cube
    r = run_cli("impute", cube, tmp_path / "o.nc", "--model", sst_model.model, "--workers", 2,
                "--scheduler", "tcp://127.0.0.1:1", *CPU, expect_ok=False)
    assert_one_error_line(r, "--scheduler", "--workers")
    assert not (tmp_path / "o.nc").exists()


def test_impute_under_torchrun_is_refused(long_cube, sst_model, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    cube, _ = long_cube
    r = run_cli("impute", cube, tmp_path / "o.nc", "--model", sst_model.model, *CPU, expect_ok=False)
    assert_one_error_line(r, "impute does not run under torchrun")
    assert [p.name for p in tmp_path.iterdir()] == []


def test_unreachable_scheduler_is_one_line(long_cube, sst_model, tmp_path, monkeypatch):
    import impute_cli.inference.engine as engine
    monkeypatch.setattr(engine, "CONNECT_TIMEOUT", "2s")
    cube, _ = long_cube
    r = run_cli("impute", cube, tmp_path / "o.nc", "--model", sst_model.model, "--scheduler", "tcp://127.0.0.1:9",
                *CPU, expect_ok=False)
    assert_one_error_line(r, "Dask scheduler", "tcp://127.0.0.1:9")
    assert [p.name for p in tmp_path.iterdir()] == []


def test_regions_on_a_cluster_with_land_levels_and_two_variables(tmp_path, tiny_preset):
    """Channels from two variables with a level dim, a land mask, several regions: the workers
    (which open the file themselves and get the fillable cells from the job) write what one
    process writes, land stays unfilled and every sea gap is filled."""
    ds = tiny_cube_dataset(40, 16, 16, "cloud", 0.6, seed=6, nvars=2, with_land=True, level_dim=True)
    cube = write_cube(ds, tmp_path / "land.nc")
    run_cli("train", cube, "--preset", tiny_preset, "--out", tmp_path / "m", "--steps", 10, *CPU)
    args = ("--model", tmp_path / "m", "--samples", 2, "--steps", 2, "--region-mb", 1, *CPU)
    run_cli("impute", cube, tmp_path / "one.zarr", *args)
    run_cli("impute", cube, tmp_path / "two.zarr", *args, "--workers", 2)
    a, b = open_any(tmp_path / "one.zarr"), open_any(tmp_path / "two.zarr")
    _same(a, b)
    sea = ds["mask"].values.astype(bool)
    for v in ("sst", "sst_1"):
        filled, flag = a[f"{v}_filled"].transpose("time", "level", "lat", "lon").values, a[f"{v}_imputed_flag"]
        assert not np.isnan(filled[..., sea]).any()
        assert np.isnan(filled[..., ~sea]).all() and (flag.transpose("time", "level", "lat", "lon").values[..., ~sea] == 2).all()


def test_lazy_cube_with_noleap_bounds_strings_and_a_scalar_coordinate(sst_model, tmp_path, monkeypatch):
    """A lazily read NetCDF file with cftime bounds on a noleap calendar, a string variable
    (object dtypes, which Dask cannot size) and a scalar coordinate (ERA5's height = 2 m) goes
    through region by region: the other variables come out as they went in, the scalar
    coordinate stays a coordinate of the variables (no global 'coordinates' attribute), and
    the invariants hold."""
    import netCDF4
    import impute_cli.io.cube as cube_mod
    ds = tiny_cube_dataset(40, 16, 16, "cloud", 0.6, seed=4, var="sst")
    t = xr.date_range("2001-01-01", periods=40, freq="D", calendar="noleap", use_cftime=True)
    ds = ds.assign_coords(time=("time", t, ds.time.attrs))
    ds["time_bnds"] = (("time", "bnds"), np.stack([t.values, t.values], 1))
    ds.time.attrs["bounds"] = "time_bnds"
    ds.time.encoding.update(units="days since 2001-01-01", calendar="noleap")
    ds["station_name"] = (("lat",), np.array([f"s{i}" * (i % 3 + 1) for i in range(16)], dtype=object))
    ds = ds.assign_coords(height=((), 2.0, {"units": "m", "standard_name": "height"}))
    cube = write_cube(ds, tmp_path / "noleap.nc")
    monkeypatch.setattr(cube_mod, "IN_MEMORY_LIMIT", 0)
    run_cli("impute", cube, tmp_path / "o.nc", "--model", sst_model.model, "--region-mb", 1, *CPU)
    coder = xr.coders.CFDatetimeCoder(use_cftime=True)
    o, i = open_any(tmp_path / "o.nc", decode_times=coder), open_any(cube, decode_times=coder)
    for v in ("time", "time_bnds", "station_name", "sst"):
        assert np.array_equal(o[v].values, i[v].values, equal_nan=v == "sst"), v
    assert o.time.encoding["calendar"] == "noleap"
    assert "height" in o.sst_filled.coords and "height" in o.sst_imputed_flag.coords
    with netCDF4.Dataset(tmp_path / "o.nc") as nc:
        assert "coordinates" not in nc.ncattrs()
    obs = np.isfinite(i.sst.values)
    assert np.array_equal(o.sst_filled.values[obs], i.sst.values[obs]) and not np.isnan(o.sst_filled.values).any()
