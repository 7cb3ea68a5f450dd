"""Training checkpoints: --resume continues (to a larger --steps), an interrupted run resumed
ends where an uninterrupted one does, and checkpoints are loaded with weights_only."""

from __future__ import annotations


import pytest
import torch
import yaml

from conftest import assert_one_error_line, listing, run_cli
from impute_cli.training import train as train_mod
from impute_cli.checkpoint import load_model, load_state
from impute_cli.errors import ImputeError
from impute_cli.testing import tiny_cube_dataset, tiny_preset_yaml, write_cube
from impute_cli.options import TrainOptions
from impute_cli.training.train import train_model

CPU = ("--device", "cpu", "--quiet")


@pytest.fixture
def cube(tmp_path):
    return write_cube(tiny_cube_dataset(12, 16, 16, "pixel", 0.7, seed=6), tmp_path / "cube.nc")


@pytest.fixture
def preset(tmp_path):
    return tiny_preset_yaml(tmp_path / "ck.yaml", train={"checkpoint_every": 3, "steps": 6, "batch_size": 2})


def weights(model_dir):
    return torch.load(model_dir / "weights.pt", map_location="cpu", weights_only=True)


def test_resume_to_more_steps(cube, preset, tmp_path):
    model = tmp_path / "m"
    run_cli("train", cube, "--preset", preset, "--out", model, *CPU)
    card = yaml.safe_load((model / "model.yaml").read_text())
    assert card["training"]["steps"] == 6
    assert load_state(model / "checkpoint.pt")["step"] == 6
    first = weights(model)
    res = run_cli("train", cube, "--preset", preset, "--out", model, "--resume", "--steps", 10, *CPU)
    assert "resuming from step 6 of 10" in res.stderr
    card = yaml.safe_load((model / "model.yaml").read_text())
    assert card["training"]["steps"] == 10
    assert card["preset"]["train"]["steps"] == 10
    state = load_state(model / "checkpoint.pt")
    assert state["step"] == 10 and state["preset"]["train"]["steps"] == 10
    assert any(not torch.equal(first[k], v) for k, v in weights(model).items()), "4 more steps changed nothing"
    assert sorted(listing(model)) == ["checkpoint.pt", "model.yaml", "weights.pt"], "no temporary file left"


def test_interrupted_then_resumed_equals_uninterrupted(cube, preset, tmp_path, monkeypatch):
    torch.manual_seed(1234)
    run_cli("train", cube, "--preset", preset, "--out", tmp_path / "full", "--steps", 8, *CPU)

    real = train_mod.sample_batch
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 6:  # during step 5; the last checkpoint is after step 3 (3 steps done)
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(train_mod, "sample_batch", flaky)
    torch.manual_seed(1234)
    part = tmp_path / "part"
    res = run_cli("train", cube, "--preset", preset, "--out", part, "--steps", 8, *CPU, expect_ok=False)
    assert res.exit_code == 130 and "interrupted" in res.stderr
    assert listing(part) == ["checkpoint.pt"] and load_state(part / "checkpoint.pt")["step"] == 3
    monkeypatch.setattr(train_mod, "sample_batch", real)

    # an unfinished model is refused with a hint to resume it
    res = run_cli("impute", cube, tmp_path / "o.nc", "--model", part, *CPU, expect_ok=False)
    assert_one_error_line(res, "has not finished training", "--resume")
    assert not (tmp_path / "o.nc").exists()

    res = run_cli("train", cube, "--preset", preset, "--out", part, "--resume", *CPU)
    assert "resuming from step 3 of 8" in res.stderr
    a, b = weights(tmp_path / "full"), weights(part)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs between the resumed and the uninterrupted run"
    ca = yaml.safe_load((tmp_path / "full" / "model.yaml").read_text())
    cb = yaml.safe_load((part / "model.yaml").read_text())
    assert ca["training"]["final_loss"] == pytest.approx(cb["training"]["final_loss"], rel=1e-6)


def test_truncated_checkpoint_is_an_error(cube, preset, tmp_path):
    model = tmp_path / "m"
    run_cli("train", cube, "--preset", preset, "--out", model, *CPU)
    data = (model / "checkpoint.pt").read_bytes()
    (model / "checkpoint.pt").write_bytes(data[: len(data) // 3])
    with pytest.raises(ImputeError, match="truncated"):
        load_state(model / "checkpoint.pt")
    res = run_cli("train", cube, "--preset", preset, "--out", model, "--resume", "--steps", 9, *CPU,
                  expect_ok=False)
    assert_one_error_line(res, "checkpoint.pt", "not a readable")
    w = (model / "weights.pt").read_bytes()
    (model / "weights.pt").write_bytes(w[: len(w) // 2])
    with pytest.raises(ImputeError, match="not a readable"):
        load_model(model)


PWNED: list[str] = []


def _side_effect(x: str) -> str:
    PWNED.append(x)
    return x


class Evil:
    def __reduce__(self):
        return (_side_effect, ("code ran",))


def test_checkpoint_loading_runs_no_pickled_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"net": {}, "payload": Evil()}, path)
    with pytest.raises(ImputeError, match="not a readable"):
        load_state(path)
    assert PWNED == [], "weights_only=False: pickled code ran while loading"
    # and the same file does run code without weights_only (the test can fail)
    torch.load(path, weights_only=False)
    assert PWNED == ["code ran"]
    PWNED.clear()


def test_model_card_of_another_format_is_refused(cube, preset, tmp_path):
    model = tmp_path / "m"
    run_cli("train", cube, "--preset", preset, "--out", model, *CPU)
    card = yaml.safe_load((model / "model.yaml").read_text())
    card["format"] = "impute-cli-model/0"
    (model / "model.yaml").write_text(yaml.safe_dump(card))
    with pytest.raises(ImputeError, match="format"):
        load_model(model)


def test_mask_pattern_override_is_recorded(cube, preset, tmp_path):
    model = tmp_path / "m"
    run_cli("train", cube, "--preset", preset, "--out", model, "--mask-pattern", "block", "--query", "rest",
            "--block-size", 2, "--block-size", 3, "--context-ratio", 0.5, "--steps", 2, *CPU)
    card = yaml.safe_load((model / "model.yaml").read_text())
    ms = card["mask_strategy"]
    assert ms["requested"] == "block" and ms["pattern"] == "block" and ms["query"] == "rest"
    assert ms["context_ratio"] == 0.5 and card["preset"]["mask"]["block_sizes"] == [2, 3]
    assert card["training"]["steps"] == 2


def test_resume_on_a_file_with_other_variables_is_an_error(cube, preset, tmp_path):
    model = tmp_path / "m"
    train_model(cube, TrainOptions(preset=str(preset), out=model, device="cpu", progress=False, log=lambda s: None))
    other = write_cube(tiny_cube_dataset(12, 16, 16, "pixel", 0.7, nvars=2, var=["a", "b"]), tmp_path / "two.nc")
    with pytest.raises(ImputeError):
        train_model(other, TrainOptions(preset=str(preset), out=model, resume=True, steps=9, device="cpu",
                                        progress=False, log=lambda s: None))


def test_resumed_card_keeps_the_auto_choice(cube, preset, tmp_path):
    model = tmp_path / "m"
    run_cli("train", cube, "--preset", preset, "--out", model, *CPU)
    before = yaml.safe_load((model / "model.yaml").read_text())["mask_strategy"]
    assert before["requested"] == "auto" and before["pattern"] == "pixel"
    run_cli("train", cube, "--preset", preset, "--out", model, "--resume", "--steps", 8, *CPU)
    after = yaml.safe_load((model / "model.yaml").read_text())["mask_strategy"]
    assert after["requested"] == "auto" and after["reason"] == before["reason"]


def test_same_seed_same_model_in_one_process(cube, preset, tmp_path):
    for name in ("a", "b"):
        torch.rand(1)  # any other use of torch's global RNG in between
        train_model(cube, TrainOptions(preset=str(preset), out=tmp_path / name, seed=7, steps=2, device="cpu",
                                       progress=False, log=lambda s: None))
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_interrupted_before_the_first_checkpoint_leaves_no_folder(cube, preset, tmp_path, monkeypatch):
    real = train_mod.sample_batch
    calls = {"n": 0}

    def early(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:  # during step 2; the first checkpoint comes after step 3
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(train_mod, "sample_batch", early)
    model = tmp_path / "new" / "m"
    res = run_cli("train", cube, "--preset", preset, "--out", model, *CPU, expect_ok=False)
    assert res.exit_code == 130
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("impute-cli: error: interrupted before the first checkpoint") and "without --resume" in last
    assert not model.exists(), "the empty folder this run made is removed"
    calls["n"] = 0
    mine = tmp_path / "mine"
    mine.mkdir()  # an empty folder the user made for the model stays
    res = run_cli("train", cube, "--preset", preset, "--out", mine, *CPU, expect_ok=False)
    assert res.exit_code == 130 and mine.is_dir()


def test_resume_of_a_finished_model_changes_nothing(cube, preset, tmp_path):
    model = tmp_path / "m"
    run_cli("train", cube, "--preset", preset, "--out", model, *CPU)
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    res = run_cli("train", cube, "--preset", preset, "--out", model, "--resume", "--device", "cpu")
    assert "holds a finished model (6 steps); nothing to resume" in res.stderr
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before


def test_model_files_follow_the_umask(cube, preset, tmp_path):
    """A model folder is readable by whoever the umask lets read (a group sharing a model store),
    not only by its owner as a temporary file would be."""
    import os
    old = os.umask(0o022)
    try:
        run_cli("train", cube, "--preset", preset, "--out", tmp_path / "m", *CPU)
    finally:
        os.umask(old)
    for f in (tmp_path / "m").iterdir():
        assert f.stat().st_mode & 0o777 == 0o644, f"{f.name}: {oct(f.stat().st_mode & 0o777)}"
