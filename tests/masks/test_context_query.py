"""Context and query masks ([CQ] §3.2): M_ctx ⊆ M for every pattern, the ratio is kept,
MissDiff at ratio 1, block contexts are whole blocks, and Principle 1 (every observed cell is
left out of the context sometimes)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from impute_cli.config import MaskConfig
from impute_cli.masks.context_query import ContextSampler, block_pattern, pixel_pattern, query_mask
from impute_cli.masks.observation import choose_pattern, gap_statistics, observation_pool
from impute_cli.errors import ImputeError
from impute_cli.synthetic import gap_mask

PATTERNS = ("pixel", "block", "mixed", "empirical")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def cloud_pool() -> np.ndarray:
    """Real-looking clustered gaps (T, H, W), True = observed."""
    return gap_mask((12, 20, 20), "cloud", 0.6, seed=3)


def sampler_for(pattern: str, pool: np.ndarray) -> ContextSampler:
    return ContextSampler(pattern, [2, 4], pool if pattern == "empirical" else None)


def gappy_M(B: int = 6, F: int = 3, C: int = 2, h: int = 16, w: int = 16, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    m = rng.random((B, F, 1, h, w)) < 0.7
    m = np.repeat(m, C, axis=2)
    m[:, :, -1] &= rng.random((B, F, h, w)) < 0.9  # the last channel has a few gaps of its own
    return torch.from_numpy(m)


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("ratio", [0.3, 0.7, 0.95])
def test_context_is_a_subset_of_the_observation(pattern, ratio, cloud_pool):
    M = gappy_M()
    s = sampler_for(pattern, cloud_pool)
    for seed in range(3):
        ctx = s(M, ratio, gen(seed))
        assert ctx.shape == M.shape and ctx.dtype == torch.bool
        assert not (ctx & ~M).any(), "M_ctx must be inside M"
        assert ctx.any() and (M & ~ctx).any()


@pytest.mark.parametrize("pattern", PATTERNS)
def test_ratio_one_is_missdiff_the_whole_observation(pattern, cloud_pool):
    M = gappy_M()
    ctx = sampler_for(pattern, cloud_pool)(M, 1.0, gen())
    assert torch.equal(ctx, M)
    ctx[0, 0, 0, 0, 0] = ~ctx[0, 0, 0, 0, 0]
    assert not torch.equal(ctx, M), "the context must be a copy, not M itself"
    assert MaskConfig(context_ratio=1.0).is_missdiff


@pytest.mark.parametrize("ratio", [0.3, 0.7])
def test_pixel_keeps_about_the_ratio(ratio):
    M = torch.ones((16, 4, 1, 32, 32), dtype=torch.bool)
    ctx = ContextSampler("pixel", [4])(M, ratio, gen(1))
    assert abs(ctx.float().mean().item() - ratio) < 0.03
    Mg = gappy_M(B=16, h=32, w=32)
    ctx = ContextSampler("pixel", [4])(Mg, ratio, gen(2))
    assert abs(ctx.sum().item() / Mg.sum().item() - ratio) < 0.03


@pytest.mark.parametrize("pattern", ["block", "mixed"])
def test_structured_patterns_keep_roughly_the_ratio(pattern):
    M = torch.ones((200, 3, 1, 16, 16), dtype=torch.bool)
    ctx = ContextSampler(pattern, [2, 4])(M, 0.7, gen(5))
    assert abs(ctx.float().mean().item() - 0.7) < 0.1


@pytest.mark.parametrize("pattern", PATTERNS)
def test_context_is_shared_across_channels(pattern, cloud_pool):
    M = torch.ones((8, 3, 3, 16, 16), dtype=torch.bool)
    ctx = sampler_for(pattern, cloud_pool)(M, 0.6, gen(4))
    assert torch.equal(ctx[:, :, 0], ctx[:, :, 1]) and torch.equal(ctx[:, :, 0], ctx[:, :, 2])


def test_query_rest_is_the_observation_minus_the_context():
    M = gappy_M()
    ctx = ContextSampler("pixel", [4])(M, 0.6, gen())
    q = query_mask(M, ctx, MaskConfig(query="rest", context_ratio=0.6), gen(1))
    assert torch.equal(q, M & ~ctx)
    assert not (q & ctx).any() and torch.equal(q | ctx, M)


def test_query_observed():
    M = gappy_M(B=16, h=32, w=32)
    ctx = ContextSampler("pixel", [4])(M, 0.6, gen())
    assert torch.equal(query_mask(M, ctx, MaskConfig(query="observed", query_ratio=1.0), gen()), M)
    q = query_mask(M, ctx, MaskConfig(query="observed", query_ratio=0.5), gen(1))
    assert not (q & ~M).any()
    assert abs(q.sum().item() / M.sum().item() - 0.5) < 0.03


def _is_blocky(frames: np.ndarray, s: int) -> bool:
    """(F, h, w) bool constant on every s x s block of some phase shared by all frames."""
    F_, h, w = frames.shape
    for oy, ox in itertools.product(range(s), range(s)):
        by = (np.arange(h) + oy) // s
        bx = (np.arange(w) + ox) // s
        ids = by[:, None] * (w + s) + bx[None, :]
        ok = True
        for f in range(F_):
            for i in np.unique(ids):
                vals = frames[f][ids == i]
                if vals.min() != vals.max():
                    ok = False
                    break
            if not ok:
                break
        if ok:
            return True
    return False


@pytest.mark.parametrize("sizes", [[4], [2, 4], [3]])
def test_block_pattern_is_made_of_whole_blocks(sizes):
    M = torch.ones((12, 3, 1, 16, 16), dtype=torch.bool)
    ctx = ContextSampler("block", sizes)(M, 0.5, gen(7))[:, :, 0].numpy()
    for b in range(ctx.shape[0]):
        assert any(_is_blocky(ctx[b], s) for s in sizes), f"sample {b} is not made of whole blocks"
    # the check can fail: i.i.d. pixels are not blocks
    px = pixel_pattern((1, 3, 16, 16), 0.5, gen(7), torch.device("cpu"))[0].numpy()
    assert not _is_blocky(px, 4)


def test_block_pattern_phase_varies():
    """A random block phase per sample: no single block grid fits every sample."""
    out = block_pattern((64, 1, 16, 16), 0.5, gen(3), torch.device("cpu"), [4]).numpy()[:, 0]
    common = set(itertools.product(range(4), range(4)))
    for p in out:
        fits = {(oy, ox) for oy, ox in itertools.product(range(4), range(4)) if _is_blocky_at(p, 4, oy, ox)}
        assert fits, "every sample is whole blocks on some grid"
        common &= fits
    assert not common


def test_block_pattern_has_short_and_lasting_outages_of_every_length():
    """Blocks go out for single frames and for runs of frames of every length, including runs
    with observed frames before and after them inside the window (what an 8-step outage in a
    16-frame window asks of the network), and for the whole window."""
    Fr = 16
    out = block_pattern((400, Fr, 16, 16), 0.7, gen(8), torch.device("cpu"), [4]).numpy()
    assert abs(out.mean() - 0.7) < 0.03
    runs, bridged = set(), set()
    for p in out:
        cell = ~p[:, 1::4, 1::4].reshape(Fr, -1)  # one cell of each block: True while out
        for c in cell.T:
            d = np.diff(np.concatenate([[0], c.astype(int), [0]]))
            for a, b in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)):
                runs.add(b - a)
                if a > 0 and b < Fr:
                    bridged.add(b - a)
    assert runs == set(range(1, Fr + 1))
    assert set(range(2, Fr - 1)) <= bridged, "outages of every length with observed frames on both sides"


def _is_blocky_at(p: np.ndarray, s: int, oy: int, ox: int) -> bool:
    h, w = p.shape
    ids = ((np.arange(h) + oy) // s)[:, None] * (w + s) + ((np.arange(w) + ox) // s)[None, :]
    return all(p[ids == i].min() == p[ids == i].max() for i in np.unique(ids))


@pytest.mark.parametrize("pattern", ["pixel", "block", "mixed"])
def test_principle_1_every_observed_cell_is_sometimes_left_out(pattern):
    """[CQ] Principle 1: over many draws every observed cell is a possible query cell (outside
    the context), and also sometimes in the context."""
    rng = np.random.default_rng(11)
    M1 = torch.from_numpy(np.repeat(rng.random((1, 3, 1, 12, 12)) < 0.7, 2, axis=2))
    M = M1.expand(400, -1, -1, -1, -1).clone()
    ctx = ContextSampler(pattern, [2, 4])(M, 0.7, gen(9))
    left_out = (M & ~ctx).any(0)
    kept = ctx.any(0)
    assert torch.equal(left_out, M1[0]), "some observed cell is never left out of the context"
    assert torch.equal(kept, M1[0]), "some observed cell is never in the context"


def test_empirical_borrows_real_gap_shapes(cloud_pool):
    """With nothing missing in the window, the context is a window cut from the pool."""
    s = ContextSampler("empirical", [4], cloud_pool)
    M = torch.ones((6, 3, 1, 16, 16), dtype=torch.bool)
    ctx = s(M, 0.6, gen(2))[:, :, 0].numpy()
    T, H, W = cloud_pool.shape
    for b in range(ctx.shape[0]):
        found = any(np.array_equal(ctx[b], cloud_pool[t:t + 3, y:y + 16, x:x + 16])
                    for t in range(T - 2) for y in range(H - 15) for x in range(W - 15))
        assert found, f"sample {b} is not a window of the pool"


def test_empirical_on_gapless_data_is_an_error():
    with pytest.raises(ImputeError, match="no gaps"):
        ContextSampler("empirical", [4], np.ones((4, 8, 8), bool))
    with pytest.raises(ImputeError):
        ContextSampler("empirical", [4], None)


def test_choose_pattern_from_the_gaps():
    shape = (12, 32, 32)
    assert choose_pattern(gap_mask(shape, "pixel", 0.6, seed=0))[0] == "pixel"
    assert choose_pattern(gap_mask(shape, "cloud", 0.6, seed=0))[0] == "empirical"
    assert choose_pattern(gap_mask(shape, "block", 0.5, seed=0))[0] == "empirical"
    pattern, reason = choose_pattern(np.ones(shape, bool))
    assert pattern == "mixed" and "no gaps" in reason


def test_gap_statistics():
    assert gap_statistics(np.ones((2, 4, 4), bool)) == {"missing": 0.0, "neighbour_missing": 0.0}
    pool = np.ones((1, 4, 4), bool)
    pool[0, :2, :2] = False  # one 2x2 hole
    st = gap_statistics(pool)
    assert st["missing"] == pytest.approx(4 / 16)
    assert st["neighbour_missing"] == pytest.approx(4 / 8)


def test_observation_pool_any_channel_and_land():
    obs = np.zeros((2, 2, 3, 3), bool)
    obs[0, 1, 1, 1] = True  # observed in channel 1 only
    valid = np.ones((3, 3), bool)
    valid[0, 0] = False  # land
    pool = observation_pool(obs, valid)
    assert pool.shape == (2, 3, 3)
    assert pool[0, 1, 1] and not pool[1, 1, 1]
    assert pool[:, 0, 0].all(), "land is never a gap to borrow"
    assert pool.sum() == 1 + 2


def test_gap_statistics_ignore_land():
    """Land (outside valid) is neither gap nor observation when `auto` looks at the gaps."""
    from impute_cli.masks.observation import gap_statistics
    valid = np.zeros((10, 10), bool)
    valid[:, :5] = True
    pool = np.ones((4, 10, 10), bool)
    pool[:, :, :5] = np.random.default_rng(0).random((4, 10, 5)) < 0.5  # half the sea missing
    assert gap_statistics(pool, valid)["missing"] == pytest.approx(0.5, abs=0.1)
    assert gap_statistics(pool)["missing"] == pytest.approx(0.25, abs=0.05)
