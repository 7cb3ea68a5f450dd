"""batches: tiles of a Cube -> normalised tensors the denoiser takes.

x_obs is (F, C, h, w) with zeros where missing (its values there are never used: every use
is masked by M), M is the observation mask, valid the static 'fillable' mask (h, w).

The per-cell climatology input: the fully convolutional network does not know where a tile
lies, so it is also given, per cell and channel, the mean of the cube's observed values over
time -- computed only from what it may see: the cube's sums S and counts N minus the window's
observed cells left out of the context."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from impute_cli.io.cube import Cube

from impute_cli.io.stats import Stats
from impute_cli.io.tiling import Tile


@dataclass
class TileBatch:
    x_obs: torch.Tensor  # (B, F, C, h, w) float32, normalised, 0 where missing
    M: torch.Tensor  # (B, F, C, h, w) bool
    valid: torch.Tensor  # (B, h, w) bool
    tiles: list[Tile]
    S: torch.Tensor  # (B, C, h, w) sum over the cube's time of observed normalised values
    N: torch.Tensor  # (B, C, h, w) number of observed values over the cube's time


def context_climatology(S: torch.Tensor, N: torch.Tensor, x_obs: torch.Tensor, M: torch.Tensor,
                        M_ctx: torch.Tensor) -> torch.Tensor:
    """(B, 2C, h, w): the per-cell mean over time of the observed values the network may see
    (the window's non-context observed cells removed), and where such a mean exists."""
    left_out = (M & ~M_ctx).to(x_obs.dtype)
    S2 = S - (x_obs * left_out).sum(1)
    N2 = N - left_out.sum(1)
    have = N2 > 0.5
    clim = torch.where(have, S2 / N2.clamp(min=1), torch.zeros_like(S2))
    return torch.cat([clim, have.to(x_obs.dtype)], dim=1)


def normalise(values: np.ndarray, stats: Stats) -> np.ndarray:
    mean = np.asarray(stats.mean, "float32")[None, :, None, None]
    std = np.asarray(stats.std, "float32")[None, :, None, None]
    return (values - mean) / std


def denormalise(values: np.ndarray, stats: Stats) -> np.ndarray:
    mean = np.asarray(stats.mean, "float32")[None, :, None, None]
    std = np.asarray(stats.std, "float32")[None, :, None, None]
    return values * std + mean


def read_tiles(cube: Cube, tiles: list[Tile], stats: Stats, sums: tuple[np.ndarray, np.ndarray]) -> TileBatch:
    return tile_batch(cube, tiles, [cube.read(tl.t, tl.y, tl.x) for tl in tiles], stats, sums)


def tile_batch(cube: Cube, tiles: list[Tile], raws: list[np.ndarray], stats: Stats,
               sums: tuple[np.ndarray, np.ndarray]) -> TileBatch:
    """The batch of tiles whose raw values (F, C, h, w) are already read (training reads each
    tile once: it looks at its values to decide whether to keep it)."""
    xs, ms, vs = [], [], []
    for tile, raw in zip(tiles, raws):
        M = cube.observed(raw, tile.y, tile.x)
        xs.append(np.where(M, normalise(raw, stats), 0.0).astype("float32"))
        ms.append(M)
        vs.append(cube.valid[tile.y, tile.x])
    S = np.stack([sums[0][:, tl.y, tl.x] for tl in tiles])
    N = np.stack([sums[1][:, tl.y, tl.x] for tl in tiles])
    return TileBatch(torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ms)),
                     torch.from_numpy(np.stack(vs)), tiles, torch.from_numpy(S), torch.from_numpy(N))


