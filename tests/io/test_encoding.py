"""Outputs stored like their inputs: a packed variable's V_filled is packed the same way
(observed cells keep their packed integers), new variables are compressed, --no-copy writes
only the new variables, and a point-estimate output stays within about twice its input."""

from __future__ import annotations

import netCDF4
import numpy as np
import pytest

from conftest import assert_one_error_line, open_any, run_cli

CPU = ("--device", "cpu")
from impute_cli.io.encoding import chunks, packed_range, packing


def _packed_copy(sst_model, path):
    """The fixture's cube stored as int16 with scale/offset and a fill value (as ERA files are)."""
    ds = open_any(sst_model.cube)
    ds["sst"].encoding = {"dtype": "int16", "scale_factor": 0.001, "add_offset": 15.0, "_FillValue": np.int16(-32767)}
    ds.to_netcdf(path)
    return path


def _raw(path, var):
    with netCDF4.Dataset(path) as nc:
        nc.set_auto_maskandscale(False)
        v = nc[var]
        return v[:].copy(), {k: v.getncattr(k) for k in v.ncattrs()}, v.filters(), v.dtype


def test_packed_input_gives_packed_filled_with_observed_integers_unchanged(sst_model, tmp_path):
    inp = _packed_copy(sst_model, tmp_path / "packed.nc")
    out = tmp_path / "o.nc"
    run_cli("impute", inp, out, "--model", sst_model.model, *CPU, "--quiet")
    raw_in, attrs_in, _, _ = _raw(inp, "sst")
    raw_out, attrs_out, filters, dtype = _raw(out, "sst_filled")
    assert dtype == np.int16
    assert attrs_out["scale_factor"] == attrs_in["scale_factor"] and attrs_out["add_offset"] == attrs_in["add_offset"]
    observed = raw_in != attrs_in["_FillValue"]
    assert np.array_equal(raw_out[observed], raw_in[observed])  # the packed integers, bit for bit
    flags = open_any(out)["sst_imputed_flag"].values
    assert ((raw_out != attrs_out["_FillValue"]) == (flags != 2)).all()  # every fillable gap filled
    assert filters["zlib"] and filters["shuffle"] and filters["complevel"] == 1
    assert out.stat().st_size <= 2.2 * inp.stat().st_size


def test_samples_of_packed_data_are_float32_and_compressed(sst_model, tmp_path):
    inp = _packed_copy(sst_model, tmp_path / "packed.nc")
    out = tmp_path / "o.nc"
    run_cli("impute", inp, out, "--model", sst_model.model, "--samples", 2, "--sampler-steps", 2, "--no-calibrate",
            *CPU, "--quiet")
    for v in ("sst_std", "sst_lower", "sst_upper"):
        _, _, filters, dtype = _raw(out, v)
        assert dtype == np.float32 and filters["zlib"], v


def test_no_copy_writes_only_the_new_variables_and_compress_0_none(sst_model, tmp_path):
    out = tmp_path / "o.nc"
    run_cli("impute", sst_model.cube, out, "--model", sst_model.model, "--no-copy", "--compress", 0, *CPU, "--quiet")
    ds = open_any(out)
    assert set(ds.data_vars) == {"sst_filled", "sst_imputed_flag"}
    assert set(ds.coords) >= {"time", "lat", "lon"}
    assert not _raw(out, "sst_filled")[2]["zlib"]


def test_compress_out_of_range_is_a_command_line_error(sst_model, tmp_path):
    res = run_cli("impute", sst_model.cube, tmp_path / "o.nc", "--model", sst_model.model, "--compress", 12, *CPU,
                  expect_ok=False)
    assert res.exit_code == 2
    assert_one_error_line(res, "--compress must be a zlib level from 0")
    assert not (tmp_path / "o.nc").exists()


def test_packed_range_leaves_out_the_fill_code():
    pack = {"dtype": np.dtype("int16"), "scale_factor": 0.5, "add_offset": 10.0, "_FillValue": np.int16(-32768)}
    lo, hi = packed_range(pack)
    assert lo == 10.0 + 0.5 * -32767 and hi == 10.0 + 0.5 * 32767


@pytest.mark.parametrize("sizes, t_axis, expected", [
    ((31, 73, 144), 0, (24, 73, 144)),
    ((8, 31, 73, 144), 1, (1, 24, 73, 144)),
    ((2000, 16), 0, (2000, 16)),
    ((5, 5), None, (5, 5)),
])
def test_chunks_hold_about_a_quarter_million_cells(sizes, t_axis, expected):
    assert chunks(sizes, t_axis) == expected


def test_float_variables_are_not_packed(sst_model):
    ds = open_any(sst_model.cube)
    assert packing(ds["sst"]) is None


def test_zarr_format_2_on_request(sst_model, tmp_path):
    """impute and confidence both write Zarr format 2 when asked (for readers without zarr 3)."""
    out = tmp_path / "o.zarr"
    run_cli("impute", sst_model.cube, out, "--model", sst_model.model, "--zarr-format", 2, "--samples", 2,
            "--sampler-steps", 2, "--save-samples", "--no-calibrate", *CPU, "--quiet")
    assert (out / ".zgroup").exists() and not (out / "zarr.json").exists()
    assert "sst_filled" in open_any(out)
    regions = tmp_path / "r.zarr"
    run_cli("confidence", out, regions, "--zarr-format", 2, *CPU, "--quiet")
    assert (regions / ".zgroup").exists() and not (regions / "zarr.json").exists()
    assert "sst_ci_lower" in open_any(regions)


def test_value_bounds_from_valid_attributes_and_packing():
    import xarray as xr
    from impute_cli.io.encoding import value_bounds
    plain = xr.DataArray(np.zeros(3, "float32"))
    assert value_bounds(plain) is None
    assert value_bounds(xr.DataArray(np.zeros(3), attrs={"valid_min": 0})) == (0.0, np.inf)
    assert value_bounds(xr.DataArray(np.zeros(3), attrs={"valid_range": [-1.0, 2.0]})) == (-1.0, 2.0)
    packed = xr.DataArray(np.zeros(3), attrs={"valid_range": np.array([0, 100], "int16")})
    packed.encoding = {"dtype": "int16", "scale_factor": 0.5, "add_offset": 10.0, "_FillValue": np.int16(-32767)}
    assert value_bounds(packed) == (10.0, 60.0), "a valid_range of the packed type is in packed codes"
    packed.attrs = {"valid_min": 12.0}
    assert value_bounds(packed) == (12.0, packed_range(packing(packed))[1]), "a float valid_min is in data units"
    packed.attrs = {}
    assert value_bounds(packed) == packed_range(packing(packed))
    assert value_bounds(xr.DataArray(np.zeros(3), attrs={"valid_min": [0.0]})) == (0.0, np.inf), "as Zarr gives it"
    for odd in ({"valid_range": "0 10"}, {"valid_min": 5.0, "valid_max": 1.0}, {"valid_min": [0.0, 1.0]}):
        assert value_bounds(xr.DataArray(np.zeros(3), attrs=odd)) is None, odd


def test_filled_values_and_samples_stay_inside_valid_min(sst_model, tmp_path):
    """An input whose sst says valid_min = its observed median: every imputed value, sample and
    interval bound stays at or above it, while observed values below it are kept bit for bit."""
    ds = open_any(sst_model.cube)
    floor = float(np.nanmedian(ds["sst"].values))
    ds["sst"].attrs["valid_min"] = floor
    inp = tmp_path / "floor.nc"
    ds.to_netcdf(inp)
    out = tmp_path / "o.nc"
    run_cli("impute", inp, out, "--model", sst_model.model, "--samples", 3, "--save-samples", *CPU, "--quiet")
    res = open_any(out)
    obs = np.isfinite(ds["sst"].values)
    imputed = res["sst_imputed_flag"].values == 1
    assert imputed.any() and (res["sst_filled"].values[imputed] >= np.float32(floor)).all()
    np.testing.assert_array_equal(res["sst_filled"].values[obs], ds["sst"].values[obs])
    assert (ds["sst"].values[obs] < floor).any(), "observed values below valid_min are kept as they are"
    for name in ("sst_lower", "sst_upper"):
        assert (res[name].values[imputed] >= np.float32(floor)).all()
    assert (res["sst_sample"].values[:, imputed] >= np.float32(floor)).all()
    regions = tmp_path / "r.nc"
    run_cli("confidence", out, regions, *CPU, "--quiet")
    with open_any(regions) as r:
        assert (r["sst_ci_lower"].values[imputed] >= np.float32(floor)).all(), "confidence's intervals too"


def test_no_sample_dimension_without_saved_samples(sst_model, tmp_path):
    out = tmp_path / "o.nc"
    run_cli("impute", sst_model.cube, out, "--model", sst_model.model, "--samples", 2, "--sampler-steps", 2, *CPU,
            "--quiet")
    with open_any(out) as ds:
        assert "sst_std" in ds and "sample" not in ds.dims and "sample" not in ds.coords
