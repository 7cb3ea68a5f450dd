"""windows: space-time windows and tiles as pure functions of sizes (slices before data)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tile:
    """One window of the cube: where to read (and write) it."""

    t: slice
    y: slice
    x: slice


def window_shape(grid_shape: tuple[int, int, int], frames: int, height: int, width: int) -> tuple[int, int, int]:
    """The training/imputation window, clipped to the cube."""
    T, H, W = grid_shape
    return min(frames, T), min(height, H), min(width, W)


def starts(size: int, window: int, overlap: float) -> list[int]:
    """Window starts covering [0, size) with at least `overlap` of a window shared; the last
    window ends at the edge."""
    if window >= size:
        return [0]
    stride = max(1, int(round(window * (1 - overlap))))
    s = list(range(0, size - window, stride))
    return s + [size - window]


def plan_tiles(grid_shape: tuple[int, int, int], window: tuple[int, int, int], overlap: float) -> list[Tile]:
    T, H, W = grid_shape
    f, h, w = window
    return [Tile(slice(t, t + f), slice(y, y + h), slice(x, x + w))
            for t in starts(T, f, overlap) for y in starts(H, h, overlap) for x in starts(W, w, overlap)]


def random_tile(grid_shape: tuple[int, int, int], window: tuple[int, int, int], rng: np.random.Generator) -> Tile:
    T, H, W = grid_shape
    f, h, w = window
    t, y, x = (int(rng.integers(0, n - k + 1)) for n, k in ((T, f), (H, h), (W, w)))
    return Tile(slice(t, t + f), slice(y, y + h), slice(x, x + w))


def blend_weights(window: tuple[int, int, int]) -> np.ndarray:
    """Separable taper (f, h, w) for overlap blending: highest in the centre, never zero, so
    every cell covered by any tile gets a value and seams are smoothed."""
    def ramp(n: int) -> np.ndarray:
        i = np.arange(n, dtype="float64")
        return np.minimum(i + 1, n - i) / ((n + 1) / 2)

    f, h, w = window
    return (ramp(f)[:, None, None] * ramp(h)[None, :, None] * ramp(w)[None, None, :]).astype("float32")
