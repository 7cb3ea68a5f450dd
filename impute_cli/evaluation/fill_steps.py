"""fill_steps: steps the classical gap fillers share -- preparing a cube, a climatology map, a
Laplace fill of what is left, the Laplace fill and the spline with tension solved to their limit,
NaN outside the fillable cells."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from typing import Any

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
    return outside_valid(out, valid)


def harmonic_fill(values: np.ndarray, valid: np.ndarray | None = None, eps: float = 1e-6,
                  workers: int | None = None) -> np.ndarray:
    """Laplace fill per frame, solved to its limit: the gap cells' values have a zero discrete
    Laplacian (5-point), their observed neighbours fixed; no flux across the grid's edge or into
    cells outside `valid` (land is neither a source nor a conduit). One sparse LU solve per
    frame (SuperLU): about 9 ms for a 73 x 144 frame half in gaps, where a Jacobi relaxation
    needs thousands of sweeps to reach the limit inside large gaps. Frames are solved on
    `workers` threads (default: the cores this process may use; SuperLU releases the GIL), each
    on its own, so the result does not depend on their number. `eps` ties every gap cell weakly
    to the frame's mean, so a gap with no observed neighbour still has a solution; elsewhere its
    effect is below 1e-5 of the field's range. Frames with no observation stay NaN."""
    return _solve_frames(values, valid, _harmonic_frame, eps, workers)


TENSION = 0.5  # spline_fill's default tension: on alboranSST's gaps it beat 0, 0.1, 0.25, 0.75 and 1 (docs/choices.md)


def spline_fill(values: np.ndarray, valid: np.ndarray | None = None, tension: float = TENSION, eps: float = 1e-6,
                workers: int | None = None) -> np.ndarray:
    """Minimum-curvature fill with tension per frame (Smith & Wessel, Geophysics 55, 1990, the
    fill of GMT's `surface`): the gap cells' values minimise

        (1 - tension) |Δu|² + tension |∇u|²

    summed over the frame (5-point Laplacian and nearest-neighbour differences, land and the
    grid's edge closed as in `harmonic_fill`), the observed cells fixed. Tension 0 is the
    biharmonic fill, which meets the observations with their slope as well as their value and
    reproduces a field whose Laplacian is linear, such as a cubic, exactly, but overshoots
    inside large gaps; tension 1 is the Laplace fill, which stays between its edge values and
    meets them with a kink. One sparse LU solve per frame; `eps` and `workers` as in
    `harmonic_fill`; frames with no observation stay NaN."""
    if not 0 <= tension <= 1:
        raise ValueError(f"tension must lie in [0, 1], got {tension}")
    return _solve_frames(values, valid, lambda frame, mask, e: _spline_frame(frame, mask, e, tension), eps, workers)


def _solve_frames(values: np.ndarray, valid: np.ndarray | None, solve: Any, eps: float,
                  workers: int | None) -> np.ndarray:
    """`solve(frame, mask, eps)` in place on each frame with gaps and observations, on `workers` threads."""
    out = values.astype("float64").copy()
    mask = np.ones(out.shape[1:], bool) if valid is None else np.asarray(valid, bool)
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    todo = [t for t in range(out.shape[0]) if 0 < int((np.isnan(out[t]) & mask).sum()) < int(mask.sum())]
    if workers > 1 and len(todo) > 1:
        with ThreadPoolExecutor(min(workers, len(todo))) as pool:
            list(pool.map(lambda t: solve(out[t], mask, eps), todo))
    else:
        for t in todo:
            solve(out[t], mask, eps)
    return outside_valid(out, valid)


def _harmonic_frame(frame: np.ndarray, mask: np.ndarray, eps: float) -> None:
    """`harmonic_fill` of one (H, W) frame, in place."""
    from scipy import sparse
    from scipy.sparse.linalg import spsolve

    H, W = frame.shape
    gap = np.isnan(frame) & mask
    n = int(gap.sum())
    idx = np.full((H, W), -1)
    idx[gap] = np.arange(n)
    gy, gx = np.nonzero(gap)
    diag = np.full(n, eps)
    rhs = np.full(n, eps * float(np.nanmean(np.where(mask, frame, np.nan))))
    rows, cols = [np.arange(n)], [np.arange(n)]
    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        ny, nx = gy + dy, gx + dx
        link = (ny >= 0) & (ny < H) & (nx >= 0) & (nx < W)
        link[link] = mask[ny[link], nx[link]]  # a neighbour inside the grid and fillable
        diag[link] += 1
        i, j = np.nonzero(link)[0], idx[ny[link], nx[link]]
        rows.append(i[j >= 0])  # a gap neighbour: an unknown
        cols.append(j[j >= 0])
        np.add.at(rhs, i[j < 0], frame[ny[link][j < 0], nx[link][j < 0]])  # an observed one: known
    data = np.concatenate([diag, -np.ones(sum(len(r) for r in rows[1:]))])
    A = sparse.csc_matrix((data, (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    frame[gap] = spsolve(A, rhs)


def _laplacian(mask: np.ndarray) -> Any:
    """The 5-point graph Laplacian (neighbours minus the cell, each link once) of the cells of
    `mask`, in row-major order of those cells: no link across the grid's edge or to a cell outside it."""
    from scipy import sparse

    H, W = mask.shape
    idx = np.full((H, W), -1)
    idx[mask] = np.arange(int(mask.sum()))
    ys, xs = np.nonzero(mask)
    rows, cols = [], []
    for dy, dx in ((1, 0), (0, 1)):
        ny, nx = ys + dy, xs + dx
        link = (ny < H) & (nx < W)
        link[link] = mask[ny[link], nx[link]]
        rows.append(idx[ys[link], xs[link]])
        cols.append(idx[ny[link], nx[link]])
    i, j = np.concatenate(rows), np.concatenate(cols)
    n = len(ys)
    adj = sparse.csr_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
    adj = adj + adj.T
    return adj - sparse.diags(np.asarray(adj.sum(1)).ravel())


def _spline_frame(frame: np.ndarray, mask: np.ndarray, eps: float, tension: float) -> None:
    """`spline_fill` of one (H, W) frame, in place: with L the (negative semi-definite)
    Laplacian of the frame's fillable cells, |Δu|² = u'L²u and |∇u|² = -u'Lu, so the gap
    cells solve B_gg u_g + eps u_g = -B_go u_o + eps mean with B = (1 - tension) L² - tension L."""
    from scipy import sparse
    from scipy.sparse.linalg import spsolve

    v = frame[mask]
    gap = np.isnan(v)
    L = _laplacian(mask)
    B = ((1 - tension) * (L @ L) - tension * L).tocsr()
    rhs = -(B[gap][:, ~gap] @ v[~gap]) + eps * float(np.mean(v[~gap]))
    A = (B[gap][:, gap] + eps * sparse.eye(int(gap.sum()))).tocsc()
    v[gap] = spsolve(A, rhs)
    frame[mask] = v


def outside_valid(out: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    return out if valid is None else np.where(valid[None], out, np.nan)


def prepare(values: np.ndarray, valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(float64 copy of values, valid (H, W) bool -- all True when None, observed (T, H, W))."""
    v = np.array(values, dtype="float64", copy=True)
    if v.ndim != 3:
        raise ValueError(f"baselines expect a (time, y, x) cube, got shape {v.shape}")
    mask = np.ones(v.shape[1:], bool) if valid is None else np.asarray(valid, bool)
    if mask.shape != v.shape[1:]:
        raise ValueError(f"valid mask shape {mask.shape} does not match the grid {v.shape[1:]}")
    # Cells outside `valid` never count as observations (land must not act as a source).
    return v, mask, np.isfinite(v) & mask[None]


def climatology_map(v: np.ndarray, valid: np.ndarray, obs: np.ndarray, fill: bool = True) -> np.ndarray:
    """Per-cell mean over time of the observed values, (H, W). With `fill`, cells never
    observed inside `valid` get the Laplace fill of the map (NaN only if nothing is observed)."""
    count = obs.sum(0)
    total = np.where(obs, v, 0.0).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        clim = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    if fill and (valid & (count == 0)).any() and (count > 0).any():
        clim = np.where(count > 0, clim, laplace_fill(clim[None], valid)[0])
    return clim


def fill_rest(out: np.ndarray, valid: np.ndarray, clim: np.ndarray | None = None) -> np.ndarray:
    """Last resort for cells a method left NaN inside `valid`: Laplace fill of each frame,
    then (frames with nothing at all) the filled climatology."""
    if not np.isnan(out[:, valid]).any():
        return out
    lap = laplace_fill(np.where(valid[None], out, np.nan), valid)  # land is no source
    out = np.where(np.isnan(out), lap, out)
    if clim is not None and np.isnan(out[:, valid]).any():
        out = np.where(np.isnan(out) & valid[None], clim[None], out)
    return out


def climatology(values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Per-cell climatology: each gap gets the mean over time of that cell's observed values;
    cells never observed get the Laplace fill of the climatology map."""
    v, mask, obs = prepare(values, valid)
    clim = climatology_map(v, mask, obs)
    # Only gap cells are written; observed cells keep their input bits.
    out = np.where(obs, v, clim[None])
    return outside_valid(out, mask)
