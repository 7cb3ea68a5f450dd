"""layers: building blocks shared by the backbones (the U-Nets and the DiT)."""

from __future__ import annotations

import math

import torch
from torch import nn


def group_count(ch: int) -> int:
    """The number of GroupNorm groups for `ch` channels: 8, or the largest of 4, 2, 1 dividing it."""
    for g in (8, 4, 2, 1):
        if ch % g == 0:
            return g
    return 1


class NoiseEmbedding(nn.Module):
    """Fourier features of the scalar noise level -> MLP."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("freqs", torch.exp(torch.linspace(0, math.log(1000), dim // 2)), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        a = c_noise[:, None] * self.freqs[None]
        return self.mlp(torch.cat([a.sin(), a.cos()], dim=1))
