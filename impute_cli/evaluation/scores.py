"""scores: estimates (and samples) on hidden cells + their truth -> the numbers `evaluate` reports.

Point scores: RMSE, MAE, bias (estimate − truth) and Pearson correlation. With samples:
- CRPS of the sample ensemble, CRPS = E|X − y| − ½ E|X − X'| (Gneiting & Raftery 2007,
  eq. 20), computed exactly from the sorted samples;
- per-cell intervals at each level as `confidence` builds them (x̂* ± the level-quantile of the
  samples' distances to x̂*): coverage and mean width;
- joint regions per time step as `confidence` builds them ([UQ] §5): the L2 ball around x̂* over
  the time step's hidden cells with radius the level-quantile of the samples' distances, and the
  fraction of time steps whose true values lie inside;
- a reliability curve: cell coverage against nominal level on a grid of levels.

Against the best classical method: the ratio of the two RMSEs on the same hidden cells, with an
interval from a block bootstrap (Efron & Tibshirani 1993, ch. 8; Kunsch 1989): the hidden cells
fall in blocks of one time step (or a few) by BLOCK × BLOCK grid cells, errors in one block move
together (one cloud, one front); on station series, of BLOCK time steps by BLOCK stations (an
outage at a station spans many steps, and its errors move together along it). Whole blocks are
drawn with replacement, and each draw's
ratio is sqrt(sum of the model's squared errors / sum of the other's) over the drawn blocks. The
cell coverage of the samples' intervals gets its interval from the same blocks."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from impute_cli.uncertainty.regions import half_widths

RELIABILITY_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
BLOCK = 16  # grid cells a side of a bootstrap block
MAX_BLOCKS = 20_000  # more blocks than this: a block spans several time steps
DRAWS = 1000  # bootstrap draws


def point_scores(est: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """RMSE, MAE, bias and correlation over paired 1-D arrays; a NaN estimate counts as a miss
    (its RMSE is NaN), never silently dropped."""
    e = est.astype("float64") - truth.astype("float64")
    out = {"rmse": float(np.sqrt(np.mean(e**2))), "mae": float(np.mean(np.abs(e))), "bias": float(np.mean(e)),
           "corr": float("nan"), "cells": int(e.size), "nan_left": int(np.isnan(est).sum())}
    if e.size > 1 and np.std(est) > 0 and np.std(truth) > 0:
        out["corr"] = float(np.corrcoef(est.astype("float64"), truth.astype("float64"))[0, 1])
    return out


def crps_ensemble(samples: np.ndarray, truth: np.ndarray) -> float:
    """Mean CRPS of ensembles `samples` (N, n) for observations `truth` (n).

    E|X − y| directly; E|X − X'| = (2 / N²) Σ_i (2i − N − 1) x_(i) over the sorted members."""
    s = np.sort(samples.astype("float64"), axis=0)
    N = s.shape[0]
    e_xy = np.abs(s - truth[None]).mean(0)
    w = (2 * np.arange(1, N + 1) - N - 1)[:, None]
    e_xx = 2.0 / N**2 * (w * s).sum(0)
    return float(np.mean(e_xy - 0.5 * e_xx))


def cell_coverage(samples: np.ndarray, centre: np.ndarray, truth: np.ndarray, level: float) -> tuple[float, float]:
    """(coverage, mean width) of the intervals centre ± q_level(|x^(b) − centre|), as
    `confidence` builds them."""
    d = half_widths(samples, centre, level)
    return float(np.mean(np.abs(truth - centre) <= d)), float(np.mean(2 * d))


def region_coverage(samples: np.ndarray, centre: np.ndarray, truth: np.ndarray, region: np.ndarray,
                    level: float) -> tuple[float, int]:
    """(coverage, number of regions) of the L2 balls per region id `region` (n) ([UQ] Cor. 1)."""
    ids, inv = np.unique(region, return_inverse=True)
    G = len(ids)
    d2_s = np.zeros((samples.shape[0], G))
    for b in range(samples.shape[0]):
        d2_s[b] = np.bincount(inv, (samples[b] - centre) ** 2, minlength=G)
    d2_y = np.bincount(inv, (truth - centre) ** 2, minlength=G)
    radius = np.quantile(np.sqrt(d2_s), level, axis=0)
    return float(np.mean(np.sqrt(d2_y) <= radius)), G


def sample_scores(samples: np.ndarray, centre: np.ndarray, truth: np.ndarray, region: np.ndarray,
                  levels: tuple[float, ...], blocks: Blocks | None = None, seed: int = 0,
                  calibrated: tuple[float, float] | None = None) -> dict[str, Any]:
    """Everything the samples of hidden cells say: CRPS, spread, intervals, regions, reliability.
    `blocks`: the cells' bootstrap blocks (`block_index`), for a 90 % interval of each cell coverage.
    `calibrated` (level, factor): also the intervals as `impute` writes them, centre ± factor ×
    the level's half-width (`calibrated`: coverage, its interval, mean width)."""
    out: dict[str, Any] = {"samples": int(samples.shape[0]), "crps": crps_ensemble(samples, truth),
                           "mean_std": float(np.sqrt(np.mean((samples - centre[None]) ** 2))),
                           "levels": {}}
    half: dict[float, np.ndarray] = {}  # each level's half-widths, found once
    for lv in levels:
        half[lv] = d = half_widths(samples, centre, lv)
        covered = np.abs(truth - centre) <= d
        reg, G = region_coverage(samples, centre, truth, region, lv)
        out["levels"][f"{lv:g}"] = {"cell_coverage": float(np.mean(covered)), "mean_width": float(np.mean(2 * d)),
                                    "region_coverage": reg, "regions": G}
        if blocks is not None and len(truth):
            out["levels"][f"{lv:g}"]["cell_coverage_interval"] = coverage_interval(covered, blocks, seed=seed)
    if calibrated is not None and len(truth):
        lv, factor = calibrated
        d = factor * (half[lv] if lv in half else half_widths(samples, centre, lv))
        covered = np.abs(truth - centre) <= d
        out["calibrated"] = {"level": lv, "factor": float(factor), "cell_coverage": float(np.mean(covered)),
                             "mean_width": float(np.mean(2 * d)),
                             "cell_coverage_interval": coverage_interval(covered, blocks, seed=seed)
                             if blocks is not None else None}
    out["reliability"] = [[lv, cell_coverage(samples, centre, truth, lv)[0]] for lv in RELIABILITY_LEVELS]
    return out


class Blocks(NamedTuple):
    """The bootstrap blocks of the hidden cells (`block_index`)."""

    index: np.ndarray  # (n,) the block of each cell
    steps: int  # time steps a block spans
    across: str  # what it spans in space, in words: "16 × 16 cells", "16 stations"


def block_index(where: np.ndarray, series: bool = False) -> Blocks:
    """The bootstrap block of each cell at grid positions `where` (n, 3) = (t, y, x): one time
    step (more, above MAX_BLOCKS blocks) by BLOCK x BLOCK cells; on station series (y = 0, x the
    station), BLOCK time steps (more, above MAX_BLOCKS) by BLOCK stations."""
    t, y, x = (where[:, i].astype("int64") for i in range(3))
    ny, nx = int(y.max()) // BLOCK + 1, int(x.max()) // BLOCK + 1
    steps = BLOCK if series else 1
    block = np.unique(((t // steps) * ny + y // BLOCK) * nx + x // BLOCK, return_inverse=True)[1]
    if (more := -(-(int(block.max()) + 1) // MAX_BLOCKS)) > 1:  # too many blocks: each spans more time steps
        steps *= more
        block = np.unique(((t // steps) * ny + y // BLOCK) * nx + x // BLOCK, return_inverse=True)[1]
    return Blocks(block, steps, f"{BLOCK} stations" if series else f"{BLOCK} × {BLOCK} cells")


def block_words(interval: dict[str, Any]) -> str:
    """A ratio interval's blocks in words: "1 time step × 16 × 16 cells", "16 time steps × 16 stations"."""
    steps = interval["block_steps"]
    across = interval.get("block_across", f"{interval['block_cells']} × {interval['block_cells']} cells")
    return f"{steps} time step{'s' if steps != 1 else ''} × {across}"


def block_draws(num: np.ndarray, den: np.ndarray, block: np.ndarray, key: int, seed: int) -> np.ndarray:
    """(DRAWS,) sum(num) / sum(den) over blocks drawn with replacement (as many as there are)."""
    nb = int(block.max()) + 1
    a = np.bincount(block, num.astype("float64"), minlength=nb)
    b = np.bincount(block, den.astype("float64"), minlength=nb)
    rng = np.random.default_rng([seed, key])
    draws = np.empty(DRAWS)
    for k in range(DRAWS):
        pick = rng.integers(nb, size=nb)
        draws[k] = a[pick].sum() / max(b[pick].sum(), 1e-300)
    return draws


def ratio_interval(err: np.ndarray, other: np.ndarray, blocks: Blocks, level: float = 0.9,
                   seed: int = 0) -> dict[str, Any] | None:
    """The interval at `level` of RMSE(err) / RMSE(other), both (n,) errors on the same hidden
    cells, in bootstrap `blocks` (`block_index`); None when it is not defined (no cell, a missing
    estimate, an exact other). See the module doc."""
    if err.size == 0 or not (np.isfinite(err).all() and np.isfinite(other).all()) or not (other != 0).any():
        return None
    draws = np.sqrt(block_draws(err.astype("float64") ** 2, other.astype("float64") ** 2, blocks.index, 8353, seed))
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return {"level": level, "low": float(lo), "high": float(hi), "blocks": int(blocks.index.max()) + 1,
            "block_steps": blocks.steps, "block_cells": BLOCK, "block_across": blocks.across}


def coverage_interval(covered: np.ndarray, blocks: Blocks, level: float = 0.9,
                      seed: int = 0) -> list[float]:
    """[low, high]: the interval at `level` of the share of cells `covered` (n,) bool, by the
    same block bootstrap (a coverage of 91 % from a few clouds is less sure than from many)."""
    draws = block_draws(covered, np.ones(len(covered)), blocks.index, 8354, seed)
    return [float(q) for q in np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])]
