"""denoiser: noise scaling around the network. x_θ(t, M_ctx ⊙ x_t, M_ctx) -> x0 ([CQ] Alg. 1).

VP schedule of the authors' code: alpha_t = exp(-t^2 (β_max-β_min)/4 - t β_min/2),
sigma_t = sqrt(1 - alpha_t^2). The network sees only the context values, the context mask,
the static 'fillable' mask and the noise level; never the query mask."""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from impute_cli.config import DiffusionConfig


class VPSchedule:
    def __init__(self, cfg: DiffusionConfig) -> None:
        self.cfg = cfg

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        return torch.exp(-0.25 * t**2 * (c.beta_max - c.beta_min) - 0.5 * t * c.beta_min)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(1.0 - self.alpha(t) ** 2)


def push_pull_fill(values: torch.Tensor, mask: torch.Tensor, sweeps: int = 0) -> torch.Tensor:
    """A smooth first guess everywhere from the masked values, per image: (N, 1, h, w) -> same.

    Push-pull (pyramid) interpolation (Gortler et al. 1996, "The Lumigraph", §3.6): "push"
    averages values and coverage into coarser and coarser cells (2 x 2 average pooling of
    m ⊙ v and of m); "pull" goes back from the coarsest level, where a cell of the finer level
    keeps its own average in proportion to its coverage and takes the upsampled coarser value
    for the rest. Observed cells keep their values; gaps get a smooth fill from their
    surroundings at the scale of the gap. Images with no observed cell give zeros.

    With `sweeps`, each level of the pull is relaxed towards the harmonic (Laplace) fill by that
    many Jacobi sweeps of est = m ⊙ own + (1 − m) ⊙ mean of the 4 neighbours: a multigrid
    Laplace solve started from the pyramid, much closer to a Laplace fill in large gaps than the
    plain pull (on tcw's cloud gaps, RMSE 9.8 plain, 6.6 with 8 sweeps, Laplace 6.2)."""
    v, m = values * mask, mask
    vs, ms = [v], [m]
    while max(vs[-1].shape[-2:]) > 1:
        vs.append(F.avg_pool2d(vs[-1], 2, ceil_mode=True))
        ms.append(F.avg_pool2d(ms[-1], 2, ceil_mode=True))
    est = vs[-1] / ms[-1].clamp_min(1e-6)
    for v_l, m_l in zip(reversed(vs[:-1]), reversed(ms[:-1])):
        up = F.interpolate(est, size=v_l.shape[-2:], mode="bilinear", align_corners=False)
        own = v_l / m_l.clamp_min(1e-6)
        est = torch.where(m_l > 0, m_l * own + (1 - m_l) * up, up)
        if sweeps:
            # what does not change from sweep to sweep, computed once; 0.25 * (1 - m) is exact, so
            # keep + free * (sum of the 4 neighbours) equals m * own + (1 - m) * (their mean) bit for bit.
            # The sum is accumulated in place, in the same order as ((up + down) + left) + right:
            # the same bits as the plain expression, with fewer temporaries
            keep, free = m_l * own, 0.25 * (1 - m_l)
            acc = torch.empty_like(est)
            for _ in range(sweeps):
                p = F.pad(est, (1, 1, 1, 1), mode="replicate")
                torch.add(p[..., :-2, 1:-1], p[..., 2:, 1:-1], out=acc)
                acc += p[..., 1:-1, :-2]
                acc += p[..., 1:-1, 2:]
                acc *= free
                est = acc + keep
    return est


def relax_in_time(guess: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, sweeps: int) -> torch.Tensor:
    """`sweeps` Jacobi sweeps of est = m ⊙ values + (1 − m) ⊙ mean of the 6 neighbours in time
    and space, from the per-frame first guess `guess`; all (B, F, C, h, w), edges replicated.
    The per-frame fill knows nothing of the frames before and after a gap (and leaves a frame
    without context at zero); these sweeps let each gap cell take them in as a space-time
    Laplace fill would, started from the frame's own fill."""
    g, x, m = (a.transpose(1, 2) for a in (guess, values, mask))  # (B, C, F, h, w)
    keep, free = m * x, 1 - m  # the same in every sweep
    acc = torch.empty_like(g)  # the neighbours' sum, accumulated in place in the plain sum's order (same bits)
    for _ in range(sweeps):
        p = F.pad(g, (1, 1, 1, 1, 1, 1), mode="replicate")
        torch.add(p[:, :, :-2, 1:-1, 1:-1], p[:, :, 2:, 1:-1, 1:-1], out=acc)
        for nb in (p[:, :, 1:-1, :-2, 1:-1], p[:, :, 1:-1, 2:, 1:-1], p[:, :, 1:-1, 1:-1, :-2], p[:, :, 1:-1, 1:-1, 2:]):
            acc += nb
        acc /= 6
        g = keep + free * acc
    return g.transpose(1, 2)


def fill_shared(fill: Callable[..., torch.Tensor], group: int, *arrays: torch.Tensor) -> torch.Tensor:
    """`fill` of the items of `arrays` (each (B, K, ...): B rows in groups of `group`
    consecutive ones, K items a row) -> (B, K, ...), an item that is the same, in every array,
    as that item of its group's first row copied from it instead of computed again: item for
    item the result of `fill` on all B * K items when `fill` treats each item on its own. A
    distilled sampler's members of one window share their context, so its first guess is the
    same for all of them wherever no earlier window's samples (each member's own) reach in."""
    B, K = arrays[0].shape[:2]
    if group <= 1:
        out = fill(*(a.reshape(B * K, *a.shape[2:]) for a in arrays))
        return out.reshape(B, K, *out.shape[1:])
    G = B // group
    flat = torch.cat([a.reshape(G, group, K, -1).to(arrays[0].dtype) for a in arrays], dim=-1)
    same = (flat == flat[:, :1]).all(-1)  # (G, group, K): as the group's first row
    same[:, 0] = False  # the first row's own items are computed
    need = ~same.reshape(-1)
    done = fill(*(a.reshape(B * K, *a.shape[2:])[need] for a in arrays))
    at = torch.cumsum(need, 0) - 1  # where each computed item lies in `done`
    own = torch.arange(B * K, device=need.device).reshape(G, group, K)
    source = torch.where(same, own[:, :1].expand(G, group, K), own).reshape(-1)
    return done[at[source]].reshape(B, K, *done.shape[1:])


class Denoiser(nn.Module):
    """Wraps the network: builds its input [M_ctx ⊙ x_t, M_ctx, valid, climatology, prefill]
    and conditions it on c_noise = log(sigma_t / alpha_t) / 4. Output: the x0 estimate,
    (B, F, C, h, w). `clim` (B, 2C, h, w) is `batches.context_climatology`, when the network
    takes it. With `prefill`, the network also gets the push-pull interpolation of each frame's
    context values (a fixed function of what it already sees: it need not learn to
    interpolate smooth fields, only to improve on that guess). With `residual`, the output is
    alpha_t * prefill + network: at t -> 0 the first guess itself plus a learnt correction,
    at high noise the shrinkage towards the mean that a unit-variance field's x0 estimate
    needs (E[x0 | x_t] = alpha_t x_t for a Gaussian field)."""

    def __init__(self, net: nn.Module, schedule: VPSchedule, climatology: bool = True, prefill: bool = False,
                 residual: bool = False, sweeps: int = 0, time_sweeps: int = 0) -> None:
        super().__init__()
        self.net = net
        self.schedule = schedule
        self.climatology = climatology
        self.prefill = prefill
        self.residual = residual and prefill
        self.sweeps = sweeps
        self.time_sweeps = time_sweeps
        # a distilled sampler's weights for this network, when the model folder has one (checkpoint.load_model)
        self.student_weights: dict[str, torch.Tensor] | None = None
        self.members: list[tuple[Any, "Denoiser"]] = []  # a folder's further models: (card, network) (training.members)

    def forward(self, x_t: torch.Tensor, M_ctx: torch.Tensor, valid: torch.Tensor, t: torch.Tensor,
                clim: torch.Tensor | None = None, noise: torch.Tensor | None = None, group: int = 1) -> torch.Tensor:
        B, Fr, C, h, w = x_t.shape
        m = M_ctx.to(x_t.dtype)
        # `noise` (a distilled sampler, inference.student): white noise in the non-context cells of
        # the values input, where the network otherwise sees zeros; the source of a sample's spread
        seen = m * x_t if noise is None else m * x_t + (1 - m) * noise.to(x_t.dtype)
        parts = [seen.reshape(B, Fr * C, h, w), m.reshape(B, Fr * C, h, w),
                 valid.to(x_t.dtype).reshape(B, 1, h, w)]
        if self.climatology:
            parts.append(clim.to(x_t.dtype) if clim is not None else x_t.new_zeros(B, 2 * C, h, w))
        guess = None
        if self.prefill and getattr(self.net, "time_image", False):  # series: fill over time x stations
            def image(a: torch.Tensor) -> torch.Tensor:  # (B, F, C, 1, w) -> (B*C, 1, F, w)
                return a.reshape(B, Fr, C, w).permute(0, 2, 1, 3).reshape(B * C, 1, Fr, w)
            guess = push_pull_fill(image(x_t), image(m), self.sweeps)
            guess = guess.reshape(B, C, Fr, w).permute(0, 2, 1, 3).reshape(B, Fr * C, h, w)
            parts.append(guess)
        elif self.prefill:
            # a distilled sampler's `group` rows of a window share its context: a frame (and,
            # over time, a window) that is the same for all of them is filled once
            guess = fill_shared(lambda v, k: push_pull_fill(v, k, self.sweeps), group,
                                x_t.reshape(B, Fr * C, 1, h, w), m.reshape(B, Fr * C, 1, h, w)).reshape(B, Fr * C, h, w)
            if self.time_sweeps:
                guess = fill_shared(lambda g, v, k: relax_in_time(g, v, k, self.time_sweeps), group,
                                    guess.reshape(B, 1, Fr, C, h, w), x_t[:, None], m[:, None]).reshape(B, Fr * C, h, w)
            parts.append(guess)
        inp = torch.cat(parts, dim=1)
        alpha = self.schedule.alpha(t)
        c_noise = torch.log(self.schedule.sigma(t) / alpha) / 4
        out = self.net(inp, c_noise)
        if self.residual:
            out = out + alpha.reshape(B, 1, 1, 1).to(out.dtype) * guess.to(out.dtype)
        return out.reshape(B, Fr, C, h, w)


def in_channels(frames: int, channels: int, climatology: bool, prefill: bool = False) -> int:
    return 2 * frames * channels + 1 + (2 * channels if climatology else 0) + (frames * channels if prefill else 0)
