"""The spread variables of `impute --samples`, read back from the file and recomputed from the
samples it saved: V_std, V_lower and V_upper hold the samples' spread around V_filled on every
cell not observed (scaled by the calibration factor), none on observed cells."""

from __future__ import annotations

import numpy as np

from conftest import open_any, run_cli

CPU = ("--device", "cpu")


def test_the_spread_is_the_samples_around_the_point_estimate(sst_model, tmp_path):
    out = tmp_path / "o.nc"
    run_cli("impute", sst_model.cube, out, "--model", sst_model.model, "--samples", 5, "--sampler-steps", 2,
            "--save-samples", *CPU, "--quiet")
    ds = open_any(out)
    filled, s = ds["sst_filled"].values, ds["sst_sample"].values
    std, lo, hi = (ds[f"sst_{k}"].values for k in ("std", "lower", "upper"))
    f = float(ds["sst_std"].attrs["calibration_factor"])
    obs = np.isfinite(ds["sst"].values)
    assert (~obs).sum() > 100
    # observed cells: no spread, the value itself, in every sample too
    assert (std[obs] == 0).all() and np.array_equal(lo[obs], filled[obs]) and np.array_equal(hi[obs], filled[obs])
    assert np.array_equal(s[:, obs], np.broadcast_to(filled[obs], s[:, obs].shape))
    # the rest: the RMS deviation from V_filled and its 90 % quantile, times the factor
    gap = ~obs
    dev = s[:, gap] - filled[gap]
    assert np.allclose(std[gap], f * np.sqrt((dev ** 2).mean(0)), rtol=1e-5, atol=1e-6)
    d = f * np.quantile(np.abs(dev), 0.9, axis=0)
    assert np.allclose(lo[gap], filled[gap] - d, rtol=1e-5, atol=1e-5)
    assert np.allclose(hi[gap], filled[gap] + d, rtol=1e-5, atol=1e-5)
    assert (lo[gap] <= filled[gap]).all() and (filled[gap] <= hi[gap]).all()
