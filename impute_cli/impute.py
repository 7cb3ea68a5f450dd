"""impute: a model + a gappy file -> the filled file (point estimate, [CQ] §3.3), and with
--samples N, N imputations by the multi-step sampler ([CQ] App. E) and their spread.

The cube is cut into overlapping space-time tiles of the model's window; each tile with a gap
gets the ensemble single-step estimate; overlaps are blended with a taper; observed cells are
put back from the input bit for bit; the result is written atomically.

Samples are not blended (averaging two independent draws would shrink their spread): tiles
are sampled in order, and the cells an earlier tile already sampled are held fixed, as if
observed, by the next one, so each sample is one coherent field within a region (the cube is
imputed region by region in bounded memory, see `windows.plan_regions`; across a region's edge
the draws are independent)."""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import dask
import dask.array as dsa
import numpy as np
import torch
from tqdm import tqdm

from .batches import denormalise, read_tiles
from .checkpoint import ModelCard, build_denoiser, load_model, resolve_model_dir
from .context_query import ContextSampler, pool_from_cube
from .dataset import Cube, Stats, Summary, open_cube, open_dataset, refuse_inf, summarise
from .device import pick_device
from .engine import REGION_KEY, check_scheduler_options, compute_engine
from .ensemble import ensemble_single_step
from .errors import ImputeError
from .sampler import OMEGAS, sample_window
from .train import TrainOptions, train_model
from .windows import Region, Tile, blend_weights, plan_regions, plan_tiles
from .writer import check_output_path, lazy_output, output_arrays, output_specs, write_atomic

GRID_SPACING_TOLERANCE = 0.01
REGION_BYTES = 512 * 1024**2


def cell_bytes(channels: int, samples: int, save_samples: bool) -> int:
    """Working memory per grid cell of a region: about 40 bytes a channel for the values, masks,
    blending sums, estimate and output variables, and per sample 16 (the samples, their copy
    per variable, the quantiles' sort) plus 4 more when they are written."""
    return channels * (40 + samples * (16 + (4 if save_samples else 0)))


@dataclass
class ImputeOptions:
    model: str | None = None
    variables: list[str] | None = None
    static_mask: str | None = None
    ensemble: int | None = None
    seed: int = 0
    device: str = "auto"
    overwrite: bool = False
    preset: str = "quick"  # for the model trained on the fly when no --model is given
    mask_pattern: str | None = None
    train_steps: int | None = None  # for the model trained on the fly
    samples: int | None = None  # N samples by the multi-step sampler; None: point estimate only
    steps: int | None = None  # sampler steps (default: the model's impute.steps)
    quantiles: tuple[float, float] | None = None  # V_lower/V_upper; default (0.05, 0.95)
    omega: str | None = None  # weight on E_diff in eq. 28 (default: the model's impute.omega)
    context_ratio: float | None = None  # share of observed cells a member sees; None: [CQ] App. G.3
    save_samples: bool = False
    history: str = "impute-cli impute"
    scheduler: str | None = None  # a Dask scheduler address: regions run on its workers
    workers: int | None = None  # a local Dask cluster of this many worker processes
    region_bytes: int = REGION_BYTES  # working memory of one region (see windows.plan_regions)
    progress: bool = True
    log: Callable[[str], None] = field(default=lambda s: print(s, file=sys.stderr))


def check_compatible(card: ModelCard, cube: Cube) -> None:
    """Refuse a model trained on other variables, units or grid spacing."""
    if (card.grid.get("y_dim") is None) != cube.grid.is_series:
        def kind(series: bool) -> str:
            return "a station/feature series (time x station)" if series else "a lat/lon grid"
        raise ImputeError(f"the model was trained on {kind(card.grid.get('y_dim') is None)} but this file is "
                          f"{kind(cube.grid.is_series)}; train a model on this file")
    if card.channels != cube.channels:
        raise ImputeError(f"the model was trained on {', '.join(card.channels)} but this file gives "
                          f"{', '.join(cube.channels)}; use a model for these variables or pass --var")
    for c, (u_model, u_here) in enumerate(zip(card.units, cube.units)):
        if u_model != u_here:
            raise ImputeError(f"'{cube.channels[c]}' is in '{u_here}' here but the model was trained on "
                              f"'{u_model}'; convert the units or train a model on this file")
    g = card.grid
    for dim, vals, first_last, n in (("y", cube.grid.y_values, g["y_first_last"], g["shape"][1]),
                                     ("x", cube.grid.x_values, g["x_first_last"], g["shape"][2])):
        if n < 2 or len(vals) < 2:
            continue
        d_model = (first_last[1] - first_last[0]) / (n - 1)
        d_here = (vals[-1] - vals[0]) / (len(vals) - 1)
        if abs(abs(d_here) - abs(d_model)) <= GRID_SPACING_TOLERANCE * abs(d_model) and d_here * d_model < 0:
            raise ImputeError(f"the {dim} axis runs the other way here than in the model's training grid "
                              f"(step {d_here:g} vs {d_model:g}); flip it (e.g. cdo invertlat) or train a model on this file")
        if abs(d_here - d_model) > GRID_SPACING_TOLERANCE * abs(d_model):
            raise ImputeError(f"grid spacing along {dim} is {d_here:g} here but {d_model:g} in the model's "
                              "training grid; regrid the file or train a model on it")


@dataclass
class Filled:
    """What imputation gives, in data units: the point estimate (T, C, H, W) and, with samples,
    the N samples (N, T, C, H, W) (NaN outside the static mask)."""

    estimate: np.ndarray
    samples: np.ndarray | None = None
    sampler: dict | None = None  # how the samples were drawn, for the output's attributes


def member_generator(seed: int, tile: int, member: int, region: int = 0) -> torch.Generator:
    """Member `member` of tile `tile` of region `region`: its own random stream, whatever the
    batch size and whichever worker runs the region."""
    state = np.random.SeedSequence([seed, region, tile, member]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def tile_generator(seed: int, region: int, tile: int) -> torch.Generator:
    """The point estimate's context draws for tile `tile` of region `region`."""
    state = np.random.SeedSequence([seed, region, tile, 1_000_003]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


@dataclass
class FillJob:
    """Everything a region needs, resolved once for the whole cube and picklable, so that a
    Dask worker gets it once: the model (card and weights), the cube-wide figures of the
    streaming pass (normalisation, climatology sums, gap pool, test density), and the sampler
    settings. The network and the opened cube are built on first use and kept on the job, so
    each worker builds them once and reuses them for every region it runs."""

    card: ModelCard | None  # None: no gap anywhere, the output is the input
    weights: dict[str, torch.Tensor] | None
    source: str  # the input file, opened again by a worker
    variables: list[str]
    static_mask: str | None
    stats: Stats | None
    sums: tuple[np.ndarray, np.ndarray] | None  # (C, H, W) climatology sums, normalised units
    pool: np.ndarray | None  # (T', H, W) real gap shapes for the empirical context sampler
    ratio: float  # [CQ] App. G.3 context rescaling at this test density, or the user's --context-ratio
    window: tuple[int, int, int]
    samples: int
    steps: int
    ensemble: int
    omega: str
    seed: int
    device: str
    progress: bool = False
    valid: np.ndarray | None = None  # (H, W) the fillable cells, as the planning process found them
    ratio_given: bool = False  # ratio is --context-ratio or the preset's impute.context_ratio (recorded with the samples)
    threads: int = field(default_factory=torch.get_num_threads)  # torch threads in every region (see region_outputs)
    _cube: Cube | None = field(default=None, repr=False)
    _den: torch.nn.Module | None = field(default=None, repr=False)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_cube"] = state["_den"] = None  # rebuilt on the worker
        return state

    @property
    def cube(self) -> Cube:
        if self._cube is None:
            self._cube = open_cube(self.source, self.variables, self.static_mask, valid=self.valid)
        return self._cube

    @property
    def denoiser(self) -> torch.nn.Module:
        if self._den is None:
            assert self.card is not None and self.weights is not None
            den = build_denoiser(self.card)
            den.net.load_state_dict(self.weights)
            self._den = den.eval().to(pick_device(self.device))
        return self._den

    @property
    def sampler(self) -> ContextSampler:
        assert self.card is not None
        pattern = self.card.mask_strategy["pattern"]
        return ContextSampler(pattern, self.card.preset.mask.block_sizes, self.pool if pattern == "empirical" else None)

    def info(self) -> dict | None:
        """How the samples were drawn, for the output's attributes."""
        if not self.samples:
            return None
        if self.card is None:
            return {"samples": self.samples, "steps": 0, "note": "no gap: samples equal the input", "seed": self.seed}
        return {"samples": self.samples, "steps": self.steps, "eta": self.card.preset.impute.eta,
                "omega": self.omega, "ensemble": self.ensemble, "seed": self.seed,
                **({"context_ratio": self.ratio} if self.ratio_given else {})}


def make_job(card: ModelCard | None, den: torch.nn.Module | None, cube: Cube, summary: Summary,
             opts: ImputeOptions, source: str = "") -> FillJob:
    """Resolve, once for the whole cube, what every region needs (see FillJob)."""
    T, H, W = cube.grid.shape
    if card is None:
        return FillJob(None, None, source, cube.variables, cube.static_mask_var, None, None, None, 1.0,
                       (min(T, 8), min(H, 64), min(W, 64)), opts.samples or 0, 0, 0, "", opts.seed, opts.device, opts.progress, valid=cube.valid, _cube=cube)
    window = tuple(card.window)
    if any(w > n for w, n in zip(window, (T, H, W))):
        window = tuple(min(w, n) for w, n in zip(window, (T, H, W)))
        if window[0] != card.window[0]:
            raise ImputeError(f"the model needs windows of {card.window[0]} time steps but the file has {T}; "
                              "train a model with fewer frames (window.frames) on this file")
    stats = Stats(tuple(card.normalisation["mean"]), tuple(card.normalisation["std"]),
                  card.normalisation["observed_fraction"])
    # [CQ] App. G.3: keep the network's input density as in training when the test density differs.
    ratio = min(1.0, card.mask_strategy["context_input_fraction"] / max(summary.observed_fraction, 1e-6))
    if card.mask_strategy.get("missdiff"):
        ratio = 1.0
    cfg = card.preset.impute
    chosen = opts.context_ratio if opts.context_ratio is not None else cfg.context_ratio
    if chosen is not None:  # the user's or the preset's choice, e.g. 1: every member sees every observed cell
        ratio = float(chosen)
    return FillJob(card, {k: v.detach().cpu() for k, v in den.net.state_dict().items()}, source, cube.variables,
                   cube.static_mask_var, stats, summary.climatology_sums(stats), pool_from_cube(cube, window[0]),
                   ratio, window, opts.samples or 0, opts.steps or cfg.steps, opts.ensemble or cfg.ensemble,
                   opts.omega or cfg.omega, opts.seed, opts.device, opts.progress, valid=cube.valid,
                   ratio_given=chosen is not None,
                   _cube=cube, _den=den.eval().to(pick_device(opts.device)))


def _sub_cube(cube: Cube, values: np.ndarray, box: Tile) -> Cube:
    """The values of `box` as an in-memory cube of their own (tiles then index it from 0)."""
    grid = dataclasses.replace(cube.grid, shape=values.shape[:1] + values.shape[2:])
    return dataclasses.replace(cube, data=dsa.from_array(values, chunks=-1), memory=values, obs_mask=None,
                               valid=cube.valid[box.y, box.x], grid=grid)


def region_outputs(job: FillJob, region: Region, quantiles: tuple[float, float],
                   save_samples: bool) -> dict[str, np.ndarray]:
    """The output variables over one region's core (a Dask task: any worker may run it).

    Torch runs with the thread count of the process that planned the job: CPU kernels split
    their sums by thread, so another count changes the last bits, and a region must come out
    the same on every worker."""
    prev = torch.get_num_threads()
    torch.set_num_threads(job.threads)
    try:
        with dask.config.set(scheduler="synchronous"):  # reads inside a task stay in this task
            filled = fill_region(job, region)
            return output_arrays(job.cube, filled.estimate, filled.samples, region.core, quantiles, save_samples)
    finally:
        torch.set_num_threads(prev)


def fill_region(job: FillJob, region: Region) -> Filled:
    """The point estimate and samples of one region's core, in data units (C channel layout):
    the region's outer box is read and imputed as a cube of its own, then cut to the core."""
    box, core = region.outer, region.core
    values = job.cube.read(box.t, box.y, box.x)
    rel = tuple(slice(c.start - o.start, c.stop - o.start) for c, o in zip((core.t, core.y, core.x),
                                                                          (box.t, box.y, box.x)))
    if job.card is None:  # nothing to fill anywhere: the estimate is the input
        v = values[rel[0], :, rel[1], rel[2]]
        return Filled(v, np.broadcast_to(v, (job.samples, *v.shape)) if job.samples else None)
    sub = _sub_cube(job.cube, values, box)
    sums = tuple(s[:, box.y, box.x] for s in job.sums)
    est, samples = _fill_box(job, sub, sums, region.index)
    est = est[rel[0], :, rel[1], rel[2]]
    if samples is not None:
        samples = samples[:, rel[0], :, rel[1], rel[2]]
    return Filled(est, samples)


def _fill_box(job: FillJob, cube: Cube, sums: tuple[np.ndarray, np.ndarray],
              region: int) -> tuple[np.ndarray, np.ndarray | None]:
    """[CQ] §3.3 on an in-memory cube: the blended ensemble estimate of every tile with a gap,
    and with job.samples the samples of [CQ] Alg. 4 (see draw_samples). Data units."""
    card, den, stats = job.card, job.denoiser, job.stats
    assert card is not None and stats is not None
    T, H, W = cube.grid.shape
    window = tuple(min(a, b) for a, b in zip(job.window, (T, H, W)))
    obs = cube.observed(cube.memory)
    gap = ~obs & cube.valid[None, None]
    device = next(den.parameters()).device
    cfg = card.preset.impute
    K = job.ensemble
    sampler = job.sampler
    tiles = [(i, tl) for i, tl in enumerate(plan_tiles((T, H, W), window, card.preset.window.overlap))
             if gap[tl.t, :, tl.y, tl.x].any()]  # a tile without a fillable gap changes nothing
    w = torch.from_numpy(blend_weights(window))[:, None]  # (F, 1, h, w)
    num = np.zeros(cube.memory.shape, "float32")
    den_w = np.zeros((T, 1, H, W), "float32")
    per_batch = max(1, cfg.batch_size // K)
    bar = tqdm(total=len(tiles), desc="impute", file=sys.stderr, disable=not job.progress, dynamic_ncols=True)
    for i in range(0, len(tiles), per_batch):
        chunk = tiles[i:i + per_batch]
        b = read_tiles(cube, [tl for _, tl in chunk], stats, sums)
        gens = [tile_generator(job.seed, region, k) for k, _ in chunk]
        x = ensemble_single_step(den, b.x_obs.to(device), b.M.to(device), b.valid.to(device), sampler=sampler,
                                 ratio=job.ratio, K=K, delta=cfg.delta, generators=gens,
                                 batch_size=cfg.batch_size, sums=(b.S.to(device), b.N.to(device)),
                                 symmetric=card.preset.train.augment if cfg.symmetric else None).cpu()
        for (_, tl), xi in zip(chunk, x):
            num[tl.t, :, tl.y, tl.x] += (xi * w).numpy()
            den_w[tl.t, :, tl.y, tl.x] += w.numpy()
        bar.update(len(chunk))
    bar.close()
    est = np.divide(num, den_w, out=np.full_like(num, np.nan), where=den_w > 0)
    del num
    samples = None
    if job.samples:
        samples = draw_samples(job, cube, est, sums, region)
        for n in range(job.samples):  # in place, one member at a time
            samples[n] = denormalise(samples[n], stats)
            samples[n][~np.broadcast_to(cube.valid[None, None], samples[n].shape)] = np.nan
    return denormalise(est, stats), samples


def fill_cube(card: ModelCard, den: torch.nn.Module, cube: Cube, opts: ImputeOptions,
              record: Summary | None = None) -> Filled:
    """The blended point estimate for every cell and, with opts.samples, the samples, of an
    in-memory cube in one piece (evaluate, confidence --calibrate, benchmarks). `record`: the
    summary of the whole record when `cube` is a few time steps cut from it, so that the network
    gets the climatology input and the context density ([CQ] App. G.3) that imputing the whole
    record gives; default: the cube's own."""
    if cube.memory is None:
        cube.load()
    summary = summarise(cube)
    refuse_inf(summary.n_inf)
    if int(summary.gaps().sum()) == 0:
        raise ImputeError("the input has no gap to fill (every fillable cell is observed); nothing to do")
    job = make_job(card, den, cube, record or summary, opts)
    est, samples = _fill_box(job, cube, job.sums, 0)
    return Filled(est, samples, job.info())


def sampling_window(window: tuple[int, int, int], grid: tuple[int, int, int]) -> tuple[int, int, int]:
    """The tile for sampling: the model's frames, and the whole of a spatial dim when it is at
    most half as long again as the window (a convolutional or patch network takes any size), so
    that the last tile is not a near-copy of the previous one."""
    f, h, w = window
    _, H, W = grid
    return f, (H if H <= 1.5 * h else h), (W if W <= 1.5 * w else w)


def draw_samples(job: FillJob, cube: Cube, est: np.ndarray, sums: tuple[np.ndarray, np.ndarray],
                 region: int) -> np.ndarray:
    """(N, T, C, H, W) samples of an in-memory cube in normalised units ([CQ] Alg. 4 per tile,
    see sample_window).

    Tiles are visited in order; a tile's cells sampled by an earlier tile are held fixed with
    each member's values. E_imp of a tile is the blended point estimate `est` there."""
    card, den, stats = job.card, job.denoiser, job.stats
    assert card is not None and stats is not None
    cfg = card.preset.impute
    N = job.samples
    T, H, W = cube.grid.shape
    device = next(den.parameters()).device
    window = sampling_window(tuple(min(a, b) for a, b in zip(job.window, (T, H, W))), (T, H, W))
    gap = ~cube.observed(cube.memory) & cube.valid[None, None]
    tiles = [(i, tl) for i, tl in enumerate(plan_tiles((T, H, W), window, card.preset.window.overlap))
             if gap[tl.t, :, tl.y, tl.x].any()]
    samples = np.zeros((N, *cube.memory.shape), "float32")
    done = np.zeros((T, 1, H, W), bool)  # cells some tile has already sampled
    members = min(N, max(cfg.batch_size, 64))  # members of one tile go through the network together
    sampler = job.sampler
    pool = job.pool if job.pool is not None else np.ones((1, H, W), bool)
    bar = tqdm(total=len(tiles), desc=f"sample x{N}", file=sys.stderr, disable=not job.progress, dynamic_ncols=True)
    for i, tl in tiles:
        b = read_tiles(cube, [tl], stats, sums)
        e = est[tl.t, :, tl.y, tl.x]
        x_imp = torch.from_numpy(np.where(np.isfinite(e), e, b.x_obs[0].numpy()))
        fixed = torch.from_numpy(np.broadcast_to(done[tl.t, :, tl.y, tl.x], b.M[0].shape).copy()) & ~b.M[0]
        new = sample_window(
            den, b.x_obs[0].to(device), b.M[0].to(device), b.valid[0].to(device), x_imp.to(device),
            sampler=sampler, pool=pool, train_ratio=card.preset.mask.context_ratio, steps=job.steps,
            delta=cfg.delta, eta=cfg.eta, omega_kind=job.omega,
            generators=[member_generator(job.seed, i, m, region) for m in range(N)], batch_size=members,
            sums=(b.S[0].to(device), b.N[0].to(device)), fixed=fixed.to(device),
            fixed_values=torch.from_numpy(samples[:, tl.t, :, tl.y, tl.x]))
        keep = done[tl.t, :, tl.y, tl.x]
        samples[:, tl.t, :, tl.y, tl.x] = np.where(keep[None], samples[:, tl.t, :, tl.y, tl.x], new.numpy())
        done[tl.t, :, tl.y, tl.x] = True
        bar.update(1)
    bar.close()
    return samples


def parse_quantiles(text: str) -> tuple[float, float]:
    """'0.05,0.95' -> (0.05, 0.95), checked."""
    try:
        lo, hi = (float(p) for p in text.split(","))
    except ValueError:
        raise ImputeError(f"--quantiles must be two probabilities LOW,HIGH such as 0.05,0.95, got '{text}'") from None
    if not 0 < lo < hi < 1:
        raise ImputeError(f"--quantiles must satisfy 0 < LOW < HIGH < 1, got '{text}'")
    return lo, hi


def check_sampling_options(opts: ImputeOptions) -> None:
    if opts.samples is not None and opts.samples < 1:
        raise ImputeError(f"--samples must be at least 1 (e.g. --samples 64), got {opts.samples}")
    if opts.samples is None and (opts.save_samples or opts.steps is not None or opts.omega is not None
                                 or opts.quantiles is not None):
        raise ImputeError("--save-samples, --steps, --omega and --quantiles are for sampling; add --samples N")
    if opts.omega is not None and opts.omega not in OMEGAS:
        raise ImputeError(f"--omega must be one of {', '.join(OMEGAS)}, got '{opts.omega}'")
    if opts.steps is not None and opts.steps < 1:
        raise ImputeError(f"--steps must be at least 1, got {opts.steps}")
    check_context_ratio(opts.context_ratio)


def check_context_ratio(ratio: float | None) -> None:
    if ratio is not None and not 0 < ratio <= 1:
        raise ImputeError(f"--context-ratio must be in (0, 1] (1: every observed cell as context), got {ratio}")


def impute_file(inp: str | Path, out: str | Path, opts: ImputeOptions) -> Path:
    """Fill the gaps of INP and write OUT, region by region in bounded memory (see `plan`);
    trains a quick model on INP first without --model. A file with no gap to fill is copied
    through (V_filled = V, zero spread) with a notice."""
    check_output_path(out, inp, opts.overwrite)
    check_sampling_options(opts)
    check_scheduler_options(opts)
    pick_device(opts.device)  # an unknown or absent device is refused before anything is read
    ds = open_dataset(inp)
    card = den = None
    if opts.model:  # the model's variables and static mask unless the user names others (then they must match)
        card, den = load_model(opts.model)
        variables = opts.variables or (card.variables if set(card.variables) <= set(ds.data_vars) else None)
        cube = open_cube(inp, variables, opts.static_mask or card.static_mask_var, ds=ds)
        check_compatible(card, cube)
    else:
        cube = open_cube(inp, opts.variables, opts.static_mask, ds=ds)
    cube.load()  # small cubes are read once; large ones stay lazy and are read region by region
    summary = summarise(cube)  # one streaming pass: sums, counts, Inf
    refuse_inf(summary.n_inf)
    gaps = summary.gaps()
    with tempfile.TemporaryDirectory(prefix="impute-cli-model-") as tmp:
        if not gaps.any():
            opts.log("notice: the input has no gap to fill (every fillable cell is observed); "
                     "writing it through unchanged")
            card = den = None
        elif card is None:
            opts.log(f"no --model given: training a '{opts.preset}' model on {inp} itself first "
                     "(the method needs no complete data)")
            model = train_model(inp, TrainOptions(preset=opts.preset, mask_pattern=opts.mask_pattern,
                                                  steps=opts.train_steps, out=Path(tmp) / "model",
                                                  variables=cube.variables, static_mask=cube.static_mask_var,
                                                  device=opts.device, seed=opts.seed,
                                                  progress=opts.progress, log=opts.log))
            card, den = load_model(model)
        job = make_job(card, den, cube, summary, dataclasses.replace(opts, progress=False),
                       source=str(Path(inp).resolve()))
    sampler = job.info()
    if sampler is not None:
        sampler["model"] = str(resolve_model_dir(opts.model)) if opts.model else "trained on the fly (not kept)"
    plan = plan_regions(cube.grid.shape, job.window, cell_bytes(len(cube.channels), job.samples, opts.save_samples),
                        opts.region_bytes)
    quantiles = opts.quantiles or (0.05, 0.95)
    # One task per region, all reading the one job (shipped once to each Dask worker).
    # A name of its own for each run, so that two runs on a shared scheduler never share a task
    # (the file's layout does not depend on task names: see writer._write_netcdf).
    name = f"{REGION_KEY}-{uuid.uuid4().hex}"
    job_d = dask.delayed(job, name=f"impute-job-{name[-12:]}", traverse=False)  # never look inside (its cube is lazy)
    regions = plan.regions()
    parts = [dask.delayed(region_outputs, pure=True)(job_d, r, quantiles, opts.save_samples, dask_key_name=(name, r.index))
             for r in regions]
    ds = lazy_output(cube, plan, parts, opts.history, sampler=sampler, quantiles=quantiles,
                     save_samples=opts.save_samples)
    with compute_engine(opts.scheduler, opts.workers, len(regions), name, opts.progress, opts.log,
                        job.threads) as run:
        write_atomic(ds, out, opts.overwrite, compute=run,
                     together=[s.name for s in output_specs(cube, sampler, quantiles, opts.save_samples)])
    c0 = [c for c, (v, _) in enumerate(cube.channel_sel) if v == cube.variables[0]]
    n = int(gaps[c0].sum())
    opts.log(f"wrote {out}: {n} cells of {cube.variables[0]} imputed"
             + (f" (and {len(cube.variables) - 1} more variables)" if len(cube.variables) > 1 else ""))
    return Path(out)
