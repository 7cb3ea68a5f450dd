"""Tiling: starts and tiles cover every cell, the last tile ends at the edge, blend weights are
positive tapers, and tiles fall in classes of disjoint tiles for sampling."""

from __future__ import annotations

import numpy as np
import pytest

from impute_cli.io.tiling import blend_weights, colour_classes, plan_tiles, random_tile, starts, window_shape


@pytest.mark.parametrize("size, window, overlap", [
    (1, 1, 0.0), (16, 16, 0.25), (17, 16, 0.25), (40, 16, 0.25), (40, 16, 0.0), (41, 7, 0.5),
    (100, 12, 0.9), (33, 4, 0.0), (12, 3, 0.25), (241, 32, 0.25), (10, 9, 0.5),
])
def test_starts_cover_every_cell_and_end_at_the_edge(size, window, overlap):
    s = starts(size, window, overlap)
    assert s[0] == 0 and s[-1] + window == size
    assert all(b > a for a, b in zip(s, s[1:])), "starts must be strictly increasing"
    cover = np.zeros(size, int)
    for a in s:
        assert 0 <= a and a + window <= size
        cover[a:a + window] += 1
    assert cover.min() >= 1
    for a, b in zip(s[:-1], s[1:-1]):  # neighbours (but the edge-aligned last) share about `overlap`
        assert window - (b - a) >= window * overlap - 0.5


def test_window_larger_than_the_size_gives_one_start():
    assert starts(5, 8, 0.25) == [0]
    assert starts(8, 8, 0.25) == [0]


@pytest.mark.parametrize("grid, window, overlap", [
    ((12, 16, 16), (3, 16, 16), 0.25),
    ((13, 37, 50), (4, 16, 16), 0.25),
    ((7, 20, 9), (2, 8, 4), 0.5),
    ((5, 33, 33), (5, 32, 32), 0.0),
])
def test_plan_tiles_cover_the_cube(grid, window, overlap):
    tiles = plan_tiles(grid, window, overlap)
    cover = np.zeros(grid, int)
    for tl in tiles:
        block = cover[tl.t, tl.y, tl.x]
        assert block.shape == window
        block += 1
    assert cover.min() >= 1
    assert len({(tl.t.start, tl.y.start, tl.x.start) for tl in tiles}) == len(tiles)
    assert max(tl.t.stop for tl in tiles) == grid[0]
    assert max(tl.y.stop for tl in tiles) == grid[1]
    assert max(tl.x.stop for tl in tiles) == grid[2]


@pytest.mark.parametrize("window", [(1, 1, 1), (3, 16, 16), (4, 7, 9), (2, 5, 32)])
def test_blend_weights_positive_symmetric_peaked(window):
    w = blend_weights(window)
    assert w.shape == window and w.dtype == np.float32
    assert np.isfinite(w).all() and (w > 0).all() and w.max() <= 1.0 + 1e-6
    for ax in range(3):
        assert np.allclose(w, np.flip(w, ax))
    centre = tuple(n // 2 for n in window)
    assert w[centre] == w.max()
    if window[1] > 2:
        assert w[centre[0], 0, centre[2]] < w[centre]


def test_window_shape_clips_to_the_cube():
    assert window_shape((12, 16, 16), 4, 32, 32) == (4, 16, 16)
    assert window_shape((2, 100, 100), 4, 32, 32) == (2, 32, 32)


def test_random_tile_stays_inside_and_reaches_both_ends():
    rng = np.random.default_rng(0)
    grid, window = (6, 20, 18), (3, 16, 16)
    seen = set()
    for _ in range(400):
        tl = random_tile(grid, window, rng)
        assert 0 <= tl.t.start and tl.t.stop <= grid[0] and tl.t.stop - tl.t.start == window[0]
        assert 0 <= tl.y.start and tl.y.stop <= grid[1] and tl.y.stop - tl.y.start == window[1]
        assert 0 <= tl.x.start and tl.x.stop <= grid[2] and tl.x.stop - tl.x.start == window[2]
        seen.add((tl.t.start, tl.y.start, tl.x.start))
    ts = {s[0] for s in seen}
    assert ts == {0, 1, 2, 3}


@pytest.mark.parametrize("grid", [(31, 161, 320), (10, 201, 301), (8, 32, 32), (40, 70, 33), (100, 1, 50)])
def test_colour_classes_hold_disjoint_tiles_and_cover_every_tile(grid):
    window = tuple(min(w, n) for w, n in zip((8, 32, 32), grid))
    tiles = plan_tiles(grid, window, 0.25)
    classes = colour_classes(tiles)

    def overlap(a, b):
        return all(max(getattr(a, d).start, getattr(b, d).start) < min(getattr(a, d).stop, getattr(b, d).stop)
                   for d in "tyx")

    assert sorted(i for c in classes for i in c) == list(range(len(tiles)))
    for c in classes:
        assert not any(overlap(tiles[i], tiles[j]) for i in c for j in c if i < j)
    assert len(classes) <= 27  # at most 3 colours per axis with overlap 0.25
    assert colour_classes(tiles) == classes  # a fixed order: the same classes every time
