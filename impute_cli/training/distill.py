"""distill: a model's multi-step sampler -> a student that draws a sample in one network call.

What we follow. Knowledge distillation of an iterative sampler into a one-step generator (Luhman &
Luhman 2021, "Knowledge Distillation in Iterative Generative Models for Improved Sampling Speed")
fits the student to the teacher's output for the same starting noise by least squares. Here the
teacher's sample is not a function of its starting noise alone -- every step of [CQ] Alg. 4 also
draws a random context mask (eq. 26) -- so a least-squares student would learn the mean over
those draws and lose part of the spread. We fit the student with a proper scoring rule instead,
the energy score (Gneiting & Raftery 2007; used to train few-step generators by
De Bortoli et al. 2025, "Distributional Diffusion Models with Scoring Rules"), whose expected
value is smallest when the student's samples have the teacher's distribution:

  ES(P, y) = E‖S − y‖ − ½ E‖S − S'‖,   S, S' ~ P independent, y a teacher sample,

estimated with two student draws for each frame of a window (one time step of its cells), the
norm taken over the frame's cells to fill (scaled by 1/sqrt(their number)) and the scores averaged
over frames. A norm over a whole window's thousands of cells is dominated by the error of the mean
and hardly tells a cell's spread apart (students so fitted drew intervals far too narrow); over a
frame it keeps the joint structure of a time step, which `confidence`'s regions use. Per step:

  1. draw windows of the training record, as `train` does (their own gaps are the cells to fill;
     where they have few, as in a gap-free reanalysis, the context sampler hides some: `known_cells`);
  2. the teacher's point estimate E_imp ([CQ] eq. 9-10, the model's impute settings) and one
     teacher sample per window by the model's multi-step sampler (Alg. 4, its default solver
     and steps), every observed cell known;
  3. two student samples per window from independent noise (inference.student);
  4. one AdamW step on the energy score; the student's weights are an EMA of the steps.

The student is by default a U-Net of half the teacher's width (`student_width`: about half the
time a call), trained afresh: for its first MEAN_FIRST share of steps it learns the teacher's
point estimate (step 2 without the sample; least squares on the cells to fill, from both draws),
which a copy of the teacher would start with, then the energy score as above. With the teacher's
own width it starts as a copy of the teacher's network and goes straight to the energy score.
It is written to the model folder as student.pt, the card's `student` saying how it was made
(`network`: the fields that differ from the teacher's); `impute --samples N` then uses it
(`--sampler full`: the teacher's sampler)."""

from __future__ import annotations

import copy
import hashlib
import time
from pathlib import Path

import numpy as np
import torch

from impute_cli.checkpoint import (
    DISTILL_STATE,
    STUDENT,
    WEIGHTS,
    ModelCard,
    build_denoiser,
    load_model,
    load_state,
    remove_cut_writes,
    resolve_model_dir,
    save_card,
    save_state,
)
from impute_cli.device import autocast, pick_device, use_threads
from impute_cli.errors import ImputeError, OptionError
from impute_cli.inference.ensemble import ensemble_single_step
from impute_cli.inference.loading import check_compatible
from impute_cli.inference.solver import sample_windows
from impute_cli.inference.student import student_call
from impute_cli.io.cycle import cycle_for_model, remove_cycle
from impute_cli.io.dataset import open_cube
from impute_cli.io.stats import Stats, summarise
from impute_cli.io.writer import utc_stamp
from impute_cli.masks.context_query import ContextSampler
from impute_cli.masks.observation import pool_from_cube
from impute_cli.model.batches import context_climatology
from impute_cli.options import DistillOptions
from impute_cli.progress import progress_bar
from impute_cli.training.train import sample_batch

EMA = 0.99
WARMUP = 50
LR_COPY, STEPS_COPY = 2e-4, 1000  # a student that starts as the teacher's copy: fine-tuning
LR_FRESH, STEPS_FRESH = 1e-3, 1500  # a narrower student trained afresh
MEAN_FIRST = 0.5  # a student trained afresh spends this share of its steps learning the teacher's point estimate
CHECKPOINT_EVERY = 100  # steps between checkpoints of an unfinished distillation (distill --resume)
MIN_FILL = 0.1  # a window with fewer gaps than this share of its fillable cells gets some hidden


def energy_score(s1: torch.Tensor, s2: torch.Tensor, y: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Mean over frames of the energy score of two student draws against the teacher's sample,
    each norm over one frame's cells to fill (`fill`: its C x h x w cells of one time step),
    scaled by 1/sqrt(their number); frames with nothing to fill are left out. Shapes
    (B, F, C, h, w)."""
    f = fill.to(s1.dtype)
    n = f.flatten(2).sum(2)  # (B, F): cells to fill per frame

    def dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.sqrt((((a - b) ** 2) * f).flatten(2).sum(2) / n.clamp(min=1) + 1e-8)

    es = 0.5 * (dist(s1, y) + dist(s2, y)) - 0.5 * dist(s1, s2)
    keep = n > 0
    return es[keep].mean() if bool(keep.any()) else es.sum() * 0.0


def known_cells(M: torch.Tensor, valid: torch.Tensor, x_obs: torch.Tensor, S: torch.Tensor, N: torch.Tensor,
                sampler: ContextSampler, ratio: float, gen: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The cells the teacher and the student know in each window, and the climatology sums
    without the others: every observed cell, as at imputation, where the window's own gaps are
    at least MIN_FILL of its fillable cells; elsewhere (a gap-free record such as a reanalysis,
    or a window with few gaps) the observed cells the model's context sampler keeps ([CQ]
    Principle 1: gaps shaped like training's), the rest to fill. Returns (known, S, N)."""
    fillable = valid[:, None, None].expand_as(M)
    share = (fillable & ~M).flatten(1).sum(1) / fillable.flatten(1).sum(1).clamp(min=1)
    few = share < MIN_FILL
    if not bool(few.any()):
        return M, S, N
    known = M.clone()
    known[few] = sampler(M[few], ratio, gen)
    hidden = (M & ~known).to(x_obs.dtype)  # observed cells hidden: out of the climatology input too
    return known, S - (x_obs * hidden).sum(1), N - hidden.sum(1)


def student_width(card: ModelCard, asked: int | None) -> int | None:
    """The base channels of a student trained afresh; None: the student starts as a copy of the
    teacher's network. By default half the teacher's width (U-Nets; a DiT's student is a copy):
    about half the time a sample, and each sample is one network call."""
    net = card.preset.network
    if net.arch == "dit":
        if asked is not None:
            raise ImputeError("--width applies to U-Net models; this one is a DiT: leave --width out")
        return None
    width = max(4, net.base_channels // 2) if asked is None else asked
    if width < 4:
        raise ImputeError(f"--width {width}: the student needs at least 4 base channels")
    return None if width == net.base_channels else width


def _resume_state(d: Path, opts: DistillOptions) -> dict | None:
    """The checkpoint --resume continues from; an unfinished distillation is not started over
    without --overwrite (its minutes would be lost)."""
    path = d / DISTILL_STATE
    if opts.resume:
        if not path.exists():
            raise ImputeError(f"nothing to resume: {path} does not exist (a finished distillation leaves none); "
                              "drop --resume")
        remove_cut_writes(d, DISTILL_STATE)  # a checkpoint write cut short by a kill
        return load_state(path)
    if path.exists() and not opts.overwrite:
        raise ImputeError(f"{d} holds an unfinished distillation ({DISTILL_STATE}); add --resume to continue it, "
                          "or --overwrite to start again")
    return None


def _check_resumable(d: Path, state: dict | None, settings: dict) -> None:
    """A resumed distillation runs with the settings it began with, from the same model."""
    if state is None:
        return
    old = state["settings"]
    if old["teacher"] != settings["teacher"]:
        raise ImputeError(f"the model in {d} was trained again since this distillation began; "
                          "start it again with --overwrite instead of --resume")
    def said(v: object) -> object:
        return "the model's own" if v is None else v  # width None: a copy of the model's network
    differ = [f"{k} {said(old[k])} (now {said(settings[k])})" for k in old if k != "teacher" and old[k] != settings[k]]
    if differ:
        raise ImputeError(f"--resume continues the distillation as it began, with {', '.join(differ)}; "
                          "give the options it began with, or start again with --overwrite")


def distill_model(model: str | Path, opts: DistillOptions) -> Path:
    """Train the model's student (see the module's steps) and write it into the model folder."""
    if opts.steps is not None and opts.steps < 1:
        raise ImputeError(f"--steps must be at least 1, got {opts.steps}")
    d = resolve_model_dir(str(model))
    card, teacher = load_model(d)
    state = _resume_state(d, opts)
    if card.student is not None and not opts.overwrite and state is None:  # a resumed run had leave to replace it
        raise ImputeError(f"{d} already has a distilled sampler ({STUDENT}); pass --overwrite to replace it")
    width = student_width(card, opts.width)
    data = opts.data or card.training.get("data")
    if opts.data and not Path(opts.data).exists():
        raise OptionError(f"--data '{opts.data}' does not exist; give the file the model was trained on (or one like it)")
    if not data or not Path(str(data)).exists():
        raise ImputeError(f"the model's training data ({data}) is not at hand; give the data it was trained on "
                          "(or like it) with --data FILE (from Python: data=)")
    cube = open_cube(str(data), card.variables, card.static_mask_var, covariates=card.covariates)
    check_compatible(card, cube)
    use_threads(opts.threads)
    device = pick_device(opts.device)
    cube.load()
    if (cycle := cycle_for_model(card.normalisation, cube)) is not None:  # the teacher fills anomalies
        cube = remove_cycle(cube, cycle)
    summary = summarise(cube)
    stats = Stats(tuple(card.normalisation["mean"]), tuple(card.normalisation["std"]),
                  card.normalisation["observed_fraction"])
    sums = summary.climatology_sums(stats)
    window = tuple(min(a, b) for a, b in zip(card.window, cube.grid.shape))
    pattern = card.mask_strategy["pattern"]
    pool = pool_from_cube(cube, window[0])
    sampler = ContextSampler(pattern, card.preset.mask.block_sizes, pool if pattern == "empirical" else None,
                             always=cube.context_only if cube.covariates else None)
    cfg = card.preset.impute
    B = opts.batch_size or card.preset.train.batch_size
    seed = opts.seed

    teacher = teacher.to(device).eval()
    if width is not None:
        # a narrower network, trained afresh from the seed (the teacher's weights do not fit it)
        card.student = {"network": {"base_channels": width}}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            student = build_denoiser(card, student=True).to(device).train()
    else:
        student = copy.deepcopy(teacher).train()
    student.student_weights = None
    lr = opts.lr if opts.lr is not None else (LR_FRESH if width is not None else LR_COPY)
    steps = opts.steps or (state["settings"]["steps"] if state else STEPS_FRESH if width is not None else STEPS_COPY)
    warm = round(MEAN_FIRST * steps) if width is not None else 0
    # what a resumed run must share with the run it continues (its draws depend on all of it)
    settings = {"steps": steps, "width": width, "seed": seed, "lr": lr, "batch_size": B, "data": str(Path(str(data)).resolve()),
                "teacher": hashlib.sha256((d / WEIGHTS).read_bytes()).hexdigest()}
    _check_resumable(d, state, settings)
    for p in student.parameters():
        p.requires_grad_(True)
    ema = copy.deepcopy(student).eval()
    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.0, foreach=True)
    params, ema_params = list(student.parameters()), list(ema.parameters())
    start, loss_avg, before = 0, None, 0.0
    if state is not None:  # every step draws from its own seed: the rest comes out as if never stopped
        student.net.load_state_dict(state["student"])
        ema.net.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        start, loss_avg, before = state["step"], state["loss_avg"], state["seconds"]
    log = opts.log
    who = f"a student {width} channels wide, trained afresh" if width is not None else "a copy of the network"
    fitting = f"fitting its solver's samples (each runs the solver, {cfg.steps + 1} network calls: slower steps)"
    phases = f"{warm} steps learning the model's point estimate, then {steps - warm} {fitting}" if warm else \
        f"{steps} steps {fitting}"
    log(f"distilling {d} into {who}, batches of {B} windows, teacher: {cfg.solver} sampler of {cfg.steps} steps; {phases}")
    if start:
        log(f"resuming from step {start} of {steps} ({d / DISTILL_STATE})")
    # one bar a phase: a phase's steps cost alike, so each bar's rate and time left hold
    bar = progress_bar(warm, "distill, point estimate", "step", enabled=opts.progress, initial=start) \
        if start < warm else None
    t0 = time.perf_counter()
    for step in range(start, steps):
        if step == max(warm, start):
            if bar is not None:
                bar.close()
            bar = progress_bar(steps - warm, "distill, samples", "step", enabled=opts.progress, initial=step - warm)
        rng = np.random.default_rng([seed, step, 17])
        b = sample_batch(cube, stats, window, B, rng, sums)  # 1. windows of the record, their own gaps to fill
        x_obs, valid = b.x_obs.to(device), b.valid.to(device)
        gens = [torch.Generator().manual_seed(int(rng.integers(2**62))) for _ in range(2 * B)]
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        M, S, N = known_cells(b.M.to(device), valid, x_obs, b.S.to(device), b.N.to(device), sampler,
                              card.preset.mask.context_ratio, gen)
        with torch.no_grad():  # 2. the teacher: its point estimate, then one sample per window
            x_imp = ensemble_single_step(teacher, x_obs, M, valid, sampler=sampler,
                                         ratio=cfg.context_ratio if cfg.context_ratio is not None else 1.0,
                                         K=cfg.ensemble, delta=cfg.delta, generators=gens[:B], sums=(S, N))
            y = None if step < warm else sample_windows(
                teacher, x_obs, M, valid, x_imp, sampler=sampler, pool=pool,
                train_ratio=card.preset.mask.context_ratio, steps=cfg.steps, delta=cfg.delta, eta=cfg.eta,
                omega_kind=cfg.omega, solver=cfg.solver, generators=gens[B:], samples=1, batch_size=B,
                sums=(S, N))[:, 0].to(device)
        # 3. two student draws from independent noise, the same cells known
        z = torch.randn((2 * B, *x_obs.shape[1:]), generator=gen).to(device)
        two = torch.cat([torch.arange(B)] * 2).to(device)
        clim = context_climatology(S[two], N[two], x_obs[two], M[two], M[two])
        with autocast(device):
            s = student_call(student, x_obs[two], M[two], valid[two], clim, z, cfg.delta)
        fill = valid[:, None, None] & ~M
        if y is None:  # 0. a student trained afresh first learns the teacher's point estimate
            f2 = fill[two].to(s.dtype)
            loss = (((s - x_imp[two]) ** 2) * f2).sum() / f2.sum().clamp(min=1)
        else:
            loss = energy_score(s[:B], s[B:], y, fill)  # 4. the energy score, one optimiser step
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / WARMUP)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1 - min(EMA, (1 + step) / (10 + step)))
        lv = float(loss.detach())
        loss_avg = lv if loss_avg is None or step == warm else 0.98 * loss_avg + 0.02 * lv
        bar.update(1)
        bar.set_postfix(**{"energy_score" if y is not None else "mse_to_teacher_estimate": f"{loss_avg:.4f}"})
        if (step + 1) % CHECKPOINT_EVERY == 0 and step + 1 < steps:  # what --resume continues from
            save_state(d / DISTILL_STATE, {"student": student.net.state_dict(), "ema": ema.net.state_dict(),
                                           "opt": opt.state_dict(), "step": step + 1, "loss_avg": loss_avg,
                                           "seconds": before + time.perf_counter() - t0, "settings": settings})
    if bar is not None:
        bar.close()
    seconds = before + time.perf_counter() - t0
    save_state(d / STUDENT, {k: v.detach().cpu() for k, v in ema.net.state_dict().items()})
    card.student = {"method": "energy-score distillation of the multi-step sampler", "network_calls": 1,
                    **({"network": {"base_channels": width}} if width is not None else {}),
                    "teacher": {"solver": cfg.solver, "steps": cfg.steps}, "steps": steps,
                    "batch_size": B, "lr": lr, "final_energy_score": round(loss_avg or 0.0, 6),
                    "seconds": round(seconds, 1), "data": str(data), "device": str(device), "finished": utc_stamp()}
    save_card(d, card)  # after the weights: a card that names a student always has one
    (d / DISTILL_STATE).unlink(missing_ok=True)  # finished: nothing to resume
    log(f"distilled sampler written to {d / STUDENT} ({steps} steps, energy score {loss_avg:.4f}, "
        f"{seconds:.0f} s on {device}); 'impute --samples N --model {d}' now draws with it")
    return d
