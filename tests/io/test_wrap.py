"""A grid that is a whole circle of longitude wraps around: its last column neighbours its first,
so training windows and imputation tiles cross the east-west edge as they cross any other
meridian, and a gap at the edge gets context from across it."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from conftest import check_filled_output, run_cli
from impute_cli.io.dataset import open_cube
from impute_cli.testing import tiny_cube_dataset, write_cube

CPU = ("--device", "cpu", "--quiet")


def grid_of(ds: xr.Dataset, tmp_path, name: str = "c.nc"):
    return open_cube(write_cube(ds, tmp_path / name)).grid


def test_a_whole_circle_of_longitude_wraps_and_nothing_else_does(tmp_path):
    assert grid_of(tiny_cube_dataset(4, 8, 48, spacing=7.5), tmp_path, "a.nc").wraps  # 48 x 7.5 = 360
    assert not grid_of(tiny_cube_dataset(4, 8, 47, spacing=7.5), tmp_path, "b.nc").wraps  # 352.5
    assert not grid_of(tiny_cube_dataset(4, 8, 48, spacing=0.25), tmp_path, "c.nc").wraps  # a regional grid
    uneven = tiny_cube_dataset(4, 8, 48, spacing=7.5)
    lon = uneven.lon.values.copy()
    lon[1:] += 0.5 * (np.arange(47) % 2)  # 360 in all, but not evenly spaced
    assert not grid_of(uneven.assign_coords(lon=("lon", lon, uneven.lon.attrs)), tmp_path, "d.nc").wraps
    metres = tiny_cube_dataset(4, 8, 48, spacing=7.5).rename(lon="x")  # spans 360, but not in longitude
    metres["x"].attrs = {"units": "km", "axis": "X"}
    assert not grid_of(metres, tmp_path, "e.nc").wraps
    named = tiny_cube_dataset(4, 8, 48, spacing=7.5)
    named["lon"].attrs = {}  # longitude by its name alone
    assert grid_of(named, tmp_path, "f.nc").wraps


def test_the_wrapped_cube_puts_each_edge_beside_the_other(tmp_path):
    cube = open_cube(write_cube(tiny_cube_dataset(3, 4, 48, spacing=7.5, with_land=True), tmp_path / "c.nc"))
    lazy = cube.wrapped(5)
    full = np.asarray(cube.data.compute())
    assert lazy.grid.shape == (3, 4, 58) and not lazy.grid.wraps
    got = np.asarray(lazy.data.compute())
    np.testing.assert_array_equal(got[..., :5], full[..., -5:])
    np.testing.assert_array_equal(got[..., 5:53], full)
    np.testing.assert_array_equal(got[..., 53:], full[..., :5])
    np.testing.assert_array_equal(lazy.valid, np.concatenate([cube.valid[:, -5:], cube.valid, cube.valid[:, :5]], -1))
    loaded = cube.load().wrapped(5)
    np.testing.assert_array_equal(loaded.memory, got)


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_preset):
    """The same values on a whole circle of longitude (7.5 degrees) and on a regional grid
    (0.25 degrees), a tiny model trained on each."""
    d = tmp_path_factory.mktemp("wrap")
    out = {}
    for name, spacing in (("global", 7.5), ("regional", 0.25)):
        ds = tiny_cube_dataset(6, 16, 48, "cloud", 0.6, seed=3, spacing=spacing)
        cube = write_cube(ds, d / f"{name}.nc")
        r = run_cli("train", cube, "--preset", tiny_preset, "--out", d / f"{name}-model", "--steps", 10,
                    "--device", "cpu")
        out[name] = (ds, cube, d / f"{name}-model", r.stderr)
    return d, out


def test_training_says_when_windows_cross_the_east_west_edge(models):
    _, m = models
    assert "longitude wraps around" in m["global"][3]
    assert "longitude wraps around" not in m["regional"][3]


def test_a_gap_at_the_east_west_edge_gets_context_from_across_it(models):
    """An observed value next to the far (east) edge is changed: on the whole circle the
    estimates in the first columns move with it, on the regional grid (the same values, the
    edges 12 degrees apart) they cannot."""
    d, m = models
    moved = {}
    for name, (ds, cube, model, _) in m.items():
        x = ds["sst"].values
        t, y = np.argwhere(np.isfinite(x[:, :, -1]) & ~np.isfinite(x[:, :, 0]))[0]
        changed = ds.copy(deep=True)
        changed["sst"].values[t, y, -1] += 5.0
        outs = []
        for k, src in enumerate((cube, write_cube(changed, d / f"{name}-changed.nc"))):
            res = d / f"{name}-out{k}.nc"
            run_cli("impute", src, res, "--model", model, "--no-blend", "--overwrite", *CPU)
            with xr.open_dataset(res) as o:
                check_filled_output(changed if k else ds, o, ["sst"])
                outs.append(o["sst_filled"].values[t, :, :4].copy())
        gaps = ~np.isfinite(x[t, :, :4])
        moved[name] = float(np.abs(outs[1] - outs[0])[gaps].max())
    assert moved["global"] > 1e-3
    assert moved["regional"] == 0.0


def test_the_blend_s_laplace_fill_crosses_the_edge_too():
    """A two-column gap at the west edge, 10 beyond the east edge and 0 beyond the gap's own
    east side: with the wrap the Laplace fill runs from 10 to 0 across the gap (linear along
    x), without it the gap only sees the 0 side."""
    from impute_cli.inference.blend import Blend, apply_blend

    T, H, W = 2, 6, 12
    values = np.zeros((T, 1, H, W), "float32")
    values[..., -1] = 10.0
    values[..., :2] = np.nan
    valid = np.ones((H, W), bool)
    laplace_only = Blend(["laplace"], [1.5], [[0.0, 1.0], [0.0, 1.0]])
    estimate = np.full(values.shape, -99.0, "float32")  # the network's, weighted 0
    wrapped = apply_blend(laplace_only, estimate, values, valid, wrap=4, workers=1)
    apart = apply_blend(laplace_only, estimate, values, valid, workers=1)
    np.testing.assert_allclose(wrapped[..., 0], 20 / 3, atol=1e-3)
    np.testing.assert_allclose(wrapped[..., 1], 10 / 3, atol=1e-3)
    np.testing.assert_allclose(apart[..., :2], 0.0, atol=1e-3)
