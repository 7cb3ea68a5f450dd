"""The push-pull first guess the network gets with network.prefill_input, and that models written
before it existed still load (without it)."""

from __future__ import annotations

import torch
import yaml

from conftest import run_cli
from impute_cli.checkpoint import load_model
from impute_cli.model.denoiser import in_channels, push_pull_fill
from impute_cli.testing import tiny_cube_dataset, tiny_preset_yaml, write_cube


def _smooth(h: int = 37, w: int = 53) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return (torch.sin(6 * yy) + torch.cos(5 * xx))[None, None]


def test_push_pull_keeps_observed_values_and_fills_every_gap():
    f = _smooth()
    gen = torch.Generator().manual_seed(0)
    m = (torch.rand(f.shape, generator=gen) < 0.4).float()
    m[..., 10:25, 10:30] = 0  # and a large hole
    e = push_pull_fill(f, m)
    assert torch.equal(e[m > 0], f[m > 0])
    assert torch.isfinite(e).all()
    gap = m == 0
    rmse = ((e - f)[gap] ** 2).mean().sqrt()
    assert rmse < 0.5 * ((f.mean() - f)[gap] ** 2).mean().sqrt()  # far better than the mean


def test_push_pull_of_nothing_is_zero_and_of_everything_is_identity():
    f = _smooth(8, 5)
    assert torch.equal(push_pull_fill(f, torch.zeros_like(f)), torch.zeros_like(f))
    assert torch.equal(push_pull_fill(f, torch.ones_like(f)), f)


def test_prefill_adds_one_input_per_frame_and_channel():
    assert in_channels(8, 2, True, True) - in_channels(8, 2, True, False) == 16


def test_a_model_card_without_the_key_loads_without_prefill(tmp_path):
    cube = write_cube(tiny_cube_dataset(12, 16, 16, "cloud", 0.6), tmp_path / "c.nc")
    preset = tiny_preset_yaml(tmp_path / "p.yaml", network={"prefill_input": False})
    run_cli("train", cube, "--preset", preset, "--out", tmp_path / "m", "--steps", 3, "--device", "cpu", "--quiet")
    card_path = tmp_path / "m" / "model.yaml"
    card = yaml.safe_load(card_path.read_text())
    card["preset"]["network"].pop("prefill_input")  # as written by impute-cli before the key existed
    card_path.write_text(yaml.safe_dump(card))
    card, den = load_model(tmp_path / "m")
    assert not card.preset.network.prefill_input and not den.prefill
    run_cli("impute", cube, tmp_path / "o.nc", "--model", tmp_path / "m", "--device", "cpu", "--quiet")


def test_sweeps_bring_the_first_guess_towards_laplace_in_a_large_hole():
    """Jacobi sweeps per level keep observed cells and lower the error in a large hole of a
    harmonic field (a plane: the Laplace fill is exact)."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 40), torch.linspace(0, 1, 40), indexing="ij")
    f = (2 * yy - xx)[None, None]
    m = torch.ones_like(f)
    m[..., 8:32, 8:32] = 0
    errs = []
    for sweeps in (0, 8, 32):
        e = push_pull_fill(f, m, sweeps)
        assert torch.equal(e[m > 0], f[m > 0])
        errs.append(float(((e - f)[m == 0] ** 2).mean().sqrt()))
    assert errs[2] < errs[1] < errs[0] and errs[2] < 0.3 * errs[0]


def test_residual_denoiser_starts_from_the_first_guess_at_low_noise():
    """With network.prefill_residual the output is alpha_t x the first guess + the network's
    correction: a network that outputs zeros gives the (shrunk) first guess."""
    from impute_cli.config import DiffusionConfig
    from impute_cli.model.denoiser import Denoiser, VPSchedule

    class Zero(torch.nn.Module):
        def forward(self, inp, c_noise):
            return torch.zeros(inp.shape[0], 2, *inp.shape[-2:])

    sched = VPSchedule(DiffusionConfig())
    den = Denoiser(Zero(), sched, climatology=False, prefill=True, residual=True, sweeps=4)
    x = _smooth(16, 16).expand(3, 2, 1, 16, 16).clone()  # (B, F, C, h, w)
    ctx = torch.rand(x.shape, generator=torch.Generator().manual_seed(1)) < 0.5
    t = torch.tensor([1e-3, 0.5, 1.0])
    out = den(x, ctx, torch.ones(3, 16, 16, dtype=torch.bool), t)
    guess = push_pull_fill(x.reshape(6, 1, 16, 16), ctx.reshape(6, 1, 16, 16).float(), 4).reshape(3, 2, 1, 16, 16)
    assert torch.allclose(out, sched.alpha(t).reshape(3, 1, 1, 1, 1) * guess, atol=1e-6)


def test_time_sweeps_fill_a_frame_from_its_neighbours_and_keep_observed_cells():
    """A frame with no context gets nothing from the per-frame fill (zeros); sweeps over time and
    space give it its neighbours' values, and lower the error on a field smooth in time."""
    from impute_cli.model.denoiser import relax_in_time
    T, h, w = 6, 12, 14
    tt = torch.linspace(0, 1, T)[:, None, None, None]
    f = (_smooth(h, w)[0] + 3 * tt)[None]  # (1, F, 1, h, w): a trend in time
    gen = torch.Generator().manual_seed(1)
    m = (torch.rand(f.shape, generator=gen) < 0.5).float()
    m[:, 3] = 0  # frame 3 wholly missing
    frame = push_pull_fill(f.reshape(T, 1, h, w), m.reshape(T, 1, h, w), 8).reshape(f.shape)
    assert torch.equal(frame[:, 3], torch.zeros_like(frame[:, 3]))
    errs = []
    for sweeps in (0, 8, 32):
        g = relax_in_time(frame, f, m, sweeps)
        assert torch.equal(g[m > 0], f[m > 0])
        errs.append(float(((g - f)[m == 0] ** 2).mean().sqrt()))
    assert errs[2] < errs[1] < errs[0]
    g = relax_in_time(frame, f, m, 32)
    assert float((g[:, 3] - f[:, 3]).abs().mean()) < 0.2 * float(f[:, 3].abs().mean())


def test_time_sweeps_are_off_in_cards_without_the_key(tmp_path):
    from impute_cli.config import NetworkConfig
    assert NetworkConfig().prefill_time_sweeps == 0
    cube = write_cube(tiny_cube_dataset(12, 16, 16, "cloud", 0.6), tmp_path / "c.nc")
    preset = tiny_preset_yaml(tmp_path / "p.yaml", network={"prefill_time_sweeps": 4})
    run_cli("train", cube, "--preset", preset, "--out", tmp_path / "m", "--steps", 3, "--device", "cpu", "--quiet")
    card, den = load_model(tmp_path / "m")
    assert card.preset.network.prefill_time_sweeps == 4 and den.time_sweeps == 4
    run_cli("impute", cube, tmp_path / "o.nc", "--model", tmp_path / "m", "--device", "cpu", "--quiet")
    raw = yaml.safe_load((tmp_path / "m" / "model.yaml").read_text())
    raw["preset"]["network"].pop("prefill_time_sweeps")  # as written before the key existed
    (tmp_path / "m" / "model.yaml").write_text(yaml.safe_dump(raw))
    _, den = load_model(tmp_path / "m")
    assert den.time_sweeps == 0


def _jacobi_reference(values: torch.Tensor, mask: torch.Tensor, sweeps: int) -> torch.Tensor:
    """push_pull_fill with its sweeps written as the plain formula, one neighbour mean per sweep:
    est = m ⊙ own + (1 − m) ⊙ mean of the 4 neighbours (edges replicated)."""
    import torch.nn.functional as F
    vs, ms = [values * mask], [mask]
    while max(vs[-1].shape[-2:]) > 1:
        vs.append(F.avg_pool2d(vs[-1], 2, ceil_mode=True))
        ms.append(F.avg_pool2d(ms[-1], 2, ceil_mode=True))
    est = vs[-1] / ms[-1].clamp_min(1e-6)
    for v_l, m_l in zip(reversed(vs[:-1]), reversed(ms[:-1])):
        up = F.interpolate(est, size=v_l.shape[-2:], mode="bilinear", align_corners=False)
        own = v_l / m_l.clamp_min(1e-6)
        est = torch.where(m_l > 0, m_l * own + (1 - m_l) * up, up)
        for _ in range(sweeps):
            p = F.pad(est, (1, 1, 1, 1), mode="replicate")
            nb = 0.25 * (p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:])
            est = m_l * own + (1 - m_l) * nb
    return est


def test_sweeps_are_the_jacobi_formula_bit_for_bit():
    """The sweeps precompute what does not change between them; the first guess (and so every
    model's input) is the plain Jacobi formula's to the last bit, in space and in time."""
    from impute_cli.model.denoiser import relax_in_time
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 5, 1, 19, 23, generator=gen)
    m = (torch.rand(x.shape, generator=gen) < 0.4).float()
    flat = (x.reshape(10, 1, 19, 23), m.reshape(10, 1, 19, 23))
    for sweeps in (0, 3, 32):
        assert torch.equal(push_pull_fill(*flat, sweeps), _jacobi_reference(*flat, sweeps))
    g = push_pull_fill(*flat, 8).reshape(x.shape)
    ref = g.transpose(1, 2)
    xt, mt = x.transpose(1, 2), m.transpose(1, 2)
    for _ in range(16):
        p = torch.nn.functional.pad(ref, (1, 1, 1, 1, 1, 1), mode="replicate")
        nb = (p[:, :, :-2, 1:-1, 1:-1] + p[:, :, 2:, 1:-1, 1:-1] + p[:, :, 1:-1, :-2, 1:-1]
              + p[:, :, 1:-1, 2:, 1:-1] + p[:, :, 1:-1, 1:-1, :-2] + p[:, :, 1:-1, 1:-1, 2:]) / 6
        ref = mt * xt + (1 - mt) * nb
    assert torch.equal(relax_in_time(g, x, m, 16), ref.transpose(1, 2))



def test_a_first_guess_shared_by_a_windows_members_is_filled_once_with_the_same_bits():
    """A distilled sampler's members of one window share their context except where an earlier
    window's samples reach in (each member's own values): `fill_shared` fills each frame they
    share once and copies it, bit for bit what filling every member's frames gives."""
    from impute_cli.model.denoiser import fill_shared, relax_in_time
    gen = torch.Generator().manual_seed(5)
    G, N, Fr, h, w = 3, 4, 6, 13, 17  # 3 windows x 4 members, 6 frames
    x = torch.randn(G, 1, Fr, 1, h, w, generator=gen).expand(G, N, Fr, 1, h, w).clone()
    m = (torch.rand(G, 1, Fr, 1, h, w, generator=gen) < 0.5).float().expand(G, N, Fr, 1, h, w).clone()
    x[1, 1:, 0] += torch.randn(N - 1, 1, h, w, generator=gen)  # window 1: its members' own first frame
    m[1, :, 0, :, :, :4] = 1.0
    x, m = x.reshape(G * N, Fr, 1, h, w), m.reshape(G * N, Fr, 1, h, w)
    calls = []

    def fill(v: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        calls.append(len(v))
        return push_pull_fill(v, k, 8)

    shared = fill_shared(fill, N, x.reshape(G * N, Fr, 1, h, w), m.reshape(G * N, Fr, 1, h, w))
    every = push_pull_fill(x.reshape(-1, 1, h, w), m.reshape(-1, 1, h, w), 8).reshape(shared.shape)
    assert torch.equal(shared, every)
    assert calls == [G * Fr + (N - 1)], "each window's frames once, and window 1's own first frames"
    g = every.reshape(G * N, Fr, 1, h, w)
    over_time = fill_shared(lambda a, b, c: relax_in_time(a, b, c, 4), N, g[:, None], x[:, None], m[:, None])
    assert torch.equal(over_time[:, 0], relax_in_time(g, x, m, 4))
    assert torch.equal(fill_shared(lambda v, k: push_pull_fill(v, k, 8), 1, x, m).reshape(every.shape), every)
