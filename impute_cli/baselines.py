"""baselines: classical gap fillers with one signature, `f(values (T, H, W) with NaN, valid (H, W))
-> filled (T, H, W)`, scored on the same hidden cells as the model. Adding one is one function."""

from __future__ import annotations

from typing import Callable

import numpy as np


def laplace_fill(values: np.ndarray, valid: np.ndarray | None = None, iters: int = 500) -> np.ndarray:
    """Laplace/Poisson fill per frame (what CDO `fillmiss` users get): gaps relaxed to the
    harmonic interpolant of their observed edges by Jacobi iterations."""
    out = values.astype("float64").copy()
    for t, frame in enumerate(out):
        gap = np.isnan(frame)
        if not gap.any() or gap.all():
            continue
        frame[gap] = np.nanmean(frame)
        for _ in range(iters):
            p = np.pad(frame, 1, mode="edge")
            frame[gap] = ((p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]) / 4)[gap]
        out[t] = frame
    return _outside(out, valid)


def temporal_linear(values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Linear interpolation along time at each cell, held constant beyond the first/last
    observation; cells never observed fall back to the Laplace fill."""
    T = values.shape[0]
    out = values.astype("float64").copy()
    flat = out.reshape(T, -1)
    t = np.arange(T)
    for j in range(flat.shape[1]):
        col = flat[:, j]
        ok = ~np.isnan(col)
        if ok.all() or not ok.any():
            continue
        flat[:, j] = np.interp(t, t[ok], col[ok])
    if np.isnan(out).any():
        lap = laplace_fill(values, valid)
        out = np.where(np.isnan(out), lap, out)
    return _outside(out, valid)


def _outside(out: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    return out if valid is None else np.where(valid[None], out, np.nan)


# ---------------------------------------------------------------------------------------------
# Shared helpers for the baselines below. Every baseline: float64 copy of the input, observed
# cells = finite and inside `valid`, only gap cells (inside `valid`, not observed) written,
# land (outside `valid`) set to NaN at the end by `_outside`.
# ---------------------------------------------------------------------------------------------

def _prepare(values: np.ndarray, valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(float64 copy of values, valid (H, W) bool -- all True when None, observed (T, H, W))."""
    v = np.array(values, dtype="float64", copy=True)
    if v.ndim != 3:
        raise ValueError(f"baselines expect a (time, y, x) cube, got shape {v.shape}")
    mask = np.ones(v.shape[1:], bool) if valid is None else np.asarray(valid, bool)
    if mask.shape != v.shape[1:]:
        raise ValueError(f"valid mask shape {mask.shape} does not match the grid {v.shape[1:]}")
    # Cells outside `valid` never count as observations (land must not act as a source).
    return v, mask, np.isfinite(v) & mask[None]


def _climatology_map(v: np.ndarray, valid: np.ndarray, obs: np.ndarray, fill: bool = True) -> np.ndarray:
    """Per-cell mean over time of the observed values, (H, W). With `fill`, cells never
    observed inside `valid` get the Laplace fill of the map (NaN only if nothing is observed)."""
    count = obs.sum(0)
    total = np.where(obs, v, 0.0).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        clim = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    if fill and (valid & (count == 0)).any() and (count > 0).any():
        clim = np.where(count > 0, clim, laplace_fill(clim[None], valid)[0])
    return clim


def _fill_rest(out: np.ndarray, valid: np.ndarray, clim: np.ndarray | None = None) -> np.ndarray:
    """Last resort for cells a method left NaN inside `valid`: Laplace fill of each frame,
    then (frames with nothing at all) the filled climatology."""
    if not np.isnan(out[:, valid]).any():
        return out
    lap = laplace_fill(np.where(valid[None], out, np.nan), valid)  # land is no source
    out = np.where(np.isnan(out), lap, out)
    if clim is not None and np.isnan(out[:, valid]).any():
        out = np.where(np.isnan(out) & valid[None], clim[None], out)
    return out


def laplace(values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """`laplace_fill` as a baseline: the same output, except that frames with no observation
    (which `laplace_fill` leaves NaN) get the filled climatology, so that every gap is filled."""
    v, mask, obs = _prepare(values, valid)
    out = laplace_fill(values, valid)
    if np.isnan(out[:, mask]).any():
        out = np.where(np.isnan(out) & mask[None], _climatology_map(v, mask, obs)[None], out)
    return _outside(out, mask)


def climatology(values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Per-cell climatology: each gap gets the mean over time of that cell's observed values;
    cells never observed get the Laplace fill of the climatology map."""
    v, mask, obs = _prepare(values, valid)
    clim = _climatology_map(v, mask, obs)
    # Only gap cells are written; observed cells keep their input bits.
    out = np.where(obs, v, clim[None])
    return _outside(out, mask)


# ---------------------------------------------------------------------------------------------
# OpenCV inpainting (Telea 2004 fast marching; Bertalmio et al. 2001 Navier-Stokes).
# ---------------------------------------------------------------------------------------------

# cv2.inpaint (OpenCV 4.x/5.x) accepts 8-bit, 16-bit unsigned or 32-bit float single-channel
# images, so frames are passed as float32 (no 8-bit quantisation). Frames are NOT scaled to
# [0, 1] though: OpenCV's Telea adds a gradient term normalised to unit length,
# `Ia/s + (Jx+Jy)/(|J| + 1e-20)`, i.e. an offset of up to ~1.4 *intensity units* whatever the
# image's scale (built for 0..255 images). On a [0, 1] frame that offset is as large as the
# whole range (measured: errors ~ the range itself); on a [0, 1e6] frame it is ~1e-6 of the
# range, while float32 still resolves ~6e-8 of the range. Navier-Stokes is scale-free.
_CV_SCALE = 1.0e6
_CV_RADIUS = 3


def _cv2():
    try:
        import cv2  # optional dependency, imported only when used
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the telea / ns_inpaint baselines need OpenCV: "
                          "pip install opencv-python-headless") from exc
    return cv2


def _cv_inpaint(values: np.ndarray, valid: np.ndarray | None, method: str) -> np.ndarray:
    """Per-frame cv2.inpaint on a float32 image scaled by the frame's observed min/max."""
    cv2 = _cv2()
    flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
    v, mask, obs = _prepare(values, valid)
    clim = _climatology_map(v, mask, obs)
    out = v.copy()
    for t in range(v.shape[0]):
        ob, gap = obs[t], mask & ~obs[t]
        if not gap.any():
            continue
        if not ob.any():  # nothing observed in this frame: climatology (Laplace where never seen)
            out[t][gap] = clim[gap]
            continue
        # 1. scale the observed cells to [0, _CV_SCALE] by the frame's observed min/max
        lo, hi = float(v[t][ob].min()), float(v[t][ob].max())
        span = hi - lo if hi > lo else 1.0
        # 2. every non-observed cell (gaps AND land) is pre-filled with the mid-range value and
        #    put in the inpaint mask, so land never acts as a source (inpaint ignores masked
        #    pixels' values; the pre-fill only keeps NaN out of OpenCV)
        img = np.where(ob, (v[t] - lo) / span * _CV_SCALE, 0.5 * _CV_SCALE).astype(np.float32)
        hole = (~ob).astype(np.uint8)
        res = cv2.inpaint(img, hole, _CV_RADIUS, flag).astype("float64") / _CV_SCALE * span + lo
        # 3. write back the gap cells only
        out[t][gap] = res[gap]
    out = _fill_rest(out, mask, clim)
    return _outside(out, mask)


def telea(values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """OpenCV `cv2.inpaint(..., cv2.INPAINT_TELEA)` per frame, radius 3 (Telea 2004, fast
    marching), on float32 frames (no 8-bit quantisation; see `_CV_SCALE` for the scaling).
    Land is masked, not a source. Frames with no observation: climatology, then Laplace.
    Raises ImportError naming opencv-python-headless when OpenCV is missing."""
    return _cv_inpaint(values, valid, "telea")


def ns_inpaint(values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """OpenCV `cv2.inpaint(..., cv2.INPAINT_NS)` per frame, radius 3 (Navier-Stokes, Bertalmio
    et al. 2001), float32 frames, otherwise as `telea`."""
    return _cv_inpaint(values, valid, "ns")


# ---------------------------------------------------------------------------------------------
# DINEOF: EOF reconstruction with the number of modes chosen by cross-validation.
# ---------------------------------------------------------------------------------------------

def _rank_k(A: np.ndarray, k: int) -> np.ndarray:
    """Rank-k truncated-SVD reconstruction of A (T, n) via the eigen-decomposition of its small
    Gram matrix: with T <= n, A_k = U_k U_k^T A, U_k the top-k eigenvectors of A A^T (T x T).
    T is at most a few hundred and n up to ~60k, so this costs one T*T*n product per call
    instead of a full SVD. It squares the condition number, which is harmless for the leading
    modes DINEOF keeps."""
    T, n = A.shape
    if T <= n:
        _, U = np.linalg.eigh(A @ A.T)  # eigenvalues ascending: the last k columns lead
        U = U[:, -k:]
        return U @ (U.T @ A)
    _, V = np.linalg.eigh(A.T @ A)
    V = V[:, -k:]
    return (A @ V) @ V.T


def _dineof_iterate(A: np.ndarray, gap: np.ndarray, k: int, tol: float, max_iter: int) -> np.ndarray:
    """Replace the gap entries of A (in place) by its rank-k reconstruction until the relative
    change of the gap values is below `tol` or `max_iter` iterations."""
    if not gap.any():
        return A
    for _ in range(max_iter):
        new = _rank_k(A, k)[gap]
        change = np.linalg.norm(new - A[gap]) / max(np.linalg.norm(new), 1e-300)
        A[gap] = new
        if change < tol:
            break
    return A


def _col_mean(X: np.ndarray, M: np.ndarray) -> np.ndarray:
    """Mean over time of X where M, per column (columns with no True give 0)."""
    return np.where(M, X, 0.0).sum(0) / np.maximum(M.sum(0), 1)


def _cv_split(obs: np.ndarray, valid: np.ndarray, ever: np.ndarray, frac: float, seed: int) -> np.ndarray:
    """The cross-validation cells, (T, n) over the ever-observed cells: ~frac of the observed
    cells withheld in cloud-shaped patches spread over the record (Beckers et al. 2006, Ocean
    Sci. 2, 183-199, withhold clouds rather than scattered pixels, which favour too many modes
    when the real gaps are clouds), leaving each cell at least one observation; scattered
    pixels when the cube is too small for patches."""
    from .errors import ImputeError
    from .holdout import make_holdout
    try:
        cv = make_holdout(obs, valid, "cloud", frac, seed).hidden[:, ever]
    except ImputeError:
        M = obs[:, ever]
        pos = np.flatnonzero(M)
        cv = np.zeros(M.shape, bool)
        n_cv = round(frac * pos.size)
        if n_cv:
            cv.flat[np.random.default_rng(seed).choice(pos, n_cv, replace=False)] = True
    M = obs[:, ever]
    cv[:, ~(M & ~cv).any(0)] = False  # a column with nothing left to train on cannot be scored
    return cv


def eof_dineof(values: np.ndarray, valid: np.ndarray | None = None, *, max_modes: int = 20,
               seed: int = 0, cv_fraction: float = 0.03, tol: float = 1e-3,
               max_iter: int = 100) -> np.ndarray:
    """DINEOF (Data INterpolating Empirical Orthogonal Functions; Beckers & Rixen 2003,
    J. Atmos. Oceanic Technol. 20, 1839-1856; Alvera-Azcarate et al. 2005, Ocean Modelling 9,
    325-346). The (time, space) matrix of anomalies from each cell's temporal mean (cells ever
    observed inside `valid`) has its gaps set to 0 and then, for k modes, replaced by the rank-k
    truncated-SVD reconstruction until their relative change is < `tol` (or `max_iter`
    iterations). k is chosen by cross-validation: a seeded `cv_fraction` of the observed
    cells is withheld in cloud-shaped patches (`_cv_split`), k = 1, 2, ... up to min(max_modes, min(T, n_space) - 1) is tried (each
    k warm-started from k - 1, as in DINEOF), stopping once the CV error has not improved on the
    best for 3 consecutive k; the best k is then rerun with every observation. Cells never
    observed: Laplace fill; T == 1 or fewer than 2 cells ever observed: Laplace fill."""
    v, mask, obs = _prepare(values, valid)
    T = v.shape[0]
    ever = obs.any(0)
    n = int(ever.sum())
    kmax = min(max_modes, min(T, n) - 1)
    clim = _climatology_map(v, mask, obs)
    if T < 2 or n < 2 or kmax < 1:  # no EOF to speak of: Laplace per frame
        out = _fill_rest(np.where(obs, v, np.nan), mask, clim)
        return _outside(np.where(obs, v, out), mask)

    X, M = v[:, ever], obs[:, ever]  # (T, n) values and observed entries

    # 1. choose k by cross-validation on withheld observations
    cv = _cv_split(obs, mask, ever, cv_fraction, seed)
    best_k, warm = 1, None
    if cv.any():
        train = M & ~cv
        mean_cv = _col_mean(X, train)
        A = np.where(train, X - mean_cv, 0.0)
        # k = 0 (each cell's temporal mean) is a candidate too: with large gaps in a field that
        # EOFs describe badly (travelling waves), every k can do worse than the mean
        best_err = float(np.sqrt(np.mean((np.broadcast_to(mean_cv, X.shape)[cv] - X[cv]) ** 2)))
        best_k, worse = 0, 0
        for k in range(1, kmax + 1):
            A = _dineof_iterate(A, ~train, k, tol, max_iter)  # warm start from k - 1
            err = float(np.sqrt(np.mean((A[cv] + np.broadcast_to(mean_cv, X.shape)[cv] - X[cv]) ** 2)))
            if err < best_err:
                best_err, best_k, worse = err, k, 0
                warm = A + mean_cv  # values (not anomalies) of the best reconstruction
            else:
                worse += 1
                if worse >= 3:
                    break

    if best_k == 0:  # the mean wins the cross-validation: the climatology fill
        return climatology(values, valid)

    # 2. final reconstruction with best_k and every observation (warm start from the CV run)
    mean = _col_mean(X, M)
    A = np.where(M, X - mean, 0.0)
    if warm is not None:
        A[~M] = (warm - mean)[~M]
    A = _dineof_iterate(A, ~M, best_k, tol, max_iter)

    # 3. write the gap cells back; never-observed cells by Laplace fill
    out = np.full_like(v, np.nan)
    out[:, ever] = np.where(M, X, A + mean)
    out = np.where(obs, v, out)
    out = _fill_rest(out, mask, clim)
    return _outside(out, mask)


# ---------------------------------------------------------------------------------------------
# Gaussian-process regression (simple kriging of anomalies) in space, per frame.
# ---------------------------------------------------------------------------------------------

class BaselineSkipped(ValueError):
    """A baseline that cannot run on this cube (too large); evaluate reports it as skipped."""


GP_MAX_CELLS = 250_000  # each time step conditions on at most max_points cells; this bounds the rest


def _matern32(r: np.ndarray, length: float) -> np.ndarray:
    """Matern-3/2 correlation (1 + sqrt3 r/l) exp(-sqrt3 r/l)."""
    a = np.sqrt(3.0) * r / length
    return (1.0 + a) * np.exp(-a)


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
        rho, w, c = _matern32(r[use], length), npairs[use] / r[use] ** 2, cov[use]
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


def _smooth_map(m: np.ndarray, valid: np.ndarray, r: int = 2) -> np.ndarray:
    """Mean of the finite values of m (H, W) inside `valid` over a (2r+1)^2 square per cell."""
    from scipy.ndimage import uniform_filter
    ok = np.isfinite(m) & valid
    num = uniform_filter(np.where(ok, m, 0.0), 2 * r + 1, mode="reflect")
    den = uniform_filter(ok.astype("float64"), 2 * r + 1, mode="reflect")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), m)


def gp_kriging(values: np.ndarray, valid: np.ndarray | None = None, *, max_points: int = 2000,
               seed: int = 0) -> np.ndarray:
    """Gaussian-process regression (simple kriging) of anomalies in space, frame by frame.
    Anomalies are values minus the per-cell climatology (as `climatology`) smoothed over 5 x 5
    cells (a per-cell mean of a few observations is noisy, and kriging adds the mean back). ONE isotropic
    Matern-3/2 covariance, k(r) = s2 (1 + sqrt3 r/l) exp(-sqrt3 r/l), plus a nugget, is fitted
    to the whole cube's empirical covariance of anomalies at integer lags (masked FFT
    autocorrelation, least squares over a grid of l). Each frame's gaps then get the kriged
    anomaly from that frame's observed cells (at most `max_points`, chosen by `_pick_points`,
    seeded by `seed`), solved by Cholesky with the nugget on the diagonal, plus the
    climatology. Distances are Euclidean in grid-index units (y, x): longitude wrap-around and
    the convergence of meridians are ignored. Frames with no observation: climatology. Cells
    never observed anywhere: climatology part by Laplace fill.
    Raises BaselineSkipped (a ValueError) "gp_kriging: grid of N cells is too large (limit 250000)" when
    H * W > 250000, so that callers can skip this baseline and report it."""
    from scipy.linalg import cho_factor, cho_solve
    from scipy.spatial.distance import cdist

    T, H, W = np.shape(values)
    if H * W > GP_MAX_CELLS:
        raise BaselineSkipped(f"gp_kriging: grid of {H * W} cells is too large (limit {GP_MAX_CELLS})")
    v, mask, obs = _prepare(values, valid)
    # 1. climatology (raw for the anomalies, filled for the prediction) and anomalies
    # The mean is the climatology smoothed over 5 x 5 cells: a per-cell mean from a few
    # observations carries noise that kriging would add back at every gap.
    clim = _smooth_map(_climatology_map(v, mask, obs), mask)
    anom = np.where(obs, v - clim[None], 0.0)
    # 2. one covariance for the whole cube
    s2, length, nugget = _fit_matern(anom, obs)
    yx = np.stack(np.meshgrid(np.arange(H), np.arange(W), indexing="ij"), -1).reshape(-1, 2).astype("float64")
    rng = np.random.default_rng(seed)
    out = v.copy()
    for t in range(T):
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
        K = s2 * _matern32(cdist(yx[pts], yx[pts]), length)
        K[np.diag_indices_from(K)] += nugget
        alpha = cho_solve(cho_factor(K, lower=True, check_finite=False), anom[t].reshape(-1)[pts],
                          check_finite=False)
        # 4. predict the gaps in chunks (bounded memory): clim + k(gap, pts) @ alpha
        for c0 in range(0, tgt.size, 4096):
            sl = tgt[c0:c0 + 4096]
            ks = s2 * _matern32(cdist(yx[sl], yx[pts]), length)
            frame[sl] = clim.reshape(-1)[sl] + ks @ alpha
    out = _fill_rest(out, mask, clim)
    return _outside(out, mask)



BASELINES: dict[str, Callable[..., np.ndarray]] = {
    "climatology": climatology,
    "temporal_linear": temporal_linear,
    "laplace": laplace,
    "telea": telea,
    "ns_inpaint": ns_inpaint,
    "eof_dineof": eof_dineof,
    "gp_kriging": gp_kriging,
}
