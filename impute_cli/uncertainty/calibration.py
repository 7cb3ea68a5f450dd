"""calibration: a model, its sampler settings and the data -> split-conformal factors for the
intervals and regions of its samples (`confidence --calibrate` on an `impute --save-samples`
output; `impute --samples N` on its own input, by default).

Observed cells of the same data are hidden with the data's own gap shapes (`calibration_cells`),
resampled with the same model and settings, each segment as a piece of the whole record
(`inference.fill.fill_cube` with the record's summary less the hidden cells, and the record's
gap shapes for the sampler's random context masks), and scored; the conformal quantile of the
normalised scores is the factor (`regions.conformal_quantile`)."""

from __future__ import annotations

import dataclasses
import math
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from impute_cli.checkpoint import ModelCard, load_model
from impute_cli.errors import ImputeError, OptionError
from impute_cli.inference.blend import Blend, record_fits
from impute_cli.inference.fill import FillJob, fill_cube
from impute_cli.io.dataset import open_cube
from impute_cli.io.cube import Cube
from impute_cli.io.cycle import cycle_for_model, remove_cycle
from impute_cli.io.stats import Summary, summarise
from impute_cli.masks.observation import (choose_pattern, gap_distance, gap_statistics, missing_neighbours,
                                          observation_pool, pool_from_cube)
from impute_cli.options import ConfidenceOptions, ImputeOptions
from impute_cli.uncertainty.regions import (Uncertain, cell_scores, conformal_quantile, distances, group_index,
                                            intervals, radii)


def _sampler_settings(ds: xr.Dataset) -> dict[str, str]:
    text = str(ds.attrs.get("impute_cli_sampler", ""))
    return dict(p.split("=", 1) for p in text.split(", ") if "=" in p)


CALIBRATION_BYTES = 256 * 1024**2  # impute calibrates on at most this much of the cube (float32 bytes)
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
    sparser context made the factors over-widen intervals that already held.

    Otherwise: those that are gaps in another run of L time steps, frame by frame, inside one random
    rectangle of a quarter of the domain. Real gap shapes that last as long as real gaps do
    (borrowing each frame from a random other time step, or moving the rectangle from frame to
    frame, cut lasting outages into one-step holes, much easier to fill). A quarter keeps the
    context density of the frame closest to the data's: hiding the other run's gaps over the
    whole frame left the cloud example so bare that its calibrated 90 % regions covered 21 %.
    The size of the hidden regions itself barely moves the factor they need; the number of
    segments does (see factor_range). A record of one run (T = L, a few days of satellite
    passes) has no other run: it borrows the gaps of the record rolled by half its length in
    time, each frame another frame's gaps, in order (without, nothing was hidden and the
    intervals stayed raw: 70 % of the cells in 90 % intervals on 10 days of cloudy SST).
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
    other = obs[t1:t1 + L] if T > L else np.roll(obs, T // 2, axis=0)[s0:s0 + L]
    return obs[s0:s0 + L] & ~other & valid[None, None] & box


def hiding(obs: np.ndarray, valid: np.ndarray) -> tuple[str, float]:
    """How --calibrate hides observed cells, from the data's own gaps (obs: (T, C, H, W)):
    ("scattered", fraction) where the gaps are scattered cells (`choose_pattern` says "pixel";
    the fraction is the data's missing fraction, at most SCATTERED_HIDE), else ("runs", 0)."""
    pool = observation_pool(obs, valid)
    if choose_pattern(pool, valid)[0] != "pixel":
        return "runs", 0.0
    return "scattered", min(SCATTERED_HIDE, gap_statistics(pool, valid)["missing"])


def calibrate(result: str | Path, ds: xr.Dataset, variables: list[str], level: float, group: str,
              opts: ConfidenceOptions) -> dict[str, dict[str, float]]:
    """Split-conformal factors per variable of an `impute --save-samples` output (`confidence
    --calibrate`): the model and sampler settings that made the samples, recorded in the file,
    resample observed cells hidden with the data's own gap shapes (see `conformal_factors`)."""
    model = opts.model or str(ds.attrs.get("impute_cli_model", ""))
    if not model or not Path(model).exists():
        raise OptionError("--calibrate needs the model that made the samples and the one recorded in the file "
                          "is gone; pass --model DIR")
    card, den = load_model(model)
    st = _sampler_settings(ds)
    if not st.get("samples"):
        raise ImputeError("the file does not say how its samples were drawn (impute_cli_sampler); "
                          "make it again with 'impute-cli impute --samples N --save-samples'")
    if absent := [v for v in card.covariates if v not in ds]:
        raise ImputeError(f"the model's covariate '{absent[0]}' is not in this file; calibrate an output that "
                          "keeps the input's variables (written without --no-copy)")
    missing = [v for v in card.variables if v not in ds]
    if missing or not set(variables) <= set(card.variables):
        raise ImputeError(f"the model was trained on {', '.join(card.variables)}, which does not match this file's "
                          "sampled variables; pass the --model that made the samples")
    cube = open_cube(result, card.variables, card.static_mask_var, ds=ds, covariates=card.covariates)
    cube.load()
    if (cycle := cycle_for_model(card.normalisation, cube)) is not None:  # scored on anomalies: the same errors
        cube = remove_cycle(cube, cycle)
    settings = ImputeOptions(
        samples=int(st["samples"]), steps=int(st.get("steps", 0)) or None,
        ensemble=int(st.get("ensemble", 0)) or None, omega=st.get("omega") or None,
        solver=st.get("solver") or None, sampler="student" if st.get("sampler") == "student" else "full",
        context_ratio=float(st["context_ratio"]) if "context_ratio" in st else None,
        blend=bool(st.get("blend")), recentre=st.get("recentred") == "1",  # absent: drawn before recentring
        device=opts.device, progress=opts.progress, log=opts.log)
    return conformal_factors(card, den, cube, summarise(cube), variables, level, settings, group=group,
                             seed=opts.seed, frames=opts.calibration_frames)


def conformal_factors(card: ModelCard, den: torch.nn.Module, cube: Cube, record: Summary, variables: list[str],
                      level: float, settings: ImputeOptions, *, group: str | None = "time", seed: int = 0,
                      frames: int | None = 256, fits: dict[str, list] | None = None) -> dict[str, dict[str, Any]]:
    """Split-conformal factors per variable from observed cells of an in-memory `cube` hidden
    with the data's own gap shapes: segments of about `frames` time steps in all (None:
    `default_frames`) are resampled with `settings` (samples, solver...) -- each as a piece of the whole record (`record`: its
    summary, less the hidden cells: the climatology input and context density of the record) --
    and the hidden cells scored (in the cube's (T, C, H, W) channel layout). `fits`: the blend's
    fits of the record (`blend.record_fits`) when the caller has them; default: fitted on `cube`.

    Cells: intervals centred on the point estimate, `regions.intervals` at `level`; the factor
    scales their half-widths. Regions (`group`; None: none): [UQ] §5 radii."""
    full = cube.memory
    assert full is not None, "conformal_factors needs an in-memory cube"
    obs = cube.observed(full)
    T = full.shape[0]
    rng = np.random.default_rng(seed + 7919)
    hideable = obs & ~cube.context_only[None, :, None, None] if cube.covariates else obs  # covariates stay context
    how, frac = hiding(hideable[:, :cube.n_targets], cube.valid)
    frames = default_frames(cube, how, settings.sampler) if frames is None else frames
    L = min(T, max(2 * card.window[0], 8))
    n_seg = min(max(1, math.ceil(min(frames, T) / L)), max(1, T // L))
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
    # The multi-step sampler draws each step's random context mask from the data's gap shapes
    # ([CQ] eq. 26): those of the whole record, as when it sampled the real gaps. A segment's own
    # (a few windows, the hidden cells as extra gaps) gave sparser masks and samples too narrow
    # by about 40 % (GP block cube, 6-step solver: factor 3.66 where the real gaps needed 1.74).
    pool = pool_from_cube(cube, card.window[0])
    # The blend's fills that fit the data (space-time kriging's covariance) take the record's fit:
    # a segment of a few dozen steps fits it worse than the run on the whole record did.
    partners = Blend.from_dict(card.blend).partners if card.blend and settings.blend else []
    fits = record_fits(partners, full[:, :cube.n_targets], cube.valid) if fits is None else fits
    # How deep the real gaps lie, per variable: the hidden cells are weighted to match (depth_weights).
    # Scattered gaps all lie at depth 1; there the class is how many of a cell's neighbours are
    # missing: hidden among the observed cells, the calibration cells have sparser neighbours than
    # the real gaps (GP pixel cube: 45 % observed around them against 50 %) and are harder to fill.
    classify = missing_neighbours if how == "scattered" else partial(gap_distance, cap=DEPTH_CAP)
    depth = classify(obs)
    first = 1 if how == "runs" else 0  # a gap cell lies at depth 1 or more; its neighbours may all be observed
    gaps = ~obs & cube.valid[None, None]
    target = {v: np.bincount(depth[:, idx][gaps[:, idx]], minlength=DEPTH_CAP + 1) for v, idx in chans.items()}
    cell_d: dict[str, list[np.ndarray]] = {v: [] for v in variables}
    for k, s0 in enumerate(seg_starts):
        core = calibration_cells(hideable, s0, L, cube.valid, rng, scattered=frac)
        if not core.any():
            continue
        a, b = max(0, s0 - margin), min(T, s0 + L + margin)
        hidden = np.zeros((b - a, *core.shape[1:]), bool)
        hidden[s0 - a:s0 - a + L] = core
        rec = record.without(full[a:b], hidden)
        # Only the hidden cells' box and a window around it are resampled: the rest of the frame
        # gives them no context the network would see.
        ys, xs = _box(core.any((0, 1)), card.window[1], card.window[2])
        hidden, core = hidden[..., ys, xs], core[..., ys, xs]
        truth = np.where(hidden, full[a:b, :, ys, xs], np.nan)
        values = np.where(hidden, np.nan, full[a:b, :, ys, xs]).astype("float32")
        seg = cube.in_memory(values, ys, xs)
        seg_depth = classify(seg.observed(values))[s0 - a:s0 - a + L]
        ctx = f" (with {a}-{b - 1} as context)" if (a, b) != (s0, s0 + L) else ""
        settings.log(f"calibration {k + 1}/{len(seg_starts)}: time steps {s0}-{s0 + L - 1}{ctx}, "
                     f"{int(core.sum())} observed cells hidden and resampled")
        filled = fill_cube(card, den, seg, dataclasses.replace(settings, seed=seed + 1 + k),
                           record=rec.crop(ys, xs), pool=pool[..., ys, xs], fits=fits)
        c = slice(s0 - a, s0 - a + L)
        for v, idx in chans.items():
            u = Uncertain(v, (), filled.estimate[c][:, idx].astype("float64"),
                          filled.samples[:, c][:, :, idx].astype("float64"), core[:, idx])
            y = truth[c][:, idx]
            lo, hi = intervals(u, level)
            cell_s[v].append(cell_scores(y[u.imputed], u.centre[u.imputed], lo[u.imputed], hi[u.imputed]))
            cell_d[v].append(seg_depth[:, idx][u.imputed])
            if group is None:
                continue
            groups = group_index(L, group)  # scored on the segment itself: regions as without context steps
            D = distances(u, np.where(u.imputed, y, u.centre), groups)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = D / radii(u, level, groups)
            reg_s[v].append(ratio[np.isfinite(D)])
    out: dict[str, dict[str, Any]] = {}
    for v in variables:
        cs = np.concatenate(cell_s[v]) if cell_s[v] else np.array([])
        cd = np.concatenate(cell_d[v]) if cell_d[v] else np.array([], np.uint8)
        out[v] = {"cell_factor": weighted_quantile(cs, depth_weights(cd, target[v]), level),
                  "calibration_cells": int(len(cs)), "calibration_segments": len(cell_s[v]),
                  "calibration_hiding": how,
                  "cell_factor_range": factor_range(cell_s[v], level, rng, cell_d[v], target[v]),
                  "calibration_whole_record": len(seg_starts) >= max(1, T // L),
                  # the weights' basis: each class's share among the real gaps and the hidden cells
                  ("gap_depth" if how == "runs" else "missing_neighbours"): {
                      "gaps": _shares(target[v], first), "hidden": _shares(np.bincount(cd, minlength=DEPTH_CAP + 1),
                                                                           first)}}
        if group is not None:
            rs = np.concatenate(reg_s[v]) if reg_s[v] else np.array([])
            out[v].update(region_factor=conformal_quantile(rs, level), calibration_regions=int(len(rs)),
                          region_factor_range=factor_range(reg_s[v], level, rng))
    return out


def default_frames(cube: Cube, how: str, sampler: str) -> int:
    """`impute`'s --calibration-frames when not given: 256 where a grid's gaps are clustered
    (`hiding` says "runs") and the solver samples (GP block cube, seeds 0-6: 5 in 88-92 % covered,
    3 with 128), else 128: scattered gaps held there, on station series a second segment
    over-covered, and the student gained nothing for 12 % more time (docs/choices.md)."""
    return 256 if how == "runs" and not cube.grid.is_series and sampler != "student" else 128


def _box(where: np.ndarray, my: int, mx: int) -> tuple[slice, slice]:
    """The rows and columns of the cells `where` (H, W), widened by my rows and mx columns on
    each side (clipped to the grid)."""
    H, W = where.shape
    rows, cols = np.flatnonzero(where.any(1)), np.flatnonzero(where.any(0))
    return (slice(max(0, int(rows[0]) - my), min(H, int(rows[-1]) + 1 + my)),
            slice(max(0, int(cols[0]) - mx), min(W, int(cols[-1]) + 1 + mx)))


def factor_range(per_segment: list[np.ndarray], level: float, rng: np.random.Generator,
                 depths: list[np.ndarray] | None = None, target: np.ndarray | None = None,
                 draws: int = 400) -> list[float]:
    """5 % and 95 % quantiles of the conformal factor over resamples of the calibration segments
    (drawn with replacement): how far the factor could move with another draw of segments.
    Scores inside a segment are not independent (the same hidden outage lasts over many time
    steps), so resampling whole segments, not scores, measures the calibration's own noise.
    With `depths` (each segment's cells' gap depths) and `target` (the real gaps' depth counts)
    each resample is weighted as the factor itself is (`depth_weights`).
    [nan, nan] with fewer than 5 segments (too few to resample: seeds of --calibrate spread wider)."""
    n = len(per_segment)
    if n < 5:
        return [float("nan"), float("nan")]
    qs = []
    for _ in range(draws):
        pick = rng.integers(n, size=n)
        scores = np.concatenate([per_segment[i] for i in pick])
        weight = np.ones(len(scores)) if depths is None or target is None else \
            depth_weights(np.concatenate([depths[i] for i in pick]), target)
        try:
            qs.append(weighted_quantile(scores, weight, level))
        except ImputeError:  # a resample with too few scores for the level
            pass
    if len(qs) < draws // 2:
        return [float("nan"), float("nan")]
    lo, hi = np.quantile(np.asarray(qs), [0.05, 0.95])
    return [float(lo), float(hi)]


DEPTH_CAP = 8  # gap depths (`masks.observation.gap_distance`) from this many cells on count as one
MIN_DEPTH_CELLS = 100  # the deepest hidden cells are pooled until a depth class has this many


def depth_weights(depth: np.ndarray, target: np.ndarray, min_cells: int = MIN_DEPTH_CELLS) -> np.ndarray:
    """Weights for hidden cells of gap depth `depth` (see `gap_distance`) that make the depths
    as frequent among them as among the real gaps (`target`: counts per depth): a cell of depth
    k weighs p_gaps(k) / p_hidden(k), the likelihood ratio of weighted split-conformal
    prediction under covariate shift (Tibshirani, Barber, Candes & Ramdas 2019). Hidden cells
    borrowed from other gaps' shapes lie nearer the observations than the real gaps when
    these are blocks (GP block cube: 60 % at depth 1, against 47 % of the gap cells) and are
    easier to fill; unweighted, their factor was too small. Depths from the first one, counted
    from the deepest, that holds `min_cells` hidden cells are pooled, in both counts; a depth the
    hidden cells lack weighs nothing. All weights 1 when the depths are alike. Scattered gaps all
    lie at depth 1; for them the classes are `missing_neighbours`' (how sparse the context around
    a cell is), weighted the same way."""
    if len(depth) == 0 or target.sum() == 0:
        return np.ones(len(depth))
    hidden = np.bincount(depth, minlength=len(target)).astype("float64")
    tail = np.cumsum(hidden[::-1])[::-1]  # hidden cells at depth k or deeper
    top = max(1, int(np.flatnonzero(tail >= min(min_cells, len(depth)))[-1]))
    d = np.minimum(depth, top)
    h = np.bincount(d, minlength=top + 1).astype("float64")
    t = np.asarray(target[:top + 1], "float64").copy()
    t[top] = float(target[top:].sum())
    t[h == 0] = 0.0
    ratio = np.divide(t / max(t.sum(), 1.0), h / h.sum(), out=np.zeros_like(t), where=h > 0)
    return ratio[d]


def weighted_quantile(scores: np.ndarray, weight: np.ndarray, level: float) -> float:
    """The weighted split-conformal quantile: the smallest score whose share of the weight, the
    test cell's own (taken as the largest weight) counted at +inf, reaches `level`. With equal
    weights: `regions.conformal_quantile`, the ⌈(n + 1) level⌉-th smallest score."""
    keep = ~np.isnan(scores) & (weight > 0)
    s, w = scores[keep], weight[keep]
    if len(w) == 0 or w.min() == w.max():
        return conformal_quantile(s, level)
    order = np.argsort(s, kind="stable")
    s, cum = s[order], np.cumsum(w[order])
    # (1 - 1e-12): a share that reaches the level exactly is not lost to rounding in the sum
    k = int(np.searchsorted(cum, level * (cum[-1] + w.max()) * (1 - 1e-12)))
    if k >= len(s):
        raise ImputeError(f"calibration has too few scores ({len(s)}) where the real gaps lie deepest for level "
                          f"{level:g}; raise --calibration-frames")
    return float(s[k])


def _shares(counts: np.ndarray, first: int = 1) -> dict[str, float]:
    """Counts per class -> shares, classes `first` to DEPTH_CAP: gap depths 1 to DEPTH_CAP (the
    last: that deep or deeper), or missing neighbours 0 to 8 (eighths of the 26)."""
    c = np.asarray(counts[first:], "float64")
    return {str(k + first): round(float(x), 4) for k, x in enumerate(c / max(c.sum(), 1.0))}


def calibrate_samples(job: FillJob, record: Summary, quantiles: tuple[float, float],
                      opts: ImputeOptions, hint: str = " (--no-calibrate: raw)") -> dict[str, dict[str, Any]] | None:
    """`impute --samples N`'s calibration (on by default): the factor per variable that brings
    the intervals V_filled ± factor × (the level-quantile of the samples' distance to V_filled)
    to their stated level (HIGH − LOW of --quantiles) on this input's own observed cells, hidden
    with its own gap shapes and resampled with the job's model and sampler (`conformal_factors`). A
    cube too big for memory is calibrated on the block of time steps in its middle that fits.
    None, with a notice, when the data leave too few observed cells to calibrate on."""
    assert job.card is not None
    cube = job.cube
    T, C, H, W = cube.grid.shape[0], len(cube.channels), cube.grid.shape[1], cube.grid.shape[2]
    n = min(T, max(4 * job.card.window[0], CALIBRATION_BYTES // max(4 * C * H * W, 1)))
    t0 = (T - n) // 2  # the whole record when it fits, else the block in its middle: loaded or lazy alike
    cal = cube if n == T and cube.memory is not None else \
        cube.in_memory(cube.read(slice(t0, t0 + n), slice(None), slice(None)))
    level = round(quantiles[1] - quantiles[0], 10)  # 0.9, not 0.8999999999999999
    settings = ImputeOptions(samples=job.samples, steps=job.steps, ensemble=job.ensemble, omega=job.omega,
                             solver=job.solver, sampler="full" if job.student_weights is None else "student",
                             context_ratio=job.ratio if job.ratio_given else None,
                             blend=job.blend is not None, recentre=job.recentre, device=job.device,
                             progress=opts.progress, log=opts.log)
    try:
        factors = conformal_factors(job.card, job.denoiser, cal, record, cube.variables, level, settings, group=None,
                                    seed=opts.seed, frames=opts.calibration_frames, fits=job.fits)
    except ImputeError as e:
        opts.log(f"notice: the intervals are the samples' raw quantiles, not calibrated: {e}")
        return None
    bad = [v for v, f in factors.items() if not math.isfinite(f["cell_factor"])]
    if bad:
        opts.log(f"notice: the intervals are the samples' raw quantiles, not calibrated: the samples of "
                 f"{', '.join(bad)} have no spread at more than {1 - level:.0%} of the hidden cells")
        return None
    for v, f in factors.items():
        f["level"] = level
        opts.log(f"calibrated the {level:.0%} intervals of {v}: factor {f['cell_factor']:.3g}{range_words(f)} from "
                 f"{f['calibration_cells']} observed cells hidden and resampled{hint}")
    return factors


WIDE_RANGE = 0.1  # a factor range wider than this share of the factor on either side earns a hint


def range_words(f: dict[str, Any]) -> str:
    """How steady a cell factor is, for the log: its 5-95 % range over resamples of the
    calibration segments (`factor_range`), and where that is wider than WIDE_RANGE of the factor
    on a side and the record has time steps left to hide, that more --calibration-frames narrow
    it. The factor is an estimate from the outages hidden in a few segments: on the GP block cube
    (16 x 16 cells, 4 x 4-cell outages) it moved from 0.92 to 1.28 over seven seeds at 128
    frames, 1.02 to 1.27 at 512 (the whole record), where the real gaps needed 1.12-1.14.
    Fewer than 5 segments leave no range: then it says so, and that more frames would give one
    where the record has time steps left to hide ('' where no segment count is recorded)."""
    lo, hi = f.get("cell_factor_range", [math.nan] * 2)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        n = f.get("calibration_segments")
        more = "" if f.get("calibration_whole_record") else "; more --calibration-frames give one"
        return f" ({n} segment{'s' * (n != 1)} only: too few to say how steady it is{more})" if n else ""
    wide = max(f["cell_factor"] - lo, hi - f["cell_factor"]) > WIDE_RANGE * f["cell_factor"]
    more = "; more --calibration-frames narrow it" if wide and not f.get("calibration_whole_record") else ""
    return f" ({lo:.3g}-{hi:.3g} with another draw of the {f['calibration_segments']} segments{more})"
