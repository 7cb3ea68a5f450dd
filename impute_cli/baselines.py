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


BASELINES: dict[str, Callable[..., np.ndarray]] = {
    "temporal_linear": temporal_linear,
    "laplace": laplace_fill,
}
