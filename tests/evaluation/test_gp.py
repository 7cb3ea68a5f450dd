"""The exact GP posterior (impute_cli.gp, METHOD §6): the Kalman/RTS smoother against dense
conditioning, the process's covariance, the gap masks, the oracle's calibration, and the
benchmark CLI (benchmarks/gp_exact.py) on a tiny cube."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from impute_cli.evaluation.gp import (
    exact_posterior,
    gap_mask,
    interval_coverage,
    matern32,
    oracle_joint_coverage,
    oracle_samples,
    sample_cube,
    z_value,
)

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "gp_exact.py"


def dense_posterior(z: np.ndarray, obs: np.ndarray, phi: float, ell: float, tau2: float):
    """Condition the full (T n) x (T n) covariance phi^|t-s| K directly."""
    T, H, W = z.shape
    t = np.arange(T)
    S = np.kron(phi ** np.abs(t[:, None] - t[None, :]), matern32(H, W, ell))
    o = np.flatnonzero(obs.ravel())
    Soo = S[np.ix_(o, o)] + tau2 * np.eye(o.size)
    mean = S[:, o] @ np.linalg.solve(Soo, z.ravel()[o])
    cov = S - S[:, o] @ np.linalg.solve(Soo, S[o, :])
    return mean, cov


@pytest.mark.parametrize("tau2", [0.0, 1e-6, 1e-2])
def test_smoother_matches_dense_conditioning(tau2):
    T, H, W, phi, ell, loc, scale = 6, 3, 3, 0.9, 1.5, 280.0, 2.0
    x = sample_cube(T, H, W, phi, ell, seed=1, loc=loc, scale=scale)
    obs = gap_mask(x.shape, "pixel", 0.5, seed=3)
    obs[2] = False  # a time step with no observation
    obs[4] = True   # and one fully observed
    post = exact_posterior(np.where(obs, x, np.nan), obs, phi, ell, tau2, loc=loc, scale=scale)
    mean, cov = dense_posterior((x - loc) / scale, obs, phi, ell, tau2)
    hid = ~obs.ravel()
    np.testing.assert_allclose((post.mean.ravel() - loc) / scale, mean, rtol=1e-6, atol=1e-9)
    sd = np.sqrt(np.diag(cov)[hid])
    np.testing.assert_allclose(post.sd.ravel()[hid] / scale, sd, rtol=1e-6)
    n = H * W
    for t in range(T):
        idx = t * n + np.flatnonzero(~obs[t].ravel())
        np.testing.assert_allclose(post.cov_fn(t), scale**2 * cov[np.ix_(idx, idx)], rtol=1e-6, atol=1e-10)
    assert post.cov_fn(4).shape == (0, 0)


def test_sample_cube_is_stationary_and_separable():
    phi, ell = 0.8, 2.0
    x = sample_cube(20000, 2, 2, phi, ell, seed=0, loc=10.0, scale=3.0)
    z = ((x - 10.0) / 3.0).reshape(len(x), -1)
    np.testing.assert_allclose(z.var(0), 1.0, atol=0.1)
    lag1 = (z[1:] * z[:-1]).mean(0)
    np.testing.assert_allclose(lag1, phi, atol=0.1)
    np.testing.assert_allclose(np.cov(z.T), matern32(2, 2, ell), atol=0.1)


def test_gap_masks():
    pix = gap_mask((50, 16, 16), "pixel", 0.3, seed=0)
    assert abs(pix.mean() - 0.3) < 0.02
    assert (pix == gap_mask((50, 16, 16), "pixel", 0.3, seed=0)).all()
    blk = gap_mask((20, 16, 16), "block", 0.5, seed=0)
    assert blk.mean() == 0.5
    assert (blk[:8] == blk[0]).all() and (blk[8:16] == blk[8]).all()  # 8-step runs
    blocks = blk[0].reshape(4, 4, 4, 4)  # 4 x 4 grid of 4 x 4-cell blocks, each all in or all out
    assert (blocks.all(axis=(1, 3)) | ~blocks.any(axis=(1, 3))).all()
    with pytest.raises(ValueError, match="unknown gap pattern"):
        gap_mask((2, 4, 4), "cloud", 0.5)


def test_oracle_is_calibrated():
    T, H, W, phi, ell = 200, 6, 6, 0.9, 3.0
    x = sample_cube(T, H, W, phi, ell, seed=2)
    obs = gap_mask(x.shape, "pixel", 0.5, seed=2)
    post = exact_posterior(np.where(obs, x, np.nan), obs, phi, ell)
    z = z_value(0.9)
    assert abs(z - 1.6449) < 1e-3
    cell = interval_coverage(x, post.mean - z * post.sd, post.mean + z * post.sd, ~obs)
    assert 0.86 < cell < 0.94
    joint = oracle_joint_coverage(post, x, obs, alpha=0.1, B=500, seed=0)
    assert 0.8 < joint.coverage < 0.97
    samples = oracle_samples(post, obs, 5, 4000, np.random.default_rng(0))
    assert samples.shape == (4000, int((~obs[5]).sum()))
    np.testing.assert_allclose(np.cov(samples.T), post.cov_fn(5), atol=0.05)


def test_benchmark_cli_make_and_score(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("gp_exact", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "gp"
    bench.main(["make", str(out), "--T", "16", "--H", "8", "--W", "8", "--pattern", "block", "--samples", "200",
                "--json"])
    made = json.loads(capsys.readouterr().out)
    gappy, truth = xr.open_dataset(out / "gappy.nc"), xr.open_dataset(out / "truth.nc")
    assert gappy["tas"].attrs["units"] == "K" and gappy["tas"].attrs["standard_name"] == "air_temperature"
    assert gappy["lat"].attrs["axis"] == "Y" and gappy["time"].attrs["axis"] == "T"
    obs = truth["observed"].values
    assert np.isnan(gappy["tas"].values[~obs]).all()
    np.testing.assert_array_equal(gappy["tas"].values[obs], truth["tas"].values[obs])

    post = xr.open_dataset(out / "posterior.nc")
    result = gappy.assign(tas_filled=post["tas_mean"], tas_std=post["tas_sd"])
    result.to_netcdf(tmp_path / "result.nc")
    bench.main(["score", str(out), str(tmp_path / "result.nc"), "--json"])
    scored = json.loads(capsys.readouterr().out)
    assert scored["mse_ratio"] == pytest.approx(1.0)
    assert scored["mse_oracle"] == pytest.approx(made["oracle_mse"], rel=1e-5)
    (iv,) = scored["intervals"].values()
    assert iv["coverage"] == pytest.approx(scored["cell_coverage_oracle"])
    bench.main(["score", str(out), str(tmp_path / "result.nc")])
    assert "| MSE ratio output / posterior mean (1 = the limit) | 1.000 | 1 |" in capsys.readouterr().out


def test_benchmark_score_gives_the_factor_calibrated_intervals_needed(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("gp_exact", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "gp"
    bench.main(["make", str(out), "--T", "16", "--H", "8", "--W", "8", "--pattern", "block", "--samples", "200"])
    capsys.readouterr()
    gappy, truth = xr.open_dataset(out / "gappy.nc"), xr.open_dataset(out / "truth.nc")
    post = xr.open_dataset(out / "posterior.nc")
    f, half = 1.5, 1.645 * post["tas_sd"]  # intervals calibrated with a factor 1.5 around the posterior mean
    cal = {"calibration_factor": f, "confidence_level": 0.9}
    result = gappy.assign(tas_filled=post["tas_mean"], tas_lower=(post["tas_mean"] - f * half).assign_attrs(cal),
                          tas_upper=(post["tas_mean"] + f * half).assign_attrs(cal))
    result.to_netcdf(tmp_path / "result.nc")
    bench.main(["score", str(out), str(tmp_path / "result.nc"), "--json"])
    scored = json.loads(capsys.readouterr().out)
    assert scored["factor"] == f
    hid = ~truth["observed"].values
    y, m, h = truth["tas"].values[hid], post["tas_mean"].values[hid], half.values[hid]
    need = scored["factor_needed"]
    assert np.mean(np.abs(y - m) <= need * h) == pytest.approx(0.9, abs=2 / hid.sum() + 1e-9), \
        "the needed factor puts 90 % of the hidden cells inside"
    assert 0.7 < need < 1.4, "around 1 for the exact posterior's own intervals"
