"""cli: thin Typer commands. Each converts its arguments, calls one library function, and the
one error path below (`OneLineErrors`) turns a problem into a one-line message and an exit
code: 2 for a bad command line (click's usage errors and the project's OptionError), 1 for bad
data or a refused model (ImputeError), 3 when memory runs out, 130 for an interruption.

The library is imported inside each command, not at the top: torch, xarray and dask take about
2 s to import, which `impute-cli --help` and a mistyped option should not wait for."""

from __future__ import annotations

import json
import signal
import sys
import threading
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import typer.core

try:  # typer >= 0.2x vendors click as typer._click; older typer uses click itself
    from typer.core import _click as click  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    import click

from impute_cli.config import HOLDOUTS, MASK_PATTERNS, QUERY_MODES, SAMPLERS, SOLVERS
from impute_cli.console import command_line, plain_metavars, strict_json
from impute_cli.errors import ImputeError, Interrupted

INTERRUPTED = dict.fromkeys(("train", "distill"), "interrupted; continue from the last checkpoint with the same command and --resume")


class OneLineErrors(typer.core.TyperGroup):
    """Every error as one line on stderr and an exit code, instead of a traceback or a usage
    box: the project's own errors (ImputeError), click's (an unknown option, a value out of its
    range, a missing argument), Ctrl-C / SIGTERM and running out of memory."""

    def main(self, *args, standalone_mode: bool = True, **kw):  # type: ignore[override]
        for command in (self, *self.commands.values()):
            plain_metavars(command)
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kw)
        # SIGTERM (a batch system's time limit, `kill`) as Ctrl-C, so that temporary outputs are
        # removed on the way out instead of left beside OUT
        previous = signal.signal(signal.SIGTERM, _terminated) if threading.current_thread() is threading.main_thread() else None
        try:
            rv = super().main(*args, standalone_mode=False, **kw)
        except click.exceptions.NoArgsIsHelpError as e:  # plain `impute-cli` or `impute-cli train`
            typer.echo(e.ctx.get_help() if e.ctx else e.format_message())
            sys.exit(2)
        except click.exceptions.UsageError as e:
            where = e.ctx.command_path if e.ctx else "impute-cli"
            msg = " ".join(e.format_message().split())
            _err(f"{msg} (see '{where} --help')")
            sys.exit(2)
        except click.exceptions.ClickException as e:
            _err(" ".join(e.format_message().split()))
            sys.exit(e.exit_code)
        except typer.Abort:
            _err("aborted; no output was written")
            sys.exit(130)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ImputeError as e:
            _err(str(e))
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt as e:
            _err(str(e) if isinstance(e, Interrupted) else
                 INTERRUPTED.get(ctx.invoked_subcommand or "", "interrupted; no output was written"))
            raise typer.Exit(130) from None
        except MemoryError:
            _err("out of memory; use a smaller --region-mb (impute), preset or window")
            raise typer.Exit(3) from None


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, cls=OneLineErrors,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Fill gaps in NetCDF/Zarr cubes with a diffusion model trained on the incomplete data itself.")


def _version(value: bool) -> None:
    if value:
        from impute_cli.version import __version__
        typer.echo(f"impute-cli {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Fill gaps in NetCDF/Zarr cubes with a diffusion model trained on the incomplete data itself."""

# Choices as enums (Typer lists them in --help and refuses others), from the library's own lists.
MaskPattern = Enum("MaskPattern", {p: p for p in MASK_PATTERNS}, type=str)
HoldoutPattern = Enum("HoldoutPattern", {p: p for p in HOLDOUTS}, type=str)
QueryMode = Enum("QueryMode", {p: p for p in QUERY_MODES}, type=str)
SolverKind = Enum("SolverKind", {p: p for p in SOLVERS}, type=str)
SamplerKind = Enum("SamplerKind", {p: p for p in SAMPLERS}, type=str)


def _err(msg: str) -> None:
    typer.echo(f"impute-cli: error: {msg}", err=True)


def _log(msg: str) -> None:
    typer.echo(msg, err=True)


def _renamed(old: Any, old_name: str, new: Any, new_name: str) -> Any:
    """An option's old spelling still works, with a warning; the new one wins."""
    if old is None:
        return new
    _log(f"warning: {old_name} is now {new_name}{' (training: --train-steps)' * (old_name == '--steps')}; the old name will go in a later version")
    return new if new is not None else old


Vars = Annotated[Optional[list[str]], typer.Option("--var", help="Variable to impute (repeatable); default: every floating variable on the main grid.")]
Covariates = Annotated[Optional[list[str]], typer.Option("--covariate", help="Variable of the same grid the model sees as context only, never filled (repeatable; e.g. a reanalysis field beside satellite data); a model keeps its covariates, which every file it imputes must have.")]
StaticMask = Annotated[Optional[str], typer.Option("--static-mask", help="Variable marking cells never to fill (land in an SST file); found automatically when named mask/lsm/...")]
Device = Annotated[str, typer.Option(help="auto (CUDA if available), cpu, cuda or cuda:N.")]
Quiet = Annotated[bool, typer.Option("--quiet", help="No progress bar.")]
Threads = Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads for the network (default: the cores this process may use).")]
ZarrFormat = Annotated[Optional[int], typer.Option(min=2, max=3, help="Zarr format of a .zarr output, 2 or 3 (default: the installed zarr's, 3 with zarr 3).")]
# Options of the commands that impute: the model trained first without --model; the estimate's settings.
FallbackPreset = Annotated[str, typer.Option("--preset", help="Preset of the model trained first when no --model is given; auto: series for station series, quick for grids.")]
FallbackPattern = Annotated[Optional[MaskPattern], typer.Option("--mask-pattern", help="Context strategy of that model.")]
FallbackSteps = Annotated[Optional[int], typer.Option("--train-steps", min=1, help="Training steps of that model.")]
Ensemble = Annotated[Optional[int], typer.Option("--ensemble", min=1, help="How many estimates, each from another random part of the observed cells, are averaged per gap cell (more: smoother and slower; default: the model's).")]
Solver = Annotated[Optional[SolverKind], typer.Option("--solver", help="Step of the samples' solver: ddim (first order) or dpm2m (second order, as good in fewer steps; default: the model's, dpm2m).")]
Sampler = Annotated[SamplerKind, typer.Option("--sampler", help="Where samples come from: auto (the model's distilled sampler, one network call a sample, when 'impute-cli distill' made one; else the multi-step solver), full (the multi-step solver) or student.")]
BlendOpt = Annotated[bool, typer.Option("--blend/--no-blend", help="Use the model's blend of its estimate with classical fills (in quick: the Laplace fill, a spline with tension, the anchored fill and kriging), fitted on its validation slice (default); --no-blend: the network's estimate alone.")]
Recentre = Annotated[Optional[bool], typer.Option("--recentre/--no-recentre", help="With --samples N (N >= 2): move the samples so that their mean on each gap cell is the point estimate, their differences kept (default: on, the model's impute.recentre); --no-recentre: the solver's draws as they come. See docs/method.md.")]
ContextRatio = Annotated[Optional[float], typer.Option("--context-ratio", help="Share of the observed cells the model sees per estimate, in (0, 1]; 1: all of them (default: the model preset's choice, else as dense as in training; see docs/cli.md).")]


@app.command()
def train(
    data: Annotated[Path, typer.Argument(help="NetCDF (.nc) file or Zarr store with gaps (NaN / _FillValue).")],
    mask_pattern: Annotated[Optional[MaskPattern], typer.Option(help="Context/query strategy matching the gaps; default: the preset's (auto).")] = None,
    preset: Annotated[str, typer.Option(help="Preset name in presets/, a YAML path, or auto: series for station series, quick for grids.")] = "auto",
    out: Annotated[Optional[Path], typer.Option(help="Model folder; default models/<data>-<preset>/.")] = None,
    steps: Annotated[Optional[int], typer.Option(min=1, help="Training steps (overrides the preset).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the folder's last checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing model folder.")] = False,
    var: Vars = None,
    static_mask: StaticMask = None,
    covariate: Covariates = None,
    context_ratio: Annotated[Optional[float], typer.Option(help="Fraction of observed cells kept as context (1 = MissDiff).")] = None,
    query: Annotated[Optional[QueryMode], typer.Option(help="Query = all observed cells, or those left out of the context.")] = None,
    query_ratio: Annotated[Optional[float], typer.Option(help="Fraction of observed cells in the query.")] = None,
    block_size: Annotated[Optional[list[int]], typer.Option(min=1, metavar="N", help="Block edge in cells for the block strategy (repeatable; default: the preset's).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed.")] = None,
    validation: Annotated[bool, typer.Option("--validation/--no-validation", help="Hold a few percent of the observed cells out of training (the data's own gap shapes), score the model on them beside the classical fillers, keep the best weights and stop when they stop improving. --no-validation trains on every cell.")] = True,
    patience: Annotated[int | None, typer.Option(min=0, help="Stop after this many validation checks (one per checkpoint) without improvement; 0: run every step (default: 4, or a quarter of the run's checks when that is more).")] = None,
    members: Annotated[Optional[int], typer.Option(min=1, metavar="N", help="Train N models of seeds S, S+1, ... and average their estimates at imputation (default: the preset's train.short_record_members -- 3 in quick -- on a record of at most two windows in time, where a model depends most on its seed; else 1).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the model's summary as JSON on stdout (folder, steps, time, validation); logs stay on stderr.")] = False,
    device: Device = "auto", threads: Threads = None, quiet: Quiet = False,
) -> None:
    """Train a model on the observed cells of DATA (no complete data needed) and write a model folder."""
    from impute_cli.checkpoint import card_summary
    from impute_cli.options import TrainOptions
    from impute_cli.training.train import train_model
    model = train_model(data, TrainOptions(
        preset=preset, mask_pattern=mask_pattern.value if mask_pattern else None, steps=steps, out=out,
        resume=resume, overwrite=overwrite, variables=var, static_mask=static_mask, covariates=covariate, device=device, threads=threads, seed=seed,
        context_ratio=context_ratio, query=query.value if query else None, query_ratio=query_ratio,
        block_sizes=block_size, validation=validation, patience=patience, members=members, progress=not quiet, log=_log))
    if json_out:
        typer.echo(strict_json(card_summary(model)))


@app.command()
def impute(
    ctx: typer.Context,
    inp: Annotated[Path, typer.Argument(metavar="IN", help="Gappy NetCDF file or Zarr store.")],
    out: Annotated[Path, typer.Argument(metavar="OUT", help="Output: .nc (NetCDF) or .zarr (Zarr).")],
    model: Annotated[Optional[str], typer.Option(help="Model folder (or name under models/); without it the model store's model for this data is used, or a model of the auto preset (quick for grids, series for station series) is trained on IN first and kept there.")] = None,
    ensemble: Ensemble = None,
    var: Vars = None,
    static_mask: StaticMask = None,
    covariate: Covariates = None,
    preset: FallbackPreset = "auto",
    mask_pattern: FallbackPattern = None,
    train_steps: FallbackSteps = None,
    samples: Annotated[Optional[int], typer.Option(help="Also draw N plausible fillings of the gaps and write their spread per cell (V_std, V_lower, V_upper).")] = None,
    sampler_steps: Annotated[Optional[int], typer.Option("--sampler-steps", help="Solver steps per sample: fewer is faster, coarser (default: the model's, 6).")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", hidden=True, help="Old name of --sampler-steps.")] = None,
    quantiles: Annotated[Optional[str], typer.Option(metavar="LOW,HIGH", help="The interval V_lower..V_upper: its level is HIGH - LOW, calibrated by default (--no-calibrate: these quantiles of the samples; default 0.05,0.95).")] = None,
    solver: Solver = None,
    sampler: Sampler = SamplerKind.auto,
    omega: Annotated[Optional[str], typer.Option(metavar="1-t|t", help="How each sample's solver weighs its own draw against the point estimate: 1-t (default) or t; see docs/method.md.")] = None,
    context_ratio: ContextRatio = None,
    blend: BlendOpt = True,
    recentre: Recentre = None,
    save_samples: Annotated[bool, typer.Option("--save-samples", help="Also write the samples, V_sample(sample, time, ...), for `confidence`.")] = False,
    calibrate: Annotated[Optional[bool], typer.Option("--calibrate/--no-calibrate", help="With --samples: widen or narrow V_lower..V_upper and V_std by a factor found by hiding observed cells of IN with its own gap shapes and resampling them, so that the stated level holds on this data (default: on).")] = None,
    calibration_frames: Annotated[Optional[int], typer.Option(help="Time steps hidden and resampled for that calibration (more: a steadier factor, more time; default: 256 where a grid's gaps are clustered and the solver samples, else 128).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same output.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
    scheduler: Annotated[Optional[str], typer.Option(metavar="ADDRESS", help="Run the regions on the workers of this Dask scheduler (e.g. tcp://host:8786); they must see IN and OUT.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Run the regions on a local Dask cluster of N worker processes.")] = None,
    region_mb: Annotated[int, typer.Option(min=1, help="Working memory of one region in MiB: the cube is imputed region by region, so peak memory follows this, not the cube's size.")] = 2048,
    compress: Annotated[int, typer.Option(help="zlib level of the new variables in a NetCDF output, 0 (none) to 9; copied variables keep the input's storage.")] = 1,
    retrain: Annotated[bool, typer.Option("--retrain", help="Without --model: train a new model even when the model store holds one for this data and these settings.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print a summary as JSON on stdout (output, model, cells imputed per variable, timings); logs stay on stderr.")] = False,
    zarr_format: ZarrFormat = None,
    copy: Annotated[bool, typer.Option("--copy/--no-copy", help="Copy the input's variables into OUT (default), or write only the new ones and the coordinates, to merge with 'cdo merge' or 'ncks -A'.")] = True,
    device: Device = "auto",
    threads: Threads = None,
    quiet: Quiet = False,
) -> None:
    """Fill the gaps of IN and write OUT: every input variable unchanged plus V_filled and V_imputed_flag
    (and with --samples N, the per-cell uncertainty)."""
    from impute_cli.inference.impute import impute_file, parse_quantiles
    from impute_cli.options import ImputeOptions
    steps = _renamed(steps, "--steps", sampler_steps, "--sampler-steps")
    report = impute_file(inp, out, ImputeOptions(compress=compress, copy=copy, retrain=retrain, zarr_format=zarr_format,
        model=model, variables=var, static_mask=static_mask, covariates=covariate, ensemble=ensemble, seed=seed, device=device, threads=threads,
        overwrite=overwrite, preset=preset, mask_pattern=mask_pattern.value if mask_pattern else None,
        train_steps=train_steps, samples=samples, steps=steps, quantiles=parse_quantiles(quantiles) if quantiles is not None else None,
        omega=omega, solver=solver.value if solver else None, sampler=sampler.value, context_ratio=context_ratio, blend=blend,
        recentre=recentre, save_samples=save_samples, history=command_line(ctx), progress=not quiet, log=_log,
        calibrate=calibrate, calibration_frames=calibration_frames, scheduler=scheduler, workers=workers, region_bytes=region_mb * 1024**2))
    if json_out:
        typer.echo(strict_json(report))


@app.command()
def confidence(
    ctx: typer.Context,
    result: Annotated[Path, typer.Argument(metavar="RESULT", help="Output of 'impute --samples N --save-samples'.")],
    out: Annotated[Path, typer.Argument(metavar="OUT", help="RESULT plus V_ci_lower, V_ci_upper, V_ci_radius (.nc or .zarr).")],
    level: Annotated[float, typer.Option(help="Confidence level 1 - alpha, in (0, 1).")] = 0.9,
    group: Annotated[str, typer.Option(help="Joint regions: 'time' (one per time step), 'all', or N (blocks of N time steps).")] = "time",
    truth: Annotated[Optional[Path], typer.Option(help="Complete field on the same grid: report coverage on the imputed cells.")] = None,
    calibrate: Annotated[bool, typer.Option("--calibrate", help="Split-conformal correction from observed cells hidden with the data's own gap shapes.")] = False,
    model: Annotated[Optional[str], typer.Option(help="Model that made the samples (default: the one recorded in RESULT); for --calibrate.")] = None,
    calibration_frames: Annotated[int, typer.Option(help="Time steps hidden and resampled for --calibrate (more: steadier factors, longer run).")] = 256,
    var: Vars = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
    seed: Annotated[int, typer.Option(help="Random seed for --calibrate.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
    zarr_format: ZarrFormat = None,
    device: Device = "auto",
    threads: Threads = None,
    quiet: Quiet = False,
) -> None:
    """Confidence intervals per cell and joint regions per time step from the samples of RESULT, with their coverage of --truth."""
    from impute_cli.options import ConfidenceOptions
    from impute_cli.uncertainty.confidence import confidence_file, format_report
    report = confidence_file(result, out, ConfidenceOptions(
        level=level, group=group, variables=var, truth=str(truth) if truth else None, calibrate=calibrate, zarr_format=zarr_format,
        model=model, calibration_frames=calibration_frames, seed=seed, device=device, threads=threads, overwrite=overwrite,
        history=command_line(ctx), progress=not quiet, log=_log))
    typer.echo(json.dumps(report, indent=2) if json_out else format_report(report))


@app.command()
def evaluate(
    ctx: typer.Context,
    data: Annotated[Path, typer.Argument(help="NetCDF file or Zarr store; some of its observed cells are hidden and scored.")],
    model: Annotated[Optional[str], typer.Option(help="Model to score (default: train one on the held-out data only, which is the honest score).")] = None,
    holdout: Annotated[HoldoutPattern, typer.Option(help="Shape of the hidden cells: pixel, block, cloud, station (whole series), empirical (the data's own gaps from other time steps).")] = HoldoutPattern.cloud,
    fraction: Annotated[float, typer.Option(help="Share of the observed cells to hide, in (0, 1).")] = 0.2,
    seed: Annotated[int, typer.Option(help="Random seed (holdout, training, imputation).")] = 0,
    var: Vars = None,
    static_mask: StaticMask = None,
    covariate: Covariates = None,
    preset: FallbackPreset = "auto",
    mask_pattern: FallbackPattern = None,
    train_steps: FallbackSteps = None,
    ensemble: Ensemble = None,
    context_ratio: ContextRatio = None,
    blend: BlendOpt = True,
    samples: Annotated[Optional[int], typer.Option(help="Also draw N samples and score their uncertainty (CRPS, coverage, regions).")] = None,
    sampler_steps: Annotated[Optional[int], typer.Option("--sampler-steps", min=1, help="Solver steps per sample (default: the model's).")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", min=1, hidden=True, help="Old name of --sampler-steps.")] = None,
    solver: Solver = None,
    sampler: Sampler = SamplerKind.auto,
    recentre: Recentre = None,
    level: Annotated[Optional[list[float]], typer.Option(help="Interval/region levels scored with --samples (repeatable; default 0.5 and 0.9).")] = None,
    baseline: Annotated[Optional[list[str]], typer.Option(help="Baselines to run (repeatable; default all).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the scores as JSON on stdout (logs stay on stderr).")] = False,
    report: Annotated[Optional[Path], typer.Option(help="Folder for a Markdown report with PNG figures.")] = None,
    keep: Annotated[Optional[Path], typer.Option(help="Folder for gappy.nc, truth.nc, filled.nc and the model trained on gappy.nc (for independent checks).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace the files of an earlier --report or --keep.")] = False,
    device: Device = "auto",
    threads: Threads = None,
    quiet: Quiet = False,
) -> None:
    """Hide observed cells of DATA with a realistic pattern, fill them with the model and with classical
    methods, and rank the methods on those cells."""
    from impute_cli.evaluation.evaluate import evaluate_file, format_table, to_json
    from impute_cli.options import EvaluateOptions
    steps = _renamed(steps, "--steps", sampler_steps, "--sampler-steps")
    result, _ = evaluate_file(data, EvaluateOptions(
        model=model, holdout=holdout.value, fraction=fraction, seed=seed, variables=var, static_mask=static_mask, covariates=covariate,
        preset=preset, mask_pattern=mask_pattern.value if mask_pattern else None, train_steps=train_steps,
        ensemble=ensemble, context_ratio=context_ratio, blend=blend, samples=samples, steps=steps,
        solver=solver.value if solver else None, sampler=sampler.value, recentre=recentre, levels=tuple(level) if level else None,
        baselines=baseline, report=str(report) if report else None, keep=str(keep) if keep else None,
        overwrite=overwrite, device=device, threads=threads, command=command_line(ctx), progress=not quiet, log=_log))
    typer.echo(json.dumps(to_json(result), indent=2, allow_nan=False) if json_out else format_table(result))


models_app = typer.Typer(help="List, show and delete the models in the model store (models/ or $IMPUTE_CLI_MODELS).", context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(models_app, name="models")


@models_app.callback(invoke_without_command=True)
def models(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="The list as JSON on stdout.")] = False,
) -> None:
    """List the models in the store: name, variables, grid, preset, steps, date, size."""
    if ctx.invoked_subcommand is not None:
        return
    from impute_cli.store import format_table, list_models
    typer.echo(strict_json(list_models()) if json_out else format_table(list_models()))


@models_app.command("show")
def models_show(name: Annotated[str, typer.Argument(help="Model name in the store, or a model folder.")]) -> None:
    """Print a model's card."""
    from impute_cli.store import show
    typer.echo(show(name), nl=False)


@models_app.command("rm")
def models_rm(name: Annotated[str, typer.Argument(help="Model name in the store.")]) -> None:
    """Delete a model from the store."""
    from impute_cli.store import remove
    _log(f"removed {remove(name)}")


@app.command()
def distill(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="Model folder (or name under models/) whose sampler to distil.")],
    data: Annotated[Path | None, typer.Option(help="File to draw training windows from (default: the one the model was trained on).")] = None,
    steps: Annotated[Optional[int], typer.Option(min=1, help="Distillation steps (default: 1500 for a narrower student, 1000 for a copy of the model's network).")] = None,
    width: Annotated[Optional[int], typer.Option(min=4, help="The student's base channels (default: half the model's, trained afresh; the model's own: a copy of its network, slower samples).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same student.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace the model's distilled sampler (or unfinished distillation) if it has one.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted distillation from its last checkpoint.")] = False,
    device: Device = "auto",
    threads: Threads = None,
    quiet: Quiet = False,
) -> None:
    """Train a student that draws a sample in one network call, from MODEL's multi-step sampler, and add it to MODEL."""
    from impute_cli.options import DistillOptions
    from impute_cli.training.distill import distill_model
    distill_model(model, DistillOptions(data=str(data) if data else None, steps=steps, seed=seed, width=width, resume=resume,
                                        overwrite=overwrite, device=device, threads=threads, progress=not quiet, log=_log))


@app.command()
def demo(
    outdir: Annotated[Path, typer.Argument(help="Folder for the demo cube, model and output.")] = Path("demo"),
    steps: Annotated[Optional[int], typer.Option(min=1, help="Training steps (default: the quick preset's).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    threads: Threads = None,
) -> None:
    """Make a synthetic cube with cloud gaps, train a quick model on it, impute, and score the hidden cells."""
    from impute_cli.demo import run_demo
    scores = run_demo(outdir, steps=steps, seed=seed, threads=threads, log=_log)
    typer.echo("RMSE on the hidden cells (lower is better):")
    for name, v in sorted(scores.items(), key=lambda kv: kv[1]):
        typer.echo(f"  {name:<16} {v:.4f}")


if __name__ == "__main__":  # pragma: no cover
    app()
