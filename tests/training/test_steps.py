"""Training steps sized from the record (train.passes, train.max_steps): a larger record gets
more steps, within the preset's bounds, said in the log and kept in the card; the user's --steps
wins; a preset whose bounds contradict each other is refused in one line."""

from __future__ import annotations

import pytest
import yaml

from conftest import run_cli
from impute_cli.config import TrainConfig, steps_for_record
from impute_cli.testing import tiny_cube_dataset, tiny_preset_yaml, write_cube


@pytest.mark.parametrize("observed, want", [
    (0, 100),  # a small record keeps train.steps
    (8 * 4 * 16 * 16 * 100 / 10, 100),  # exactly enough at train.steps
    (8 * 4 * 16 * 16 * 130 / 10, 150),  # 130 steps needed: rounded up to a checkpoint
    (8 * 4 * 16 * 16 * 1e4 / 10, 400),  # capped at train.max_steps
])
def test_steps_grow_with_the_record_in_checkpoints_up_to_the_cap(observed, want):
    tc = TrainConfig(steps=100, batch_size=8, checkpoint_every=50, passes=10, max_steps=400)
    assert steps_for_record(tc, observed, (4, 16, 16)) == want


def test_train_sizes_its_steps_and_the_users_steps_win(tmp_path):
    cube = write_cube(tiny_cube_dataset(24, 16, 16, "cloud", 0.6, seed=1), tmp_path / "c.nc")
    preset = tiny_preset_yaml(tmp_path / "p.yaml", train={"steps": 3, "checkpoint_every": 2, "batch_size": 2,
                                                           "passes": 2, "max_steps": 9})
    res = run_cli("train", cube, "--preset", preset, "--out", tmp_path / "m", "--device", "cpu", "--no-validation")
    card = yaml.safe_load((tmp_path / "m" / "model.yaml").read_text())
    F, h, w = card["window"]
    observed = int(tiny_cube_dataset(24, 16, 16, "cloud", 0.6, seed=1)["sst"].notnull().sum())
    want = steps_for_record(TrainConfig(steps=3, batch_size=2, checkpoint_every=2, passes=2, max_steps=9),
                            observed, (F, h, w))
    assert 3 < want <= 9, "the tiny record needs more than 3 steps at 2 passes"
    assert card["preset"]["train"]["steps"] == card["training"]["steps"] == want
    assert f"training steps: {want} ({observed:,} observed cells" in res.stderr
    res = run_cli("train", cube, "--preset", preset, "--out", tmp_path / "n", "--steps", "4", "--device", "cpu",
                  "--no-validation")
    card = yaml.safe_load((tmp_path / "n" / "model.yaml").read_text())
    assert card["training"]["steps"] == 4 and card["preset"]["train"]["passes"] == 0
    assert "training steps:" not in res.stderr


def test_a_cap_below_the_steps_is_refused(tmp_path):
    bad = tiny_preset_yaml(tmp_path / "bad.yaml", train={"steps": 10, "passes": 5, "max_steps": 4})
    cube = write_cube(tiny_cube_dataset(12, 16, 16), tmp_path / "c.nc")
    res = run_cli("train", cube, "--preset", bad, "--out", tmp_path / "m", expect_ok=False)
    assert res.exit_code != 0 and "train.max_steps must be at least train.steps" in res.stderr
    assert not (tmp_path / "m").exists()
