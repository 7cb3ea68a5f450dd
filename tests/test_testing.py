"""The public test helpers of impute_cli.testing make what they promise."""

from __future__ import annotations

import numpy as np
import pytest

from impute_cli.config import load_preset
from impute_cli.testing import land_mask, tiny_cube_dataset, tiny_preset_dict, tiny_preset_yaml, write_cube


@pytest.mark.parametrize("pattern", ["cloud", "pixel", "block"])
def test_tiny_cube_has_about_the_observed_fraction(pattern):
    ds = tiny_cube_dataset(12, 16, 16, pattern, 0.6, seed=1)
    x = ds["sst"].values
    assert x.shape == (12, 16, 16) and x.dtype == np.float32
    assert 0.45 < np.isfinite(x).mean() < 0.75
    assert np.array_equal(np.isfinite(x), np.isfinite(tiny_cube_dataset(12, 16, 16, pattern, 0.6, seed=1)["sst"].values))


def test_tiny_cube_options(tmp_path):
    full = tiny_cube_dataset(4, 8, 10, "none", 1.0)
    assert np.isfinite(full["sst"].values).all()
    land = tiny_cube_dataset(4, 8, 10, "pixel", 0.9, with_land=True)
    assert np.isnan(land["sst"].values[:, land_mask(8, 10)]).all()
    assert np.array_equal(land["mask"].values == 0, land_mask(8, 10))
    lev = tiny_cube_dataset(4, 8, 10, "pixel", 0.9, nvars=3, level_dim=True)
    assert list(lev.data_vars) == ["sst", "sst_1", "sst_2"]
    assert lev["sst_1"].dims == ("time", "level", "lat", "lon") and lev.sizes["level"] == 2
    assert not np.allclose(np.nanmean(lev["sst"].values[:, 0]), np.nanmean(lev["sst"].values[:, 1]), atol=0.5)
    coarse = tiny_cube_dataset(4, 8, 10, "pixel", 0.9, spacing=0.5)
    assert np.allclose(np.diff(coarse["lat"].values), 0.5)
    assert write_cube(coarse, tmp_path / "c.zarr").is_dir()
    with pytest.raises(ValueError):
        tiny_cube_dataset(pattern="stripes")


def test_tiny_preset_yaml_loads_and_merges(tmp_path):
    p = load_preset(str(tiny_preset_yaml(tmp_path / "t.yaml", impute={"ensemble": 3})))
    assert p.impute.ensemble == 3 and p.impute.batch_size == 8
    assert p.network.base_channels == 8 and p.window.height == 16 and p.train.steps <= 40
    d = tiny_preset_dict(train={"steps": 1})
    assert d["train"]["steps"] == 1 and tiny_preset_dict()["train"]["steps"] == 20
