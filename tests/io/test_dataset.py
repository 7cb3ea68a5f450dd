"""Reading: real sample files open lazily as cubes with the right dims, channels and static
mask; bad inputs are ImputeErrors."""

from __future__ import annotations

import dask
import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

from conftest import real_file
from impute_cli.io.dataset import open_cube, open_dataset
from impute_cli.io.stats import compute_stats
from impute_cli.errors import ImputeError
from impute_cli.testing import land_mask, tiny_cube_dataset, write_cube

SAMPLES = ["alboranSST_small.nc", "tcw.nc", "ndvi_alaska_small.nc", "eraint_uvz.nc"]
NO_MASK = ["tcw.nc", "ndvi_alaska_small.nc", "eraint_uvz.nc"]


class CountingScheduler:
    """A dask scheduler that counts (and refuses) every compute."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, dsk, keys, **kwargs):
        self.calls += 1
        raise RuntimeError("dask compute while opening")


@pytest.mark.parametrize("name", NO_MASK)
def test_opening_computes_nothing(name):
    path = real_file(name)
    sched = CountingScheduler()
    with dask.config.set(scheduler=sched):
        cube = open_cube(path)
        assert sched.calls == 0
        assert isinstance(cube.data, dsa.Array)
        # the counter does see computes: reading a value goes through it
        with pytest.raises(RuntimeError, match="while opening"):
            cube.data[0, 0, 0, 0].compute()
        assert sched.calls == 1


@pytest.mark.parametrize("name", SAMPLES)
def test_every_sample_opens_as_a_lazy_float32_cube(name):
    cube = open_cube(real_file(name))
    T, H, W = cube.grid.shape
    assert isinstance(cube.data, dsa.Array) and cube.data.dtype == np.float32
    assert cube.data.shape == (T, len(cube.channels), H, W)
    assert cube.valid.shape == (H, W) and cube.valid.dtype == bool
    assert len(cube.units) == len(cube.channels) == len(cube.channel_sel)
    block = cube.read(slice(0, 2), slice(0, 5), slice(0, 7))
    assert block.shape == (2, len(cube.channels), 5, 7)
    stats = compute_stats(cube)
    assert all(np.isfinite(stats.mean)) and all(s > 0 for s in stats.std)
    assert 0 < stats.observed_fraction <= 1


def test_tcw_dims_and_packing():
    cube = open_cube(real_file("tcw.nc"))
    g = cube.grid
    assert (g.time_dim, g.y_dim, g.x_dim) == ("time", "latitude", "longitude")
    assert g.shape == (31, 73, 144) and g.extra_dims == ()
    assert cube.channels == ["tcw"] and cube.static_mask_var is None and cube.valid.all()
    assert g.y_values[0] == 90.0 and g.y_values[-1] == -90.0  # descending latitude kept
    raw = xr.open_dataset(real_file("tcw.nc"), mask_and_scale=False)["tcw"]
    assert raw.dtype == np.int16
    decoded = raw.values[0, :3, :3] * raw.attrs["scale_factor"] + raw.attrs["add_offset"]
    assert np.allclose(cube.read(slice(0, 1), slice(0, 3), slice(0, 3))[0, 0], decoded, rtol=1e-6)
    assert compute_stats(cube).observed_fraction == 1.0


def test_eraint_month_is_time_and_levels_are_channels():
    cube = open_cube(real_file("eraint_uvz.nc"))
    g = cube.grid
    assert g.time_dim == "month" and (g.y_dim, g.x_dim) == ("latitude", "longitude")
    assert g.extra_dims == ("level",) and g.shape == (2, 241, 480)
    assert cube.variables == ["z", "u", "v"]
    assert len(cube.channels) == 9
    assert cube.channels[:3] == ["z[level=200]", "z[level=500]", "z[level=850]"]
    assert cube.channels[3] == "u[level=200]" and cube.channels[-1] == "v[level=850]"
    assert cube.channel_sel[4] == ("u", {"level": 1})
    ds = xr.open_dataset(real_file("eraint_uvz.nc"))
    np.testing.assert_allclose(cube.read(slice(1, 2), slice(10, 12), slice(0, 3))[0, 4],
                               ds["u"].isel(month=1, level=1, latitude=slice(10, 12), longitude=slice(0, 3)).values,
                               rtol=1e-6)
    assert np.isfinite(cube.data[:, :, ::40, ::40].compute()).all()  # no NaN from the odd _FillValue


def test_alboran_mask_is_static_and_sea_is_valid():
    path = real_file("alboranSST_small.nc")
    cube = open_cube(path)
    assert cube.variables == ["SST"] and cube.static_mask_var == "mask"
    assert isinstance(cube.data, dsa.Array)
    mask = xr.open_dataset(path)["mask"].values
    assert np.array_equal(cube.valid, mask == 1), "sea (mask = 1, where SST is observed) is the fillable part"
    assert 0.2 < cube.valid.mean() < 0.6
    data = cube.data.compute()
    finite = data[np.isfinite(data)]
    assert finite.max() < 40 and finite.min() > 0, "the 99999 fill value is decoded to NaN"
    observed = np.isfinite(data).any(axis=(0, 1))
    assert observed[cube.valid].mean() > 0.9


def test_static_mask_polarity_follows_the_data(tmp_path):
    ds = tiny_cube_dataset(6, 12, 12, "pixel", 0.8, with_land=True)
    cube = open_cube(write_cube(ds, tmp_path / "a.nc"))
    assert cube.static_mask_var == "mask" and np.array_equal(cube.valid, ~land_mask(12, 12))
    ds["mask"] = 1 - ds["mask"]  # 1 = land now
    cube = open_cube(write_cube(ds, tmp_path / "b.nc"))
    assert np.array_equal(cube.valid, ~land_mask(12, 12))


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_level_dim_and_several_variables_become_channels(tmp_path, suffix):
    ds = tiny_cube_dataset(4, 8, 8, "pixel", 0.7, nvars=2, level_dim=True, var=["sst", "chl"])
    cube = open_cube(write_cube(ds, tmp_path / f"c{suffix}"))
    assert sorted(cube.variables) == ["chl", "sst"]
    expected = [f"{v}[level={lev}]" for v in cube.variables for lev in (850, 500)]
    assert cube.channels == expected
    for c, (v, isel) in enumerate(cube.channel_sel):
        np.testing.assert_array_equal(cube.data[:, c].compute(), ds[v].isel(isel).values)
    if suffix == ".nc":
        assert cube.variables == ["sst", "chl"]  # the file's order


def test_unknown_var_lists_the_variables():
    with pytest.raises(ImputeError) as e:
        open_cube(real_file("alboranSST_small.nc"), ["sst"])
    assert "'sst'" in str(e.value) and "SST" in str(e.value) and "mask" in str(e.value)


def test_var_without_time_dims_is_refused():
    with pytest.raises(ImputeError, match="dims"):
        open_cube(real_file("alboranSST_small.nc"), ["mask"])


def test_all_nan_variable_is_refused_by_compute_stats(tmp_path):
    ds = tiny_cube_dataset(4, 8, 8, "pixel", 0.7, nvars=2, var=["sst", "chl"])
    ds["chl"][:] = np.nan
    cube = open_cube(write_cube(ds, tmp_path / "n.nc"))
    with pytest.raises(ImputeError, match="chl.*no observed value"):
        compute_stats(cube)


def test_infinite_values_are_refused(tmp_path):
    ds = tiny_cube_dataset(4, 8, 8, "pixel", 0.7)
    ds["sst"][1, 2, 3] = np.inf
    ds["sst"][2, 2, 3] = -np.inf
    cube = open_cube(write_cube(ds, tmp_path / "i.nc"))
    with pytest.raises(ImputeError, match="2 infinite"):
        compute_stats(cube)


def test_stats_are_over_observed_cells(tmp_path):
    ds = tiny_cube_dataset(6, 10, 10, "cloud", 0.5)
    stats = compute_stats(open_cube(write_cube(ds, tmp_path / "s.nc")))
    x = ds["sst"].values
    assert stats.mean[0] == pytest.approx(float(np.nanmean(x)), rel=1e-5)
    assert stats.std[0] == pytest.approx(float(np.nanstd(x)), rel=1e-4)
    assert stats.observed_fraction == pytest.approx(float(np.isfinite(x).mean()))


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(ImputeError, match="does not exist"):
        open_cube(tmp_path / "nope.nc")


def test_corrupt_file_is_an_error(tmp_path):
    p = tmp_path / "corrupt.nc"
    p.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ImputeError, match="cannot read"):
        open_cube(p)


def test_truncated_netcdf4_file_is_an_error(tmp_path):
    data = real_file("tcw.nc").read_bytes()
    p = tmp_path / "half.nc"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImputeError, match="cannot read"):
        open_cube(p)


def test_folder_that_is_not_zarr_is_an_error(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(ImputeError, match="not a Zarr store"):
        open_dataset(tmp_path / "folder")


def test_file_without_a_usable_variable_is_an_error(tmp_path):
    ds = xr.Dataset({"a": (("x",), np.arange(3.0))})
    with pytest.raises(ImputeError, match="no floating-point variable"):
        open_cube(write_cube(ds, tmp_path / "a.nc"))


def test_truncated_netcdf3_file_is_an_error(tmp_path):
    data = real_file("alboranSST_small.nc").read_bytes()  # NETCDF3_CLASSIC
    p = tmp_path / "half.nc"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImputeError, match="truncated"):
        cube = open_cube(p)
        compute_stats(cube)


@pytest.mark.parametrize("name", ["alboranSST_small.nc", "eraint_uvz.nc"])  # CDF-1 and CDF-2 (64-bit offset)
def test_complete_netcdf3_files_pass_the_size_check(name, tmp_path):
    path = real_file(name)
    data = path.read_bytes()
    assert data[:3] == b"CDF", f"{name} is not a classic NetCDF file: the size check would not run"
    cube = open_cube(path)
    compute_stats(cube)  # where a short file is refused (test_truncated_netcdf3_file_is_an_error)
    # the check is live on this very file: its first half is refused
    short = tmp_path / name
    short.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImputeError, match="truncated"):
        compute_stats(open_cube(short))
