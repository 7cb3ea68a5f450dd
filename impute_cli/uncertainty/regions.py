"""regions: samples and the point estimate of an `impute --save-samples` output -> per-cell
intervals and joint regions (L2 balls over a region's imputed cells, [UQ] §5, Corollary 1), and
their coverage of a truth. Pure array functions; `confidence` writes them, `calibration` and
`evaluation.scores` score them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from impute_cli.errors import ImputeError, OptionError
from impute_cli.io.dataset import grid_dims
from impute_cli.io.writer import FLAG_IMPUTED, SAMPLE_DIM


REGION_WORDS = {"time": "one region per time step", "all": "one region for the whole cube"}


@dataclass
class Uncertain:
    """One variable of an output written with samples, in (time, ...) layout."""

    var: str
    dims: tuple[str, ...]  # the variable's own dims, time first
    centre: np.ndarray  # the point estimate V_filled
    samples: np.ndarray  # (B, *dims)
    imputed: np.ndarray  # bool, cells that were imputed (flag 1)


def check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise OptionError(f"--level must be strictly between 0 and 1 (e.g. 0.9), got {level:g}")


def group_index(n_time: int, group: str) -> np.ndarray:
    """Region number of every time step."""
    if group == "time":
        return np.arange(n_time)
    if group == "all":
        return np.zeros(n_time, int)
    try:
        n = int(group)
    except ValueError:
        n = 0
    if n < 1:
        raise OptionError(f"--group must be 'time', 'all' or a number of time steps per region, got '{group}'")
    return np.arange(n_time) // n


def read_uncertain(ds: xr.Dataset, var: str) -> Uncertain:
    """V_filled, V_sample and V_imputed_flag of an impute output, in V_filled's dim order."""
    for n in (f"{var}_filled", f"{var}_imputed_flag"):
        if n not in ds:
            filled = [str(k)[:-len("_filled")] for k in ds.data_vars if str(k).endswith("_filled")]
            raise ImputeError(f"'{n}' is not in the file; " + (f"its filled variables are of {', '.join(filled)} "
                              "(--var names one)" if filled else "give an output of 'impute-cli impute'"))
    if f"{var}_sample" not in ds:
        raise ImputeError(f"the file has no samples of {var} ({var}_sample); write them with "
                          "'impute-cli impute IN OUT --samples 64 --save-samples'")
    filled = ds[f"{var}_filled"]
    found = grid_dims(ds, var) if var in ds else None
    t = found[0] if isinstance(found, tuple) else filled.dims[0]
    dims = (t, *[d for d in filled.dims if d != t])  # time first, whatever the file's order
    s = ds[f"{var}_sample"].transpose(SAMPLE_DIM, *dims)
    flag = ds[f"{var}_imputed_flag"].transpose(*dims)
    return Uncertain(var, tuple(map(str, dims)), np.asarray(filled.transpose(*dims).values, "float64"),
                     np.asarray(s.values, "float64"), np.asarray(flag.values) == FLAG_IMPUTED)


def sampled_variables(ds: xr.Dataset, wanted: list[str] | None) -> list[str]:
    have = [str(v)[: -len("_sample")] for v in ds.data_vars if str(v).endswith("_sample")]
    if wanted:
        for v in wanted:
            if v not in have:
                read_uncertain(ds, v)  # raises the right message
        return list(wanted)
    if not have:
        if any(str(v).endswith("_std") for v in ds.data_vars):
            raise ImputeError("the file has per-cell spread (_std) but no samples; impute again with "
                              "--samples N --save-samples so that joint regions can be built")
        raise ImputeError("the file has no samples; make one with 'impute-cli impute IN OUT --samples 64 --save-samples'")
    return have


def half_widths(samples: np.ndarray, centre: np.ndarray, level: float) -> np.ndarray:
    """Per cell, the level-quantile of the samples' distances |x^(b) - x̂*| to the centre."""
    return np.quantile(np.abs(samples - centre), level, axis=0)


def intervals(u: Uncertain, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell interval: the one-cell case of the [UQ] region, x̂* ± the level-quantile of the
    samples' distances |x̂^(b) − x̂*| (observed cells: zero width)."""
    d = np.where(u.imputed, half_widths(u.samples, u.centre, level), 0.0)
    return u.centre - d, u.centre + d


def distances(u: Uncertain, values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """‖values_miss − x̂*_miss‖₂ per region over its imputed cells; `values` (..., *dims) ->
    (..., G), NaN for a region without imputed cells."""
    T = u.centre.shape[0]
    onehot = np.zeros((T, int(groups.max()) + 1))
    onehot[np.arange(T), groups] = 1.0
    d2 = np.where(u.imputed, (values - u.centre) ** 2, 0.0)
    per_t = d2.reshape(*d2.shape[: d2.ndim - u.centre.ndim], T, -1).sum(-1)  # (..., T)
    has = u.imputed.reshape(T, -1).any(1).astype(float) @ onehot > 0
    return np.where(has, np.sqrt(per_t @ onehot), np.nan)


def radii(u: Uncertain, level: float, groups: np.ndarray) -> np.ndarray:
    """D̂_{1−α} per region: the level-quantile of the samples' distances to x̂* ([UQ] §5)."""
    D = distances(u, u.samples, groups)  # (B, G)
    return np.quantile(D, level, axis=0)


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The ⌈(n + 1) level⌉-th smallest score: split-conformal validity at `level`."""
    s = np.sort(scores[~np.isnan(scores)])  # +inf (a miss by a zero-width interval) counts
    k = math.ceil((len(s) + 1) * level)
    if k > len(s):
        raise ImputeError(f"calibration has {len(s)} scores, too few for level {level:g} (needs at least "
                          f"{math.ceil(level / (1 - level) - 1e-9)}); raise --calibration-frames or use smaller regions (--group)")
    return float(s[k - 1])


def cell_scores(y: np.ndarray, c: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """How far y lies from c relative to the interval's half-width on its side (≤ 1: inside)."""
    below = y < c
    width = np.where(below, c - lo, hi - c)
    dist = np.abs(y - c)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(width > 0, dist / width, np.where(dist > 0, np.inf, 0.0))


def widen(c: np.ndarray, lo: np.ndarray, hi: np.ndarray, f: float) -> tuple[np.ndarray, np.ndarray]:
    return c - f * (c - lo), c + f * (hi - c)


def coverage(u: Uncertain, lo: np.ndarray, hi: np.ndarray, radius: np.ndarray, groups: np.ndarray,
             truth: np.ndarray) -> dict[str, Any]:
    """Coverage on truth: of imputed cells by their intervals, of regions by their balls."""
    sel = u.imputed & np.isfinite(truth)
    y = truth[sel]
    inside = (y >= lo[sel]) & (y <= hi[sel])
    per_t_complete = ~(u.imputed & ~np.isfinite(truth)).reshape(u.centre.shape[0], -1).any(1)
    G = len(radius)
    complete = np.ones(G, bool)
    np.logical_and.at(complete, groups, per_t_complete)
    D = distances(u, np.where(np.isfinite(truth), truth, u.centre), groups)
    ok = complete & np.isfinite(radius)
    return {"cells": int(sel.sum()), "cell_coverage": float(inside.mean()) if len(y) else float("nan"),
            "mean_width": float((hi[sel] - lo[sel]).mean()) if len(y) else float("nan"),
            "rmse": float(np.sqrt(((y - u.centre[sel]) ** 2).mean())) if len(y) else float("nan"),
            "regions": int(ok.sum()),
            "region_coverage": float((D[ok] <= radius[ok]).mean()) if ok.any() else float("nan")}


def check_same_grid(ds: xr.Dataset, truth: xr.Dataset, var: str, where: str, order: tuple[str, ...]) -> np.ndarray:
    """The truth's values of `var` with dims in `order`, refusing another grid."""
    if var not in truth:
        raise ImputeError(f"the truth file {where} has no variable '{var}'; give the complete field of the same variable")
    ref, tv = ds[f"{var}_filled"], truth[var]
    if set(tv.dims) != set(ref.dims):
        raise ImputeError(f"the truth file {where} has {var} on dims {tuple(tv.dims)} but the output on "
                          f"{tuple(ref.dims)}; give a truth file on the same grid")
    for d in ref.dims:
        if tv.sizes[d] != ref.sizes[d]:
            raise ImputeError(f"the truth file {where} has {tv.sizes[d]} values along '{d}' but the output has "
                              f"{ref.sizes[d]}; give a truth file on the same grid")
        if d in truth.coords and d in ds.coords and ds[d].dtype.kind == "f" and \
                not np.allclose(truth[d].values, ds[d].values, rtol=0, atol=1e-6 * max(1.0, float(np.abs(ds[d].values).max()))):
            raise ImputeError(f"the truth file {where} has other '{d}' coordinates than the output; "
                              "give a truth file on the same grid")
    return np.asarray(tv.transpose(*order).values, "float64")
