"""context_query: draw the context mask M_ctx ⊆ M and the query mask M_qry ⊆ M ([CQ] §3.2).

Principle 1 of [CQ] (uniform query exposure): given the context, every cell outside it must
have positive, roughly uniform probability of being a query cell. We satisfy it by drawing
M_ctx from M *with the structure of the gap distribution*: i.i.d. pixels for scattered gaps,
whole blocks for block gaps, real gap shapes borrowed from other windows for clouds/swaths,
and a mixture of shapes from scattered to clustered ([UQ] §6.1 mixed masking).

Masks are bool tensors (B, F, C, h, w): batch, frames, channels, rows, columns. Gaps are
drawn per frame and shared across channels (a cloud hides every variable). A series (time x
station, see `dataset`) has h = 1: every pattern works on such windows, blocks become runs of
stations, `mixed` scales its shapes with the window's length and adds station outages (a
station out for a run of time steps), and the gap statistics of `auto` also look along time.
This module is the *mask* sampler; the diffusion solver lives in `ensemble` (and later
`sampling`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from impute_cli.config import MaskConfig
from impute_cli.errors import ImputeError


def _rand(shape: tuple[int, ...], gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(shape, generator=gen, device="cpu").to(device)


def pixel_pattern(shape: tuple[int, int, int, int], ratio: float, gen: torch.Generator,
                  device: torch.device) -> torch.Tensor:
    """i.i.d. cells kept with probability `ratio`: (B, F, h, w)."""
    return _rand(shape, gen, device) < ratio


def block_pattern(shape: tuple[int, int, int, int], ratio: float, gen: torch.Generator,
                  device: torch.device, sizes: list[int]) -> torch.Tensor:
    """Whole s x s blocks kept with probability `ratio`, on a block grid with a random phase
    (so every cell can fall in any position of a block). Half the samples draw blocks
    independently per frame; in the other half each block may be out for one run of
    consecutive frames of any length from 1 to the window's (`outage_pattern` on the block
    grid), so outages that last are learned with observed frames before and after them as well
    as without. (Dropping blocks for the whole window only, as before, never asked the network
    to bridge an 8-step outage from both sides: on the GP block cube the run lengths lowered the
    MSE ratio to the exact posterior mean from 2.32 to 2.16 on the training cube's gaps and from
    2.15 to 1.98 on another realisation, 2000 steps; the same with a second training seed.)"""
    B, Fr, h, w = shape
    out = []
    for _ in range(B):
        s = sizes[int(torch.randint(len(sizes), (1,), generator=gen))]
        oy, ox = (int(torch.randint(s, (1,), generator=gen)) for _ in range(2))
        nh, nw = -(-(h + oy) // s), -(-(w + ox) // s)
        if bool(torch.rand(1, generator=gen) < 0.5):  # lasting: runs of frames
            keep = outage_pattern((1, Fr, nh, nw), ratio, gen, device)[0]
        else:
            keep = _rand((Fr, nh, nw), gen, device) < ratio
        full = keep.repeat_interleave(s, 1).repeat_interleave(s, 2)
        out.append(full[:, oy:oy + h, ox:ox + w])
    return torch.stack(out)


def cloud_pattern(shape: tuple[int, int, int, int], ratio: float, gen: torch.Generator,
                  device: torch.device, scale: int) -> torch.Tensor:
    """Smooth random blobs, drifting slowly in time, thresholded to keep a fraction `ratio`."""
    B, Fr, h, w = shape
    lh, lw = max(2, -(-h // scale) + 1), max(2, -(-w // scale) + 1)
    noise = torch.randn((B, Fr, lh, lw), generator=gen).to(device)
    for f in range(1, Fr):  # AR(1) in time: blobs persist between frames
        noise[:, f] = 0.8 * noise[:, f - 1] + 0.6 * noise[:, f]
    field = F.interpolate(noise, size=(h, w), mode="bilinear", align_corners=False)
    thr = torch.quantile(field.reshape(B, -1).float(), 1 - ratio, dim=1)
    return field > thr[:, None, None, None]


def frame_pattern(shape: tuple[int, int, int, int], ratio: float, gen: torch.Generator,
                  device: torch.device) -> torch.Tensor:
    """Whole frames kept with probability `ratio` (temporal gaps), at least one kept."""
    B, Fr, h, w = shape
    keep = _rand((B, Fr), gen, device) < ratio
    if Fr > 1:
        first = torch.randint(Fr, (B,), generator=gen).to(device)
        keep[torch.arange(B, device=device), first] |= ~keep.any(1)
    return keep[:, :, None, None].expand(B, Fr, h, w)


def outage_pattern(shape: tuple[int, int, int, int], ratio: float, gen: torch.Generator,
                   device: torch.device) -> torch.Tensor:
    """Station outages: each cell (a station of a series) is out, with probability q, for one
    run of L ~ U{1..F} consecutive frames, and the cells still up are then kept i.i.d.; q and
    the i.i.d. rate are set so that about `ratio` of the cells are kept."""
    B, Fr, h, w = shape
    mean_run = (Fr + 1) / 2
    q = min(1.0, (1 - ratio) * Fr / mean_run)
    up = 1 - q * mean_run / Fr  # expected fraction not in an outage
    length = torch.randint(1, Fr + 1, (B, 1, h, w), generator=gen)
    start = (torch.rand((B, 1, h, w), generator=gen) * (Fr - length + 1)).floor()
    f = torch.arange(Fr)[None, :, None, None]
    out = (torch.rand((B, 1, h, w), generator=gen) < q) & (f >= start) & (f < start + length)
    keep = ~out & (torch.rand((B, Fr, h, w), generator=gen) < min(1.0, ratio / max(up, 1e-6)))
    return keep.to(device)


@dataclass
class ContextSampler:
    """Draws M_ctx ⊆ M with the structure of `pattern` (one of pixel/block/mixed/empirical).

    `pool` holds real observation patterns (T, H, W) bool for `empirical`: a borrowed window is
    intersected with M, choosing among a few candidates the one whose kept fraction is closest
    to the context ratio."""

    pattern: str
    block_sizes: list[int]
    pool: np.ndarray | None = None
    tries: int = 6
    always: np.ndarray | None = None  # (C,) bool: channels always wholly context (covariates)

    def __post_init__(self) -> None:
        if self.pattern == "empirical":
            if self.pool is None or self.pool.all():
                raise ImputeError("mask pattern 'empirical' borrows real gap shapes, but this data has no "
                                  "gaps; use --mask-pattern mixed (or pixel/block)")
            self._pool_t = torch.from_numpy(np.ascontiguousarray(self.pool))

    def pattern_like(self, M: torch.Tensor, ratio: float, gen: torch.Generator) -> torch.Tensor:
        """A keep-pattern (B, F, h, w) of this sampler's structure, not yet intersected with M."""
        B, Fr, C, h, w = M.shape
        shape, dev = (B, Fr, h, w), M.device
        if self.pattern == "pixel":
            return pixel_pattern(shape, ratio, gen, dev)
        if self.pattern == "block":
            return block_pattern(shape, ratio, gen, dev, self.block_sizes)
        if self.pattern == "mixed":
            return self._mixed(shape, ratio, gen, dev)
        if self.pattern == "empirical":
            return self._empirical(M, ratio, gen)
        raise ValueError(self.pattern)

    def __call__(self, M: torch.Tensor, ratio: float, gen: torch.Generator) -> torch.Tensor:
        if ratio >= 1.0:
            return M.clone()  # MissDiff setting: the whole observation is the context
        if self.always is None:
            return M & self.pattern_like(M, ratio, gen)[:, :, None]
        # covariates: the pattern is drawn on the imputed channels' observations, and every
        # observed cell of a covariate stays context
        always = torch.from_numpy(self.always).to(M.device)
        out = M & self.pattern_like(M[:, :, ~always], ratio, gen)[:, :, None]
        out[:, :, always] = M[:, :, always]
        return out

    def _mixed(self, shape: tuple[int, int, int, int], ratio: float, gen: torch.Generator,
               dev: torch.device) -> torch.Tensor:
        """[UQ] §6.1 mixed masking: each sample draws one shape, from scattered to clustered.
        A series window (h = 1) sizes its shapes by its length and has station outages in
        place of the smallest blocks."""
        B, Fr, h, w = shape
        kinds = torch.randint(6, (B,), generator=gen).tolist()
        one = (1, Fr, h, w)
        n = min(h, w) if min(h, w) > 1 else max(h, w)
        big = max(2, n // 4)
        makers = [
            lambda: pixel_pattern(one, ratio, gen, dev),
            lambda: block_pattern(one, ratio, gen, dev, [2]),
            lambda: block_pattern(one, ratio, gen, dev, [max(2, big // 2), big]),
            lambda: cloud_pattern(one, ratio, gen, dev, scale=max(2, n // 8)),
            lambda: cloud_pattern(one, ratio, gen, dev, scale=max(2, n // 3)),
            lambda: frame_pattern(one, ratio, gen, dev) if Fr > 1 else cloud_pattern(one, ratio, gen, dev, 4),
        ]
        if min(h, w) == 1:
            makers[1] = lambda: outage_pattern(one, ratio, gen, dev)
        return torch.cat([makers[k]() for k in kinds])

    def _empirical(self, M: torch.Tensor, ratio: float, gen: torch.Generator) -> torch.Tensor:
        """For each window, `tries` borrowed patterns drawn at once; the one whose kept share of
        the window's observed cells is closest to `ratio` (the first such) is its keep-pattern."""
        B, Fr, C, h, w = M.shape
        Mf = M.any(2)  # (B, F, h, w)
        cand = borrow_windows(self._pool_t, (Fr, h, w), B * self.tries, gen).to(M.device)
        cand = cand.reshape(B, self.tries, Fr, h, w)
        n_obs = Mf.flatten(1).sum(1).clamp(min=1)
        kept = (Mf[:, None] & cand).flatten(2).sum(2) / n_obs[:, None]
        best = (kept - ratio).abs().argmin(1)  # argmin gives the first of equal errors
        return cand[torch.arange(B, device=M.device), best]


def borrow_windows(pool: torch.Tensor, shape: tuple[int, int, int], n: int, gen: torch.Generator) -> torch.Tensor:
    """The observation patterns (n, F, h, w) of n random windows of a pool (T, H, W). A pool
    shorter or narrower than the window is tiled (indices wrap around)."""
    Fr, h, w = shape
    T, H, W = pool.shape
    t0 = torch.randint(T - min(Fr, T) + 1, (n,), generator=gen)
    y0 = torch.randint(max(H - h, 0) + 1, (n,), generator=gen)
    x0 = torch.randint(max(W - w, 0) + 1, (n,), generator=gen)
    ti = (t0[:, None] + torch.arange(Fr)) % T
    yi = (y0[:, None] + torch.arange(h)) % H
    xi = (x0[:, None] + torch.arange(w)) % W
    return pool[ti[:, :, None, None], yi[:, None, :, None], xi[:, None, None, :]]


def query_mask(M: torch.Tensor, M_ctx: torch.Tensor, cfg: MaskConfig, gen: torch.Generator) -> torch.Tensor:
    """M_qry ⊆ M: all observed cells (subsampled by query_ratio), or those left out of M_ctx."""
    if cfg.query == "rest":
        return M & ~M_ctx
    if cfg.query_ratio >= 1.0:
        return M.clone()
    return M & (_rand(tuple(M.shape), gen, M.device) < cfg.query_ratio)


