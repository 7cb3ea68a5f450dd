"""Property-based tests (hypothesis) over the I/O and mask layers: random shapes, gap patterns,
dtypes (float32, float64, int16 packed with scale/offset) and fill values; and a fuzz run over
malformed NetCDF files. Each property holds for every example hypothesis draws."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import hypothesis.extra.numpy as hnp
import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from impute_cli.config import MaskConfig
from impute_cli.errors import ImputeError
from impute_cli.io.dataset import open_cube
from impute_cli.io.encoding import packed_range, packing
from impute_cli.io.writer import build_output, write_atomic
from impute_cli.masks.context_query import ContextSampler, query_mask
from impute_cli.masks.holdout import HOLDOUTS, make_holdout
from impute_cli.masks.observation import observation_masks, observation_pool

FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FILL_VALUES = (None, -9999.0, 1e20, 99999.0)  # None: NaN


@st.composite
def gappy_files(draw):
    """(dataset to write with its encoding, expected decoded values, expected missing mask)."""
    T, H, W = draw(st.integers(1, 5)), draw(st.integers(2, 6)), draw(st.integers(2, 6))
    kind = draw(st.sampled_from(["float32", "float64", "int16"]))
    missing = draw(hnp.arrays(bool, (T, H, W)))
    values = draw(hnp.arrays(np.float64, (T, H, W), elements=st.floats(-1000, 1000, width=32)))
    if kind == "int16":  # packed: what comes back is the value on the packing grid
        scale, offset = 0.25, 10.0
        expected = np.round((values - offset) / scale) * scale + offset
        enc = {"dtype": "int16", "scale_factor": scale, "add_offset": offset, "_FillValue": np.int16(-32768)}
    else:
        expected = values.astype(kind)
        fill = draw(st.sampled_from(FILL_VALUES))
        enc = {"dtype": kind, "_FillValue": np.array(np.nan if fill is None else fill, kind)}
    data = np.where(missing, np.nan, expected)
    ds = xr.Dataset({"v": (("time", "lat", "lon"), data, {"units": "K"})},
                    coords={"time": pd.date_range("2000-01-01", periods=T), "lat": np.arange(H, dtype="float32"),
                            "lon": np.arange(W, dtype="float32")})
    return ds, {"v": enc}, expected.astype("float32"), missing


def _written_and_read(ds: xr.Dataset, enc: dict, d: Path):
    path = d / "c.nc"
    ds.to_netcdf(path, encoding=enc)
    cube = open_cube(path, ["v"])
    cube.load()
    return path, cube


@FAST
@given(gappy_files())
def test_reading_finds_exactly_the_gaps_and_the_values(case):
    ds, enc, expected, missing = case
    with tempfile.TemporaryDirectory() as d:
        _, cube = _written_and_read(ds, enc, Path(d))
        obs = observation_masks(cube)[:, 0]
        assert np.array_equal(obs, ~missing)
        assert np.array_equal(cube.memory[:, 0][obs], expected[obs])


@FAST
@given(gappy_files(), st.integers(0, 2**31 - 1))
def test_writing_keeps_observed_cells_bit_for_bit(case, seed):
    ds, enc, _, missing = case
    with tempfile.TemporaryDirectory() as d:
        path, cube = _written_and_read(ds, enc, Path(d))
        est = np.random.default_rng(seed).normal(size=cube.memory.shape).astype("float32")
        out = Path(d) / "o.nc"
        write_atomic(build_output(cube, est, "test"), out, overwrite=False)
        with xr.open_dataset(path) as a, xr.open_dataset(out) as b:
            orig, filled, flag = a["v"].values, b["v_filled"].values, b["v_imputed_flag"].values
            assert filled.dtype == orig.dtype
            assert np.array_equal(filled[~missing], orig[~missing])  # bit for bit
            expected = est[:, 0][missing].astype(orig.dtype)
            pack = packing(cube.ds["v"])
            if pack is not None:  # V_filled is packed like V: the estimate at the packing's precision
                lo, hi = packed_range(pack)
                k = np.round((np.clip(expected, lo, hi) - pack["add_offset"]) / pack["scale_factor"])
                expected = (k * pack["scale_factor"] + pack["add_offset"]).astype(orig.dtype)
                np.testing.assert_allclose(filled[missing], expected, rtol=0, atol=1e-9 * max(1.0, abs(hi)))
            else:
                assert np.array_equal(filled[missing], expected)
            assert np.array_equal(flag, missing.astype("int8"))
            assert np.array_equal(b["v"].values, orig, equal_nan=True)  # the input variable unchanged


@st.composite
def observation_windows(draw):
    B, F, C, h, w = (draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 2)),
                     draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    M = draw(hnp.arrays(bool, (B, F, C, h, w)))
    return torch.from_numpy(M)


@FAST
@given(observation_windows(), st.sampled_from(["pixel", "block", "mixed", "empirical"]),
       st.floats(0.05, 1.0), st.integers(0, 2**31 - 1), st.sampled_from(["observed", "rest"]))
def test_context_and_query_lie_inside_the_observations(M, pattern, ratio, seed, query):
    gen = torch.Generator().manual_seed(seed)
    pool = None
    if pattern == "empirical":
        pool = observation_pool(np.random.default_rng(seed).random((6, 1, 10, 10)) < 0.6, np.ones((10, 10), bool))
        if pool.all():
            return
    sampler = ContextSampler(pattern, [2, 4], pool)
    ctx = sampler(M, ratio, gen)
    assert ctx.shape == M.shape and ctx.dtype == torch.bool
    assert not (ctx & ~M).any(), "the context uses a cell that is not observed"
    qry = query_mask(M, ctx, MaskConfig(pattern="pixel", query=query, query_ratio=ratio), gen)
    assert not (qry & ~M).any(), "the query uses a cell that is not observed"
    if query == "rest":
        assert not (qry & ctx).any()


@FAST
@given(hnp.arrays(bool, st.tuples(st.integers(2, 6), st.integers(2, 10), st.integers(2, 10))),
       st.sampled_from(HOLDOUTS), st.floats(0.01, 0.99), st.integers(0, 1000))
def test_holdouts_hide_only_observed_cells_or_refuse(observed, pattern, fraction, seed):
    valid = np.ones(observed.shape[1:], bool)
    try:
        h = make_holdout(observed, valid, pattern, fraction, seed)
    except ImputeError as e:
        assert str(e) and "\n" not in str(e)
        return
    assert not (h.hidden & ~observed).any()
    assert h.hidden.any() and (observed & ~h.hidden).any()


# --- malformed files ------------------------------------------------------------------------------

_SERIAL = itertools.count()


def _small_file(path: Path, fmt: str) -> bytes:
    ds = xr.Dataset({"sst": (("time", "lat", "lon"), np.where(np.arange(48).reshape(3, 4, 4) % 5 == 0, np.nan,
                                                               np.arange(48.0).reshape(3, 4, 4)).astype("float32"))},
                    coords={"time": pd.date_range("2000-01-01", periods=3), "lat": np.arange(4.0), "lon": np.arange(4.0)})
    ds.to_netcdf(path, format=fmt)
    return path.read_bytes()


@pytest.mark.parametrize("fmt", ["NETCDF3_CLASSIC", "NETCDF3_64BIT", "NETCDF4_CLASSIC"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_malformed_headers_are_refused_cleanly(tmp_path, fmt, data):
    """Random bytes of the header changed, or the file cut: reading either works or raises the
    project's one-line error -- never another exception."""
    good = _small_file(tmp_path / "good.nc", fmt)
    header_end = min(len(good), 400)
    blob = bytearray(good)
    if data.draw(st.booleans()):
        for _ in range(data.draw(st.integers(1, 8))):
            blob[data.draw(st.integers(0, header_end - 1))] = data.draw(st.integers(0, 255))
    else:
        blob = blob[: data.draw(st.integers(0, len(good) - 1))]
    # a new name per example: netCDF-C/HDF5 can hang reopening, in one process, a path whose
    # earlier contents failed to open (the file is rewritten in place, same inode)
    bad = tmp_path / f"bad{next(_SERIAL)}.nc"
    bad.write_bytes(bytes(blob))
    try:
        cube = open_cube(bad)
        if cube.data.nbytes < 10_000_000:  # a mutated dim length must not make the test allocate gigabytes
            cube.load()
    except ImputeError as e:
        assert "\n" not in str(e)


def test_a_header_that_crashed_netcdf_c_is_refused(tmp_path):
    """A case of the fuzz above, kept: a classic header claiming 2 046 820 355 dimensions, which
    makes netCDF-C crash the process (segmentation fault) unless the header is checked first."""
    blob = bytearray(_small_file(tmp_path / "good.nc", "NETCDF3_CLASSIC"))
    blob[12] = 0x7A  # the high byte of the dimension count
    bad = tmp_path / "bad.nc"
    bad.write_bytes(bytes(blob))
    with pytest.raises(ImputeError, match="header is corrupt"):
        open_cube(bad)


def test_a_variable_that_uses_a_dimension_twice_is_refused(tmp_path):
    """A case of the fuzz above, kept (a mutated NETCDF3_64BIT header): a variable on dims
    (time, lat, time) opens, then raises xarray's ValueError on first use."""
    import netCDF4
    bad = tmp_path / "dup.nc"
    with netCDF4.Dataset(bad, "w", format="NETCDF3_64BIT") as d:
        d.createDimension("time", 3)
        d.createDimension("lat", 2)
        d.createVariable("time", "f8", ("time", "lat", "time"))[:] = 0
        d.createVariable("sst", "f4", ("time", "lat"))[:] = 1
    with pytest.raises(ImputeError, match="uses a dimension twice"):
        open_cube(bad)
