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
