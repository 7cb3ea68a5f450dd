"""train: [CQ] Algorithm 1 -- a conditional diffusion model trained on incomplete data only.

Per batch: draw t ~ U(t_min, 1) and ε; noise the observed cells, x_obs,t = M ⊙ (α_t x_obs + σ_t ε)
(Alg. 1 line 4); draw M_ctx, M_qry ⊆ M with the structure of the gaps (line 5, Principle 1);
predict x̂ = x_θ(t, M_ctx ⊙ x_obs,t, M_ctx) (line 6); loss ‖M_qry ⊙ (x̂ − x_obs)‖² (line 7).
No complete sample is ever used."""

from __future__ import annotations

import copy
import dataclasses
import math
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from impute_cli.model.batches import TileBatch, context_climatology, tile_batch
from impute_cli.model.symmetry import augment_batch
from impute_cli.options import FillOptions, TrainOptions, check_context_ratio
from impute_cli.checkpoint import (CARD, TRAIN_STATE, ModelCard, build_denoiser, load_state, remove_cut_writes, save_model,
                         save_state)
from impute_cli.config import AUTO_PRESET, Preset, from_dict, load_preset, models_home, preset_for, steps_for_record
from impute_cli.masks.context_query import ContextSampler, query_mask
from impute_cli.masks.observation import choose_pattern, gap_run_length, pool_from_cube
from impute_cli.io.cube import Cube, wrap_columns
from impute_cli.io.cycle import daily_cycle, remove_cycle
from impute_cli.io.dataset import open_cube
from impute_cli.io.stats import Stats, Summary, summarise
from impute_cli.device import autocast, pick_device, use_threads
from impute_cli.progress import progress_bar
from impute_cli import store
from impute_cli.errors import ImputeError
from impute_cli.training.distributed import Ranks
from impute_cli.training.loss import draw_t, per_cell_loss
from impute_cli.training.members import train_folder
from impute_cli.training.validation import (Watch, default_patience, fit_validation_blend, model_estimates, score_model,
                                            summary_line, validation_set, with_blend)
from impute_cli.io.tiling import frames_for_gaps, random_tile, window_shape, wrap_margin
from impute_cli.io.writer import utc_stamp

MIN_OBSERVED = 0.02  # windows with fewer observed cells than this are redrawn


def resolve_preset(opts: TrainOptions) -> Preset:
    """The preset with the command-line overrides applied (and re-checked)."""
    check_context_ratio(opts.context_ratio)  # named as the option, not as the preset key it sets
    p = load_preset(opts.preset)
    mask = p.mask
    over = {k: v for k, v in (("pattern", opts.mask_pattern), ("context_ratio", opts.context_ratio),
                              ("query", opts.query), ("query_ratio", opts.query_ratio),
                              ("block_sizes", opts.block_sizes)) if v is not None and v != []}
    if over:
        mask = replace(mask, **over)
    train = p.train
    if opts.steps is not None:  # the user's steps, whatever the record's size
        train = replace(train, steps=opts.steps, passes=0)
    if opts.seed is not None:
        train = replace(train, seed=opts.seed)
    return replace(p, mask=mask, train=train)


def sample_batch(cube: Cube, stats: Stats, window: tuple[int, int, int], n: int, rng: np.random.Generator,
                 sums: tuple[np.ndarray, np.ndarray]) -> TileBatch:
    """n random windows with enough observed cells (after 20 tries, the last one drawn). Each
    window is read once, lazily: its observed fraction comes from its own values, so no mask of
    the whole cube is ever held."""
    tiles, raws = [], []
    for _ in range(n):
        for _attempt in range(20):
            tile = random_tile(cube.grid.shape, window, rng)
            raw = cube.read(tile.t, tile.y, tile.x)
            if cube.observed(raw, tile.y, tile.x).mean() >= MIN_OBSERVED:
                break
        tiles.append(tile)
        raws.append(raw)
    return tile_batch(cube, tiles, raws, stats, sums)


def summarise_ranks(cube: Cube, ranks: Ranks) -> Summary:
    """The cube's `Summary`; under torchrun each rank reads its share of the time steps and
    the sums are added up, so the streaming pass takes 1/K of the time and every rank ends
    with the same bits."""
    if not ranks.distributed:
        return summarise(cube)
    T = cube.grid.shape[0]
    lo, hi = T * ranks.rank // ranks.world_size, T * (ranks.rank + 1) // ranks.world_size
    part = summarise(dataclasses.replace(cube, data=cube.data[lo:hi]))
    n_inf = int(ranks.sum(np.array([part.n_inf], "int64"))[0])
    return dataclasses.replace(part, S=ranks.sum(part.S), N=ranks.sum(part.N), s2=ranks.sum(part.s2),
                               n_inf=n_inf, T=T)


def lr_at(step: int, preset: Preset) -> float:
    """Linear warm-up, then cosine decay to 10 % of the peak."""
    tc = preset.train
    if step < tc.warmup:
        return tc.lr * (step + 1) / tc.warmup
    prog = (step - tc.warmup) / max(1, tc.steps - tc.warmup)
    return tc.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(prog, 1.0))))


def train_model(data: str | Path, opts: TrainOptions) -> Path:
    """Train on the file's observed cells and write a model folder; returns its path.

    Under `torchrun --nproc-per-node K` the K processes train one model with
    DistributedDataParallel (see `distributed`): each draws its own windows, ceil(batch_size / K) a
    step, gradients are averaged, and rank 0 alone writes the folder and talks to the user."""
    if opts.preset != AUTO_PRESET:
        resolve_preset(opts)  # a bad preset or override is reported before anything starts
    ranks = Ranks.from_env(pick_device(opts.device))
    try:
        why, lazy = None, open_cube(data, opts.variables, opts.static_mask, covariates=opts.covariates)  # no data read
        if opts.preset == AUTO_PRESET:  # the preset that suits the file's layout
            name, why = preset_for(opts.preset, lazy.grid.is_series)
            opts = dataclasses.replace(opts, preset=name)
        preset = resolve_preset(opts)
        use_threads(opts.threads)
        out = Path(opts.out) if opts.out else models_home() / f"{Path(str(data).rstrip('/')).stem}-{preset.name}"
        if opts.fingerprint is None and ranks.main:  # `impute` without --model then finds it in the store
            opts = dataclasses.replace(opts, fingerprint=store.training_fingerprint(data, opts, preset, out))
        return train_folder(dataclasses.replace(opts, out=out), preset, (lazy.channels, lazy.grid.shape[0]), ranks,
                            lambda o, said: _train(data, o, preset, ranks, (why, *said) if why else said),
                            lambda o: _train(data, o, resolve_preset(o), ranks))
    finally:
        ranks.close()


def train_for(data: str | Path, cube: Cube, opts: FillOptions, out: Path, overwrite: bool = False,
              fingerprint: str | None = None) -> Path:
    """The model that `impute` and `evaluate` train first when no model is given: the options'
    preset, context strategy and training steps, on the cube's variables and static mask."""
    return train_model(data, TrainOptions(preset=opts.preset, mask_pattern=opts.mask_pattern, steps=opts.train_steps,
                                          out=out, overwrite=overwrite, variables=cube.variables, fingerprint=fingerprint,
                                          static_mask=cube.static_mask_var, covariates=list(cube.covariates),
                                          device=opts.device, seed=opts.seed,
                                          progress=opts.progress, log=opts.log))


def _train(data: str | Path, opts: TrainOptions, preset: Preset, ranks: Ranks, chosen: tuple[str, ...] = ()) -> Path:
    log = opts.log if ranks.main else _silent
    cube = open_cube(data, opts.variables, opts.static_mask, covariates=opts.covariates)
    out = Path(opts.out) if opts.out else models_home() / f"{Path(str(data).rstrip('/')).stem}-{preset.name}"
    _check_out(out, opts)
    if (line := cube.static_mask_line()) is not None:
        log(line)
    state = load_state(out / TRAIN_STATE) if opts.resume else None
    ranks.barrier()  # every rank has looked at the folder before rank 0 changes it
    if opts.resume and ranks.main:  # a write cut short by a kill leaves its temporary file
        remove_cut_writes(out)
    if state is not None:  # the resumed run keeps its own resolved config (steps may be raised)
        preset = from_dict(Preset, state["preset"], f"{out / TRAIN_STATE} preset")
        if opts.steps is not None:
            preset = replace(preset, train=replace(preset.train, steps=opts.steps))
    cycle = daily_cycle(cube, preset.network.daily_cycle, log)  # sub-daily data: the network fills anomalies
    if cycle is not None:
        cube = remove_cycle(cube, cycle)
    # One streaming pass gives the normalisation, the climatology input and the observed
    # fraction; nothing of the size of the cube is held unless `load` finds it small.
    summary = summarise_ranks(cube, ranks)
    stats = summary.stats(cube.channels)
    cube.load()
    sums = summary.climatology_sums(stats)
    window = window_shape(cube.grid.shape, preset.window.frames, preset.window.height, preset.window.width)
    if preset.network.arch == "series" and not cube.grid.is_series:
        raise ImputeError(f"the preset '{preset.name}' has the series network, for station series (time x station), "
                          "but this file holds a grid; use --preset quick (or another grid preset)")

    for line in chosen if state is None else ():  # said once the data are checked: an error stays one line
        log(line)
    pool = None
    if state is None and preset.window.max_frames > preset.window.frames:  # a window long enough for the gaps
        pool = pool_from_cube(cube, preset.window.max_frames)
        run = gap_run_length(pool, cube.valid)
        frames = frames_for_gaps(preset.window.frames, preset.window.max_frames, run)
        preset = replace(preset, window=replace(preset.window, frames=frames))
        log(f"window: {min(frames, cube.grid.shape[0])} frames (the data's missing cells lie in runs of "
            f"{run:g} missing time steps, median)")
        window = window_shape(cube.grid.shape, frames, preset.window.height, preset.window.width)
    # Step 0: the context/query strategy that matches the gap pattern ([CQ] Principle 1).
    if state is not None:  # the resumed run keeps the strategy it chose
        requested, reason = state["mask_requested"], state["mask_reason"]
        pattern = preset.mask.pattern
        if state["channels"] != cube.channels:
            raise ImputeError(f"the training in {out} is on {', '.join(state['channels'])}, this file gives "
                              f"{', '.join(cube.channels)}; resume on the same data (and --var)")
    elif (requested := preset.mask.pattern) == "auto":
        pool = pool_from_cube(cube, window[0]) if pool is None else pool
        pattern, reason = choose_pattern(pool, cube.valid)
        log(f"mask pattern 'auto' chose '{pattern}': {reason}")
    else:
        pattern, reason = requested, "chosen by the user"
    preset = replace(preset, mask=replace(preset.mask, pattern=pattern))
    if pattern == "empirical" and pool is None:
        pool = pool_from_cube(cube, window[0])
    sampler = ContextSampler(pattern, preset.mask.block_sizes, pool if pattern == "empirical" else None,
                             always=cube.context_only if cube.covariates else None)
    vs = validation_set(cube, stats, window, preset, opts, ranks, log, cycle)
    if vs is not None:  # the held-out cells are gone from the data, its climatology and normalisation
        cube = cube.in_memory(vs.hide(cube.memory))
        summary = summarise(cube)
        stats = summary.stats(cube.channels)
        sums = summary.climatology_sums(stats)
    if state is None and preset.train.passes > 0:  # a larger record gets more steps
        observed = float(summary.N[:cube.n_targets].sum()) / cube.n_targets
        steps = steps_for_record(preset.train, observed, window)
        log(f"training steps: {steps} ({observed:,.0f} observed cells a variable, each in about "
            f"{preset.train.passes:g} training windows; from {preset.train.steps} up to {preset.train.max_steps})")
        preset = replace(preset, train=replace(preset.train, steps=steps))

    if state is None and ranks.main:  # only now, with the data checked, is the model folder (re)made
        if out.exists() and opts.overwrite:
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
    ranks.barrier()  # no rank goes on while rank 0 is making the folder
    device = ranks.device
    with torch.random.fork_rng(devices=[]):  # initial weights from --seed, not torch's global RNG
        torch.manual_seed(preset.train.seed)
        den = build_denoiser(_card_stub(preset, cube, window)).to(device)
    ema = copy.deepcopy(den).eval()
    for p_ in ema.parameters():
        p_.requires_grad_(False)
    # foreach: one kernel per step for all parameters (on CPU torch otherwise loops over them)
    opt = torch.optim.AdamW(den.parameters(), lr=preset.train.lr, weight_decay=0.0, foreach=True)
    params, ema_params = list(den.parameters()), list(ema.parameters())
    start, loss_avg, seconds = 0, None, 0.0
    if state is not None:
        den.net.load_state_dict(state["net"])
        ema.net.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        start, loss_avg, seconds = int(state["step"]), float(state["loss_avg"]), float(state["seconds"])
        log(f"resuming from step {start} of {preset.train.steps} ({out / TRAIN_STATE})")
        if (before := int(state.get("world_size", 1))) != ranks.world_size:
            log(f"the checkpoint was written by {before} process(es), this run has {ranks.world_size}: "
                "training goes on, but draws other windows than an uninterrupted run would")
    model = _parallel(den, ranks)
    card = _card_stub(preset, cube, window)
    card.fingerprint = opts.fingerprint
    card.normalisation = stats.to_dict()
    if cycle is not None:
        card.normalisation["daily_cycle"] = cycle.describe()
    card.mask_strategy = {"requested": requested, "pattern": pattern, "reason": reason,
                          "context_ratio": preset.mask.context_ratio, "query": preset.mask.query,
                          "query_ratio": preset.mask.query_ratio, "missdiff": preset.mask.is_missdiff,
                          # fraction of fillable cells the network sees as context ([CQ] App. G.3)
                          "context_input_fraction": summary.observed_fraction * preset.mask.context_ratio}
    patience = default_patience(preset.train.steps, preset.train.checkpoint_every) if opts.patience is None \
        else opts.patience
    watch = Watch.resume(state, patience)

    tc = preset.train
    windows_from, window_sums = cube, sums
    if (p := wrap_margin(cube.grid, window)):  # a whole circle of longitude: windows cross its east-west edge
        windows_from, window_sums = cube.wrapped(p), tuple(wrap_columns(s_, p) for s_ in sums)
        log("longitude wraps around (the grid is a whole circle): windows cross its east-west edge")
    per_rank = -(-tc.batch_size // ranks.world_size)  # the global batch stays the preset's (or just above)
    schedule = den.schedule
    bar = progress_bar(tc.steps, "train", "step", enabled=opts.progress and ranks.main, initial=start)
    t_begin = time.perf_counter()
    for step in range(start, tc.steps):
        rng = np.random.default_rng(step_seed(tc.seed, step, ranks))
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        b = augment_batch(sample_batch(windows_from, stats, window, per_rank, rng, window_sums), preset.train.augment,
                          rng)
        x_obs, M, valid = b.x_obs.to(device), b.M.to(device), b.valid.to(device)
        B = x_obs.shape[0]
        # Alg. 1 line 3: t ~ U(t_min, 1), ε ~ N(0, I)
        t = draw_t(B, preset, gen).to(device)
        eps = torch.randn(x_obs.shape, generator=gen).to(device)
        a, s = schedule.alpha(t)[:, None, None, None, None], schedule.sigma(t)[:, None, None, None, None]
        # Alg. 1 line 4: x_obs,t = M ⊙ (α_t x_obs + σ_t ε)
        x_t = M * (a * x_obs + s * eps)
        # Alg. 1 line 5: M_ctx, M_qry ⊆ M, sampled to satisfy Principle 1
        M_ctx = sampler(M, preset.mask.context_ratio, gen)
        M_qry = query_mask(M, M_ctx, preset.mask, gen)
        if cube.covariates:  # a covariate is context only: never a query
            M_qry[:, :, torch.from_numpy(cube.context_only)] = False
        # Alg. 1 line 6: x̂ = x_θ(t, M_ctx ⊙ x_obs,t, M_ctx)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, preset)
        clim = context_climatology(b.S.to(device), b.N.to(device), x_obs, M, M_ctx)
        with autocast(device, train=True):
            x_hat = model(x_t, M_ctx, valid, t, clim)
        # Alg. 1 line 7: per-cell loss, reduced over query cells only (each sample weighted
        # by min(SNR_t, γ) / γ when the preset asks for Min-SNR-γ; otherwise by 1)
        per_cell = per_cell_loss(x_hat, x_obs, a, s, preset.diffusion.min_snr_gamma)
        loss = (per_cell * M_qry).sum() / M_qry.sum().clamp(min=1)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # under DDP the gradients arrive averaged over the ranks
        torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
        opt.step()
        decay = min(tc.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1 - decay)
        lv = ranks.mean(float(loss.detach()))  # every rank keeps the same running loss
        loss_avg = lv if loss_avg is None else 0.98 * loss_avg + 0.02 * lv
        bar.update(1)
        done = step + 1
        stop = False
        if vs is not None and (done % tc.checkpoint_every == 0 or done == tc.steps):
            # score the EMA weights on the held-out cells; keep the best, stop when they stop improving
            stop = watch.update(done, score_model(vs, card, ema, cube, summary), ema)
        bar.set_postfix(loss=f"{loss_avg:.4f}", **watch.postfix())
        if ranks.main and (done % tc.checkpoint_every == 0 or done == tc.steps or stop):
            save_state(out / TRAIN_STATE, {"net": den.net.state_dict(), "ema": ema.net.state_dict(),
                                           "opt": opt.state_dict(), "step": done, "preset": preset.to_dict(),
                                           "channels": cube.channels, "mask_requested": requested,
                                           "mask_reason": reason, "loss_avg": loss_avg,
                                           "seconds": seconds + time.perf_counter() - t_begin,
                                           "world_size": ranks.world_size, "validation": watch.state()})
        if stop:
            log(f"validation: no improvement in {patience} checks; stopping at step {done} "
                f"(best at step {watch.best_step})")
            break
    bar.close()
    seconds += time.perf_counter() - t_begin
    steps_done = done if start < tc.steps else start
    card.training = {"data": str(Path(data).resolve() if Path(str(data)).exists() else data), "steps": steps_done,
                     "final_loss": loss_avg, "seconds": round(seconds, 1), "device": str(device), "world_size": ranks.world_size,
                     "finished": utc_stamp(), **({"steps_planned": tc.steps} if steps_done < tc.steps else {})}
    weights = {k: v.detach().cpu() for k, v in ema.net.state_dict().items()}
    if vs is not None and watch.best is not None:
        weights = watch.best_weights
        card.validation = watch.card(vs)
        if preset.train.blend:
            est = watch.best_estimates
            if est is None:  # resumed past the best check: its estimates are not in the checkpoint
                ema.net.load_state_dict(weights)
                est = model_estimates(vs, card, ema, cube, summary)
            blend, report = fit_validation_blend(vs, est, cube.valid, preset.train.blend, preset.train.seed)
            if blend is not None:
                card.blend = blend.to_dict()
                card.validation = with_blend(card.validation, vs, report)
            log(f"blend: {'network with ' + ', '.join(blend.partners) if blend else 'the network alone'} "
                f"(held-out RMSE {report['blend_rmse']:.4f} vs the network's {report['network_rmse']:.4f}, "
                "normalised, cross-fitted)" + "".join(f"; left out: {w}" for w in report["left_out"]))
    if ranks.main:
        save_model(out, card, weights)
        best = f", weights of step {watch.best_step} kept" if card.validation and watch.best_step != steps_done else ""
        log(f"model written to {out} ({steps_done} steps, last loss {loss_avg:.4f}{best}, {seconds:.0f} s on {device}"
            + (f", {ranks.world_size} processes" if ranks.distributed else "") + ")")
        if card.validation:
            log(summary_line(card.validation))
    ranks.barrier()  # the model is whole before any rank returns
    return out


def step_seed(seed: int, step: int, ranks: Ranks) -> list[int]:
    """The seed of one step's draws: a resumed run draws exactly what an uninterrupted one
    would, and under torchrun each rank draws its own windows (one process keeps the seeds
    it always had, so its models do not change)."""
    return [seed, step] if not ranks.distributed else [seed, step, ranks.rank]


def _parallel(den: torch.nn.Module, ranks: Ranks) -> torch.nn.Module:
    """The module the training step calls: DDP around the denoiser under torchrun (it averages
    the gradients in backward), the denoiser itself otherwise."""
    if not ranks.distributed:
        return den
    from torch.nn.parallel import DistributedDataParallel
    ids = [ranks.device.index] if ranks.device.type == "cuda" else None
    return DistributedDataParallel(den, device_ids=ids)


def _silent(_msg: str) -> None:
    """The log of ranks other than 0: one voice per job."""


def _card_stub(preset: Preset, cube: Cube, window: tuple[int, int, int]) -> ModelCard:
    return ModelCard(preset=preset, variables=cube.variables, channels=cube.channels, units=cube.units,
                     grid=cube.grid.describe(), window=list(window), normalisation={}, mask_strategy={},
                     training={}, static_mask_var=cube.static_mask_var, covariates=list(cube.covariates))


def _check_out(out: Path, opts: TrainOptions) -> None:
    if opts.resume:
        if not (out / TRAIN_STATE).exists():
            raise ImputeError(f"nothing to resume: {out / TRAIN_STATE} does not exist; drop --resume")
        return
    if out.exists() and not out.is_dir():
        raise ImputeError(f"'{out}' is a file; give a folder for the model with --out")
    if out.exists() and any(out.iterdir()):
        is_model = (out / CARD).exists() or (out / TRAIN_STATE).exists()
        if not is_model:  # --overwrite never deletes a folder that is not a model
            raise ImputeError(f"'{out}' is a folder that is not an impute-cli model and is not empty; "
                              "give --out a new or empty folder")
        if not opts.overwrite:
            what = "a model" if (out / CARD).exists() else "an unfinished training"
            raise ImputeError(f"'{out}' already holds {what}; use --resume to continue it, --overwrite "
                              "to replace it, or --out for another folder")
