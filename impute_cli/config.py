"""Strict dataclass configs, loaded from YAML presets: unknown keys are errors, every value is
checked in `__post_init__`, and the resolved config is saved with every model."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import yaml

from impute_cli.errors import ImputeError, OptionError

# Choice lists shared by the CLI (which imports this light module for its help) and the library.
MASK_PATTERNS = ("pixel", "block", "mixed", "empirical", "auto")
HOLDOUTS = ("pixel", "block", "cloud", "station", "empirical")  # evaluate --holdout
QUERY_MODES = ("observed", "rest")
AUGMENTATIONS = ("flip", "reverse_time")
ARCHS = ("unet", "stunet", "series", "dit")
BLEND_PARTNERS = ("laplace", "spline", "anchored", "gp_kriging", "st_kriging")  # train.blend: the fills inference.blend may use
SOLVERS = ("ddim", "dpm2m")  # impute --solver
SAMPLERS = ("auto", "full", "student")  # where samples come from: see FillOptions.sampler


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ImputeError(msg)


def _optional_float(value: Any, ok: Callable[[float], bool], msg: str) -> float | None:
    """An optional number key (None = left out): checked with `ok`, returned as a float. YAML's
    true/false are not numbers here, although Python counts bool as int."""
    if value is None:
        return None
    _check(isinstance(value, (int, float)) and not isinstance(value, bool) and ok(value), f"{msg}, got {value!r}")
    return float(value)


@dataclass
class NetworkConfig:
    """The backbone: 'unet', the fully convolutional U-Net (frames x variables as channels);
    'stunet', the space-time U-Net (the same U-Net run on every frame with features of its own,
    its blocks mixing along time; see network.STUNet); 'series', the U-Net on a time x station
    image for station series (see unet.SeriesUNet); or 'dit', the diffusion transformer on
    space-time patches (see `dit`). The U-Nets share base_channels, channel_mult and
    blocks_per_level; emb_dim (the noise-level embedding) and climatology_input are shared by all."""

    arch: str = "unet"
    # unet and stunet
    base_channels: int = 32
    channel_mult: list[int] = field(default_factory=lambda: [1, 2, 2])
    blocks_per_level: int = 1
    # dit: tokens are patch_frames x patch_size x patch_size patches
    patch_size: int = 4
    patch_frames: int = 1
    depth: int = 4
    heads: int = 4
    hidden: int = 128
    emb_dim: int = 128
    # give the network each cell's mean over time of the values it may see (it cannot tell
    # where a tile lies otherwise); see batches.context_climatology
    climatology_input: bool = True
    # give the network the push-pull interpolation of each frame's context values (see
    # denoiser.push_pull_fill); off by default so that models written before it load unchanged
    prefill_input: bool = False
    # with prefill_input: the network's output is a correction added to alpha_t x the first
    # guess (the Gaussian shrinkage of the noisy context's fill), so that an untrained network
    # already fills like push-pull and training learns only what improves on it
    prefill_residual: bool = False
    # Jacobi sweeps per pyramid level that relax the first guess towards a Laplace fill
    # (denoiser.push_pull_fill); 0: the plain push-pull of models written before it
    prefill_sweeps: int = 0
    # then Jacobi sweeps over the 6 neighbours in time and space (denoiser.relax_in_time), so
    # that a gap takes the values before and after it, not only those beside it in its frame;
    # 0: per-frame first guesses only (grids; station series fill over time x stations anyway)
    prefill_time_sweeps: int = 0
    # 'auto': on data sampled several times a day, remove each cell's mean daily cycle (a few
    # harmonics fitted to its observed values, io.cycle) before training and imputing and add it
    # back after; 'off' (models written before it): the values as they are
    daily_cycle: str = "off"

    def __post_init__(self) -> None:
        _check(self.arch in ARCHS, f"network.arch '{self.arch}' is not known; use one of {', '.join(ARCHS)}")
        _check(self.base_channels >= 4, "network.base_channels must be at least 4")
        _check(len(self.channel_mult) >= 1 and all(int(m) >= 1 for m in self.channel_mult),
               "network.channel_mult must be a non-empty list of positive integers")
        _check(self.blocks_per_level >= 1, "network.blocks_per_level must be at least 1")
        _check(self.patch_size >= 1, "network.patch_size must be at least 1")
        _check(self.patch_frames >= 1, "network.patch_frames must be at least 1")
        _check(self.depth >= 1, "network.depth must be at least 1")
        _check(self.heads >= 1, "network.heads must be at least 1")
        _check(self.hidden >= 8 and self.hidden % 2 == 0, "network.hidden must be an even number, at least 8")
        _check(self.hidden % self.heads == 0,
               f"network.hidden ({self.hidden}) must be a multiple of network.heads ({self.heads})")
        _check(self.emb_dim >= 8, "network.emb_dim must be at least 8")
        _check(0 <= self.prefill_sweeps <= 64, "network.prefill_sweeps must be in 0..64")
        _check(0 <= self.prefill_time_sweeps <= 64, "network.prefill_time_sweeps must be in 0..64")
        _check(not self.prefill_residual or self.prefill_input,
               "network.prefill_residual needs network.prefill_input: true")
        _check(self.daily_cycle in ("auto", "off"),
               f"network.daily_cycle must be 'auto' or 'off', got '{self.daily_cycle}'")


@dataclass
class WindowConfig:
    """Space-time windows cut from the cube: frames x H x W (clipped to the cube's size)."""

    frames: int = 4
    height: int = 32
    width: int = 32
    overlap: float = 0.25  # fraction of a tile shared with its neighbour when imputing
    # above `frames`: training lengthens the window in time, in steps of `frames` up to this many,
    # until it spans the data's typical gap in time plus an observed step at each end
    # (`frames_for_gaps`); 0 keeps `frames`
    max_frames: int = 0

    def __post_init__(self) -> None:
        _check(self.frames >= 1, "window.frames must be at least 1")
        _check(self.max_frames == 0 or self.max_frames >= self.frames,
               "window.max_frames must be 0 (off) or at least window.frames")
        _check(self.height >= 4 and self.width >= 4, "window.height and window.width must be at least 4")
        _check(0.0 <= self.overlap < 1.0, "window.overlap must be in [0, 1)")


@dataclass
class MaskConfig:
    """The context/query strategy ([CQ] section 3.2, Principle 1).

    `context_ratio` is the fraction of observed cells kept as context; the query is either all
    observed cells subsampled by `query_ratio` ('observed') or the observed cells left out of the
    context ('rest'). context_ratio = query_ratio = 1 with query 'observed' is MissDiff."""

    pattern: str = "auto"
    context_ratio: float = 0.7
    query: str = "observed"
    query_ratio: float = 1.0
    block_sizes: list[int] = field(default_factory=lambda: [4, 8])

    def __post_init__(self) -> None:
        _check(self.pattern in MASK_PATTERNS,
               f"mask pattern '{self.pattern}' is not known; use one of {', '.join(MASK_PATTERNS)}")
        _check(0.0 < self.context_ratio <= 1.0, "mask.context_ratio must be in (0, 1]")
        _check(0.0 < self.query_ratio <= 1.0, "mask.query_ratio must be in (0, 1]")
        _check(self.query in QUERY_MODES, f"mask.query must be one of {', '.join(QUERY_MODES)}")
        _check(not (self.query == "rest" and self.context_ratio >= 1.0),
               "mask.query 'rest' needs mask.context_ratio < 1 (otherwise the query is empty)")
        _check(len(self.block_sizes) >= 1 and all(int(b) >= 1 for b in self.block_sizes),
               "mask.block_sizes must be a non-empty list of positive integers")

    @property
    def is_missdiff(self) -> bool:
        return self.context_ratio >= 1.0 and self.query == "observed" and self.query_ratio >= 1.0


@dataclass
class DiffusionConfig:
    """VP diffusion as in the authors' code: alpha_t = exp(-t^2 (b_max - b_min)/4 - t b_min/2)."""

    beta_min: float = 0.1
    beta_max: float = 20.0
    t_min: float = 1e-3
    # Fraction of training samples whose t is drawn log-uniformly in [t_min, 0.05] instead of
    # uniformly in [t_min, 1]: 0 is [CQ] Alg. 1 exactly; more favours the low-noise regime in
    # which the single-step point estimate (eq. 9-10, t = δ) is made.
    low_noise_fraction: float = 0.0
    # Min-SNR-γ loss weight (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR
    # Weighting Strategy", its x0-prediction form): each sample's loss is multiplied by
    # min(α_t²/σ_t², γ) / γ. None is [CQ] Alg. 1's unweighted loss. The weight leaves each noise
    # level's optimum (E[x0 | x_t, context]) where it is; it stops the high-noise samples, whose
    # loss is the field's whole variance and teaches little, from drowning the low-noise ones
    # in which the point estimate is made. Trained long on a short record, it also lets the
    # model learn that record's values (benchmarks/RESULTS.md, the uncertainty benchmark).
    min_snr_gamma: float | None = None

    def __post_init__(self) -> None:
        _check(0 < self.beta_min < self.beta_max, "diffusion.beta_min must be positive and below beta_max")
        _check(0 < self.t_min < 0.05, "diffusion.t_min must be in (0, 0.05)")
        _check(0 <= self.low_noise_fraction <= 1, "diffusion.low_noise_fraction must be in [0, 1]")
        self.min_snr_gamma = _optional_float(self.min_snr_gamma, lambda g: g > 0,
                                             "diffusion.min_snr_gamma must be a positive number or left out "
                                             "(the unweighted loss)")


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 8
    lr: float = 2e-3
    warmup: int = 100
    # the EMA's decay ramps up as (1 + step) / (10 + step) and is capped here: 0.995 is reached
    # after about 1800 steps, so a shorter run averages over its last ~150 steps whatever this is
    ema: float = 0.995
    checkpoint_every: int = 250
    seed: int = 0
    # Random symmetries of each training window (batches.augment_batch): "flip" mirrors it
    # left-right and up-down (and transposes a square window), "reverse_time" runs it backwards.
    # Only for fields whose statistics do not change under them (isotropic, time-reversible).
    augment: list[str] = field(default_factory=list)
    # classical fills blended with the network's estimate, weights fitted on the validation slice
    # per distance from the nearest observation (inference.blend); [] for the network alone.
    # Laplace only by default: kriging's weights fitted on the slice did not carry over to other
    # gap layouts (it conditions on a subset of the frame's cells, so its error follows the layout)
    blend: list[str] = field(default_factory=lambda: ["laplace"])
    # More steps for a larger record: with `passes` > 0, training runs at least the steps that put
    # each observed cell in about that many training windows on average (batch_size windows a
    # step), rounded up to checkpoint_every, from `steps` up to `max_steps` (steps_for_record)
    passes: float = 0
    max_steps: int = 0
    # A short record (at most two windows in time) trains this many models of consecutive seeds,
    # whose estimates imputation averages (training.members); 1: one model
    short_record_members: int = 1

    def __post_init__(self) -> None:
        _check(self.steps >= 1, "train.steps must be at least 1")
        _check(self.passes >= 0, "train.passes must be 0 (off) or positive")
        _check(self.passes == 0 or self.max_steps >= self.steps,
               "train.max_steps must be at least train.steps when train.passes is set")
        _check(self.batch_size >= 1, "train.batch_size must be at least 1")
        _check(isinstance(self.short_record_members, int) and self.short_record_members >= 1,
               "train.short_record_members must be a whole number, at least 1")
        _check(self.lr > 0, "train.lr must be positive")
        _check(self.warmup >= 0, "train.warmup must be >= 0")
        _check(0 <= self.ema < 1, "train.ema must be in [0, 1)")
        _check(self.checkpoint_every >= 1, "train.checkpoint_every must be at least 1")
        _check(isinstance(self.blend, list) and set(self.blend) <= set(BLEND_PARTNERS),
               f"train.blend must be a list of {', '.join(BLEND_PARTNERS)} (or empty), got {self.blend!r}")
        _check(isinstance(self.augment, list) and set(self.augment) <= set(AUGMENTATIONS),
               f"train.augment must be a list of {', '.join(AUGMENTATIONS)} (or empty), got {self.augment!r}")


@dataclass
class ImputeConfig:
    ensemble: int = 10  # K context masks averaged, [CQ] eq. 10
    delta: float = 1e-3  # noise level of the single step, [CQ] eq. 9
    batch_size: int = 16
    # multi-step sampler ([CQ] App. E, Alg. 4), used with --samples
    steps: int = 6  # solver steps from t = 1 to t = delta
    eta: float = 0.0  # 0: deterministic DDIM (the paper's DiffusionODE); 1: ancestral sampling
    omega: str = "1-t"  # weight on the diffusion expectation in eq. 28; see inference/solver.py
    # the step of the multi-step sampler: "ddim" (Alg. 4 line 6) or "dpm2m" (DPM-Solver++(2M),
    # second order, deterministic: eta 0). dpm2m at 6 steps scored a lower CRPS than ddim at 20
    # on a real file and the GP block cube (on GP pixel gaps 6 % higher), calibrated coverage
    # unchanged, at a third of the network calls (benchmarks/RESULTS.md, solvers)
    solver: str = "dpm2m"
    # the samples' tiles overlap less than the point estimate's (window.overlap): a tile holds the
    # cells earlier tiles sampled fixed, and a strip of an eighth of the window is enough for that
    # (CRPS and calibrated coverage unchanged on the GP cubes and tcw, fewer tiles)
    sample_overlap: float = 0.125
    # average the ensemble over the symmetries the model was trained under (train.augment;
    # model/symmetry.py): no extra cost, only for models trained with train.augment
    symmetric: bool = True
    # share of the observed cells each ensemble member sees as context; None (the default) is
    # [CQ] App. G.3: as dense as in training. A preset may set it (1: every observed cell) when
    # its model is known to do better so; `impute --context-ratio` overrides either.
    context_ratio: float | None = None
    # with 2 or more samples, move each gap cell's samples so that their mean is the point
    # estimate, their deviations from one another kept (inference.fill.recentre): a lower CRPS
    # at the same calibrated coverage on the GP cubes, the station record and the large cube
    # (benchmarks/RESULTS.md); false: the solver's draws as they come
    recentre: bool = True

    def __post_init__(self) -> None:
        self.context_ratio = _optional_float(self.context_ratio, lambda r: 0.0 < r <= 1.0,
                                             "impute.context_ratio must be a number in (0, 1] or left out")
        _check(self.steps >= 1, "impute.steps must be at least 1")
        _check(0.0 <= self.eta <= 1.0, "impute.eta must be in [0, 1]")
        _check(self.omega in ("1-t", "t"), f"impute.omega '{self.omega}' is not known; use '1-t' or 't'")
        _check(self.solver in SOLVERS, f"impute.solver '{self.solver}' is not known; use one of {', '.join(SOLVERS)}")
        _check(self.solver == "ddim" or self.eta == 0.0, "impute.solver dpm2m is deterministic; set impute.eta to 0, or impute.solver: ddim for ancestral steps")
        _check(self.ensemble >= 1, "impute.ensemble must be at least 1")
        _check(0.0 <= self.sample_overlap < 1.0, "impute.sample_overlap must be in [0, 1)")
        _check(0 < self.delta < 1, "impute.delta must be in (0, 1)")
        _check(self.batch_size >= 1, "impute.batch_size must be at least 1")
        _check(isinstance(self.symmetric, bool), f"impute.symmetric must be true or false, got {self.symmetric!r}")
        _check(isinstance(self.recentre, bool), f"impute.recentre must be true or false, got {self.recentre!r}")


@dataclass
class Preset:
    name: str = "custom"
    description: str = ""
    network: NetworkConfig = field(default_factory=NetworkConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    impute: ImputeConfig = field(default_factory=ImputeConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def from_dict(cls: type, data: Any, where: str = "preset") -> Any:
    """Build dataclass `cls` from a mapping, refusing unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ImputeError(f"{where} must be a mapping of keys to values, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ImputeError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}; "
                          f"allowed: {', '.join(known)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        f = known[name]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]
        if dataclasses.is_dataclass(default):
            kwargs[name] = from_dict(type(default), value, f"{where}.{name}")
        else:
            kwargs[name] = _coerce(value, default, f"{where}.{name}")
    try:
        return cls(**kwargs)
    except ImputeError as e:
        raise ImputeError(f"{where}: {e}") from None


def _coerce(value: Any, default: Any, where: str) -> Any:
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, list):
        item = type(default[0]) if default else object
        ok = isinstance(value, list) and all(isinstance(v, item) and not isinstance(v, bool) for v in value)
    else:
        ok = True
    if not ok:
        raise ImputeError(f"{where} must be of type {type(default).__name__}, got {value!r}")
    return value


AUTO_PRESET = "auto"  # the preset by the data's layout: see `preset_for`


def preset_for(name: str, is_series: bool) -> tuple[str, str | None]:
    """The preset to train: `name` itself, or for 'auto' the shipped preset that suits the data's
    layout -- 'series' for a time x station (or feature) file, 'quick' for a grid. Returns the
    name and, for 'auto', the sentence that says why."""
    if name != AUTO_PRESET:
        return name, None
    if is_series:
        return "series", "preset 'auto' chose 'series': the file holds station series (time x station)"
    return "quick", "preset 'auto' chose 'quick': the file holds a grid"


def preset_names() -> list[str]:
    return sorted(p.stem for p in _preset_dir().glob("*.yaml"))


def _preset_dir() -> Path:
    """presets/ of the checkout this package runs from, else the copy inside the installed
    wheel (shipped as the resource package impute_cli.presets)."""
    here = Path(__file__).resolve().parent
    checkout = here.parent / "presets"
    return checkout if checkout.is_dir() else here / "presets"


def load_preset(name_or_path: str) -> Preset:
    """A preset by name (presets/NAME.yaml) or by path to a YAML file."""
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.exists()):
        path = _preset_dir() / f"{name_or_path}.yaml"
    if not path.exists():
        raise OptionError(f"preset '{name_or_path}' not found; use one of "
                          f"{', '.join([AUTO_PRESET, *preset_names()])} or a path to a .yaml file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ImputeError(f"preset {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ImputeError(f"preset {path} must be a mapping of sections (network, window, mask, ...), "
                          f"not a {type(data).__name__}")
    data.setdefault("name", path.stem)
    return from_dict(Preset, data, f"preset {path.name}")


def models_home() -> Path:
    """Where models are written by default: $IMPUTE_CLI_MODELS, else ./models."""
    return Path(os.environ.get("IMPUTE_CLI_MODELS", "models"))


def steps_for_record(tc: TrainConfig, observed: float, window: tuple[int, int, int]) -> int:
    """Training steps for a record of `observed` cells (a channel's): enough for each to lie in
    about `tc.passes` training windows (tc.batch_size windows of F x h x w cells a step), rounded
    up to a multiple of tc.checkpoint_every, within [tc.steps, tc.max_steps]."""
    need = tc.passes * observed / (tc.batch_size * window[0] * window[1] * window[2])
    every = tc.checkpoint_every
    return int(min(tc.max_steps, max(tc.steps, math.ceil(need / every) * every)))
