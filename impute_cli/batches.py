"""batches: tiles of a Cube -> normalised tensors the denoiser takes.

x_obs is (F, C, h, w) with zeros where missing (its values there are never used: every use
is masked by M), M is the observation mask, valid the static 'fillable' mask (h, w)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .dataset import Cube, Stats
from .windows import Tile


@dataclass
class TileBatch:
    x_obs: torch.Tensor  # (B, F, C, h, w) float32, normalised, 0 where missing
    M: torch.Tensor  # (B, F, C, h, w) bool
    valid: torch.Tensor  # (B, h, w) bool
    tiles: list[Tile]


def normalise(values: np.ndarray, stats: Stats) -> np.ndarray:
    mean = np.asarray(stats.mean, "float32")[None, :, None, None]
    std = np.asarray(stats.std, "float32")[None, :, None, None]
    return (values - mean) / std


def denormalise(values: np.ndarray, stats: Stats) -> np.ndarray:
    mean = np.asarray(stats.mean, "float32")[None, :, None, None]
    std = np.asarray(stats.std, "float32")[None, :, None, None]
    return values * std + mean


def read_tiles(cube: Cube, tiles: list[Tile], stats: Stats) -> TileBatch:
    xs, ms, vs = [], [], []
    for tile in tiles:
        raw = cube.read(tile.t, tile.y, tile.x)
        M = cube.observed(raw, tile.y, tile.x)
        xs.append(np.where(M, normalise(raw, stats), 0.0).astype("float32"))
        ms.append(M)
        vs.append(cube.valid[tile.y, tile.x])
    return TileBatch(torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ms)),
                     torch.from_numpy(np.stack(vs)), tiles)
