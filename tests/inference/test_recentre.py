"""Samples recentred on the point estimate (`inference.fill.recentre`): on every gap cell the
samples' mean is V_filled, each member keeps its deviation from the others, observed cells stay
the input's; --no-recentre gives the solver's draws; one sample is never collapsed onto the
estimate; `confidence --calibrate` resamples the way the file's samples were drawn."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import check_filled_output, open_any, run_cli
from impute_cli.inference.fill import recentre

CPU = ("--device", "cpu", "--quiet")


def test_recentre_moves_the_mean_of_gap_cells_only():
    rng = np.random.default_rng(0)
    samples = rng.normal(3.0, 1.0, (5, 2, 1, 4, 4)).astype("float32")
    est = rng.normal(0.0, 1.0, (2, 1, 4, 4)).astype("float32")
    gap = rng.random((2, 1, 4, 4)) < 0.5
    est[0, 0, 0, 0], gap[0, 0, 0, 0] = np.nan, True  # a gap cell the estimate could not fill
    before = samples.copy()
    recentre(samples, est, gap)
    fill = gap & np.isfinite(est)
    np.testing.assert_allclose(samples.mean(axis=0)[fill], est[fill], atol=1e-5)
    assert np.array_equal(samples[:, ~gap], before[:, ~gap])  # observed cells untouched
    assert np.array_equal(samples[:, 0, 0, 0, 0], before[:, 0, 0, 0, 0])  # no estimate there: as drawn
    # every member moved by the same field: the deviations between members are kept
    np.testing.assert_allclose(samples - samples[:1], before - before[:1], atol=1e-5)


@pytest.fixture(scope="module")
def outputs(sst_model, tmp_path_factory):
    d = tmp_path_factory.mktemp("recentre")
    m = sst_model
    runs = {"on": [], "off": ["--no-recentre"]}
    for name, extra in runs.items():
        run_cli("impute", m.cube, d / f"{name}.nc", "--model", m.model, "--samples", 4, "--save-samples",
                "--no-calibrate", *extra, *CPU)
    return d, m


def test_samples_average_to_the_filled_field(outputs):
    d, m = outputs
    on = open_any(d / "on.nc")
    check_filled_output(m.ds, on, ["sst"])
    gaps = on["sst_imputed_flag"].values == 1
    mean = on["sst_sample"].values.astype("float64").mean(axis=0)
    np.testing.assert_allclose(mean[gaps], on["sst_filled"].values[gaps], atol=1e-4)
    observed = ~np.isnan(m.ds["sst"].values)
    assert np.array_equal(on["sst_sample"].values[:, observed],
                          np.broadcast_to(m.ds["sst"].values[observed], (4, int(observed.sum()))))
    assert "recentred=1" in on.attrs["impute_cli_sampler"]
    # the spread is the samples' own: V_std is their RMS deviation from their mean, V_filled
    std = np.sqrt(((on["sst_sample"].values.astype("float64") - mean) ** 2).mean(axis=0))
    np.testing.assert_allclose(on["sst_std"].values[gaps], std[gaps], rtol=1e-3, atol=1e-5)


def test_no_recentre_keeps_the_draws(outputs):
    d, _ = outputs
    on, off = open_any(d / "on.nc"), open_any(d / "off.nc")
    gaps = on["sst_imputed_flag"].values == 1
    assert "recentred=0" in off.attrs["impute_cli_sampler"]
    history = off.attrs["history"].splitlines()[0]  # an on/off flag turned off is recorded by its off name
    assert "--no-recentre" in history and "--no-calibrate" in history and "--save-samples" in history
    assert np.array_equal(on["sst_filled"].values, off["sst_filled"].values)  # the estimate does not move
    raw = off["sst_sample"].values.astype("float64")
    assert not np.allclose(raw.mean(axis=0)[gaps], off["sst_filled"].values[gaps], atol=1e-3)
    # recentred = the draws moved by one field per cell: their differences agree
    moved = on["sst_sample"].values.astype("float64") - raw
    np.testing.assert_allclose(moved[:, gaps], np.broadcast_to(moved[0, gaps], moved[:, gaps].shape), atol=1e-4)


def test_one_sample_is_not_collapsed_onto_the_estimate(sst_model, tmp_path):
    m = sst_model
    run_cli("impute", m.cube, tmp_path / "one.nc", "--model", m.model, "--samples", 1, "--save-samples",
            "--no-calibrate", *CPU)
    one = open_any(tmp_path / "one.nc")
    gaps = one["sst_imputed_flag"].values == 1
    assert "recentred=0" in one.attrs["impute_cli_sampler"]
    assert np.abs(one["sst_sample"].values[0][gaps] - one["sst_filled"].values[gaps]).max() > 1e-3


def test_calibration_resamples_as_the_file_was_drawn(outputs, tmp_path, monkeypatch):
    """`confidence --calibrate` reads recentred= from the file and resamples the same way; a file
    that does not say (drawn before recentring) is resampled without it."""
    from impute_cli.uncertainty import calibration
    d, m = outputs
    seen = []
    real = calibration.fill_cube

    def spy(card, den, cube, opts, **kw):
        seen.append(opts.recentre)
        return real(card, den, cube, opts, **kw)

    monkeypatch.setattr(calibration, "fill_cube", spy)
    old = tmp_path / "old.nc"
    ds = open_any(d / "on.nc")
    ds.attrs["impute_cli_sampler"] = ds.attrs["impute_cli_sampler"].replace(", recentred=1", "")
    ds.to_netcdf(old)
    for name, path, want in (("on", d / "on.nc", True), ("off", d / "off.nc", False), ("old", old, False)):
        seen.clear()
        run_cli("confidence", path, tmp_path / f"c{name}.nc", "--calibrate", "--model", m.model,
                "--calibration-frames", 6, "--level", 0.6, *CPU)
        assert seen and set(seen) == {want}, (name, seen)


def test_recentre_needs_samples(sst_model, tmp_path):
    m = sst_model
    r = run_cli("impute", m.cube, tmp_path / "x.nc", "--model", m.model, "--no-recentre", *CPU, expect_ok=False)
    assert r.exit_code != 0 and "add --samples N" in r.output
    assert not (tmp_path / "x.nc").exists()
