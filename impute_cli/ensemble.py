"""ensemble: the point estimate of [CQ] §3.3 -- ensemble single-step imputation (eq. 9-10).

x_δ = α_δ x_obs + σ_δ ε on observed cells (eq. 9), then
x* ≈ (1/K) Σ_k x_θ(δ, M_ctx^(k) ⊙ x_δ, M_ctx^(k)) with M_ctx^(k) ⊆ M drawn by the training
context sampler (eq. 10). Feeding M itself as context is the train/test mismatch of [CQ]
Table 4; averaging over context draws removes the variance terms of Theorem 2."""

from __future__ import annotations

import torch

from .batches import context_climatology
from .context_query import ContextSampler
from .denoiser import Denoiser
from .device import autocast


@torch.no_grad()
def ensemble_single_step(denoiser: Denoiser, x_obs: torch.Tensor, M: torch.Tensor, valid: torch.Tensor, *,
                         sampler: ContextSampler, ratio: float, K: int, delta: float,
                         generators: list[torch.Generator], batch_size: int = 16,
                         sums: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """x* for a batch of windows (B, F, C, h, w). One generator per window, so window i gets
    the same context draws whatever the batch size. `sums` (S, N), each (B, C, h, w), give the
    network its climatology input for each context draw."""
    B = x_obs.shape[0]
    dev = x_obs.device
    t = torch.full((1,), delta, device=dev)
    a, s = denoiser.schedule.alpha(t), denoiser.schedule.sigma(t)
    # Draw every member's noise and context mask first, per window, from that window's generator.
    xs, ctxs, owners = [], [], []
    for i in range(B):
        for _ in range(K):
            eps = torch.randn(x_obs[i].shape, generator=generators[i]).to(dev)
            xs.append(M[i] * (a * x_obs[i] + s * eps))  # eq. 9, observed cells only
            ctxs.append(sampler(M[i:i + 1], ratio, generators[i])[0])
            owners.append(i)
    acc = torch.zeros_like(x_obs)
    for j in range(0, len(xs), batch_size):  # members of all windows go through the network together
        xb, cb = torch.stack(xs[j:j + batch_size]), torch.stack(ctxs[j:j + batch_size])
        vb = valid[owners[j:j + batch_size]]
        extra = ()
        if sums is not None:
            own = owners[j:j + batch_size]
            extra = (context_climatology(sums[0][own], sums[1][own], x_obs[own], M[own], cb),)
        with autocast(dev):
            pred = denoiser(xb, cb, vb, t.expand(len(xb)), *extra).float()
        for k, i in enumerate(owners[j:j + batch_size]):
            acc[i] += pred[k]
    return acc / K  # eq. 10
