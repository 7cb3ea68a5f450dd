"""confidence: samples -> confidence regions with a measured coverage ([UQ] §5, METHOD §4).

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
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import xarray as xr

from . import __version__
from .dataset import grid_dims, open_dataset
from .device import pick_device
from .errors import ImputeError
from .writer import FLAG_IMPUTED, SAMPLE_DIM, check_output_path, utc_stamp, write_atomic

REGION_WORDS = {"time": "one region per time step", "all": "one region for the whole cube"}


@dataclass
class ConfidenceOptions:
    level: float = 0.9
    group: str = "time"  # 'time', 'all', or a number of time steps per region
    variables: list[str] | None = None
    truth: str | None = None
    calibrate: bool = False
    model: str | None = None
    calibration_frames: int = 256  # time steps hidden-and-resampled for --calibrate
    seed: int = 0
    device: str = "auto"
    overwrite: bool = False
    history: str = "impute-cli confidence"
    progress: bool = True
    log: Callable[[str], None] = field(default=lambda s: print(s, file=sys.stderr))


@dataclass
class Uncertain:
    """One variable of an output written with samples, in (time, ...) layout."""

    var: str
    dims: tuple[str, ...]  # the variable's own dims, time first
    centre: np.ndarray  # the point estimate V_filled
    samples: np.ndarray  # (B, *dims)
    imputed: np.ndarray  # bool, cells that were imputed (flag 1)


def check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ImputeError(f"--level must be strictly between 0 and 1 (e.g. 0.9), got {level:g}")


def group_index(n_time: int, group: str) -> np.ndarray:
    """Region number of every time step."""
    if group == "time":
        return np.arange(n_time)
    if group == "all":
        return np.zeros(n_time, int)
    try:
        n = int(group)
    except ValueError:
        n = 0
    if n < 1:
        raise ImputeError(f"--group must be 'time', 'all' or a number of time steps per region, got '{group}'")
    return np.arange(n_time) // n


def read_uncertain(ds: xr.Dataset, var: str) -> Uncertain:
    """V_filled, V_sample and V_imputed_flag of an impute output, in V_filled's dim order."""
    for n in (f"{var}_filled", f"{var}_imputed_flag"):
        if n not in ds:
            raise ImputeError(f"'{n}' is not in the file; give an output of 'impute-cli impute'")
    if f"{var}_sample" not in ds:
        raise ImputeError(f"the file has no samples of {var} ({var}_sample); write them with "
                          "'impute-cli impute IN OUT --samples 64 --save-samples'")
    filled = ds[f"{var}_filled"]
    found = grid_dims(ds, var) if var in ds else None
    t = found[0] if isinstance(found, tuple) else filled.dims[0]
    dims = (t, *[d for d in filled.dims if d != t])  # time first, whatever the file's order
    s = ds[f"{var}_sample"].transpose(SAMPLE_DIM, *dims)
    flag = ds[f"{var}_imputed_flag"].transpose(*dims)
    return Uncertain(var, tuple(map(str, dims)), np.asarray(filled.transpose(*dims).values, "float64"),
                     np.asarray(s.values, "float64"), np.asarray(flag.values) == FLAG_IMPUTED)


def sampled_variables(ds: xr.Dataset, wanted: list[str] | None) -> list[str]:
    have = [str(v)[: -len("_sample")] for v in ds.data_vars if str(v).endswith("_sample")]
    if wanted:
        for v in wanted:
            if v not in have:
                read_uncertain(ds, v)  # raises the right message
        return list(wanted)
    if not have:
        if any(str(v).endswith("_std") for v in ds.data_vars):
            raise ImputeError("the file has per-cell spread (_std) but no samples; impute again with "
                              "--samples N --save-samples so that joint regions can be built")
        raise ImputeError("the file has no samples; make one with 'impute-cli impute IN OUT --samples 64 --save-samples'")
    return have


def half_widths(samples: np.ndarray, centre: np.ndarray, level: float) -> np.ndarray:
    """Per cell, the level-quantile of the samples' distances |x^(b) - x̂*| to the centre."""
    return np.quantile(np.abs(samples - centre), level, axis=0)


def intervals(u: Uncertain, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell interval: the one-cell case of the [UQ] region, x̂* ± the level-quantile of the
    samples' distances |x̂^(b) − x̂*| (observed cells: zero width)."""
    d = np.where(u.imputed, half_widths(u.samples, u.centre, level), 0.0)
    return u.centre - d, u.centre + d


def distances(u: Uncertain, values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """‖values_miss − x̂*_miss‖₂ per region over its imputed cells; `values` (..., *dims) ->
    (..., G), NaN for a region without imputed cells."""
    T = u.centre.shape[0]
    onehot = np.zeros((T, int(groups.max()) + 1))
    onehot[np.arange(T), groups] = 1.0
    d2 = np.where(u.imputed, (values - u.centre) ** 2, 0.0)
    per_t = d2.reshape(*d2.shape[: d2.ndim - u.centre.ndim], T, -1).sum(-1)  # (..., T)
    has = u.imputed.reshape(T, -1).any(1).astype(float) @ onehot > 0
    return np.where(has, np.sqrt(per_t @ onehot), np.nan)


def radii(u: Uncertain, level: float, groups: np.ndarray) -> np.ndarray:
    """D̂_{1−α} per region: the level-quantile of the samples' distances to x̂* ([UQ] §5)."""
    D = distances(u, u.samples, groups)  # (B, G)
    return np.quantile(D, level, axis=0)


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The ⌈(n + 1) level⌉-th smallest score: split-conformal validity at `level`."""
    s = np.sort(scores[~np.isnan(scores)])  # +inf (a miss by a zero-width interval) counts
    k = math.ceil((len(s) + 1) * level)
    if k > len(s):
        raise ImputeError(f"calibration has {len(s)} scores, too few for level {level:g} (needs at least "
                          f"{math.ceil(level / (1 - level) - 1e-9)}); raise --calibration-frames or use smaller regions (--group)")
    return float(s[k - 1])


def cell_scores(y: np.ndarray, c: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """How far y lies from c relative to the interval's half-width on its side (≤ 1: inside)."""
    below = y < c
    width = np.where(below, c - lo, hi - c)
    dist = np.abs(y - c)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(width > 0, dist / width, np.where(dist > 0, np.inf, 0.0))


def widen(c: np.ndarray, lo: np.ndarray, hi: np.ndarray, f: float) -> tuple[np.ndarray, np.ndarray]:
    return c - f * (c - lo), c + f * (hi - c)


def coverage(u: Uncertain, lo: np.ndarray, hi: np.ndarray, radius: np.ndarray, groups: np.ndarray,
             truth: np.ndarray) -> dict[str, Any]:
    """Coverage on truth: of imputed cells by their intervals, of regions by their balls."""
    sel = u.imputed & np.isfinite(truth)
    y = truth[sel]
    inside = (y >= lo[sel]) & (y <= hi[sel])
    per_t_complete = ~(u.imputed & ~np.isfinite(truth)).reshape(u.centre.shape[0], -1).any(1)
    G = len(radius)
    complete = np.ones(G, bool)
    np.logical_and.at(complete, groups, per_t_complete)
    D = distances(u, np.where(np.isfinite(truth), truth, u.centre), groups)
    ok = complete & np.isfinite(radius)
    return {"cells": int(sel.sum()), "cell_coverage": float(inside.mean()) if len(y) else float("nan"),
            "mean_width": float((hi[sel] - lo[sel]).mean()) if len(y) else float("nan"),
            "rmse": float(np.sqrt(((y - u.centre[sel]) ** 2).mean())) if len(y) else float("nan"),
            "regions": int(ok.sum()),
            "region_coverage": float((D[ok] <= radius[ok]).mean()) if ok.any() else float("nan")}


def check_same_grid(ds: xr.Dataset, truth: xr.Dataset, var: str, where: str, order: tuple[str, ...]) -> np.ndarray:
    """The truth's values of `var` with dims in `order`, refusing another grid."""
    if var not in truth:
        raise ImputeError(f"the truth file {where} has no variable '{var}'; give the complete field of the same variable")
    ref, tv = ds[f"{var}_filled"], truth[var]
    if set(tv.dims) != set(ref.dims):
        raise ImputeError(f"the truth file {where} has {var} on dims {tuple(tv.dims)} but the output on "
                          f"{tuple(ref.dims)}; give a truth file on the same grid")
    for d in ref.dims:
        if tv.sizes[d] != ref.sizes[d]:
            raise ImputeError(f"the truth file {where} has {tv.sizes[d]} values along '{d}' but the output has "
                              f"{ref.sizes[d]}; give a truth file on the same grid")
        if d in truth.coords and d in ds.coords and ds[d].dtype.kind == "f" and \
                not np.allclose(truth[d].values, ds[d].values, rtol=0, atol=1e-6 * max(1.0, float(np.abs(ds[d].values).max()))):
            raise ImputeError(f"the truth file {where} has other '{d}' coordinates than the output; "
                              "give a truth file on the same grid")
    return np.asarray(tv.transpose(*order).values, "float64")


def _sampler_settings(ds: xr.Dataset) -> dict[str, str]:
    text = str(ds.attrs.get("impute_cli_sampler", ""))
    return dict(p.split("=", 1) for p in text.split(", ") if "=" in p)


SCATTERED_HIDE = 0.1  # at most this fraction of observed cells is hidden where gaps are scattered
HIDING_WORDS = {"scattered": "scattered observed cells hidden, like the gaps",
                "runs": "observed cells hidden under another run's gaps"}  # see `hiding`


def calibration_cells(obs: np.ndarray, s0: int, L: int, valid: np.ndarray,
                      rng: np.random.Generator, scattered: float = 0.0) -> np.ndarray:
    """The observed cells of time steps s0..s0+L-1 that --calibrate hides, (L, C, H, W) bool.

    Scattered gaps (`scattered` > 0: the fraction to hide, see `hiding`): each observed, valid
    cell independently with that probability -- the same i.i.d. shape as the real gaps, while
    the context around a hidden cell stays nearly as dense as around a real gap. Borrowing
    another run's scattered gaps would halve it inside the box (50 % observed -> 25 %), and the
    sparser context made the factors over-widen intervals that already held (pixel GP cube:
    factor 1.38, 90 % cells covered 96.8 %; benchmarks/RESULTS.md, session 9).

    Otherwise: those that are gaps in another run of L time steps, frame by frame, inside one random
    rectangle of a quarter of the domain. Real gap shapes that last as long as real gaps do
    (borrowing each frame from a random other time step, or moving the rectangle from frame to
    frame, cut lasting outages into one-step holes, much easier to fill). A quarter keeps the
    context density of the frame closest to the data's: hiding the other run's gaps over the
    whole frame left the cloud example so bare that its calibrated 90 % regions covered 21 %.
    The size of the hidden regions itself barely moves the factor they need
    (benchmarks/calibration_noise.py); the number of segments does (see factor_range).
    obs: (T, C, H, W); valid: (H, W)."""
    T, _, H, W = obs.shape
    if scattered > 0:
        return obs[s0:s0 + L] & valid[None, None] & (rng.random(obs[s0:s0 + L].shape) < scattered)
    t1 = int(rng.integers(T - L + 1))
    if t1 == s0 and T > L:  # the segment's own gaps hide nothing: take another run
        t1 = (s0 + 1 + int(rng.integers(T - L))) % (T - L + 1)
    box = np.zeros((1, 1, H, W), bool)
    bh, bw = max(1, -(-H // 2)), max(1, -(-W // 2))
    y0, x0 = int(rng.integers(H - bh + 1)), int(rng.integers(W - bw + 1))
    box[..., y0:y0 + bh, x0:x0 + bw] = True
    return obs[s0:s0 + L] & ~obs[t1:t1 + L] & valid[None, None] & box


def hiding(obs: np.ndarray, valid: np.ndarray) -> tuple[str, float]:
    """How --calibrate hides observed cells, from the data's own gaps (obs: (T, C, H, W)):
    ("scattered", fraction) where the gaps are scattered cells (`choose_pattern` says "pixel";
    the fraction is the data's missing fraction, at most SCATTERED_HIDE), else ("runs", 0)."""
    from .context_query import choose_pattern, gap_statistics, observation_pool

    pool = observation_pool(obs, valid)
    if choose_pattern(pool, valid)[0] != "pixel":
        return "runs", 0.0
    return "scattered", min(SCATTERED_HIDE, gap_statistics(pool, valid)["missing"])


def calibrate(result: str | Path, ds: xr.Dataset, variables: list[str], level: float, group: str,
              opts: ConfidenceOptions) -> dict[str, dict[str, float]]:
    """Split-conformal factors per variable from observed cells hidden with the data's own gap
    shapes: segments of time steps are resampled with the model and settings that made the
    samples -- each as a piece of the whole record, with the record's climatology input and
    context density less the hidden cells -- and the hidden cells scored (in the cube's
    (T, C, H, W) channel layout)."""
    import dataclasses

    import dask.array as dsa

    from .checkpoint import load_model
    from .dataset import observation_masks, open_cube, summarise
    from .impute import ImputeOptions, fill_cube

    model = opts.model or str(ds.attrs.get("impute_cli_model", ""))
    if not model or not Path(model).exists():
        raise ImputeError("--calibrate needs the model that made the samples; pass --model DIR "
                          "(a model trained on the fly by impute is not kept)")
    card, den = load_model(model)
    st = _sampler_settings(ds)
    if not st.get("samples"):
        raise ImputeError("the file does not say how its samples were drawn (impute_cli_sampler); "
                          "make it again with 'impute-cli impute --samples N --save-samples'")
    missing = [v for v in card.variables if v not in ds]
    if missing or not set(variables) <= set(card.variables):
        raise ImputeError(f"the model was trained on {', '.join(card.variables)}, which does not match this file's "
                          "sampled variables; pass the --model that made the samples")
    cube = open_cube(result, card.variables, card.static_mask_var, ds=ds)
    cube.load()
    full = np.asarray(cube.data.compute())
    obs = observation_masks(cube)
    record = summarise(cube)  # each segment is imputed as a piece of the whole record (see fill_cube)
    T = full.shape[0]
    rng = np.random.default_rng(opts.seed + 7919)
    how, frac = hiding(obs, cube.valid)
    L = min(T, max(2 * card.window[0], 8))
    n_seg = min(max(1, math.ceil(min(opts.calibration_frames, T) / L)), max(1, T // L))
    seg_starts = sorted(rng.choice(np.arange(0, T - L + 1, L), size=n_seg, replace=False).tolist())
    chans = {v: [c for c, (w, _) in enumerate(cube.channel_sel) if w == v] for v in variables}
    cell_s: dict[str, list[np.ndarray]] = {v: [] for v in variables}
    reg_s: dict[str, list[np.ndarray]] = {v: [] for v in variables}
    # Scattered gaps: each segment is resampled with half a window of time steps on either side
    # as context (never hidden, never scored), so its first and last hidden cells have observed
    # steps before and after them, as the real gaps had in the run. Not for clustered gaps: there
    # the context cut the borrowed outages short at the segment's ends, easier to bridge than the
    # real ones (GP block cube: cell factor 1.47 where 1.97 was needed, without 1.85).
    margin = card.window[0] // 2 if how == "scattered" else 0
    for k, s0 in enumerate(seg_starts):
        core = calibration_cells(obs, s0, L, cube.valid, rng, scattered=frac)
        if not core.any():
            continue
        a, b = max(0, s0 - margin), min(T, s0 + L + margin)
        hidden = np.zeros((b - a, *core.shape[1:]), bool)
        hidden[s0 - a:s0 - a + L] = core
        truth = np.where(hidden, full[a:b], np.nan)
        values = np.where(hidden, np.nan, full[a:b]).astype("float32")
        seg = dataclasses.replace(cube, data=dsa.from_array(values, chunks=-1), memory=values, obs_mask=None,
                                  grid=dataclasses.replace(cube.grid, shape=(b - a, *cube.grid.shape[1:])))
        ctx = f" (with {a}-{b - 1} as context)" if (a, b) != (s0, s0 + L) else ""
        opts.log(f"calibration {k + 1}/{len(seg_starts)}: time steps {s0}-{s0 + L - 1}{ctx}, "
                 f"{int(core.sum())} observed cells hidden and resampled")
        filled = fill_cube(card, den, seg, ImputeOptions(
            samples=int(st["samples"]), steps=int(st.get("steps", 0)) or None,
            ensemble=int(st.get("ensemble", 0)) or None, omega=st.get("omega") or None,
            context_ratio=float(st["context_ratio"]) if "context_ratio" in st else None,
            seed=opts.seed + 1 + k, device=opts.device,
            progress=opts.progress, log=opts.log), record=record.without(full[a:b], hidden))
        groups = group_index(L, group)  # scored on the segment itself: regions as without context steps
        c = slice(s0 - a, s0 - a + L)
        for v, idx in chans.items():
            u = Uncertain(v, (), filled.estimate[c][:, idx].astype("float64"),
                          filled.samples[:, c][:, :, idx].astype("float64"), core[:, idx])
            y = truth[c][:, idx]
            lo, hi = intervals(u, level)
            cell_s[v].append(cell_scores(y[u.imputed], u.centre[u.imputed], lo[u.imputed], hi[u.imputed]))
            D = distances(u, np.where(u.imputed, y, u.centre), groups)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = D / radii(u, level, groups)
            reg_s[v].append(ratio[np.isfinite(D)])
    out = {}
    for v in variables:
        cs = np.concatenate(cell_s[v]) if cell_s[v] else np.array([])
        rs = np.concatenate(reg_s[v]) if reg_s[v] else np.array([])
        out[v] = {"cell_factor": conformal_quantile(cs, level), "region_factor": conformal_quantile(rs, level),
                  "calibration_cells": int(len(cs)), "calibration_regions": int(len(rs)),
                  "calibration_segments": len(cell_s[v]), "calibration_hiding": how,
                  "cell_factor_range": factor_range(cell_s[v], level, rng),
                  "region_factor_range": factor_range(reg_s[v], level, rng)}
    return out


def factor_range(per_segment: list[np.ndarray], level: float, rng: np.random.Generator,
                 draws: int = 400) -> list[float]:
    """5 % and 95 % quantiles of the conformal factor over resamples of the calibration segments
    (drawn with replacement): how far the factor could move with another draw of segments.
    Scores inside a segment are not independent (the same hidden outage lasts over many time
    steps), so resampling whole segments, not scores, measures the calibration's own noise.
    [nan, nan] with fewer than 5 segments (too few to resample: seeds of --calibrate spread wider)."""
    n = len(per_segment)
    if n < 5:
        return [float("nan"), float("nan")]
    qs = []
    for _ in range(draws):
        try:
            qs.append(conformal_quantile(np.concatenate([per_segment[i] for i in rng.integers(n, size=n)]), level))
        except ImputeError:  # a resample with too few scores for the level
            pass
    if len(qs) < draws // 2:
        return [float("nan"), float("nan")]
    lo, hi = np.quantile(np.asarray(qs), [0.05, 0.95])
    return [float(lo), float(hi)]


def confidence_file(result: str | Path, out: str | Path, opts: ConfidenceOptions) -> dict[str, Any]:
    """Build the regions for every sampled variable of RESULT, write OUT (RESULT plus
    V_ci_lower, V_ci_upper, V_ci_radius) atomically, and return the report."""
    check_level(opts.level)
    if opts.calibration_frames < 1:
        raise ImputeError(f"--calibration-frames must be at least 1, got {opts.calibration_frames}")
    if opts.model is not None and not opts.calibrate:
        raise ImputeError("--model is used by --calibrate only; add --calibrate or drop --model")
    if opts.calibrate:
        pick_device(opts.device)  # --calibrate runs the model; refuse a bad device before reading
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
        lo, hi = intervals(u, opts.level)
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
            lo, hi = widen(u.centre, lo, hi, f["cell_factor"])
            r = r * f["region_factor"]
            rep["mean_width_calibrated"] = float((hi - lo)[u.imputed].mean()) if u.imputed.any() else float("nan")
            if v in truths:
                rep["calibrated"] = coverage(u, lo, hi, r, groups, truths[v])
        report["variables"][v] = rep
        _write_regions(new, v, u, lo, hi, r, groups, opts.level, factors.get(v), opts.group)
    stamp = utc_stamp()
    prev = new.attrs.get("history", "")
    new.attrs["history"] = f"{stamp}: {opts.history} (impute-cli {__version__})" + (f"\n{prev}" if prev else "")
    write_atomic(new, out, opts.overwrite)
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
            how = f" ({HIDING_WORDS[c['calibration_hiding']]})" if c.get("calibration_hiding") else ""
            lines.append(f"  calibrated on {c['calibration_cells']}{how} / {c['calibration_regions']} regions: "
                         f"intervals x{c['cell_factor']:.3f}, radii x{c['region_factor']:.3f} "
                         f"(mean width now {r['mean_width_calibrated']:.4g})")
            cr, rr = c.get("cell_factor_range", [math.nan] * 2), c.get("region_factor_range", [math.nan] * 2)
            if all(map(math.isfinite, cr + rr)):
                lines.append(f"  another draw of the {c['calibration_segments']} calibration segments could give intervals "
                             f"x{cr[0]:.3f}-{cr[1]:.3f}, radii x{rr[0]:.3f}-{rr[1]:.3f} (5-95 %); "
                             "more --calibration-frames narrow this")
        for key in ("raw", "calibrated"):
            if key in r:
                k = r[key]
                lines.append(f"  {key:<10} coverage on truth: cells {k['cell_coverage']:.1%} of {k['cells']}, "
                             f"regions {k['region_coverage']:.1%} of {k['regions']}; width {k['mean_width']:.4g}, "
                             f"RMSE {k['rmse']:.4g}")
    return "\n".join(lines)
