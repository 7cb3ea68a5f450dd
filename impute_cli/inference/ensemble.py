"""ensemble: the point estimate of [CQ] §3.3 -- ensemble single-step imputation (eq. 9-10).

x_δ = α_δ x_obs + σ_δ ε on observed cells (eq. 9), then
x* ≈ (1/K) Σ_k x_θ(δ, M_ctx^(k) ⊙ x_δ, M_ctx^(k)) with M_ctx^(k) ⊆ M drawn by the training
context sampler (eq. 10). Feeding M itself as context is the train/test mismatch of [CQ]
Table 4; averaging over context draws removes the variance terms of Theorem 2."""

from __future__ import annotations

import torch

from impute_cli.model.batches import context_climatology
from impute_cli.model.symmetry import move, symmetries
from impute_cli.masks.context_query import ContextSampler
from impute_cli.model.denoiser import Denoiser
from impute_cli.device import autocast


@torch.no_grad()
def ensemble_single_step(denoiser: Denoiser, x_obs: torch.Tensor, M: torch.Tensor, valid: torch.Tensor, *,
                         sampler: ContextSampler, ratio: float, K: int, delta: float,
                         generators: list[torch.Generator], batch_size: int = 16,
                         sums: tuple[torch.Tensor, torch.Tensor] | None = None,
                         symmetric: list[str] | None = None) -> torch.Tensor:
    """x* for a batch of windows (B, F, C, h, w). One generator per window, so window i gets
    the same context draws whatever the batch size. `sums` (S, N), each (B, C, h, w), give the
    network its climatology input for each context draw. `symmetric` (the model's
    `train.augment`): member k of a window sees it under the k-th of those symmetries and its
    prediction is turned back, so the ensemble also averages over the symmetries the field's
    statistics have (test-time augmentation; K = 16 covers all 16 of flip + reverse_time)."""
    B = x_obs.shape[0]
    dev = x_obs.device
    t = torch.full((1,), delta, device=dev)
    a, s = denoiser.schedule.alpha(t), denoiser.schedule.sigma(t)
    # Draw every member's noise and context mask first: the K members of window i together,
    # from window i's generator (members are rows k of window i, row i * K + k overall).
    eps = torch.cat([torch.randn((K, *x_obs.shape[1:]), generator=g) for g in generators]).to(dev)
    ctx = torch.cat([sampler(M[i:i + 1].expand(K, *M.shape[1:]), ratio, generators[i]) for i in range(B)])
    owners = torch.arange(B, device=dev).repeat_interleave(K)
    xs = M[owners] * (a * x_obs[owners] + s * eps)  # eq. 9, observed cells only
    syms = symmetries(symmetric or [], x_obs.shape[-1] == x_obs.shape[-2])
    member_sym = [syms[k % len(syms)] for k in range(K)] * B  # member k of each window: symmetry k
    acc = torch.zeros_like(x_obs)
    for j in range(0, B * K, batch_size):  # members of all windows go through the network together
        own = owners[j:j + batch_size]
        xb, cb, vb = xs[j:j + batch_size], ctx[j:j + batch_size], valid[own]
        extra = ()
        if sums is not None:
            extra = (context_climatology(sums[0][own], sums[1][own], x_obs[own], M[own], cb),)
        gs = member_sym[j:j + batch_size]
        if len(syms) > 1:  # each member under its symmetry: values and masks (frames on dim 0), land, climatology
            xb, cb = (torch.stack([move(a[k], g, 0) for k, g in enumerate(gs)]) for a in (xb, cb))
            vb = torch.stack([move(vb[k], g, None) for k, g in enumerate(gs)])
            extra = tuple(torch.stack([move(e[k], g, None) for k, g in enumerate(gs)]) for e in extra)
        with autocast(dev, inference=True):
            pred = denoiser(xb, cb, vb, t.expand(len(xb)), *extra).float()
        if len(syms) > 1:
            pred = torch.stack([move(pred[k], g, 0, inverse=True) for k, g in enumerate(gs)])
        acc.index_add_(0, own, pred)
    return acc / K  # eq. 10
