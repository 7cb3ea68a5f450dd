"""Cubes with ONE spatial dim -- time x station, time x feature: read as a grid of height 1
(a dummy y axis), windows and every context pattern work on h = 1, and train + impute through
the CLI write the input's own dims back, observed cells bit for bit."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import torch
import xarray as xr
import yaml

from conftest import check_filled_output, open_any, run_cli
from impute_cli.config import MaskConfig
from impute_cli.masks.context_query import ContextSampler, block_pattern, cloud_pattern, frame_pattern, outage_pattern, pixel_pattern, query_mask
from impute_cli.masks.observation import choose_pattern, observation_pool
from impute_cli.io.dataset import open_cube, select_variables
from impute_cli.masks.observation import observation_masks
from impute_cli.errors import ImputeError
from impute_cli.testing import series_gaps, tiny_cube_dataset, tiny_series_dataset, write_cube
from impute_cli.io.tiling import blend_weights, plan_tiles, random_tile, window_shape
from impute_cli.io.writer import build_output

CPU = ("--device", "cpu", "--quiet")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- the generator ---------------------------------------------------------------------------

def test_tiny_series_dataset_is_gappy_cf_station_data():
    ds = tiny_series_dataset(T=60, S=10, observed=0.7, seed=2)
    x = ds["tas"].values
    assert ds["tas"].dims == ("time", "station") and x.dtype == np.float32
    assert 0.55 < np.isfinite(x).mean() < 0.85
    assert (np.isfinite(x).sum(0) >= 2).all(), "every station keeps observations"
    runs = ~np.isfinite(x[1:]) & ~np.isfinite(x[:-1])
    assert runs.sum() > 0.4 * (~np.isfinite(x[:-1])).sum(), "outages last several time steps"
    assert ds["lat"].dims == ("station",) and ds["lat"].attrs["standard_name"] == "latitude"
    assert ds["lon"].attrs["units"] == "degrees_east" and "lat" not in ds.dims
    assert ds["station"].attrs["cf_role"] == "timeseries_id" and ds.attrs["featureType"] == "timeSeries"
    assert np.isfinite(tiny_series_dataset(T=8, S=3, observed=1.0)["tas"].values).all()
    again = tiny_series_dataset(T=60, S=10, observed=0.7, seed=2)["tas"].values
    assert np.array_equal(np.isfinite(x), np.isfinite(again)), "the same seed gives the same gaps"
    feat = tiny_series_dataset(T=8, S=4, dim="feature", station_first=True)
    assert feat["tas"].dims == ("feature", "time") and "lat" not in feat.coords
    assert series_gaps(20, 5, 0.6, seed=1).shape == (20, 5)


# --- reading ---------------------------------------------------------------------------------

def test_open_cube_on_a_station_series_gives_height_one(tmp_path):
    ds = tiny_series_dataset(T=20, S=7)
    cube = open_cube(write_cube(ds, tmp_path / "s.nc"))
    g = cube.grid
    assert (g.time_dim, g.y_dim, g.x_dim) == ("time", None, "station") and g.is_series
    assert g.shape == (20, 1, 7) and cube.data.shape == (20, 1, 1, 7) and cube.valid.shape == (1, 7)
    assert g.file_dims == ("station",) and g.x_values == tuple(float(i) for i in range(7))
    assert cube.channels == ["tas"] and cube.valid.all()
    np.testing.assert_array_equal(cube.data[:, 0, 0].compute(), ds["tas"].values)
    assert g.to_file(np.zeros((3, 1, 7))).shape == (3, 7)
    assert g.describe()["y_dim"] is None


def test_opening_a_series_computes_nothing(tmp_path):
    ds = tiny_series_dataset(T=20, S=7)
    ds["elevation"] = ("station", np.linspace(0, 900, 7).astype("float32"))  # a station table, not a mask
    path = write_cube(ds, tmp_path / "s.nc")

    def refuse(dsk, keys, **kwargs):
        raise RuntimeError("dask compute while opening")

    with dask.config.set(scheduler=refuse):
        cube = open_cube(path)
        window = window_shape(cube.grid.shape, 4, 32, 32)
        plan_tiles(cube.grid.shape, window, 0.25)
    assert cube.static_mask_var is None and cube.variables == ["tas"]


def test_dim_order_features_levels_and_real_axes(tmp_path):
    ds = tiny_series_dataset(T=10, S=5, dim="feature", station_first=True)
    cube = open_cube(write_cube(ds, tmp_path / "f.nc"))
    assert (cube.grid.y_dim, cube.grid.x_dim, cube.grid.shape) == (None, "feature", (10, 1, 5))
    np.testing.assert_array_equal(cube.data[:, 0, 0].compute(), ds["tas"].values.T)
    # a level dim beside the station dim makes channels
    lev = tiny_series_dataset(T=10, S=5)
    lev["tas"] = xr.concat([lev["tas"], lev["tas"] - 5], dim="level").transpose("time", "level", "station")
    lev = lev.assign_coords(level=("level", [1000, 850], {"units": "hPa", "positive": "down"}))
    cube = open_cube(write_cube(lev, tmp_path / "l.nc"))
    assert cube.channels == ["tas[level=1000]", "tas[level=850]"] and cube.grid.extra_dims == ("level",)
    # time x lat (a Hovmoeller section): lat is the one spatial dim and keeps its values
    zon = tiny_cube_dataset(6, 8, 4, "pixel", 0.8).mean("lon")
    cube = open_cube(write_cube(zon, tmp_path / "z.nc"))
    assert cube.grid.x_dim == "lat" and cube.grid.x_values[1] - cube.grid.x_values[0] == pytest.approx(0.25)


def test_refusals_say_how_to_fix(tmp_path):
    t = {"time": ("time", np.arange(4), {"axis": "T"})}
    two = xr.Dataset({"v": (("time", "a", "b"), np.zeros((4, 2, 3)))}, coords=t)
    with pytest.raises(ImputeError, match=r"cannot tell which of a, b .*axis='X'"):
        open_cube(write_cube(two, tmp_path / "ab.nc"), ["v"])
    two = two.assign_coords(b=("b", np.arange(3), {"axis": "X"}))  # the user's fix
    cube = open_cube(write_cube(two, tmp_path / "abx.nc"), ["v"])
    assert cube.grid.x_dim == "b" and cube.channels == ["v[a=0]", "v[a=1]"]
    only_time = xr.Dataset({"v": (("time",), np.zeros(4))}, coords=t)
    with pytest.raises(ImputeError, match="no station or feature dim"):
        open_cube(write_cube(only_time, tmp_path / "t.nc"), ["v"])
    no_time = xr.Dataset({"v": (("station",), np.zeros(4))})
    with pytest.raises(ImputeError, match="no time dim"):
        open_cube(write_cube(no_time, tmp_path / "n.nc"), ["v"])
    mixed = tiny_cube_dataset(4, 6, 6, "pixel", 0.8)
    mixed["tas"] = (("time", "station"), np.zeros((4, 3), "float32"))
    with pytest.raises(ImputeError, match="different grids"):
        open_cube(write_cube(mixed, tmp_path / "m.nc"), ["sst", "tas"])


def test_default_selection_prefers_the_grid_and_skips_bounds():
    grid = tiny_cube_dataset(4, 6, 6, "pixel", 0.8)
    grid["time_bnds"] = (("time", "bnds"), np.zeros((4, 2)))
    grid["tas"] = (("time", "station"), np.zeros((4, 3), "float32"))
    assert select_variables(grid, None) == (["sst"], ("time", "lat", "lon"))
    series = tiny_series_dataset(T=6, S=3)
    series["time_bnds"] = (("time", "nv"), np.zeros((6, 2)))
    series["pressure_tendency"] = (("time", "station"), np.zeros((6, 3), "float32"))
    assert select_variables(series, None) == (["tas", "pressure_tendency"], ("time", None, "station"))


def test_static_mask_per_station_and_the_writer_keeps_the_file_dims(tmp_path):
    ds = tiny_series_dataset(T=12, S=6, station_first=True)
    ds["mask"] = ("station", np.array([1, 1, 0, 1, 1, 1], "float32"))
    ds["tas"][2] = np.nan  # a station not to fill, with no data
    cube = open_cube(write_cube(ds, tmp_path / "m.nc"))
    assert cube.static_mask_var == "mask" and cube.valid.tolist() == [[True, True, False, True, True, True]]
    filled = np.full(cube.data.shape, 99.0, "float32")
    out = build_output(cube, filled, "test")
    assert out["tas_filled"].dims == ("station", "time") and out["tas_imputed_flag"].dims == ("station", "time")
    x, f, flag = ds["tas"].values, out["tas_filled"].values, out["tas_imputed_flag"].values
    obs = np.isfinite(x)
    assert np.array_equal(f[obs], x[obs]) and (f[~obs & (np.arange(6) != 2)[:, None]] == 99).all()
    assert (flag[2] == 2).all() and np.isnan(f[2]).all()


# --- windows and context/query masks on h = 1 --------------------------------------------

def test_windows_clip_the_height_to_one():
    window = window_shape((30, 1, 12), 4, 32, 8)
    assert window == (4, 1, 8)
    tiles = plan_tiles((30, 1, 12), window, 0.25)
    assert all(t.y == slice(0, 1) for t in tiles) and {t.x.stop for t in tiles} >= {12}
    assert random_tile((30, 1, 12), window, np.random.default_rng(0)).y == slice(0, 1)
    assert blend_weights(window).shape == (4, 1, 8) and (blend_weights(window) > 0).all()


@pytest.fixture(scope="module")
def station_pool() -> np.ndarray:
    return series_gaps(40, 9, 0.6, seed=4)[:, None, :]  # (T, 1, S) True = observed


@pytest.mark.parametrize("pattern", ["pixel", "block", "mixed", "empirical"])
@pytest.mark.parametrize("F", [1, 4])
def test_every_pattern_draws_on_height_one_windows(pattern, F, station_pool):
    M = torch.from_numpy(np.random.default_rng(F).random((24, F, 2, 1, 9)) < 0.8)
    s = ContextSampler(pattern, [2, 4, 64], station_pool if pattern == "empirical" else None)  # 64 > the window
    for ratio in (0.3, 0.7, 1.0):
        ctx = s(M, ratio, gen(F))
        assert ctx.shape == M.shape and not (ctx & ~M).any()
    ctx = s(M, 0.7, gen(1))
    assert ctx.any() and (M & ~ctx).any()
    q = query_mask(M, ctx, MaskConfig(query="rest", context_ratio=0.7), gen(2))
    assert torch.equal(q | ctx, M)


@pytest.mark.parametrize("shape", [(3, 4, 1, 9), (3, 1, 1, 1), (2, 6, 1, 40)])
def test_pattern_makers_on_height_one(shape):
    for make in (lambda: pixel_pattern(shape, 0.7, gen(), "cpu"),
                 lambda: block_pattern(shape, 0.7, gen(), "cpu", [1, 8, 100]),
                 lambda: cloud_pattern(shape, 0.7, gen(), "cpu", scale=2),
                 lambda: cloud_pattern(shape, 0.7, gen(), "cpu", scale=50),
                 lambda: frame_pattern(shape, 0.7, gen(), "cpu"),
                 lambda: outage_pattern(shape, 0.7, gen(), "cpu"),
                 lambda: outage_pattern(shape, 0.1, gen(), "cpu")):
        keep = make()
        assert keep.shape == shape and keep.dtype == torch.bool


def test_outages_keep_about_the_ratio_in_runs():
    keep = outage_pattern((400, 6, 1, 10), 0.7, gen(3), "cpu")
    assert abs(keep.float().mean().item() - 0.7) < 0.03
    dropped = ~keep
    assert (dropped[:, 1:] & dropped[:, :-1]).float().mean() > 0.3 ** 2 + 0.03, "gaps come in runs of time"


def test_auto_reads_station_outages_as_clustered_and_dropouts_as_scattered(tmp_path):
    cube = open_cube(write_cube(tiny_series_dataset(T=80, S=12, observed=0.7, seed=1), tmp_path / "o.nc"))
    pool = observation_pool(observation_masks(cube), cube.valid)
    assert choose_pattern(pool, cube.valid)[0] == "empirical"
    drop = np.random.default_rng(0).random((80, 1, 12)) < 0.7
    assert choose_pattern(drop, np.ones((1, 12), bool))[0] == "pixel"
    assert choose_pattern(drop)[0] == "pixel"
    assert choose_pattern(np.ones((5, 1, 3), bool))[0] == "mixed"


# --- end to end ------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:The data type .* does not have a Zarr V3 specification")
@pytest.mark.parametrize("station_first,suffix", [(False, ".nc"), (True, ".zarr"), (True, ".nc")])
def test_train_and_impute_a_station_series(tmp_path, tiny_preset, station_first, suffix):
    ds = tiny_series_dataset(T=40, S=10, observed=0.7, seed=3, station_first=station_first)
    inp = write_cube(ds, tmp_path / f"stations{suffix}")
    model = tmp_path / "model"
    res = run_cli("train", inp, "--preset", tiny_preset, "--out", model, "--steps", 6, *CPU)
    assert "model written to" in res.stderr
    card = yaml.safe_load((model / "model.yaml").read_text())
    assert card["grid"]["y_dim"] is None and card["grid"]["x_dim"] == "station"
    assert card["window"] == [3, 1, 10] and card["grid"]["shape"] == [40, 1, 10]
    out = tmp_path / f"filled{suffix}"
    res = run_cli("impute", inp, out, "--model", model, *CPU)
    got = open_any(out)
    check_filled_output(ds, got, ["tas"])
    assert got["tas_filled"].dims == ds["tas"].dims and set(got.dims) == {"time", "station"}
    assert np.array_equal(got["lat"].values, ds["lat"].values)
    assert list(got["station"].values) == list(ds["station"].values)
    assert f"{int(np.isnan(ds['tas'].values).sum())} cells of tas imputed" in res.stderr
    if suffix == ".nc":  # samples and confidence regions on a series keep its dims too
        samp, ci = tmp_path / "samples.nc", tmp_path / "ci.nc"
        run_cli("impute", inp, samp, "--model", model, "--samples", 3, "--steps", 2, "--save-samples", *CPU)
        got = open_any(samp)
        assert got["tas_std"].dims == ds["tas"].dims and got["tas_sample"].dims == ("sample", *ds["tas"].dims)
        gaps = np.isnan(ds["tas"].values)
        assert np.isfinite(got["tas_std"].values[gaps]).all() and np.all(got["tas_std"].values[~gaps] == 0)
        run_cli("confidence", samp, ci, *CPU)
        got = open_any(ci)
        assert got["tas_ci_radius"].dims == ("time",) and got["tas_ci_lower"].dims == ds["tas"].dims
        lo, hi = got["tas_ci_lower"].values, got["tas_ci_upper"].values
        assert np.all(lo[~gaps] == hi[~gaps]) and np.all(lo[gaps] <= hi[gaps])


def test_a_series_model_fills_another_file_with_more_stations(tmp_path, tiny_preset):
    ds = tiny_series_dataset(T=24, S=6, dim="feature", seed=5)
    inp = write_cube(ds, tmp_path / "f.nc")
    run_cli("train", inp, "--preset", tiny_preset, "--out", tmp_path / "m", "--steps", 4,
            "--mask-pattern", "mixed", *CPU)
    other = tiny_series_dataset(T=30, S=9, dim="feature", seed=6)
    out = tmp_path / "o.nc"
    run_cli("impute", write_cube(other, tmp_path / "g.nc"), out, "--model", tmp_path / "m", *CPU)
    got = open_any(out)
    check_filled_output(other, got, ["tas"])
    assert got["tas_filled"].dims == ("time", "feature")


# --- the series network and the preset chosen by the file's layout -----------------------------

def test_series_unet_convolves_along_time_and_keeps_the_contract():
    from impute_cli.config import NetworkConfig
    from impute_cli.model.denoiser import in_channels
    from impute_cli.model.unet import SeriesUNet
    Fr, C, S = 16, 2, 5
    cfg = NetworkConfig(arch="series", base_channels=8, channel_mult=[1, 2], emb_dim=16, prefill_input=True)
    torch.manual_seed(0)
    net = SeriesUNet(in_channels(Fr, C, True, True), Fr * C, cfg, Fr, C)
    for p in net.parameters():  # the zero-initialised convolutions would hide the receptive field
        torch.nn.init.normal_(p, std=0.1)
    x = torch.randn(3, in_channels(Fr, C, True, True), 1, S)
    out = net(x, torch.zeros(3))
    assert out.shape == (3, Fr * C, 1, S)
    # a change at one time step of the input reaches other time steps of the output: time is an
    # axis of the convolutions, not only the first layer's channels
    y = x.clone()
    y[:, 0] += 1.0  # frame 0's values, channel 0
    diff = (net(y, torch.zeros(3)) - out).abs().reshape(3, Fr, C, S).sum((0, 2, 3))
    assert diff[0] > 0 and diff[1] > 0 and diff[3] > 0
    assert torch.allclose(net(x[:1], torch.zeros(1)), out[:1], atol=1e-5), "windows do not mix across the batch"
    with pytest.raises(ValueError, match="height 1"):
        net(torch.randn(1, x.shape[1], 2, S), torch.zeros(1))


def test_the_series_first_guess_fills_along_time():
    from impute_cli.config import DiffusionConfig, NetworkConfig
    from impute_cli.model.denoiser import Denoiser, VPSchedule, in_channels
    from impute_cli.model.unet import SeriesUNet
    Fr, S = 8, 3
    cfg = NetworkConfig(arch="series", base_channels=8, channel_mult=[1], emb_dim=16, prefill_input=True)
    seen = {}

    class Spy(SeriesUNet):
        def forward(self, x, c_noise):
            seen["x"] = x
            return super().forward(x, c_noise)

    den = Denoiser(Spy(in_channels(Fr, 1, True, True), Fr, cfg, Fr, 1), VPSchedule(DiffusionConfig()),
                   prefill=True)
    # station 0 observed only at t = 0 (value 1) and t = 7 (value 3); the others never: a fill
    # along time interpolates between 1 and 3, a fill across stations alone would copy the frame
    x = torch.zeros(1, Fr, 1, 1, S)
    M = torch.zeros(1, Fr, 1, 1, S, dtype=torch.bool)
    x[0, 0, 0, 0, 0], x[0, 7, 0, 0, 0] = 1.0, 3.0
    M[0, 0, 0, 0, 0] = M[0, 7, 0, 0, 0] = True
    den(x, M, torch.ones(1, 1, S, dtype=torch.bool), torch.full((1,), 0.01))
    guess = seen["x"][0, -Fr:, 0, 0]  # the prefill channels, station 0, per time step
    assert guess[0] == 1.0 and guess[7] == 3.0
    assert 1.0 < float(guess[3]) < 3.0, "the gap between two observations in time is filled from both"


def test_auto_trains_the_series_preset_on_station_series_and_quick_on_grids(tmp_path):
    from impute_cli.config import load_preset, preset_for
    assert preset_for("auto", True)[0] == "series" and preset_for("auto", False)[0] == "quick"
    assert preset_for("reanalysis", True) == ("reanalysis", None), "a named preset is kept"
    series = load_preset("series")
    assert series.network.arch == "series" and series.window.frames >= 32
    inp = write_cube(tiny_series_dataset(T=40, S=6, observed=0.7, seed=1), tmp_path / "s.nc")
    res = run_cli("train", inp, "--out", tmp_path / "m", "--steps", 2, "--no-validation", *CPU[:2])
    assert "preset 'auto' chose 'series'" in res.stderr
    card = yaml.safe_load((tmp_path / "m" / "model.yaml").read_text())
    assert card["preset"]["name"] == "series" and card["preset"]["network"]["arch"] == "series"
    assert card["window"] == [min(series.window.frames, 40), 1, 6]
    grid = write_cube(tiny_cube_dataset(6, 8, 8, "cloud", 0.6, seed=0), tmp_path / "g.nc")
    res = run_cli("train", grid, "--preset", "series", "--out", tmp_path / "g", "--steps", 1, *CPU, expect_ok=False)
    assert res.exit_code == 1 and "holds a grid" in res.stderr and "--preset quick" in res.stderr
    assert not (tmp_path / "g").exists()
