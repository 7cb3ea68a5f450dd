"""train reads windows lazily: no mask of the whole cube is held; the streaming
summary, the bounded gap pool and the per-window observed fraction give what the whole-cube
masks give, and the windows drawn are those a whole-cube mask gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from impute_cli.io import cube as cube_mod
from impute_cli.model.batches import read_tiles
from impute_cli.masks.observation import observation_pool, pool_from_cube
from impute_cli.io.dataset import open_cube
from impute_cli.io.stats import summarise
from impute_cli.masks.observation import observation_masks
from impute_cli.testing import tiny_cube_dataset, tiny_preset_yaml, write_cube
from impute_cli.options import TrainOptions
from impute_cli.training.train import MIN_OBSERVED, sample_batch, train_model
from impute_cli.io.tiling import random_tile

QUIET = {"device": "cpu", "progress": False, "log": lambda s: None}


@pytest.fixture
def land_cube(tmp_path):
    """Two channels, land, cloud gaps, and frames with almost nothing observed, so that some
    windows are redrawn for having too few observed cells."""
    ds = tiny_cube_dataset(16, 16, 20, "cloud", 0.6, seed=5, nvars=2, with_land=True)
    for v in ("sst", "sst_1"):
        ds[v][4:9] = np.nan
        ds[v][6, 0, 10] = 1.0  # one observed cell: under MIN_OBSERVED, not zero
    return write_cube(ds, tmp_path / "land.nc")


def reference_tiles(obs: np.ndarray, shape, window, n: int, rng: np.random.Generator):
    """The window draws of train.sample_batch as they were when drawn from a whole-cube mask; and
    how many draws were refused."""
    tiles, refused = [], 0
    for _ in range(n):
        for _attempt in range(20):
            tile = random_tile(shape, window, rng)
            if obs[tile.t, :, tile.y, tile.x].mean() >= MIN_OBSERVED:
                break
            refused += 1
        tiles.append(tile)
    return tiles, refused


def test_observed_fraction_equals_the_whole_cube_masks(land_cube):
    cube = open_cube(land_cube)
    obs = observation_masks(cube)
    before = float(obs.mean(axis=(0, 1))[cube.valid].mean())  # the card's formula when it was computed from a whole-cube mask
    assert summarise(cube).observed_fraction == pytest.approx(before, rel=1e-12, abs=0)


def test_pool_from_cube_equals_the_whole_cube_pool(land_cube):
    cube = open_cube(land_cube)
    expected = observation_pool(observation_masks(cube), cube.valid)
    assert np.array_equal(pool_from_cube(cube, 3), expected)


def test_windows_drawn_are_those_of_the_whole_cube_mask(land_cube):
    cube = open_cube(land_cube)
    obs = observation_masks(cube)
    summary = summarise(cube)
    stats = summary.stats(cube.channels)
    sums = summary.climatology_sums(stats)
    cube.load()
    window = (3, 8, 8)
    redrawn = 0
    for step in range(40):
        rng_a, rng_b = (np.random.default_rng([0, step]) for _ in range(2))
        batch = sample_batch(cube, stats, window, 4, rng_a, sums)
        tiles, refused = reference_tiles(obs, cube.grid.shape, window, 4, rng_b)
        assert batch.tiles == tiles, f"step {step}: other windows than before"
        assert rng_a.integers(2**62) == rng_b.integers(2**62), "the random stream moved on differently"
        ref = read_tiles(cube, tiles, stats, sums)
        for name in ("x_obs", "M", "valid", "S", "N"):
            assert torch.equal(getattr(batch, name), getattr(ref, name)), name
        redrawn += refused
    assert redrawn, "no window was redrawn: the test does not exercise MIN_OBSERVED"


def test_a_lazy_cube_trains_like_a_loaded_one(tmp_path, monkeypatch):
    """The same Zarr cube read window by window (over the in-memory limit) and read whole
    gives the same model, and the card's context fraction is the observed fraction times the
    context ratio."""
    ds = tiny_cube_dataset(12, 16, 16, "cloud", 0.6, seed=2)
    cube = write_cube(ds, tmp_path / "c.zarr")
    preset = tiny_preset_yaml(tmp_path / "p.yaml", train={"steps": 4, "batch_size": 2})
    train_model(cube, TrainOptions(preset=str(preset), out=tmp_path / "loaded", **QUIET))
    read = []
    real_read = cube_mod.Cube.read
    monkeypatch.setattr(cube_mod, "IN_MEMORY_LIMIT", 0)
    monkeypatch.setattr(cube_mod.Cube, "read", lambda self, *a: read.append(self.memory is None) or real_read(self, *a))
    train_model(cube, TrainOptions(preset=str(preset), out=tmp_path / "lazy", **QUIET))
    assert read and all(read), "the lazy run read from memory"
    a, b = (torch.load(tmp_path / d / "weights.pt", weights_only=True) for d in ("loaded", "lazy"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    card = yaml.safe_load((tmp_path / "lazy" / "model.yaml").read_text())
    c = open_cube(cube)
    expected = float(observation_masks(c).mean(axis=(0, 1))[c.valid].mean()) * card["mask_strategy"]["context_ratio"]
    assert card["mask_strategy"]["context_input_fraction"] == pytest.approx(expected, rel=1e-12)
    assert card["training"]["world_size"] == 1


def test_augmented_windows_keep_the_batch_invariants(land_cube):
    """train.augment: every window comes out as a flip / transpose / time reversal of itself, its
    values, observation mask, land mask and climatology sums moved together (so values stay
    zero off the mask and no land cell becomes sea), and without kinds the batch is untouched."""
    from impute_cli.model.symmetry import augment_batch
    cube = open_cube(land_cube)
    s = summarise(cube)
    stats = s.stats(cube.channels)
    rng = np.random.default_rng(0)
    b = sample_batch(cube, stats, (8, 16, 16), 24, rng, s.climatology_sums(stats))
    assert augment_batch(b, [], rng) is b
    a = augment_batch(b, ["flip", "reverse_time"], np.random.default_rng(1))
    assert a.x_obs.shape == b.x_obs.shape and a.M.shape == b.M.shape and a.valid.shape == b.valid.shape
    assert not (a.x_obs[~a.M] != 0).any()
    seen = set()
    for i in range(len(b.tiles)):
        ops = None
        for tr in (False, True):
            for fy in (False, True):
                for fx in (False, True):
                    for rt in (False, True):
                        def f(x, time_dim=None):
                            if tr:
                                x = x.transpose(-1, -2)
                            if fy:
                                x = x.flip(-2)
                            if fx:
                                x = x.flip(-1)
                            if rt and time_dim is not None:
                                x = x.flip(time_dim)
                            return x
                        # the symmetry group is closed, so "the window is some element of it" is the check
                        if (torch.equal(f(b.x_obs[i], 0), a.x_obs[i]) and torch.equal(f(b.M[i], 0), a.M[i])
                                and torch.equal(f(b.valid[i]), a.valid[i]) and torch.equal(f(b.S[i]), a.S[i])
                                and torch.equal(f(b.N[i]), a.N[i])):
                            ops = (tr, fy, fx, rt)
        assert ops is not None, f"window {i} is not a symmetry of its original"
        seen.add(ops)
    assert len(seen) > 4  # the draws vary (with symmetric windows several ops can match: any is fine)
    only_time = augment_batch(b, ["reverse_time"], np.random.default_rng(2))
    assert torch.equal(only_time.valid, b.valid) and torch.equal(only_time.S, b.S)


def test_training_with_augment_writes_a_model_that_imputes(tmp_path):
    from impute_cli.inference.impute import impute_file
    from impute_cli.options import ImputeOptions
    ds = tiny_cube_dataset(12, 16, 16, "cloud", 0.6, seed=2)
    cube = write_cube(ds, tmp_path / "c.nc")
    preset = tiny_preset_yaml(tmp_path / "p.yaml", train={"steps": 4, "batch_size": 2,
                                                          "augment": ["flip", "reverse_time"]})
    train_model(cube, TrainOptions(preset=str(preset), out=tmp_path / "m", **QUIET))
    card = yaml.safe_load((tmp_path / "m" / "model.yaml").read_text())
    assert card["preset"]["train"]["augment"] == ["flip", "reverse_time"]
    impute_file(cube, tmp_path / "o.nc", ImputeOptions(model=str(tmp_path / "m"), device="cpu", progress=False, log=lambda s: None))
