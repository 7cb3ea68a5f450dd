"""sampling: a model + an in-memory block of the cube + its point estimate -> the samples of
[CQ] Alg. 4 (`draw_samples`), tile class by tile class; and how many member windows go through
the network at once, for the samples and the point estimate (`members_per_call`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from impute_cli.inference.solver import sample_windows
from impute_cli.inference.student import student_windows
from impute_cli.io.cube import Cube
from impute_cli.io.tiling import colour_classes, plan_tiles, tile_window
from impute_cli.model.batches import read_tiles
from impute_cli.progress import progress_bar

# Cells through the network at once (64 windows of 8 x 32 x 32): the point estimate and the
# sampler send as many member windows per call as make up this many cells (at least the
# preset's impute.batch_size), so small windows (station series) fill the call too.
CELLS_PER_CALL = 64 * 8 * 32 * 32
SAMPLE_CHUNK_BYTES = 64 * 1024**2  # at most about this much of samples per solver call (windows x members)


def members_per_call(window: tuple[int, int, int], batch_size: int) -> int:
    """Member windows per network call: CELLS_PER_CALL cells' worth, at least `batch_size`."""
    return max(batch_size, CELLS_PER_CALL // int(np.prod(window)))


def window_generator(seed: int, tile: int, region: int = 0) -> torch.Generator:
    """The samples of tile `tile` of region `region`: its own stream, whatever the batching."""
    state = np.random.SeedSequence([seed, region, tile]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def draw_samples(job: Any, cube: Cube, est: np.ndarray, sums: tuple[np.ndarray, np.ndarray],
                 region: int) -> np.ndarray:
    """(N, T, C, H, W) samples of an in-memory cube in normalised units ([CQ] Alg. 4 per tile,
    see `solver.sample_windows`), for `job`, an `inference.fill.FillJob` (not imported: fill
    imports this module).

    Tiles are sampled class by class (`tiling.colour_classes`): the tiles of one class do not
    overlap and go through the network together; a tile's cells sampled by a tile of an earlier
    class are held fixed with each member's values. E_imp of a tile is the blended point
    estimate `est` there."""
    card, den, stats = job.card, job.denoiser, job.stats
    assert card is not None and stats is not None
    cfg = card.preset.impute
    N = job.samples
    T, H, W = cube.grid.shape
    device = next(den.parameters()).device
    window = tile_window(job.window, (T, H, W))
    gap = ~cube.observed(cube.memory) & cube.valid[None, None]
    tiles = [(i, tl) for i, tl in enumerate(plan_tiles((T, H, W), window, cfg.sample_overlap))
             if gap[tl.t, :, tl.y, tl.x].any()]
    samples = np.zeros((N, *cube.memory.shape), "float32")
    done = np.zeros((T, 1, H, W), bool)  # cells some tile has already sampled
    batch = members_per_call(window, cfg.batch_size)  # members through the network at once, across the tiles of a class
    per_window = N * len(cube.channels) * int(np.prod(window)) * 4  # bytes of one window's N samples
    per_call = max(1, SAMPLE_CHUNK_BYTES // per_window)  # windows per solver call
    sampler = job.context_sampler
    pool = job.pool if job.pool is not None else np.ones((1, H, W), bool)
    bar = progress_bar(len(tiles), f"{N} samples", "tile", enabled=job.progress, leave=False)
    for cls in colour_classes([tl for _, tl in tiles]):
        for k in range(0, len(cls), per_call):
            chunk = [tiles[c] for c in cls[k:k + per_call]]
            b = read_tiles(cube, [tl for _, tl in chunk], stats, sums)
            x_imp, fixed = [], []
            for j, (_, tl) in enumerate(chunk):
                e = est[tl.t, :, tl.y, tl.x]
                x_imp.append(torch.from_numpy(np.where(np.isfinite(e), e, b.x_obs[j].numpy())))
                fixed.append(torch.from_numpy(np.broadcast_to(done[tl.t, :, tl.y, tl.x], b.M[j].shape).copy()) & ~b.M[j])
            common = {"generators": [window_generator(job.seed, i, region) for i, _ in chunk], "samples": N,
                      "batch_size": batch, "sums": (b.S.to(device), b.N.to(device)),
                      "fixed": torch.stack(fixed).to(device),
                      "fixed_values": torch.from_numpy(np.stack([samples[:, tl.t, :, tl.y, tl.x] for _, tl in chunk]))}
            if job.student_weights is not None:  # the distilled sampler: one call per sample
                new = student_windows(job.student, b.x_obs.to(device), b.M.to(device), b.valid.to(device),
                                      delta=cfg.delta, **common)
            else:
                new = sample_windows(
                    den, b.x_obs.to(device), b.M.to(device), b.valid.to(device), torch.stack(x_imp).to(device),
                    sampler=sampler, pool=pool, train_ratio=card.preset.mask.context_ratio, steps=job.steps,
                    delta=cfg.delta, eta=cfg.eta, omega_kind=job.omega, solver=job.solver, **common)
            for j, (_, tl) in enumerate(chunk):  # the tiles of a class are disjoint: any order
                keep = done[tl.t, :, tl.y, tl.x]
                samples[:, tl.t, :, tl.y, tl.x] = np.where(keep[None], samples[:, tl.t, :, tl.y, tl.x], new[j].numpy())
                done[tl.t, :, tl.y, tl.x] = True
            bar.update(len(chunk))
    bar.close()
    return samples
