"""layers: building blocks shared by the backbones (the U-Nets and the DiT)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def group_count(ch: int) -> int:
    """The number of GroupNorm groups for `ch` channels: 8, or the largest of 4, 2, 1 dividing it."""
    for g in (8, 4, 2, 1):
        if ch % g == 0:
            return g
    return 1


class GroupNorm(nn.GroupNorm):
    """nn.GroupNorm, with one CPU path of torch's avoided. For a channels-last input with fewer
    than 1024 cells a map, torch's CPU kernel parallelises over (batch x groups) and reads each
    group's channels with a stride: where a group holds a number of channels that is not a
    multiple of 16 (the U-Nets' 2 to 12), that is 2-5x slower on the coarser levels at
    imputation's batches than normalising a contiguous copy and converting back (at 16 or 32 it
    is 3-4x faster than the copy). Only without gradients: in training the batches are small
    and the copies cost what they save (measured), so the trained weights are those of
    nn.GroupNorm's own path, bit for bit."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type == "cpu" and x.dim() == 4 and x.shape[-2] * x.shape[-1] < 1024
                and (self.num_channels // self.num_groups) % 16 != 0
                and not torch.is_grad_enabled() and not x.is_contiguous()
                and x.is_contiguous(memory_format=torch.channels_last)):
            y = F.group_norm(x.contiguous(), self.num_groups, self.weight, self.bias, self.eps)
            return y.contiguous(memory_format=torch.channels_last)
        return super().forward(x)


class NoiseEmbedding(nn.Module):
    """Fourier features of the scalar noise level -> MLP."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("freqs", torch.exp(torch.linspace(0, math.log(1000), dim // 2)), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        a = c_noise[:, None] * self.freqs[None]
        return self.mlp(torch.cat([a.sin(), a.cos()], dim=1))
