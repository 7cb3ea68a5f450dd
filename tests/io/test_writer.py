"""Writer: output paths are checked before any work, outputs are written atomically, input
variables (packed ones included) round-trip unchanged, channels map back to their levels."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from conftest import listing, open_any, real_file
from impute_cli.io.dataset import open_cube
from impute_cli.errors import ImputeError
from impute_cli.testing import tiny_cube_dataset, write_cube
from impute_cli.io.writer import (build_output, channel_to_variable, check_output_path, output_format,
                               write_atomic)


@pytest.mark.parametrize("name, fmt", [("a.nc", "netcdf"), ("a.NC", "netcdf"), ("a.nc4", "netcdf"),
                                       ("a.zarr", "zarr"), ("a.zarr/", "zarr")])
def test_output_format_by_extension(name, fmt):
    assert output_format(name) == fmt


@pytest.mark.parametrize("name", ["a.txt", "a", "a.h5", "a.zarr.bak"])
def test_bad_output_extension(name):
    with pytest.raises(ImputeError, match=r"\.nc.*\.zarr"):
        output_format(name)


def test_check_output_path(tmp_path):
    inp = tmp_path / "in.nc"
    inp.write_bytes(b"x")
    with pytest.raises(ImputeError, match="input path"):
        check_output_path(tmp_path / "." / "in.nc", inp, overwrite=True)
    existing = tmp_path / "out.nc"
    existing.write_bytes(b"y")
    with pytest.raises(ImputeError, match="--overwrite"):
        check_output_path(existing, inp, overwrite=False)
    check_output_path(existing, inp, overwrite=True)
    with pytest.raises(ImputeError, match="does not exist"):
        check_output_path(tmp_path / "missing" / "o.nc", inp, overwrite=False)


def test_channel_to_variable_puts_levels_back():
    cube = open_cube(real_file("eraint_uvz.nc"))
    T, C, H, W = cube.data.shape
    values = np.broadcast_to(np.arange(C, dtype="float32")[None, :, None, None], (T, C, H, W))
    for v in cube.variables:
        arr = channel_to_variable(cube, values, v)
        assert arr.shape == cube.ds[v].shape
        for j, level in enumerate(cube.ds["level"].values):
            assert (arr[:, j] == cube.channels.index(f"{v}[level={level}]")).all()


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_packed_eraint_round_trips_unchanged(tmp_path, suffix):
    """int16 with scale/offset and an odd _FillValue = NaN: the raw integers come back as they
    were; V_filled is the decoded input bit for bit where observed."""
    path = real_file("eraint_uvz.nc")
    cube = open_cube(path)
    ds = build_output(cube, np.zeros(cube.data.shape, "float32"), "impute-cli impute test")
    out = tmp_path / f"e{suffix}"
    write_atomic(ds, out, overwrite=False)
    assert listing(tmp_path) == [out.name], "no temporary file left beside the output"
    raw_in = xr.open_dataset(path, mask_and_scale=False)
    raw_out = open_any(out, mask_and_scale=False)
    dec_in = xr.open_dataset(path)
    dec_out = open_any(out)
    for v in ("z", "u", "v"):
        assert raw_out[v].dtype == np.int16
        assert np.array_equal(raw_out[v].values, raw_in[v].values)
        assert raw_out[v].attrs["scale_factor"] == raw_in[v].attrs["scale_factor"]
        assert dec_out[f"{v}_filled"].dtype == dec_in[v].dtype == np.float64
        assert np.array_equal(dec_out[f"{v}_filled"].values, dec_in[v].values)
        assert (dec_out[f"{v}_imputed_flag"].values == 0).all()
    assert "impute-cli impute test" in dec_out.attrs["history"]


def test_atomic_write_leaves_nothing_when_interrupted(tmp_path, monkeypatch):
    ds_in = tiny_cube_dataset(4, 8, 8, "pixel", 0.7)
    cube = open_cube(write_cube(ds_in, tmp_path / "in.nc"))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    ds = build_output(cube, np.zeros(cube.data.shape, "float32"), "h")

    def half_written(self, path, *a, **k):
        open(path, "wb").write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(xr.Dataset, "to_netcdf", half_written)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(ds, out_dir / "o.nc", overwrite=False)
    assert listing(out_dir) == []


def test_write_atomic_replaces_only_with_overwrite(tmp_path):
    ds_in = tiny_cube_dataset(4, 8, 8, "pixel", 0.7)
    cube = open_cube(write_cube(ds_in, tmp_path / "in.nc"))
    ds = build_output(cube, np.full(cube.data.shape, 20.0, "float32"), "h")
    out = tmp_path / "o.zarr"
    out.mkdir()
    (out / "old").write_text("x")
    write_atomic(ds, out, overwrite=True)
    assert not (out / "old").exists()
    got = open_any(out)
    gaps = np.isnan(ds_in["sst"].values)
    assert (got["sst_filled"].values[gaps] == 20.0).all()
