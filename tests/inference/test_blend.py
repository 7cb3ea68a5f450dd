"""The blend of the network's estimate with classical fills: convex weights per distance band
fitted on held-out cells, partners kept only when they pay, applied to the estimate and the
samples with observed cells untouched; trained models record it and `impute --no-blend` turns
it off."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
import yaml

from conftest import run_cli
from impute_cli.evaluation.gp import gap_mask, sample_cube
from impute_cli.evaluation.kriging import gp_kriging, st_covariance, st_kriging
from impute_cli.inference.blend import (EDGES, MIN_BAND_CELLS, Blend, anchored, apply_blend, band_groups,
                                        distance_to_observed, fit_blend, fit_weights, partner_fills, record_fits,
                                        simplex_weights)
from impute_cli.testing import tiny_cube_dataset, tiny_preset_yaml, write_cube

CPU = ("--device", "cpu", "--quiet")


def test_simplex_weights_are_the_constrained_least_squares():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=5000), rng.normal(size=5000)  # independent errors of equal size: half and half
    w = simplex_weights(np.stack([a, b], 1).T @ np.stack([a, b], 1))
    assert w.sum() == pytest.approx(1) and w == pytest.approx([0.5, 0.5], abs=0.03)
    w = simplex_weights(np.stack([a, 3 * a], 1).T @ np.stack([a, 3 * a], 1))  # one member dominated: all on the other
    assert w.tolist() == [1.0, 0.0]
    c = rng.normal(size=5000)
    w = simplex_weights(np.stack([a, b, c], 1).T @ np.stack([a, b, c], 1))
    assert (w >= 0).all() and w.sum() == pytest.approx(1) and w == pytest.approx([1 / 3] * 3, abs=0.03)


def test_weights_follow_the_distance_bands():
    rng = np.random.default_rng(1)
    n = 8000  # every band holds at least MIN_BAND_CELLS cells
    dist = rng.uniform(0, 30, n)
    near = dist < EDGES[0]
    # the network is poor next to observations and good far from them; the partner the other way round
    net = rng.normal(size=n) * np.where(near, 3.0, 0.5)
    lap = rng.normal(size=n) * np.where(near, 0.5, 3.0)
    w = np.asarray(fit_weights(np.stack([net, lap], 1), dist))
    assert w[0, 1] > 0.8 and w[-1, 0] > 0.8, "the partner next to observations, the network far from them"
    assert np.allclose(w.sum(1), 1) and (w >= 0).all()


def test_thin_bands_are_fitted_with_their_neighbours():
    assert band_groups([5374, 2220, 644, 629, 406, 377, 48]) == [5, 4, 3, 2, 1, 0, 0], "the deepest joins the next"
    assert band_groups([50, 300, 20, 10, 300]) == [1, 1, 1, 1, 0], "a thin shallowest remainder joins the group below"
    assert band_groups([100, 50, 20]) == [0, 0, 0], "too few cells in all: one group"
    rng = np.random.default_rng(4)
    # many cells next to the observations, where the partner is best; few deep inside the gaps,
    # where the network is best, as in a validation slice of small clouds
    dist = np.concatenate([rng.uniform(0, EDGES[0], 4000), rng.uniform(EDGES[-2], EDGES[-1], MIN_BAND_CELLS // 2),
                           rng.uniform(EDGES[-1] + 1, 40, MIN_BAND_CELLS // 2)])
    near = dist < EDGES[0]
    net = rng.normal(size=len(dist)) * np.where(near, 3.0, 0.5)
    lap = rng.normal(size=len(dist)) * np.where(near, 0.5, 3.0)
    w = np.asarray(fit_weights(np.stack([net, lap], 1), dist))
    assert w[-1] == pytest.approx(w[-2]) and w[-1, 0] > 0.8, \
        "the two thin deep bands fitted together: the network, not the weights of the cells near observations"
    assert w[0, 1] > 0.8, "next to the observations the partner"
    w = np.asarray(fit_weights(np.stack([net, lap], 1)[:MIN_BAND_CELLS // 2], dist[:MIN_BAND_CELLS // 2]))
    assert np.allclose(w, w[0]), "too few cells in all: every band takes the weights of all cells"


def test_a_partner_that_does_not_pay_is_dropped():
    rng = np.random.default_rng(2)
    net = rng.normal(size=3000)
    blend, report = fit_blend(net, {"laplace": 4 * net + 0.01 * rng.normal(size=3000)}, rng.uniform(0, 9, 3000))
    assert blend is None and report["partners"] == [] and report["blend_rmse"] == report["network_rmse"]
    blend, report = fit_blend(net, {"laplace": rng.normal(size=3000)}, rng.uniform(0, 9, 3000))
    assert blend is not None and blend.partners == ["laplace"]
    assert report["blend_rmse"] < 0.8 * report["network_rmse"], "two independent errors: about 1/sqrt(2)"


def test_apply_keeps_observed_cells_and_fills_every_gap():
    rng = np.random.default_rng(3)
    truth = np.cumsum(np.cumsum(rng.normal(size=(4, 1, 20, 20)), 2), 3)
    values = truth.copy()
    values[:, :, 5:12, 6:14] = np.nan
    valid = np.ones((20, 20), bool)
    est = np.where(np.isnan(values), 0.0, values).astype("float32")
    blend = Blend(["laplace"], list(EDGES), [[0.0, 1.0]] * (len(EDGES) + 1))
    out = apply_blend(blend, est, values, valid)
    obs = np.isfinite(values)
    assert np.array_equal(out[obs], est[obs]) and np.isfinite(out).all()
    assert np.abs(out - truth)[~obs].mean() < np.abs(est - truth)[~obs].mean(), "the Laplace fill, not zeros"
    d = distance_to_observed(obs)
    assert (d[obs] == 0).all() and d[:, :, 8, 10].min() >= 3


def _bump_in_a_gap():
    """A smooth field with a bump inside a gap that no fill from the gap's edge can see, and a
    network estimate that has the bump but is offset by 5 in the gap."""
    y, x = np.mgrid[0:30, 0:40] / 10.0
    truth = np.sin(y) + np.cos(0.7 * x) + 3 * np.exp(-((y - 1.5) ** 2 + (x - 2.0) ** 2) / 0.05)
    truth = np.broadcast_to(truth, (3, 1, 30, 40)).astype("float64").copy()
    values = truth.copy()
    values[:, :, 8:23, 10:31] = np.nan
    values[2] = np.nan  # a frame with no observation
    est = np.where(np.isnan(values), truth + 5.0, truth)
    return truth, values, est, np.ones((30, 40), bool)


def test_anchored_keeps_the_estimates_structure_and_meets_the_laplace_fill_at_the_gaps_edge():
    truth, values, est, valid = _bump_in_a_gap()
    obs = np.isfinite(values)
    lap = partner_fills(["laplace"], values, valid)["laplace"]
    out = anchored(est, lap, obs, valid)
    edge = ~obs & (distance_to_observed(obs) <= EDGES[0])
    assert np.allclose(out[edge], lap[edge]) and np.array_equal(out[obs], est[obs])
    gap = ~obs[:2]
    err = {k: np.abs(f[:2] - truth[:2])[gap].mean() for k, f in (("anchored", out), ("est", est), ("lap", lap))}
    assert err["anchored"] < 0.1 * err["est"] and err["anchored"] < 0.5 * err["lap"], err
    assert np.isnan(out[2]).all(), "a frame with nothing to anchor to stays NaN: the blend keeps the network there"
    # an estimate that already meets the Laplace fill at the edge is left as it is
    same = anchored(np.where(obs, est, lap), lap, obs, valid)
    np.testing.assert_allclose(same[:2], lap[:2], atol=1e-6)


def test_anchored_is_a_partner_only_where_the_estimate_is_given():
    truth, values, est, valid = _bump_in_a_gap()
    assert "anchored" not in partner_fills(["laplace", "anchored"], values, valid)
    fills = partner_fills(["anchored"], values, valid, estimate=est)
    np.testing.assert_allclose(fills["anchored"], anchored(est, partner_fills(["laplace"], values, valid)["laplace"],
                                                           np.isfinite(values), valid), equal_nan=True)
    blend = Blend(["anchored"], list(EDGES), [[0.0, 1.0]] * (len(EDGES) + 1))
    out = apply_blend(blend, est.astype("float32"), values, valid)
    obs = np.isfinite(values)
    assert np.array_equal(out[obs], est[obs].astype("float32")) and np.isfinite(out).all(), \
        "observed cells kept; the frame with no observation keeps the network's estimate"
    np.testing.assert_allclose(out[:2], fills["anchored"][:2], atol=1e-4)
    # on a whole circle of longitude the correction runs across the east-west edge too
    wrapped = values.copy()
    wrapped[:2, :, 8:23, :3], wrapped[:2, :, 8:23, -3:] = np.nan, np.nan
    out = apply_blend(blend, est.astype("float32"), wrapped, valid, wrap=4)
    assert np.isfinite(out).all() and np.array_equal(out[np.isfinite(wrapped)], est[np.isfinite(wrapped)].astype("float32"))


@pytest.fixture
def trained(tmp_path):
    cube = write_cube(tiny_cube_dataset(48, 24, 24, "cloud", 0.6, seed=3), tmp_path / "cube.nc")
    preset = tiny_preset_yaml(tmp_path / "v.yaml", train={"checkpoint_every": 3, "steps": 9, "batch_size": 2})
    run_cli("train", cube, "--preset", preset, "--out", tmp_path / "m", *CPU)
    return cube, tmp_path / "m"


def test_a_trained_model_records_its_blend_and_impute_applies_it(trained, tmp_path):
    cube, model = trained
    card = yaml.safe_load((model / "model.yaml").read_text())
    v = card["validation"]
    # a tiny network trained 9 steps: the classical fills help it, and the card says by how much
    assert card["blend"] is not None and card["blend"]["partners"] and v["blend"]["partners"] == card["blend"]["partners"]
    assert v["ratio"] < v["blend"]["network_ratio"], "the blend's held-out error is below the network's"
    on = run_cli("impute", cube, tmp_path / "on.nc", "--model", model, *CPU)
    run_cli("impute", cube, tmp_path / "off.nc", "--model", model, "--no-blend", *CPU)
    assert "network alone" in on.stderr
    a, b = (xr.open_dataset(tmp_path / f) for f in ("on.nc", "off.nc"))
    src = xr.open_dataset(cube)
    obs = np.isfinite(src["sst"].values)
    assert np.array_equal(a["sst_filled"].values[obs], src["sst"].values[obs]), "observed cells bit for bit"
    gaps = ~obs
    assert np.isfinite(a["sst_filled"].values[gaps]).all()
    assert not np.array_equal(a["sst_filled"].values[gaps], b["sst_filled"].values[gaps])
    assert "; blended with " in a["sst_filled"].attrs["comment"], "the output says how its gaps were filled"
    assert "blended" not in b["sst_filled"].attrs["comment"]


def test_samples_move_with_the_blended_estimate(trained, tmp_path):
    cube, model = trained
    run_cli("impute", cube, tmp_path / "s.nc", "--model", model, "--samples", 3, "--no-calibrate", "--save-samples",
            *CPU)
    run_cli("impute", cube, tmp_path / "n.nc", "--model", model, "--samples", 3, "--no-calibrate", "--save-samples",
            "--no-blend", *CPU)
    a, b = xr.open_dataset(tmp_path / "s.nc"), xr.open_dataset(tmp_path / "n.nc")
    shift = (a["sst_filled"] - b["sst_filled"]).values
    moved = (a["sst_sample"] - b["sst_sample"]).values
    gaps = np.isnan(xr.open_dataset(cube)["sst"].values)
    np.testing.assert_allclose(moved[:, gaps], np.broadcast_to(shift[gaps], moved[:, gaps].shape), atol=1e-4)
    assert "blend=" in a.attrs["impute_cli_sampler"] and "blend=" not in b.attrs["impute_cli_sampler"]


def test_a_damaged_blend_entry_is_refused_in_one_line(trained, tmp_path):
    cube, model = trained
    card = yaml.safe_load((model / "model.yaml").read_text())
    card["blend"] = {"partners": ["laplace"]}  # edges and weights lost
    (model / "model.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    res = run_cli("impute", cube, tmp_path / "o.nc", "--model", model, *CPU, expect_ok=False)
    assert res.exit_code != 0 and "damaged 'blend' entry" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "o.nc").exists()
    ok = run_cli("impute", cube, tmp_path / "o.nc", "--model", model, "--no-blend", *CPU)
    assert (tmp_path / "o.nc").exists() and ok.exit_code == 0


@pytest.mark.parametrize("steps, left_out", [(48, True), (160, False)])
def test_kriging_is_weighed_only_on_a_slice_of_many_time_steps(tmp_path, steps, left_out):
    # kriging's error follows each frame's whole gap layout: a weight fitted on a few time steps
    # of one layout did not carry over, so a short slice leaves it out and says so
    cube = write_cube(tiny_cube_dataset(steps, 16, 16, "cloud", 0.6, seed=4), tmp_path / "cube.nc")
    preset = tiny_preset_yaml(tmp_path / "k.yaml", train={"checkpoint_every": 3, "steps": 3, "batch_size": 2,
                                                           "blend": ["laplace", "gp_kriging"]})
    res = run_cli("train", cube, "--preset", preset, "--out", tmp_path / "m", "--device", "cpu")
    card = yaml.safe_load((tmp_path / "m" / "model.yaml").read_text())
    partners = (card["blend"] or {}).get("partners", [])
    assert "blend: " in res.stderr, "a validation slice and a blend fit, short record or long"
    assert ("left out: gp_kriging (the slice spans" in res.stderr) == left_out
    if left_out:
        assert "gp_kriging" not in partners


def test_kriging_counts_every_time_step_for_the_progress_bar():
    # kriging is the slow fill at imputation (about 0.1 s a step on a reanalysis grid): the bar
    # moves once per time step, gaps or not, and the values are those without a bar
    ds = tiny_cube_dataset(7, 12, 12, "cloud", 0.6, seed=2)
    values = ds["sst"].values.copy()
    values[3] = ds["sst"].values[3]  # one step with nothing to fill
    values[3][np.isnan(values[3])] = 0.0
    calls = []
    out = gp_kriging(values, step=lambda: calls.append(1))
    assert len(calls) == 7
    np.testing.assert_array_equal(out, gp_kriging(values))
    fills = partner_fills(["laplace", "gp_kriging"], values[:, None], np.ones((12, 12), bool), progress=True)
    np.testing.assert_array_equal(fills["gp_kriging"][:, 0], out)


def test_a_piece_of_a_record_is_kriged_in_space_and_time_with_the_records_covariance():
    # validation and calibration fill pieces of a few dozen steps: too few for the time scale of
    # space-time kriging's covariance, which they take from the whole record (record_fits)
    truth = sample_cube(96, 10, 10, phi=0.9, ell=3.0, seed=5)
    values = np.where(gap_mask(truth.shape, "pixel", 0.5, seed=5), truth, np.nan)[:, None]
    valid = np.ones((10, 10), bool)
    fits = record_fits(["laplace", "st_kriging"], values, valid)
    assert list(fits) == ["st_kriging"] and fits["st_kriging"][0] == st_covariance(values[:, 0], valid)
    piece = values[40:64]
    given = partner_fills(["st_kriging"], piece, valid, fits=fits)["st_kriging"][:, 0]
    np.testing.assert_array_equal(given, st_kriging(piece[:, 0], valid, cov=fits["st_kriging"][0]))
    own = partner_fills(["st_kriging"], piece, valid)["st_kriging"][:, 0]
    np.testing.assert_array_equal(own, st_kriging(piece[:, 0], valid))
    assert st_covariance(piece[:, 0], valid).tau < fits["st_kriging"][0].tau, "a piece's time scale is short"
    gaps = np.isnan(piece[:, 0])
    assert np.mean((given - truth[40:64])[gaps] ** 2) < np.mean((own - truth[40:64])[gaps] ** 2)


def test_every_region_of_a_file_is_kriged_with_the_whole_files_covariance(trained, tmp_path, monkeypatch):
    # a file imputed in several regions (here forced by --region-mb): each region is a piece of
    # the record, so space-time kriging takes the covariance fitted once on the whole file
    import impute_cli.inference.blend as blend_mod
    cube, model = trained
    card = yaml.safe_load((model / "model.yaml").read_text())
    card["blend"] = {"partners": ["st_kriging"], "edges": list(EDGES), "weights": [[0.0, 1.0]] * (len(EDGES) + 1)}
    (model / "model.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    seen: list = []
    fill = blend_mod.FILLS["st_kriging"]
    monkeypatch.setitem(blend_mod.FILLS, "st_kriging", lambda *a, cov=None, **k: seen.append(cov) or fill(*a, cov=cov, **k))
    res = run_cli("impute", cube, tmp_path / "o.nc", "--model", model, "--samples", 3, "--no-calibrate",
                  "--region-mb", 1, *CPU)
    values = xr.open_dataset(cube)["sst"].values
    whole = st_covariance(values, np.isfinite(values).any(0))
    assert len(seen) >= 2 and all(c == whole for c in seen), (res.stderr, seen)
    out = xr.open_dataset(tmp_path / "o.nc")["sst_filled"].values
    assert np.isfinite(out[np.isnan(values)]).all()


def test_kriging_on_a_grid_too_large_gives_its_weight_to_the_network():
    # a model blended with kriging, applied to a grid above kriging's limit: a one-line notice,
    # and the network's estimate where kriging's weight was, observed cells untouched
    rng = np.random.default_rng(0)
    H, W = 400, 630  # 252 000 cells, over the 250 000 kriging takes
    values = rng.normal(size=(2, 1, H, W))
    values[:, :, 100:120, 200:230] = np.nan
    est = np.where(np.isnan(values), 5.0, values)
    notes: list[str] = []
    out = apply_blend(Blend(["gp_kriging"], list(EDGES), [[0.2, 0.8]] * (len(EDGES) + 1)), est, values,
                      np.ones((H, W), bool), log=notes.append)
    assert len(notes) == 1 and "blend partner gp_kriging skipped" in notes[0] and "\n" not in notes[0]
    np.testing.assert_allclose(out, est, rtol=1e-6)  # the weights are float32 and sum to one


def test_training_weighs_the_anchored_estimate_on_its_validation_slice(tmp_path, monkeypatch):
    import impute_cli.training.validation as validation
    offered = []
    real = validation.fit_blend
    monkeypatch.setattr(validation, "fit_blend", lambda net, partners, *a, **k: offered.append(partners)
                        or real(net, partners, *a, **k))
    cube = write_cube(tiny_cube_dataset(48, 24, 24, "cloud", 0.6, seed=3), tmp_path / "cube.nc")
    preset = tiny_preset_yaml(tmp_path / "a.yaml", train={"checkpoint_every": 3, "steps": 6, "batch_size": 2,
                                                          "blend": ["laplace", "anchored"]})
    run_cli("train", cube, "--preset", preset, "--out", tmp_path / "m", *CPU)
    assert offered and all(set(p) == {"laplace", "anchored"} for p in offered)
    assert all(np.isfinite(p["anchored"]).all() and not np.array_equal(p["anchored"], p["laplace"]) for p in offered)
    card = yaml.safe_load((tmp_path / "m" / "model.yaml").read_text())
    assert card["blend"] is None or set(card["blend"]["partners"]) <= {"laplace", "anchored"}
    # a card that keeps both: impute applies them and the output says so
    card["blend"] = Blend(["spline", "anchored"], list(EDGES), [[0.2, 0.4, 0.4]] * (len(EDGES) + 1)).to_dict()
    (tmp_path / "m" / "model.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    run_cli("impute", cube, tmp_path / "o.nc", "--model", tmp_path / "m", *CPU)
    src, out = xr.open_dataset(cube)["sst"].values, xr.open_dataset(tmp_path / "o.nc")["sst_filled"]
    obs = np.isfinite(src)
    assert np.array_equal(out.values[obs], src[obs]) and np.isfinite(out.values[~obs]).all()
    assert ("blended with a spline with tension and its own estimate anchored to the Laplace fill at each gap's "
            "edge (fills of the same gaps)") in out.attrs["comment"]
