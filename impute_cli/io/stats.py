"""stats: one streaming pass over a `Cube` -> its `Summary` (per-cell sums and counts of the
observed values) and the per-channel normalisation `Stats`, without ever holding the cube."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import dask.array as dsa
import numpy as np

from impute_cli.errors import ImputeError
from impute_cli.io.cube import Cube, compute


@dataclass(frozen=True)
class Stats:
    """Per-channel normalisation over observed cells: x_norm = (x - mean) / std."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    observed_fraction: float  # of fillable cells, over the whole cube

    def to_dict(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std), "observed_fraction": self.observed_fraction}


def refuse_inf(n_inf: int) -> None:
    if n_inf:
        raise ImputeError(f"the data contain {n_inf} infinite values; replace them with NaN "
                          "(missing) or a valid number first")


@dataclass(frozen=True)
class Summary:
    """One streaming pass over a cube (`summarise`): per cell and channel, the sum and count of
    the observed raw values, and per channel the sum of squares; enough for the normalisation,
    the climatology input, the observed fraction and the number of gaps, without ever holding
    the cube. Chunks are reduced as they are read, so memory follows the chunk size."""

    S: np.ndarray  # (C, H, W) float64 sum of observed values
    N: np.ndarray  # (C, H, W) int64 number of observed values (over time)
    s2: np.ndarray  # (C,) float64 sum of squares of observed values
    n_inf: int
    T: int
    valid: np.ndarray  # (H, W) the fillable cells
    n_targets: int | None = None  # the imputed channels come first; the rest are covariates (None: all imputed)

    def stats(self, channels: list[str]) -> Stats:
        """Mean and std per channel over observed cells; refuses all-NaN variables and Inf."""
        refuse_inf(self.n_inf)
        self.refuse_empty(channels)
        n = self.N.sum(axis=(1, 2))
        mean = self.S.sum(axis=(1, 2)) / n
        var = np.maximum(self.s2 / n - mean**2, 0.0)
        std = np.where(var > 0, np.sqrt(var), 1.0)
        return Stats(tuple(map(float, mean)), tuple(map(float, std)), self.observed_fraction)

    def refuse_empty(self, channels: list[str]) -> None:
        """A variable with no observed value has nothing to condition on: refused, never filled."""
        for c, cnt in enumerate(self.N.sum(axis=(1, 2))):
            if cnt == 0:
                raise ImputeError(f"variable '{channels[c]}' has no observed value (all NaN), so there is "
                                  "nothing to fill it from; drop it or choose others with --var")

    @property
    def observed_fraction(self) -> float:
        """Of fillable cells, over the whole cube and every imputed channel."""
        N = self.N[:self.n_targets]
        return float(N.sum() / max(self.valid.sum() * self.T * N.shape[0], 1))

    def gaps(self) -> np.ndarray:
        """(C,) number of fillable cells that are missing, per channel."""
        return (self.T * self.valid.sum() - self.N.sum(axis=(1, 2))).astype("int64")

    def without(self, values: np.ndarray, hidden: np.ndarray) -> "Summary":
        """This summary with the observed cells `hidden` of `values` ((L, C, H, W), some of its
        time steps) taken out, as if they had been gaps: the record a calibration run sees."""
        v = np.where(hidden, values, 0.0).astype("float64")
        return replace(self, S=self.S - v.sum(0), N=self.N - hidden.sum(0),
                       s2=self.s2 - (v**2).sum(axis=(0, 2, 3)))

    def crop(self, y: slice, x: slice) -> "Summary":
        """This summary over the cells [y, x] of the grid only (the per-cell sums and counts,
        the fillable cells); the per-channel sums of squares stay the record's."""
        return replace(self, S=self.S[:, y, x], N=self.N[:, y, x], valid=self.valid[y, x])

    def climatology_sums(self, stats: Stats) -> tuple[np.ndarray, np.ndarray]:
        """(C, H, W) sums and counts of the observed values in normalised units (the network's
        climatology input, see `batches`)."""
        mean = np.asarray(stats.mean)[:, None, None]
        std = np.asarray(stats.std)[:, None, None]
        return ((self.S - self.N * mean) / std).astype("float32"), self.N.astype("float32")


def summarise(cube: Cube) -> Summary:
    """The cube's `Summary` in one lazy pass (a dask reduction, chunk by chunk)."""
    x = cube.data
    obs = dsa.isfinite(x) & dsa.from_array(cube.valid)[None, None]
    xz = dsa.where(obs, x, 0).astype("float64")
    S, N, s2, n_inf = compute(xz.sum(axis=0), obs.sum(axis=0, dtype="int64"),
                                  (xz**2).sum(axis=(0, 2, 3)), dsa.isinf(x).sum())
    return Summary(np.asarray(S), np.asarray(N), np.asarray(s2), int(n_inf), int(x.shape[0]), cube.valid,
                   cube.n_targets if cube.covariates else None)


def compute_stats(cube: Cube) -> Stats:
    """Mean and std per channel over observed cells, in one lazy pass; refuses all-NaN
    variables and Inf values."""
    return summarise(cube).stats(cube.channels)
