"""observation: a cube's observed cells -> the observation mask M, the pool of real gap shapes
(for the `empirical` context strategy and holdout), the gap statistics, and the context strategy
that `auto` picks from them."""

from __future__ import annotations

import dask.array as dsa
import numpy as np

from impute_cli.io.cube import Cube, compute


def observation_masks(cube: Cube) -> np.ndarray:
    """(T, C, H, W) observation mask M of the whole cube (bool, 1 byte a cell)."""
    return np.asarray(compute(dsa.isfinite(cube.data))[0]) & cube.valid[None, None]


def observation_pool(observed: np.ndarray, valid: np.ndarray, n_targets: int | None = None) -> np.ndarray:
    """Real gap patterns for `empirical`: (T, H, W) True where observed in any imputed channel
    (the first `n_targets`; None: all) or where the cell is never to be filled (land), so that
    only real gaps are borrowed."""
    return observed[:, :n_targets].any(1) | ~valid[None]


POOL_BYTES = 64 * 1024**2  # the empirical pool is at most this big (1 byte a cell)


def pool_from_cube(cube, frames: int, max_bytes: int = POOL_BYTES) -> np.ndarray:
    """The `observation_pool` of a cube, read lazily: every time step when it fits in
    `max_bytes`, else evenly spaced runs of 4 windows' worth of frames (real gap shapes in
    their real sequence) up to that size, so memory does not grow with the cube (the data are
    read a block of time steps at a time, each block within `max_bytes` too)."""
    T, H, W = cube.grid.shape
    cap = max(frames, max_bytes // max(H * W, 1))
    if T <= cap:
        runs = [slice(0, T)]
    else:
        run = min(4 * frames, cap)
        n = max(1, cap // run)
        runs = [slice(int(s), int(s) + run) for s in np.linspace(0, T - run, n).round()]
    # Read the data (4 bytes a cell and channel) in blocks of time steps that also fit in
    # max_bytes, and keep only each block's pool (1 byte a cell).
    step = max(1, max_bytes // max(4 * len(cube.channels) * H * W, 1))
    parts = []
    for t in runs:
        for s in range(t.start, t.stop, step):
            vals = cube.read(slice(s, min(s + step, t.stop)), slice(None), slice(None))
            parts.append(observation_pool(cube.observed(vals), cube.valid, cube.n_targets))
    return np.concatenate(parts)


def gap_statistics(pool: np.ndarray, valid: np.ndarray | None = None) -> dict[str, float]:
    """How the data's gaps look over fillable cells: missing fraction and how clustered they are
    (the probability that a gap's right/lower neighbour is also a gap, against the missing
    fraction). Land (outside `valid`) counts neither as gap nor as observed. A series (H = 1)
    has no lower neighbour and its stations may be in any order: there the more clustered of
    two directions counts, along the stations or to the next time step, so a station out for
    a run of time steps counts as clustered."""
    gap = ~pool
    valid = np.ones(pool.shape[1:], bool) if valid is None else valid
    p = float(gap[:, valid].mean())
    if p == 0.0:
        return {"missing": 0.0, "neighbour_missing": 0.0}
    vx = valid[:, :-1] & valid[:, 1:]  # neighbour pairs (a gap, its neighbour) between fillable cells
    along_x = (gap[:, :, :-1][:, vx], gap[:, :, 1:][:, vx])
    if pool.shape[1] > 1:
        vy = valid[:-1] & valid[1:]
        pairs = [along_x, (gap[:, :-1][:, vy], gap[:, 1:][:, vy])]
        q = sum(int((a & b).sum()) for a, b in pairs) / max(sum(int(a.sum()) for a, _ in pairs), 1)
    else:
        q = max(int((a & b).sum()) / max(int(a.sum()), 1)
                for a, b in (along_x, (gap[:-1][:, valid], gap[1:][:, valid])))
    return {"missing": p, "neighbour_missing": float(q)}


def gap_run_length(pool: np.ndarray, valid: np.ndarray | None = None) -> float:
    """How long the data's gaps last in time: the median, over the missing fillable cells, of
    the run of consecutive missing time steps each cell lies in (a cell of a 20-step outage
    counts 20, and so do the other 19); 0 without gaps."""
    valid = np.ones(pool.shape[1:], bool) if valid is None else valid
    gap = ~pool[:, valid]  # (T, cells)
    edge = np.zeros((1, gap.shape[1]), np.int8)
    step = np.diff(np.concatenate([edge, gap.astype(np.int8), edge]), axis=0).T  # (cells, T + 1)
    runs = np.nonzero(step == -1)[1] - np.nonzero(step == 1)[1]  # ends minus starts, cell by cell
    if not runs.size:
        return 0.0
    # the median of each run repeated run times, without materialising the repeats: the run
    # lengths sorted, weighted by themselves
    runs = np.sort(runs)
    weight = np.cumsum(runs)
    half = weight[-1] / 2
    lo = runs[np.searchsorted(weight, half)]  # the cell at or just past the middle
    hi = runs[np.searchsorted(weight, half, side="right")] if weight[-1] % 2 == 0 else lo
    return float((lo + hi) / 2)


def choose_pattern(pool: np.ndarray, valid: np.ndarray | None = None) -> tuple[str, str]:
    """`auto`: pick the context strategy from the data's own gaps (over fillable cells), with
    the reason."""
    st = gap_statistics(pool, valid)
    p, q = st["missing"], st["neighbour_missing"]
    if p == 0.0:
        return "mixed", "the data have no gaps, so a mixture of gap shapes is learned"
    if q - p < 0.25 * (1 - p):
        return "pixel", f"gaps are scattered ({p:.0%} missing; a gap's neighbour is a gap {q:.0%} of the time)"
    return "empirical", (f"gaps are clustered ({p:.0%} missing; a gap's neighbour is a gap {q:.0%} of the time), "
                         "so real gap shapes are borrowed from other windows")


def gap_distance(observed: np.ndarray, cap: int = 8) -> np.ndarray:
    """(T, C, H, W) observation mask -> how deep in its gap each cell lies: the smallest r such
    that an observed cell of the same channel lies within r time steps and r cells across
    (Chebyshev distance in time and space), at most `cap`; 0 for observed cells (uint8).

    Unlike `inference.blend.distance_to_observed` (within the frame), time counts too: a cell of
    a wholly missing frame lies as deep as the steps to the nearest observed one. The box
    dilation is separable: widening the reach by one step along each axis in turn widens it by
    one in the Chebyshev sense."""
    dist = np.where(observed, 0, cap).astype(np.uint8)
    reach = observed.copy()
    for r in range(1, cap):
        for axis in (0, 2, 3):
            grown = reach.copy()
            lo = [slice(None)] * 4
            hi = [slice(None)] * 4
            lo[axis], hi[axis] = slice(0, -1), slice(1, None)
            grown[tuple(lo)] |= reach[tuple(hi)]
            grown[tuple(hi)] |= reach[tuple(lo)]
            reach = grown
        new = reach & (dist == cap)
        if not new.any():
            break
        dist[new] = r
    return dist


def missing_neighbours(observed: np.ndarray, classes: int = 8) -> np.ndarray:
    """(T, C, H, W) observation mask -> how sparse the context around each cell is: the share of
    its 26 neighbours in time and space (the 3 x 3 x 3 box, edges replicated) that are not
    observed in its channel, in `classes` + 1 classes, 0 (all observed) .. `classes` (none) (uint8).

    `gap_distance` tells scattered gap cells apart no more (every one lies at depth 1); this does:
    a scattered gap cell with fewer observed neighbours is harder to fill."""
    T, _, H, W = observed.shape
    p = np.pad(observed, ((1, 1), (0, 0), (1, 1), (1, 1)), mode="edge")
    seen = np.zeros(observed.shape, np.uint16)  # a byte or two a cell: the calibration's cube can be large
    for dt in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if (dt, dy, dx) != (0, 0, 0):
                    seen += p[1 + dt:1 + dt + T, :, 1 + dy:1 + dy + H, 1 + dx:1 + dx + W]
    # rounded to the nearest class (26 is even, 8 x missing never lies half-way)
    return (((26 - seen) * classes + 13) // 26).astype(np.uint8)
