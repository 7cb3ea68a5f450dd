"""How steady `impute --samples`' calibration factor is: the range the factor could take with
another draw of the calibration's segments is printed with it and kept beside it in the
output, and the run says when more --calibration-frames would narrow a wide one."""

from __future__ import annotations

import math
import re

import numpy as np

from conftest import open_any, run_cli
from impute_cli.testing import tiny_cube_dataset, write_cube
from impute_cli.uncertainty.calibration import range_words

CPU = ("--device", "cpu")


def factor(f: float, lo: float, hi: float, whole: bool = False, segments: int = 8) -> dict:
    return {"cell_factor": f, "cell_factor_range": [lo, hi], "calibration_whole_record": whole,
            "calibration_segments": segments}


def test_the_range_is_printed_and_a_wide_one_earns_a_hint():
    assert range_words(factor(1.0, 0.95, 1.05)) == " (0.95-1.05 with another draw of the 8 segments)"
    wide = range_words(factor(1.12, 0.97, 1.26))  # the GP block cube at 128 frames: 13 % on the low side
    assert wide.startswith(" (0.97-1.26 with another draw of the 8 segments") and "--calibration-frames" in wide
    assert "--calibration-frames" in range_words(factor(1.0, 0.99, 1.11)), "wide on one side is wide"
    assert "--calibration-frames" not in range_words(factor(1.0, 0.8, 1.2, whole=True)), \
        "the whole record is hidden already: more frames give nothing"
    few = range_words(factor(4.76, math.nan, math.nan, segments=1))
    assert few == " (1 segment only: too few to say how steady it is; more --calibration-frames give one)", few
    assert "--calibration-frames" not in range_words(factor(1.0, math.nan, math.nan, whole=True, segments=2))
    assert range_words({"cell_factor": 1.0}) == "", "no range recorded"


def test_impute_prints_the_factor_range_and_writes_it_beside_the_factor(sst_model, tmp_path):
    # 48 time steps: six calibration segments of 8 (the tiny preset's 3-step windows), enough to resample
    cube = write_cube(tiny_cube_dataset(48, 16, 16, "cloud", 0.6, seed=1, var="sst"), tmp_path / "long.nc")
    out = tmp_path / "o.nc"
    res = run_cli("impute", cube, out, "--model", sst_model.model, "--samples", 4, "--sampler-steps", 2,
                  "--calibration-frames", 48, "--seed", 0, *CPU)
    m = re.search(r"factor (\S+) \((\S+)-(\S+) with another draw of the 6 segments", res.stderr)
    assert m, res.stderr
    ds = open_any(out)
    f = ds["sst_std"].attrs["calibration_factor"]
    lo, hi = ds["sst_std"].attrs["calibration_factor_range"]
    assert lo <= f <= hi and lo > 0
    assert np.isclose(float(m.group(1)), f, rtol=2e-3) and np.isclose(float(m.group(2)), lo, rtol=2e-3)
    assert np.isclose(float(m.group(3)), hi, rtol=2e-3)
    for k in ("lower", "upper"):
        assert np.array_equal(ds[f"sst_{k}"].attrs["calibration_factor_range"], [lo, hi])


def test_no_range_is_written_where_too_few_segments_give_none(sst_model, tmp_path):
    out = tmp_path / "o.nc"  # 12 time steps: one segment
    res = run_cli("impute", sst_model.cube, out, "--model", sst_model.model, "--samples", 4, "--sampler-steps", 2, *CPU)
    ds = open_any(out)
    assert "calibration_factor" in ds["sst_std"].attrs and "calibration_factor_range" not in ds["sst_std"].attrs
    assert "another draw" not in res.stderr


def test_the_confidence_report_hints_at_more_frames_only_while_the_record_has_some_left():
    from impute_cli.uncertainty.confidence import format_report
    cal = {"calibration_cells": 900, "calibration_regions": 40, "calibration_segments": 8, "cell_factor": 1.1,
           "region_factor": 1.2, "cell_factor_range": [0.9, 1.3], "region_factor_range": [1.0, 1.4],
           "calibration_hiding": "runs", "calibration_whole_record": False}
    var = {"imputed_cells": 1000, "samples": 8, "regions": 40, "mean_width": 1.0, "mean_radius": 2.0,
           "calibration": cal, "mean_width_calibrated": 1.1}
    report = {"level": 0.9, "group": "time", "variables": {"sst": var}}
    assert "x0.900-1.300, radii x1.000-1.400 (5-95 %); more --calibration-frames narrow this" in format_report(report)
    cal["calibration_whole_record"] = True
    text = format_report(report)
    assert "x0.900-1.300, radii x1.000-1.400 (5-95 %)" in text and "--calibration-frames" not in text


def test_the_solver_calibrates_clustered_gaps_of_a_grid_on_more_frames(tmp_path):
    from impute_cli.io.dataset import open_cube
    from impute_cli.testing import tiny_series_dataset
    from impute_cli.uncertainty.calibration import default_frames, hiding
    grids = {p: open_cube(write_cube(tiny_cube_dataset(12, 16, 16, p, 0.6, seed=1, var="sst"), tmp_path / f"{p}.nc"),
                          None, None) for p in ("cloud", "pixel")}
    series = open_cube(write_cube(tiny_series_dataset(48, 6, seed=1), tmp_path / "s.nc"), None, None)
    how = {p: hiding(c.observed(c.read(slice(None), slice(None), slice(None))), c.valid)[0] for p, c in grids.items()}
    assert how == {"cloud": "runs", "pixel": "scattered"}
    assert default_frames(grids["cloud"], "runs", "full") == 256  # 16 segments of two quick windows
    assert default_frames(grids["cloud"], "runs", "student") == 128
    assert default_frames(grids["pixel"], "scattered", "full") == 128
    assert default_frames(series, "runs", "full") == 128  # one segment of two series windows
