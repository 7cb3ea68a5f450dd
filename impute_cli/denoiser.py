"""denoiser: noise scaling around the network. x_θ(t, M_ctx ⊙ x_t, M_ctx) -> x0 ([CQ] Alg. 1).

VP schedule of the authors' code: alpha_t = exp(-t^2 (β_max-β_min)/4 - t β_min/2),
sigma_t = sqrt(1 - alpha_t^2). The network sees only the context values, the context mask,
the static 'fillable' mask and the noise level; never the query mask."""

from __future__ import annotations

import torch
from torch import nn

from .config import DiffusionConfig


class VPSchedule:
    def __init__(self, cfg: DiffusionConfig) -> None:
        self.cfg = cfg

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        return torch.exp(-0.25 * t**2 * (c.beta_max - c.beta_min) - 0.5 * t * c.beta_min)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(1.0 - self.alpha(t) ** 2)


class Denoiser(nn.Module):
    """Wraps the network: builds its input [M_ctx ⊙ x_t, M_ctx, valid, climatology] and
    conditions it on c_noise = log(sigma_t / alpha_t) / 4. Output: the x0 estimate,
    (B, F, C, h, w). `clim` (B, 2C, h, w) is `batches.context_climatology`, when the network
    takes it."""

    def __init__(self, net: nn.Module, schedule: VPSchedule, climatology: bool = True) -> None:
        super().__init__()
        self.net = net
        self.schedule = schedule
        self.climatology = climatology

    def forward(self, x_t: torch.Tensor, M_ctx: torch.Tensor, valid: torch.Tensor, t: torch.Tensor,
                clim: torch.Tensor | None = None) -> torch.Tensor:
        B, Fr, C, h, w = x_t.shape
        m = M_ctx.to(x_t.dtype)
        parts = [(m * x_t).reshape(B, Fr * C, h, w), m.reshape(B, Fr * C, h, w),
                 valid.to(x_t.dtype).reshape(B, 1, h, w)]
        if self.climatology:
            parts.append(clim.to(x_t.dtype) if clim is not None else x_t.new_zeros(B, 2 * C, h, w))
        inp = torch.cat(parts, dim=1)
        c_noise = torch.log(self.schedule.sigma(t) / self.schedule.alpha(t)) / 4
        return self.net(inp, c_noise).reshape(B, Fr, C, h, w)


def in_channels(frames: int, channels: int, climatology: bool) -> int:
    return 2 * frames * channels + 1 + (2 * channels if climatology else 0)
