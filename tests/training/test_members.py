"""Several models of consecutive training seeds in one folder (training.members): a short record
trains them by default, `train --members N` any record; imputation averages their blended
estimates, exactly as the models of those seeds would give one by one."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import xarray as xr
import yaml

from conftest import assert_one_error_line, run_cli
from impute_cli.checkpoint import load_card
from impute_cli.config import load_preset
from impute_cli.errors import ImputeError
from impute_cli.testing import tiny_cube_dataset, tiny_preset_yaml, write_cube
from impute_cli.training.members import SHORT_RECORD_WINDOWS, members_for

CPU = ("--device", "cpu", "--quiet")


@pytest.fixture
def cube(tmp_path):
    return write_cube(tiny_cube_dataset(48, 24, 24, "cloud", 0.6, seed=3), tmp_path / "cube.nc")


@pytest.fixture
def preset(tmp_path):
    return tiny_preset_yaml(tmp_path / "v.yaml", train={"checkpoint_every": 3, "steps": 6, "batch_size": 2})


def test_a_short_record_trains_the_presets_members_and_a_longer_one_a_single_model(tmp_path):
    p = load_preset(tiny_preset_yaml(tmp_path / "s.yaml", train={"short_record_members": 3}))
    frames = p.window.frames
    assert members_for(p, SHORT_RECORD_WINDOWS * frames) == 3, "at most two windows in time: short"
    assert members_for(p, SHORT_RECORD_WINDOWS * frames + 1) == 1
    assert members_for(p, 10_000, requested=2) == 2 and members_for(p, 5, requested=1) == 1, "--members decides"
    assert load_preset("quick").train.short_record_members == 3


def test_the_folders_estimate_is_the_mean_of_its_seeds_models(cube, preset, tmp_path):
    both, one, two = tmp_path / "both", tmp_path / "s0", tmp_path / "s1"
    res = run_cli("train", cube, "--preset", preset, "--out", both, "--members", "2", "--json", "--device", "cpu")
    assert "model 2 of 2" in res.stderr and "validation RMSE" in res.stderr
    summary = json.loads(res.stdout)
    run_cli("train", cube, "--preset", preset, "--out", two, "--seed", "1", *CPU)
    shutil.copytree(both, one)  # the first model alone: the folder without its further model
    (one / "member-1.pt").unlink()
    first = yaml.safe_load((one / "model.yaml").read_text())
    del first["members"]
    (one / "model.yaml").write_text(yaml.safe_dump(first, sort_keys=False))
    card = load_card(both)
    [m] = card.members
    assert m["weights"] == "member-1.pt" and m["seed"] == 1 and (both / "member-1.pt").exists()
    assert not list(both.glob(".member-*")), "no temporary folder is left"
    assert summary["members"] == 2 and summary["seconds"] > card.training["seconds"], "--json counts both models"
    alone = yaml.safe_load((two / "model.yaml").read_text())
    assert m["validation"]["rmse"] == alone["validation"]["rmse"] and m["blend"] == alone["blend"], \
        "the second model is the model `train --seed 1` makes"
    assert "members" not in alone, "a single model's card is as before"
    est = {}
    for name, model in (("both", both), ("s0", one), ("s1", two)):
        res = run_cli("impute", cube, tmp_path / f"{name}.nc", "--model", model, "--device", "cpu")
        assert ("the first of 2 models averaged" in res.stderr) == (name == "both")
        est[name] = xr.open_dataset(tmp_path / f"{name}.nc")["sst_filled"].values
    np.testing.assert_allclose(est["both"], (est["s0"] + est["s1"]) / 2, rtol=1e-5, atol=1e-5)
    src = xr.open_dataset(cube)["sst"].values
    obs = np.isfinite(src)
    np.testing.assert_array_equal(est["both"][obs], src[obs])
    assert np.isfinite(est["both"][~obs & np.isfinite(est["s0"])]).all(), "every gap the models fill is filled"
    out = tmp_path / "samples.nc"
    run_cli("impute", cube, out, "--model", both, "--samples", "3", *CPU)
    with xr.open_dataset(out) as ds:
        assert np.isfinite(ds["sst_filled"].values[~obs & np.isfinite(est["s0"])]).all()
        assert "2 models" in ds["sst_filled"].attrs["comment"]


def test_a_short_record_trains_its_members_without_being_asked(tmp_path):
    short = write_cube(tiny_cube_dataset(6, 16, 16, "cloud", 0.6, seed=1), tmp_path / "short.nc")
    preset = tiny_preset_yaml(tmp_path / "m.yaml", train={"steps": 3, "checkpoint_every": 3, "batch_size": 2,
                                                          "short_record_members": 2})
    res = run_cli("train", short, "--preset", preset, "--out", tmp_path / "m", "--device", "cpu")
    assert "a short record (6 time steps" in res.stderr and "--members 1 trains one" in res.stderr
    assert len(load_card(tmp_path / "m").members) == 1
    run_cli("train", short, "--preset", preset, "--out", tmp_path / "one", "--members", "1", *CPU)
    assert load_card(tmp_path / "one").members is None


def test_a_damaged_members_entry_is_refused_in_one_line(cube, preset, tmp_path):
    model = tmp_path / "m"
    run_cli("train", cube, "--preset", preset, "--out", model, *CPU)
    card = yaml.safe_load((model / "model.yaml").read_text())
    card["members"] = [{"seed": 1}]
    (model / "model.yaml").write_text(yaml.safe_dump(card))
    with pytest.raises(ImputeError, match="damaged 'members' entry"):
        load_card(model)


def test_resume_keeps_the_models_already_trained_and_trains_the_rest(cube, preset, tmp_path, monkeypatch):
    from impute_cli.training import train as train_mod
    model = tmp_path / "m"
    real, calls = train_mod._train, {"n": 0}

    def third_interrupted(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:  # the third model: the first two are written
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(train_mod, "_train", third_interrupted)
    res = run_cli("train", cube, "--preset", preset, "--out", model, "--members", "3", "--device", "cpu",
                  expect_ok=False)
    assert res.exit_code == 130 and "--resume" in res.stderr.splitlines()[-1]
    kept = load_card(model).members
    assert [m["seed"] for m in kept] == [1], "the second model is recorded as soon as it is trained"
    first = {p.name: p.read_bytes() for p in (model / "weights.pt", model / "member-1.pt")}
    monkeypatch.setattr(train_mod, "_train", real)

    res = run_cli("train", cube, "--preset", preset, "--out", model, "--members", "3", "--resume", "--device", "cpu")
    assert "holds a finished model" in res.stderr and "2 of the 3 models are kept" in res.stderr
    assert "training model 2" not in res.stderr and "training model 3 of 3" in res.stderr
    card = load_card(model)
    assert [m["seed"] for m in card.members] == [1, 2]
    assert {p.name: p.read_bytes() for p in (model / "weights.pt", model / "member-1.pt")} == first, \
        "the models already trained are not trained again"
    before = {p.name: p.read_bytes() for p in model.iterdir() if p.is_file()}

    res = run_cli("train", cube, "--preset", preset, "--out", model, "--members", "3", "--resume", "--device", "cpu")
    assert "holds all 3 models; nothing left to train" in res.stderr
    assert {p.name: p.read_bytes() for p in model.iterdir() if p.is_file()} == before, "a finished folder is left as it is"
    assert not list(model.glob(".member-*"))

    res = run_cli("train", cube, "--preset", preset, "--out", model, "--members", "2", "--resume", "--device", "cpu")
    assert [m["seed"] for m in load_card(model).members] == [1], "fewer --members: the card drops the extra model"
    other = write_cube(tiny_cube_dataset(48, 24, 24, "cloud", 0.6, seed=3, var="chl"), tmp_path / "other.nc")
    res = run_cli("train", other, "--preset", preset, "--out", model, "--resume", *CPU, expect_ok=False)
    assert_one_error_line(res, "trained on other data", "resume on the same file")


def test_a_short_record_says_it_trains_several_models_before_the_first(tmp_path):
    short = write_cube(tiny_cube_dataset(6, 16, 16, "cloud", 0.6, seed=1), tmp_path / "short.nc")
    preset = tiny_preset_yaml(tmp_path / "m.yaml", train={"steps": 3, "checkpoint_every": 3, "batch_size": 2,
                                                          "short_record_members": 2})
    err = run_cli("train", short, "--preset", preset, "--out", tmp_path / "m", "--device", "cpu").stderr
    assert err.index("a short record") < err.index("training model 1 of 2") < err.index("model written to") \
        < err.index("training model 2 of 2") < err.index("the 2 models are written to")
