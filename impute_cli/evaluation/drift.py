"""drift: the classical filler that uses covariates -- regression kriging (Hengl, Heuvelink &
Rossiter 2007, "About regression-kriging: from equations to case studies", Computers &
Geosciences 33), scored by `evaluate --covariate` beside the model.

1. Each covariate's own gaps are filled by the Laplace fill, so that the drift is defined at
   every cell.
2. Each imputed channel is regressed on every covariate channel (least squares with an
   intercept, one set of coefficients for the whole record) over the cells where it is
   observed: the drift.
3. The residuals (observation minus drift) are filled by space-time kriging
   (`kriging.st_kriging`, which takes out each cell's mean first), and the drift is added back.

With a covariate that is the same quantity as the imputed variable (an analysis beside satellite
data) this is kriging of the increments to a background, the analysis step of optimal
interpolation; with another quantity, kriging with an external drift in its regression form."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from impute_cli.evaluation.baselines import laplace
from impute_cli.evaluation.kriging import BaselineSkipped, st_kriging

NAME = "regression_kriging"


def regression_kriging(values: np.ndarray, covariates: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(T, C, H, W) imputed channels with NaN in the gaps, (T, K, H, W) covariate channels, (H, W)
    fillable cells -> the filled (T, C, H, W), NaN outside `valid`. Raises `BaselineSkipped` where
    space-time kriging cannot run (a grid too large)."""
    # 1. the covariates, gap-free
    X = np.stack([c if np.isfinite(c[:, valid]).all() else laplace(c, valid)
                  for c in np.moveaxis(covariates, 1, 0)], axis=-1).astype("float64")  # (T, H, W, K)
    out = np.empty(values.shape, "float64")
    for c in range(values.shape[1]):
        y = values[:, c].astype("float64")
        ok = np.isfinite(y) & valid[None] & np.isfinite(X).all(-1)
        # 2. the drift: y ~ b0 + sum_k b_k x_k over the observed cells
        A = np.column_stack([np.ones(int(ok.sum())), X[ok]])
        coef = np.linalg.lstsq(A, y[ok], rcond=None)[0]
        drift = coef[0] + X @ coef[1:]
        # 3. the residuals kriged in space and time, the drift added back
        out[:, c] = st_kriging(y - drift, valid) + drift
    return np.where(valid[None, None], out, np.nan)


def run_drift(values: np.ndarray, covariates: np.ndarray, valid: np.ndarray, log: Callable[[str], None],
              est: dict[str, np.ndarray], secs: dict[str, float], skipped: dict[str, str]) -> None:
    """`regression_kriging` as one more of `baselines.run_baselines`' results (its estimate,
    seconds, or why it was skipped, added to `est`, `secs`, `skipped`). Without covariates
    (K = 0) it is skipped, saying why."""
    t0 = time.perf_counter()
    try:
        if covariates.shape[1] == 0:
            raise BaselineSkipped("it needs a covariate (--covariate NAME)")
        est[NAME] = regression_kriging(values, covariates, valid)
        secs[NAME] = round(time.perf_counter() - t0, 2)
    except BaselineSkipped as e:
        skipped[NAME] = str(e)
        log(f"baseline {NAME} skipped: {e}")
