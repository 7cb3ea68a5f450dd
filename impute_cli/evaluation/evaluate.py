"""evaluate: a gappy file -> scores of impute-cli and of the classical methods on observed cells
hidden with a realistic pattern.

1. Hide `--fraction` of the observed cells with the holdout pattern (holdout.py).
2. Train a model on what is left (unless `--model` is given): the model never sees a hidden
   cell, so its score is honest. A `--model` trained on the whole file has seen them; the report
   says so.
3. Impute the gappy cube (point estimate, and with `--samples N` the multi-step samples and
   the calibration of their 90 % intervals that `impute --samples N` makes by default, on the
   gappy cube's own observed cells, so that the calibrated coverage is that of impute's output).
4. Run every baseline (baselines.py) on the same gappy cube, channel by channel.
5. Score each method on the hidden cells only (scores.py), per variable; rank by RMSE."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from impute_cli.checkpoint import IN_MEMORY_DATA, load_model
from impute_cli.config import load_preset, preset_for
from impute_cli.device import pick_device, use_threads
from impute_cli.errors import ImputeError, OptionError
from impute_cli.evaluation.baselines import BASELINES, run_baselines
from impute_cli.evaluation.drift import NAME as DRIFT, run_drift
from impute_cli.evaluation.report import MODEL_NAME, Evaluation, coverage_note, write_report
from impute_cli.evaluation.scores import block_index, block_words, point_scores, ratio_interval, sample_scores
from impute_cli.inference.fill import fill_cube, make_job
from impute_cli.io.cycle import cycle_for_model, remove_cycle, with_cycle
from impute_cli.inference.loading import open_for_model
from impute_cli.io.cube import Cube
from impute_cli.io.dataset import open_dataset
from impute_cli.io.stats import refuse_inf, summarise
from impute_cli.io.writer import build_output, channel_to_variable, write_atomic
from impute_cli.masks.holdout import HOLDOUTS, Holdout, check_fraction, make_holdout
from impute_cli.masks.observation import observation_masks
from impute_cli.options import EvaluateOptions, ImputeOptions, check_context_ratio
from impute_cli.training.train import train_for
from impute_cli.uncertainty.calibration import calibrate_samples
from impute_cli.uncertainty.regions import check_level



def check_options(opts: EvaluateOptions) -> None:
    check_fraction(opts.fraction)
    pick_device(opts.device)  # before the holdout and any training
    use_threads(opts.threads)
    if opts.holdout not in HOLDOUTS:
        raise OptionError(f"unknown --holdout '{opts.holdout}'; use one of {', '.join(HOLDOUTS)}")
    for lv in opts.levels or ():
        check_level(lv)
    check_context_ratio(opts.context_ratio)
    if opts.samples is not None and opts.samples < 2:
        raise OptionError(f"--samples must be at least 2 to score uncertainty (e.g. --samples 16), got {opts.samples}")
    if opts.samples is None and (opts.steps is not None or opts.solver is not None or opts.sampler != "auto"
                                 or opts.levels is not None or opts.recentre is not None):
        raise OptionError("--sampler, --sampler-steps, --solver, --recentre and --level are for sampling; add --samples N")
    for folder, marker, what in ((opts.report, "report.md", "a report"), (opts.keep, "filled.nc", "kept files")):
        if folder and (Path(folder) / marker).exists() and not opts.overwrite:
            raise ImputeError(f"'{folder}' already holds {what}; pass --overwrite or choose another folder")
        if folder and Path(folder).exists() and not Path(folder).is_dir():
            raise ImputeError(f"'{folder}' is a file; give a folder (it is created if missing)")
    unknown = [b for b in opts.baselines or [] if b not in BASELINES and b != DRIFT]
    if unknown:
        raise OptionError(f"unknown --baseline '{unknown[0]}'; choose from {', '.join(BASELINES)}, "
                          f"{DRIFT} (with --covariate)")


def gappy_dataset(cube: Cube, values: np.ndarray) -> xr.Dataset:
    """The cube's variables (float32, file layout, CF attributes) with `values` (T, C, H, W),
    plus the static mask variable: a file the trainer and other tools read like the input."""
    out = xr.Dataset(attrs=dict(cube.ds.attrs))
    for v in [*cube.variables, *cube.covariates]:
        src = cube.ds[v]
        attrs = {k: a for k, a in src.attrs.items() if k not in ("_FillValue", "missing_value", "scale_factor", "add_offset")}
        out[v] = xr.DataArray(channel_to_variable(cube, values, v).astype("float32"), dims=src.dims,
                              coords=src.coords, attrs=attrs)
    if cube.static_mask_var:
        out[cube.static_mask_var] = cube.ds[cube.static_mask_var]
    return out


def _write_nc(ds: xr.Dataset, path: Path) -> None:
    """Write a helper file atomically: float data variables with a NaN _FillValue, no packing."""
    ds = ds.copy()
    for name, v in ds.variables.items():
        keep = ("units", "calendar") if name in ds.data_vars else ("units", "calendar", "dtype")
        v.encoding = {k: e for k, e in v.encoding.items() if k in keep}  # time stays as the input stores it
        if name in ds.data_vars and v.dtype.kind == "f":
            v.encoding["_FillValue"] = np.array(np.nan, v.dtype)
    write_atomic(ds, path, overwrite=True)


def _model(opts: EvaluateOptions, given: tuple[Any, Any] | None, data: str | Path, cube: Cube, gappy: np.ndarray,
           tmp: Path) -> tuple[Any, Any, dict[str, Any]]:
    """The model to score: --model, or one trained on the held-out cube only."""
    info: dict[str, Any] = {}
    if given is not None:  # checked against the cube on opening
        card, den = given
        info["model"] = str(opts.model)
        trained_on, note = card.training.get("data"), None
        if trained_on and Path(str(trained_on)).resolve() == Path(str(data)).resolve():
            note = ("the model was trained on this file, hidden cells included: its scores are optimistic; "
                    "leave out --model to train on the held-out data only")
        elif trained_on == IN_MEMORY_DATA:  # the Python API's Dataset: it may have been this one
            note = ("the model was trained on an in-memory Dataset: if it was this data, hidden cells included, its "
                    "scores are optimistic; leave out model= to train on the held-out data only")
        if note:
            opts.log(f"note: {note}")
            info["note"] = note
        return card, den, info
    # With --keep the held-out cube is written where it is kept, and the model trained from there:
    # its card names a file that stays (`distill` reads it), not one of the temporary folder.
    path = Path(opts.keep) / "gappy.nc" if opts.keep else tmp / "heldout.nc"
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_nc(gappy_dataset(cube, gappy), path)
    name, why = preset_for(opts.preset, cube.grid.is_series)  # 'auto': the preset for the file's layout
    opts = dataclasses.replace(opts, preset=name)
    load_preset(name)  # a bad preset is reported alone, before anything is said of training
    opts.log(f"no --model: training a '{opts.preset}' model{f' ({why})' if why else ''} on the held-out cube only")
    t0 = time.perf_counter()
    # With --keep the model is kept beside the files (it has never seen a hidden cell, so it can be
    # scored again on the same holdout with --model); otherwise it goes with the temporary folder.
    out = Path(opts.keep) / "model" if opts.keep else tmp / "model"
    said = opts if opts.keep else dataclasses.replace(  # the folder goes at the end: not a path to quote
        opts, log=lambda m, log=opts.log: log(m.replace(str(out), "a temporary folder (--keep DIR keeps it)")))
    model = train_for(path, cube, said, out, overwrite=bool(opts.keep))
    card, den = load_model(model)
    info.update(model=f"'{opts.preset}' preset trained on the held-out cube ({card.training['steps']} steps, "
                f"context strategy {card.mask_strategy['pattern']}"
                + (f", covariates {', '.join(card.covariates)}" if card.covariates else "")
                + (f", {1 + len(card.members)} models of training seeds {card.preset.train.seed}-"
                   f"{card.members[-1]['seed']} averaged" if card.members else "") + ")", train_seconds=round(time.perf_counter() - t0, 1))
    if opts.keep:
        info["kept_model"] = str(out)
    return card, den, info


def evaluate_file(data: str | Path, opts: EvaluateOptions) -> tuple[dict[str, Any], Evaluation]:
    """Hide, impute, run the baselines, and score; returns the report and its arrays."""
    check_options(opts)
    ds = open_dataset(data)
    given, cube = open_for_model(str(data), ds, opts.model, opts.variables, opts.static_mask,
                                 opts.covariates)
    cube.load()
    full = cube.memory if cube.memory is not None else np.asarray(cube.data.compute())
    refuse_inf(int(np.isinf(full).sum()))
    obs = observation_masks(cube)
    n = cube.n_targets  # covariates (the channels after these) are never hidden nor scored
    hold: Holdout = make_holdout(obs[:, :n].any(1), cube.valid, opts.holdout, opts.fraction, opts.seed)
    hidden = obs & hold.hidden[:, None]
    hidden[:, n:] = False
    for c, ch in enumerate(cube.channels):
        if not (obs[:, c] & ~hidden[:, c]).any():
            raise ImputeError(f"the {opts.holdout} holdout at --fraction {opts.fraction:g} leaves nothing observed "
                              f"in '{ch}'; lower --fraction")
    opts.log(f"holdout: {opts.holdout}, {int(hold.hidden.sum())} observed cells hidden "
             f"({100 * hold.fraction_hidden:.1f} % of observed), {100 * hold.observed_after:.1f} % of cells left observed")
    gappy = np.where(hidden, np.nan, full).astype("float32")
    gcube = cube.in_memory(gappy)

    with tempfile.TemporaryDirectory(prefix="impute-cli-evaluate-") as tmp:
        card, den, model_info = _model(opts, given, data, cube, gappy, Path(tmp))
        t0 = time.perf_counter()
        cycle = cycle_for_model(card.normalisation, gcube)  # a model of anomalies: the cycle added back
        work = gcube if cycle is None else remove_cycle(gcube, cycle)
        filled = with_cycle(cycle, fill_cube(card, den, work, opts))
        factors = calibration(card, den, work, opts) if filled.samples is not None else None
        model_info["impute_seconds"] = round(time.perf_counter() - t0, 1)
    # Observed cells of the input are carried exactly, as impute writes them.
    estimate = np.where(np.isnan(gappy), filled.estimate, gappy)
    estimate[~np.broadcast_to(cube.valid[None, None], estimate.shape)] = np.nan  # land: not filled

    names = [b for b in opts.baselines or list(BASELINES) if b in BASELINES]
    base_est, base_secs, skipped = run_baselines(names, gappy[:, :n], cube.valid, opts.log)
    if (cube.covariates and not opts.baselines) or DRIFT in (opts.baselines or []):  # the covariates' classical use
        run_drift(gappy[:, :n], gappy[:, n:], cube.valid, opts.log, base_est, base_secs, skipped)
    if cube.covariates:  # the covariates' channels as given, beside each baseline's estimate
        base_est = {k: np.concatenate([e, gappy[:, n:]], axis=1) for k, e in base_est.items()}
    estimates = {MODEL_NAME: estimate, **base_est}

    report: dict[str, Any] = {
        "data": str(data), "command": opts.command,
        "holdout": {"pattern": hold.pattern, "fraction_requested": hold.fraction_requested,
                    "fraction_hidden": round(hold.fraction_hidden, 4), "observed_after": round(hold.observed_after, 4),
                    "cells_hidden": int(hold.hidden.sum()), "seed": opts.seed},
        "model": model_info, "skipped": skipped, "variables": {}}
    T = full.shape[0]
    time_of = np.broadcast_to(np.arange(T)[:, None, None, None], full.shape)
    for v in cube.variables:
        idx = [c for c, (w, _) in enumerate(cube.channel_sel) if w == v]
        sel = np.zeros(full.shape, bool)
        sel[:, idx] = hidden[:, idx]
        truth = full[sel]
        # (t, y, x), truth's order
        blocks = block_index(np.argwhere(sel)[:, [0, 2, 3]], cube.grid.is_series) if sel.any() else None
        methods: dict[str, Any] = {}
        for name, est in estimates.items():
            s = point_scores(est[sel], truth)
            s["seconds"] = model_info["impute_seconds"] + model_info.get("train_seconds", 0) if name == MODEL_NAME \
                else base_secs[name]
            methods[name] = s
        if filled.samples is not None:
            f = (factors or {}).get(v)
            methods[MODEL_NAME].update(sample_scores(filled.samples[:, sel], estimate[sel], truth, time_of[sel],
                                                     opts.levels or (0.5, 0.9), blocks, opts.seed,
                                                     calibrated=(f["level"], f["cell_factor"]) if f else None))
        ranking = sorted(methods, key=lambda m: (np.nan_to_num(methods[m]["rmse"], nan=np.inf)))
        units = cube.units[idx[0]]
        report["variables"][v] = {"units": units, "cells": int(sel.sum()), "ranking": ranking, "methods": methods}
        best_other = next(m for m in ranking if m != MODEL_NAME) if len(ranking) > 1 else None
        if best_other:
            report["variables"][v]["rmse_vs_best_baseline"] = round(
                methods[MODEL_NAME]["rmse"] / methods[best_other]["rmse"], 4)
            report["variables"][v]["best_baseline"] = best_other
            report["variables"][v]["ratio_interval"] = ratio_interval(
                estimate[sel] - truth, estimates[best_other][sel] - truth, blocks, seed=opts.seed) if blocks else None
    spread = None
    if filled.samples is not None:
        spread = np.sqrt(np.mean((filled.samples - estimate[None]) ** 2, axis=0))  # NaN on land
    ev = Evaluation(cube, full, gappy, hidden, estimates, spread)
    if opts.keep:
        keep_files(ev, filled, opts, Path(opts.keep), gappy_written="kept_model" in model_info)
        report["kept"] = str(opts.keep)
    if opts.report:
        write_report(report, ev, Path(opts.report))
        report["report"] = str(Path(opts.report) / "report.md")
    return report, ev


def calibration(card: Any, den: Any, work: Cube, opts: EvaluateOptions) -> dict[str, dict[str, Any]] | None:
    """`impute --samples N`'s calibration of the 90 % intervals (`calibrate_samples`, on by
    default there) on the held-out cube `work`: it hides only cells that cube observes, never a
    held-out one. Per variable its factor and level; None, with impute's notice, when it cannot."""
    summary = summarise(work)
    job = make_job(card, den, work, summary, opts)
    return calibrate_samples(job, summary, (0.05, 0.95),
                             ImputeOptions(seed=opts.seed, device=opts.device, progress=opts.progress, log=opts.log),
                             hint="")


def keep_files(ev: Evaluation, filled: Any, opts: EvaluateOptions, folder: Path, gappy_written: bool = False) -> None:
    """gappy.nc, truth.nc (the variables as they were + `observed`, the layout
    independent holdout scorers read) and filled.nc (impute's output on gappy.nc); the model
    trained on gappy.nc is already in folder/model, and gappy.nc too (`gappy_written`) when the
    model was trained from it in this run."""
    folder.mkdir(parents=True, exist_ok=True)
    cube = ev.cube
    if not gappy_written:
        _write_nc(gappy_dataset(cube, ev.gappy), folder / "gappy.nc")
    truth = gappy_dataset(cube, ev.truth)
    v0 = cube.variables[0]
    obs_left = np.isfinite(ev.gappy) & cube.valid[None, None]
    # bool (xarray stores it as int8 and reads it back as bool), as holdout.py's truth files have it
    truth["observed"] = xr.DataArray(channel_to_variable(cube, obs_left, v0).astype(bool), dims=truth[v0].dims,
                                     attrs={"long_name": "cell observed in gappy.nc (true) or hidden/missing"})
    _write_nc(truth, folder / "truth.nc")
    gcube = dataclasses.replace(cube, ds=gappy_dataset(cube, ev.gappy))
    out = build_output(gcube, ev.estimates[MODEL_NAME], opts.command, samples=filled.samples,
                       sampling=filled.sampling, quantiles=(0.05, 0.95), save_samples=filled.samples is not None)
    _write_nc(out, folder / "filled.nc")


def to_json(obj: Any) -> Any:
    """The report with NaN/inf as null, so that strict JSON parsers (jq) read it."""
    if isinstance(obj, dict):
        return {k: to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def format_table(report: dict[str, Any]) -> str:
    """The ranked table per variable, for the terminal."""
    h = report["holdout"]
    lines = [f"{report['data']}: {h['pattern']} holdout, {h['cells_hidden']} cells hidden "
             f"({100 * h['fraction_hidden']:.1f} % of observed; {100 * h['observed_after']:.1f} % left observed)",
             f"model: {report['model'].get('model')}"]
    if report["model"].get("note"):
        lines.append(f"note: {report['model']['note']}")
    for v, r in report["variables"].items():
        w = max(16, *map(len, r["ranking"]))  # the method column fits the longest name
        lines += ["", f"{v} ({r['units']}), {r['cells']} hidden cells, ranked by RMSE:",
                  f"  {'#':>2} {'method':<{w}} {'RMSE':>10} {'MAE':>10} {'bias':>10} {'corr':>7} {'seconds':>8}"]
        for i, m in enumerate(r["ranking"], 1):
            s = {k: (np.nan if val is None else val) for k, val in r["methods"][m].items()}  # None: from JSON
            lines.append(f"  {i:>2} {m:<{w}} {s['rmse']:>10.4g} {s['mae']:>10.4g} {s['bias']:>10.3g} "
                         f"{s['corr']:>7.4f} {s['seconds']:>8.1f}")
        if (iv := r.get("ratio_interval")) is not None:
            lines.append(f"  {MODEL_NAME} / {r['best_baseline']}: RMSE ratio {r['rmse_vs_best_baseline']:.3f}, "
                         f"{100 * iv['level']:g} % interval {iv['low']:.3f}-{iv['high']:.3f} ({iv['blocks']} blocks "
                         f"of {block_words(iv)} resampled)")
        s = r["methods"][MODEL_NAME]
        if "crps" in s:
            lines.append(f"  {MODEL_NAME} samples: {s['samples']}, CRPS {s['crps']:.4g}, spread {s['mean_std']:.4g}")
            if (c := s.get("calibrated")) is not None:
                lines.append(f"    calibrated as impute writes them, level {c['level']:g} (factor {c['factor']:.3g}): "
                             f"cells covered {100 * c['cell_coverage']:.1f} %{coverage_note(c, '-')}, mean width {c['mean_width']:.4g}")
            for lv, c in s["levels"].items():
                lines.append(f"    level {lv}: cells covered {100 * c['cell_coverage']:.1f} %{coverage_note(c, '-')} (mean width "
                             f"{c['mean_width']:.4g}), time-step regions covered {100 * c['region_coverage']:.1f} % "
                             f"of {c['regions']}")
    for name, why in report["skipped"].items():
        lines.append(f"skipped {name}: {why}")
    if report.get("report"):
        lines.append(f"report: {report['report']}")
    return "\n".join(lines)
