"""The calibration's depth weights: hidden cells count as often, per depth in their gap, as the
real gaps' cells (weighted split-conformal prediction under covariate shift)."""

from __future__ import annotations

import numpy as np

from impute_cli.masks.observation import gap_distance, missing_neighbours
from impute_cli.uncertainty.calibration import DEPTH_CAP, depth_weights, weighted_quantile
from impute_cli.uncertainty.regions import conformal_quantile


def test_gap_depth_counts_steps_and_cells_to_the_nearest_observation():
    obs = np.ones((10, 2, 9, 9), bool)
    obs[2:8, 0, 2:6, 2:6] = False  # a 4 x 4 block out for 6 steps in channel 0
    d = gap_distance(obs)
    assert d.dtype == np.uint8 and (d[obs] == 0).all() and (d[:, 1] == 0).all()
    assert d[4, 0, 2, 2] == 1 and d[4, 0, 3, 3] == 2, "edge cells 1, the block's middle 2"
    assert d[2, 0, 3, 3] == 1, "the outage's first step has an observed step before it"
    none = np.zeros((3, 1, 4, 4), bool)
    assert (gap_distance(none, cap=5) == 5).all(), "no observation: the cap"


def test_missing_neighbours_counts_the_26_around_a_cell_in_eighths():
    obs = np.ones((5, 2, 6, 6), bool)
    assert (missing_neighbours(obs) == 0).all()
    obs[2, 0, 3, 3] = False  # one lone gap: its neighbours all observed, it is one of theirs
    c = missing_neighbours(obs)
    assert c.dtype == np.uint8 and c[2, 0, 3, 3] == 0 and c[2, 0, 3, 4] == 0  # 1 of 26: rint(8/26) = 0
    obs[:, 0] = False
    obs[:, 0, :, ::2] = True  # every other column observed
    c = missing_neighbours(obs)
    assert c[2, 0, 3, 3] == 2, "columns 2 and 4 observed: 18 of the 26 seen, 8 missing -> rint(8 * 8 / 26)"
    assert c[2, 0, 3, 2] == 6, "its own column only: 8 seen, 18 missing -> rint(18 * 8 / 26)"
    assert (c[:, 1] == 0).all(), "channels apart"
    assert (missing_neighbours(np.zeros((3, 1, 4, 4), bool)) == 8).all()


def test_equal_depths_give_the_plain_conformal_quantile():
    rng = np.random.default_rng(0)
    scores = rng.exponential(1.0, 500)
    depth = np.ones(500, np.uint8)
    target = np.bincount([1] * 40, minlength=DEPTH_CAP + 1)
    w = depth_weights(depth, target)
    assert np.all(w == 1.0)
    assert weighted_quantile(scores, w, 0.9) == conformal_quantile(scores, 0.9)


def test_deeper_real_gaps_raise_the_factor():
    rng = np.random.default_rng(1)
    shallow, deep = rng.exponential(0.5, 900), rng.exponential(2.0, 300)  # deep cells: larger scores
    scores = np.concatenate([shallow, deep])
    depth = np.concatenate([np.full(900, 1), np.full(300, 2)]).astype(np.uint8)
    alike = np.array([0, 900, 300, 0, 0, 0, 0, 0, 0])  # the real gaps' depths as the hidden cells'
    deeper = np.array([0, 300, 900, 0, 0, 0, 0, 0, 0])
    w_alike, w_deeper = depth_weights(depth, alike), depth_weights(depth, deeper)
    assert np.allclose(w_alike, 1.0)
    assert w_deeper[0] < 1 < w_deeper[-1]
    f_alike, f_deeper = weighted_quantile(scores, w_alike, 0.9), weighted_quantile(scores, w_deeper, 0.9)
    assert f_deeper > f_alike
    # the weighted factor covers about 90 % of a sample drawn with the real gaps' depths
    test = np.concatenate([rng.exponential(0.5, 3000), rng.exponential(2.0, 9000)])
    assert abs(np.mean(test <= f_deeper) - 0.9) < 0.03


def test_depths_with_too_few_hidden_cells_are_pooled_with_the_next_shallower():
    depth = np.concatenate([np.full(500, 1), np.full(20, 3)]).astype(np.uint8)  # depth 3: too few
    target = np.array([0, 100, 0, 100, 0, 0, 0, 0, 0])
    w = depth_weights(depth, target, min_cells=100)
    assert np.allclose(w, 1.0), "depth 3 pooled into the shallower class: one class, equal weights"
