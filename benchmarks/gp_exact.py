"""The physical limit on Gaussian-process data (METHOD §6, [UQ] §3-4): a space-time GP cube
whose exact posterior is known, and a scorer that puts an impute-cli output next to it.

Run from the project root (tests/test_gp_exact.py runs `make` and `score` on a tiny cube):

    python benchmarks/gp_exact.py make /tmp/gp-pixel --pattern pixel --observed 0.5
    impute-cli train /tmp/gp-pixel/gappy.nc ... ; impute-cli impute /tmp/gp-pixel/gappy.nc out.nc ...
    python benchmarks/gp_exact.py score /tmp/gp-pixel out.nc --var tas

Time on 2 CPU cores: `make` about 12 s for the default 512 x 16 x 16 cube (86 s for --T 8192),
`score` a few seconds; uncertainty.py runs the whole train / impute / score / confidence chain.

`make` writes OUTDIR/gappy.nc (the field with NaN where hidden), OUTDIR/truth.nc (the complete
field + `observed`, process parameters in the attributes) and OUTDIR/posterior.nc (exact posterior
mean and sd, and the oracle's per-time-step L2-ball radius and truth distance, METHOD §4).
The field is AR(1) in time x Matérn-3/2 in space (impute_cli.gp), scaled to look like a
near-surface air temperature: loc + scale * x in K. `score` prints a Markdown table (or JSON)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from impute_cli.evaluation.gp import (
    GP_GAP_PATTERNS,
    TAU2,
    exact_posterior,
    gap_mask,
    interval_coverage,
    oracle_joint_coverage,
    sample_cube,
    z_value,
)

ENCODING = {"time": {"dtype": "int32", "units": "days since 2020-01-01"},
            "lat": {"_FillValue": None}, "lon": {"_FillValue": None}}  # CF: no fill on coordinates


def _coords(T: int, H: int, W: int) -> dict:
    return {
        "time": ("time", pd.date_range("2020-01-01", periods=T, freq="D"), {"standard_name": "time", "axis": "T"}),
        "lat": ("lat", np.linspace(40, 40 + 0.25 * (H - 1), H, dtype="float32"),
                {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"}),
        "lon": ("lon", np.linspace(5, 5 + 0.25 * (W - 1), W, dtype="float32"),
                {"standard_name": "longitude", "units": "degrees_east", "axis": "X"}),
    }


def _series_coords(T: int, S: int) -> dict:
    """A (time, station) file (CF timeSeries): S stations 0.25 degree apart along a parallel, the
    GP's one-cell spacing; ids as the station coordinate, lat/lon auxiliary."""
    return {
        "time": ("time", pd.date_range("2020-01-01", periods=T, freq="D"), {"standard_name": "time", "axis": "T"}),
        "station": ("station", np.array([f"ST{k:03d}" for k in range(S)]),
                    {"cf_role": "timeseries_id", "long_name": "station id"}),
        "lat": ("station", np.full(S, 40.0, dtype="float32"), {"standard_name": "latitude", "units": "degrees_north"}),
        "lon": ("station", np.linspace(5, 5 + 0.25 * (S - 1), S, dtype="float32"),
                {"standard_name": "longitude", "units": "degrees_east"}),
    }


def make(args: argparse.Namespace) -> dict:
    """Draw the cube, hide cells, compute the exact posterior and the oracle's joint regions
    (METHOD §4, §6), write the three files; return the oracle's figures and timings. The
    'series' pattern makes --W station series on a line: a (time, station) file."""
    if args.pattern == "series":
        args.H = 1
    out = Path(args.outdir)
    if out.exists() and not out.is_dir():
        sys.exit(f"gp_exact: {out} is a file; give a folder")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    truth = sample_cube(args.T, args.H, args.W, args.phi, args.ell, args.seed, loc=args.loc, scale=args.scale)
    truth = truth.astype("float32").astype("float64")  # the files are float32: condition on what they hold
    obs = gap_mask(truth.shape, args.pattern, args.observed, args.seed)
    t1 = time.perf_counter()
    post = exact_posterior(np.where(obs, truth, np.nan), obs, args.phi, args.ell, args.tau2,
                           loc=args.loc, scale=args.scale)
    t2 = time.perf_counter()
    joint = oracle_joint_coverage(post, truth, obs, args.alpha, args.samples, args.seed)
    t3 = time.perf_counter()

    v, dims = args.var, ("time", "lat", "lon")
    coords = _coords(*truth.shape)
    encoding = ENCODING
    if args.pattern == "series":  # (time, station): the dummy lat axis of the process goes
        dims, coords = ("time", "station"), _series_coords(truth.shape[0], truth.shape[2])
        truth, obs = truth[:, 0], obs[:, 0]
        post = post._replace(mean=post.mean[:, 0], sd=post.sd[:, 0])
        encoding = {"time": ENCODING["time"], "lat": {"_FillValue": None}, "lon": {"_FillValue": None}}
    params = {"gp_process": "AR(1) in time x Matern nu=3/2 in space, separable, stationary",
              "gp_phi": args.phi, "gp_ell_cells": args.ell, "gp_nu": 1.5, "gp_tau2": args.tau2,
              "gp_loc": args.loc, "gp_scale": args.scale, "gp_seed": args.seed,
              "gap_pattern": args.pattern, "gap_observed": args.observed}
    attrs = {"standard_name": "air_temperature", "units": "K",
             "long_name": "synthetic near-surface air temperature (space-time Gaussian process)"}
    gattrs = {"Conventions": "CF-1.8", "source": "benchmarks/gp_exact.py make", **params,
              **({"featureType": "timeSeries"} if args.pattern == "series" else {})}
    gappy = xr.Dataset({v: (dims, np.where(obs, truth, np.nan).astype("float32"), attrs)}, coords=coords,
                       attrs={**gattrs, "title": f"GP benchmark cube, {args.pattern} gaps"})
    full = xr.Dataset({v: (dims, truth.astype("float32"), attrs), "observed": (dims, obs)}, coords=coords,
                      attrs={**gattrs, "title": "GP benchmark cube, complete"})
    pattrs = {"units": "K", "standard_name": "air_temperature"}
    posterior = xr.Dataset(
        {f"{v}_mean": (dims, post.mean, {**pattrs, "long_name": "exact posterior mean"}),
         f"{v}_sd": (dims, post.sd, {"units": "K", "long_name": "exact marginal posterior standard deviation"}),
         "oracle_joint_radius": ("time", joint.radius, {"units": "K", "long_name":
                                 f"oracle L2-ball radius over the missing cells, {1 - args.alpha:.0%} quantile "
                                 f"of {args.samples} exact posterior samples (NaN: nothing missing)"}),
         "oracle_joint_distance": ("time", joint.distance, {"units": "K", "long_name":
                                   "L2 distance of the truth's missing cells from the posterior mean"})},
        coords=coords, attrs={**gattrs, "title": "GP benchmark cube, exact posterior",
                              "oracle_alpha": args.alpha, "oracle_samples": args.samples})
    gappy.to_netcdf(out / "gappy.nc", encoding=encoding)
    full.to_netcdf(out / "truth.nc", encoding=encoding)
    posterior.to_netcdf(out / "posterior.nc", encoding=encoding)
    t4 = time.perf_counter()

    hid = ~obs
    z = z_value(1 - args.alpha)
    res = {"cube": [args.T, args.H, args.W], "pattern": args.pattern, "observed_fraction": float(obs.mean()),
           "hidden_cells": int(hid.sum()), "field_variance": args.scale**2,
           "field_variance_sample": float(truth.var()),
           "oracle_mse": float(np.mean((post.mean - truth)[hid] ** 2)),
           "oracle_cell_coverage": interval_coverage(truth, post.mean - z * post.sd, post.mean + z * post.sd, hid),
           "oracle_joint_coverage": joint.coverage, "level": 1 - args.alpha,
           "seconds": {"sample": t1 - t0, "posterior": t2 - t1, "joint": t3 - t2, "write": t4 - t3,
                       "total": t4 - t0}}
    return res


def _load(path: Path) -> xr.Dataset:
    if not path.exists():
        sys.exit(f"gp_exact: {path} not found (run `make` first?)")
    return xr.open_dataset(path)


def score(args: argparse.Namespace) -> dict:
    """An impute-cli output against the exact posterior on the hidden cells (METHOD §6): MSE and
    its ratio to the limit, per-cell interval coverage and width of both, oracle joint coverage;
    for calibrated intervals, their factor and the one that would have put `level` of the hidden
    cells inside them."""
    d = Path(args.outdir)
    truth_ds, post_ds, res_ds = _load(d / "truth.nc"), _load(d / "posterior.nc"), _load(Path(args.result))
    v = args.var
    names = {k: (getattr(args, f"{k}_var") or f"{v}_{k}") for k in ("filled", "std", "lower", "upper")}
    if names["filled"] not in res_ds:
        sys.exit(f"gp_exact: {args.result} has no variable {names['filled']!r} (variables: {list(res_ds.data_vars)}); "
                 "pass --filled-var")
    truth = truth_ds[v].values.astype("float64")
    hid = ~truth_ds["observed"].values.astype(bool)
    mean, sd = post_ds[f"{v}_mean"].values, post_ds[f"{v}_sd"].values
    filled = res_ds[names["filled"]].values.astype("float64")
    if filled.shape != truth.shape:
        sys.exit(f"gp_exact: {names['filled']} has shape {filled.shape}, the truth {truth.shape}")
    level = args.level
    if names["lower"] in res_ds and names["upper"] in res_ds:  # the file's own level, when it says
        q_lo, q_hi = (res_ds[names[k]].attrs.get("quantile") for k in ("lower", "upper"))
        if q_lo is not None and q_hi is not None:
            level = float(q_hi) - float(q_lo)
    z = z_value(level)

    finite = np.isfinite(filled) & hid
    mse_tool = float(np.mean((filled[finite] - truth[finite]) ** 2)) if finite.any() else float("nan")
    mse_oracle = float(np.mean((mean[hid] - truth[hid]) ** 2))
    alpha = float(post_ds.attrs.get("oracle_alpha", 0.1))
    radius, dist = post_ds["oracle_joint_radius"].values, post_ds["oracle_joint_distance"].values
    ok = np.isfinite(radius)
    res = {"hidden_cells": int(hid.sum()), "nan_in_gaps": int((hid & ~np.isfinite(filled)).sum()),
           "field_variance": float(truth_ds.attrs.get("gp_scale", np.nan)) ** 2,
           "mse_tool": mse_tool, "mse_oracle": mse_oracle, "mse_ratio": mse_tool / mse_oracle,
           "level": level, "intervals": {},
           "cell_coverage_oracle": interval_coverage(truth, mean - z * sd, mean + z * sd, hid),
           "width_oracle": float(np.mean(2 * z * sd[hid])),
           "joint_level": 1 - alpha, "joint_coverage_oracle": float(np.mean(dist[ok] <= radius[ok]))}
    bounds = {}
    if names["lower"] in res_ds and names["upper"] in res_ds:
        bounds[f"{names['lower']} .. {names['upper']}"] = (res_ds[names["lower"]].values, res_ds[names["upper"]].values)
    if names["std"] in res_ds:
        s = res_ds[names["std"]].values
        bounds[f"{names['filled']} ± {z:.3f} {names['std']}"] = (filled - z * s, filled + z * s)
    for label, (lo, hi) in bounds.items():
        w = (hi - lo)[hid]
        res["intervals"][label] = {"coverage": interval_coverage(truth, lo, hi, hid),
                                   "width": float(np.nanmean(w)) if np.isfinite(w).any() else float("nan")}
    f = res_ds[names["upper"]].attrs.get("calibration_factor") if names["upper"] in res_ds else None
    if f is not None and names["lower"] in res_ds:  # the factor the hidden cells needed for the level
        lo, hi = res_ds[names["lower"]].values[hid], res_ds[names["upper"]].values[hid]
        y, c = truth[hid], filled[hid]
        with np.errstate(divide="ignore", invalid="ignore"):  # each side's half-width before the factor
            r = np.where(y >= c, (y - c) / ((hi - c) / f), (c - y) / ((c - lo) / f))
        res["factor"], res["factor_needed"] = float(f), float(np.quantile(np.nan_to_num(r, nan=np.inf), level))
    if f"{v}_sample" in res_ds:  # --save-samples: the samples' own CRPS and raw (uncalibrated) interval
        res["samples"] = sample_scores(res_ds[f"{v}_sample"].values, truth, mean, sd, hid, level)
    return res


def sample_scores(samples: np.ndarray, truth: np.ndarray, mean: np.ndarray, sd: np.ndarray, hid: np.ndarray,
                  level: float) -> dict:
    """From the samples (N, T, H, W) on the hidden cells: the mean CRPS, by the ensemble estimator
    E|X - y| - E|X - X'| / 2 with the N(N - 1) pairs (the "fair" one: unbiased for the
    distribution the samples come from), the exact posterior's (Gaussian, closed form), and the
    coverage and width of the samples' raw central interval at `level`."""
    x = samples[:, hid].astype("float64")  # (N, cells)
    y = truth[hid]
    n = x.shape[0]
    xs = np.sort(x, axis=0)
    # sum over pairs |X_i - X_j| from the sorted draws: sum_k (2k - n + 1) x_(k), times 2 for ordered pairs
    pair = 2 * ((2 * np.arange(n) - n + 1)[:, None] * xs).sum(0) / (n * (n - 1))
    crps = np.abs(x - y).mean(0) - 0.5 * pair
    zc = (y - mean[hid]) / sd[hid]
    phi = np.exp(-0.5 * zc**2) / math.sqrt(2 * math.pi)
    Phi = 0.5 * (1 + np.vectorize(math.erf)(zc / math.sqrt(2)))
    crps_oracle = sd[hid] * (zc * (2 * Phi - 1) + 2 * phi - 1 / math.sqrt(math.pi))
    lo, hi = np.quantile(x, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return {"n": n, "crps": float(crps.mean()), "crps_oracle": float(crps_oracle.mean()),
            "crps_ratio": float(crps.mean() / crps_oracle.mean()),
            "raw_coverage": float(np.mean((y >= lo) & (y <= hi))), "raw_width": float(np.mean(hi - lo))}


def print_make(r: dict) -> None:
    T, H, W = r["cube"]
    print(f"\n## GP cube {T}x{H}x{W}, {r['pattern']} gaps, {r['observed_fraction']:.1%} observed "
          f"({r['hidden_cells']} hidden cells)\n")
    print("| quantity | value |\n|---|---|")
    print(f"| field variance (K²) | {r['field_variance']:.4f} (sample: {r['field_variance_sample']:.4f}) |")
    print(f"| exact posterior-mean MSE on hidden cells (K²) | {r['oracle_mse']:.4f} |")
    print(f"| MSE / field variance | {r['oracle_mse'] / r['field_variance']:.4f} |")
    print(f"| oracle per-cell coverage, mean ± {z_value(r['level']):.3f} sd (nominal {r['level']:.0%}) | "
          f"{r['oracle_cell_coverage']:.4f} |")
    print(f"| oracle joint per-time-step L2-ball coverage (nominal {r['level']:.0%}) | "
          f"{r['oracle_joint_coverage']:.4f} |")
    s = r["seconds"]
    print(f"| time (s): sample / posterior / joint / write / total | {s['sample']:.1f} / {s['posterior']:.1f} / "
          f"{s['joint']:.1f} / {s['write']:.1f} / {s['total']:.1f} |")


def print_score(r: dict) -> None:
    print(f"\n## Against the exact posterior ({r['hidden_cells']} hidden cells, "
          f"{r['nan_in_gaps']} left NaN by the output)\n")
    print("| quantity | output | exact posterior |\n|---|---|---|")
    print(f"| MSE on hidden cells (K²) | {r['mse_tool']:.4f} | {r['mse_oracle']:.4f} |")
    print(f"| MSE ratio output / posterior mean (1 = the limit) | {r['mse_ratio']:.3f} | 1 |")
    oracle = (f"{r['cell_coverage_oracle']:.4f}", f"{r['width_oracle']:.4f}")
    for label, iv in (r["intervals"] or {"no interval in the output": None}).items():
        cov, wid = ("—", "—") if iv is None else (f"{iv['coverage']:.4f}", f"{iv['width']:.4f}")
        print(f"| per-cell coverage, {r['level']:.0%} interval ({label}) | {cov} | {oracle[0]} |")
        print(f"| mean interval width, K ({label}) | {wid} | {oracle[1]} |")
    print(f"| joint per-time-step L2-ball coverage ({r['joint_level']:.0%}) | — | {r['joint_coverage_oracle']:.4f} |")
    if "factor" in r:
        print(f"| calibration factor of the intervals (the factor the hidden cells needed) | {r['factor']:.4g} "
              f"({r['factor_needed']:.4g}) | — |")
    if "samples" in r:
        sm = r["samples"]
        print(f"| CRPS of the {sm['n']} samples, K | {sm['crps']:.4f} | {sm['crps_oracle']:.4f} |")
        print(f"| per-cell coverage, the samples' raw {r['level']:.0%} interval | {sm['raw_coverage']:.4f} | "
              f"{r['cell_coverage_oracle']:.4f} |")
    print(f"\nfield variance: {r['field_variance']:.4f} K²")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="write gappy.nc, truth.nc and posterior.nc into OUTDIR")
    m.add_argument("outdir")
    m.add_argument("--T", type=int, default=512)
    m.add_argument("--H", type=int, default=16)
    m.add_argument("--W", type=int, default=16, help="grid width; with --pattern series, the number of stations")
    m.add_argument("--phi", type=float, default=0.9, help="AR(1) coefficient in time")
    m.add_argument("--ell", type=float, default=3.0, help="Matérn-3/2 length scale in grid cells")
    m.add_argument("--tau2", type=float, default=TAU2,
                   help="observation nugget as a fraction of the field variance (jitter; the data carry no noise)")
    m.add_argument("--loc", type=float, default=285.0, help="field mean (K)")
    m.add_argument("--scale", type=float, default=2.0, help="field standard deviation (K)")
    m.add_argument("--pattern", choices=GP_GAP_PATTERNS, default="pixel")
    m.add_argument("--observed", type=float, default=0.5)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--var", default="tas")
    m.add_argument("--alpha", type=float, default=0.1, help="oracle joint regions at level 1 - alpha")
    m.add_argument("--samples", type=int, default=1000, help="exact posterior samples per time step (B)")
    m.add_argument("--json", action="store_true")
    s = sub.add_parser("score", help="compare an impute-cli output with the exact posterior")
    s.add_argument("outdir")
    s.add_argument("result")
    s.add_argument("--var", default="tas")
    s.add_argument("--filled-var", default=None, help="default: VAR_filled")
    s.add_argument("--std-var", default=None, help="default: VAR_std")
    s.add_argument("--lower-var", default=None, help="default: VAR_lower")
    s.add_argument("--upper-var", default=None, help="default: VAR_upper")
    s.add_argument("--level", type=float, default=0.9, help="nominal level of the per-cell intervals, unless VAR_lower/VAR_upper carry `quantile` attributes")
    s.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    r = make(args) if args.cmd == "make" else score(args)
    if args.json:
        print(json.dumps(r))
    elif args.cmd == "make":
        print_make(r)
    else:
        print_score(r)


if __name__ == "__main__":
    main()
