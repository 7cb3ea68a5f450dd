"""Ensemble single-step imputation ([CQ] eq. 9-10) with a fake deterministic denoiser: one
generator per window, so window i gets the same draws whatever the batch size."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from impute_cli.config import DiffusionConfig
from impute_cli.masks.context_query import ContextSampler
from impute_cli.model.denoiser import VPSchedule
from impute_cli.inference.ensemble import ensemble_single_step


class ContextMean(nn.Module):
    """x0 estimate = the mean of the context values of each sample, broadcast; records the
    batch sizes it is called with."""

    def __init__(self) -> None:
        super().__init__()
        self.schedule = VPSchedule(DiffusionConfig())
        self.batches: list[int] = []

    def forward(self, x_t, M_ctx, valid, t):
        self.batches.append(x_t.shape[0])
        assert valid.shape[0] == x_t.shape[0] and t.shape == (x_t.shape[0],)
        m = M_ctx.to(x_t.dtype)
        mean = (x_t * m).sum(dim=(1, 2, 3, 4)) / m.sum(dim=(1, 2, 3, 4)).clamp(min=1)
        return mean[:, None, None, None, None].expand_as(x_t).clone()


class Echo(nn.Module):
    """Returns a fixed function of its inputs: the context mask, or x_t / alpha_t."""

    def __init__(self, what: str) -> None:
        super().__init__()
        self.schedule = VPSchedule(DiffusionConfig())
        self.what = what

    def forward(self, x_t, M_ctx, valid, t):
        if self.what == "ctx":
            return M_ctx.float()
        return x_t / self.schedule.alpha(t)[:, None, None, None, None]


def windows(B=5, F=3, C=2, h=8, w=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((B, F, C, h, w), generator=g)
    M = torch.rand((B, F, C, h, w), generator=g) < 0.7
    valid = torch.ones((B, h, w), dtype=torch.bool)
    return torch.where(M, x, torch.zeros_like(x)), M, valid


def run(den, x, M, valid, seeds, batch_size, pattern="pixel", ratio=0.6, K=3):
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    return ensemble_single_step(den, x, M, valid, sampler=ContextSampler(pattern, [2]), ratio=ratio, K=K,
                                delta=1e-3, generators=gens, batch_size=batch_size)


@pytest.mark.parametrize("pattern", ["pixel", "block", "mixed"])
def test_window_result_does_not_depend_on_batch_size(pattern):
    x, M, valid = windows()
    seeds = [100 + i for i in range(5)]
    den = ContextMean()
    ref = run(den, x, M, valid, seeds, batch_size=1, pattern=pattern)
    assert set(den.batches) == {1}
    for bs in (2, 4, 7, 16):
        den.batches.clear()
        out = run(den, x, M, valid, seeds, batch_size=bs, pattern=pattern)
        assert max(den.batches) == min(bs, 15)
        assert torch.equal(out, ref), f"batch size {bs} changed the result"
    # window i alone, with its own generator, gives the same estimate
    for i in range(5):
        alone = run(den, x[i:i + 1], M[i:i + 1], valid[i:i + 1], [seeds[i]], batch_size=3, pattern=pattern)
        assert torch.equal(alone[0], ref[i])
    # and the draws do matter: another seed for window 0 changes window 0 only
    other = run(den, x, M, valid, [999, *seeds[1:]], batch_size=4, pattern=pattern)
    assert not torch.equal(other[0], ref[0])
    assert torch.equal(other[1:], ref[1:])


def test_average_over_K_context_draws():
    x, M, valid = windows(B=2)
    K = 8
    out = run(Echo("ctx"), x, M, valid, [1, 2], batch_size=5, K=K, ratio=0.5)
    assert torch.all(out[~M] == 0), "context cells are inside M"
    frac = out[M]
    assert torch.allclose(frac * K, torch.round(frac * K), atol=1e-5), "the mean of K 0/1 masks"
    assert 0.35 < frac.mean().item() < 0.65
    assert torch.equal(run(Echo("ctx"), x, M, valid, [1, 2], batch_size=5, K=K, ratio=1.0), M.float())


def test_single_step_input_is_the_slightly_noised_observation():
    x, M, valid = windows(B=2)
    out = run(Echo("x"), x, M, valid, [1, 2], batch_size=4, K=4)
    assert torch.all(out[~M] == 0), "only observed cells are fed (eq. 9)"
    assert torch.allclose(out[M], x[M], atol=0.05)
    assert not torch.equal(out[M], x[M]), "x_delta carries a little noise"


class Ramp(nn.Module):
    """Not equivariant: x0 estimate = x_t / alpha_t plus a ramp across columns and along frames."""

    def __init__(self) -> None:
        super().__init__()
        self.schedule = VPSchedule(DiffusionConfig())

    def forward(self, x_t, M_ctx, valid, t):
        B, F, C, h, w = x_t.shape
        ramp = torch.arange(w, dtype=x_t.dtype)[None, None, None, None] + 10 * torch.arange(F, dtype=x_t.dtype)[:, None, None, None]
        return x_t / self.schedule.alpha(t)[:, None, None, None, None] + ramp


@pytest.mark.parametrize("square", [True, False])
def test_every_symmetry_is_undone_by_its_inverse(square):
    from impute_cli.model.symmetry import move, symmetries
    a = torch.randn(3, 2, 6, 6 if square else 5)
    gs = symmetries(["flip", "reverse_time"], square)
    assert len(gs) == (16 if square else 8) and gs[0] == (False, False, False, False)
    moved = [move(a, g, 0) for g in gs]
    assert len({tuple(m.flatten().tolist()) for m in moved}) == len(gs)  # all different on random data
    for g, m in zip(gs, moved):
        assert torch.equal(move(m, g, 0, inverse=True), a)


def test_symmetric_ensemble_averages_a_network_over_the_trained_symmetries():
    x, M, valid = windows(B=2, F=4, h=8, w=8)
    gens = lambda: [torch.Generator().manual_seed(s) for s in (1, 2)]  # noqa: E731
    kw = dict(sampler=ContextSampler("pixel", [2]), ratio=0.6, K=16, delta=1e-3, batch_size=7)
    # an equivariant network gives the same estimate with or without the symmetries
    plain = ensemble_single_step(Echo("x"), x, M, valid, generators=gens(), **kw)
    sym = ensemble_single_step(Echo("x"), x, M, valid, generators=gens(), symmetric=["flip", "reverse_time"], **kw)
    assert torch.allclose(plain, sym, atol=1e-6)
    # a ramp across columns and frames averages out to its mean over the mirrored and reversed members
    base = ensemble_single_step(Ramp(), x, M, valid, generators=gens(), **kw)
    out = ensemble_single_step(Ramp(), x, M, valid, generators=gens(), symmetric=["flip", "reverse_time"], **kw)
    ramp = (base - plain)[0, :, 0]  # (F, h, w): columns 0..7 plus 10 x frame
    assert torch.allclose(ramp[1, 2, 3], torch.tensor(13.0), atol=1e-4)
    assert torch.allclose(out - plain, torch.full_like(out, 3.5 + 15.0), atol=1e-4)  # mean column 3.5, mean frame 1.5
    # member k of a window takes symmetry k whatever the batch size
    other = ensemble_single_step(Ramp(), x, M, valid, generators=gens(), symmetric=["flip", "reverse_time"],
                                 **{**kw, "batch_size": 32})
    assert torch.allclose(out, other, atol=1e-5)
    # time reversal alone undoes the frame ramp only
    tonly = ensemble_single_step(Ramp(), x, M, valid, generators=gens(), symmetric=["reverse_time"], **kw)
    assert torch.allclose((tonly - plain)[0, :, 0, 0, 3], torch.full((4,), 3.0 + 15.0), atol=1e-4)
