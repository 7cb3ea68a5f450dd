"""holdout: an observation mask -> the observed cells to hide for evaluation, with a realistic
pattern, so that a method can be scored on cells whose truth is known.

Every pattern works the same way: draw a random *priority* field over (T, H, W) whose level sets
have the pattern's shape, then hide the observed cells of highest priority until the requested
fraction of observed cells is hidden. The patterns:

- `pixel`: i.i.d. cells (sensor dropouts);
- `block`: rectangles of an 8 x 8 grid, out for runs of 4 time steps (instrument or tile outages);
- `cloud`: smooth random blobs drifting in time (a cloud mask);
- `station`: whole cell series (leave-station-out cross-validation: a site never seen);
- `empirical`: each time step gets the gaps of another, randomly chosen, time step of the same
  data, grown or shrunk to the fraction (DINEOF / DINCAE cross-validation: Beckers & Rixen 2003,
  Alvera-Azcárate et al. 2005; Barth et al. 2020). The real gap shapes of the data set, so the
  score is that of the gaps the user actually has. Clouds are grown or shrunk from their edges
  (a signed distance), never thinned to scattered pixels. On station series (a grid one cell
  high) a gap is an outage in time, so each station gets the gaps of another, randomly chosen,
  station, its outages lengthened or shortened from their ends: a time step's gaps borrowed
  from another step would hide one-step holes (runs of 1.2 steps on a GP record whose outages
  put a cell in runs of 23 steps on average), far easier to fill."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from impute_cli.config import HOLDOUTS
from impute_cli.errors import ImputeError, OptionError
from impute_cli.synthetic import cloud_field

BLOCK_GRID = 8
BLOCK_FRAMES = 4


@dataclass
class Holdout:
    """Cells hidden from the method, and what is left."""

    pattern: str
    hidden: np.ndarray  # (T, H, W) bool: observed cells hidden (their truth is known)
    fraction_requested: float
    fraction_hidden: float  # of the observed cells
    observed_after: float  # fraction of fillable cells still observed


def check_fraction(fraction: float) -> None:
    if not 0 < fraction < 1:
        raise OptionError(f"--fraction must lie strictly between 0 and 1 (the share of observed cells to hide), "
                          f"got {fraction:g}")


def priority(pattern: str, observed: np.ndarray, valid: np.ndarray, rng: np.random.Generator,
             outages: bool | None = None) -> np.ndarray:
    """(T, H, W) float: the order in which observed cells are hidden (highest first). `outages`
    (default: on a grid one cell high, a station series): `empirical` borrows other stations'
    outages in time rather than other time steps' gaps."""
    T, H, W = observed.shape
    if pattern == "pixel":
        return rng.random((T, H, W))
    if pattern == "block":
        bh, bw = -(-H // BLOCK_GRID), -(-W // BLOCK_GRID)
        runs = -(-T // BLOCK_FRAMES)
        p = rng.random((runs, -(-H // bh), -(-W // bw)))
        p = np.repeat(np.repeat(np.repeat(p, BLOCK_FRAMES, 0), bh, 1), bw, 2)[:T, :H, :W]
        return p + 1e-6 * rng.random((T, H, W))  # ties broken inside the block at the threshold only
    if pattern == "cloud":
        return cloud_field((T, H, W), rng)
    if pattern == "station":
        return np.broadcast_to(rng.random((1, H, W)), (T, H, W))
    if pattern == "empirical":
        return _borrowed_outages(observed, valid, rng) if (H == 1 if outages is None else outages) \
            else _borrowed_gaps(observed, valid, rng)
    raise ImputeError(f"unknown holdout '{pattern}'; use one of {', '.join(HOLDOUTS)}")


def _borrowed_gaps(observed: np.ndarray, valid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each time step t takes the gaps of a random donor step t' != t that has gaps (land is not a
    gap), as a signed distance to their edges, so that thresholding grows or shrinks the donor's
    gaps without changing their shapes."""
    T = observed.shape[0]
    gaps = ~observed & valid[None]
    gappy = np.flatnonzero(gaps.reshape(T, -1).any(1) & observed.reshape(T, -1).any(1))
    if len(gappy) == 0 or (len(gappy) == 1 and T == 1):
        raise OptionError("--holdout empirical borrows the data's own gaps from other time steps, but this "
                          "file has no partly observed time step; use --holdout cloud (or block, pixel, station)")
    donors = np.empty(T, int)
    for t in range(T):
        choices = gappy[gappy != t] if len(gappy) > 1 else gappy
        donors[t] = rng.choice(choices)
    return signed_distance(gaps[donors]) + 1e-3 * rng.random(observed.shape)


def _borrowed_outages(observed: np.ndarray, valid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Station series (T, 1, S): each station s takes the gaps of a random donor station s' != s
    that has gaps, as a signed distance along time to their ends, so that thresholding lengthens
    or shortens the donor's outages without cutting them into single steps."""
    gaps = ~observed[:, 0] & valid[0][None]  # (T, S)
    gappy = np.flatnonzero(gaps.any(0) & observed[:, 0].any(0))
    if len(gappy) == 0:
        raise OptionError("--holdout empirical borrows the data's own outages from other stations, but no station "
                          "of this file has one; use --holdout cloud (or block, pixel, station)")
    S = gaps.shape[1]
    donors = np.array([rng.choice(gappy[gappy != s] if len(gappy) > 1 else gappy) for s in range(S)])
    return signed_distance(gaps[:, donors].T[:, :, None]).transpose(1, 2, 0) + 1e-3 * rng.random(observed.shape)


def signed_distance(inside: np.ndarray) -> np.ndarray:
    """Per frame, the distance (in cells) from each cell of `inside` to the nearest cell outside
    it, and minus the distance to `inside` for the others: thresholding it shrinks the regions
    from their edges inwards or grows them outwards, keeping their shapes (not a random subset
    of their cells, which would make scattered pixels)."""
    from scipy.ndimage import distance_transform_edt
    out = np.zeros(inside.shape, "float32")
    for t, m in enumerate(inside):
        if m.all():
            out[t] = 1e6  # a frame with no observation at all: every cell is deep inside
        elif m.any():
            out[t] = distance_transform_edt(m) - distance_transform_edt(~m)
        else:
            out[t] = -1e6
    return out


def make_holdout(observed: np.ndarray, valid: np.ndarray, pattern: str, fraction: float,
                 seed: int = 0, outages: bool | None = None) -> Holdout:
    """Hide `fraction` of the observed cells of `observed` (T, H, W) with `pattern`.

    Refuses a fraction outside (0, 1), a holdout that hides nothing, and one that leaves a time
    series with nothing observed at all."""
    check_fraction(fraction)
    obs = observed & valid[None]
    n_obs = int(obs.sum())
    if n_obs == 0:
        raise ImputeError("the data have no observed cell to hide; evaluate needs observations")
    rng = np.random.default_rng([seed, HOLDOUTS.index(pattern) if pattern in HOLDOUTS else 99])
    p = priority(pattern, obs, valid, rng, outages)
    k = int(round(fraction * n_obs))
    # The k observed cells of highest priority (np.partition: O(n), ties at the threshold kept).
    vals = p[obs]
    thr = np.partition(vals, n_obs - k)[n_obs - k] if 0 < k < n_obs else (np.inf if k == 0 else -np.inf)
    hidden = obs & (p >= thr)
    left = obs & ~hidden
    if not hidden.any():
        raise ImputeError(f"the {pattern} holdout at --fraction {fraction:g} hides no cell; raise --fraction")
    if not left.any():
        raise ImputeError(f"the {pattern} holdout at --fraction {fraction:g} leaves nothing observed; "
                          "lower --fraction")
    total = max(int(valid.sum()) * obs.shape[0], 1)
    return Holdout(pattern, hidden, fraction, float(hidden.sum() / n_obs), float(left.sum() / total))
