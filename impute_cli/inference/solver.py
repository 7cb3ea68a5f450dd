"""solver: N imputations of windows by the multi-step sampler of [CQ] App. E, Alg. 4.

Per member (one sample), starting from x_T ~ N(0, I) at t = 1 and stepping down to t = δ:

  E_diff = x_θ(s, M_rnd ⊙ x_s, M_rnd)                  eq. 26, one fresh random mask per step
  E_imp  = (1/K) Σ_k x_θ(δ, M_ctx^(k) ⊙ x_obs,δ, M_ctx^(k))   eq. 27, the point estimate, once
  x̂      = ω_s E_diff + (1 − ω_s) E_imp                 eq. 28
  ε_unobs = (x_s − α_s x̂) / σ_s,   ε_obs = (x_s − α_s x_obs) / σ_s     Alg. 4 lines 3-4
  ε = M ε_obs + (1 − M) ε_unobs                          Alg. 4 line 5
  x_t = α_t x̂0 + sqrt(σ_t² − c²) ε + c z               Alg. 4 line 6 (DDIM; c = 0 is the ODE)

and the sample keeps the observed cells exactly (line 8).

M_rnd has "the same marginal distribution as M_ctx in training, but is not necessarily a
subset of M" (App. E): training's M_ctx is the context sampler applied to the observation mask
of a random window of the cube, so M_rnd is the context sampler applied to the observation
mask of a random window borrowed from the cube (not this window's M).

The weight ω. Eq. 28 names ω_t "a monotonically increasing weight function that transitions
from 0 to 1 as the diffusion process progresses" and Table 7 lists ω_t = t. Read with t the
diffusion time, that puts the weight on E_diff at high noise and on the (deterministic) E_imp at
low noise, so every deterministic trajectory ends at the point estimate and the samples have
(almost) no spread. Read with "progresses" as the sampling process running from t = 1 to 0, the
weight on E_diff rises from 0 to 1 as t falls: ω = 1 − t. That is also what the authors' code
does (s·μ0 + (1 − s)·x_θ(s, ctx(x_s))) and it has the right limits (at t = 1, x_t
carries no information, so E[x0 | x_t, x_obs] = E[x0 | x_obs]; at t → 0, x_t determines x0).
`impute.omega` chooses: '1-t' (default) or 't' (the literal reading, kept for comparison).

Each window's members draw from the window's own generator, and windows go through the network
whole, so a sample does not depend on how windows are batched.
Cells fixed by an earlier overlapping window (`fixed`) are treated as observed, with each
member's own values, so that neighbouring windows of one sample join up."""

from __future__ import annotations

import math

import numpy as np
import torch

from impute_cli.model.batches import context_climatology
from impute_cli.masks.context_query import ContextSampler, borrow_windows
from impute_cli.model.denoiser import Denoiser
from impute_cli.device import autocast

OMEGAS = ("1-t", "t")
NOISE_CLIP = 5.0  # predicted noise clipped to ±5, as in the authors' code


def time_grid(steps: int, delta: float, power: float = 2.0) -> list[float]:
    """steps + 1 diffusion times from 1 down to δ, denser at low noise (t ∝ u^power)."""
    return [delta + (1.0 - delta) * (1.0 - i / steps) ** power for i in range(steps + 1)]


def omega(t: float, kind: str) -> float:
    """The weight on the diffusion expectation E_diff at diffusion time t (eq. 28)."""
    return 1.0 - t if kind == "1-t" else t


@torch.no_grad()
def sample_windows(denoiser: Denoiser, x_obs: torch.Tensor, M: torch.Tensor, valid: torch.Tensor,
                   x_imp: torch.Tensor, *, sampler: ContextSampler, pool: np.ndarray, train_ratio: float,
                   steps: int, delta: float, eta: float, omega_kind: str, generators: list[torch.Generator],
                   samples: int, batch_size: int, sums: tuple[torch.Tensor, torch.Tensor],
                   fixed: torch.Tensor | None = None, fixed_values: torch.Tensor | None = None,
                   solver: str = "ddim") -> torch.Tensor:
    """`samples` samples of each of B windows, (B, N, F, C, h, w), normalised units.

    x_obs, M, x_imp: (B, F, C, h, w); valid (B, h, w); sums: (S, N) each (B, C, h, w). `fixed`
    (B, F, C, h, w) marks cells already sampled by an earlier window, with values `fixed_values`
    (B, N, F, C, h, w). Window i's N members draw together from `generators[i]` (starting
    noise, random masks, ancestral noise), and whole windows go through the network together,
    about `batch_size` members at a time: a window's samples do not depend on the batching.

    `solver`: "ddim", the first-order step of Alg. 4 line 6; or "dpm2m", the second-order
    multistep update of DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided
    Sampling of Diffusion Probabilistic Models", Alg. 2) in its data-prediction form, applied to
    the same combined estimate x0 (eq. 28 with the known cells put back): with λ = log(α/σ),
    h = λ_t − λ_s and r = h_prev / h, the step uses D = (1 + 1/(2r)) x0 − 1/(2r) x0_prev in place
    of x0 (the first step is DDIM's). Deterministic (eta = 0) only."""
    dev = x_obs.device
    B, Fr, C, h, w = x_obs.shape
    N = samples
    per_call = max(1, batch_size // N)  # whole windows per network call
    pool_t = torch.from_numpy(np.ascontiguousarray(pool))
    ts = time_grid(steps, delta)
    sched = denoiser.schedule
    out = []
    for j in range(0, B, per_call):
        gens = generators[j:j + per_call]
        own = torch.arange(j, j + len(gens), device=dev).repeat_interleave(N)  # member k: window j + k // N
        b = len(own)
        # Alg. 4 line 1: x_T ~ N(0, I), each window's members from its own generator.
        x = torch.cat([torch.randn((N, Fr, C, h, w), generator=g) for g in gens]).to(dev)
        Mb, vb, xi = M[own], valid[own], x_imp[own]
        known = Mb.clone()
        xk = x_obs[own].clone()
        if fixed is not None and fixed_values is not None:
            fx = fixed[own]
            known |= fx
            xk = torch.where(fx, fixed_values[j:j + len(gens)].reshape(b, Fr, C, h, w).to(dev), xk)
        Sb, Nb = sums[0][own], sums[1][own]
        x0_prev, dl_prev = None, 1.0  # the previous step's x0 and its step in λ (dpm2m)
        for i in range(steps + 1):
            s = ts[i]
            st = torch.full((b,), s, device=dev)
            a_s, s_s = float(sched.alpha(st[:1])), float(sched.sigma(st[:1]))
            # eq. 26 with one random mask per member and step: the context sampler applied to the
            # observation pattern of a borrowed window (same marginal as training's M_ctx).
            M_rnd = torch.cat([
                sampler(borrow_windows(pool_t, (Fr, h, w), N, g)[:, :, None].expand(N, Fr, C, h, w).to(dev),
                        train_ratio, g) for g in gens]) & vb[:, None, None]  # never land, as in training
            if sampler.always is not None:  # a covariate's observed cells are always context, as in training
                cov = torch.from_numpy(sampler.always).to(dev)
                M_rnd[:, :, cov] = Mb[:, :, cov] & vb[:, None, None]
            clim = context_climatology(Sb, Nb, xk * Mb, Mb, Mb & M_rnd)
            with autocast(dev, inference=True):
                e_diff = denoiser(x, M_rnd, vb, st, clim).float()
            wgt = omega(s, omega_kind)
            x_hat = wgt * e_diff + (1.0 - wgt) * xi  # eq. 28
            # At t = δ the sample is this last denoised estimate with the observations put back
            # (Alg. 4 line 8 keeps the state x_δ; like the authors' code, which ends with
            # predictions at t = 1e-3, we take the estimate, x_δ without its residual noise).
            if i == steps:
                out.append(torch.where(known, xk, x_hat).cpu())
                break
            t = ts[i + 1]
            a_t = float(sched.alpha(torch.tensor([t])))
            s_t = float(sched.sigma(torch.tensor([t])))
            eps_unobs = ((x - a_s * x_hat) / s_s).clamp(-NOISE_CLIP, NOISE_CLIP)  # line 3
            eps_obs = (x - a_s * xk) / s_s  # line 4: the noise implied by the known values
            eps = torch.where(known, eps_obs, eps_unobs)  # line 5
            x0 = torch.where(known, xk, (x - s_s * eps) / a_s)
            if solver == "dpm2m":
                # DPM-Solver++(2M): x_t = (σ_t/σ_s) x_s + (α_t − σ_t α_s/σ_s) D, D from this x0 and the last
                dl = math.log(a_t / s_t) - math.log(a_s / s_s)  # the step in λ = log(α/σ), h of the paper
                D = x0 if x0_prev is None else x0 + (x0 - x0_prev) * (dl / (2.0 * dl_prev))
                x0_prev, dl_prev = x0, dl
                x = (s_t / s_s) * x + (a_t - s_t * a_s / s_s) * D
                continue
            # line 6: a DDIM step s -> t; eta = 0 is the probability-flow ODE, eta = 1 ancestral.
            c = eta * (s_t / s_s) * math.sqrt(max(0.0, 1.0 - (a_s / a_t) ** 2)) if eta > 0 else 0.0
            x = a_t * x0 + math.sqrt(max(s_t**2 - c**2, 0.0)) * eps
            if c > 0:
                z = torch.cat([torch.randn((N, Fr, C, h, w), generator=g) for g in gens]).to(dev)
                x = x + c * z
    return torch.cat(out).reshape(B, N, Fr, C, h, w)


def sample_window(denoiser: Denoiser, x_obs: torch.Tensor, M: torch.Tensor, valid: torch.Tensor,
                  x_imp: torch.Tensor, *, generator: torch.Generator, samples: int,
                  sums: tuple[torch.Tensor, torch.Tensor],
                  fixed: torch.Tensor | None = None, fixed_values: torch.Tensor | None = None,
                  **kw: object) -> torch.Tensor:
    """`samples` samples of one window, (N, F, C, h, w): `sample_windows` with B = 1.
    x_obs, M, x_imp: (F, C, h, w); valid (h, w); sums: (S, N) each (C, h, w)."""
    return sample_windows(denoiser, x_obs[None], M[None], valid[None], x_imp[None], generators=[generator],
                          samples=samples, sums=(sums[0][None], sums[1][None]),
                          fixed=None if fixed is None else fixed[None],
                          fixed_values=None if fixed_values is None else fixed_values[None], **kw)[0]
