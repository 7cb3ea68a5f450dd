"""dit: a diffusion transformer on space-time patches, the alternative backbone to the U-Net.

[UQ] (Diffusion Transformers for Imputation, arXiv 2510.02216) imputes with a transformer whose
attention relates every observed position to every missing one, whatever the gap pattern; the
blocks are those of DiT (Peebles & Xie, "Scalable Diffusion Models with Transformers", 2023).

Same contract as `unet.UNet`: the input is the image `denoiser` stacks,
[M_ctx ⊙ x_t (F*C), M_ctx (F*C), valid (1), climatology (2C or none)] of shape (B, in, h, w),
and the output the x0 estimate (B, F*C, h, w). Inside:

1. unstack to per-frame features: each frame's values and mask, with the static channels
   (valid, climatology) repeated on every frame -> (B, Cf, F, h, w);
2. pad to whole patches and cut patch_frames x patch x patch space-time patches (a strided
   Conv3d) into tokens. A side shorter than the patch gets a patch as short as the side (the
   first rows or columns of the kernel), so a 1-D cube (h = 1) is not padded patch-fold;
3. add a fixed sinusoidal 3-D position embedding computed for this token grid, so any F x h x w
   works without learned tables;
4. transformer blocks conditioned on the noise level by adaLN-Zero (each block starts as the
   identity);
5. a final adaptive LayerNorm and a linear layer map each token back to its patch's pixels,
   which are put back in place and cropped to (h, w)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from impute_cli.config import NetworkConfig
from impute_cli.model.layers import NoiseEmbedding


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


def _sincos(pos: torch.Tensor, dim: int) -> torch.Tensor:
    """(n,) positions -> (n, dim) sin/cos features at geometric frequencies (dim even)."""
    freqs = torch.exp(-math.log(10000.0) * torch.arange(dim // 2, device=pos.device) / max(dim // 2, 1))
    a = pos[:, None] * freqs[None]
    return torch.cat([a.sin(), a.cos()], dim=1)


def position_embedding(nt: int, nh: int, nw: int, dim: int, device: torch.device) -> torch.Tensor:
    """(nt*nh*nw, dim) fixed embedding of a token grid: dims split between time, y and x."""
    d_yx = (dim // 3) // 2 * 2
    d_t = dim - 2 * d_yx
    et, ey, ex = (_sincos(torch.arange(n, device=device, dtype=torch.float32), d)
                  for n, d in ((nt, d_t), (nh, d_yx), (nw, d_yx)))
    return torch.cat([et[:, None, None].expand(nt, nh, nw, d_t),
                      ey[None, :, None].expand(nt, nh, nw, d_yx),
                      ex[None, None, :].expand(nt, nh, nw, d_yx)], dim=-1).reshape(nt * nh * nw, dim)


class DiTBlock(nn.Module):
    """Pre-LN self-attention and MLP, each scaled, shifted and gated by the noise embedding
    (adaLN-Zero: the modulation is zero at init, so the block starts as the identity)."""

    def __init__(self, hidden: int, heads: int, emb: int) -> None:
        super().__init__()
        self.heads = heads
        self.n1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.n2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(approximate="tanh"),
                                 nn.Linear(4 * hidden, hidden))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(emb, 6 * hidden))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(e).chunk(6, dim=1)
        q, k, v = self.qkv(_modulate(self.n1(x), sh1, sc1)).view(B, N, 3, self.heads, D // self.heads) \
            .permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, D)
        x = x + g1[:, None] * self.proj(a)
        return x + g2[:, None] * self.mlp(_modulate(self.n2(x), sh2, sc2))


class DiT(nn.Module):
    """Diffusion transformer with the U-Net's input/output contract (see the module docstring).
    `frames` and `channels` (variables x levels) tell it how the stacked input is laid out."""

    def __init__(self, in_channels: int, out_channels: int, cfg: NetworkConfig, frames: int, channels: int) -> None:
        super().__init__()
        static = in_channels - 2 * frames * channels
        if static < 0 or out_channels % frames:
            raise ValueError(f"DiT: {in_channels} input / {out_channels} output channels do not fit "
                             f"{frames} frames x {channels} channels")
        self.frames, self.channels, self.static = frames, channels, static
        self.c_out = out_channels // frames
        self.pt, self.p = min(cfg.patch_frames, frames), cfg.patch_size
        self.hidden = cfg.hidden
        self.embed = NoiseEmbedding(cfg.emb_dim)
        self.patch = nn.Conv3d(2 * channels + static, cfg.hidden, (self.pt, self.p, self.p),
                               stride=(self.pt, self.p, self.p))
        self.blocks = nn.ModuleList([DiTBlock(cfg.hidden, cfg.heads, cfg.emb_dim) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(cfg.hidden, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(cfg.emb_dim, 2 * cfg.hidden))
        self.head = nn.Linear(cfg.hidden, self.pt * self.p * self.p * self.c_out)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.patch.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch.bias)
        for blk in self.blocks:  # adaLN-Zero
            nn.init.zeros_(blk.ada[1].weight)
        for lin in (self.ada[1], self.head):
            nn.init.zeros_(lin.weight)
        for m in self.embed.mlp:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)

    def _frames_first(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2FC + S, h, w) stacked image -> (B, 2C + S, F, h, w) per-frame features."""
        B, _, h, w = x.shape
        Fr, C = self.frames, self.channels
        vals = x[:, : Fr * C].reshape(B, Fr, C, h, w)
        mask = x[:, Fr * C: 2 * Fr * C].reshape(B, Fr, C, h, w)
        static = x[:, 2 * Fr * C:, None].expand(B, self.static, Fr, h, w)
        return torch.cat([torch.cat([vals, mask], dim=2).transpose(1, 2), static], dim=1)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        B, _, h, w = x.shape
        pt, ph, pw = self.pt, min(self.p, h), min(self.p, w)  # a short side gets a short patch
        u = self._frames_first(x)
        u = F.pad(u, (0, (-w) % pw, 0, (-h) % ph, 0, (-self.frames) % pt))
        Fp, Hp, Wp = u.shape[-3:]
        nt, nh, nw = Fp // pt, Hp // ph, Wp // pw
        kernel = self.patch.weight[..., :ph, :pw]
        tok = F.conv3d(u, kernel, self.patch.bias, stride=(pt, ph, pw)).flatten(2).transpose(1, 2)
        tok = tok + position_embedding(nt, nh, nw, self.hidden, x.device).to(tok.dtype)
        e = self.embed(c_noise)
        for blk in self.blocks:
            tok = blk(tok, e)
        shift, scale = self.ada(e).chunk(2, dim=1)
        y = self.head(_modulate(self.norm(tok), shift, scale))
        # each token's pixels -> their place: (B, nt, nh, nw, pt, p, p, C) -> (B, F, C, h, w)
        y = y.view(B, nt, nh, nw, pt, self.p, self.p, self.c_out)[:, :, :, :, :, :ph, :pw]
        y = y.permute(0, 1, 4, 7, 2, 5, 3, 6).reshape(B, Fp, self.c_out, Hp, Wp)
        return y[:, : self.frames, :, :h, :w].reshape(B, self.frames * self.c_out, h, w)
