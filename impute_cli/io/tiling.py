"""tiling: space-time windows, tiles and regions as pure functions of sizes (slices before data)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from impute_cli.io.cube import Grid


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


def frames_for_gaps(frames: int, max_frames: int, run: float) -> int:
    """The window's frames for data whose missing cells lie in runs of `run` missing time steps
    (`masks.observation.gap_run_length`): the smallest multiple of `frames` that spans the run
    and an observed step on each side, at most `max_frames` (at least `frames`)."""
    if max_frames <= frames:
        return frames
    need = int(np.ceil(run)) + 2
    return max(frames, min(max_frames, frames * -(-need // frames)))


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


def _interval_colours(spans: list[tuple[int, int]]) -> dict[tuple[int, int], int]:
    """Greedy colouring of intervals [a, b) in order of their start: two intervals of one colour
    never overlap."""
    ends: list[int] = []  # per colour, the end of its last interval
    colour = {}
    for a, b in sorted(set(spans)):
        c = next((k for k, e in enumerate(ends) if e <= a), len(ends))
        if c == len(ends):
            ends.append(b)
        ends[c] = b
        colour[(a, b)] = c
    return colour


def colour_classes(tiles: list[Tile]) -> list[list[int]]:
    """The tiles (by position in `tiles`) in classes of pairwise disjoint tiles, classes in a
    fixed order: each axis's spans are coloured so that spans of one colour are disjoint, and a
    tile's class is its three colours -- two tiles of one class differ on some axis, where their
    spans are disjoint. Tiles of one class can be processed together; a later class sees what
    the earlier ones wrote."""
    axes = [_interval_colours([(s.start, s.stop) for s in (getattr(tl, a) for tl in tiles)]) for a in "tyx"]
    keys = [tuple(axes[k][(getattr(tl, a).start, getattr(tl, a).stop)] for k, a in enumerate("tyx")) for tl in tiles]
    return [[i for i, k in enumerate(keys) if k == key] for key in sorted(set(keys))]


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


@dataclass(frozen=True)
class Region:
    """One piece of the cube imputed on its own: `core` is what it writes, `outer` what it
    reads and fills (the core with a margin of context, clipped at the cube's edges)."""

    index: int
    core: Tile
    outer: Tile


@dataclass(frozen=True)
class RegionPlan:
    """The cube cut into a regular grid of regions (equal sizes along each axis but the last),
    so that every output variable gets the same chunks. The plan depends only on sizes, never
    on how many workers run it, so any scheduler computes the same regions."""

    bounds: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]  # cut points along t, y, x
    margin: tuple[int, int, int]
    window: tuple[int, int, int]  # an outer region is never smaller than this (when the cube is not)

    @property
    def counts(self) -> tuple[int, int, int]:
        return tuple(len(b) - 1 for b in self.bounds)  # type: ignore[return-value]

    def chunks(self, axis: int) -> tuple[int, ...]:
        b = self.bounds[axis]
        return tuple(b[i + 1] - b[i] for i in range(len(b) - 1))

    def regions(self) -> list[Region]:
        out = []
        ends = [b[-1] for b in self.bounds]
        for it in range(self.counts[0]):
            for iy in range(self.counts[1]):
                for ix in range(self.counts[2]):
                    idx = (it, iy, ix)
                    core = [slice(self.bounds[a][idx[a]], self.bounds[a][idx[a] + 1]) for a in range(3)]
                    outer = [_widen(c, m, k, n) for c, m, k, n in zip(core, self.margin, self.window, ends)]
                    out.append(Region(len(out), Tile(*core), Tile(*outer)))
        return out


def _widen(core: slice, margin: int, window: int, n: int) -> slice:
    """The core plus `margin` on each side, clipped to [0, n), and widened (backwards first) to
    at least `window` so that a short last region still holds whole windows."""
    a, b = max(0, core.start - margin), min(n, core.stop + margin)
    if b - a < window:
        a = max(0, b - window)
        b = min(n, a + window)
    return slice(a, b)


def _cuts(n: int, size: int) -> tuple[int, ...]:
    """0, size, 2 size, ..., n (the last piece may be shorter: Zarr's rule for chunks)."""
    return tuple(range(0, n, size)) + (n,)


def plan_regions(grid_shape: tuple[int, int, int], window: tuple[int, int, int], cell_bytes: int,
                 budget: int) -> RegionPlan:
    """Regions of at most about `budget` bytes of working memory at `cell_bytes` a grid cell
    (all channels and samples together). Whole maps are kept when at least 4 windows' worth of
    time steps (or the whole record, when shorter) fit, since cutting in space costs more seams than cutting in time; else the
    larger spatial side is halved until they fit (or the side is down to 2 windows). The
    margin -- context read around each region and thrown away -- is half a window along each
    cut axis."""
    T, H, W = grid_shape
    f, h, w = window
    cells = max(1, budget // max(cell_bytes, 1))
    hy, wx = H, W
    while min(4 * f, T) * hy * wx > cells and (hy > 2 * h or wx > 2 * w):
        if hy / h >= wx / w and hy > 2 * h:
            hy = -(-hy // 2)
        else:
            wx = -(-wx // 2)
    mt, my, mx = f // 2, (h // 2 if hy < H else 0), (w // 2 if wx < W else 0)
    L = max(4 * f, cells // max((hy + 2 * my) * (wx + 2 * mx), 1) - 2 * mt)
    if L >= T:
        mt = 0
    return RegionPlan((_cuts(T, min(L, T)), _cuts(H, hy), _cuts(W, wx)), (mt, my, mx), (f, h, w))


def cell_bytes(channels: int, samples: int, save_samples: bool) -> int:
    """Working memory per grid cell of a region: about 40 bytes a channel for the values, masks,
    blending sums, estimate and output variables, and per sample 16 (the samples, their copy
    per variable, the quantiles' sort) plus 4 more when they are written."""
    return channels * (40 + samples * (16 + (4 if save_samples else 0)))


def tile_window(window: tuple[int, int, int], grid: tuple[int, int, int]) -> tuple[int, int, int]:
    """The tile of the point estimate and the samples: the model's window clipped to the grid,
    and the whole of a spatial dim when it is at most twice the window (a convolutional or patch
    network takes any size), so that a dim just over the window is not covered by two near-copies
    of one tile."""
    f, h, w = (min(a, b) for a, b in zip(window, grid))
    _, H, W = grid
    return f, (H if H <= 2 * h else h), (W if W <= 2 * w else w)


def wrap_margin(grid: Grid, window: tuple[int, int, int]) -> int:
    """Columns to borrow from the other side of a grid that wraps around in longitude (half a
    window), when a cube on `grid` spans its whole width; 0 otherwise."""
    W = grid.shape[2]
    return min(W, max(1, window[2] // 2)) if grid.wraps and W == len(grid.x_values) else 0
