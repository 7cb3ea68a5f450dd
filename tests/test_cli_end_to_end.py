"""End to end through the CLI: train then impute tiny cubes (NetCDF and Zarr), a land-masked
cube, several variables with levels, and copies of real files with gaps; the output contract
is checked on every result."""

from __future__ import annotations

import shlex
import sys
import tempfile

import numpy as np
import pytest
import torch
import xarray as xr
import yaml
from typer.testing import CliRunner

from conftest import check_filled_output, listing, open_any, real_file, run_cli
from impute_cli.cli import app
from impute_cli.synthetic import gap_mask
from impute_cli.testing import land_mask, tiny_cube_dataset, write_cube

CPU = ("--device", "cpu", "--quiet")


def test_train_writes_a_self_describing_model(sst_model):
    card = yaml.safe_load((sst_model.model / "model.yaml").read_text())
    assert card["format"] == "impute-cli-model/1"
    assert card["variables"] == ["sst"] and card["channels"] == ["sst"] and card["units"] == ["degC"]
    assert card["window"] == [3, 16, 16]
    assert card["grid"]["shape"] == [12, 16, 16] and card["grid"]["y_dim"] == "lat"
    x = sst_model.ds["sst"].values
    assert card["normalisation"]["mean"][0] == pytest.approx(float(np.nanmean(x)), rel=1e-4)
    assert card["normalisation"]["std"][0] == pytest.approx(float(np.nanstd(x)), rel=1e-3)
    ms = card["mask_strategy"]
    assert ms["requested"] == "auto" and ms["pattern"] == "empirical"  # cloud gaps are clustered
    assert ms["context_ratio"] == pytest.approx(0.7) and ms["missdiff"] is False
    assert card["training"]["steps"] == 20 and np.isfinite(card["training"]["final_loss"])
    assert card["preset"]["network"]["base_channels"] == 8
    weights = torch.load(sst_model.model / "weights.pt", map_location="cpu", weights_only=True)
    assert all(isinstance(t, torch.Tensor) for t in weights.values())


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_impute_output_contract(sst_model, tmp_path, suffix):
    out = tmp_path / f"filled{suffix}"
    args = ["impute", sst_model.cube, out, "--model", sst_model.model, *CPU]
    res = run_cli(*args)
    assert res.stdout == ""
    assert f"wrote {out}" in res.stderr
    assert listing(tmp_path) == [out.name], "no temporary file left beside the output"
    got = open_any(out)
    check_filled_output(sst_model.ds, got, ["sst"])
    n_gaps = int(np.isnan(sst_model.ds["sst"].values).sum())
    assert f"{n_gaps} cells of sst imputed" in res.stderr
    assert got["sst_filled"].attrs["units"] == "degC"
    assert got["sst_filled"].attrs["ancillary_variables"] == "sst_imputed_flag"
    assert list(got["sst_imputed_flag"].attrs["flag_values"]) == [0, 1, 2]
    history = got.attrs["history"].splitlines()
    assert shlex.join(["impute-cli", *map(str, args)]) in history[0]
    assert "impute-cli 0.1.0" in history[0]
    assert history[1] == sst_model.ds.attrs["history"], "the input's history is kept below"


def test_zarr_input_and_same_seed_same_output(sst_model, tmp_path):
    inp = write_cube(sst_model.ds, tmp_path / "in.zarr")
    a, b, c = tmp_path / "a.nc", tmp_path / "b.nc", tmp_path / "c.nc"
    run_cli("impute", inp, a, "--model", sst_model.model, "--seed", 3, *CPU)
    run_cli("impute", inp, b, "--model", sst_model.model, "--seed", 3, *CPU)
    run_cli("impute", inp, c, "--model", sst_model.model, "--seed", 4, "--ensemble", 3, *CPU)
    A, B, C = open_any(a), open_any(b), open_any(c)
    check_filled_output(sst_model.ds, A, ["sst"])
    assert np.array_equal(A["sst_filled"].values, B["sst_filled"].values, equal_nan=True)
    gaps = np.isnan(sst_model.ds["sst"].values)
    assert not np.array_equal(A["sst_filled"].values[gaps], C["sst_filled"].values[gaps])


def test_overwrite_replaces_the_output(sst_model, tmp_path):
    out = tmp_path / "o.nc"
    out.write_bytes(b"old")
    run_cli("impute", sst_model.cube, out, "--model", sst_model.model, "--overwrite", *CPU)
    check_filled_output(sst_model.ds, open_any(out), ["sst"])
    assert listing(tmp_path) == ["o.nc"]


def test_land_masked_cube_keeps_land_gaps(tmp_path, tiny_preset):
    ds = tiny_cube_dataset(12, 16, 16, "cloud", 0.6, seed=1, with_land=True)
    inp = write_cube(ds, tmp_path / "land.nc")
    run_cli("train", inp, "--preset", tiny_preset, "--out", tmp_path / "m", "--steps", 10, *CPU)
    card = yaml.safe_load((tmp_path / "m" / "model.yaml").read_text())
    assert card["static_mask_var"] == "mask"
    out = tmp_path / "land-filled.nc"
    run_cli("impute", inp, out, "--model", tmp_path / "m", *CPU)
    got = open_any(out)
    valid = ~land_mask(16, 16)
    check_filled_output(ds, got, ["sst"], valid=valid)
    land = ~valid
    assert np.isnan(got["sst_filled"].values[:, land]).all()
    assert (got["sst_imputed_flag"].values[:, land] == 2).all()
    assert "mask_filled" not in got and np.array_equal(got["mask"].values, ds["mask"].values)


def test_impute_without_model_trains_first(tmp_path, tiny_preset, monkeypatch):
    """Several variables with a level dim; the on-the-fly model lives in a temporary folder
    that is removed afterwards."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    ds = tiny_cube_dataset(8, 16, 16, "pixel", 0.6, seed=2, nvars=2, level_dim=True, var=["sst", "chl"])
    inp = write_cube(ds, tmp_path / "multi.nc")
    out = tmp_path / "multi-filled.zarr"
    res = run_cli("impute", inp, out, "--preset", tiny_preset, "--train-steps", 8, *CPU)
    assert "no --model given: training" in res.stderr
    assert "model written to" in res.stderr and "mask pattern 'auto' chose 'pixel'" in res.stderr
    assert f"wrote {out}" in res.stderr and "(and 1 more variable)" in res.stderr
    got = open_any(out)
    check_filled_output(ds, got, ["sst", "chl"])
    assert got["chl_filled"].dims == ("time", "level", "lat", "lon")
    # levels are not swapped: each level's estimate is nearer that level's own mean
    f = got["chl_filled"].values
    gaps = np.isnan(ds["chl"].values)
    for j in range(2):
        own = np.nanmean(ds["chl"].values[:, j])
        other = np.nanmean(ds["chl"].values[:, 1 - j])
        est = f[:, j][gaps[:, j]].mean()
        assert abs(est - own) < abs(est - other)
    assert listing(scratch) == [], "the temporary model folder is removed"


def test_tcw_copy_with_gaps_round_trips_packed(tmp_path, tiny_preset):
    """A crop of the real tcw.nc (int16 with scale_factor) with imposed gaps: the packed
    original is unchanged in the output file, tcw_filled is float64 and equals it where observed."""
    src = real_file("tcw.nc")
    with xr.open_dataset(src) as full:
        sub = full.isel(time=slice(0, 6), latitude=slice(0, 24), longitude=slice(0, 32)).load()
        enc = {k: full["tcw"].encoding[k] for k in ("dtype", "scale_factor", "add_offset", "_FillValue")}
    keep = gap_mask((6, 24, 32), "cloud", 0.7, seed=5)
    sub["tcw"] = sub["tcw"].where(keep)
    sub["tcw"].encoding = enc
    inp = tmp_path / "tcw-gappy.nc"
    sub.to_netcdf(inp)
    raw_in = xr.open_dataset(inp, mask_and_scale=False).load()
    assert raw_in["tcw"].dtype == np.int16 and (raw_in["tcw"].values == enc["_FillValue"]).any()
    dec_in = open_any(inp)
    run_cli("train", inp, "--preset", tiny_preset, "--out", tmp_path / "m", "--steps", 10, *CPU)
    out = tmp_path / "tcw-filled.nc"
    run_cli("impute", inp, out, "--model", tmp_path / "m", *CPU)
    raw_out = xr.open_dataset(out, mask_and_scale=False).load()
    assert raw_out["tcw"].dtype == np.int16
    assert np.array_equal(raw_out["tcw"].values, raw_in["tcw"].values)
    for k in ("scale_factor", "add_offset", "_FillValue"):
        assert raw_out["tcw"].attrs[k] == raw_in["tcw"].attrs[k]
    got = open_any(out)
    assert got["tcw_filled"].dtype == np.float64
    check_filled_output(dec_in, got, ["tcw"])
    assert "mars2netcdf" in got.attrs["history"]


def test_alboran_crop_real_gaps_and_land(tmp_path, tiny_preset):
    """Real cloud gaps, a real land mask and a 99999 fill value, without --model."""
    src = real_file("alboranSST_small.nc")
    with xr.open_dataset(src) as full:
        sub = full.isel(lat=slice(80, 104), lon=slice(248, 280)).load()
    inp = tmp_path / "alboran.nc"
    sub.to_netcdf(inp, encoding={"time": {"_FillValue": None}})  # as in the original file
    out = tmp_path / "alboran-filled.nc"
    res = run_cli("impute", inp, out, "--preset", tiny_preset, "--train-steps", 8, *CPU)
    assert "no --model given" in res.stderr
    got = open_any(out)
    valid = sub["mask"].values == 1
    assert 0 < valid.mean() < 1
    check_filled_output(open_any(inp), got, ["SST"], valid=valid)
    raw_in = xr.open_dataset(inp, mask_and_scale=False)["SST"].values
    raw_out = xr.open_dataset(out, mask_and_scale=False)["SST"].values
    assert np.array_equal(raw_in, raw_out) and (raw_out == 99999).any()


def test_history_records_the_command_when_invoked_programmatically(sst_model, tmp_path):
    out = tmp_path / "o.nc"
    args = ["impute", str(sst_model.cube), str(out), "--model", str(sst_model.model), *CPU]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.stderr
    assert sys.argv[0] != "impute-cli"
    assert shlex.join(["impute-cli", *args]) in open_any(out).attrs["history"]


def test_conflicting_fill_and_missing_value_on_a_coordinate(sst_model, tmp_path):
    ds = sst_model.ds.copy()
    ds["time"].encoding = {"units": "days since 2021-01-01", "dtype": "float32",
                           "missing_value": np.float32(99999.0)}
    inp = write_cube(ds, tmp_path / "odd-time.nc")
    out = tmp_path / "o.nc"
    res = run_cli("impute", inp, out, "--model", sst_model.model, *CPU, expect_ok=False)
    assert not isinstance(res.exception, ValueError), f"unhandled: {res.exception!r}"
    assert res.exit_code == 0
    got = open_any(out)
    assert np.array_equal(got["time"].values, ds["time"].values)
    check_filled_output(ds, got, ["sst"])


def test_impute_batch_size_does_not_change_the_result(sst_model, tmp_path):
    """Each tile draws from its own generator: splitting the tiles into other batches gives
    the same estimate (up to float rounding of batched convolutions)."""
    import shutil
    other = tmp_path / "model-bs2"
    shutil.copytree(sst_model.model, other)
    card = yaml.safe_load((other / "model.yaml").read_text())
    assert card["preset"]["impute"]["batch_size"] == 8
    card["preset"]["impute"]["batch_size"] = 2
    (other / "model.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    a, b = tmp_path / "a.nc", tmp_path / "b.nc"
    run_cli("impute", sst_model.cube, a, "--model", sst_model.model, *CPU)
    run_cli("impute", sst_model.cube, b, "--model", other, *CPU)
    fa, fb = open_any(a)["sst_filled"].values, open_any(b)["sst_filled"].values
    np.testing.assert_allclose(fa, fb, rtol=0, atol=1e-4)


def test_static_mask_named_at_training_is_kept_at_imputation(tiny_preset, tmp_path):
    """A land mask given with --static-mask (a name impute-cli would not guess) stays in force
    when imputing with that model: land cells are not filled (flag 2)."""
    from impute_cli.testing import tiny_cube_dataset, write_cube
    ds = tiny_cube_dataset(8, 16, 16, "cloud", 0.6, with_land=True).rename({"mask": "landflag"})
    inp = write_cube(ds, tmp_path / "land.nc")
    model, out = tmp_path / "m", tmp_path / "o.nc"
    run_cli("train", inp, "--preset", tiny_preset, "--out", model, "--static-mask", "landflag", "--quiet",
            "--device", "cpu")
    run_cli("impute", inp, out, "--model", model, "--quiet", "--device", "cpu")
    var = [v for v in ds.data_vars if v != "landflag"][0]
    flag = open_any(out)[f"{var}_imputed_flag"].values
    land = ds["landflag"].values == 0
    assert (flag[:, land] == 2).all() and not (flag[:, ~land] == 2).any()


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_same_seed_gives_a_byte_identical_file(sst_model, tmp_path, monkeypatch, suffix):
    """With SOURCE_DATE_EPOCH fixing the history timestamp, the same command with the same seed
    writes the same bytes (NetCDF) or the same files (Zarr), samples included."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    out = tmp_path / f"o{suffix}"

    def content(p):
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
        return [(str(f.relative_to(p)) if p.is_dir() else "", f.read_bytes()) for f in files]
    runs = []
    for _ in range(2):
        run_cli("impute", sst_model.cube, out, "--model", sst_model.model, "--samples", 3, "--steps", 2,
                "--save-samples", "--seed", 5, "--overwrite", *CPU)
        runs.append(content(out))
    assert runs[0] == runs[1]


def test_same_seed_trains_byte_identical_weights(sst_model, tiny_preset, tmp_path):
    """Training twice with the same seed writes the same weights.pt, byte for byte (torch's
    archive does not carry the temporary file's name)."""
    runs = []
    for k in range(2):
        out = tmp_path / f"m{k}"
        run_cli("train", sst_model.cube, "--preset", tiny_preset, "--steps", 3, "--seed", 7, "--out", out,
                "--quiet", *CPU)
        runs.append((out / "weights.pt").read_bytes())
    assert runs[0] == runs[1]
