"""The window in time sized from the data's gaps: how long the missing runs are, the frames that
span them, and a training run that takes those frames into its card and imputes with them."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
import yaml

from conftest import check_filled_output, run_cli
from impute_cli.io.tiling import frames_for_gaps
from impute_cli.masks.observation import gap_run_length
from impute_cli.testing import tiny_cube_dataset, tiny_preset_yaml, write_cube


def test_run_length_counts_every_cell_of_a_run():
    pool = np.ones((12, 2, 2), bool)
    pool[2:5, 0, 0] = False  # a 3-step outage: 3 missing cells in a run of 3
    pool[7, 1, 1] = False  # a 1-step hole
    assert gap_run_length(pool) == 3.0, "the median over missing cells, each counted with its run's length"
    pool[0:10, 1, 0] = False  # a 10-step outage: now 10 of the 14 missing cells lie in runs of 10
    assert gap_run_length(pool) == 10.0
    assert gap_run_length(np.ones((5, 3, 3), bool)) == 0.0


def test_run_length_ignores_cells_that_are_never_filled():
    pool = np.ones((10, 2, 2), bool)
    pool[:, 0, 0] = False  # land: never observed, never filled
    pool[4, 1, 1] = False
    valid = np.ones((2, 2), bool)
    valid[0, 0] = False
    assert gap_run_length(pool, valid) == 1.0


@pytest.mark.parametrize("frames, max_frames, run, want", [
    (8, 0, 20, 8),  # off
    (8, 8, 20, 8),  # off
    (8, 32, 0, 8),  # no gaps
    (8, 32, 6, 8),  # a 6-step run and an observed step each side fit in 8
    (8, 32, 7, 16),
    (8, 32, 20, 24),
    (8, 16, 20, 16),  # capped
    (3, 12, 4.5, 9),
])
def test_frames_span_the_run_and_a_step_each_side(frames, max_frames, run, want):
    assert frames_for_gaps(frames, max_frames, run) == want


def test_training_sizes_its_window_from_the_gaps_and_impute_uses_it(tmp_path):
    ds = tiny_cube_dataset(40, 16, 16, "cloud", 0.8, seed=2)
    v = ds["sst"].values
    v[10:17, 2:10, 2:10] = np.nan  # a 7-step outage over a quarter of the grid
    v[25:32, 6:14, 6:14] = np.nan
    cube = write_cube(ds, tmp_path / "cube.nc")
    preset = tiny_preset_yaml(tmp_path / "w.yaml", window={"max_frames": 12}, train={"steps": 4})
    res = run_cli("train", cube, "--preset", preset, "--out", tmp_path / "m", "--device", "cpu", "--no-validation")
    card = yaml.safe_load((tmp_path / "m" / "model.yaml").read_text())
    run = gap_run_length(np.isfinite(v))
    assert card["window"][0] == frames_for_gaps(3, 12, run) > 3
    assert f"window: {card['window'][0]} frames" in res.stderr
    run_cli("impute", cube, tmp_path / "o.nc", "--model", tmp_path / "m", "--device", "cpu", "--quiet")
    with xr.open_dataset(tmp_path / "o.nc") as out:
        check_filled_output(ds, out, ["sst"])


def test_max_frames_below_frames_is_refused(tmp_path):
    bad = tiny_preset_yaml(tmp_path / "bad.yaml", window={"max_frames": 2})
    cube = write_cube(tiny_cube_dataset(12, 16, 16), tmp_path / "c.nc")
    res = run_cli("train", cube, "--preset", bad, "--out", tmp_path / "m", expect_ok=False)
    assert res.exit_code != 0 and "window.max_frames must be 0 (off) or at least window.frames" in res.stderr
    assert not (tmp_path / "m").exists()
