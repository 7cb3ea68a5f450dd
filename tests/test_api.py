"""The Python API and the xarray accessor: the same results as the CLI, on paths and on
in-memory Datasets; Model exposes its card."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import impute_cli
from conftest import check_filled_output, open_any, run_cli
from impute_cli.checkpoint import IN_MEMORY_DATA
from impute_cli.errors import ImputeError

CPU = {"device": "cpu"}


def test_load_model_exposes_the_card(sst_model):
    m = impute_cli.load_model(sst_model.model)
    assert m.variables == ["sst"] and m.grid["shape"] == [12, 16, 16]
    assert m.preset == "tiny" and m.training["steps"] == 20
    assert m.summary()["model"] == str(m.path)


def test_impute_a_dataset_in_memory_matches_the_cli(sst_model, tmp_path):
    ds = open_any(sst_model.cube)
    filled = impute_cli.impute(ds, model=sst_model.model, **CPU)
    check_filled_output(ds, filled, ["sst"])
    run_cli("impute", sst_model.cube, tmp_path / "o.nc", "--model", sst_model.model, "--device", "cpu", "--quiet")
    cli = open_any(tmp_path / "o.nc")
    np.testing.assert_array_equal(filled["sst_filled"].values, cli["sst_filled"].values)
    assert filled["sst_filled"].chunks is None  # an in-memory input gives an in-memory output


def test_accessor_and_a_path_give_lazy_output_with_samples(sst_model, tmp_path):
    ds = open_any(sst_model.cube)
    point = ds.impute.fill(model=sst_model.model, **CPU)
    run_cli("impute", sst_model.cube, tmp_path / "cli.nc", "--model", sst_model.model, "--device", "cpu", "--quiet")
    np.testing.assert_array_equal(point["sst_filled"].values, open_any(tmp_path / "cli.nc")["sst_filled"].values)
    a = ds.impute.fill(model=impute_cli.load_model(sst_model.model), samples=2, steps=2, calibrate=False, **CPU)
    assert {"sst_std", "sst_lower", "sst_upper"} <= set(a.data_vars)
    b = impute_cli.impute(sst_model.cube, sst_model.model, out=tmp_path / "kept.nc", **CPU)
    assert b["sst_filled"].chunks is not None and (tmp_path / "kept.nc").exists()


def test_train_on_a_dataset_needs_out_and_returns_a_model(sst_model, tmp_path):
    ds = open_any(sst_model.cube)
    with pytest.raises(ImputeError, match="give out=FOLDER"):
        impute_cli.train(ds, preset=str(sst_model.preset), steps=2)
    m = impute_cli.train(ds, preset=str(sst_model.preset), steps=2, out=tmp_path / "m", validation=False, members=2,
                         **CPU)
    assert isinstance(m, impute_cli.Model) and m.training["steps"] == 2 and len(m.card.members) == 1
    # the card says it was an in-memory Dataset, not the temporary file it went through
    assert m.training["data"] == IN_MEMORY_DATA
    assert m.card.members[0]["training"]["data"] == IN_MEMORY_DATA, "its further model too"
    with pytest.raises(ImputeError, match=r"training data \(an in-memory xarray.Dataset .*data="):
        impute_cli.distill(m, steps=1, **CPU)
    notes = []
    impute_cli.evaluate(ds, model=m, baselines=["laplace"], log=notes.append, **CPU)
    assert any("trained on an in-memory Dataset" in n and "optimistic" in n for n in notes)


def test_a_store_model_trained_on_a_dataset_says_so(sst_model, tmp_path, monkeypatch):
    monkeypatch.setenv("IMPUTE_CLI_MODELS", str(tmp_path / "store"))
    impute_cli.impute(open_any(sst_model.cube), preset=str(sst_model.preset), train_steps=2, **CPU)
    (card,) = (tmp_path / "store").glob("*/model.yaml")
    assert impute_cli.load_model(card.parent).training["data"] == IN_MEMORY_DATA


def test_evaluate_returns_the_json_report(sst_model):
    rep = impute_cli.evaluate(sst_model.cube, model=sst_model.model, baselines=["laplace"], **CPU)
    methods = rep["variables"]["sst"]["methods"]
    assert set(methods) == {"impute-cli", "laplace"} and methods["impute-cli"]["rmse"] > 0


def test_bad_data_is_refused():
    with pytest.raises(ImputeError, match="path .* or an xarray.Dataset"):
        impute_cli.impute(42)


def test_dir_lists_the_api():
    assert {"train", "impute", "evaluate", "load_model", "Model"} <= set(dir(impute_cli))
    assert isinstance(xr.Dataset().impute, impute_cli.ImputeAccessor)
