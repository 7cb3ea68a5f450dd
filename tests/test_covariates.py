"""Covariates (`--covariate`): variables of the same grid the model sees as context only. They are
never filled, hidden, scored nor a training query; a model keeps them and every file it imputes
must have them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr
import yaml

from impute_cli.io.dataset import open_cube
from impute_cli.io.stats import summarise
from impute_cli.masks.context_query import ContextSampler
from impute_cli.masks.observation import pool_from_cube
from impute_cli.testing import tiny_cube_dataset, write_cube
from impute_cli.training.validation import make_validation
from tests.conftest import assert_one_error_line, check_filled_output, listing, open_any, run_cli


def with_covariate(ds: xr.Dataset, name: str = "sst_analysis", gaps: bool = False) -> xr.Dataset:
    """The cube plus a covariate: the target's field where observed, smoothed in time, gap-free
    (or NaN on the first time step with `gaps`)."""
    field = ds["sst"].values
    filled = np.where(np.isfinite(field), field, np.nanmean(field))
    cov = (0.5 * filled + 0.5 * np.roll(filled, 1, axis=0)).astype("float32")
    if gaps:
        cov[0] = np.nan
    out = ds.copy()
    out[name] = (ds["sst"].dims, cov, {"units": "degC", "long_name": "analysis"})
    return out


@pytest.fixture(scope="module")
def cov_cube(tmp_path_factory):
    d = tmp_path_factory.mktemp("cov")
    ds = with_covariate(tiny_cube_dataset(12, 16, 16, "cloud", 0.6, seed=3, var="sst"))
    return write_cube(ds, d / "cov.nc"), ds


@pytest.fixture(scope="module")
def cov_model(cov_cube, tiny_preset, tmp_path_factory):
    path, _ = cov_cube
    out = tmp_path_factory.mktemp("covmodel") / "model"
    run_cli("train", path, "--covariate", "sst_analysis", "--preset", tiny_preset, "--out", out, "--steps", 12,
            "--seed", 0, "--device", "cpu", "--quiet")
    return out


def test_covariate_channels_follow_the_imputed_ones(cov_cube):
    path, _ = cov_cube
    cube = open_cube(path, covariates=["sst_analysis"])
    assert cube.variables == ["sst"] and cube.covariates == ("sst_analysis",)
    assert cube.channels == ["sst", "sst_analysis"]
    assert cube.context_only.tolist() == [False, True] and cube.n_targets == 1
    # without --covariate both are imputed, as before
    assert open_cube(path).variables == ["sst", "sst_analysis"]


def test_gap_statistics_and_density_ignore_a_gap_free_covariate(cov_cube):
    path, ds = cov_cube
    cube = open_cube(path, covariates=["sst_analysis"])
    observed = np.isfinite(ds["sst"].values)
    assert np.array_equal(pool_from_cube(cube, 4), observed)  # the target's gaps, not "no gaps anywhere"
    assert summarise(cube).observed_fraction == pytest.approx(observed.mean())


def test_the_sampler_keeps_every_observed_covariate_cell():
    M = torch.ones(4, 3, 2, 8, 8, dtype=torch.bool)
    M[:, :, 1, :2] = False  # the covariate's own gaps stay gaps
    sampler = ContextSampler("pixel", [2], always=np.array([False, True]))
    ctx = sampler(M, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(ctx[:, :, 1], M[:, :, 1])
    kept = ctx[:, :, 0].float().mean().item()
    assert 0.3 < kept < 0.7  # the target's context is still a random part of its observations
    # without covariates the draw is the one it always was
    plain = ContextSampler("pixel", [2])
    a = plain(M[:, :, :1], 0.5, torch.Generator().manual_seed(0))
    b = plain(M[:, :, :1], 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)


def test_validation_never_hides_a_covariate(tmp_path):
    ds = with_covariate(tiny_cube_dataset(48, 32, 32, "cloud", 0.6, seed=3, var="sst"))
    cube = open_cube(write_cube(ds, tmp_path / "big.nc"), covariates=["sst_analysis"]).load()
    stats = summarise(cube).stats(cube.channels)
    vs = make_validation(cube, stats, 4, seed=0)
    assert all(h[:, 0].any() for h in vs.hidden)
    assert not any(h[:, 1].any() for h in vs.hidden)
    assert list(vs.variables) == ["sst"]


def test_train_records_covariates_and_impute_fills_only_the_target(cov_cube, cov_model, tmp_path):
    path, ds = cov_cube
    card = yaml.safe_load((cov_model / "model.yaml").read_text())
    assert card["variables"] == ["sst"] and card["covariates"] == ["sst_analysis"]
    assert card["channels"] == ["sst", "sst_analysis"]
    out = tmp_path / "out.nc"
    r = run_cli("impute", path, out, "--model", cov_model, "--device", "cpu", "--quiet", "--json")
    summary = json.loads(r.stdout)
    assert summary["cells_imputed"].keys() == {"sst"} and summary["covariates"] == ["sst_analysis"]
    res = open_any(out)
    assert "sst_analysis_filled" not in res and "sst_analysis" in res
    assert "the network saw sst_analysis as context" in res["sst_filled"].attrs["comment"]
    check_filled_output(ds, res, ["sst"])


def test_impute_refuses_a_file_without_the_models_covariate(cov_cube, cov_model, tmp_path):
    path, ds = cov_cube
    bare = write_cube(ds.drop_vars("sst_analysis"), tmp_path / "bare.nc")
    r = run_cli("impute", bare, tmp_path / "o.nc", "--model", cov_model, "--quiet", expect_ok=False)
    assert_one_error_line(r, "'sst_analysis' as a covariate", "cdo merge")
    assert r.exit_code == 1
    r = run_cli("impute", path, tmp_path / "o.nc", "--model", cov_model, "--covariate", "other", "--quiet",
                expect_ok=False)
    assert_one_error_line(r, "trained with covariates sst_analysis", "leave out --covariate")
    assert listing(tmp_path) == ["bare.nc"]


@pytest.mark.parametrize("args, fragments", [
    (["--var", "sst", "--covariate", "sst"], ["both with --var and --covariate"]),
    (["--covariate", "nope"], ["variable 'nope' is not in the file"]),
    (["--covariate", "zonal"], ["covariate 'zonal' is not on the grid of sst"]),
])
def test_bad_covariates_are_one_line_errors(cov_cube, tiny_preset, tmp_path, args, fragments):
    _, ds = cov_cube
    ds = ds.assign(zonal=(("time", "lat"), np.ones((12, 16), "float32")))  # a series along latitude
    path = write_cube(ds, tmp_path / "in.nc")
    r = run_cli("train", path, *args, "--preset", tiny_preset, "--out", tmp_path / "m", "--quiet", expect_ok=False)
    assert_one_error_line(r, *fragments)
    assert r.exit_code == 1
    assert listing(tmp_path) == ["in.nc"]


def test_evaluate_hides_and_scores_only_the_target(cov_cube, tiny_preset, tmp_path):
    path, ds = cov_cube
    r = run_cli("evaluate", path, "--covariate", "sst_analysis", "--preset", tiny_preset, "--train-steps", 8,
                "--baseline", "laplace", "--keep", tmp_path / "k", "--device", "cpu", "--quiet", "--json")
    rep = json.loads(r.stdout)
    assert list(rep["variables"]) == ["sst"] and "covariates sst_analysis" in rep["model"]["model"]
    gappy = xr.open_dataset(tmp_path / "k" / "gappy.nc")
    assert np.array_equal(gappy["sst_analysis"].values, ds["sst_analysis"].values)  # nothing of it hidden
    assert np.isnan(gappy["sst"].values).sum() > np.isnan(ds["sst"].values).sum()
    card = yaml.safe_load((tmp_path / "k" / "model" / "model.yaml").read_text())
    assert card["covariates"] == ["sst_analysis"]


def test_a_covariate_with_gaps_is_context_where_observed_and_never_filled(tiny_preset, tmp_path):
    ds = with_covariate(tiny_cube_dataset(12, 16, 16, "cloud", 0.6, seed=4, var="sst"), gaps=True)
    path = write_cube(ds, tmp_path / "in.nc")
    out = tmp_path / "out.nc"
    run_cli("impute", path, out, "--covariate", "sst_analysis", "--preset", tiny_preset, "--train-steps", 8,
            "--samples", 2, "--no-calibrate", "--device", "cpu", "--quiet")
    res = open_any(out)
    assert "sst_analysis_filled" not in res and "sst_analysis_std" not in res
    assert np.isnan(res["sst_analysis"].values[0]).all()
    check_filled_output(ds, res, ["sst"])


def test_regression_kriging_recovers_a_field_linear_in_its_covariate():
    from impute_cli.evaluation.drift import regression_kriging
    from impute_cli.evaluation.kriging import st_kriging
    rng = np.random.default_rng(0)
    ds = tiny_cube_dataset(12, 16, 16, "cloud", 0.6, seed=5, var="x")
    x = tiny_cube_dataset(12, 16, 16, "none", seed=6, var="x")["x"].values  # gap-free covariate
    truth = 3.0 + 2.0 * x + 0.01 * rng.standard_normal(x.shape)
    gappy = np.where(np.isfinite(ds["x"].values), truth, np.nan).astype("float32")
    valid = np.ones((16, 16), bool)
    filled = regression_kriging(gappy[:, None], x[:, None], valid)[:, 0]
    gaps = np.isnan(gappy)
    err = np.sqrt(np.mean((filled[gaps] - truth[gaps]) ** 2))
    plain = np.sqrt(np.mean((st_kriging(gappy, valid)[gaps] - truth[gaps]) ** 2))
    assert np.allclose(filled[~gaps], gappy[~gaps], atol=1e-4)  # observed cells kept
    assert err < 0.05 and err < 0.2 * plain


def test_evaluate_ranks_regression_kriging_with_a_covariate_and_skips_it_without(cov_cube, tiny_preset, tmp_path):
    path, _ = cov_cube
    common = ["--preset", tiny_preset, "--train-steps", 8, "--device", "cpu", "--quiet", "--json"]
    rep = json.loads(run_cli("evaluate", path, "--covariate", "sst_analysis", "--baseline", "laplace",
                             "--baseline", "regression_kriging", *common).stdout)
    assert set(rep["variables"]["sst"]["methods"]) == {"impute-cli", "laplace", "regression_kriging"}
    rep = json.loads(run_cli("evaluate", path, "--var", "sst", "--baseline", "regression_kriging", *common).stdout)
    assert "it needs a covariate" in rep["skipped"]["regression_kriging"]


def test_the_blend_and_the_validation_fillers_leave_a_covariate_alone(tmp_path, monkeypatch):
    """A covariate is never written, so neither the blend's classical fills nor the validation's
    fillers run on its channels; the imputed channel comes out as if it were alone."""
    from impute_cli.inference import blend as blend_mod
    from impute_cli.training import validation as val_mod

    rng = np.random.default_rng(5)
    target = np.cumsum(np.cumsum(rng.normal(size=(4, 1, 20, 20)), 2), 3)
    values = np.concatenate([target, target + 1.0], axis=1)
    values[:, :, 5:12, 6:14] = np.nan  # the covariate has gaps too
    valid = np.ones((20, 20), bool)
    est = np.where(np.isnan(values), 0.0, values).astype("float32")
    shapes = []
    real = blend_mod.FILLS["laplace"]
    monkeypatch.setitem(blend_mod.FILLS, "laplace", lambda v, *a, **k: shapes.append(v.shape) or real(v, *a, **k))
    b = blend_mod.Blend(["laplace"], list(blend_mod.EDGES), [[0.5, 0.5]] * (len(blend_mod.EDGES) + 1))
    out = blend_mod.apply_blend(b, est, values, valid, targets=1)
    assert len(shapes) == 1, "the partner fills the imputed channel only"
    assert np.array_equal(out[:, 1], est[:, 1])  # the covariate's channel: the network's, untouched
    assert np.array_equal(out[:, :1], blend_mod.apply_blend(b, est[:, :1], values[:, :1], valid))

    ds = with_covariate(tiny_cube_dataset(48, 32, 32, "cloud", 0.6, seed=3, var="sst"), gaps=True)
    cube = open_cube(write_cube(ds, tmp_path / "big.nc"), covariates=["sst_analysis"]).load()
    vs = make_validation(cube, summarise(cube).stats(cube.channels), 4, seed=0)
    channels = []
    real_runs = val_mod.run_baselines
    monkeypatch.setattr(val_mod, "run_baselines", lambda names, g, *a: channels.append(g.shape[1]) or real_runs(names, g, *a))
    val_mod.score_baselines(vs, cube.valid, lambda _m: None)
    assert channels and set(channels) == {1} and vs.baselines
    assert all(f.shape[1] == 1 for fills in vs.fills.values() for f in fills)
    # the network's estimates (every channel) are scored on the imputed channel's hidden cells as before
    assert vs.score(list(vs.truth))["normalised"] == 0.0
    blend, report = val_mod.fit_validation_blend(vs, [np.nan_to_num(t) for t in vs.truth], cube.valid, ["laplace"])
    assert set(report["rmse"]) == {"sst"}
