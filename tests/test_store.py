"""The model store: impute without --model keeps its model and reuses it for the same data and
settings; `models` lists, shows and removes; --json summaries; logs off a terminal."""

from __future__ import annotations

import json
import os

import pytest

from conftest import open_any, run_cli
from impute_cli.testing import tiny_cube_dataset, write_cube


@pytest.fixture()
def cube(tmp_path):
    return write_cube(tiny_cube_dataset(12, 16, 16, "cloud", 0.6, seed=3, var="sst"), tmp_path / "sst.nc")


def _impute(cube, out, preset, *extra):
    return run_cli("impute", cube, out, "--preset", preset, "--train-steps", 3, "--device", "cpu", "--quiet",
                   "--json", *extra)


def test_impute_keeps_its_model_and_reuses_it(cube, tmp_path, tiny_preset):
    first = _impute(cube, tmp_path / "a.nc", tiny_preset)
    report = json.loads(first.stdout)
    store = os.environ["IMPUTE_CLI_MODELS"]
    assert report["model"].startswith(store) and report["cells_imputed"]["sst"] > 0
    assert "it is kept as" in first.stderr and not (tmp_path / "a.nc").with_suffix(".tmp").exists()
    second = _impute(cube, tmp_path / "b.nc", tiny_preset)
    assert "using the stored model" in second.stderr and json.loads(second.stdout)["model"] == report["model"]
    assert report["model_source"] == "trained" and json.loads(second.stdout)["model_source"] == "store"
    assert json.loads(second.stdout)["seconds"]["training"] < 5
    a, b = open_any(tmp_path / "a.nc"), open_any(tmp_path / "b.nc")
    assert (a["sst_filled"].values == b["sst_filled"].values).all()
    retrained = _impute(cube, tmp_path / "c.nc", tiny_preset, "--retrain")
    assert "training" in retrained.stderr and json.loads(retrained.stdout)["model"] == report["model"]
    other = _impute(cube, tmp_path / "d.nc", tiny_preset, "--seed", 1)  # other settings: another model
    assert json.loads(other.stdout)["model"] != report["model"]


def test_a_model_trained_into_the_store_is_the_one_impute_uses(cube, tmp_path, tiny_preset, monkeypatch):
    monkeypatch.setenv("IMPUTE_CLI_MODELS", str(tmp_path / "store"))
    run_cli("train", cube, "--preset", tiny_preset, "--steps", 3, "--device", "cpu", "--quiet")
    (trained,) = (tmp_path / "store").iterdir()
    res = _impute(cube, tmp_path / "a.nc", tiny_preset)
    report = json.loads(res.stdout)
    assert "using the stored model" in res.stderr and report["model_source"] == "store"
    assert report["model"] == str(trained.resolve()) and report["seconds"]["training"] < 5
    other = _impute(cube, tmp_path / "b.nc", tiny_preset, "--seed", 1)  # other settings: trained, kept beside it
    assert json.loads(other.stdout)["model_source"] == "trained" and f"--model {trained} uses it" in other.stderr


def test_a_model_trained_with_other_options_is_not_taken_for_impute_s(cube, tmp_path, tiny_preset, monkeypatch):
    monkeypatch.setenv("IMPUTE_CLI_MODELS", str(tmp_path / "store"))
    run_cli("train", cube, "--preset", tiny_preset, "--steps", 3, "--context-ratio", 0.5, "--device", "cpu", "--quiet")
    (trained,) = (tmp_path / "store").iterdir()
    res = _impute(cube, tmp_path / "a.nc", tiny_preset)
    assert json.loads(res.stdout)["model_source"] == "trained" and json.loads(res.stdout)["model"] != str(trained)
    assert f"{trained} holds a model trained on other data or with other settings" in res.stderr
    assert sorted(p.name for p in (tmp_path / "store").iterdir())[0] == trained.name  # left as it was


def test_models_lists_shows_and_removes(cube, tmp_path, tiny_preset):
    model = json.loads(_impute(cube, tmp_path / "a.nc", tiny_preset).stdout)["model"]
    name = os.path.basename(model)
    rows = json.loads(run_cli("models", "--json").stdout)
    assert [r["name"] for r in rows] == [name] and rows[0]["variables"] == ["sst"] and rows[0]["steps"] == 3
    assert name in run_cli("models").stdout
    assert "preset:" in run_cli("models", "show", name).stdout
    run_cli("models", "rm", name)
    assert json.loads(run_cli("models", "--json").stdout) == []
    res = run_cli("models", "rm", name, expect_ok=False)
    assert res.exit_code == 1 and "not found" in res.stderr


def test_train_json_summary(cube, tmp_path, tiny_preset):
    res = run_cli("train", cube, "--preset", tiny_preset, "--out", tmp_path / "m", "--steps", 3, "--device", "cpu",
                  "--quiet", "--json")
    s = json.loads(res.stdout)
    assert s["model"] == str(tmp_path / "m") and s["steps"] == 3 and s["variables"] == ["sst"]


def test_version_and_short_help():
    assert run_cli("--version").stdout.strip().startswith("impute-cli ")
    assert "Usage" in run_cli("impute", "-h").stdout
    assert "<bool>" not in run_cli("impute", "-h").stdout.replace("-h      <bool>", "")


def test_old_steps_name_still_works_with_a_warning(cube, tmp_path, sst_model):
    res = run_cli("impute", sst_model.cube, tmp_path / "o.nc", "--model", sst_model.model, "--samples", 2,
                  "--steps", 2, "--no-calibrate", "--device", "cpu", "--quiet")
    assert "--steps is now --sampler-steps" in res.stderr


def test_log_lines_off_a_terminal(monkeypatch, capsys):
    import impute_cli.progress as pr
    monkeypatch.setattr(pr, "QUIET_START", 0.0)
    monkeypatch.setattr(pr, "MIN_GAP", 0.0)
    bar = pr.progress_bar(20, "train", "step")  # pytest's stderr is not a terminal
    for _ in range(20):
        bar.update(1)
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 11 and "\r" not in "".join(lines)  # one line a tenth, and the last
    assert lines[0].startswith("train: 2/20 step (10 %)") and "left" in lines[0]


def test_models_rm_refuses_a_folder_outside_the_store(sst_model):
    res = run_cli("models", "rm", sst_model.model, expect_ok=False)
    assert res.exit_code == 1 and "is not in the model store" in res.stderr
    assert (sst_model.model / "model.yaml").exists()
