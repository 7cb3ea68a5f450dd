"""gp: a space-time Gaussian process whose exact posterior is computable -- the physical limit
for imputation on that data ([UQ] §3-4; docs/method.md).

The process is separable and stationary with unit variance (before `loc`/`scale`):

    x_0 ~ N(0, K),   x_t = phi x_{t-1} + sqrt(1 - phi^2) L z_t,   z_t ~ N(0, I),   L = chol(K),

so Cov(x_t(i), x_s(j)) = phi^|t-s| K_ij, with K the Matérn nu=3/2 covariance of an H x W grid
(distances in grid cells, length scale `ell`). The field is `loc + scale * x`.

Observations are the field's own values at the observed cells. `tau2` is a nugget on those
observations, as a fraction of the field variance: the posterior is that of y = x + N(0, tau2)
at the observed cells. The data carry no noise; the default TAU2 = 1e-6 is numerical jitter
only (posterior sd at observed cells ~ 1e-3 * scale; hidden-cell figures move by far less than
Monte-Carlo error). tau2 = 0 (the noiseless posterior) works as well.

The exact posterior is a Kalman filter + Rauch-Tung-Striebel smoother over time with the dense
n = H*W spatial state: O(T n^3) time and T n^2 floats of memory (T=512, 16x16: ~0.3 GB, seconds).
Oracle joint regions are those of `uncertainty.regions` with exact posterior samples in place of a model's.
"""

from __future__ import annotations

from collections.abc import Callable
from statistics import NormalDist
from typing import NamedTuple

import numpy as np

from impute_cli import synthetic

TAU2 = 1e-6
GP_GAP_PATTERNS = ("pixel", "block", "series")
SERIES_OUTAGE_STEPS = (4, 48)  # the 'series' pattern: station outages of 4 to 48 time steps


def matern32_correlation(r: np.ndarray, length: float) -> np.ndarray:
    """Matérn nu=3/2 correlation at distances r: (1 + sqrt(3) r / l) exp(-sqrt(3) r / l)."""
    a = np.sqrt(3.0) * r / length
    return (1.0 + a) * np.exp(-a)


def matern32(H: int, W: int, ell: float) -> np.ndarray:
    """Matérn nu=3/2 correlation matrix (H*W, H*W) of a grid, row-major cells, distance in cells."""
    if ell <= 0:
        raise ValueError(f"length scale ell must be > 0, got {ell}")
    yy, xx = np.meshgrid(np.arange(H, dtype="float64"), np.arange(W, dtype="float64"), indexing="ij")
    p = np.stack([yy.ravel(), xx.ravel()], axis=1)
    return matern32_correlation(np.sqrt(((p[:, None, :] - p[None, :, :]) ** 2).sum(-1)), ell)


def _check_phi(phi: float) -> None:
    if not -1.0 < phi < 1.0:
        raise ValueError(f"AR(1) coefficient phi must be in (-1, 1) for a stationary process, got {phi}")


def sample_cube(T: int, H: int, W: int, phi: float, ell: float, seed: int = 0,
                loc: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """One draw (T, H, W) float64 of the separable AR(1) x Matérn-3/2 process:
    `loc + scale * x` with x stationary, unit variance, Cov(x_t, x_s) = phi^|t-s| K."""
    _check_phi(phi)
    rng = np.random.default_rng(seed)
    L = np.linalg.cholesky(matern32(H, W, ell) + 1e-12 * np.eye(H * W))
    z = rng.standard_normal((T, H * W)) @ L.T  # rows ~ N(0, K)
    x = np.empty_like(z)
    x[0] = z[0]
    s = np.sqrt(1.0 - phi**2)
    for t in range(1, T):
        x[t] = phi * x[t - 1] + s * z[t]
    return loc + scale * x.reshape(T, H, W)


def gap_mask(shape: tuple[int, int, int], pattern: str, observed: float, seed: int = 0,
             block_frames: int = 8, block_grid: int = 4) -> np.ndarray:
    """Observation mask (True = observed), seeded. 'pixel': i.i.d. cells kept with probability
    `observed`. 'block': the grid cut into block_grid x block_grid blocks; for each run of
    `block_frames` time steps, round(observed * block_grid^2) blocks (at least 1) are observed
    and the rest are out for the whole run: impute_cli.synthetic.gap_mask, restricted to these two.
    'series' (a (T, 1, S) cube of S station series): mixed grouped gaps, each station out for runs
    of SERIES_OUTAGE_STEPS time steps (half the missing cells) plus random dropouts
    (impute_cli.synthetic.series_gaps)."""
    if not 0.0 < observed <= 1.0:
        raise ValueError(f"observed fraction must be in (0, 1], got {observed}")
    if pattern not in GP_GAP_PATTERNS:
        raise ValueError(f"unknown gap pattern {pattern!r}; use one of {GP_GAP_PATTERNS}")
    if pattern == "series":
        T, H, W = shape
        if H != 1:
            raise ValueError(f"the 'series' gap pattern needs a (T, 1, S) cube of station series, got {shape}")
        return synthetic.series_gaps(T, W, observed, seed, SERIES_OUTAGE_STEPS)[:, None, :]
    return synthetic.gap_mask(shape, pattern, observed, seed, block_frames=block_frames, block_grid=block_grid)


class GPPosterior(NamedTuple):
    """Exact posterior of the cube given the observed cells, in data units.

    mean, sd: (T, H, W) posterior mean and marginal posterior sd.
    cov_fn(t): joint posterior covariance (m, m) of the cells missing at time t, i.e. the
        smoothed P_{t|T} restricted to them, ordered as np.flatnonzero(~observed[t].ravel()).
    """
    mean: np.ndarray
    sd: np.ndarray
    cov_fn: Callable[[int], np.ndarray]


def _sym(a: np.ndarray) -> np.ndarray:
    return 0.5 * (a + a.T)


def exact_posterior(values: np.ndarray, observed: np.ndarray, phi: float, ell: float,
                    tau2: float = TAU2, *, loc: float = 0.0, scale: float = 1.0) -> GPPosterior:
    """Exact posterior of the process of `sample_cube` given `values` at `observed` cells
    ([UQ] §3-4: the best possible imputation and perfectly calibrated intervals).

    values (T, H, W) in data units (anything, e.g. NaN, where not observed); observed (T, H, W)
    bool; phi, ell, loc, scale as in `sample_cube`; tau2 the observation nugget as a fraction of
    the field variance (see the module docstring). Time steps without observations are pure
    predictions. Kalman filter in Joseph form, RTS smoother in the equivalent sum-of-PSD form
    P_t|T = A P_t|t A' + G (Q + P_t+1|T) G', A = I - phi G; both symmetrised every step.
    """
    _check_phi(phi)
    if tau2 < 0:
        raise ValueError(f"tau2 must be >= 0, got {tau2}")
    T, H, W = values.shape
    if observed.shape != values.shape:
        raise ValueError(f"observed {observed.shape} and values {values.shape} differ in shape")
    n = H * W
    obs = observed.reshape(T, n).astype(bool)
    y = (values.reshape(T, n).astype("float64") - loc) / scale
    if not np.isfinite(y[obs]).all():
        raise ValueError("values must be finite at every observed cell")
    K = matern32(H, W, ell)
    Q = (1.0 - phi**2) * K
    eye = np.eye(n)

    # forward: filtered moments m_t|t, P_t|t
    mf = np.empty((T, n))
    Pf = np.empty((T, n, n))
    m_pred, P_pred = np.zeros(n), K.copy()
    for t in range(T):
        o = np.flatnonzero(obs[t])
        if o.size:
            S = P_pred[np.ix_(o, o)] + tau2 * np.eye(o.size)
            gain = np.linalg.solve(S, P_pred[o, :]).T  # (n, k) = P_pred H' S^-1
            m = m_pred + gain @ (y[t, o] - m_pred[o])
            A = eye.copy()
            A[:, o] -= gain  # I - gain H
            P = A @ P_pred @ A.T + tau2 * (gain @ gain.T)
        else:
            m, P = m_pred, P_pred
        mf[t], Pf[t] = m, _sym(P)
        m_pred, P_pred = phi * mf[t], _sym(phi**2 * Pf[t] + Q)

    # backward: smoothed moments m_t|T, P_t|T; keep only what is needed
    mean = np.empty((T, n))
    var = np.empty((T, n))
    cov_miss: dict[int, np.ndarray] = {}
    ms, Ps = mf[-1], Pf[-1]

    def keep(t: int, m_s: np.ndarray, P_s: np.ndarray) -> None:
        mean[t] = m_s
        var[t] = np.clip(np.diag(P_s), 0.0, None)
        miss = np.flatnonzero(~obs[t])
        cov_miss[t] = P_s[np.ix_(miss, miss)] * scale**2

    keep(T - 1, ms, Ps)
    for t in range(T - 2, -1, -1):
        P_pred = _sym(phi**2 * Pf[t] + Q)
        G = phi * np.linalg.solve(P_pred, Pf[t]).T  # phi P_t|t P_t+1|t^-1
        ms = mf[t] + G @ (ms - phi * mf[t])
        A = eye - phi * G
        Ps = _sym(A @ Pf[t] @ A.T + G @ (Q + Ps) @ G.T)
        keep(t, ms, Ps)
    del Pf

    def cov_fn(t: int) -> np.ndarray:
        return cov_miss[int(t) % T]

    return GPPosterior(loc + scale * mean.reshape(T, H, W), scale * np.sqrt(var).reshape(T, H, W), cov_fn)


def _eig_psd(C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lam, U = np.linalg.eigh(_sym(C))
    return np.clip(lam, 0.0, None), U


def oracle_samples(post: GPPosterior, observed: np.ndarray, t: int, B: int,
                   rng: np.random.Generator) -> np.ndarray:
    """B exact posterior samples (B, m) of the cells missing at time t (order of `cov_fn`),
    drawn from N(mean_miss, P_t|T restricted to them) via an eigendecomposition (robust to the
    tiny negative eigenvalues of a numerically PSD matrix). The joint regions of `uncertainty.regions` with the oracle."""
    miss = np.flatnonzero(~observed[t].ravel())
    lam, U = _eig_psd(post.cov_fn(t))
    z = rng.standard_normal((B, miss.size))
    return post.mean[t].ravel()[miss] + (z * np.sqrt(lam)) @ U.T


class JointCoverage(NamedTuple):
    """Per time step (NaN where nothing is missing): radius D_{1-alpha} of the oracle's L2 ball
    around the posterior mean, the truth's distance from that mean, and the coverage over the
    time steps that have missing cells."""
    radius: np.ndarray
    distance: np.ndarray
    coverage: float


def oracle_joint_coverage(post: GPPosterior, truth: np.ndarray, observed: np.ndarray,
                          alpha: float = 0.1, B: int = 1000, seed: int = 0) -> JointCoverage:
    """The oracle's joint per-time-step L2-ball coverage ([UQ] §5 Corollary 1):
    radius = (1 - alpha) quantile of ||x^(b)_miss - mean_miss|| over B exact posterior samples,
    covered when ||truth_miss - mean_miss|| <= radius. The distances are those of samples drawn
    as in `oracle_samples` (||U sqrt(lam) z|| = ||sqrt(lam) z||, so U is not needed)."""
    rng = np.random.default_rng(seed)
    T = truth.shape[0]
    radius, dist = np.full(T, np.nan), np.full(T, np.nan)
    for t in range(T):
        miss = np.flatnonzero(~observed[t].ravel())
        if not miss.size:
            continue
        lam, _ = _eig_psd(post.cov_fn(t))
        d = np.sqrt((rng.standard_normal((B, miss.size)) ** 2 * lam).sum(1))
        radius[t] = np.quantile(d, 1.0 - alpha)
        dist[t] = np.linalg.norm(truth[t].ravel()[miss] - post.mean[t].ravel()[miss])
    ok = ~np.isnan(radius)
    cov = float(np.mean(dist[ok] <= radius[ok])) if ok.any() else float("nan")
    return JointCoverage(radius, dist, cov)


def z_value(level: float) -> float:
    """Two-sided normal quantile: 1.645 for level 0.9."""
    return NormalDist().inv_cdf(0.5 + level / 2.0)


def interval_coverage(truth: np.ndarray, lower: np.ndarray, upper: np.ndarray, cells: np.ndarray) -> float:
    """Fraction of `cells` (bool mask) whose truth lies in [lower, upper]; NaN bounds count as misses."""
    t, lo, hi = truth[cells], lower[cells], upper[cells]
    return float(np.mean((t >= lo) & (t <= hi)))
