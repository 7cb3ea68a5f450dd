"""kriging: Gaussian-process regression (simple kriging of anomalies) in space, frame by frame,
with a Matérn-3/2 covariance fitted to the data's own empirical covariance."""

from __future__ import annotations

from typing import Callable, Iterator, NamedTuple

import numpy as np

from impute_cli.evaluation.fill_steps import climatology_map, fill_rest, outside_valid, prepare
from impute_cli.evaluation.gp import matern32_correlation


class BaselineSkipped(ValueError):
    """A baseline that cannot run on this cube (too large); evaluate reports it as skipped."""


GP_MAX_CELLS = 250_000  # each time step conditions on at most max_points cells; this bounds the rest


def _empirical_cov(anom: np.ndarray, obs: np.ndarray, max_lag: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Isotropic empirical covariance of anomalies pooled over frames, by masked FFT
    autocorrelation: sum_t sum_x f(x) f(x+d) / sum_t sum_x m(x) m(x+d) for every offset d
    (zero-padded, so not circular), binned by round(|d|) into lags 0..max_lag.
    Returns (mean distance per bin, covariance per bin, pair count per bin)."""
    from scipy import fft as sfft

    T, H, W = anom.shape
    shape = (sfft.next_fast_len(2 * H - 1), sfft.next_fast_len(2 * W - 1, real=True))
    num = np.zeros((shape[0], shape[1] // 2 + 1))
    den = np.zeros_like(num)
    for t0 in range(0, T, 16):  # chunks of frames bound the memory
        f = np.where(obs[t0:t0 + 16], anom[t0:t0 + 16], 0.0)
        m = obs[t0:t0 + 16].astype("float64")
        num += (np.abs(sfft.rfft2(f, s=shape)) ** 2).sum(0)
        den += (np.abs(sfft.rfft2(m, s=shape)) ** 2).sum(0)
    num, den = sfft.irfft2(num, s=shape), np.rint(sfft.irfft2(den, s=shape))
    # offset of each FFT bin (wrapped indices are negative offsets)
    dy = np.where(np.arange(shape[0]) <= shape[0] // 2, np.arange(shape[0]), np.arange(shape[0]) - shape[0])
    dx = np.where(np.arange(shape[1]) <= shape[1] // 2, np.arange(shape[1]), np.arange(shape[1]) - shape[1])
    r = np.hypot(dy[:, None], dx[None, :])
    lag = np.rint(r).astype(int)
    keep = (lag <= max_lag) & (den > 0)
    npairs = np.bincount(lag[keep], den[keep], max_lag + 1)
    csum = np.bincount(lag[keep], num[keep], max_lag + 1)
    rsum = np.bincount(lag[keep], (r * den)[keep], max_lag + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return rsum / npairs, csum / npairs, npairs


def _fit_matern(anom: np.ndarray, obs: np.ndarray, n_lengths: int = 30) -> tuple[float, float, float]:
    """(s2, length, nugget) of a Matern-3/2 + nugget covariance matched to the empirical
    covariance at lags 1..L by weighted least squares: a grid of
    `n_lengths` length scales in [0.5, max(H, W)/2], s2 solved in closed form for each, the
    nugget = lag-0 variance - s2 (floored for a stable Cholesky). Weights are pair count / r^2:
    pair counts grow ~ r, so plain counts let the far lags dominate and push the short-range
    misfit into a large nugget; interpolating gaps depends mostly on the short lags."""
    H, W = anom.shape[1:]
    max_lag = max(2, min(30, max(H, W) // 2))
    r, cov, npairs = _empirical_cov(anom, obs, max_lag)
    c0 = float(cov[0]) if npairs[0] > 0 else 0.0
    if not c0 > 0:  # no variability in the anomalies (e.g. T == 1): nothing to krige
        return 0.0, 1.0, 1.0
    use = (np.arange(max_lag + 1) > 0) & (npairs > 0)
    best = (np.inf, 0.0, 1.0)
    for length in np.geomspace(0.5, max(H, W) / 2, n_lengths):
        rho, w, c = matern32_correlation(r[use], length), npairs[use] / r[use] ** 2, cov[use]
        s2 = float(np.clip((w * rho * c).sum() / max((w * rho * rho).sum(), 1e-300), 0.0, c0))
        sse = float((w * (c - s2 * rho) ** 2).sum())
        if sse < best[0]:
            best = (sse, s2, float(length))
    _, s2, length = best
    nugget = max(c0 - s2, 1e-4 * c0)
    return s2, length, nugget


def _pick_points(ob: np.ndarray, gap: np.ndarray, max_points: int, rng: np.random.Generator) -> np.ndarray:
    """Flat indices of the observed cells to condition on. All of them when there are at most
    `max_points`; otherwise the cells closest to the gaps first -- distance <= 1, then <= 2
    (they carry most of the information), each tier in random order -- and then a seeded random
    subset of the farther ones, up to `max_points` in all."""
    from scipy.ndimage import distance_transform_edt

    idx = np.flatnonzero(ob)
    if idx.size <= max_points:
        return idx
    d = distance_transform_edt(~gap).ravel()[idx]  # distance to the nearest gap cell
    tier = np.where(d <= 1.0, 0, np.where(d <= 2.0, 1, 2))
    order = np.lexsort((rng.random(idx.size), tier))
    return idx[order[:max_points]]


def _counted(n: int, step: Callable[[], None] | None) -> Iterator[int]:
    """0, 1, ..., n - 1, calling `step` after the loop's body has run for each."""
    for t in range(n):
        yield t
        if step is not None:
            step()


def _smooth_map(m: np.ndarray, valid: np.ndarray, r: int = 2) -> np.ndarray:
    """Mean of the finite values of m (H, W) inside `valid` over a (2r+1)^2 square per cell."""
    from scipy.ndimage import uniform_filter
    ok = np.isfinite(m) & valid
    num = uniform_filter(np.where(ok, m, 0.0), 2 * r + 1, mode="reflect")
    den = uniform_filter(ok.astype("float64"), 2 * r + 1, mode="reflect")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), m)


def _anomalies(values: np.ndarray, valid: np.ndarray | None, name: str = "") -> tuple[np.ndarray, ...]:
    """What both krigings start from: (v, mask, obs) as `prepare` gives them, the climatology map
    smoothed over 5 x 5 cells (a per-cell mean from a few observations carries noise that kriging
    would add back at every gap) and the anomalies from it (0 where not observed). With `name`,
    a grid of more than GP_MAX_CELLS cells a step raises BaselineSkipped first."""
    H, W = np.shape(values)[1:]
    if name and H * W > GP_MAX_CELLS:
        raise BaselineSkipped(f"{name}: grid of {H * W} cells is too large (limit {GP_MAX_CELLS})")
    v, mask, obs = prepare(values, valid)
    clim = _smooth_map(climatology_map(v, mask, obs), mask)
    return v, mask, obs, clim, np.where(obs, v - clim[None], 0.0)


def gp_kriging(values: np.ndarray, valid: np.ndarray | None = None, *, max_points: int = 2000,
               seed: int = 0, step: Callable[[], None] | None = None) -> np.ndarray:
    """Gaussian-process regression (simple kriging) of anomalies in space, frame by frame.
    Anomalies are values minus the per-cell climatology (as `climatology`) smoothed over 5 x 5
    cells (a per-cell mean of a few observations is noisy, and kriging adds the mean back). ONE isotropic
    Matern-3/2 covariance, k(r) = s2 (1 + sqrt3 r/l) exp(-sqrt3 r/l), plus a nugget, is fitted
    to the whole cube's empirical covariance of anomalies at integer lags (masked FFT
    autocorrelation, least squares over a grid of l). Each frame's gaps then get the kriged
    anomaly from that frame's observed cells (at most `max_points`, chosen by `_pick_points`,
    seeded by `seed`), solved by Cholesky with the nugget on the diagonal, plus the
    climatology (the sum over the conditioning cells by one FFT convolution of the frame).
    Distances are Euclidean in grid-index units (y, x): longitude wrap-around and the
    convergence of meridians are ignored. Frames with no observation: climatology. Cells
    never observed anywhere: climatology part by Laplace fill.
    Raises BaselineSkipped (a ValueError) "gp_kriging: grid of N cells is too large (limit 250000)" when
    H * W > 250000, so that callers can skip this baseline and report it. `step`, when given,
    is called after each time step (a progress bar)."""
    from scipy.linalg import cho_factor, cho_solve
    from scipy.signal import fftconvolve

    T, H, W = np.shape(values)
    # 1. climatology (filled, for the prediction) and the anomalies from it
    v, mask, obs, clim, anom = _anomalies(values, valid, "gp_kriging")
    # 2. one covariance for the whole cube
    s2, length, nugget = _fit_matern(anom, obs)
    # the covariance at every grid offset (|dy|, |dx|), computed once: cells lie on the grid,
    # so every entry of K and k below is one of these (the same float64 values as from the
    # cells' distances); `kernel` is the table at signed offsets, offset 0 at its centre
    dy, dx = np.arange(H, dtype="float64")[:, None], np.arange(W, dtype="float64")[None, :]
    table = s2 * matern32_correlation(np.sqrt(dy * dy + dx * dx), length)
    kernel = np.concatenate([table[::-1], table[1:]], 0)
    kernel = np.concatenate([kernel[:, ::-1], kernel[:, 1:]], 1)  # (2H - 1, 2W - 1)
    row, col = np.divmod(np.arange(H * W, dtype=np.int32), np.int32(W))
    rng = np.random.default_rng(seed)
    out = v.copy()
    for t in _counted(T, step):
        ob, gap = obs[t], mask & ~obs[t]
        if not gap.any():
            continue
        frame = out[t].reshape(-1)  # a view: writes go to `out`
        tgt = np.flatnonzero(gap)
        if not ob.any() or s2 <= 0:  # nothing to condition on / no spatial correlation
            frame[tgt] = clim.reshape(-1)[tgt]
            continue
        # 3. condition on the chosen observed cells: alpha = (K + nugget I)^-1 a
        pts = _pick_points(ob, gap, max_points, rng)
        K = table[np.abs(row[pts][:, None] - row[pts][None, :]), np.abs(col[pts][:, None] - col[pts][None, :])]
        K[np.diag_indices_from(K)] += nugget
        alpha = cho_solve(cho_factor(K, lower=True, check_finite=False), anom[t].reshape(-1)[pts],
                          check_finite=False)
        # 4. predict the gaps: clim + k(gap, pts) @ alpha, which is alpha placed on the grid
        # convolved with the covariance at every offset (one FFT convolution for the frame)
        a = np.zeros(H * W)
        a[pts] = alpha
        pred = fftconvolve(a.reshape(H, W), kernel, mode="same").reshape(-1)
        frame[tgt] = clim.reshape(-1)[tgt] + pred[tgt]
    out = fill_rest(out, mask, clim)
    return outside_valid(out, mask)


def _fit_time_scale(anom: np.ndarray, obs: np.ndarray, s2: float, max_lag: int = 12) -> float:
    """Correlation time tau (in time steps) of an exponential correlation exp(-|dt| / tau) (the
    AR(1) process's), matched to the empirical covariance of each cell with itself dt steps later
    (dt = 1..max_lag, pairs of observed values pooled over cells) by weighted least squares with
    the spatial fit's variance s2 fixed (a separable covariance): a grid of tau in [0.2, T],
    weights pair count / dt^2 (the short lags matter most, as in `_fit_matern`). 0 when the
    anomalies carry no correlation from one step to the next."""
    T = anom.shape[0]
    lags = np.arange(1, min(max_lag, T - 1) + 1)
    if lags.size == 0 or s2 <= 0:
        return 0.0
    f = np.where(obs, anom, 0.0)
    m = obs.astype("float64")
    cov = np.array([(f[k:] * f[:-k]).sum() for k in lags])
    npairs = np.array([(m[k:] * m[:-k]).sum() for k in lags])
    use = npairs > 0
    if not use.any():
        return 0.0
    k, c, w = lags[use].astype("float64"), cov[use] / npairs[use], npairs[use] / lags[use] ** 2
    best = (float((w * c * c).sum()), 0.0)  # tau = 0: no correlation in time
    for tau in np.geomspace(0.2, max(T, 1.0), 60):
        sse = float((w * (c - s2 * np.exp(-k / tau)) ** 2).sum())
        if sse < best[0]:
            best = (sse, float(tau))
    return best[1]


FIT_STEPS = 512  # st_kriging fits its covariance on at most this many time steps (the middle ones)


class STCovariance(NamedTuple):
    """`st_kriging`'s separable covariance: variance, length scale (cells), nugget, time scale (steps)."""
    s2: float
    length: float
    nugget: float
    tau: float


def st_covariance(values: np.ndarray, valid: np.ndarray | None = None) -> STCovariance:
    """The covariance `st_kriging` fits to a (T, H, W) cube (its middle FIT_STEPS time steps at
    most): anomalies from the smoothed climatology, as `gp_kriging`'s, the covariance in space as
    `gp_kriging` fits it, then its time scale. A piece of a record (a few dozen steps) gives a
    time scale biased short (its own mean takes out the slow part of the anomalies): callers
    that krige pieces pass the whole record's covariance (`st_kriging(cov=)`)."""
    T = np.shape(values)[0]
    t0 = max(0, (T - FIT_STEPS) // 2)
    _, _, obs, _, anom = _anomalies(values[t0:t0 + FIT_STEPS], valid)
    s2, length, nugget = _fit_matern(anom, obs)
    return STCovariance(s2, length, nugget, _fit_time_scale(anom, obs, s2))


def st_kriging(values: np.ndarray, valid: np.ndarray | None = None, *, max_points: int = 3000,
               block: int = 8, reach: int = 4, seed: int = 0, cov: STCovariance | None = None,
               step: Callable[[], None] | None = None) -> np.ndarray:
    """Space-time kriging: `gp_kriging`'s simple kriging of anomalies, conditioned on the observed
    cells of the neighbouring time steps as well as the step's own. The covariance is separable,
    k(dt, r) = s2 exp(-|dt| / tau) (1 + sqrt3 r/l) exp(-sqrt3 r/l), plus a nugget: s2, l and the
    nugget as `gp_kriging` fits them on each step's pairs, tau fitted to each cell's covariance with
    itself dt = 1..12 steps later (`_fit_time_scale`); `cov` gives them instead (`st_covariance` of
    the whole record, for a piece of it). Time steps are taken `block` at a time;
    each block's gaps are kriged from the observed cells of the block and of `reach` steps on
    either side (at most `max_points`: the cells nearest the gaps in space and time first, then a
    seeded random subset, as `_pick_points`), solved by Cholesky, predicted by one FFT convolution
    of the slab with the covariance at every (dt, dy, dx) offset. Distances are in grid-index
    units; one time step is one unit of the time axis as sampled. Cells never observed anywhere:
    climatology by Laplace fill. Raises BaselineSkipped above GP_MAX_CELLS cells a step, as
    `gp_kriging`. `step`, when given, is called after each time step (a progress bar)."""
    from scipy.linalg import cho_factor, cho_solve
    from scipy.ndimage import distance_transform_edt
    from scipy.signal import fftconvolve

    T, H, W = np.shape(values)
    # 1. anomalies from the smoothed climatology (as gp_kriging)
    v, mask, obs, clim, anom = _anomalies(values, valid, "st_kriging")
    # 2. one separable covariance: the cube's own, or the one given (`cov`, a whole record's)
    s2, length, nugget, tau = cov if cov is not None else st_covariance(values, valid)
    n_max = min(T, block + 2 * reach)
    dt = np.arange(n_max, dtype="float64")
    rho_t = np.exp(-dt / tau) if tau > 0 else (dt == 0).astype("float64")
    dy, dx = np.arange(H, dtype="float64")[:, None], np.arange(W, dtype="float64")[None, :]
    rho_s = matern32_correlation(np.sqrt(dy * dy + dx * dx), length)
    ks = np.concatenate([rho_s[::-1], rho_s[1:]], 0)
    ks = np.concatenate([ks[:, ::-1], ks[:, 1:]], 1)  # (2H - 1, 2W - 1), offset 0 at the centre
    rng = np.random.default_rng(seed)
    out = v.copy()
    for t0 in range(0, T, block):
        t1, lo = min(t0 + block, T), max(t0 - reach, 0)
        hi = min(t1 + reach, T)
        gap = np.zeros((hi - lo, H, W), bool)
        gap[t0 - lo:t1 - lo] = mask[None] & ~obs[t0:t1]
        ob = obs[lo:hi]
        if gap.any():
            tgt = np.flatnonzero(gap)
            if not ob.any() or s2 <= 0:  # nothing to condition on / no correlation
                out[lo:hi].reshape(-1)[tgt] = np.broadcast_to(clim, gap.shape).reshape(-1)[tgt]
            else:
                # 3. the conditioning cells: nearest the block's gaps in (t, y, x) first
                idx = np.flatnonzero(ob)
                if idx.size > max_points:
                    d = distance_transform_edt(~gap).ravel()[idx]
                    tier = np.where(d <= 1.0, 0, np.where(d <= 2.0, 1, 2))
                    idx = idx[np.lexsort((rng.random(idx.size), tier))[:max_points]]
                pt, rem = np.divmod(idx, H * W)
                py, px = np.divmod(rem, W)
                K = s2 * rho_t[np.abs(pt[:, None] - pt[None, :])] * rho_s[
                    np.abs(py[:, None] - py[None, :]), np.abs(px[:, None] - px[None, :])]
                K[np.diag_indices_from(K)] += nugget
                alpha = cho_solve(cho_factor(K, lower=True, check_finite=False), anom[lo:hi].reshape(-1)[idx],
                                  check_finite=False)
                # 4. predict: alpha on the slab convolved with the covariance at every offset
                a = np.zeros(gap.size)
                a[idx] = alpha
                n = hi - lo
                kt = np.concatenate([rho_t[n - 1:0:-1], rho_t[:n]])  # (2n - 1,), offset 0 at the centre
                pred = fftconvolve(a.reshape(gap.shape), s2 * kt[:, None, None] * ks[None], mode="same")
                view = out[lo:hi].reshape(-1)  # a view of `out`
                view[tgt] = np.broadcast_to(clim, gap.shape).reshape(-1)[tgt] + pred.reshape(-1)[tgt]
        for _ in range(t1 - t0):
            if step is not None:
                step()
    out = fill_rest(out, mask, clim)
    return outside_valid(out, mask)
