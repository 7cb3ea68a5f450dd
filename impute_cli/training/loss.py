"""loss: the pieces of [CQ] Algorithm 1's objective -- the noise levels a training step draws
(line 3), the per-sample weight, and the per-cell squared error (line 7). The reduction over
the query cells is one visible line in `training.train`."""

from __future__ import annotations

import math

import torch

from impute_cli.config import Preset


def draw_t(n: int, preset: Preset, gen: torch.Generator) -> torch.Tensor:
    """t ~ U(t_min, 1) ([CQ] Alg. 1 line 3), a fraction `low_noise_fraction` of them instead
    log-uniform in [t_min, 0.05]."""
    d = preset.diffusion
    u = torch.rand(n, generator=gen)
    t = d.t_min + (1 - d.t_min) * u
    low = torch.rand(n, generator=gen) < d.low_noise_fraction
    t_low = torch.exp(math.log(d.t_min) + (math.log(0.05) - math.log(d.t_min)) * torch.rand(n, generator=gen))
    return torch.where(low, t_low, t)


def loss_weight(alpha: torch.Tensor, sigma: torch.Tensor, gamma: float | None) -> torch.Tensor:
    """Per-sample loss weight from the samples' α_t, σ_t (any shape): 1 ([CQ] Alg. 1), or
    min(α_t²/σ_t², γ) / γ (Min-SNR-γ, Hang et al. 2023, x0-prediction form) with
    `diffusion.min_snr_gamma` = γ."""
    if gamma is None:
        return torch.ones_like(alpha)
    return (alpha**2 / sigma**2).clamp(max=gamma) / gamma




def per_cell_loss(x_hat: torch.Tensor, x_obs: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor,
                  gamma: float | None) -> torch.Tensor:
    """[CQ] Alg. 1 line 7 before the query mask: the squared error of each cell's x0 estimate,
    each sample weighted by `loss_weight`."""
    return (x_hat.float() - x_obs) ** 2 * loss_weight(alpha, sigma, gamma)
