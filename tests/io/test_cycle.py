"""The daily cycle (io.cycle): when it is found, that it is fitted, removed and added back, and
what it does to a gap where only the time of day tells the value."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from conftest import check_filled_output, run_cli
from impute_cli.io.cycle import fit_cycle, harmonics_for, remove_cycle
from impute_cli.io.dataset import open_cube
from impute_cli.testing import tiny_preset_yaml, write_cube

CPU = ("--device", "cpu", "--quiet")
AMP = 8.0  # K, the cycle's half range


def cycle_dataset(T: int = 96, H: int = 12, W: int = 16, freq: str = "6h", seed: int = 0,
                  times: np.ndarray | None = None) -> tuple[xr.Dataset, np.ndarray, np.ndarray]:
    """A 't2m' cube of 290 K + a daily cycle AMP cos(...) (warmest at 15 h, 0.1 h later per
    column) + small noise, 30 % of cells missing; returns the gappy dataset, the full truth and
    the cycle."""
    rng = np.random.default_rng(seed)
    time = pd.date_range("2021-07-01", periods=T, freq=freq) if times is None else times
    hours = (time.hour + time.minute / 60).to_numpy()[:, None, None]
    lon = np.arange(W)[None, None, :]
    cycle = AMP * np.cos(2 * np.pi * (hours - 15 + 0.1 * lon) / 24) + np.zeros((1, H, 1))
    truth = (290 + 0.2 * np.arange(H)[None, :, None] + cycle + 0.1 * rng.standard_normal((T, H, W))).astype("float32")
    obs = rng.random((T, H, W)) < 0.7
    coords = {"time": ("time", time, {"standard_name": "time", "axis": "T"}),
              "lat": ("lat", (40 + 0.25 * np.arange(H)).astype("float32"),
                      {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"}),
              "lon": ("lon", (0.25 * np.arange(W)).astype("float32"),
                      {"standard_name": "longitude", "units": "degrees_east", "axis": "X"})}
    ds = xr.Dataset({"t2m": (("time", "lat", "lon"), np.where(obs, truth, np.nan).astype("float32"),
                             {"units": "K", "standard_name": "air_temperature"})}, coords=coords,
                    attrs={"Conventions": "CF-1.8"})
    return ds, truth, cycle


def test_a_cycle_is_looked_for_only_in_data_sampled_several_times_a_day(tmp_path):
    cases = {"1h": (48, 2), "3h": (24, 2), "6h": (12, 1), "12h": (8, 0), "D": (20, 0)}
    for freq, (T, k) in cases.items():
        ds, _, _ = cycle_dataset(T, 4, 4, freq)
        assert harmonics_for(open_cube(write_cube(ds, tmp_path / f"{freq}.nc")))[0] == k, freq
    ds, _, _ = cycle_dataset(24, 4, 4, "1h")  # one day only
    k, why = harmonics_for(open_cube(write_cube(ds, tmp_path / "day.nc")))
    assert k == 0 and "less than two days" in why
    noleap = xr.date_range("2021-07-01", periods=24, freq="3h", calendar="noleap", use_cftime=True)
    model_calendar = cycle_dataset(24, 4, 4, "3h")[0].assign_coords(time=("time", noleap, {"axis": "T"}))
    assert harmonics_for(open_cube(write_cube(model_calendar, tmp_path / "noleap.nc")))[0] == 2  # cftime dates
    plain = ds.assign_coords(time=("time", np.arange(24), {"axis": "T"}))  # a step count, no dates
    k, why = harmonics_for(open_cube(write_cube(plain, tmp_path / "steps.nc")))
    assert k == 0 and "no dates" in why


def test_the_fit_finds_each_cell_s_cycle_and_the_field_s_where_a_cell_is_never_observed(tmp_path):
    ds, _, expect = cycle_dataset(96, 6, 8, "3h")
    ds["t2m"].values[:, 2, 3] = np.nan  # a cell never observed
    cube = open_cube(write_cube(ds, tmp_path / "c.nc"))
    cycle = fit_cycle(cube, 2)
    c = cycle.values()[:, 0]
    ok = np.ones((6, 8), bool)
    ok[2, 3] = False
    assert np.abs(c - expect)[:, ok].max() < 0.3
    # the unobserved cell gets the field's cycle (the mean of the others: within the 0.1 x 8
    # columns = 0.8 h of phase spread, far from no cycle at all)
    assert np.abs(c[:, 2, 3] - expect[:, 2, 3]).max() < 0.3 * AMP
    assert np.abs(c[:, 2, 3]).max() > 0.8 * AMP


def test_the_cube_less_its_cycle_is_the_same_read_lazily_or_in_memory(tmp_path):
    ds, _, _ = cycle_dataset(40, 5, 6, "3h")
    path = write_cube(ds, tmp_path / "c.nc")
    lazy = open_cube(path)
    cycle = fit_cycle(lazy, 2)
    a = np.asarray(remove_cycle(lazy, cycle).data.rechunk({0: 7}).compute())
    b = remove_cycle(open_cube(path).load(), cycle).memory
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    np.testing.assert_allclose(a + cycle.values(), lazy.data.compute(), rtol=0, atol=1e-4)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A 6-hourly cube whose midnight frames are all missing for a few days; tiny models with
    the cycle removed and without."""
    d = tmp_path_factory.mktemp("cycle")
    ds, truth, _ = cycle_dataset(96, 12, 16, "6h", seed=1)
    midnight = np.arange(96)[(np.arange(96) % 4 == 0) & (np.arange(96) > 40) & (np.arange(96) < 70)]
    ds["t2m"].values[midnight] = np.nan
    cube = write_cube(ds, d / "c.nc")
    out = {}
    for setting in ("auto", "off"):
        preset = tiny_preset_yaml(d / f"tiny_{setting}.yaml", network={"daily_cycle": setting})
        r = run_cli("train", cube, "--preset", preset, "--out", d / setting, "--steps", 30, "--no-validation",
                    "--device", "cpu")
        out[setting] = (d / setting, r.stderr)
    return d, ds, truth, cube, midnight, out


def test_training_says_it_removes_the_cycle_and_the_card_records_it(models):
    _, _, _, _, _, out = models
    assert "daily cycle: 1 harmonics of the day" in out["auto"][1]
    assert "daily cycle" not in out["off"][1]
    import yaml
    card = yaml.safe_load((out["auto"][0] / "model.yaml").read_text())
    assert card["normalisation"]["daily_cycle"] == {"harmonics": 1, "period_hours": 24}
    assert "daily_cycle" not in yaml.safe_load((out["off"][0] / "model.yaml").read_text())["normalisation"]


def test_a_frame_missing_at_midnight_is_filled_with_the_midnight_value(models):
    """The frames before and after a missing midnight frame (18 h, 06 h) lie at the cycle's
    mean; only the time of day says that midnight is AMP cos(-15/24 2 pi) ~ -6.3 K off it. The
    model of anomalies gets it, the model of the values does not."""
    d, ds, truth, cube, midnight, out = models
    err = {}
    for setting, (model, _) in out.items():
        res = d / f"out-{setting}.nc"
        run_cli("impute", cube, res, "--model", model, "--no-blend", "--overwrite", *CPU)
        with xr.open_dataset(res) as o:
            check_filled_output(ds, o, ["t2m"])
            assert ("daily cycle" in o["t2m_filled"].attrs["comment"]) == (setting == "auto")
            err[setting] = float(np.sqrt(np.mean((o["t2m_filled"].values[midnight] - truth[midnight]) ** 2)))
    assert err["auto"] < 1.5
    assert err["off"] > 3.0


def test_regions_workers_and_a_lazy_cube_give_the_same_file(models, tmp_path, monkeypatch):
    """The cycle is added back region by region, on Dask workers too (each rebuilds the cube
    less the cycle), and on a cube too large to load: the same values everywhere."""
    import impute_cli.io.cube as cube_mod
    _, _, _, cube, _, out = models
    args = ("--model", out["auto"][0], "--samples", 2, "--steps", 2, "--seed", 3, "--region-mb", 1, *CPU)
    run_cli("impute", cube, tmp_path / "one.nc", *args)
    run_cli("impute", cube, tmp_path / "two.nc", *args, "--workers", 2)
    monkeypatch.setattr(cube_mod, "IN_MEMORY_LIMIT", 0)
    run_cli("impute", cube, tmp_path / "lazy.nc", *args)
    with xr.open_dataset(tmp_path / "one.nc") as a:
        for other in ("two.nc", "lazy.nc"):
            with xr.open_dataset(tmp_path / other) as b:
                for v in a.data_vars:
                    np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=f"{other}: {v}")
