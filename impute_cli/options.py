"""options: what each command accepts, as keyword-only dataclasses the CLI fills in and the
library functions take. What several commands share is written once, in the base classes:
`RunOptions` (every command) and `FillOptions` (the commands that impute: `impute`, `evaluate`,
and the resampling of `confidence --calibrate`)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from impute_cli.errors import OptionError

REGION_BYTES = 2048 * 1024**2  # default working memory of one imputation region


def check_context_ratio(ratio: float | None) -> None:
    """--context-ratio (of `train`, `impute` and `evaluate`) must be a share of the observed cells, in (0, 1]."""
    if ratio is not None and not 0 < ratio <= 1:
        raise OptionError(f"--context-ratio must be in (0, 1] (1: every observed cell as context), got {ratio}")


def check_zarr_format(zarr_format: int | None) -> None:
    """--zarr-format (of `impute` and `confidence`): 2 or 3, or None for the installed zarr's default."""
    if zarr_format not in (None, 2, 3):
        raise OptionError(f"--zarr-format must be 2 or 3, got {zarr_format}")


def to_stderr(msg: str) -> None:
    """The default log: one line on stderr."""
    print(msg, file=sys.stderr)


@dataclass(kw_only=True)
class RunOptions:
    """Options of every command."""

    variables: list[str] | None = None  # None: every floating variable on the main grid
    seed: int = 0
    device: str = "auto"
    threads: int | None = None  # CPU threads; None: the cores this process may use
    overwrite: bool = False
    progress: bool = True
    log: Callable[[str], None] = field(default=to_stderr)


@dataclass(kw_only=True)
class TrainOptions(RunOptions):
    preset: str = "auto"  # 'auto': config.preset_for chooses by the data's layout
    mask_pattern: str | None = None  # None: the preset's
    steps: int | None = None  # None: the preset's
    out: Path | None = None  # None: models/<data>-<preset>
    resume: bool = False
    validation: bool = True  # hold out a slice of observed cells and score the model on it
    # stop after this many validations without improvement (0: never stop early); None:
    # validation.default_patience, 4 or a quarter of the run's checks when that is more
    patience: int | None = None
    static_mask: str | None = None
    seed: int | None = None  # None: the preset's train.seed
    context_ratio: float | None = None
    query: str | None = None
    query_ratio: float | None = None
    block_sizes: list[int] | None = None
    fingerprint: str | None = None  # recorded in the card when training for the model store
    covariates: list[str] | None = None  # variables seen as context only (never filled)
    members: int | None = None  # models of consecutive seeds, averaged (None: the preset's rule, training.members)


@dataclass(kw_only=True)
class FillOptions(RunOptions):
    """How to impute: the model (or how to train one when none is given) and the estimate's
    and samples' settings. None takes the model preset's value."""

    model: str | None = None
    static_mask: str | None = None
    covariates: list[str] | None = None  # for the model trained first; with a model: its own
    preset: str = "auto"  # for the model trained first when no model is given ('auto': by the data's layout)
    mask_pattern: str | None = None  # for that model
    train_steps: int | None = None  # for that model
    ensemble: int | None = None  # context masks K averaged per estimate
    context_ratio: float | None = None  # share of observed cells a member sees; None: [CQ] App. G.3
    samples: int | None = None  # N samples by the multi-step solver; None: point estimate only
    steps: int | None = None  # solver steps per sample
    omega: str | None = None  # weight on E_diff in [CQ] eq. 28
    solver: str | None = None  # the multi-step sampler's step: ddim or dpm2m
    # samples from: 'auto' (the model's distilled sampler when it has one, else the multi-step
    # sampler), 'full' (the multi-step sampler) or 'student' (the distilled one, required)
    sampler: str = "auto"
    blend: bool = True  # False (--no-blend): the network's estimate alone, not the model's fitted blend
    recentre: bool | None = None  # samples' mean moved to the point estimate (inference.fill.recentre); None: the preset's


@dataclass(kw_only=True)
class ImputeOptions(FillOptions):
    quantiles: tuple[float, float] | None = None  # V_lower/V_upper; default (0.05, 0.95)
    # With samples: scale the intervals by a split-conformal factor found on this input's own
    # observed cells (None: yes, the default; False: --no-calibrate, the samples' raw quantiles)
    calibrate: bool | None = None
    calibration_frames: int | None = None  # time steps hidden and resampled for it; None: calibration.default_frames
    save_samples: bool = False
    history: str = "impute-cli impute"
    scheduler: str | None = None  # a Dask scheduler address: regions run on its workers
    workers: int | None = None  # a local Dask cluster of this many worker processes
    region_bytes: int = REGION_BYTES  # working memory of one region (see io.tiling.plan_regions)
    retrain: bool = False  # without a model: train again even when the store holds one for this data
    compress: int = 1  # zlib level of the new variables (0: none); see io.encoding
    copy: bool = True  # False (--no-copy): write only the new variables and the coordinates
    zarr_format: int | None = None  # 2 or 3 for a Zarr output; None: the installed zarr's default (3 with zarr 3)


@dataclass(kw_only=True)
class EvaluateOptions(FillOptions):
    holdout: str = "cloud"
    fraction: float = 0.2
    levels: tuple[float, ...] | None = None  # levels scored with samples; None: 0.5 and 0.9
    baselines: list[str] | None = None  # None: all
    report: str | None = None  # folder for the Markdown report and figures
    keep: str | None = None  # folder for gappy.nc, truth.nc, filled.nc and the model trained here
    command: str = "impute-cli evaluate"


@dataclass(kw_only=True)
class ConfidenceOptions(RunOptions):
    level: float = 0.9
    group: str = "time"  # 'time', 'all', or a number of time steps per region
    truth: str | None = None
    calibrate: bool = False
    model: str | None = None
    calibration_frames: int = 256  # time steps hidden and resampled for --calibrate
    zarr_format: int | None = None  # 2 or 3 for a Zarr output; None: the installed zarr's default
    history: str = "impute-cli confidence"


@dataclass(kw_only=True)
class DistillOptions(RunOptions):
    """How to distil a model's multi-step sampler into a one-call student (training.distill)."""

    data: str | None = None  # None: the file the model was trained on (its card's training.data)
    steps: int | None = None  # None: 1500 for a student trained afresh, 1000 for a copy of the teacher
    batch_size: int | None = None  # windows per step; None: the model's train.batch_size
    width: int | None = None  # the student's base channels; None: half the model's (training.distill.student_width)
    lr: float | None = None  # None: 2e-4 for a copy of the teacher, 1e-3 for a student trained afresh
    resume: bool = False  # continue from the model folder's distill checkpoint
