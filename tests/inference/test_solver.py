"""The multi-step sampler ([CQ] Alg. 4): observed cells carried exactly, members independent of
batching, fixed cells honoured, the weight omega and the time grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from impute_cli.checkpoint import load_model
from impute_cli.masks.context_query import ContextSampler
from impute_cli.inference.fill import member_generator
from impute_cli.inference.solver import omega, sample_window, time_grid


def _window(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    Fr, C, h, w = 3, 1, 16, 16
    x = torch.randn((Fr, C, h, w), generator=g)
    M = torch.rand((Fr, C, h, w), generator=g) < 0.6
    valid = torch.ones((h, w), dtype=torch.bool)
    pool = np.random.default_rng(seed).random((12, h, w)) < 0.6
    sums = (torch.zeros((C, h, w)), torch.zeros((C, h, w)))
    return torch.where(M, x, torch.zeros_like(x)), M, valid, pool, sums


def _draw(den, n, batch_size, *, fixed=None, fixed_values=None, omega_kind="1-t", steps=4, seed=0):
    x_obs, M, valid, pool, sums = _window()
    return sample_window(den, x_obs, M, valid, torch.zeros_like(x_obs), sampler=ContextSampler("pixel", [4]),
                         pool=pool, train_ratio=0.7, steps=steps, delta=1e-3, eta=0.0, omega_kind=omega_kind,
                         generators=[member_generator(seed, 0, m) for m in range(n)], batch_size=batch_size,
                         sums=sums, fixed=fixed, fixed_values=fixed_values), x_obs, M


@pytest.fixture(scope="module")
def den(sst_model):
    _, d = load_model(sst_model.model)
    return d


def test_observed_cells_carried_exactly_and_gaps_vary(den):
    s, x_obs, M = _draw(den, 4, 4)
    assert s.shape == (4, *x_obs.shape)
    assert torch.equal(s[:, M], x_obs[M].expand(4, -1)), "Alg. 4 line 8: observed cells are the observations"
    assert torch.isfinite(s).all()
    assert s[:, ~M].std(0).mean() > 1e-3, "members must differ in the gaps"


def test_members_do_not_depend_on_batching(den):
    a, _, _ = _draw(den, 5, 5)
    b, _, _ = _draw(den, 5, 2)
    assert torch.allclose(a, b, atol=1e-5)
    c, _, _ = _draw(den, 5, 5, seed=1)
    assert not torch.allclose(a, c), "another seed gives other samples"


def test_fixed_cells_are_treated_as_observed(den):
    x_obs, M, *_ = _window()
    fixed = ~M
    fixed[:, :, 8:] = False
    vals = torch.full((3, *x_obs.shape), 7.0)
    s, _, _ = _draw(den, 3, 3, fixed=fixed, fixed_values=vals)
    assert torch.all(s[:, fixed] == 7.0)
    assert not torch.any(s[:, ~M & ~fixed] == 7.0)


def test_time_grid_and_omega():
    ts = time_grid(10, 1e-3)
    assert ts[0] == pytest.approx(1.0) and ts[-1] == pytest.approx(1e-3)
    assert all(a > b for a, b in zip(ts, ts[1:]))
    assert omega(1.0, "1-t") == 0.0 and omega(1e-3, "1-t") == pytest.approx(1 - 1e-3)
    assert omega(0.3, "t") == 0.3


def test_sampling_window_takes_a_short_dim_whole():
    from impute_cli.inference.fill import sampling_window
    assert sampling_window((8, 32, 32), (744, 33, 49)) == (8, 33, 32)
    assert sampling_window((8, 32, 32), (744, 48, 48)) == (8, 48, 48)
    assert sampling_window((8, 32, 32), (744, 64, 20)) == (8, 32, 20)
    assert sampling_window((8, 1, 32), (100, 1, 12)) == (8, 1, 12)
