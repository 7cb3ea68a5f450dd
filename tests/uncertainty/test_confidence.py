"""Confidence regions from samples ([UQ] §5): the maths on Gaussian samples whose coverage is
known, split-conformal quantiles, and the `impute --samples` / `confidence` commands end to
end, with their error paths."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import assert_one_error_line, listing, open_any, run_cli, check_filled_output
from impute_cli.uncertainty.calibration import calibration_cells, hiding
from impute_cli.uncertainty.regions import Uncertain, cell_scores, conformal_quantile, coverage, distances, group_index, intervals, radii, widen
from impute_cli.testing import tiny_cube_dataset, write_cube

CPU = ("--device", "cpu", "--quiet")


def _gaussian(B=400, T=300, n=20, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=(T, n))
    samples = centre + scale * rng.normal(size=(B, T, n))
    truth = centre + rng.normal(size=(T, n))
    imputed = np.ones((T, n), bool)
    imputed[:, :3] = False  # observed cells
    truth[:, :3] = centre[:, :3]
    return Uncertain("v", ("time", "x"), centre, samples, imputed), truth


def test_coverage_is_near_the_level_when_samples_match_the_truth():
    u, truth = _gaussian()
    groups = group_index(300, "time")
    lo, hi = intervals(u, 0.9)
    r = radii(u, 0.9, groups)
    cov = coverage(u, lo, hi, r, groups, truth)
    assert cov["cells"] == 300 * 17 and cov["regions"] == 300
    assert cov["cell_coverage"] == pytest.approx(0.9, abs=0.02)
    assert cov["region_coverage"] == pytest.approx(0.9, abs=0.06)
    assert np.all(lo[~u.imputed] == u.centre[~u.imputed]), "observed cells: zero-width intervals"


def test_too_narrow_samples_undercover_and_calibration_repairs_it():
    u, truth = _gaussian(scale=0.5)
    groups = group_index(300, "time")
    lo, hi = intervals(u, 0.9)
    r = radii(u, 0.9, groups)
    raw = coverage(u, lo, hi, r, groups, truth)
    assert raw["cell_coverage"] < 0.7 and raw["region_coverage"] < 0.2
    # split conformal on a separate draw of the same kind
    uc, tc = _gaussian(scale=0.5, seed=1)
    lc, hc = intervals(uc, 0.9)
    f_cell = conformal_quantile(cell_scores(tc[uc.imputed], uc.centre[uc.imputed], lc[uc.imputed], hc[uc.imputed]), 0.9)
    f_reg = conformal_quantile(distances(uc, tc, groups) / radii(uc, 0.9, groups), 0.9)
    assert f_cell == pytest.approx(2.0, rel=0.15) and f_reg == pytest.approx(2.0, rel=0.15)
    lo2, hi2 = widen(u.centre, lo, hi, f_cell)
    cal = coverage(u, lo2, hi2, r * f_reg, groups, truth)
    assert cal["cell_coverage"] == pytest.approx(0.9, abs=0.03)
    assert cal["region_coverage"] == pytest.approx(0.9, abs=0.07)


def test_calibration_hides_observed_cells_in_gaps_that_last_as_long_as_the_real_ones():
    """--calibrate hides the gaps of another *run* of time steps: on a cube of 6-step outages
    of 4 x 4 blocks, the hidden cells of a block are hidden for whole runs, never for a single
    step cut out of one; only observed, valid cells are hidden, all inside a quarter-size box."""
    rng = np.random.default_rng(3)
    T, H, W, run = 60, 16, 16, 6
    out = rng.random((T // run, H // 4, W // 4)) < 0.5  # True: the block is out for the run
    obs = ~np.repeat(np.repeat(np.repeat(out, run, 0), 4, 1), 4, 2)[:, None]  # (T, 1, H, W)
    valid = np.ones((H, W), bool)
    valid[0, 0] = False
    s0, L = 12, 24
    for seed in range(5):
        hid = calibration_cells(obs, s0, L, valid, np.random.default_rng(seed))
        assert hid.shape == (L, 1, H, W)
        assert not (hid & ~obs[s0:s0 + L]).any() and not hid[:, 0, 0, 0].any()
        # some run of L steps whose gaps cover every hidden cell
        assert any(not (hid & obs[t1:t1 + L]).any() for t1 in range(T - L + 1))
        for i in range(L):
            ys, xs = np.nonzero(hid[i, 0])
            if ys.size:
                assert ys.max() - ys.min() < H // 2 + 1 and xs.max() - xs.min() < W // 2 + 1
        # lasting: a cell hidden at one step is hidden at a neighbouring step too (runs of >= 2)
        h = hid[:, 0]
        lone = h & ~np.roll(h, 1, 0) & ~np.roll(h, -1, 0)
        lone[0] &= ~h[1]
        lone[-1] &= ~h[-2]
        assert lone.sum() < 0.2 * max(h.sum(), 1)
    # the run borrowed is never the segment itself (whose own gaps would hide nothing)
    short = obs[:L + 1]
    short[L] = ~short[L - 1]  # the only other run differs from the segment in its last step
    for seed in range(8):
        assert calibration_cells(short, 0, L, valid, np.random.default_rng(seed)).any()
    # a record of one run borrows the gaps of the record rolled by half its length, in order
    one = obs[:L]
    for seed in range(4):
        hid = calibration_cells(one, 0, L, valid, np.random.default_rng(seed))
        assert hid.any() and not (hid & ~one).any()
        assert not (hid & np.roll(one, L // 2, axis=0)).any(), "hidden only where the rolled record has a gap"


def test_scattered_gaps_are_calibrated_with_scattered_cells_and_a_dense_context():
    """Where the data's gaps are scattered cells, --calibrate hides a few observed cells at
    random over the whole frame (the same i.i.d. shape), not another run's gaps inside a box
    (which would halve the context around them): the observed density stays near the data's."""
    rng = np.random.default_rng(0)
    T, H, W, L = 64, 16, 16, 16
    valid = np.ones((H, W), bool)
    valid[:2] = False
    obs = (rng.random((T, 1, H, W)) < 0.5) & valid
    how, frac = hiding(obs, valid)
    assert how == "scattered" and frac == pytest.approx(0.1)
    hid = calibration_cells(obs, 8, L, valid, np.random.default_rng(1), scattered=frac)
    assert not (hid & ~obs[8:8 + L]).any() and not hid[:, :, :2].any()
    assert hid.sum() / obs[8:8 + L].sum() == pytest.approx(0.1, abs=0.03)
    # spread over the whole frame, and the observed density left around hidden cells is near 45 %
    assert hid[:, 0, 2:9].any() and hid[:, 0, 9:].any() and hid[:, 0, :, :8].any() and hid[:, 0, :, 8:].any()
    left = obs[8:8 + L] & ~hid
    assert left[:, :, 2:].mean() == pytest.approx(0.45, abs=0.03)
    # few scattered gaps: hide no more than the data miss
    sparse = (rng.random((T, 1, H, W)) < 0.97) & valid
    assert hiding(sparse, valid)[0] == "scattered" and hiding(sparse, valid)[1] == pytest.approx(0.03, abs=0.01)
    # clustered gaps (block outages) keep the run-borrowing hiding
    out = rng.random((T // 8, H // 4, W // 4)) < 0.5
    blocks = ~np.repeat(np.repeat(np.repeat(out, 8, 0), 4, 1), 4, 2)[:, None]
    assert hiding(blocks, np.ones((H, W), bool)) == ("runs", 0.0)


def test_conformal_quantile_counts_infinite_misses_and_refuses_too_few_scores():
    from impute_cli.errors import ImputeError
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, np.inf, np.inf, np.nan])
    with pytest.raises(ImputeError, match="too few"):
        conformal_quantile(s, 0.95)
    assert conformal_quantile(s, 0.8) == np.inf


def test_groups_and_conformal_quantile():
    assert group_index(5, "time").tolist() == [0, 1, 2, 3, 4]
    assert group_index(5, "all").tolist() == [0] * 5
    assert group_index(5, "2").tolist() == [0, 0, 1, 1, 2]
    assert conformal_quantile(np.arange(1, 10, dtype=float), 0.9) == 9.0
    assert conformal_quantile(np.arange(1, 100, dtype=float), 0.5) == 50.0


@pytest.fixture(scope="module")
def sampled(sst_model, tmp_path_factory):
    d = tmp_path_factory.mktemp("sampled")
    out = d / "samples.nc"
    run_cli("impute", sst_model.cube, out, "--model", sst_model.model, "--samples", 6, "--sampler-steps", 3,
            "--save-samples", "--seed", 3, "--no-calibrate", *CPU)
    return out


def test_impute_samples_writes_spread_variables(sampled, sst_model):
    ds = open_any(sampled)
    check_filled_output(sst_model.ds, ds, ["sst"])
    x = sst_model.ds["sst"].values
    obs = np.isfinite(x)
    std, lo, hi, s = (ds[f"sst_{k}"].values for k in ("std", "lower", "upper", "sample"))
    assert ds["sst_sample"].dims == ("sample", "time", "lat", "lon") and s.shape[0] == 6
    assert ds["sample"].attrs["standard_name"] == "realization"
    s = s.transpose(1, 0, 2, 3)
    assert np.all(std[obs] == 0) and np.all(lo[obs] == x[obs]) and np.all(hi[obs] == x[obs])
    assert np.all(s.transpose(1, 0, 2, 3)[:, obs] == x[obs]), "every sample keeps the observations"
    gaps = ~obs
    assert np.isfinite(std[gaps]).all() and (std[gaps] > 0).mean() > 0.99
    assert np.all(lo[gaps] <= hi[gaps])
    filled = ds["sst_filled"].values
    # s is (time, sample, lat, lon) here. The RMS deviation from V_filled, by its decomposition:
    # mean square = the samples' variance about their own mean + the square of that mean's offset
    m = s.astype("float64").mean(1)
    rms = np.sqrt(s.astype("float64").var(1) + (m - filled) ** 2)
    assert np.allclose(std[gaps], rms[gaps], rtol=1e-4, atol=1e-6), "V_std: RMS deviation from V_filled"
    assert (std[gaps] >= s.astype("float64").std(1)[gaps] * (1 - 1e-5)).all(), "never below the spread about the mean"
    # the 5 % and 95 % quantiles of 6 samples, worked out from the sorted members (linear interpolation
    # at positions 0.05 * 5 = 0.25 and 0.95 * 5 = 4.75)
    o = np.sort(s.astype("float64"), axis=1)
    q05 = o[:, 0] + 0.25 * (o[:, 1] - o[:, 0])
    q95 = o[:, 4] + 0.75 * (o[:, 5] - o[:, 4])
    assert np.allclose(lo[gaps], q05[gaps], rtol=1e-5, atol=1e-5), "V_lower: the samples' 5 % quantile"
    assert np.allclose(hi[gaps], q95[gaps], rtol=1e-5, atol=1e-5), "V_upper: the samples' 95 % quantile"
    assert (o[:, 0][gaps] <= lo[gaps]).all() and (lo[gaps] <= o[:, 1][gaps]).all()
    assert "standard_name" not in ds["sst_std"].attrs  # the input has none to modify
    assert ds["sst_std"].attrs["units"] == "degC"
    assert ds["sst_filled"].attrs["ancillary_variables"] == "sst_imputed_flag sst_std sst_lower sst_upper"
    assert ds["sst_lower"].attrs["quantile"] == 0.05


def test_impute_calibrates_its_intervals_by_default(sampled, sst_model, tmp_path):
    out = tmp_path / "calibrated.nc"
    run_cli("impute", sst_model.cube, out, "--model", sst_model.model, "--samples", 6, "--sampler-steps", 3,
            "--save-samples", "--seed", 3, *CPU)
    raw, cal = open_any(sampled), open_any(out)
    for k in ("filled", "sample", "imputed_flag"):  # calibration changes only the intervals and the spread
        assert np.array_equal(raw[f"sst_{k}"].values, cal[f"sst_{k}"].values, equal_nan=True), k
    f = cal["sst_lower"].attrs["calibration_factor"]
    assert np.isfinite(f) and f > 0 and cal["sst_upper"].attrs["calibration_factor"] == f
    assert cal["sst_std"].attrs["calibration_factor"] == f and cal["sst_lower"].attrs["confidence_level"] == 0.9
    assert f"cell_factor={f:.6g}" in cal.attrs["impute_cli_calibration"]
    assert "calibration" not in cal.attrs["impute_cli_sampler"] and "solver=dpm2m" in cal.attrs["impute_cli_sampler"]
    gaps = cal["sst_imputed_flag"].values == 1
    filled = cal["sst_filled"].values.astype("float64")
    s = cal["sst_sample"].values.astype("float64")  # (sample, time, lat, lon)
    d = f * np.quantile(np.abs(s - filled[None]), 0.9, axis=0)
    assert np.allclose(cal["sst_lower"].values[gaps], (filled - d)[gaps], rtol=1e-5, atol=1e-4)
    assert np.allclose(cal["sst_upper"].values[gaps], (filled + d)[gaps], rtol=1e-5, atol=1e-4)
    assert np.allclose(cal["sst_std"].values[gaps], f * raw["sst_std"].values[gaps], rtol=1e-5, atol=1e-6)
    obs = ~gaps & np.isfinite(raw["sst"].values)
    assert np.all(cal["sst_lower"].values[obs] == raw["sst"].values[obs]) and np.all(cal["sst_std"].values[obs] == 0)
    assert "calibrated" in cal["sst_lower"].attrs["long_name"] and "quantile" not in cal["sst_lower"].attrs


def test_same_seed_gives_the_same_output(sampled, sst_model, tmp_path):
    # (independence from the batch size is checked at the sampler, inference/test_solver.py)
    again = tmp_path / "again.nc"
    run_cli("impute", sst_model.cube, again, "--model", sst_model.model, "--samples", 6, "--sampler-steps", 3,
            "--save-samples", "--seed", 3, "--no-calibrate", *CPU)
    a, b = open_any(sampled), open_any(again)
    for v in ("sst_filled", "sst_std", "sst_sample"):
        assert np.array_equal(a[v].values, b[v].values, equal_nan=True), v


def test_context_ratio_one_gives_every_member_every_observed_cell(sst_model, tmp_path, monkeypatch):
    """--context-ratio 1: each ensemble member sees all observed cells, so (with no symmetries
    to average over) one member is the whole ensemble; by default the members' contexts differ.
    The ratio is recorded with the samples, for --calibrate to impute as the run did."""
    outs = {}
    for name, extra in (("all1", ["--context-ratio", 1, "--ensemble", 1]), ("all3", ["--context-ratio", 1, "--ensemble", 3]),
                        ("def1", ["--ensemble", 1]), ("def3", ["--ensemble", 3])):
        outs[name] = tmp_path / f"{name}.nc"
        run_cli("impute", sst_model.cube, outs[name], "--model", sst_model.model, *extra, *CPU)
    f = {k: open_any(p)["sst_filled"].values for k, p in outs.items()}
    same = np.nanmax(np.abs(f["all1"] - f["all3"]))  # members differ only by the tiny noise level delta
    apart = np.nanmax(np.abs(f["def1"] - f["def3"]))
    assert apart > 0.05 and same < 0.05 * apart, (same, apart)
    s = tmp_path / "s.nc"
    run_cli("impute", sst_model.cube, s, "--model", sst_model.model, "--samples", 2, "--sampler-steps", 2,
            "--save-samples", "--context-ratio", 0.5, *CPU)
    assert "context_ratio=0.5" in open_any(s).attrs["impute_cli_sampler"]
    # --calibrate resamples its hidden cells with the run's context ratio
    import impute_cli.uncertainty.calibration as imp
    from impute_cli.options import ConfidenceOptions
    from impute_cli.uncertainty.confidence import confidence_file
    seen, fill = [], imp.fill_cube

    def spy(card, den, cube, opts, **kw):
        seen.append(opts.context_ratio)
        return fill(card, den, cube, opts, **kw)

    monkeypatch.setattr(imp, "fill_cube", spy)
    confidence_file(s, tmp_path / "ci.nc", ConfidenceOptions(level=0.6, calibrate=True, calibration_frames=6, device="cpu",
                                                             progress=False, log=lambda m: None))
    assert seen and all(r == 0.5 for r in seen)


def test_a_preset_may_choose_the_context_ratio_and_the_option_overrides_it(sst_model, tmp_path):
    """impute.context_ratio in the model's preset is used in place of [CQ] App. G.3's rule, as if
    given with --context-ratio, and is recorded with the samples; --context-ratio still wins."""
    import shutil

    import yaml
    model = tmp_path / "model"
    shutil.copytree(sst_model.model, model)
    card = yaml.safe_load((model / "model.yaml").read_text())
    card["preset"]["impute"]["context_ratio"] = 1.0
    (model / "model.yaml").write_text(yaml.safe_dump(card))
    runs = {"preset": (model, []), "option": (sst_model.model, ["--context-ratio", 1]),
            "rule": (sst_model.model, []), "override": (model, ["--context-ratio", 0.5]),
            "half": (sst_model.model, ["--context-ratio", 0.5])}
    out = {}
    for name, (m, extra) in runs.items():
        path = tmp_path / f"{name}.nc"
        run_cli("impute", sst_model.cube, path, "--model", m, "--samples", 2, "--sampler-steps", 2, "--save-samples",
                "--seed", 1, *extra, *CPU)
        out[name] = open_any(path)
    f = {k: ds["sst_filled"].values for k, ds in out.items()}
    assert np.array_equal(f["preset"], f["option"], equal_nan=True)
    assert np.array_equal(f["override"], f["half"], equal_nan=True)
    assert not np.array_equal(f["preset"], f["rule"], equal_nan=True)
    assert "context_ratio=1.0" in out["preset"].attrs["impute_cli_sampler"]
    assert "context_ratio" not in out["rule"].attrs["impute_cli_sampler"]


def test_confidence_writes_regions_and_reports_coverage(sampled, sst_model, tmp_path):
    truth = tmp_path / "truth.nc"
    full = tiny_cube_dataset(12, 16, 16, "cloud", 1.0, seed=0, var="sst")
    write_cube(full, truth)
    out = tmp_path / "conf.nc"
    res = run_cli("confidence", sampled, out, "--truth", truth, "--level", 0.8, "--json", *CPU)
    rep = json.loads(res.stdout)
    r = rep["variables"]["sst"]["raw"]
    gaps, y = np.isnan(sst_model.ds["sst"].values), full["sst"].values
    steps_with_gaps = int((gaps.any(axis=(1, 2)) & ~(gaps & np.isnan(y)).any(axis=(1, 2))).sum())
    assert 0 <= r["cell_coverage"] <= 1 and 0 <= r["region_coverage"] <= 1 and r["regions"] == steps_with_gaps
    ds = open_any(out)
    assert ds["sst_ci_radius"].dims == ("time",) and np.all(ds["sst_ci_radius"].values > 0)
    assert ds["sst_ci_lower"].attrs["confidence_level"] == 0.8
    assert np.all(ds["sst_ci_lower"].values <= ds["sst_ci_upper"].values)


def test_confidence_calibrate_records_factors(sampled, sst_model, tmp_path):
    out = tmp_path / "cal.nc"
    res = run_cli("confidence", sampled, out, "--calibrate", "--calibration-frames", 6, "--level", 0.6, "--json", *CPU)
    f = json.loads(res.stdout)["variables"]["sst"]["calibration"]
    assert f["cell_factor"] > 0 and f["region_factor"] > 0 and f["calibration_cells"] > 0
    ds = open_any(out)
    assert "split-conformal" in ds["sst_ci_lower"].attrs["comment"]
    assert ds["sst_ci_lower"].attrs["calibration_factor"] == pytest.approx(f["cell_factor"])
    assert ds["sst_ci_radius"].attrs["calibration_factor"] == pytest.approx(f["region_factor"])
    assert f["calibration_segments"] >= 1 and len(f["region_factor_range"]) == 2
    depth = f["gap_depth"]  # the depths' shares among the real gaps and the hidden cells (the weights' basis)
    for shares in (depth["gaps"], depth["hidden"]):
        assert sum(shares.values()) == pytest.approx(1, abs=1e-3)


def test_factor_range_measures_how_much_the_calibration_segments_disagree():
    from impute_cli.uncertainty.calibration import factor_range
    rng = np.random.default_rng(0)
    same = [rng.exponential(1.0, 40) for _ in range(8)]  # segments alike: a narrow range
    split = [rng.exponential(1.0, 40) * (3.0 if i % 2 else 1.0) for i in range(8)]  # segments that disagree
    lo_s, hi_s = factor_range(same, 0.9, np.random.default_rng(1))
    lo_d, hi_d = factor_range(split, 0.9, np.random.default_rng(1))
    assert lo_s <= conformal_quantile(np.concatenate(same), 0.9) <= hi_s
    assert lo_d <= conformal_quantile(np.concatenate(split), 0.9) <= hi_d
    assert hi_d - lo_d > 2 * (hi_s - lo_s)
    many = [rng.exponential(1.0, 40) for _ in range(64)]  # more segments: a narrower range
    lo_m, hi_m = factor_range(many, 0.9, np.random.default_rng(1))
    assert hi_m - lo_m < hi_s - lo_s
    assert all(np.isnan(factor_range(same[:4], 0.9, rng)))  # four segments are too few to resample


def test_bad_uncertainty_input_is_refused(sampled, sst_model, tmp_path):
    out = tmp_path / "x.nc"
    cases = [
        (("impute", sst_model.cube, out, "--model", sst_model.model, "--samples", 0), "--samples must be at least 1"),
        (("impute", sst_model.cube, out, "--model", sst_model.model, "--samples", 2, "--quantiles", "0.9,0.1"), "--quantiles"),
        (("impute", sst_model.cube, out, "--model", sst_model.model, "--sampler-steps", 5), "add --samples N"),
        (("impute", sst_model.cube, out, "--model", sst_model.model, "--samples", 2, "--omega", "s"), "--omega must be one of"),
        (("impute", sst_model.cube, out, "--model", sst_model.model, "--context-ratio", 0), "--context-ratio must be in (0, 1]"),
        (("impute", sst_model.cube, out, "--model", sst_model.model, "--context-ratio", 1.5), "--context-ratio must be in (0, 1]"),
        (("confidence", sampled, out, "--level", 1.5), "--level must be strictly between 0 and 1"),
        (("confidence", sampled, out, "--level", 0), "--level must be strictly between 0 and 1"),
        (("confidence", sst_model.cube, out), "no samples"),
        (("confidence", sampled, out, "--group", "weekly"), "--group"),
        (("confidence", sampled, out, "--var", "SST"), "its filled variables are of sst"),
        (("confidence", sampled, out, "--model", sst_model.model), "--model is used by --calibrate only"),
        (("confidence", sampled, out, "--calibrate", "--calibration-frames", 0), "--calibration-frames must be at least 1"),
        (("impute", sst_model.cube, out, "--model", sst_model.model, "--quantiles", "0.1,0.9"), "add --samples N"),
        (("impute", sst_model.cube, out, "--model", sst_model.model, "--no-calibrate"), "add --samples N"),
        (("impute", sst_model.cube, out, "--model", sst_model.model, "--calibration-frames", 64), "add --samples N"),
        (("impute", sst_model.cube, out, "--model", sst_model.model, "--sampler", "full"), "add --samples N"),
        (("impute", sst_model.cube, out, "--model", sst_model.model, "--samples", 2, "--calibration-frames", 0),
         "--calibration-frames must be at least 1"),
    ]
    other = tmp_path / "other.nc"
    write_cube(tiny_cube_dataset(12, 8, 8, "cloud", 1.0, seed=0, var="sst"), other)
    cases.append((("confidence", sampled, out, "--truth", other), "on the same grid"))
    for args, frag in cases:
        assert_one_error_line(run_cli(*args, *CPU, expect_ok=False), frag)
        assert not out.exists()
    assert listing(tmp_path) == ["other.nc"]


def test_summary_without_hidden_cells_is_the_summary_of_the_record_with_them_missing():
    from impute_cli.io.dataset import open_cube
    from impute_cli.io.stats import summarise
    ds = tiny_cube_dataset(12, 8, 10, "cloud", 0.7, seed=4, var="sst")
    cube = open_cube(None, ["sst"], None, ds=ds)
    cube.load()
    x = np.asarray(cube.data.compute())
    hidden = np.zeros(x.shape, bool)
    hidden[3:7, :, 2:6, 1:8] = np.isfinite(x[3:7, :, 2:6, 1:8])
    gone = np.where(hidden, np.nan, x).astype("float32")
    expect = summarise(cube.in_memory(gone))
    got = summarise(cube).without(x[3:7], hidden[3:7])
    assert hidden.sum() > 20 and got.T == expect.T == 12
    assert np.array_equal(got.N, expect.N)
    assert np.allclose(got.S, expect.S) and np.allclose(got.s2, expect.s2)
    assert got.observed_fraction == pytest.approx(expect.observed_fraction)


def test_calibration_imputes_each_segment_as_a_piece_of_the_whole_record(sampled, sst_model, tmp_path, monkeypatch):
    """The network's climatology input and context density must be those of the record the
    samples were drawn from, less the hidden cells -- not those of the few time steps cut out
    (a segment's own climatology can mislead the network badly on the hidden cells) -- and the
    sampler's random context masks are drawn from the record's gap shapes, as in the run (a
    segment's own, with its hidden cells as extra gaps, made the samples too narrow)."""
    from impute_cli.uncertainty import calibration as impute
    from impute_cli.io.dataset import open_cube
    from impute_cli.io.stats import summarise
    whole = open_cube(sampled, ["sst"], None)
    whole.load()
    x = np.asarray(whole.data.compute())
    N_whole = summarise(whole).N
    seen = []
    real = impute.fill_cube

    def spy(card, den, cube, opts, record=None, pool=None, fits=None):
        seen.append((np.asarray(cube.memory).copy(), record, pool))
        return real(card, den, cube, opts, record=record, pool=pool, fits=fits)

    monkeypatch.setattr(impute, "fill_cube", spy)
    run_cli("confidence", sampled, tmp_path / "cal.nc", "--calibrate", "--calibration-frames", 6, "--level", 0.6, *CPU)
    assert seen
    for seg, record, pool in seen:
        assert record is not None and record.T == x.shape[0]
        assert pool is not None and np.array_equal(pool, np.isfinite(x[:, 0]))  # the record's, whole
        L = seg.shape[0]
        starts = [s for s in range(x.shape[0] - L + 1)
                  if np.array_equal(seg[np.isfinite(seg)], x[s:s + L][np.isfinite(seg)])
                  and not (np.isfinite(seg) & ~np.isfinite(x[s:s + L])).any()]
        assert starts, "the segment is a run of the record's time steps"
        hidden = np.isfinite(x[starts[0]:starts[0] + L]) & np.isnan(seg)
        assert hidden.any() and np.array_equal(record.N, N_whole - hidden.sum(0))
        assert L == 8  # clustered (cloud) gaps: the segment alone, its borrowed outages whole


def test_calibration_on_scattered_gaps_gives_each_segment_context_steps(sst_model, tmp_path, monkeypatch):
    """On scattered gaps --calibrate resamples each segment with half a window of time steps
    after (and before) it as context, hidden nowhere: its edge cells have observed steps on both
    sides, as the real gaps had in the run."""
    from impute_cli.uncertainty import calibration as impute
    ds = tiny_cube_dataset(12, 16, 16, "pixel", 0.5, seed=4, var="sst")
    cube = write_cube(ds, tmp_path / "pixel.nc")
    samples = tmp_path / "s.nc"
    run_cli("impute", cube, samples, "--model", sst_model.model, "--samples", 4, "--sampler-steps", 2,
            "--save-samples", *CPU)
    x = ds["sst"].values
    seen = []
    real = impute.fill_cube

    def spy(card, den, seg, opts, record=None, pool=None, fits=None):
        seen.append(np.asarray(seg.memory)[:, 0].copy())
        return real(card, den, seg, opts, record=record, pool=pool, fits=fits)

    monkeypatch.setattr(impute, "fill_cube", spy)
    res = run_cli("confidence", samples, tmp_path / "cal.nc", "--calibrate", "--level", 0.6, "--json", *CPU)
    cal = json.loads(res.stdout)["variables"]["sst"]["calibration"]
    assert cal["calibration_hiding"] == "scattered" and "gap_depth" not in cal
    # weighted by how many neighbours are missing (every scattered gap lies at depth 1): the hidden
    # cells, taken from the observed ones, have sparser neighbours than the real gaps
    shares = cal["missing_neighbours"]
    mean = {k: sum(int(c) * p for c, p in shares[k].items()) for k in ("gaps", "hidden")}
    assert sum(shares["hidden"].values()) == pytest.approx(1, abs=1e-3) and mean["hidden"] > mean["gaps"]
    [seg] = seen  # one 8-step segment (T = 12) and, with 3-frame windows, 1 step of context after it
    hidden = np.isnan(seg) & np.isfinite(x[:seg.shape[0]])
    assert seg.shape[0] == 9 and hidden[:8].any() and not hidden[8].any()
    assert np.array_equal(seg[8], x[8], equal_nan=True)
