"""Shared fixtures: a CLI runner that behaves like the console script, a tiny preset, a tiny
model trained once per session, the real sample files, and output checks."""

from __future__ import annotations

import faulthandler
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import settings
from typer.testing import CliRunner

from impute_cli.cli import app
from impute_cli.testing import tiny_cube_dataset, tiny_preset_yaml, write_cube

# Tiny convolutions are far slower with several OpenMP threads on a busy 2-core machine than
# with one; the suite's networks are tiny.
torch.set_num_threads(1)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
ERROR_PREFIX = "impute-cli: error:"


# The property tests draw the same examples on every run, so the suite passes or fails the same
# way on every machine; `pytest --hypothesis-profile=explore tests/test_fuzz.py` draws new ones.
settings.register_profile("suite", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile("suite")

# A test that hangs (e.g. in a C library reading a corrupt file) ends the run after this many
# seconds with every thread's traceback, instead of running into CI's time limit unexplained.
TEST_TIME_LIMIT_S = 600


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    faulthandler.dump_traceback_later(TEST_TIME_LIMIT_S, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def pytest_configure(config):
    """Models trained by fixtures of any scope go to a store of the session, never ./models;
    known warnings are filtered."""
    import os
    import tempfile
    os.environ["IMPUTE_CLI_MODELS"] = tempfile.mkdtemp(prefix="impute-cli-test-store-")
    # Known, harmless warnings from the real sample files and from Zarr v3.
    config.addinivalue_line("filterwarnings", "ignore:variable '.*' has non-conforming '_FillValue'")
    config.addinivalue_line("filterwarnings", "ignore:Consolidated metadata is currently not part")


def real_file(name: str) -> Path:
    """A sample file from ../shared/data, or skip the test when it is not there."""
    path = DATA_DIR / name
    if not path.is_file():
        pytest.skip(f"sample file {path} not available")
    return path


def run_cli(*args: object, expect_ok: bool = True):
    """Invoke the Typer app as the console script would (sys.argv set to the command line,
    which is what the CLI records in the output's `history`). Returns click's Result, whose
    .stdout and .stderr are separate (click >= 8.2)."""
    argv = ["impute-cli", *map(str, args)]
    saved = sys.argv
    sys.argv = argv
    try:
        result = CliRunner().invoke(app, argv[1:])
    finally:
        sys.argv = saved
    if expect_ok and result.exit_code != 0:
        import traceback
        tb = "".join(traceback.format_exception(*result.exc_info)) if result.exc_info else ""
        pytest.fail(f"impute-cli {' '.join(argv[1:])} exited {result.exit_code}\n"
                    f"stdout: {result.stdout}\nstderr: {result.stderr}\n{tb}")
    return result


def assert_one_error_line(result, *fragments: str) -> str:
    """The command failed with one line on stderr starting with the CLI's error prefix,
    containing every fragment; nothing on stdout."""
    assert result.exit_code != 0, f"expected a failure, got exit 0: {result.stderr}"
    assert not isinstance(result.exception, (AssertionError, AttributeError, TypeError, KeyError, RuntimeError)), \
        f"an unhandled exception escaped: {result.exception!r}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {result.stderr!r}"
    assert lines[0].startswith(ERROR_PREFIX), lines[0]
    for f in fragments:
        assert f in lines[0], f"{f!r} not in {lines[0]!r}"
    assert result.stdout == ""
    return lines[0]


def listing(folder: Path) -> list[str]:
    """The names in `folder`, sorted. The folder must exist: a command that removed it must not
    pass for having left it empty."""
    assert Path(folder).is_dir(), f"{folder} is not a folder (was it removed?)"
    return sorted(p.name for p in Path(folder).iterdir())


@pytest.fixture(autouse=True)
def _models_home(tmp_path, monkeypatch):
    """Default model folders go to a temporary place, never into the checkout's models/."""
    monkeypatch.setenv("IMPUTE_CLI_MODELS", str(tmp_path / "models-home"))


@pytest.fixture(scope="session")
def tiny_preset(tmp_path_factory) -> Path:
    return tiny_preset_yaml(tmp_path_factory.mktemp("presets") / "tiny.yaml")


@dataclass
class TrainedModel:
    cube: Path  # the NetCDF cube the model was trained on
    model: Path
    preset: Path
    ds: xr.Dataset  # the cube, in memory


@pytest.fixture(scope="session")
def sst_model(tmp_path_factory, tiny_preset) -> TrainedModel:
    """A tiny model trained once on a 12 x 16 x 16 'sst' cube with cloud gaps."""
    d = tmp_path_factory.mktemp("sst-model")
    ds = tiny_cube_dataset(12, 16, 16, "cloud", 0.6, seed=0, var="sst")
    cube = write_cube(ds, d / "sst.nc")
    run_cli("train", cube, "--preset", tiny_preset, "--out", d / "model", "--steps", 20, "--seed", 0,
            "--device", "cpu", "--quiet")
    return TrainedModel(cube, d / "model", tiny_preset, ds)


def open_any(path: Path, **kw) -> xr.Dataset:
    path = Path(path)
    if path.suffix == ".zarr":
        return xr.open_zarr(path, **kw).load()
    with xr.open_dataset(path, **kw) as ds:
        return ds.load()


def check_filled_output(inp: xr.Dataset, out: xr.Dataset, variables: list[str],
                        valid: np.ndarray | None = None) -> None:
    """The output contract: inputs unchanged, V_filled = input bit for bit on observed cells
    (same dtype as the decoded input), no NaN left in fillable gaps, flags 0/1/2 consistent."""
    for v in inp.data_vars:
        assert v in out, f"input variable {v} missing from the output"
        a, b = inp[v].values, out[v].values
        assert a.dtype == b.dtype, (v, a.dtype, b.dtype)
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), f"input variable {v} changed"
    for v in variables:
        src = inp[v]
        filled, flag = out[f"{v}_filled"], out[f"{v}_imputed_flag"]
        assert filled.dims == src.dims and flag.dims == src.dims
        assert filled.dtype == src.dtype, (filled.dtype, src.dtype)
        assert flag.dtype == np.int8
        x, f, y = src.values, filled.values, flag.values
        observed = np.isfinite(x)
        assert np.array_equal(f[observed], x[observed]), f"{v}_filled differs from the input on observed cells"
        assert set(np.unique(y)) <= {0, 1, 2}
        assert np.array_equal(y == 0, observed), "flag 0 must mark exactly the observed cells"
        if valid is None:
            fillable = np.ones(x.shape, bool)
        else:
            fillable = xr.DataArray(valid, dims=(src.dims[-2], src.dims[-1])).broadcast_like(src) \
                .transpose(*src.dims).values
        gaps = ~observed & fillable
        assert gaps.any(), "test cube should have fillable gaps"
        assert np.array_equal(y == 1, gaps), "flag 1 must mark exactly the fillable gaps"
        assert np.array_equal(y == 2, ~observed & ~fillable), "flag 2 must mark gaps outside the static mask"
        assert np.isfinite(f[gaps]).all(), "a fillable gap was left NaN"
        assert np.isnan(f[y == 2]).all(), "cells outside the static mask must stay NaN"
        # the estimate is a plausible value of the field, not garbage
        lo, hi = np.nanmin(x), np.nanmax(x)
        span = hi - lo
        assert (f[gaps] > lo - 3 * span).all() and (f[gaps] < hi + 3 * span).all()

