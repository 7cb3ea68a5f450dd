"""Training's held-out slice: observed cells hidden with the data's own gap shapes, never seen in
training; the model scored on them beside the classical fillers; the best weights kept, training
stopped when they stop improving; the card and `impute` report it; --no-validation trains on all."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from conftest import run_cli
from impute_cli.errors import ImputeError
from impute_cli.io.dataset import open_cube
from impute_cli.io.stats import summarise
from impute_cli.testing import tiny_cube_dataset, tiny_preset_yaml, write_cube
from impute_cli.training import validation as val_mod

CPU = ("--device", "cpu", "--quiet")


@pytest.fixture
def cube(tmp_path):
    return write_cube(tiny_cube_dataset(48, 24, 24, "cloud", 0.6, seed=3), tmp_path / "cube.nc")


@pytest.fixture
def preset(tmp_path):
    return tiny_preset_yaml(tmp_path / "v.yaml", train={"checkpoint_every": 3, "steps": 9, "batch_size": 2})


def test_the_slice_hides_a_few_percent_of_a_large_record_and_more_of_a_small_one():
    assert val_mod.hidden_share(10**7) == val_mod.HIDDEN_SHARE, "a large record: 3 %"
    assert val_mod.hidden_share(200_000) == pytest.approx(val_mod.FIT_CELLS / 200_000), "enough cells to fit on"
    assert val_mod.hidden_share(20_000) == val_mod.MAX_HIDDEN_SHARE == 0.10, "never more than 10 %"
    assert val_mod.hidden_share(0) == val_mod.MAX_HIDDEN_SHARE


def test_the_slice_hides_observed_cells_with_the_gap_shapes(cube, monkeypatch):
    c = open_cube(cube).load()
    stats = summarise(c).stats(c.channels)
    obs = c.observed(c.memory)
    assert val_mod.hidden_share(int(obs.sum())) == val_mod.MAX_HIDDEN_SHARE, "a small record"
    small = val_mod.make_validation(c, stats, frames=4, seed=0)
    assert 0.07 < small.cells / obs.sum() < 0.13, "a small record: about 10 % of its observed cells"
    monkeypatch.setattr(val_mod, "FIT_CELLS", 0)
    vs = val_mod.make_validation(c, stats, frames=4, seed=0)
    assert 0.01 < vs.cells / obs.sum() < 0.06, "otherwise a few percent"
    for seg, h in zip(vs.segments, vs.hidden):
        assert h.shape == c.memory[seg].shape and not (h & ~obs[seg]).any(), "only observed cells are held out"
    hidden = vs.hide(c.memory)
    assert np.isnan(hidden).sum() == np.isnan(c.memory).sum() + vs.cells
    assert not np.isnan(c.memory[obs]).any(), "the cube itself is not changed"
    again = val_mod.make_validation(c, stats, frames=4, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(vs.hidden, again.hidden)), "the same seed, the same slice"
    perfect = vs.score(vs.truth)
    assert all(r == 0 for r in perfect["rmse"].values()) and perfect["normalised"] == 0
    # what the record's fits (space-time kriging's covariance) see: its middle steps, held-out cells hidden
    middle = vs.hide_middle(c.memory, 20)
    t0 = (c.memory.shape[0] - 20) // 2
    np.testing.assert_array_equal(middle, hidden[t0:t0 + 20])
    np.testing.assert_array_equal(vs.hide_middle(c.memory, 1000), hidden)


def test_train_reports_validation_beside_the_baselines(cube, preset, tmp_path):
    model = tmp_path / "m"
    res = run_cli("train", cube, "--preset", preset, "--out", model, "--device", "cpu")
    v = yaml.safe_load((model / "model.yaml").read_text())["validation"]
    assert v["cells"] > 0 and v["rmse"]["sst"] > 0 and v["best_baseline"] in ("climatology", "temporal_linear",
                                                                               "laplace", "spline", "telea",
                                                                               "ns_inpaint",
                                                                               "eof_dineof", "gp_kriging",
                                                                                   "st_kriging")
    assert v["ratio"] == pytest.approx(v["rmse"]["sst"] / v["baseline_rmse"]["sst"], rel=1e-3)
    assert [c["step"] for c in v["curve"]] == [3, 6, 9] and v["step"] in (3, 6, 9) and v["units"] == {"sst": "degC"}
    assert "validation RMSE sst" in res.stderr and "best classical filler" in res.stderr
    out = run_cli("impute", cube, tmp_path / "o.nc", "--model", model, "--device", "cpu")
    assert "validation RMSE sst" in out.stderr, "impute says how the model did on its held-out cells"


def test_training_never_sees_the_held_out_cells(cube, preset, tmp_path, monkeypatch):
    seen = []
    real = val_mod.score_model

    def spy(vs, card, den, c, record, ensemble=None):
        seen.append((vs, c))
        return real(vs, card, den, c, record, ensemble)
    monkeypatch.setattr("impute_cli.training.train.score_model", spy)
    run_cli("train", cube, "--preset", preset, "--out", tmp_path / "m", *CPU)
    vs, trained_on = seen[0]
    for seg, h in zip(vs.segments, vs.hidden):
        assert np.isnan(trained_on.memory[seg][h]).all(), "held-out cells are gaps in the training cube"


def test_patience_stops_and_keeps_the_best_weights(cube, preset, tmp_path, monkeypatch):
    scores = iter([0.5, 0.7, 0.8, 0.9])  # best at the first check, then worse

    def fake(vs, card, den, c, record, ensemble=None):
        s = next(scores)
        return {"rmse": {"sst": s}, "normalised": s}
    monkeypatch.setattr("impute_cli.training.train.score_model", fake)
    model = tmp_path / "m"
    res = run_cli("train", cube, "--preset", preset, "--out", model, "--steps", 30, "--patience", 2, "--device", "cpu")
    card = yaml.safe_load((model / "model.yaml").read_text())
    assert "stopping at step 9" in res.stderr
    assert card["training"]["steps"] == 9 and card["training"]["steps_planned"] == 30
    network = card["validation"].get("blend", {}).get("network_rmse", card["validation"]["rmse"])
    assert card["validation"]["step"] == 3 and network["sst"] == 0.5
    state = torch.load(model / "checkpoint.pt", map_location="cpu", weights_only=True)
    best = state["validation"]["best_weights"]
    saved = torch.load(model / "weights.pt", map_location="cpu", weights_only=True)
    assert all(torch.equal(best[k], saved[k]) for k in saved), "the weights written are the best check's"


def test_default_patience_grows_with_the_run(cube, preset, tmp_path, monkeypatch):
    from impute_cli.training.validation import default_patience
    assert default_patience(1500, 250) == 4 and default_patience(10000, 250) == 10
    scores = iter([0.5 + 0.01 * k for k in range(100)])  # best at the first check, then worse

    def fake(vs, card, den, c, record, ensemble=None):
        s = next(scores)
        return {"rmse": {"sst": s}, "normalised": s}
    monkeypatch.setattr("impute_cli.training.train.score_model", fake)
    # 60 steps, a check every 3: 20 checks, so 5 without improvement (not 4) before stopping
    res = run_cli("train", cube, "--preset", preset, "--out", tmp_path / "m", "--steps", 60, *CPU)
    assert "no improvement in 5 checks; stopping at step 18" in res.stderr


def test_no_validation_trains_on_every_cell(cube, preset, tmp_path):
    model = tmp_path / "m"
    run_cli("train", cube, "--preset", preset, "--out", model, "--no-validation", *CPU)
    assert yaml.safe_load((model / "model.yaml").read_text())["validation"] is None


def test_too_little_data_trains_without_a_slice_and_says_so(tmp_path, preset):
    small = write_cube(tiny_cube_dataset(6, 8, 8, "pixel", 0.5, seed=1), tmp_path / "small.nc")
    res = run_cli("train", small, "--preset", preset, "--out", tmp_path / "m", "--device", "cpu")
    assert "no validation slice" in res.stderr and "could be held out" in res.stderr


def test_a_record_too_small_for_a_three_percent_slice_keeps_every_cell(tmp_path):
    # 10 % of its observed cells would be enough for a slice, 3 % would not: it cannot spare them
    c = open_cube(write_cube(tiny_cube_dataset(40, 16, 16, "cloud", 0.5, seed=2), tmp_path / "c.nc")).load()
    n = int(c.observed(c.memory).sum())
    assert val_mod.HIDDEN_SHARE * n < val_mod.MIN_CELLS <= val_mod.hidden_share(n) * n
    with pytest.raises(ImputeError, match="could be held out"):
        val_mod.make_validation(c, summarise(c).stats(c.channels), frames=4, seed=0)
