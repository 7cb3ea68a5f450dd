"""confidence: samples -> confidence regions with a measured coverage ([UQ] §5).

From B samples x̂^(b) (an `impute --samples B --save-samples` output) and the point estimate
x̂* (V_filled), at level 1 − α:

- per cell: x̂* ± the (1 − α) quantile of the samples' distances |x̂^(b) − x̂*| to it (the one-cell
  case of the region below; the samples' own α/2 and 1 − α/2 quantiles, V_lower/V_upper of
  `impute`, are centred on the samples' mean, which can sit away from x̂*);
- per region (a time step by default, or blocks of time steps, or the whole cube), over its
  imputed cells: D_b = ‖x̂^(b)_miss − x̂*_miss‖₂, the radius D̂_{1−α} = the (1 − α) quantile of
  the D_b, and the region {x : ‖x_miss − x̂*_miss‖₂ ≤ D̂_{1−α}} ([UQ] Corollary 1).

With a truth file: the fraction of imputed cells inside their intervals, the fraction of
regions whose true values lie in their ball, and the mean interval width.

`--calibrate` (split conformal): hide observed cells of the same data with the data's own gap
shapes (the gaps of another run of time steps laid over a quarter of this one, as DINEOF
cross-validation does, or scattered cells where the gaps are scattered), draw
samples for them with the same model and settings (on scattered gaps each segment with half a
window of context time steps on either side), and take the conformal quantile of the
normalised scores — per cell |y − x̂*| / d (d the interval's half-width), per region ‖y − x̂*‖ / D̂.
The intervals and radii are then widened (or narrowed) by those factors around x̂*, and the
factors are recorded in the output."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from impute_cli.version import __version__
from impute_cli.io.dataset import open_dataset
from impute_cli.io.encoding import clipper
from impute_cli.device import pick_device, use_threads
from impute_cli.errors import OptionError
from impute_cli.io.writer import check_output_path, utc_stamp, write_atomic
from impute_cli.options import ConfidenceOptions, check_zarr_format
from impute_cli.uncertainty.calibration import HIDING_WORDS, calibrate
from impute_cli.uncertainty.regions import (REGION_WORDS, Uncertain, check_level, check_same_grid, coverage, group_index,
                                            intervals, radii, read_uncertain, sampled_variables, widen)



def confidence_file(result: str | Path, out: str | Path, opts: ConfidenceOptions) -> dict[str, Any]:
    """Build the regions for every sampled variable of RESULT, write OUT (RESULT plus
    V_ci_lower, V_ci_upper, V_ci_radius) atomically, and return the report."""
    check_level(opts.level)
    check_zarr_format(opts.zarr_format)
    if opts.calibration_frames < 1:
        raise OptionError(f"--calibration-frames must be at least 1, got {opts.calibration_frames}")
    if opts.model is not None and not opts.calibrate:
        raise OptionError("--model is used by --calibrate only; add --calibrate or drop --model")
    if opts.calibrate:
        pick_device(opts.device)  # --calibrate runs the model; refuse a bad device before reading
    use_threads(opts.threads)
    check_output_path(out, result, opts.overwrite)
    ds = open_dataset(result)
    variables = sampled_variables(ds, opts.variables)
    truth_ds = open_dataset(opts.truth) if opts.truth else None
    us = {v: read_uncertain(ds, v) for v in variables}
    truths = {v: check_same_grid(ds, truth_ds, v, f"'{opts.truth}'", us[v].dims)
              for v in variables} if truth_ds is not None else {}
    factors = calibrate(result, ds, variables, opts.level, opts.group, opts) if opts.calibrate else {}
    new = ds.copy()
    report: dict[str, Any] = {"level": opts.level, "group": opts.group, "variables": {}}
    for v, u in us.items():
        groups = group_index(u.centre.shape[0], opts.group)
        clip = clipper(ds[v] if v in ds else None)  # the input's valid_min/max, as impute's
        raw = intervals(u, opts.level)
        lo, hi = clip(raw[0]), clip(raw[1])
        r = radii(u, opts.level, groups)
        rep: dict[str, Any] = {"samples": int(u.samples.shape[0]), "imputed_cells": int(u.imputed.sum()),
                               "regions": int(np.isfinite(r).sum()),
                               "mean_width": float((hi - lo)[u.imputed].mean()) if u.imputed.any() else float("nan"),
                               "mean_radius": float(np.nanmean(r)) if np.isfinite(r).any() else float("nan")}
        if v in truths:
            rep["raw"] = coverage(u, lo, hi, r, groups, truths[v])
        if v in factors:
            f = factors[v]
            rep["calibration"] = f
            lo, hi = (clip(a) for a in widen(u.centre, *raw, f["cell_factor"]))
            r = r * f["region_factor"]
            rep["mean_width_calibrated"] = float((hi - lo)[u.imputed].mean()) if u.imputed.any() else float("nan")
            if v in truths:
                rep["calibrated"] = coverage(u, lo, hi, r, groups, truths[v])
        report["variables"][v] = rep
        _write_regions(new, v, u, lo, hi, r, groups, opts.level, factors.get(v), opts.group)
    stamp = utc_stamp()
    prev = new.attrs.get("history", "")
    new.attrs["history"] = f"{stamp}: {opts.history} (impute-cli {__version__})" + (f"\n{prev}" if prev else "")
    write_atomic(new, out, opts.overwrite, zarr_format=opts.zarr_format)
    return report


def _write_regions(ds: xr.Dataset, v: str, u: Uncertain, lo: np.ndarray, hi: np.ndarray, r: np.ndarray,
                   groups: np.ndarray, level: float, factor: dict[str, float] | None, group: str) -> None:
    src = ds[f"{v}_filled"]
    back = [u.dims.index(d) for d in src.dims]  # time-first arrays back to the file's dim order
    lo, hi, centre = (np.transpose(a, back) for a in (lo, hi, u.centre))
    units = {"units": src.attrs["units"]} if "units" in src.attrs else {}
    cal = (f"; widened by the split-conformal factor {factor['cell_factor']:.4g} around {v}_filled"
           if factor else "; not calibrated")
    for name, vals, word in ((f"{v}_ci_lower", lo, "lower"), (f"{v}_ci_upper", hi, "upper")):
        ds[name] = xr.DataArray(np.where(np.isnan(centre), np.nan, vals).astype(src.dtype), dims=src.dims,
                                coords=src.coords, attrs={
            **units, "long_name": f"{level:.0%} confidence interval of {v}_filled, {word} bound",
            "confidence_level": level, **(_factor_attrs(factor, "cell") if factor else {}),
            "comment": f"{v}_filled -/+ the {level:g}-quantile of the samples' distances to it{cal}"})
        ds[name].encoding = {"_FillValue": np.array(np.nan, dtype=src.dtype), "dtype": src.dtype}
    t = u.dims[0]
    rad = r[groups].astype(src.dtype)
    calr = (f"; scaled by the split-conformal factor {factor['region_factor']:.4g}" if factor else "; not calibrated")
    ds[f"{v}_ci_radius"] = xr.DataArray(rad, dims=(t,), coords={t: ds[t]} if t in ds.coords else None, attrs={
        **units, "long_name": f"radius of the {level:.0%} joint confidence region of the imputed {v}",
        "confidence_level": level, **(_factor_attrs(factor, "region") if factor else {}),
        "comment": (f"L2 ball around {v}_filled over the imputed cells of each region ({REGION_WORDS.get(group, f'blocks of {group} time steps')}; "
                    f"each time step holds its region's radius); the level-quantile of the samples' distances "
                    f"to {v}_filled ([UQ] Corollary 1){calr}")})
    ds[f"{v}_ci_radius"].encoding = {"_FillValue": np.array(np.nan, dtype=src.dtype), "dtype": src.dtype}
    anc = src.attrs.get("ancillary_variables", "")
    ds[f"{v}_filled"].attrs["ancillary_variables"] = " ".join(
        [a for a in anc.split() if a] + [f"{v}_ci_lower", f"{v}_ci_upper", f"{v}_ci_radius"])


def _factor_attrs(factor: dict[str, Any], kind: str) -> dict[str, Any]:
    """calibration_factor, and its 5-95 % range over resamples of the calibration segments."""
    out: dict[str, Any] = {"calibration_factor": factor[f"{kind}_factor"]}
    if factor.get("calibration_hiding"):
        out["calibration_hiding"] = HIDING_WORDS[factor["calibration_hiding"]]
    rng = factor.get(f"{kind}_factor_range")
    if rng and all(map(math.isfinite, rng)):
        out["calibration_factor_range"] = np.asarray(rng, "float64")
    return out


def format_report(report: dict[str, Any]) -> str:
    """The report as a few readable lines."""
    lines = [f"confidence level {report['level']:g}, regions: "
             f"{REGION_WORDS.get(report['group'], 'blocks of ' + report['group'] + ' time steps')}"]
    for v, r in report["variables"].items():
        lines.append(f"{v}: {r['imputed_cells']} imputed cells, {r['samples']} samples, {r['regions']} regions; "
                     f"mean interval width {r['mean_width']:.4g}, mean radius {r['mean_radius']:.4g}")
        if "calibration" in r:
            c = r["calibration"]
            how = HIDING_WORDS.get(c.get("calibration_hiding", ""), "hidden cells")
            lines.append(f"  calibrated on {c['calibration_cells']} {how} and {c['calibration_regions']} regions: "
                         f"intervals x{c['cell_factor']:.3f}, radii x{c['region_factor']:.3f} "
                         f"(mean width now {r['mean_width_calibrated']:.4g})")
            cr, rr = c.get("cell_factor_range", [math.nan] * 2), c.get("region_factor_range", [math.nan] * 2)
            if all(map(math.isfinite, cr + rr)):
                more = "" if c.get("calibration_whole_record") else "; more --calibration-frames narrow this"
                lines.append(f"  another draw of the {c['calibration_segments']} calibration segments could give intervals "
                             f"x{cr[0]:.3f}-{cr[1]:.3f}, radii x{rr[0]:.3f}-{rr[1]:.3f} (5-95 %){more}")
        for key in ("raw", "calibrated"):
            if key in r:
                k = r[key]
                lines.append(f"  {key:<10} coverage on truth: cells {k['cell_coverage']:.1%} of {k['cells']}, "
                             f"regions {k['region_coverage']:.1%} of {k['regions']}; width {k['mean_width']:.4g}, "
                             f"RMSE {k['rmse']:.4g}")
    return "\n".join(lines)
