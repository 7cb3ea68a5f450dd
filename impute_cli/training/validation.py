"""validation: an in-memory cube -> a slice of its observed cells that training never sees, and
the held-out error of a model on it, beside the best classical filler on the same cells.

The slice: segments of the record (SEGMENT_WINDOWS windows long each, about SEGMENT_SHARE of
the time steps in all, the whole of a short record), and inside them observed cells hidden with
the data's own gap shapes (`masks.holdout`, `empirical`: each time step gets another step's
gaps, as `evaluate --holdout empirical` does; `cloud` where the data have no partly observed
step), HIDDEN_SHARE of all observed cells, or more on a smaller record: enough for FIT_CELLS
cells, up to MAX_HIDDEN_SHARE. The blend's weights per distance band and the best step are
chosen on these cells, and a few borrowed clouds are too few to choose them by; the price is
cells the network does not train on. A record whose HIDDEN_SHARE is under MIN_CELLS cells has
no slice: it cannot spare them (docs/choices.md has the measurements).
Those cells are NaN in the cube the model is trained on, and in the climatology it is given,
so they are never a target nor a context.

The score: each segment is filled as a piece of the record (`inference.fill.fill_cube` with the
record's summary), by the single-step ensemble estimate, and the classical fillers
(`evaluation.baselines`) fill the same segments; both are scored on the hidden cells. Scores are
per variable in its units, and pooled in normalised units for the ratio that picks the best
weights and stops training (`train --patience`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from impute_cli.config import Preset
from impute_cli.errors import ImputeError
from impute_cli.evaluation.baselines import BASELINES, run_baselines
from impute_cli.evaluation.kriging import FIT_STEPS
from impute_cli.inference.blend import (FILLS, FITTED, Blend, distance_to_observed, fit_blend, partner_fills,
                                       record_fits)
from impute_cli.inference.fill import fill_cube
from impute_cli.io.cube import Cube
from impute_cli.io.cycle import DailyCycle
from impute_cli.io.stats import Stats, Summary
from impute_cli.masks.holdout import make_holdout
from impute_cli.options import ImputeOptions, TrainOptions
from impute_cli.training.distributed import Ranks

SEGMENT_WINDOWS = 4  # a segment is this many windows long (or the whole record)
SEGMENT_SHARE = 0.2  # of the time steps, in segments
HIDDEN_SHARE = 0.03  # of all observed cells, hidden (at most MAX_SEGMENT_FRACTION of a segment's)
FIT_CELLS = 10_000  # a smaller record hides more than HIDDEN_SHARE, to reach this many cells ...
MAX_HIDDEN_SHARE = 0.10  # ... but never more than this share of its observed cells
MAX_SEGMENT_FRACTION = 0.3
MIN_CELLS = 200  # fewer hidden cells than this: no validation
# Kriging conditions each time step on the whole frame, so its error follows the frame's gap
# layout: its blend weight is fitted only on a slice of at least this many time steps (a few
# steps of one cloud layout did not carry over to another; docs/choices.md)
KRIGING_MIN_STEPS = 24
KRIGING = ("gp_kriging", "st_kriging")  # the partners KRIGING_MIN_STEPS applies to


@dataclass
class ValidationSet:
    """The held-out cells: per segment, its time steps and the hidden cells (L, C, H, W) with
    their values; the baselines' scores on them."""

    segments: list[slice]
    hidden: list[np.ndarray]
    truth: list[np.ndarray]  # the cube's values on each segment (NaN where not observed)
    variables: dict[str, list[int]]  # variable -> its channels
    units: dict[str, str]  # variable -> its units
    std: np.ndarray  # (C,) the normalisation's std, to pool channels
    pattern: str
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)
    fills: dict[str, list[np.ndarray]] = field(default_factory=dict)  # the blend's fills per segment, kept from the baselines
    fits: dict[str, list] = field(default_factory=dict)  # the record's fits for fills of segments (record_fits)
    targets: int | None = None  # the imputed channels come first; covariates (never hidden) after them

    @property
    def n(self) -> int:
        """The number of imputed channels: the classical fillers run on these only."""
        return len(self.std) if self.targets is None else self.targets

    @property
    def cells(self) -> int:
        return int(sum(int(h.sum()) for h in self.hidden))

    def hide(self, values: np.ndarray) -> np.ndarray:
        """The cube's values with the held-out cells set to NaN."""
        out = values.copy()
        for seg, h in zip(self.segments, self.hidden):
            out[seg][h] = np.nan
        return out

    def hide_middle(self, values: np.ndarray, steps: int) -> np.ndarray:
        """A copy of the cube's middle `steps` time steps (all when fewer), held-out cells NaN."""
        t0 = max(0, (values.shape[0] - steps) // 2)
        out = values[t0:t0 + steps].copy()
        for seg, h in zip(self.segments, self.hidden):
            a, b = max(seg.start, t0), min(seg.stop, t0 + len(out))
            if a < b:
                out[a - t0:b - t0][h[a - seg.start:b - seg.start]] = np.nan
        return out

    def score(self, estimates: list[np.ndarray]) -> dict[str, Any]:
        """RMSE per variable (data units) and pooled over channels in normalised units, of the
        estimates (L, C, H, W) of each segment on its hidden cells; an estimate of the imputed
        channels only (the classical fillers') is scored the same (no covariate cell is hidden)."""
        n = estimates[0].shape[1] if estimates else len(self.std)
        err2 = [np.where(h[:, :n], (e - t[:, :n]) ** 2, 0.0) for e, t, h in zip(estimates, self.truth, self.hidden)]
        per_c = np.sum([e.sum(axis=(0, 2, 3)) for e in err2], axis=0)  # per channel
        n_c = np.sum([h[:, :n].sum(axis=(0, 2, 3)) for h in self.hidden], axis=0)
        rmse = {v: float(math.sqrt(per_c[idx].sum() / max(n_c[idx].sum(), 1))) for v, idx in self.variables.items()}
        pooled = float(math.sqrt((per_c / self.std[:n].astype("float64") ** 2).sum() / max(n_c.sum(), 1)))
        return {"rmse": rmse, "normalised": pooled}

    def best_baseline(self) -> tuple[str, dict[str, Any]] | None:
        if not self.baselines:
            return None
        name = min(self.baselines, key=lambda k: self.baselines[k]["normalised"])
        return name, self.baselines[name]


def hidden_share(observed: int) -> float:
    """The share of a record's `observed` cells the slice hides: HIDDEN_SHARE, raised towards
    FIT_CELLS cells on a small record, at most MAX_HIDDEN_SHARE."""
    return min(MAX_HIDDEN_SHARE, max(HIDDEN_SHARE, FIT_CELLS / max(observed, 1)))


def make_validation(cube: Cube, stats: Stats, frames: int, seed: int) -> ValidationSet:
    """Choose the held-out slice of an in-memory cube (see the module's docstring). Raises
    ImputeError when the data leave too few observed cells to hold out."""
    values = cube.memory
    assert values is not None, "validation needs the cube in memory"
    T = values.shape[0]
    rng = np.random.default_rng([seed, 424242])
    L = min(T, SEGMENT_WINDOWS * frames)
    n = max(1, min(T // L, round(SEGMENT_SHARE * T / L)))
    starts = sorted(rng.choice(np.arange(0, T - L + 1, L), size=n, replace=False).tolist())
    segments = [slice(s, s + L) for s in starts]
    obs = cube.observed(values)
    obs[:, cube.n_targets:] = False  # covariates are never held out
    n_obs_all = int(obs.sum())
    if HIDDEN_SHARE * n_obs_all < MIN_CELLS:  # a record this small cannot spare its cells: all are trained on
        raise ImputeError(f"only {HIDDEN_SHARE * n_obs_all:.0f} observed cells could be held out, {HIDDEN_SHARE:.0%} of "
                          f"{n_obs_all}, and at least {MIN_CELLS} are needed")
    seg_obs = sum(int(obs[s].sum()) for s in segments)
    if seg_obs == 0:
        raise ImputeError("no observed cell in the validation segments")
    fraction = min(MAX_SEGMENT_FRACTION, hidden_share(n_obs_all) * n_obs_all / seg_obs)
    hidden, pattern = [], "empirical"
    for k, s in enumerate(segments):
        frame_obs = obs[s].any(1)  # (L, H, W): a cloud hides every variable
        try:  # other time steps' gaps, on station series too (their outages: not measured for the slice)
            h = make_holdout(frame_obs, cube.valid, pattern, fraction, seed=seed + k, outages=False).hidden
        except ImputeError:  # no partly observed time step to borrow gaps from: drifting clouds
            pattern = "cloud"
            h = make_holdout(frame_obs, cube.valid, pattern, fraction, seed=seed + k).hidden
        hidden.append(h[:, None] & obs[s])
    chans = {v: [c for c, (w, _) in enumerate(cube.channel_sel) if w == v] for v in cube.variables}
    vs = ValidationSet(segments, hidden, [values[s].copy() for s in segments],
                       chans, {v: cube.units[idx[0]] for v, idx in chans.items()},
                       np.asarray(stats.std, "float64"), pattern, targets=cube.n_targets)
    if vs.cells < MIN_CELLS:
        raise ImputeError(f"only {vs.cells} observed cells could be held out (at least {MIN_CELLS} are needed)")
    return vs


def score_baselines(vs: ValidationSet, valid: np.ndarray, log: Callable[[str], None],
                    cycle: DailyCycle | None = None) -> None:
    """Each classical filler on each segment with its held-out cells hidden, scored on them.
    With a daily `cycle` (the cube holds anomalies, io.cycle) the fillers run on the values as
    the file has them, as a user would run them; the blend's fills are then left for
    `fit_validation_blend` to compute on the anomalies, as imputation does. The imputed
    channels only: a covariate is never filled."""
    n = vs.n
    shift = [np.float32(0) if cycle is None else cycle.values(seg)[:, :n] for seg in vs.segments]
    fits = vs.fits if cycle is None else None  # fitted to the anomalies: not for the values as the file has them
    per_segment = [run_baselines(list(BASELINES), np.where(h[:, :n], np.nan, t[:, :n] + c), valid, log, fits)[0]
                   for t, h, c in zip(vs.truth, vs.hidden, shift)]
    for name in BASELINES:
        if all(name in est for est in per_segment):  # a filler skipped on any segment is left out
            vs.baselines[name] = vs.score([est[name] - c for est, c in zip(per_segment, shift)])
            if name in FILLS and cycle is None:  # the same function on the same values: the blend's fit reuses it
                vs.fills[name] = [est[name] for est in per_segment]


def model_estimates(vs: ValidationSet, card: Any, den: torch.nn.Module, cube: Cube, record: Summary,
                    ensemble: int | None = None) -> list[np.ndarray]:
    """The network's single-step ensemble estimate of each segment (a piece of the record, its
    held-out cells hidden); no blend."""
    est = []
    for seg, t, h in zip(vs.segments, vs.truth, vs.hidden):
        piece = cube.in_memory(np.where(h, np.nan, t).astype("float32"))
        filled = fill_cube(card, den, piece, ImputeOptions(ensemble=ensemble, progress=False, log=_silent, seed=0,
                                                           blend=False), record=record)
        est.append(filled.estimate)
    return est


def score_model(vs: ValidationSet, card: Any, den: torch.nn.Module, cube: Cube, record: Summary,
                ensemble: int | None = None) -> dict[str, Any]:
    """`model_estimates` scored on the held-out cells (the estimates under `estimates`)."""
    est = model_estimates(vs, card, den, cube, record, ensemble)
    return {**vs.score(est), "estimates": est}


def fit_validation_blend(vs: ValidationSet, estimates: list[np.ndarray], valid: np.ndarray, partners: list[str],
                         seed: int = 0) -> tuple[Blend | None, dict[str, Any]]:
    """The blend of the network's estimates of the segments with the partners' fills
    (`inference.blend.fit_blend`), fitted on the held-out cells in normalised units, and the
    validation's figures of the blended estimate (cross-fitted: RMSE per variable and pooled).
    Kriging (either kind) is left out on a slice of fewer than KRIGING_MIN_STEPS time steps (`left_out` says so)."""
    nt = vs.n  # the imputed channels: no covariate cell is hidden, and the partners never fill one
    estimates = [e[:, :nt] for e in estimates]
    truth, hidden = [t[:, :nt] for t in vs.truth], [h[:, :nt] for h in vs.hidden]
    std = vs.std[None, :nt, None, None]
    steps, left_out = sum(sg.stop - sg.start for sg in vs.segments), []
    if steps < KRIGING_MIN_STEPS:
        kriging = [n for n in partners if n in KRIGING]
        left_out = [f"{', '.join(kriging)} (the slice spans {steps} time steps, fewer than {KRIGING_MIN_STEPS})"
                    ] if kriging else []
        partners = [n for n in partners if n not in KRIGING]
    missing = [n for n in partners if n not in vs.fills]
    dists = [distance_to_observed(np.isfinite(np.where(h, np.nan, t)) & valid[None, None])
             for t, h in zip(truth, hidden)]
    segs = [{**{n: vs.fills[n][k] for n in partners if n in vs.fills},
             **(partner_fills(missing, np.where(h, np.nan, t), valid, fits=vs.fits, estimate=estimates[k],
                              laplace_fill=vs.fills["laplace"][k] if "laplace" in vs.fills else None, dist=dists[k])
                if missing else {})}
            for k, (t, h) in enumerate(zip(truth, hidden))]
    names = [n for n in partners if all(n in f for f in segs)]
    net, part, dist, chan = [], {n: [] for n in names}, [], []
    for k, (e, t, h) in enumerate(zip(estimates, truth, hidden)):
        dist.append(dists[k][h])
        net.append(((e - t) / std)[h])
        for n in names:
            f = segs[k][n]
            part[n].append(((np.where(np.isfinite(f), f, e) - t) / std)[h])
        chan.append(np.broadcast_to(np.arange(t.shape[1])[None, :, None, None], t.shape)[h])
    blend, report = fit_blend(np.concatenate(net), {n: np.concatenate(v) for n, v in part.items()},
                              np.concatenate(dist), seed)
    err, c = report.pop("errors"), np.concatenate(chan)
    report["rmse"] = {v: float(math.sqrt(np.mean((err[np.isin(c, idx)] * vs.std[c[np.isin(c, idx)]]) ** 2)))
                      for v, idx in vs.variables.items()}
    report["normalised"] = float(math.sqrt(np.mean(err ** 2)))
    report["left_out"] = left_out
    return blend, report


def summary_line(validation: dict[str, Any]) -> str:
    """'validation RMSE 0.52 degC on 1 234 held-out cells; best classical filler laplace 0.61 (ratio 0.85)'."""
    parts = []
    for v, r in validation["rmse"].items():
        base = validation.get("baseline_rmse", {}).get(v)
        u = f" {validation.get('units', {}).get(v, '')}".rstrip()
        parts.append(f"{v} {r:.4g}{u}" + (f" (baseline {base:.4g})" if base is not None else ""))
    line = f"validation RMSE {', '.join(parts)} on {validation['cells']} held-out cells"
    if validation.get("blend"):
        b = validation["blend"]
        line += f" (network alone {b['network_ratio']:.3f} of the baseline; blended with {', '.join(b['partners'])})"
    if validation.get("best_baseline"):
        line += (f"; best classical filler {validation['best_baseline']}, model/baseline ratio "
                 f"{validation['ratio']:.3f}")
    return line


def validation_set(cube: Cube, stats: Stats, window: tuple[int, int, int], preset: Preset, opts: TrainOptions,
                    ranks: Ranks, log: Callable[[str], None], cycle: DailyCycle | None = None) -> ValidationSet | None:
    """The held-out slice (`validation`) and the classical fillers' scores on it, or None with
    a notice when there is none (--no-validation, torchrun, a cube too big for memory, too few
    observed cells)."""
    if not opts.validation:
        return None
    why = ("training runs under torchrun" if ranks.distributed else
           "the cube is too large to hold in memory" if cube.memory is None else "")
    vs = None
    if not why:
        try:
            vs = make_validation(cube, stats, window[0], preset.train.seed)
        except ImputeError as e:
            why = str(e)
    if vs is None:
        log(f"notice: no validation slice ({why}); every observed cell is trained on, so training gives no "
            "held-out score")
        return None
    vs.fits = record_fits(list(FITTED), vs.hide_middle(cube.memory, FIT_STEPS)[:, :vs.n], cube.valid)
    score_baselines(vs, cube.valid, log, cycle)
    best = vs.best_baseline()
    log(f"validation: {vs.cells} observed cells held out of training ({vs.pattern} gap shapes, "
        f"{len(vs.segments)} segment(s) of {vs.segments[0].stop - vs.segments[0].start} time steps)"
        + (f"; best classical filler on them: {best[0]}" if best else ""))
    return vs


def default_patience(steps: int, every: int) -> int:
    """Checks without improvement before training stops, when the user gives none: 4, or a
    quarter of the run's checks when that is more. The held-out score is noisy from check to
    check while a long run still gains a little at each; on a 512-step GP record trained 10 000
    steps, 4 checks stopped at step 7750 on noise, keeping weights whose error on a fresh record
    of the same process was 4 % above the last step's (benchmarks/RESULTS.md, learnt_record.py).
    The best check's weights are kept either way, so waiting longer costs time, not accuracy."""
    return max(4, math.ceil(steps / max(every, 1) / 4))


@dataclass
class Watch:
    """The validation curve: the best score and its EMA weights, checks without improvement."""

    patience: int
    curve: list[dict[str, Any]] = field(default_factory=list)
    best: float | None = None
    best_step: int = 0
    bad: int = 0
    best_weights: dict[str, torch.Tensor] | None = None
    best_estimates: list[np.ndarray] | None = None  # the best check's estimates (not in the checkpoint)

    @classmethod
    def resume(cls, state: dict | None, patience: int) -> "Watch":
        w = cls(patience)
        if state is not None and state.get("validation"):
            v = state["validation"]
            w.curve, w.best, w.best_step, w.bad = v["curve"], v["best"], v["best_step"], v["bad"]
            w.best_weights = v.get("best_weights")
        return w

    def update(self, step: int, res: dict[str, Any], ema: torch.nn.Module) -> bool:
        """Record a check; True when training should stop."""
        self.curve.append({"step": step, "rmse": res["rmse"], "normalised": res["normalised"]})
        if self.best is None or res["normalised"] < self.best:
            self.best, self.best_step, self.bad = res["normalised"], step, 0
            self.best_weights = {k: v.detach().cpu().clone() for k, v in ema.net.state_dict().items()}
            self.best_estimates = res.get("estimates")
        else:
            self.bad += 1
        return self.patience > 0 and self.bad >= self.patience

    def postfix(self) -> dict[str, str]:
        return {"val": f"{self.curve[-1]['normalised']:.4f}"} if self.curve else {}

    def state(self) -> dict[str, Any] | None:
        if not self.curve:
            return None
        return {"curve": self.curve, "best": self.best, "best_step": self.best_step, "bad": self.bad,
                "best_weights": self.best_weights}

    def card(self, vs: ValidationSet) -> dict[str, Any]:
        """The model card's `validation`: the best check's RMSE, the best classical filler's on
        the same cells, their ratio (pooled over variables, normalised units) and the curve."""
        best = next(c for c in self.curve if c["step"] == self.best_step)
        out: dict[str, Any] = {"rmse": dict(best["rmse"]), "units": dict(vs.units), "step": self.best_step,
                               "cells": vs.cells,
                               "segments": len(vs.segments), "hiding": vs.pattern}
        base = vs.best_baseline()
        if base is not None:
            out.update(best_baseline=base[0], baseline_rmse=base[1]["rmse"],
                       ratio=round(best["normalised"] / max(base[1]["normalised"], 1e-12), 4))
        out["curve"] = [{"step": c["step"], "rmse": dict(c["rmse"])} for c in self.curve]  # no YAML aliases
        return out


def with_blend(validation: dict[str, Any], vs: ValidationSet, report: dict[str, Any]) -> dict[str, Any]:
    """The card's `validation` for a blended model: the headline RMSE and ratio are the blended
    estimate's (cross-fitted), the network's own kept under `blend`."""
    out = dict(validation)
    net = {"rmse": out["rmse"], **({"ratio": out["ratio"]} if "ratio" in out else {})}
    out["rmse"] = {v: round(r, 6) for v, r in report["rmse"].items()}
    base = vs.best_baseline()
    if base is not None:
        out["ratio"] = round(report["normalised"] / max(base[1]["normalised"], 1e-12), 4)
    out["blend"] = {"partners": list(report["partners"]), "network_rmse": net["rmse"],
                    "network_ratio": net.get("ratio"), "crossfitted": True}
    curve = out.pop("curve")
    out["curve"] = curve  # last in the card, as before
    return out


def _silent(_msg: str) -> None:
    """Validation fills quietly."""
