"""Classical gap-filling baselines: the shared contract (observed cells untouched, gaps filled,
land NaN), accuracy on smooth synthetic fields, and method-specific checks (DINEOF recovers a
low-rank field, kriging beats climatology, OpenCV inpainting keeps float precision)."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest

from impute_cli.evaluation.baselines import BASELINES, ns_inpaint, telea
from impute_cli.evaluation.dineof import eof_dineof
from impute_cli.evaluation.gp import exact_posterior, gap_mask, sample_cube
from impute_cli.evaluation.kriging import BaselineSkipped, _fit_time_scale, gp_kriging, st_kriging

T, H, W = 12, 20, 24
EMPTY_FRAME = 5
NEW = ["climatology", "spline", "telea", "ns_inpaint", "eof_dineof", "gp_kriging", "st_kriging"] + (["cdo_fillmiss"] if shutil.which("cdo") else [])
# cdo_fillmiss runs the cdo program, which a machine may lack
RUNNABLE = [n for n in BASELINES if n != "cdo_fillmiss" or shutil.which("cdo")]


def smooth_field(T: int = T, H: int = H, W: int = W) -> np.ndarray:
    """A smooth pattern moving east over a static north-south gradient, (T, H, W) float64."""
    t, y, x = np.meshgrid(np.arange(T), np.arange(H), np.arange(W), indexing="ij")
    wave = 2.0 * np.sin(2 * np.pi * (x - 0.8 * t) / 14.0) * np.cos(2 * np.pi * y / 18.0)
    blob = 1.5 * np.exp(-((x - 4 - 1.2 * t) ** 2 + (y - 10) ** 2) / 18.0)
    return 15.0 + 0.15 * y + wave + blob


def land_mask(H: int = H, W: int = W) -> np.ndarray:
    """valid (H, W): True at sea, a block of land in the north-west corner."""
    valid = np.ones((H, W), bool)
    valid[:5, :6] = False
    return valid


def cloud_mask(shape: tuple[int, int, int], seed: int = 0, pixel: float = 0.12) -> np.ndarray:
    """Observed (T, H, W): two or three disc-shaped clouds per frame plus random pixels."""
    rng = np.random.default_rng(seed)
    T, H, W = shape
    yy, xx = np.mgrid[:H, :W]
    obs = rng.random(shape) >= pixel
    for t in range(T):
        for _ in range(rng.integers(2, 4)):
            cy, cx, r = rng.uniform(0, H), rng.uniform(0, W), rng.uniform(2, 4)
            obs[t] &= (yy - cy) ** 2 + (xx - cx) ** 2 > r * r
    return obs


@pytest.fixture(scope="module")
def case() -> dict:
    """Smooth field with land, cloud + pixel gaps and one frame with no observation."""
    truth = smooth_field()
    valid = land_mask()
    obs = cloud_mask(truth.shape) & valid[None]
    obs[EMPTY_FRAME] = False
    gappy = np.where(obs, truth, np.nan)
    outs = {name: BASELINES[name](gappy, valid) for name in RUNNABLE}
    return {"truth": truth, "valid": valid, "obs": obs, "gappy": gappy, "outs": outs}


def rmse(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a[where] - b[where]) ** 2)))


def test_registry_names_and_order():
    assert list(BASELINES) == ["climatology", "temporal_linear", "laplace", "spline", "telea", "ns_inpaint",
                               "eof_dineof", "gp_kriging", "st_kriging", "cdo_fillmiss"]


def test_cdo_fillmiss_is_skipped_without_cdo(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(BaselineSkipped, match="cdo program is not on PATH"):
        BASELINES["cdo_fillmiss"](np.full((2, 4, 4), np.nan))


@pytest.mark.parametrize("name", RUNNABLE)
def test_contract(case, name):
    out, valid, obs, gappy = case["outs"][name], case["valid"], case["obs"], case["gappy"]
    assert out.shape == gappy.shape and out.dtype == np.float64
    # observed cells come back bit for bit
    assert np.array_equal(out[obs], gappy[obs])
    # every sea cell is filled, including the frame with no observation at all
    assert np.isfinite(out[:, valid]).all()
    assert np.isfinite(out[EMPTY_FRAME][valid]).all()
    # land is NaN
    assert np.isnan(out[:, ~valid]).all()


@pytest.mark.parametrize("name", RUNNABLE)
def test_beats_global_mean_on_smooth_field(case, name):
    truth, gaps = case["truth"], ~case["obs"] & case["valid"][None]
    global_mean = np.nanmean(case["gappy"])
    assert rmse(case["outs"][name], truth, gaps) < rmse(np.full_like(truth, global_mean), truth, gaps)


@pytest.mark.parametrize("name", RUNNABLE)
def test_valid_none_and_float32_input(name):
    truth = smooth_field(6, 10, 12).astype("float32")
    obs = cloud_mask(truth.shape, seed=3)
    gappy = np.where(obs, truth, np.nan).astype("float32")
    out = BASELINES[name](gappy)
    assert out.dtype == np.float64 and np.isfinite(out).all()
    assert np.array_equal(out[obs], gappy[obs].astype("float64"))


@pytest.mark.parametrize("name", RUNNABLE)
def test_cells_never_observed_are_filled(name):
    truth, valid = smooth_field(), land_mask()
    obs = cloud_mask(truth.shape, seed=1) & valid[None]
    obs[:, 12:15, 10:13] = False  # a 3x3 patch of sea never seen
    out = BASELINES[name](np.where(obs, truth, np.nan), valid)
    assert np.isfinite(out[:, 12:15, 10:13]).all()
    # filled from the surroundings, so it stays within the field's range
    assert np.abs(out[:, 12:15, 10:13] - truth[:, 12:15, 10:13]).max() < truth.max() - truth.min()


@pytest.mark.parametrize("name", NEW)
def test_land_values_are_not_sources(name):
    """Values present on land (outside `valid`) must not leak into the sea fill."""
    truth, valid = smooth_field(), land_mask()
    obs = cloud_mask(truth.shape, seed=2) & valid[None]
    gappy = np.where(obs, truth, np.nan)
    gappy[:, ~valid] = 1.0e6  # garbage on land
    out = BASELINES[name](gappy, valid)
    assert np.isnan(out[:, ~valid]).all()
    assert np.nanmax(out) < truth.max() + 5 and np.nanmin(out) > truth.min() - 5


def test_eof_dineof_recovers_rank2_field():
    rng = np.random.default_rng(0)
    t = np.arange(30)[:, None]
    y, x = np.mgrid[:H, :W]
    u1 = np.sin(2 * np.pi * x / W) * np.cos(np.pi * y / H)
    u2 = np.cos(2 * np.pi * y / H) + 0.3 * x / W
    a1, a2 = np.sin(2 * np.pi * t / 12), 0.5 * np.cos(2 * np.pi * t / 7)
    field = (a1 * u1.ravel() + a2 * u2.ravel()).reshape(30, H, W)  # rank 2
    obs = rng.random(field.shape) >= 0.3
    out = eof_dineof(np.where(obs, field, np.nan))
    assert rmse(out, field, ~obs) < 0.05 * field.std()
    # deterministic for a seed
    assert np.array_equal(out, eof_dineof(np.where(obs, field, np.nan)))


def test_eof_dineof_on_station_series_keeps_its_modes():
    """A space-time GP record of 16 stations with station outages: on a one-row grid the
    cross-validation withholds the record's own gap shapes from other time steps (cloud-shaped
    patches there hid runs of neighbouring stations, and each cell's temporal mean won), so its
    modes fill the gaps."""
    from impute_cli.evaluation.gp import gap_mask, sample_cube
    field = sample_cube(600, 1, 16, phi=0.9, ell=3.0, seed=0)
    obs = gap_mask(field.shape, "series", 0.55, seed=0)
    gappy = np.where(obs, field, np.nan)
    out, clim = eof_dineof(gappy), BASELINES["climatology"](gappy)
    assert rmse(out, field, ~obs) < 0.8 * rmse(clim, field, ~obs)


def test_eof_dineof_single_frame_falls_back():
    truth = smooth_field(1)
    obs = cloud_mask(truth.shape, seed=4)
    out = eof_dineof(np.where(obs, truth, np.nan))
    assert np.isfinite(out).all() and np.array_equal(out[obs], truth[obs])


def test_gp_kriging_beats_climatology_on_pixel_gaps():
    truth, valid = smooth_field(), land_mask()
    obs = (np.random.default_rng(5).random(truth.shape) >= 0.3) & valid[None]
    gappy = np.where(obs, truth, np.nan)
    gaps = ~obs & valid[None]
    gp = rmse(gp_kriging(gappy, valid), truth, gaps)
    clim = rmse(BASELINES["climatology"](gappy, valid), truth, gaps)
    assert gp < 0.5 * clim


def test_gp_kriging_subset_of_points_still_fills():
    truth = smooth_field(3)
    obs = cloud_mask(truth.shape, seed=6)
    gappy = np.where(obs, truth, np.nan)
    out = gp_kriging(gappy, max_points=60)
    assert np.isfinite(out).all() and np.array_equal(out[obs], gappy[obs])
    assert rmse(out, truth, ~obs) < rmse(BASELINES["climatology"](gappy), truth, ~obs)


def test_gp_kriging_refuses_large_grid():
    values = np.zeros((2, 501, 501))
    values[:, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"gp_kriging: grid of 251001 cells is too large \(limit 250000\)"):
        gp_kriging(values)


@pytest.fixture(scope="module")
def gp_pixel() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A draw of the separable AR(1) (phi 0.9) x Matern-3/2 (3 cells) process, 96 x 10 x 10, half
    of its cells hidden one by one: (truth, observed, exact posterior mean)."""
    truth = sample_cube(96, 10, 10, phi=0.9, ell=3.0, seed=3)
    obs = gap_mask(truth.shape, "pixel", 0.5, seed=3)
    return truth, obs, exact_posterior(truth, obs, phi=0.9, ell=3.0).mean


def test_st_kriging_nears_the_exact_posterior_where_space_alone_does_not(gp_pixel):
    """On scattered gaps in a process correlated in time the steps around a gap carry most of
    what is known of it: space-time kriging comes within 1.3x of the exact posterior's MSE,
    kriging in space alone stays above 2x."""
    truth, obs, post = gp_pixel
    gappy, gaps = np.where(obs, truth, np.nan), ~obs
    limit = rmse(post, truth, gaps) ** 2
    st = st_kriging(gappy)
    assert np.array_equal(st[obs], gappy[obs]) and np.isfinite(st).all()
    assert rmse(st, truth, gaps) ** 2 < 1.3 * limit
    assert rmse(gp_kriging(gappy), truth, gaps) ** 2 > 2 * limit


def test_st_kriging_time_scale_fits_the_ar1_process(gp_pixel):
    """The fitted correlation time of the AR(1) process with phi = 0.9 is -1 / ln 0.9 = 9.5 steps."""
    truth, obs, _ = gp_pixel
    anom = np.where(obs, truth - truth[obs].mean(), 0.0)
    tau = _fit_time_scale(anom, obs, s2=float(np.var(truth[obs])))
    assert 6.0 < tau < 14.0
    # white noise in time: no correlation
    noise = np.random.default_rng(0).normal(size=truth.shape)
    assert _fit_time_scale(np.where(obs, noise, 0.0), obs, s2=1.0) < 0.5


def test_st_kriging_is_seeded_and_calls_step_once_a_time_step(gp_pixel):
    truth, obs, _ = gp_pixel
    gappy = np.where(obs, truth, np.nan)
    calls = []
    a = st_kriging(gappy, max_points=300, seed=1, step=lambda: calls.append(1))
    assert len(calls) == truth.shape[0]
    assert np.array_equal(a, st_kriging(gappy, max_points=300, seed=1))


def test_st_kriging_refuses_large_grid():
    values = np.zeros((2, 501, 501))
    values[:, 0, 0] = np.nan
    with pytest.raises(BaselineSkipped, match=r"st_kriging: grid of 251001 cells is too large \(limit 250000\)"):
        st_kriging(values)


@pytest.mark.parametrize("fn", [telea, ns_inpaint])
def test_inpaint_keeps_float_precision(fn):
    # values 300 +- 0.01: raw 8-bit images would clip them at 255
    truth = 300.0 + 0.01 * np.sin(smooth_field(2, 30, 30))
    obs = cloud_mask(truth.shape, seed=7)
    out = fn(np.where(obs, truth, np.nan))
    assert np.abs(out - truth)[~obs].max() < 0.02


@pytest.mark.parametrize("fn", [telea, ns_inpaint])
def test_inpaint_precision_survives_a_wide_frame_range(fn):
    """The same field plus a cold and a warm observed cell far from the gaps: the frame's range
    is now ~300 and 300 sits half-way between two 8-bit levels (steps of ~1.2), so an 8-bit
    image (min/max scaled) cannot fill within 0.02."""
    cv2 = pytest.importorskip("cv2")
    truth = 300.0 + 0.01 * np.sin(smooth_field(1, 30, 30))
    truth[0, 0, 0], truth[0, -1, -1] = 0.0, 300.0 * 255 / 254.5
    obs = np.ones(truth.shape, bool)
    obs[0, 12:18, 14:19] = False
    obs[0, 22, 5] = obs[0, 8, 25] = False
    out = fn(np.where(obs, truth, np.nan))
    assert np.abs(out - truth)[~obs].max() < 0.02
    # sanity: the 8-bit route fails this bound, so the test tells the two apart
    lo, hi = truth.min(), truth.max()
    u8 = np.round((truth[0] - lo) / (hi - lo) * 255).astype(np.uint8)
    flag = cv2.INPAINT_TELEA if fn is telea else cv2.INPAINT_NS
    back = cv2.inpaint(u8, (~obs[0]).astype(np.uint8), 3, flag) / 255 * (hi - lo) + lo
    assert np.abs(back - truth[0])[~obs[0]].max() > 0.02


@pytest.mark.parametrize("shape", [(30, 1, 16), (30, 16, 1)])
@pytest.mark.parametrize("fn", [telea, ns_inpaint])
def test_inpaint_of_a_row_of_stations_is_the_same_run_after_run(fn, shape):
    """A station series is a grid one cell high: OpenCV read past the edge of such a line and its
    fill changed from call to call (and went outside the frame's observed range)."""
    rng = np.random.default_rng(3)
    values = rng.normal(size=shape)
    values[rng.random(shape) < 0.4] = np.nan
    first = fn(values)
    for _ in range(5):
        np.testing.assert_array_equal(fn(values), first)
    for t in range(shape[0]):
        obs = np.isfinite(values[t])
        if obs.any():
            assert values[t][obs].min() - 1e-9 <= first[t].min() and first[t].max() <= values[t][obs].max() + 1e-9


def test_inpaint_without_opencv_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # makes `import cv2` raise ImportError
    with pytest.raises(ImportError, match="opencv-python-headless"):
        telea(np.where(cloud_mask((2, 8, 8)), 1.0, np.nan))


def test_the_laplace_fill_is_solved_to_its_limit():
    from impute_cli.evaluation.fill_steps import harmonic_fill, laplace_fill
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.normal(size=(2, 16, 16)), 2)
    x[:, 3:11, 4:12] = np.nan
    # the limit the Jacobi sweeps approach (many sweeps on a small gap reach it)
    np.testing.assert_allclose(harmonic_fill(x), laplace_fill(x, iters=6000), atol=1e-4)
    # a harmonic function (linear) is reproduced exactly inside the gap
    yy, xx = np.mgrid[:16, :16].astype(float)
    lin = np.where(np.isnan(x[0]), np.nan, 2 * yy - 0.5 * xx + 3)[None]
    np.testing.assert_allclose(harmonic_fill(lin)[0], 2 * yy - 0.5 * xx + 3, atol=1e-4)


def test_the_laplace_fill_does_not_reach_across_land():
    from impute_cli.evaluation.fill_steps import harmonic_fill
    v = np.full((1, 8, 9), np.nan)
    valid = np.ones((8, 9), bool)
    valid[:, 4] = False  # a wall of land down the middle
    v[0, :, 0] = 1.0  # the west basin is observed at 1, the east at 5
    v[0, :, 8] = 5.0
    out = harmonic_fill(v, valid)[0]
    np.testing.assert_allclose(out[:, :4], 1.0, atol=1e-4)
    np.testing.assert_allclose(out[:, 5:], 5.0, atol=1e-4)
    assert np.isnan(out[:, 4]).all()


def test_the_spline_with_tension_runs_from_the_biharmonic_to_the_laplace_fill():
    from impute_cli.evaluation.fill_steps import harmonic_fill, spline_fill
    yy, xx = np.mgrid[:30, :40].astype(float)
    cubic = 0.01 * xx ** 3 - 0.02 * yy ** 2 * xx + yy  # a field whose Laplacian is linear
    v = np.broadcast_to(cubic, (2, 30, 40)).copy()
    v[:, 8:20, 10:25] = np.nan
    gap = np.isnan(v)
    span = cubic.max() - cubic.min()
    err = {t: np.abs(spline_fill(v, tension=t) - cubic)[gap].max() for t in (0.0, 0.5)}
    assert err[0.0] < 1e-4 * span, "without tension (biharmonic) the cubic is reproduced inside the gap"
    laplace = np.abs(harmonic_fill(v) - cubic)[gap].max()
    assert 1e-3 * span < laplace and err[0.5] < laplace, "which a Laplace fill does not; tension 0.5 lies between"
    np.testing.assert_allclose(spline_fill(v, tension=1.0), harmonic_fill(v), atol=1e-6 * span)
    np.testing.assert_array_equal(spline_fill(v, workers=1), spline_fill(v, workers=2))
    with pytest.raises(ValueError, match="tension"):
        spline_fill(v, tension=1.5)
    # land closes the basins, as for the Laplace fill
    w = np.full((1, 8, 9), np.nan)
    valid = np.ones((8, 9), bool)
    valid[:, 4] = False
    w[0, :, 0], w[0, :, 8] = 1.0, 5.0
    out = spline_fill(w, valid)[0]
    np.testing.assert_allclose(out[:, :4], 1.0, atol=1e-4)
    np.testing.assert_allclose(out[:, 5:], 5.0, atol=1e-4)
    assert np.isnan(out[:, 4]).all()
