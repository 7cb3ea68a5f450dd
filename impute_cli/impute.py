"""impute: a model + a gappy file -> the filled file (point estimate, [CQ] §3.3), and with
--samples N, N imputations by the multi-step sampler ([CQ] App. E) and their spread.

The cube is cut into overlapping space-time tiles of the model's window; each tile with a gap
gets the ensemble single-step estimate; overlaps are blended with a taper; observed cells are
put back from the input bit for bit; the result is written atomically.

Samples are not blended (averaging two independent draws would shrink their spread): tiles
are sampled in order, and the cells an earlier tile already sampled are held fixed, as if
observed, by the next one, so each sample is one coherent field."""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from .batches import climatology_sums, denormalise, read_tiles
from .checkpoint import ModelCard, load_model, resolve_model_dir
from .context_query import ContextSampler, observation_pool
from .dataset import Cube, Stats, observation_masks, open_cube, open_dataset, refuse_inf
from .device import pick_device
from .ensemble import ensemble_single_step
from .sampler import OMEGAS, sample_window
from .errors import ImputeError
from .train import TrainOptions, train_model
from .windows import blend_weights, plan_tiles
from .writer import build_output, check_output_path, write_atomic

GRID_SPACING_TOLERANCE = 0.01


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
    save_samples: bool = False
    history: str = "impute-cli impute"
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


def member_generator(seed: int, tile: int, member: int) -> torch.Generator:
    """Member `member` of tile `tile`: its own random stream, whatever the batch size."""
    state = np.random.SeedSequence([seed, tile, member]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def fill_cube(card: ModelCard, den: torch.nn.Module, cube: Cube, opts: ImputeOptions) -> Filled:
    """The blended point estimate for every cell and, with opts.samples, the samples."""
    stats = Stats(tuple(card.normalisation["mean"]), tuple(card.normalisation["std"]),
                  card.normalisation["observed_fraction"])
    window = tuple(card.window)
    T, H, W = cube.grid.shape
    if any(w > n for w, n in zip(window, (T, H, W))):
        window = tuple(min(w, n) for w, n in zip(window, (T, H, W)))
        if window[0] != card.window[0]:
            raise ImputeError(f"the model needs windows of {card.window[0]} time steps but the file has {T}; "
                              "train a model with fewer frames (window.frames) on this file")
    refuse_inf(int(np.isinf(cube.data).sum().compute()))
    obs = observation_masks(cube)
    fillable_gaps = int((~obs & cube.valid[None, None]).sum())
    if fillable_gaps == 0:
        raise ImputeError("the input has no gap to fill (every fillable cell is observed); nothing to do")
    pattern = card.mask_strategy["pattern"]
    pool = observation_pool(obs, cube.valid)
    sampler = ContextSampler(pattern, card.preset.mask.block_sizes, pool if pattern == "empirical" else None)
    # [CQ] App. G.3: keep the network's input density as in training when the test density differs.
    r_test = float(obs.mean(axis=(0, 1))[cube.valid].mean())
    ratio = min(1.0, card.mask_strategy["context_input_fraction"] / max(r_test, 1e-6))
    if card.mask_strategy.get("missdiff"):
        ratio = 1.0
    device = pick_device(opts.device)
    den = den.to(device)
    cfg = card.preset.impute
    K = opts.ensemble or cfg.ensemble
    N = opts.samples or 0
    steps = opts.steps or cfg.steps
    tiles = [tl for tl in plan_tiles((T, H, W), window, card.preset.window.overlap)
             if not obs[tl.t, :, tl.y, tl.x].all()]  # a tile without gaps changes nothing
    w = torch.from_numpy(blend_weights(window))[:, None]  # (F, 1, h, w)
    num = np.zeros(cube.data.shape, "float32")
    den_w = np.zeros((T, 1, H, W), "float32")
    per_batch = max(1, cfg.batch_size // K)
    sums = climatology_sums(cube, stats)
    bar = tqdm(total=len(tiles), desc="impute", file=sys.stderr,
               disable=not opts.progress, dynamic_ncols=True)
    for i in range(0, len(tiles), per_batch):
        chunk = tiles[i:i + per_batch]
        b = read_tiles(cube, chunk, stats, sums)
        gens = [torch.Generator().manual_seed(opts.seed * 1_000_003 + i + j) for j in range(len(chunk))]
        x = ensemble_single_step(den, b.x_obs.to(device), b.M.to(device), b.valid.to(device), sampler=sampler,
                                 ratio=ratio, K=K, delta=cfg.delta, generators=gens,
                                 batch_size=cfg.batch_size, sums=(b.S.to(device), b.N.to(device))).cpu()
        for tl, xi in zip(chunk, x):
            num[tl.t, :, tl.y, tl.x] += (xi * w).numpy()
            den_w[tl.t, :, tl.y, tl.x] += w.numpy()
        bar.update(len(chunk))
    bar.close()
    est = np.divide(num, den_w, out=np.full_like(num, np.nan), where=den_w > 0)
    samples = None
    if N:
        samples = draw_samples(card, den, cube, est, stats, sums, sampler, pool, obs, opts, steps)
        for n in range(N):  # in place, one member at a time
            samples[n] = denormalise(samples[n], stats)
            samples[n][~np.broadcast_to(cube.valid[None, None], samples[n].shape)] = np.nan
    info = {"samples": N, "steps": steps, "eta": cfg.eta, "omega": opts.omega or cfg.omega, "ensemble": K,
            "seed": opts.seed} if N else None
    return Filled(denormalise(est, stats), samples, info)


def sampling_window(window: tuple[int, int, int], grid: tuple[int, int, int]) -> tuple[int, int, int]:
    """The tile for sampling: the model's frames, and the whole of a spatial dim when it is at
    most half as long again as the window (a convolutional or patch network takes any size), so
    that the last tile is not a near-copy of the previous one."""
    f, h, w = window
    _, H, W = grid
    return f, (H if H <= 1.5 * h else h), (W if W <= 1.5 * w else w)


def draw_samples(card: ModelCard, den: torch.nn.Module, cube: Cube, est: np.ndarray, stats: Stats,
                 sums: tuple[np.ndarray, np.ndarray], sampler: ContextSampler, pool: np.ndarray, obs: np.ndarray,
                 opts: ImputeOptions, steps: int) -> np.ndarray:
    """(N, T, C, H, W) samples in normalised units ([CQ] Alg. 4 per tile, see sample_window).

    Tiles are visited in order; a tile's cells sampled by an earlier tile are held fixed with
    each member's values. E_imp of a tile is the blended point estimate `est` there."""
    cfg = card.preset.impute
    N = opts.samples or 0
    T, H, W = cube.grid.shape
    device = next(den.parameters()).device
    window = sampling_window(tuple(min(a, b) for a, b in zip(card.window, (T, H, W))), (T, H, W))
    tiles = [tl for tl in plan_tiles((T, H, W), window, card.preset.window.overlap)
             if not obs[tl.t, :, tl.y, tl.x].all()]
    samples = np.zeros((N, *cube.data.shape), "float32")
    done = np.zeros((T, 1, H, W), bool)  # cells some tile has already sampled
    members = min(N, max(cfg.batch_size, 64))  # members of one tile go through the network together
    bar = tqdm(total=len(tiles), desc=f"sample x{N}", file=sys.stderr, disable=not opts.progress, dynamic_ncols=True)
    for i, tl in enumerate(tiles):
        b = read_tiles(cube, [tl], stats, sums)
        e = est[tl.t, :, tl.y, tl.x]
        x_imp = torch.from_numpy(np.where(np.isfinite(e), e, b.x_obs[0].numpy()))
        fixed = torch.from_numpy(np.broadcast_to(done[tl.t, :, tl.y, tl.x], b.M[0].shape).copy()) & ~b.M[0]
        new = sample_window(
            den, b.x_obs[0].to(device), b.M[0].to(device), b.valid[0].to(device), x_imp.to(device),
            sampler=sampler, pool=pool, train_ratio=card.preset.mask.context_ratio, steps=steps,
            delta=cfg.delta, eta=cfg.eta, omega_kind=opts.omega or cfg.omega,
            generators=[member_generator(opts.seed, i, m) for m in range(N)], batch_size=members,
            sums=(b.S[0].to(device), b.N[0].to(device)), fixed=fixed.to(device),
            fixed_values=torch.from_numpy(samples[:, tl.t, :, tl.y, tl.x]))
        keep = done[tl.t, :, tl.y, tl.x]
        samples[:, tl.t, :, tl.y, tl.x] = np.where(keep[None], samples[:, tl.t, :, tl.y, tl.x], new.numpy())
        done[tl.t, :, tl.y, tl.x] = True
        bar.update(1)
    bar.close()
    return samples


def _copy_through(cube: Cube, opts: ImputeOptions) -> Filled:
    """No fillable gap: the output is the input (and N identical samples, zero spread)."""
    opts.log("notice: the input has no gap to fill (every fillable cell is observed); "
             "writing it through unchanged")
    values = cube.memory if cube.memory is not None else np.asarray(cube.data.compute())
    refuse_inf(int(np.isinf(values).sum()))
    N = opts.samples or 0
    samples = np.broadcast_to(values, (N, *values.shape)) if N else None
    info = {"samples": N, "steps": 0, "note": "no gap: samples equal the input", "seed": opts.seed} if N else None
    return Filled(values, samples, info)


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


def impute_file(inp: str | Path, out: str | Path, opts: ImputeOptions) -> Path:
    """Fill the gaps of INP and write OUT; trains a quick model on INP first without --model.
    A file with no gap to fill is copied through (V_filled = V, zero spread) with a notice."""
    check_output_path(out, inp, opts.overwrite)
    check_sampling_options(opts)
    ds = open_dataset(inp)
    card = den = None
    if opts.model:  # the model's variables and static mask unless the user names others (then they must match)
        card, den = load_model(opts.model)
        variables = opts.variables or (card.variables if set(card.variables) <= set(ds.data_vars) else None)
        cube = open_cube(inp, variables, opts.static_mask or card.static_mask_var, ds=ds)
        check_compatible(card, cube)
    else:
        cube = open_cube(inp, opts.variables, opts.static_mask, ds=ds)
    cube.load()
    if not (~observation_masks(cube) & cube.valid[None, None]).any():
        filled = _copy_through(cube, opts)
    else:
        if card is None:
            with tempfile.TemporaryDirectory(prefix="impute-cli-model-") as tmp:
                opts.log(f"no --model given: training a '{opts.preset}' model on {inp} itself first "
                         "(the method needs no complete data)")
                model = train_model(inp, TrainOptions(preset=opts.preset, mask_pattern=opts.mask_pattern,
                                                      steps=opts.train_steps, out=Path(tmp) / "model",
                                                      variables=cube.variables, static_mask=cube.static_mask_var,
                                                      device=opts.device, seed=opts.seed,
                                                      progress=opts.progress, log=opts.log))
                card, den = load_model(model)
        filled = fill_cube(card, den, cube, opts)
    if filled.sampler is not None:
        filled.sampler["model"] = str(resolve_model_dir(opts.model)) if opts.model else "trained on the fly (not kept)"
    ds = build_output(cube, filled.estimate, opts.history, samples=filled.samples, sampler=filled.sampler,
                      quantiles=opts.quantiles or (0.05, 0.95), save_samples=opts.save_samples)
    write_atomic(ds, out, opts.overwrite)
    n = int(((ds[f"{cube.variables[0]}_imputed_flag"] == 1).sum()))
    opts.log(f"wrote {out}: {n} cells of {cube.variables[0]} imputed"
             + (f" (and {len(cube.variables) - 1} more variables)" if len(cube.variables) > 1 else ""))
    return Path(out)
