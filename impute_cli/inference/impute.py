"""impute: a gappy file -> the filled file. Orchestration only: check the options, open the
cube (with the model, or train one on the file first), resolve the job once (`fill.make_job`),
plan regions of bounded memory, and write the output atomically while an engine computes the
regions (`fill.region_outputs`).

Point estimate ([CQ] §3.3) and, with --samples N, N imputations by the multi-step solver
([CQ] App. E) and their spread, the intervals calibrated on the input's own observed cells
(`uncertainty.calibration`); see `fill` for how tiles are blended and sampled."""

from __future__ import annotations

import dataclasses
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import dask

from impute_cli import store
from impute_cli.checkpoint import TRAIN_STATE, load_card, load_model, resolve_model_dir
from impute_cli.config import preset_for
from impute_cli.device import pick_device, use_threads
from impute_cli.errors import OptionError
from impute_cli.inference.blend import cube_fits
from impute_cli.inference.engine import REGION_KEY, check_scheduler_options, compute_engine
from impute_cli.inference.fill import make_job, region_outputs
from impute_cli.inference.loading import open_for_model
from impute_cli.inference.solver import OMEGAS
from impute_cli.io.dataset import open_dataset
from impute_cli.io.encoding import check_compress
from impute_cli.io.cube import Cube
from impute_cli.io.cycle import cycle_for_model, remove_cycle
from impute_cli.io.stats import Summary, refuse_inf, summarise
from impute_cli.io.tiling import cell_bytes, plan_regions
from impute_cli.io.writer import check_output_path, lazy_output, output_specs, write_atomic
from impute_cli.options import ImputeOptions, check_context_ratio, check_zarr_format
from impute_cli.training.train import train_for
from impute_cli.training.members import model_line
from impute_cli.uncertainty.calibration import calibrate_samples


def parse_quantiles(text: str) -> tuple[float, float]:
    """'0.05,0.95' -> (0.05, 0.95), checked."""
    try:
        lo, hi = (float(p) for p in text.split(","))
    except ValueError:
        raise OptionError(f"--quantiles must be two probabilities LOW,HIGH such as 0.05,0.95, got '{text}'") from None
    if not 0 < lo < hi < 1:
        raise OptionError(f"--quantiles must satisfy 0 < LOW < HIGH < 1, got '{text}'")
    return lo, hi


def check_sampling_options(opts: ImputeOptions) -> None:
    """Refuse sampling options that contradict each other or are out of range."""
    if opts.samples is not None and opts.samples < 1:
        raise OptionError(f"--samples must be at least 1 (e.g. --samples 64), got {opts.samples}")
    if opts.samples is None and (opts.save_samples or opts.steps is not None or opts.omega is not None
                                 or opts.quantiles is not None or opts.solver is not None or opts.sampler != "auto"
                                 or opts.recentre is not None):
        raise OptionError("--save-samples, --sampler, --sampler-steps, --omega, --solver, --recentre and --quantiles are for "
                          "sampling; add --samples N")
    if opts.samples is None and (opts.calibrate is not None or opts.calibration_frames is not None):
        raise OptionError("--calibrate/--no-calibrate and --calibration-frames are for the intervals of samples; "
                          "add --samples N")
    if opts.calibration_frames is not None and opts.calibration_frames < 1:
        raise OptionError(f"--calibration-frames must be at least 1, got {opts.calibration_frames}")
    if opts.omega is not None and opts.omega not in OMEGAS:
        raise OptionError(f"--omega must be one of {', '.join(OMEGAS)}, got '{opts.omega}'")
    if opts.steps is not None and opts.steps < 1:
        raise OptionError(f"--sampler-steps must be at least 1, got {opts.steps}")
    check_context_ratio(opts.context_ratio)


def impute_file(inp: str | Path, out: str | Path, opts: ImputeOptions) -> dict[str, Any]:
    """Fill the gaps of INP and write OUT, region by region in bounded memory (see `plan`).
    Without --model, the model store's model for this data is used, or a model is trained on
    INP first and kept there (`store`). A file with no gap to fill is copied through
    (V_filled = V, zero spread) with a notice. Returns a summary (the `--json` report)."""
    t0 = time.perf_counter()
    check_output_path(out, inp, opts.overwrite)
    check_compress(opts.compress)
    check_zarr_format(opts.zarr_format)
    check_sampling_options(opts)
    check_scheduler_options(opts)
    pick_device(opts.device)  # an unknown or absent device is refused before anything is read
    use_threads(opts.threads)
    ds = open_dataset(inp)
    given, cube = open_for_model(str(inp), ds, opts.model, opts.variables, opts.static_mask,
                                 opts.covariates)
    card, den = given if given is not None else (None, None)
    model_used = str(resolve_model_dir(opts.model)) if opts.model else None
    if card is not None and (card.validation or card.members):
        opts.log(f"model {opts.model}: {model_line(card)}")
    cube.load()  # small cubes are read once; large ones stay lazy and are read region by region
    summary = summarise(cube)  # one streaming pass: sums, counts, Inf
    refuse_inf(summary.n_inf)
    summary.refuse_empty(cube.channels)
    gaps = summary.gaps()
    train_seconds, source = 0.0, "given" if opts.model else None
    if not gaps.any():
        opts.log("notice: the input has no gap to fill (every fillable cell is observed); "
                 "writing it through unchanged")
        card = den = None
    elif card is None:
        t1 = time.perf_counter()
        model, source = _stored_model(inp, cube, summary, opts)
        train_seconds = time.perf_counter() - t1
        card, den = load_model(model)
        model_used = str(Path(model).resolve())  # recorded in the output: `confidence --calibrate` finds it
    if source != "trained" and (line := cube.static_mask_line()) is not None:  # training has said it
        opts.log(line)
    # Tile bars inside each region when the regions run here; a cluster's workers show none.
    local = not opts.scheduler and not opts.workers
    cycle = cycle_for_model(card.normalisation, cube) if card is not None else None
    if cycle is not None:  # the model fills anomalies from the daily cycle; each region adds it back
        if source != "trained":  # training has said it
            opts.log(f"daily cycle: the model fills anomalies; this file's cycle ({cycle.harmonics} harmonics of "
                     "the day per cell) is removed and added back")
        work = remove_cycle(cube, cycle)
        work_summary = summarise(work)
    else:
        work, work_summary = cube, summary
    job = make_job(card, den, work, work_summary, dataclasses.replace(opts, progress=opts.progress and local),
                   source=str(Path(inp).resolve()))
    job.cycle = cycle
    job.fits = cube_fits([job.blend, *(m.blend for m in job.members)], work)  # space-time kriging's covariance: the whole file's, in every region
    quantiles = opts.quantiles or (0.05, 0.95)
    sampling = job.info()
    if sampling is not None:
        sampling["model"] = model_used or ""
        if job.card is not None and job.student_weights is None and opts.sampler == "auto":
            opts.log(f"the {job.samples} samples come from the multi-step solver, {job.steps + 1} network calls "
                     f"each; for a model sampled again and again, 'impute-cli distill {model_used}' trains, once, "
                     "a sampler of one call a sample (2-13x faster samples, CRPS up to 4 % higher: docs/cli.md#distill)")
        if job.card is not None and opts.calibrate is not False:  # honest intervals by default
            factors = calibrate_samples(job, work_summary, quantiles, opts)
            if factors:
                job.cell_factors = {v: f["cell_factor"] for v, f in factors.items()}
                sampling["calibration"] = factors
    plan = plan_regions(cube.grid.shape, job.window, cell_bytes(len(cube.channels), job.samples, opts.save_samples),
                        opts.region_bytes)
    # One task per region, all reading the one job (shipped once to each Dask worker).
    # A name of its own for each run, so that two runs on a shared scheduler never share a task
    # (the file's layout does not depend on task names: see writer._write_netcdf).
    name = f"{REGION_KEY}-{uuid.uuid4().hex}"
    job_d = dask.delayed(job, name=f"impute-job-{name[-12:]}", traverse=False)  # never look inside (its cube is lazy)
    regions = plan.regions()
    parts = [dask.delayed(region_outputs, pure=True)(job_d, r, quantiles, opts.save_samples, dask_key_name=(name, r.index))
             for r in regions]
    ds = lazy_output(cube, plan, parts, opts.history, sampling=sampling, quantiles=quantiles,
                     save_samples=opts.save_samples, compress=opts.compress, copy=opts.copy)
    for v in cube.variables if card is None else ():  # nothing was filled: say so, not how
        ds[f"{v}_filled"].attrs["comment"] = "the input had no gap to fill: its values bit for bit"
    for v in cube.variables if cycle is not None else ():  # say how the gaps were filled
        ds[f"{v}_filled"].attrs["comment"] += (f"; the network filled the anomalies from each cell's mean daily cycle "
                                               f"({cycle.harmonics} harmonics of the day fitted on this file), then "
                                               "the cycle was added back")
    for v in cube.variables if cube.covariates else ():
        ds[f"{v}_filled"].attrs["comment"] += f"; the network saw {', '.join(cube.covariates)} as context (covariates)"
    blends = [b for b in (job.blend, *(m.blend for m in job.members)) if b is not None]
    if blends:  # the network's estimate blended with classical fills (inference.blend), each model's its own
        partners = list(dict.fromkeys(p for b in blends for p in b.partners))
        fills = " and ".join({"laplace": "a Laplace fill", "spline": "a spline with tension",
                              "anchored": "its own estimate anchored to the Laplace fill at each gap's edge",
                              "gp_kriging": "kriging", "st_kriging": "space-time kriging"}.get(p, p)
                             for p in partners)
        whose = "each model's own validation slice (of these fills, those it kept)" if job.members else \
            "the model's validation slice"
        for v in cube.variables:
            ds[f"{v}_filled"].attrs["comment"] += (f"; blended with {fills} (fills of the same gaps) by weights per distance to "
                                                   f"the nearest observation, fitted on {whose}"
                                                   + (" (the samples moved with it)" if sampling else ""))
    if job.members:  # a folder of several models (training.members)
        seeds = [job.card.preset.train.seed, *(m.get("seed") for m in job.card.members or [])]
        for v in cube.variables:
            ds[f"{v}_filled"].attrs["comment"] += (f"; the mean of the estimates of {len(seeds)} models of training seeds "
                                                   f"{', '.join(map(str, seeds))}"
                                                   + (" (the samples drawn by the first, moved with it)" if sampling else ""))
    with compute_engine(opts.scheduler, opts.workers, len(regions), name, opts.progress, opts.log,
                        job.threads) as run:
        write_atomic(ds, out, opts.overwrite, compute=run, zarr_format=opts.zarr_format,
                     together=[s.name for s in output_specs(cube, sampling, quantiles, opts.save_samples)])
    filled = {v: int(sum(gaps[c] for c, (w, _) in enumerate(cube.channel_sel) if w == v)) if job.card is not None
              else 0 for v in cube.variables}
    opts.log(f"wrote {out}: {filled[cube.variables[0]]} cells of {cube.variables[0]} imputed"
             + (f" (and {len(cube.variables) - 1} more variable{'s' * (len(cube.variables) > 2)})" if len(cube.variables) > 1 else ""))
    return {"input": str(inp), "output": str(out), "model": model_used, "model_source": source,
            "cells_imputed": filled, "covariates": list(cube.covariates),
            "samples": job.samples or 0, "calibration": (sampling or {}).get("calibration"),
            "seconds": {"total": round(time.perf_counter() - t0, 2), "training": round(train_seconds, 2)}}


def _stored_model(inp: str | Path, cube: Cube, summary: Summary, opts: ImputeOptions) -> tuple[Path, str]:
    """The model store's model for this data and these settings, or one trained now and kept
    there (see `store`); --retrain trains again in its place."""
    name, why = preset_for(opts.preset, cube.grid.is_series)  # 'auto': the preset for the file's layout
    opts = dataclasses.replace(opts, preset=name)
    fp = store.fingerprint(cube, summary, store.settings(opts.preset, opts.mask_pattern, opts.train_steps, opts.seed))
    found = store.find(fp)
    if found is not None and not opts.retrain:
        opts.log(f"using the stored model {found}, trained on this data with these settings "
                 "(--retrain trains a new one)")
        card = load_card(found)
        if card.validation or card.members:
            opts.log(f"model {found}: {model_line(card)}")
        return found, "store"
    target = found if found is not None else store.place(inp, opts.preset, fp)
    if found is None and target != (base := store.named(inp, opts.preset)):
        opts.log(f"{base} holds a model trained on other data or with other settings than these; "
                 f"--model {base} uses it")
    opts.log(f"no --model given: training a '{opts.preset}' model{f' ({why})' if why else ''} on {inp} itself first "
             f"(the method needs no complete data); it is kept as {target}")
    try:
        model = train_for(inp, cube, opts, target, overwrite=found is not None, fingerprint=fp)
    except BaseException:  # an interrupted or failed training leaves nothing in the store
        if found is None:
            shutil.rmtree(target, ignore_errors=True)
        raise
    (model / TRAIN_STATE).unlink(missing_ok=True)  # nobody resumes it: the store keeps weights and card only
    return model, "trained"
