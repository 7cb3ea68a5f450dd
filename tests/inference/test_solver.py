"""The multi-step sampler ([CQ] Alg. 4): observed cells carried exactly, windows independent of
batching, fixed cells honoured, the weight omega and the time grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from impute_cli.checkpoint import load_model
from impute_cli.masks.context_query import ContextSampler
from impute_cli.inference.sampling import window_generator
from impute_cli.inference.solver import omega, sample_window, sample_windows, time_grid


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
                         generator=window_generator(seed, 0), samples=n, batch_size=batch_size,
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


def test_windows_do_not_depend_on_batching(den):
    wins = [_window(seed) for seed in range(3)]
    x_obs, M, valid = (torch.stack([w[k] for w in wins]) for k in range(3))
    sums = tuple(torch.stack([w[4][k] for w in wins]) for k in range(2))

    def draw(batch_size, seed=0):
        return sample_windows(den, x_obs, M, valid, torch.zeros_like(x_obs), sampler=ContextSampler("pixel", [4]),
                              pool=wins[0][3], train_ratio=0.7, steps=4, delta=1e-3, eta=0.0, omega_kind="1-t",
                              generators=[window_generator(seed, i) for i in range(3)], samples=4,
                              batch_size=batch_size, sums=sums)
    a, b = draw(12), draw(4)  # all three windows in one network call, or one window a call
    assert a.shape == (3, 4, *x_obs.shape[1:])
    assert torch.allclose(a, b, atol=1e-4)
    assert not torch.allclose(a, draw(12, seed=1)), "another seed gives other samples"
    assert not torch.allclose(a[0, 0], a[0, 1]), "members of a window differ"


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


def test_tile_window_takes_a_short_dim_whole():
    from impute_cli.inference.fill import tile_window
    assert tile_window((8, 32, 32), (744, 33, 49)) == (8, 33, 49)
    assert tile_window((8, 32, 32), (744, 48, 64)) == (8, 48, 64)
    assert tile_window((8, 32, 32), (744, 65, 20)) == (8, 32, 20)
    assert tile_window((8, 1, 32), (100, 1, 12)) == (8, 1, 12)
    assert tile_window((8, 32, 32), (4, 20, 70)) == (4, 20, 32)  # clipped to a short record and grid


class GaussianDenoiser:
    """The exact x0 estimate for data whose cells are independent N(0, v): E[x0 | x_t] =
    α v x_t / (α² v + σ²). The probability-flow ODE of such data has a closed form, so a
    solver's error can be measured."""

    def __init__(self, v: float) -> None:
        from impute_cli.config import DiffusionConfig
        from impute_cli.model.denoiser import VPSchedule
        self.v, self.schedule = v, VPSchedule(DiffusionConfig())

    def __call__(self, x, M_ctx, valid, t, clim=None):
        a, s = self.schedule.alpha(t)[:, None, None, None, None], self.schedule.sigma(t)[:, None, None, None, None]
        return a * self.v * x / (a**2 * self.v + s**2)


def _ode_error(solver: str, steps: int, monkeypatch) -> float:
    """RMS error of the final samples against the exact ODE solution, with nothing observed and
    all the weight on the network's estimate (omega = 1)."""
    import impute_cli.inference.solver as solver_mod
    monkeypatch.setattr(solver_mod, "omega", lambda t, kind: 1.0)
    v, n = 4.0, 6
    den = GaussianDenoiser(v)
    x_obs, M, valid, pool, sums = _window()
    M = torch.zeros_like(M)
    s = sample_window(den, torch.zeros_like(x_obs), M, valid, torch.zeros_like(x_obs),
                      sampler=ContextSampler("pixel", [4]), pool=pool, train_ratio=0.7, steps=steps, delta=1e-3,
                      eta=0.0, omega_kind="1-t", generator=window_generator(0, 0), samples=n,
                      batch_size=n, sums=sums, solver=solver)
    x1 = torch.randn((n, *x_obs.shape), generator=window_generator(0, 0))  # the members' starting noise
    a = lambda t: float(den.schedule.alpha(torch.tensor([t])))  # noqa: E731
    sg = lambda t: float(den.schedule.sigma(torch.tensor([t])))  # noqa: E731
    d = 1e-3
    exact = a(d) * v * x1 / np.sqrt((a(d) ** 2 * v + sg(d) ** 2) * (a(1.0) ** 2 * v + sg(1.0) ** 2))
    return float(((s - exact) ** 2).mean().sqrt())


def test_dpm2m_follows_the_ode_closer_than_ddim_at_the_same_steps(monkeypatch):
    for steps in (4, 8):
        ddim, dpm = _ode_error("ddim", steps, monkeypatch), _ode_error("dpm2m", steps, monkeypatch)
        assert dpm < 0.5 * ddim, f"{steps} steps: dpm2m error {dpm:.4f}, ddim {ddim:.4f}"
    assert _ode_error("dpm2m", 16, monkeypatch) < _ode_error("dpm2m", 4, monkeypatch)


def test_dpm2m_carries_observed_cells_and_is_deterministic(den):
    x_obs, M, valid, pool, sums = _window()
    kw = dict(sampler=ContextSampler("pixel", [4]), pool=pool, train_ratio=0.7, steps=4, delta=1e-3, eta=0.0,
              omega_kind="1-t", batch_size=3, sums=sums, solver="dpm2m")
    a = sample_window(den, x_obs, M, valid, torch.zeros_like(x_obs),
                      generator=window_generator(0, 0), samples=3, **kw)
    b = sample_window(den, x_obs, M, valid, torch.zeros_like(x_obs),
                      generator=window_generator(0, 0), samples=3, **kw)
    assert torch.equal(a, b)
    assert torch.equal(a[:, M], x_obs[M].expand(3, -1))
    assert torch.isfinite(a).all()


def test_solver_choices_are_checked(sst_model, tmp_path):
    from conftest import assert_one_error_line, run_cli

    from impute_cli.config import ImputeConfig
    from impute_cli.errors import ImputeError
    with pytest.raises(ImputeError, match="impute.solver"):
        ImputeConfig(solver="euler")
    with pytest.raises(ImputeError, match="deterministic"):
        ImputeConfig(solver="dpm2m", eta=0.5)
    res = run_cli("impute", sst_model.cube, tmp_path / "o.nc", "--model", sst_model.model, "--solver", "dpm2m",
                  expect_ok=False)
    assert res.exit_code == 2
    assert_one_error_line(res, "add --samples N")
    assert not (tmp_path / "o.nc").exists()


def test_a_grid_up_to_twice_the_window_is_imputed_as_one_tile(sst_model, tmp_path, monkeypatch):
    """The point estimate and the samples of a 20 x 28 grid by a model of 16 x 16 windows: every
    tile spans the whole grid (the network takes the larger window as it is) and every gap gets
    a value in the estimate and in each sample."""
    from impute_cli.inference import fill
    from impute_cli.io.dataset import open_cube
    from impute_cli.options import ImputeOptions
    from impute_cli.testing import tiny_cube_dataset, write_cube
    card, den = load_model(sst_model.model)
    assert tuple(card.window[1:]) == (16, 16)
    cube = open_cube(write_cube(tiny_cube_dataset(12, 20, 28, "cloud", 0.6, seed=2, var="sst"), tmp_path / "c.nc"),
                     ["sst"], None)
    cube.load()
    x = np.asarray(cube.memory).copy()
    spans = []
    real = fill.read_tiles

    def spy(cube, tiles, *a, **kw):
        spans.extend((tl.y.stop - tl.y.start, tl.x.stop - tl.x.start) for tl in tiles)
        return real(cube, tiles, *a, **kw)

    monkeypatch.setattr(fill, "read_tiles", spy)
    out = fill.fill_cube(card, den, cube, ImputeOptions(samples=2, steps=2, device="cpu", progress=False))
    assert spans and set(spans) == {(20, 28)}
    gaps = np.isnan(x)
    assert gaps.any() and np.isfinite(out.estimate[gaps]).all()
    assert out.samples is not None and np.isfinite(out.samples[:, gaps]).all()
