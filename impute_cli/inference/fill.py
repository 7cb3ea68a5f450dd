"""fill: a model + an in-memory block of the cube -> its point estimate and samples.

`make_job` resolves once for the whole cube what every region needs (`FillJob`: the model, the
normalisation, climatology sums, gap pool and context density); `region_outputs` computes one
region's output variables (a Dask task: any worker may run it).

Point estimate ([CQ] §3.3): the region is cut into overlapping space-time tiles of the model's
window; each tile with a gap gets the ensemble single-step estimate (`ensemble`); overlaps are
blended with a taper (`io.tiling.blend_weights`); observed cells are put back from the input bit
for bit by the writer.

Samples ([CQ] App. E, `solver`) are not blended (averaging two independent draws would shrink
their spread): tiles are sampled in order, and the cells an earlier tile already sampled are held
fixed, as if observed, by the next one, so each sample is one coherent field within a region
(across a region's edge the draws are independent). Every tile draws from its own
seeded generator (`tile_generator`, `sampling.window_generator`), so the output does not depend on batch
sizes or on which worker runs a region."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import dask
import numpy as np
import torch

from impute_cli.checkpoint import ModelCard, build_denoiser
from impute_cli.config import SAMPLERS
from impute_cli.device import pick_device
from impute_cli.errors import ImputeError, OptionError
from impute_cli.inference.blend import Blend, apply_blend
from impute_cli.inference.ensemble import ensemble_single_step
from impute_cli.inference.sampling import draw_samples, members_per_call
from impute_cli.io.cube import Cube, wrap_columns
from impute_cli.io.cycle import DailyCycle, remove_cycle, with_cycle
from impute_cli.io.dataset import open_cube
from impute_cli.io.stats import Stats, Summary, refuse_inf, summarise
from impute_cli.io.tiling import Region, blend_weights, plan_tiles, tile_window, wrap_margin
from impute_cli.io.writer import output_arrays
from impute_cli.masks.context_query import ContextSampler
from impute_cli.masks.observation import pool_from_cube
from impute_cli.model.batches import denormalise, normalise, read_tiles
from impute_cli.options import FillOptions
from impute_cli.progress import progress_bar

@dataclass
class Filled:
    """What imputation gives, in data units: the estimate (T, C, H, W), samples (N, T, C, H, W)."""

    estimate: np.ndarray
    samples: np.ndarray | None = None
    sampling: dict | None = None  # how the samples were drawn, for the output's attributes


def tile_generator(seed: int, region: int, tile: int) -> torch.Generator:
    """The point estimate's context draws for tile `tile` of region `region`."""
    state = np.random.SeedSequence([seed, region, tile, 1_000_003]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


@dataclass(kw_only=True)
class FillJob:
    """Everything a region needs, resolved once for the whole cube and picklable, so that a
    Dask worker gets it once: the model (card and weights), the cube-wide figures of the
    streaming pass (normalisation, climatology sums, gap pool, test density), the sampling
    settings. The network and the opened cube are built on first use and kept on the job."""

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
    solver: str = "ddim"
    seed: int
    device: str
    progress: bool = False
    valid: np.ndarray | None = None  # (H, W) the fillable cells, as the planning process found them
    ratio_given: bool = False  # ratio is --context-ratio or the preset's impute.context_ratio (recorded with the samples)
    threads: int = field(default_factory=torch.get_num_threads)  # torch threads in every region (see region_outputs)
    cell_factors: dict[str, float] | None = None  # per variable: the intervals' calibration factor (writer.output_arrays)
    blend: Blend | None = None  # the model's blend with classical fills (inference.blend); None: the network alone
    fits: dict[str, list] | None = None  # the whole record's fits for the blend's fills, in every region (record_fits)
    student_weights: dict[str, torch.Tensor] | None = None  # the distilled sampler's, when samples come from it
    recentre: bool = False  # the samples' mean moved to the point estimate (`recentre`; 2 samples or more)
    cycle: DailyCycle | None = None  # the cube's daily cycle when the model fills anomalies (io.cycle)
    # the folder's further models (training.members), each with its own normalisation and blend:
    # their estimates are averaged with this one's; they draw no samples
    members: list["FillJob"] = field(default_factory=list)
    _cube: Cube | None = field(default=None, repr=False)
    _den: torch.nn.Module | None = field(default=None, repr=False)
    _student: torch.nn.Module | None = field(default=None, repr=False)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_cube"] = state["_den"] = state["_student"] = None  # rebuilt on the worker
        return state

    @property
    def cube(self) -> Cube:
        if self._cube is None:
            cube = open_cube(self.source, self.variables, self.static_mask, valid=self.valid,
                             covariates=list(self.card.covariates) if self.card else None)
            self._cube = cube if self.cycle is None else remove_cycle(cube, self.cycle)
        return self._cube

    def _network(self, weights: dict[str, torch.Tensor] | None, student: bool = False) -> torch.nn.Module:
        assert self.card is not None and weights is not None
        den = build_denoiser(self.card, student)
        den.net.load_state_dict(weights)
        return den.eval().to(pick_device(self.device))

    @property
    def denoiser(self) -> torch.nn.Module:
        if self._den is None:
            self._den = self._network(self.weights)
            self._den.student_weights = self.student_weights
        return self._den

    @property
    def student(self) -> torch.nn.Module:
        """The distilled sampler (inference.student), when samples come from it."""
        if self._student is None:
            self._student = self._network(self.student_weights, student=True)
        return self._student

    @property
    def context_sampler(self) -> ContextSampler:
        assert self.card is not None
        pattern = self.card.mask_strategy["pattern"]
        return ContextSampler(pattern, self.card.preset.mask.block_sizes, self.pool if pattern == "empirical" else None,
                              always=self.cube.context_only if self.card.covariates else None)

    def info(self) -> dict | None:
        """How the samples were drawn, for the output's attributes."""
        if not self.samples:
            return None
        if self.card is None:
            return {"samples": self.samples, "steps": 0, "note": "no gap: samples equal the input", "seed": self.seed}
        extra = {**({"blend": ",".join(self.blend.partners)} if self.blend else {}),
                 **({"models": 1 + len(self.members)} if self.members else {}), "recentred": int(self.recentre)}
        if self.student_weights is not None:
            return {"samples": self.samples, "sampler": "student", "steps": 1, "seed": self.seed, **extra}
        return {"samples": self.samples, "steps": self.steps, "eta": self.card.preset.impute.eta,
                "omega": self.omega, "ensemble": self.ensemble, "seed": self.seed,
                **({"context_ratio": self.ratio} if self.ratio_given else {}), "solver": self.solver, **extra}


def make_job(card: ModelCard | None, den: torch.nn.Module | None, cube: Cube, summary: Summary,
             opts: FillOptions, source: str = "", pool: np.ndarray | None = None) -> FillJob:
    """Resolve, once for the whole cube, what every region needs (see FillJob); `pool`: the gap
    shapes the context sampler borrows (default: the cube's own)."""
    T, H, W = cube.grid.shape
    if card is None:
        return FillJob(card=None, weights=None, source=source, variables=cube.variables,
                       static_mask=cube.static_mask_var, stats=None, sums=None, pool=None, ratio=1.0,
                       window=(min(T, 8), min(H, 64), min(W, 64)), samples=opts.samples or 0, steps=0,
                       ensemble=0, omega="", seed=opts.seed, device=opts.device, progress=opts.progress,
                       valid=cube.valid, _cube=cube)
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
    if (opts.solver or cfg.solver) == "dpm2m" and cfg.eta > 0:
        raise ImputeError(f"the dpm2m solver is deterministic but the model's preset sets impute.eta {cfg.eta:g}; "
                          "use --solver ddim")
    if opts.sampler not in SAMPLERS:
        raise OptionError(f"--sampler must be one of {', '.join(SAMPLERS)}, got '{opts.sampler}'")
    student = getattr(den, "student_weights", None) if opts.sampler != "full" and opts.samples else None
    if opts.sampler == "student" and opts.samples and student is None:
        raise ImputeError("the model has no distilled sampler, which --sampler student asks for; make one "
                          "with 'impute-cli distill MODEL' or use --sampler auto")
    recentre = (cfg.recentre if opts.recentre is None else opts.recentre) and (opts.samples or 0) >= 2
    chosen = opts.context_ratio if opts.context_ratio is not None else cfg.context_ratio
    if chosen is not None:  # the user's or the preset's choice, e.g. 1: every member sees every observed cell
        ratio = float(chosen)
    pool = pool_from_cube(cube, window[0]) if pool is None else pool  # once: the further models share it
    return FillJob(card=card, weights={k: v.detach().cpu() for k, v in den.net.state_dict().items()},
                   source=source, variables=cube.variables, static_mask=cube.static_mask_var, stats=stats,
                   sums=summary.climatology_sums(stats), pool=pool,
                   ratio=ratio, window=window, samples=opts.samples or 0, steps=opts.steps or cfg.steps,
                   ensemble=opts.ensemble or cfg.ensemble, omega=opts.omega or cfg.omega,
                   solver=opts.solver or cfg.solver, seed=opts.seed,
                   device=opts.device, progress=opts.progress, valid=cube.valid, ratio_given=chosen is not None,
                   blend=Blend.from_dict(card.blend) if card.blend and opts.blend else None, student_weights=student,
                   recentre=recentre,
                   members=[make_job(c, d, cube, summary, replace(opts, samples=None), source, pool)
                            for c, d in getattr(den, "members", [])],
                   _cube=cube, _den=den.eval().to(pick_device(opts.device)))


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
            filled = with_cycle(job.cycle, fill_region(job, region), region.core)
            return output_arrays(job.cube, filled.estimate, filled.samples, region.core, quantiles, save_samples,
                                 factors=job.cell_factors)
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
    sub = job.cube.in_memory(values, box.y, box.x)
    est, samples = _fill_box(job, sub, (box.y, box.x), region.index)
    est = est[rel[0], :, rel[1], rel[2]]
    if samples is not None:
        samples = samples[:, rel[0], :, rel[1], rel[2]]
    return Filled(est, samples)


def _fill_box(job: FillJob, cube: Cube, box: tuple[slice, slice],
              region: int) -> tuple[np.ndarray, np.ndarray | None]:
    """[CQ] §3.3 on an in-memory cube, the rows and columns `box` of the job's grid: the blended
    ensemble estimate of every tile with a gap, and with job.samples the samples of [CQ] Alg. 4
    (`sampling.draw_samples`). Data units. On a whole circle of longitude the network fills a
    cube widened by half a window from the other side (`Cube.wrapped`), so that cells at the
    east-west edge get context from across it as any other cell does; the margin is cut off
    again. A folder of several models (training.members): each model's blended estimate,
    averaged; the samples, drawn by the first model around the models' mean network estimate,
    move with the averaged estimate as they move with a blend. With job.recentre the samples'
    mean on the cells to fill is then moved onto the estimate (`recentre`)."""
    stats = job.stats
    assert stats is not None
    p = wrap_margin(cube.grid, job.window)
    work = cube.wrapped(p) if p else cube

    def cut(a: np.ndarray) -> np.ndarray:
        return a[..., p:-p] if p else a

    def sums(j: FillJob) -> tuple[np.ndarray, np.ndarray]:  # a model's climatology input over the box
        assert j.sums is not None
        return tuple(wrap_columns(s[:, box[0], box[1]], p) if p else s[:, box[0], box[1]] for s in j.sums)

    jobs = [job, *job.members]
    net = mean = blended = None  # normalised by the first model; data units, widened; data units
    for j in jobs:
        assert j.stats is not None
        e = _network_fill(j, j.denoiser, work, sums(j), region)
        b = denormalise(e, j.stats)
        mean = b if mean is None else mean + b
        b = cut(b)
        if j.blend is not None:  # the fitted blend with classical fills
            b = apply_blend(j.blend, b, cube.memory, cube.valid, workers=job.threads, wrap=p,
                            progress=job.progress, fits=job.fits, targets=cube.n_targets)
        net, blended = (e, b) if net is None else (net, blended + b)
    assert net is not None and mean is not None and blended is not None
    if job.members:
        mean, blended = mean / len(jobs), blended / len(jobs)
        net = normalise(mean, stats)
    samples = cut(draw_samples(job, work, net, sums(job), region)) if job.samples else None
    est = denormalise(cut(net), stats) if not job.members else cut(mean)
    shift = blended - est if job.blend is not None or job.members else None  # samples move with the estimate
    est = blended
    if samples is not None:
        for n in range(job.samples):  # in place, one member at a time
            samples[n] = denormalise(samples[n], stats)
            if shift is not None:
                samples[n] += shift
            samples[n][~np.broadcast_to(cube.valid[None, None], samples[n].shape)] = np.nan
        if job.recentre:
            recentre(samples, est, ~cube.observed(cube.memory) & cube.valid[None, None])
    return est, samples


def recentre(samples: np.ndarray, est: np.ndarray, gap: np.ndarray) -> None:
    """Move the samples (N, T, C, H, W), in place, so that on the cells `gap` (T, C, H, W) their
    mean is the point estimate `est`: x'_b = x_b - mean_b(x_b) + est, every member by the same
    field, so each keeps its deviation from the others and stays one coherent field. The
    multi-step sampler weighs its own noisy state more and more against the point estimate as
    it nears t = 0 (omega = 1 - t in [CQ] eq. 28), so its draws scatter around a mean of their
    own, further from the truth than the point estimate ([CQ] eq. 27's E_imp); ensemble data
    assimilation recentres its members on a deterministic analysis in the same way. The members'
    spread about their mean is as drawn, so about the estimate it is sqrt((N - 1) / N) of the
    sampler's (N samples): the calibration, drawing as many samples, takes that up. Cells where
    `est` is NaN are left as they are."""
    mean = samples.mean(axis=0, dtype=np.float64)
    shift = np.where(gap & np.isfinite(est) & np.isfinite(mean), est - mean, 0.0).astype(samples.dtype)
    del mean
    for x in samples:  # in place, one member at a time
        x += shift


def _network_fill(job: FillJob, den: torch.nn.Module, cube: Cube, sums: tuple[np.ndarray, np.ndarray],
                  region: int) -> np.ndarray:
    """The network `den`'s ensemble estimate of every tile with a gap, normalised."""
    card, stats = job.card, job.stats
    assert card is not None and stats is not None
    T, H, W = cube.grid.shape
    window = tile_window(job.window, (T, H, W))
    obs = cube.observed(cube.memory)
    gap = ~obs & cube.valid[None, None]
    device = next(den.parameters()).device
    cfg = card.preset.impute
    K = job.ensemble
    sampler = job.context_sampler
    tiles = [(i, tl) for i, tl in enumerate(plan_tiles((T, H, W), window, card.preset.window.overlap))
             if gap[tl.t, :, tl.y, tl.x].any()]  # a tile without a fillable gap changes nothing
    w = torch.from_numpy(blend_weights(window))[:, None]  # (F, 1, h, w)
    num = np.zeros(cube.memory.shape, "float32")
    den_w = np.zeros((T, 1, H, W), "float32")
    batch = members_per_call(window, cfg.batch_size)  # member windows through the network at once, across tiles
    per_batch = max(1, batch // K)
    bar = progress_bar(len(tiles), "point estimate", "tile", enabled=job.progress, leave=False)
    for i in range(0, len(tiles), per_batch):
        chunk = tiles[i:i + per_batch]
        b = read_tiles(cube, [tl for _, tl in chunk], stats, sums)
        gens = [tile_generator(job.seed, region, k) for k, _ in chunk]
        x = ensemble_single_step(den, b.x_obs.to(device), b.M.to(device), b.valid.to(device), sampler=sampler,
                                 ratio=job.ratio, K=K, delta=cfg.delta, generators=gens,
                                 batch_size=batch, sums=(b.S.to(device), b.N.to(device)),
                                 symmetric=card.preset.train.augment if cfg.symmetric else None).cpu()
        for (_, tl), xi in zip(chunk, x):
            num[tl.t, :, tl.y, tl.x] += (xi * w).numpy()
            den_w[tl.t, :, tl.y, tl.x] += w.numpy()
        bar.update(len(chunk))
    bar.close()
    est = np.divide(num, den_w, out=np.full_like(num, np.nan), where=den_w > 0)
    del num
    return est


def fill_cube(card: ModelCard, den: torch.nn.Module, cube: Cube, opts: FillOptions, record: Summary | None = None,
              pool: np.ndarray | None = None, fits: dict[str, list] | None = None) -> Filled:
    """The blended point estimate and, with opts.samples, the samples of an in-memory cube in one
    piece (evaluate, confidence --calibrate), in the cube's units (the caller adds a daily cycle
    back: io.cycle). `record`: the summary of the whole record when `cube` is a few time steps of
    it, so that the network gets the climatology input and context density ([CQ] App. G.3) of
    the whole record, `pool` its gap shapes for the samplers, `fits` its fits for the blend's
    fills (`blend.record_fits`); default: the cube's."""
    if cube.memory is None:
        cube.load()
    summary = summarise(cube)
    refuse_inf(summary.n_inf)
    if int(summary.gaps().sum()) == 0:
        raise ImputeError("the input has no gap to fill (every fillable cell is observed); nothing to do")
    job = make_job(card, den, cube, record or summary, opts, pool=pool)
    job.fits = fits  # None: the blend's fills fit this cube
    est, samples = _fill_box(job, cube, (slice(None), slice(None)), 0)
    return Filled(est, samples, job.info())
